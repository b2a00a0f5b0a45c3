//! Lambda entry point: wires AWS clients and runs the rollout task handler.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::names::FunctionRole;
use meridian_rollout::RolloutDeps;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let deps = RolloutDeps {
        fleet: Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?,
        clients: ClientFactory::from_env().for_function(FunctionRole::Rollout),
        state_machine_arn: std::env::var("STATE_MACHINE_ARN")?,
        sagemaker_role_arn: std::env::var("SAGEMAKER_ROLE_ARN")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            let outcome = meridian_rollout::handle(deps, event.payload).await;
            for line in &outcome.metrics {
                println!("{line}");
            }
            outcome.result.map_err(|e| Diagnostic {
                error_type: e.error_name().into(),
                error_message: e.to_string(),
            })
        }
    }))
    .await
}
