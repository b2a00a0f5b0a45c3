//! Meridian's own Lambda functions, hosted in-process by the local cloud with the same
//! handlers and the same adapter wiring as in Lambda, their clients pointed at the gateway.

use std::collections::HashMap;
use std::sync::Arc;

use meridian::adapters::{CloudWatchAlarms, HealthDeps};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::names::{self, function_name, FunctionRole};
use meridian::NamedError;
use tokio::sync::Mutex;

use crate::cloud::LOCAL_ACCOUNT;
use crate::functions::{FunctionError, Functions, Invocation};

/// Health dependencies per region, built on first use.
#[derive(Clone)]
struct DepsByRegion {
    clients: ClientFactory,
    fleet: Arc<Fleet>,
    built: Arc<Mutex<HashMap<String, Arc<HealthDeps>>>>,
}

impl DepsByRegion {
    async fn get(&self, region: &str) -> Arc<HealthDeps> {
        let mut built = self.built.lock().await;
        if let Some(deps) = built.get(region) {
            return deps.clone();
        }
        let deps = Arc::new(HealthDeps::new(&self.clients, &self.fleet, region).await);
        built.insert(region.to_owned(), deps.clone());
        deps
    }
}

/// A handler's error as the Lambda API reports it: under its name.
fn function_error(error: impl NamedError) -> FunctionError {
    FunctionError::new(error.error_name(), error.to_string())
}

/// The rollout state machine's ARN in the local cloud.
pub fn state_machine_arn(fleet: &Fleet) -> String {
    format!(
        "arn:aws:states:{}:{LOCAL_ACCOUNT}:stateMachine:{}",
        fleet.primary_region,
        names::rollout_state_machine_name(&fleet.name)
    )
}

/// The execution role models are created with in the local cloud.
pub fn sagemaker_role_arn(fleet: &Fleet) -> String {
    format!("arn:aws:iam::{LOCAL_ACCOUNT}:role/{}-sagemaker", fleet.name)
}

/// Registers every Meridian function of `fleet` (upload, replica, rollout, failover,
/// failback), reaching AWS through `clients`.
pub fn register(functions: &Functions, fleet: &Fleet, clients: ClientFactory) {
    register_rollout(functions, fleet, &clients);
    let deps_of = |role: FunctionRole| DepsByRegion {
        clients: clients.clone().for_function(role),
        fleet: Arc::new(fleet.clone()),
        built: Arc::default(),
    };

    let failover = deps_of(FunctionRole::Failover);
    functions.register(
        function_name(&fleet.name, FunctionRole::Failover),
        move |invocation: Invocation| {
            let deps = failover.clone();
            async move {
                let regional = deps.get(&invocation.region).await;
                let outcome = meridian_failover::handle(
                    &deps.fleet,
                    &invocation.region,
                    &regional.store,
                    &regional.dns,
                    &regional.scaler,
                    invocation.payload,
                )
                .await
                .map_err(function_error)?;
                for line in &outcome.metrics {
                    tracing::info!(target: "emf", "{line}");
                }
                Ok(outcome.result)
            }
        },
    );

    let failback = deps_of(FunctionRole::Failback);
    functions.register(
        function_name(&fleet.name, FunctionRole::Failback),
        move |invocation: Invocation| {
            let deps = failback.clone();
            async move {
                let regional = deps.get(&invocation.region).await;
                let alarms = CloudWatchAlarms::new(&deps.clients, &invocation.region).await;
                let (result, metrics) = meridian_failback::handle(
                    &deps.fleet,
                    &invocation.region,
                    &regional.store,
                    &regional.dns,
                    &regional.scaler,
                    &alarms,
                    &invocation.payload,
                )
                .await
                .map_err(function_error)?;
                for line in &metrics {
                    tracing::info!(target: "emf", "{line}");
                }
                Ok(result)
            }
        },
    );
}

fn register_rollout(functions: &Functions, fleet: &Fleet, clients: &ClientFactory) {
    let fleet = Arc::new(fleet.clone());

    let (upload_fleet, upload_clients) = (
        fleet.clone(),
        clients.clone().for_function(FunctionRole::Upload),
    );
    functions.register(
        function_name(&fleet.name, FunctionRole::Upload),
        move |invocation: Invocation| {
            let (fleet, clients) = (upload_fleet.clone(), upload_clients.clone());
            async move {
                let arn = state_machine_arn(&fleet);
                let deps = meridian_upload::UploadDeps::new(&clients, (*fleet).clone(), arn).await;
                meridian_upload::handle(&deps, invocation.payload)
                    .await
                    .map_err(function_error)
            }
        },
    );

    let (replica_fleet, replica_clients) = (
        fleet.clone(),
        clients.clone().for_function(FunctionRole::Replica),
    );
    functions.register(
        function_name(&fleet.name, FunctionRole::Replica),
        move |invocation: Invocation| {
            let (fleet, clients) = (replica_fleet.clone(), replica_clients.clone());
            async move {
                let region = invocation.region.clone();
                let deps =
                    meridian_replica::ReplicaDeps::new(&clients, (*fleet).clone(), region).await;
                meridian_replica::handle(&deps, invocation.payload)
                    .await
                    .map_err(function_error)
            }
        },
    );

    let deps = Arc::new(meridian_rollout::RolloutDeps {
        state_machine_arn: state_machine_arn(&fleet),
        sagemaker_role_arn: sagemaker_role_arn(&fleet),
        fleet: (*fleet).clone(),
        clients: clients.clone().for_function(FunctionRole::Rollout),
    });
    functions.register(
        function_name(&fleet.name, FunctionRole::Rollout),
        move |invocation: Invocation| {
            let deps = deps.clone();
            async move {
                let outcome = meridian_rollout::handle(&deps, invocation.payload).await;
                for line in &outcome.metrics {
                    tracing::info!(target: "emf", "{line}");
                }
                outcome.result.map_err(function_error)
            }
        },
    );
}
