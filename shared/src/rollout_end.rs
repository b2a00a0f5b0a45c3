//! The end of a rollout's hold on the fleet's lock: handing the lock to the next queued
//! version (after a commit or a failure), and releasing it for an execution that ended
//! without doing so itself (stopped, timed out, over Step Functions' history limit, or
//! failed outside the state machine's `Catch`). The rollout function does the latter on
//! Step Functions' "Execution Status Change" event; the upload function on finding the
//! holder's execution ended when a version queues, which heals a lost event.

use chrono::Utc;
use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::registry::{VersionRecord, VersionStatus};
use crate::registry_store::LockRegistry;
use crate::repair::RepairStatus;
use crate::rollout::RolloutError;
use crate::rollout_executions::RolloutExecutions;
pub use crate::rollout_executions::{
    ended_status, execution_arn, ExecutionStatusChange, ENDED_WITHOUT_SUCCESS,
};
use crate::rollout_lock::RolloutLock;

/// The regions the version's rollout had started deploying to and that are not recorded
/// back on their previous configuration: what the terminal message of a failed or
/// abandoned rollout names.
pub fn regions_not_back(record: &VersionRecord) -> Vec<String> {
    record
        .regions
        .iter()
        .filter(|(_, p)| p.deploy_started.is_some() && p.rolled_back.is_none())
        .map(|(region, _)| region.clone())
        .collect()
}

/// The sentence a failure reason ends with about the regions.
pub fn regions_sentence(record: &VersionRecord) -> String {
    let not_back = regions_not_back(record);
    if not_back.is_empty() {
        "every region is on its previous version".into()
    } else {
        format!(
            "not back on the previous version: {} (roll back by hand: see meridian rollout status)",
            not_back.join(", ")
        )
    }
}

/// What to do about an ended execution, given the lock's holder and its record.
#[derive(Debug, Clone, PartialEq)]
pub enum EndedDecision {
    /// The execution does not hold the lock (already released, or another's): nothing.
    Ignore(&'static str),
    /// Release the lock; mark the version failed first unless it committed.
    Release { mark_failed: bool },
}

/// Decides for an execution named `execution` that ended with `status`; `holder` is the
/// lock holder's record and the execution name the lock recorded for it. Pure.
pub fn decide_ended(
    execution: &str,
    status: &str,
    holder: Option<(&VersionRecord, Option<&str>)>,
) -> EndedDecision {
    if !ENDED_WITHOUT_SUCCESS.contains(&status) && status != "SUCCEEDED" {
        return EndedDecision::Ignore("the execution has not ended");
    }
    let Some((record, lock_execution)) = holder else {
        return EndedDecision::Ignore("no rollout holds the lock");
    };
    let holds = lock_execution == Some(execution) || record.execution.as_deref() == Some(execution);
    if !holds {
        return EndedDecision::Ignore("the execution does not hold the lock");
    }
    EndedDecision::Release {
        mark_failed: !matches!(record.status, VersionStatus::Active | VersionStatus::Failed),
    }
}

/// Releases the lock held by an execution that ended (`status`, with Step Functions'
/// `error`/`cause`) without releasing it: marks its version failed with the reason (and
/// the regions not back), releases the lock and starts the next queued version.
/// Idempotent: an execution that no longer holds the lock changes nothing.
pub async fn release_ended(
    registry: &impl LockRegistry,
    executions: &impl RolloutExecutions,
    fleet: &Fleet,
    ended: &ExecutionStatusChange,
) -> Result<Value, RolloutError> {
    let lock = registry.lock().await?;
    let holder = match &lock.holder {
        Some(h) => registry
            .version(&h.model, &h.version)
            .await?
            .map(|record| (record, h.execution.clone())),
        None => None,
    };
    let decision = decide_ended(
        &ended.name,
        &ended.status,
        holder.as_ref().map(|(r, e)| (r, e.as_deref())),
    );
    let (record, mark_failed) = match (decision, holder) {
        (EndedDecision::Release { mark_failed }, Some((record, _))) => (record, mark_failed),
        (EndedDecision::Ignore(why), _) => {
            return Ok(json!({ "execution": ended.name, "ignored": why }));
        }
        (EndedDecision::Release { .. }, None) => {
            return Ok(json!({ "execution": ended.name, "ignored": "no rollout holds the lock" }));
        }
    };
    if mark_failed {
        let detail = [ended.error.as_deref(), ended.cause.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        let reason = format!(
            "execution {} ended {}{} without finishing the rollout; {}",
            ended.name,
            ended.status,
            if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            },
            regions_sentence(&record)
        );
        let reason = crate::bounded::text(&reason, crate::bounded::MAX_REASON_BYTES);
        registry
            .update_version(&record.model, &record.version, |r| {
                if matches!(r.status, VersionStatus::Active | VersionStatus::Failed) {
                    return;
                }
                r.status = VersionStatus::Failed;
                r.reason = Some(reason.clone());
                r.phases.entry("failed".into()).or_insert_with(Utc::now);
            })
            .await?;
    }
    let repair_region = lock.holder.as_ref().and_then(|h| h.repair.clone());
    if let Some(region) = &repair_region {
        fail_repair(registry, region, ended).await?;
    }
    let next = start_next(registry, executions, fleet, &record).await?;
    tracing::warn!(execution = %ended.name, status = %ended.status, model = %record.model, version = %record.version, "released the lock of an execution that ended without releasing it");
    Ok(json!({
        "execution": ended.name,
        "released": format!("{}/{}", record.model, record.version),
        "failed": mark_failed,
        "repair": repair_region,
        "next": next.map(|(m, v)| format!("{m}/{v}")),
    }))
}

/// Records the repair of `region` run by the ended execution as failed (the version and
/// its active pointer are not the repair's to change); the drift stays reported.
async fn fail_repair(
    registry: &impl LockRegistry,
    region: &str,
    ended: &ExecutionStatusChange,
) -> Result<(), RolloutError> {
    let Some(repair) = registry
        .repair(region)
        .await?
        .filter(|r| r.execution == ended.name && r.status == RepairStatus::Running)
    else {
        return Ok(());
    };
    let reason = format!(
        "execution {} ended {} without finishing the repair",
        ended.name, ended.status
    );
    let now = Utc::now();
    registry
        .update_repair(&repair.task(), |r| {
            if r.status == RepairStatus::Running {
                r.status = RepairStatus::Failed;
                r.reason = Some(reason.clone());
                r.ended = Some(now);
            }
        })
        .await?;
    Ok(())
}

/// Releases the lock `record` holds and starts the rollout of the version it passes to,
/// if any (returned). Idempotent, like the release.
pub async fn start_next(
    registry: &impl LockRegistry,
    executions: &impl RolloutExecutions,
    fleet: &Fleet,
    record: &VersionRecord,
) -> Result<Option<(String, String)>, RolloutError> {
    let Some((model, version)) = registry.release(&record.model, &record.version).await? else {
        return Ok(None);
    };
    let queued = registry.version(&model, &version).await?.ok_or_else(|| {
        RolloutError::Invalid(format!(
            "queued version {model}/{version} is not registered"
        ))
    })?;
    start(registry, executions, fleet, &queued).await?;
    Ok(Some((model, version)))
}

/// Starts (idempotently) the rollout of the version holding the lock and records its
/// execution in the version and in the lock.
pub async fn start(
    registry: &impl LockRegistry,
    executions: &impl RolloutExecutions,
    fleet: &Fleet,
    record: &VersionRecord,
) -> Result<String, RolloutError> {
    let execution = executions
        .start_rollout(fleet, &record.model, &record.version, &record.digest)
        .await?;
    registry
        .update_version(&record.model, &record.version, |r| {
            r.status = VersionStatus::RollingOut;
            r.execution = Some(execution.clone());
            r.reason = None;
            r.phases
                .entry("rollout_started".into())
                .or_insert_with(Utc::now);
        })
        .await?;
    registry
        .record_lock_execution(&record.model, &record.version, &execution)
        .await?;
    Ok(execution)
}

/// Heals a lost "Execution Status Change" event: when the lock's holder has an execution
/// that ended without releasing it, releases it (and starts the next queued version) as
/// the event would have ([`release_ended`]). What was released, if anything. Run by the
/// upload of a version that would queue behind the holder, and by the rollout function's
/// schedule, so a lost event costs at most one period even when nothing is uploaded.
pub async fn heal_ended_holder(
    registry: &impl LockRegistry,
    executions: &impl RolloutExecutions,
    fleet: &Fleet,
    lock: &RolloutLock,
) -> Result<Option<Value>, RolloutError> {
    let Some(execution) = lock.holder.as_ref().and_then(|h| h.execution.as_deref()) else {
        return Ok(None);
    };
    let Some(ended) = executions.ended(execution).await? else {
        return Ok(None);
    };
    let released = release_ended(registry, executions, fleet, &ended).await?;
    tracing::warn!(%released, "healed a lock whose execution ended without releasing it");
    Ok(Some(released))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{RegionProgress, RegisteredManifest};
    use std::collections::BTreeMap;

    fn record(status: VersionStatus, execution: Option<&str>) -> VersionRecord {
        VersionRecord {
            model: "llama".into(),
            version: "v1".into(),
            digest: "d".into(),
            manifest: RegisteredManifest {
                key: "k".into(),
                version_id: None,
                size: 0,
                sha256: String::new(),
                files: 0,
                bytes: 0,
                serving: serde_json::from_value(json!({
                    "image": "i", "instance_type": "ml.g5.xlarge", "instance_count": 1, "variant_name": "primary", "environment": {}, "images": {}
                }))
                .unwrap_or_else(|e| panic!("{e}")),
            },
            status,
            phases: BTreeMap::new(),
            regions: BTreeMap::new(),
            execution: execution.map(str::to_owned),
            reason: None,
        }
    }

    #[test]
    fn only_the_holders_ended_execution_releases_the_lock() {
        let rolling = record(VersionStatus::RollingOut, Some("e1"));
        assert_eq!(
            decide_ended("e1", "ABORTED", Some((&rolling, None))),
            EndedDecision::Release { mark_failed: true }
        );
        assert_eq!(
            decide_ended("e1", "TIMED_OUT", Some((&rolling, Some("e1")))),
            EndedDecision::Release { mark_failed: true }
        );
        assert!(matches!(
            decide_ended("e0", "ABORTED", Some((&rolling, Some("e1")))),
            EndedDecision::Ignore(_)
        ));
        assert!(matches!(
            decide_ended("e1", "RUNNING", Some((&rolling, Some("e1")))),
            EndedDecision::Ignore(_)
        ));
        assert!(matches!(
            decide_ended("e1", "FAILED", None),
            EndedDecision::Ignore(_)
        ));
        let committed = record(VersionStatus::Active, Some("e1"));
        assert_eq!(
            decide_ended("e1", "FAILED", Some((&committed, Some("e1")))),
            EndedDecision::Release { mark_failed: false },
            "a commit that did not release: release, keep it active"
        );
    }

    #[test]
    fn the_regions_not_back_are_those_deploying_without_a_rollback() {
        let mut r = record(VersionStatus::Failed, None);
        let started = Some(Utc::now());
        r.regions.insert("a".into(), RegionProgress::default());
        r.regions.insert(
            "b".into(),
            RegionProgress {
                deploy_started: started,
                rolled_back: started,
                ..RegionProgress::default()
            },
        );
        r.regions.insert(
            "c".into(),
            RegionProgress {
                deploy_started: started,
                ..RegionProgress::default()
            },
        );
        assert_eq!(regions_not_back(&r), ["c"]);
        assert!(regions_sentence(&r).contains("not back on the previous version: c"));
    }
}
