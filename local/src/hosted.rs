//! Meridian's own Lambda functions, hosted in-process by the local cloud with the same
//! handlers and the same adapter wiring as in Lambda, their clients pointed at the gateway.
//! One generic registration ([`host`]) does for every event-driven function what
//! `meridian::lambda::run` does in Lambda: parse the payload, log the EMF lines, report
//! errors under their names; [`register_front_doors`] does what `run_http` does for the
//! front doors.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use meridian::adapters::{CloudWatchAlarms, HealthDeps, HttpFrontDoorProbe};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::function::{invoke, Handler};
use meridian::health::SystemClock;
use meridian::names::{self, function_name, FunctionRole};
use meridian::scaling_aws::AasAutoScaling;
use meridian::NamedError;
use meridian_failback::drift::aws::AwsDriftSources;
use meridian_failback::repair::aws::AwsRepairControl;
use meridian_front_door::aws::AwsFrontDoor;
use tokio::sync::{Mutex, OnceCell};

use crate::ctx::LOCAL_ACCOUNT;
use crate::front_doors::FrontDoors;
use crate::functions::{FunctionError, Functions, Invocation};

/// A handler's error as the Lambda API reports it: under its name.
fn function_error(error: impl NamedError) -> FunctionError {
    FunctionError::new(error.error_name(), error.to_string())
}

/// The rollout state machine's ARN in the local cloud.
pub fn state_machine_arn(fleet: &Fleet) -> String {
    state_machine_arn_named(fleet, &names::rollout_state_machine_name(&fleet.name))
}

/// The ARN of the state machine `name` in the fleet's primary region.
pub fn state_machine_arn_named(fleet: &Fleet, name: &str) -> String {
    format!(
        "arn:aws:states:{}:{LOCAL_ACCOUNT}:stateMachine:{name}",
        fleet.primary_region
    )
}

/// The execution role models are created with in the local cloud.
pub fn sagemaker_role_arn(fleet: &Fleet) -> String {
    format!("arn:aws:iam::{LOCAL_ACCOUNT}:role/{}-sagemaker", fleet.name)
}

/// Hosts the function `role` of `fleet`: its handler is built by `build` for a region on
/// that region's first invocation and kept, as a Lambda execution environment keeps what
/// its `main` built.
fn host<H, B, F>(functions: &Functions, fleet: &Fleet, role: FunctionRole, build: B)
where
    H: Handler + 'static,
    B: Fn(String) -> F + Send + Sync + 'static,
    F: Future<Output = H> + Send,
{
    let built: Arc<Mutex<HashMap<String, Arc<H>>>> = Arc::default();
    let build = Arc::new(build);
    functions.register(
        function_name(&fleet.name, role),
        move |invocation: Invocation| {
            let (built, build) = (built.clone(), build.clone());
            async move {
                let handler = {
                    let mut built = built.lock().await;
                    match built.get(&invocation.region) {
                        Some(handler) => handler.clone(),
                        None => {
                            let handler = Arc::new(build(invocation.region.clone()).await);
                            built.insert(invocation.region.clone(), handler.clone());
                            handler
                        }
                    }
                };
                let outcome = Box::pin(invoke(&*handler, invocation.payload)).await;
                for line in &outcome.metrics {
                    tracing::info!(target: "emf", "{line}");
                }
                outcome.result.map_err(function_error)
            }
        },
    );
}

/// Registers every Meridian function of `fleet` invoked through the Lambda API (upload,
/// replica, rollout, failover, failback), reaching AWS through `clients`; the failback
/// function of each region gets its front door's URL, as the template's `FRONT_DOOR_URL`,
/// and the replica function hashes at most `replica_hash_budget` bytes per invocation.
pub fn register(
    functions: &Functions,
    fleet: &Fleet,
    clients: ClientFactory,
    front_door_urls: &BTreeMap<String, String>,
    replica_hash_budget: u64,
) {
    let for_role =
        |role: FunctionRole| (Arc::new(fleet.clone()), clients.clone().for_function(role));

    let (shared_fleet, clients_of) = for_role(FunctionRole::Upload);
    host(functions, fleet, FunctionRole::Upload, move |_region| {
        let (fleet, clients) = (shared_fleet.clone(), clients_of.clone());
        async move {
            let arn = state_machine_arn(&fleet);
            meridian_upload::UploadDeps::new(&clients, (*fleet).clone(), arn).await
        }
    });

    let (shared_fleet, clients_of) = for_role(FunctionRole::Replica);
    host(functions, fleet, FunctionRole::Replica, move |region| {
        let (fleet, clients) = (shared_fleet.clone(), clients_of.clone());
        async move {
            let mut deps =
                meridian_replica::ReplicaDeps::new(&clients, (*fleet).clone(), region).await;
            deps.hash_budget = replica_hash_budget;
            deps
        }
    });

    let (shared_fleet, clients_of) = for_role(FunctionRole::DeployWatch);
    host(functions, fleet, FunctionRole::DeployWatch, move |region| {
        let (fleet, clients) = (shared_fleet.clone(), clients_of.clone());
        async move {
            meridian_deploy_watch::AwsDeployWatch::new(&clients, (*fleet).clone(), region).await
        }
    });

    let (shared_fleet, clients_of) = for_role(FunctionRole::Rollout);
    host(functions, fleet, FunctionRole::Rollout, move |_region| {
        let (fleet, clients) = (shared_fleet.clone(), clients_of.clone());
        async move {
            meridian_rollout::RolloutDeps::new(
                (*fleet).clone(),
                clients,
                state_machine_arn(&fleet),
                sagemaker_role_arn(&fleet),
            )
        }
    });

    let (shared_fleet, clients_of) = for_role(FunctionRole::Drill);
    host(functions, fleet, FunctionRole::Drill, move |_region| {
        let (fleet, clients) = (shared_fleet.clone(), clients_of.clone());
        async move { meridian_drill::aws::DrillDeps::new(&clients, (*fleet).clone()).await }
    });

    let (shared_fleet, clients_of) = for_role(FunctionRole::Failover);
    host(functions, fleet, FunctionRole::Failover, move |region| {
        let (fleet, clients) = (shared_fleet.clone(), clients_of.clone());
        async move {
            let deps = HealthDeps::new(&clients, &fleet, &region).await;
            meridian_failover::Failover {
                fleet: (*fleet).clone(),
                region,
                store: deps.store,
                clock: SystemClock,
            }
        }
    });

    let (shared_fleet, clients_of) = for_role(FunctionRole::Failback);
    let urls = Arc::new(front_door_urls.clone());
    host(functions, fleet, FunctionRole::Failback, move |region| {
        let (fleet, clients, urls) = (shared_fleet.clone(), clients_of.clone(), urls.clone());
        async move {
            let deps = HealthDeps::new(&clients, &fleet, &region).await;
            let alarms = CloudWatchAlarms::new(&clients, &region).await;
            let drift = AwsDriftSources::new(&clients, &fleet, &region).await;
            let autoscaling = AasAutoScaling::new(&clients, &region, &fleet.variant_name).await;
            let repair =
                AwsRepairControl::new(&clients, &fleet, &region, Some(state_machine_arn(&fleet)))
                    .await;
            meridian_failback::Failback {
                fleet: (*fleet).clone(),
                front_door: urls.get(&region).cloned(),
                region,
                store: deps.store,
                scaler: deps.scaler,
                alarms,
                probe: HttpFrontDoorProbe::default(),
                clock: SystemClock,
                drift,
                autoscaling,
                repair,
            }
        }
    });
}

/// Registers each region's front door, built on its first request (a cold start) and kept,
/// its EMF lines logged as [`host`] logs the other functions'.
pub fn register_front_doors(front_doors: &FrontDoors, fleet: &Fleet, clients: ClientFactory) {
    let clients = clients.for_function(FunctionRole::FrontDoor);
    for region in fleet.region_names() {
        let built: Arc<OnceCell<AwsFrontDoor>> = Arc::default();
        let (fleet, clients, region_name) = (fleet.clone(), clients.clone(), region.to_owned());
        front_doors.register(region, move |request| {
            let (built, fleet, clients, region) = (
                built.clone(),
                fleet.clone(),
                clients.clone(),
                region_name.clone(),
            );
            async move {
                let door = built
                    .get_or_init(|| AwsFrontDoor::from_clients(&clients, fleet, &region))
                    .await;
                let answer = Box::pin(door.respond(request)).await;
                for line in &answer.metrics {
                    tracing::info!(target: "emf", "{line}");
                }
                answer.response
            }
        });
    }
}
