//! Lambda entry point: wires the primary region's clients and runs the drill tasks.

use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::lambda;
use meridian::names::FunctionRole;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Drill);
    lambda::run(meridian_drill::aws::DrillDeps::new(&clients, fleet).await).await
}
