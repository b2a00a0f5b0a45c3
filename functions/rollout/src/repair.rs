//! The rollout's tasks in a drift repair's execution (their input carries `repair`,
//! [`meridian::repair`]): the region's progress is the repair's own record, not the
//! version's (which the original rollout filled, and `deploy` would read as "already
//! deploying"), and the end records the repair's outcome without touching the active
//! pointer or the version's status. The lock is released, and the next queued version
//! started, as at a rollout's end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use meridian::metrics::{REPAIR_FAILED, REPAIR_SUCCEEDED};
use meridian::registry::VersionRecord;
use meridian::registry_store::RolloutRegistry;
use meridian::repair::{Repair, RepairStatus, RepairTask};
use meridian::rollout::RolloutError;
use serde_json::{json, Value};

use crate::bookkeeping::{failure_reason, start_next};
use crate::stores::RolloutStores;
use crate::{RolloutDeps, TaskInput};

/// The repair a task belongs to, checked against the task: its record must be the region's
/// latest (a newer drift's repair supersedes it) and name the task's version and region.
pub async fn load(
    control: &impl RolloutRegistry,
    task: &RepairTask,
    input: &TaskInput,
) -> Result<Repair, RolloutError> {
    let repair = control
        .repair(&task.region)
        .await?
        .filter(|r| r.drift_since == task.drift_since)
        .ok_or_else(|| {
            RolloutError::Invalid(format!(
                "no repair of {} for the drift since {} is recorded",
                task.region, task.drift_since
            ))
        })?;
    let region_matches = input.region.as_deref().is_none_or(|r| r == task.region);
    if repair.model != input.model || repair.version != input.version || !region_matches {
        return Err(RolloutError::Invalid(format!(
            "the repair of {} puts back {}/{}, not this task's {}/{} in {:?}",
            task.region, repair.model, repair.version, input.model, input.version, input.region
        )));
    }
    Ok(repair)
}

/// The version's record as the repair's tasks read it: the region's progress is the
/// repair's.
pub fn as_repaired(mut record: VersionRecord, repair: &Repair) -> VersionRecord {
    record.regions = BTreeMap::from([(repair.region.clone(), repair.progress.clone())]);
    record
}

/// The repair's `commit`: the region serves the active version again. Records the repair
/// succeeded (the region's next drift check clears the drift), releases the lock.
pub async fn succeed(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    task: &RepairTask,
    metrics: &mut Vec<String>,
) -> Result<Value, RolloutError> {
    let now = Utc::now();
    let ended_now = AtomicBool::new(false);
    control
        .update_repair(task, |r| {
            ended_now.store(r.status == RepairStatus::Running, Ordering::Relaxed);
            if r.status == RepairStatus::Running {
                r.status = RepairStatus::Succeeded;
                r.ended = Some(now);
            }
        })
        .await?;
    if ended_now.load(Ordering::Relaxed) {
        metrics.push(REPAIR_SUCCEEDED.line(1.0, [task.region.as_str()], now));
        tracing::info!(region = %task.region, model = %record.model, version = %record.version, "drift repaired");
    }
    let next = start_next(deps, control, record).await?;
    Ok(
        json!({ "repaired": task.region, "active": format!("{}/{}", record.model, record.version), "next": next }),
    )
}

/// The repair's `mark_failed`: records the repair failed with the error that stopped it
/// and whether the region is back on what it served before; the version stays active and
/// the drift reported. Releases the lock.
pub async fn fail(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    task: &RepairTask,
    error: Option<&Value>,
    metrics: &mut Vec<String>,
) -> Result<Value, RolloutError> {
    let reason = format!(
        "{}; {}",
        failure_reason(error),
        meridian::rollout_end::regions_sentence(record)
    );
    let reason = meridian::bounded::text(&reason, meridian::bounded::MAX_REASON_BYTES);
    let now = Utc::now();
    let ended_now = AtomicBool::new(false);
    control
        .update_repair(task, |r| {
            ended_now.store(r.status == RepairStatus::Running, Ordering::Relaxed);
            if r.status == RepairStatus::Running {
                r.status = RepairStatus::Failed;
                r.reason = Some(reason.clone());
                r.ended = Some(now);
            }
        })
        .await?;
    if ended_now.load(Ordering::Relaxed) {
        metrics.push(REPAIR_FAILED.line(1.0, [task.region.as_str()], now));
        tracing::warn!(region = %task.region, %reason, "drift repair failed");
    }
    let next = start_next(deps, control, record).await?;
    Ok(json!({ "repair_failed": task.region, "reason": reason, "next": next }))
}
