//! Drift repair: putting the registry's active version back on one drifted region's
//! endpoint, where the fleet file allows it (`[drift] repair = true`). Pure: the primary
//! region's failback tick reads the facts (every region's record as its own table replica
//! has them, the registry's active version, the fleet's rollout lock, the region's last
//! repair, the drill lock) and [`decide`] says what to do; the adapters act.
//!
//! A repair is a run of the rollout state machine with a one-region `regions` list and a
//! `repair` input ([`RepairTask`]): the same guardrails as a rollout (image check, SageMaker's
//! rules, blue/green `UpdateEndpoint` with the region's alarms as auto-rollback, the wait,
//! the smoke test, a rollback on failure), but its own progress (the [`Repair`] record at
//! `endpoints` / `repair#<region>`, not the version's per-region progress, which the
//! original rollout filled), its own execution name ([`execution_name`]), and an end that
//! never touches the active pointer or the version's status. It holds the fleet's rollout
//! lock while it runs, so it never runs beside a rollout or another repair.
//!
//! One repair per drift: the drift's `since` names it (execution name, record), so a drift
//! seen again by later checks, or a duplicate tick, starts nothing new, and a repair that
//! failed is not retried for the same drift (it stays reported until someone acts).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failover::{HealthState, RegionHealth};
use crate::region_progress::RegionProgress;
use crate::rollout_lock::RolloutLock;

/// Where a repair is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairStatus {
    Running,
    /// The region serves the active version again (its next drift check clears the drift).
    Succeeded,
    /// The repair's rollout failed (and rolled the region back to what it served before the
    /// repair); the drift stays reported and is not repaired again.
    Failed,
}

/// The record of a region's latest repair (`endpoints` / `repair#<region>`, written in
/// the control region's replica: by the primary's failback tick when it starts, by the
/// rollout function's tasks as it goes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    pub region: String,
    /// The `since` of the drift it repairs: its identity.
    pub drift_since: DateTime<Utc>,
    /// The active version it puts back.
    pub model: String,
    pub version: String,
    pub digest: String,
    /// Its Step Functions execution ([`execution_name`]).
    pub execution: String,
    pub status: RepairStatus,
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub ended: Option<DateTime<Utc>>,
    /// What differed when it started, then why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// The region's progress through the rollout's steps, for this repair only.
    #[serde(default)]
    pub progress: RegionProgress,
}

impl Repair {
    /// The `repair` input of the rollout state machine for this repair.
    pub fn task(&self) -> RepairTask {
        RepairTask {
            region: self.region.clone(),
            drift_since: self.drift_since,
        }
    }
}

/// The `repair` field of the rollout state machine's input and of each task's payload
/// (`null` for a rollout): which region's repair, of which drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairTask {
    pub region: String,
    pub drift_since: DateTime<Utc>,
}

/// The Step Functions execution name of the repair of `region`'s drift since `since`:
/// the same for every tick that sees the same drift, so Step Functions itself refuses a
/// second one, and never a rollout's (those are deployment names).
pub fn execution_name(region: &str, since: DateTime<Utc>) -> String {
    format!("repair-{region}-{}", since.timestamp_millis())
}

/// The version the registry says every region serves: the active version of the model
/// committed last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveVersion {
    pub model: String,
    pub version: String,
    pub digest: String,
}

/// What the primary's tick knows about one region when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// `[drift] repair` of the fleet file.
    pub allowed: bool,
    pub region: &'a str,
    /// The region's record (its drift and whether it is drained), as replicated.
    pub health: Option<&'a RegionHealth>,
    pub active: Option<&'a ActiveVersion>,
    pub lock: &'a RolloutLock,
    /// The region's latest repair record.
    pub last: Option<&'a Repair>,
    /// The drill holding the drill lock, if one runs.
    pub drill: Option<&'a str>,
}

/// What to do about one region.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to repair (and why).
    Nothing(String),
    /// A repair is due but must wait (and why); a later tick decides again.
    Wait(String),
    /// Take the fleet's lock for this repair, record it and start its execution.
    Start(Repair),
    /// The lock already names this repair (a tick that took it may have stopped before
    /// starting the execution): record it if it is not, start it (idempotently).
    Resume(Repair),
}

/// Decides whether `facts.region` is repaired now. Pure.
pub fn decide(facts: &Facts<'_>, now: DateTime<Utc>) -> Decision {
    if !facts.allowed {
        return Decision::Nothing("the fleet file does not allow repairs ([drift] repair)".into());
    }
    let Some(health) = facts.health else {
        return Decision::Nothing("no drift recorded".into());
    };
    let Some(drift) = &health.drift else {
        return Decision::Nothing("no drift recorded".into());
    };
    let Some(active) = facts.active else {
        return Decision::Nothing("no active version to put back".into());
    };
    let expected = format!("{}/{}", active.model, active.version);
    if drift.expected != expected {
        return Decision::Nothing(format!(
            "the drift was judged against {}, but {expected} is active now: the region's next check judges again",
            drift.expected
        ));
    }
    let execution = execution_name(facts.region, drift.since);
    if let Some(last) = facts.last.filter(|r| r.drift_since == drift.since) {
        match last.status {
            RepairStatus::Succeeded => {
                return Decision::Nothing(
                    "repaired; the region's next check clears the drift".into(),
                )
            }
            RepairStatus::Failed => {
                return Decision::Nothing(format!(
                    "the repair of this drift failed ({}); it is not retried: repair by hand or roll out again",
                    last.reason.as_deref().unwrap_or("no reason recorded")
                ))
            }
            RepairStatus::Running => {}
        }
    }
    let planned = |started: DateTime<Utc>| Repair {
        region: facts.region.to_owned(),
        drift_since: drift.since,
        model: active.model.clone(),
        version: active.version.clone(),
        digest: active.digest.clone(),
        execution: execution.clone(),
        status: RepairStatus::Running,
        started,
        ended: None,
        reason: Some(drift.describe()),
        progress: RegionProgress::default(),
    };
    if let Some(holder) = &facts.lock.holder {
        if holder.repair.as_deref() == Some(facts.region)
            && holder.execution.as_deref() == Some(execution.as_str())
        {
            return Decision::Resume(planned(holder.since));
        }
    }
    if facts
        .last
        .is_some_and(|r| r.drift_since == drift.since && r.status == RepairStatus::Running)
    {
        return Decision::Nothing(format!(
            "repair {execution} is recorded running but no longer holds the lock: its execution ended without recording its end (see meridian rollout status)"
        ));
    }
    if health.state != HealthState::Healthy {
        return Decision::Wait(format!(
            "the region is out of service ({:?}); it is repaired once back in service",
            health.state
        ));
    }
    if let Some(drill) = facts.drill {
        return Decision::Wait(format!("drill {drill} is running"));
    }
    if let Some(holder) = &facts.lock.holder {
        let what = match &holder.repair {
            Some(region) => format!("the repair of {region}"),
            None => format!("the rollout of {}/{}", holder.model, holder.version),
        };
        return Decision::Wait(format!("{what} holds the fleet's lock"));
    }
    if !facts.lock.queue.is_empty() {
        return Decision::Wait("versions are queued for the fleet's lock".into());
    }
    Decision::Start(planned(now))
}

/// Whether `holder` of the lock is the repair of `region` recorded in `repair`.
pub fn holds_lock(lock: &RolloutLock, repair: &Repair) -> bool {
    lock.holder.as_ref().is_some_and(|h| {
        h.repair.as_deref() == Some(repair.region.as_str())
            && h.execution.as_deref() == Some(repair.execution.as_str())
    })
}

#[cfg(test)]
mod tests;
