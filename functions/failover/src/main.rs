//! Lambda entry point: wires AWS clients and runs the failover handler.

use meridian::adapters::HealthDeps;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::health::SystemClock;
use meridian::lambda;
use meridian::names::FunctionRole;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let region = std::env::var("AWS_REGION")?;
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Failover);
    let deps = HealthDeps::new(&clients, &fleet, &region).await;
    lambda::run(meridian_failover::Failover {
        fleet,
        region,
        store: deps.store,
        clock: SystemClock,
    })
    .await
}
