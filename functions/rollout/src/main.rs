//! Lambda entry point: wires AWS clients and runs the rollout task handler.

use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::lambda;
use meridian::names::FunctionRole;
use meridian_rollout::RolloutDeps;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let deps = RolloutDeps::new(
        Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?,
        ClientFactory::from_env().for_function(FunctionRole::Rollout),
        std::env::var("STATE_MACHINE_ARN")?,
        std::env::var("SAGEMAKER_ROLE_ARN")?,
    );
    lambda::run(deps).await
}
