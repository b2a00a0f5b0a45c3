//! Lambda entry point: wires AWS clients and runs the failover handler.

use meridian::adapters::HealthDeps;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::lambda;
use meridian::names::FunctionRole;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let region = std::env::var("AWS_REGION")?;
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Failover);
    let deps = HealthDeps::new(&clients, &fleet, &region).await;
    let (fleet, region, deps) = (&fleet, &region, &deps);
    lambda::run(|payload| async move {
        let (store, dns, scaler) = (&deps.store, &deps.dns, &deps.scaler);
        match meridian_failover::handle(fleet, region, store, dns, scaler, payload).await {
            Ok(outcome) => (Ok(outcome.result), outcome.metrics),
            Err(error) => (Err(error), Vec::new()),
        }
    })
    .await
}
