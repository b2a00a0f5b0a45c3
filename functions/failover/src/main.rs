//! Lambda entry point: wires AWS clients and runs the failover handler.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use meridian::adapters::HealthDeps;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::names::FunctionRole;
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
    let region = std::env::var("AWS_REGION")?;
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let deps = HealthDeps::new(
        &ClientFactory::from_env().for_function(FunctionRole::Failover),
        &fleet,
        &region,
    )
    .await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (fleet, region, deps) = (&fleet, &region, &deps);
        async move {
            let outcome = meridian_failover::handle(
                fleet,
                region,
                &deps.store,
                &deps.dns,
                &deps.scaler,
                event.payload,
            )
            .await
            .map_err(|e| Diagnostic {
                error_type: e.error_name().into(),
                error_message: e.to_string(),
            })?;
            for line in &outcome.metrics {
                println!("{line}");
            }
            Ok::<Value, Diagnostic>(outcome.result)
        }
    }))
    .await
}
