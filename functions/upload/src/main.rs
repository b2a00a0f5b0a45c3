//! Lambda entry point: wires AWS clients and runs the upload handler.

use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::lambda;
use meridian::names::FunctionRole;
use meridian_upload::UploadDeps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Upload);
    let deps = UploadDeps::new(&clients, fleet, std::env::var("STATE_MACHINE_ARN")?).await;
    lambda::run(deps).await
}
