//! Meridian's own Lambda functions, hosted in-process by the local cloud with the same
//! handlers and the same adapter wiring as in Lambda, their clients pointed at the gateway.

use std::collections::HashMap;
use std::sync::Arc;

use meridian::adapters::HealthDeps;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::names::{function_name, FunctionRole};
use tokio::sync::Mutex;

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

fn function_error(error: meridian::health::HealthError) -> FunctionError {
    FunctionError::new(error.error_name(), error.to_string())
}

/// Registers the failover and failback functions of `fleet`, reaching AWS through `clients`.
pub fn register(functions: &Functions, fleet: &Fleet, clients: ClientFactory) {
    let deps = DepsByRegion {
        clients,
        fleet: Arc::new(fleet.clone()),
        built: Arc::default(),
    };

    let failover = deps.clone();
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

    let failback = deps;
    functions.register(
        function_name(&fleet.name, FunctionRole::Failback),
        move |invocation: Invocation| {
            let deps = failback.clone();
            async move {
                let regional = deps.get(&invocation.region).await;
                let (result, metrics) = meridian_failback::handle(
                    &deps.fleet,
                    &invocation.region,
                    &regional.store,
                    &regional.dns,
                    &regional.scaler,
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
