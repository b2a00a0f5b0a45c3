//! Lambda entry point: wires AWS clients and runs the deploy-watch handler.

use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::lambda;
use meridian::names::FunctionRole;
use meridian_deploy_watch::AwsDeployWatch;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let region = std::env::var("AWS_REGION")?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::DeployWatch);
    let deps = AwsDeployWatch::new(&clients, fleet, region).await;
    lambda::run(deps).await
}
