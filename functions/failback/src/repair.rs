//! The tick's drift repair, in the primary region only, where the fleet file allows it
//! (`[drift] repair = true`). Every region's drift check records its drift in its own
//! record in its own table replica; the global table brings the records here, and this
//! tick reads them (with the fleet's lock, the regions' last repairs and the drill lock,
//! all in this region's replica), lets [`meridian::repair::decide`] judge each region, and
//! starts at most one repair: the lock taken first (so never beside a rollout or another
//! repair), then its record, then its execution, each step idempotent so that a tick
//! that stops half way is finished by the next ([`Decision::Resume`]).

pub mod aws;

use std::collections::BTreeMap;
use std::future::Future;

use meridian::fleet::Fleet;
use meridian::health::{Clock, HealthError, HealthStore};
use meridian::metrics::REPAIR_STARTED;
use meridian::repair::{decide, holds_lock, ActiveVersion, Decision, Facts, Repair};
use meridian::rollout_lock::RolloutLock;
use serde_json::{json, Value};

/// What the control region knows, read in its own table replica.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlFacts {
    /// The registry's active version of the model committed last.
    pub active: Option<ActiveVersion>,
    pub lock: RolloutLock,
    /// Each region's latest repair.
    pub repairs: BTreeMap<String, Repair>,
    /// The drill holding the drill lock.
    pub drill: Option<String>,
}

/// The registry, the drill lock and Step Functions, as the primary's tick uses them.
pub trait RepairControl: Send + Sync {
    fn facts(&self) -> impl Future<Output = Result<ControlFacts, HealthError>> + Send;
    /// Takes the fleet's lock for `repair` if it is free; the lock as it now stands.
    fn acquire(
        &self,
        repair: &Repair,
    ) -> impl Future<Output = Result<RolloutLock, HealthError>> + Send;
    /// Records `repair` as its region's latest (kept as it is if it already is).
    fn begin(&self, repair: &Repair) -> impl Future<Output = Result<(), HealthError>> + Send;
    /// Starts the repair's execution (idempotently: its name is the repair's).
    fn start(&self, repair: &Repair) -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// Runs the repair pass if this tick is the primary's and repairs are allowed. Never fails
/// the tick: a failure is logged and reported, and the next tick decides again.
pub async fn run<S: HealthStore, R: RepairControl, K: Clock>(
    fleet: &Fleet,
    region: &str,
    store: &S,
    control: &R,
    clock: &K,
) -> (Value, Vec<String>) {
    if !fleet.drift.repair || region != fleet.primary_region {
        return (Value::Null, Vec::new());
    }
    match repair(fleet, store, control, clock).await {
        Ok(result) => result,
        Err(error) => {
            tracing::warn!(%error, "drift repair pass failed; the next tick decides again");
            (json!({ "unchecked": error.to_string() }), Vec::new())
        }
    }
}

async fn repair<S: HealthStore, R: RepairControl, K: Clock>(
    fleet: &Fleet,
    store: &S,
    control: &R,
    clock: &K,
) -> Result<(Value, Vec<String>), HealthError> {
    let mut facts = control.facts().await?;
    let mut summary = serde_json::Map::new();
    let mut metrics = Vec::new();
    for spec in &fleet.regions {
        let health = store.load(&spec.name).await?.map(|stored| stored.value);
        let decision = decide(
            &Facts {
                allowed: fleet.drift.repair,
                region: &spec.name,
                health: health.as_ref(),
                active: facts.active.as_ref(),
                lock: &facts.lock,
                last: facts.repairs.get(&spec.name),
                drill: facts.drill.as_deref(),
            },
            clock.now(),
        );
        let outcome = match decision {
            Decision::Nothing(why) => {
                if health.as_ref().is_some_and(|h| h.drift.is_some()) {
                    json!({ "nothing": why })
                } else {
                    continue;
                }
            }
            Decision::Wait(why) => {
                tracing::info!(region = %spec.name, %why, "drift repair waits");
                json!({ "waiting": why })
            }
            Decision::Start(repair) => {
                let lock = control.acquire(&repair).await?;
                let took = holds_lock(&lock, &repair);
                facts.lock = lock;
                if !took {
                    json!({ "waiting": "another tick or a rollout took the lock first" })
                } else {
                    control.begin(&repair).await?;
                    control.start(&repair).await?;
                    metrics.push(REPAIR_STARTED.line(1.0, [spec.name.as_str()], clock.now()));
                    tracing::warn!(region = %spec.name, execution = %repair.execution, version = %format!("{}/{}", repair.model, repair.version), "drift repair started");
                    json!({ "started": repair.execution })
                }
            }
            Decision::Resume(repair) => {
                control.begin(&repair).await?;
                control.start(&repair).await?;
                json!({ "running": repair.execution })
            }
        };
        summary.insert(spec.name.clone(), outcome);
    }
    Ok((Value::Object(summary), metrics))
}

#[cfg(test)]
mod tests;
