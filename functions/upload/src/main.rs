//! Lambda entry point: wires AWS clients and runs the upload handler.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::names::FunctionRole;
use meridian::registry::Registry;
use meridian_upload::UploadDeps;
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
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Upload);
    let config = clients.config(&fleet.primary_region).await;
    let deps = UploadDeps {
        registry: Registry {
            client: aws_sdk_dynamodb::Client::new(&config),
            table: fleet.registry_table.clone(),
        },
        s3: clients.s3(&fleet.primary_region).await,
        sfn: aws_sdk_sfn::Client::new(&config),
        state_machine_arn: std::env::var("STATE_MACHINE_ARN")?,
        fleet,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            meridian_upload::handle(deps, event.payload)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.error_name().into(),
                    error_message: e.to_string(),
                })
        }
    }))
    .await
}
