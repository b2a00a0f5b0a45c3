//! Lambda entry point: wires AWS clients and runs the failback handler.

use meridian::adapters::{CloudWatchAlarms, HealthDeps, HttpFrontDoorProbe};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::health::SystemClock;
use meridian::lambda;
use meridian::names::FunctionRole;
use meridian::scaling_aws::AasAutoScaling;
use meridian_failback::drift::aws::AwsDriftSources;
use meridian_failback::repair::aws::AwsRepairControl;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::init_tracing();
    let region = std::env::var("AWS_REGION")?;
    let fleet = Fleet::from_toml_str(&std::env::var("MERIDIAN_FLEET_TOML")?)?;
    let clients = ClientFactory::from_env().for_function(FunctionRole::Failback);
    let deps = HealthDeps::new(&clients, &fleet, &region).await;
    let alarms = CloudWatchAlarms::new(&clients, &region).await;
    let drift = AwsDriftSources::new(&clients, &fleet, &region).await;
    let autoscaling = AasAutoScaling::new(&clients, &region, &fleet.variant_name).await;
    let repair = AwsRepairControl::new(
        &clients,
        &fleet,
        &region,
        std::env::var("STATE_MACHINE_ARN").ok(),
    )
    .await;
    lambda::run(meridian_failback::Failback {
        fleet,
        region,
        front_door: std::env::var("FRONT_DOOR_URL").ok(),
        store: deps.store,
        scaler: deps.scaler,
        alarms,
        probe: HttpFrontDoorProbe::default(),
        clock: SystemClock,
        drift,
        autoscaling,
        repair,
    })
    .await
}
