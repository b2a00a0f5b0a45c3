//! Lambda entry point: wires AWS clients and runs the replica handler.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::names::FunctionRole;
use meridian::registry::Registry;
use meridian_replica::ReplicaDeps;
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
    let region = std::env::var("AWS_REGION")?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Replica);
    let deps = ReplicaDeps {
        registry: Registry {
            client: aws_sdk_dynamodb::Client::new(&clients.config(&region).await),
            table: fleet.registry_table.clone(),
        },
        s3: clients.s3(&region).await,
        sfn: aws_sdk_sfn::Client::new(&clients.config(&fleet.primary_region).await),
        region,
        fleet,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            meridian_replica::handle(deps, event.payload)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.error_name().into(),
                    error_message: e.to_string(),
                })
        }
    }))
    .await
}
