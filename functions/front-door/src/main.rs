//! Lambda entry point: wires the region's AWS clients and serves the front door with
//! response streaming.

use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::lambda;
use meridian::names::FunctionRole;
use meridian_front_door::aws::AwsFrontDoor;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let region = std::env::var("AWS_REGION")?;
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::FrontDoor);
    let door = AwsFrontDoor::from_clients(&clients, fleet, &region).await;
    let door = &door;
    lambda::run_http(move |request| door.respond(request)).await
}
