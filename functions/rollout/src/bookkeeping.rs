//! The registry's account of a rollout: each region's progress ([`stamp`]), the commit that
//! moves the active pointer ([`commit`]), the failure that ends it ([`mark_failed`]), and
//! the lock handed to the next queued version ([`start_next`]); the write that ends a
//! rollout also yields its metrics ([`crate::timings`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian::registry::{RegionProgress, VersionRecord, VersionStatus};
use meridian::registry_store::RolloutRegistry;
use meridian::rollout::RolloutError;
use serde_json::{json, Value};

use crate::stores::RolloutStores;
use crate::{RolloutDeps, TaskInput};

/// How long the commit waits for one region's replica verdict, read for the metrics
/// only: a slow or unreachable region costs its `replicate` value, never the commit.
const REPLICA_TIME_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Records, once, when a region reached a stage of the rollout.
pub(crate) async fn stamp(
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
    region: &str,
    stage: fn(&mut RegionProgress) -> &mut Option<DateTime<Utc>>,
) -> Result<(), RolloutError> {
    record_progress(control, record, input, region, |p| {
        stage(p).get_or_insert_with(Utc::now);
    })
    .await
}

/// Changes the region's progress where this execution keeps it: the version's record in
/// a rollout, the repair's own in a drift repair.
pub(crate) async fn record_progress(
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
    region: &str,
    change: impl Fn(&mut RegionProgress) + Send + Sync,
) -> Result<(), RolloutError> {
    match &input.repair {
        Some(task) => {
            control
                .update_repair(task, |r| change(&mut r.progress))
                .await?;
        }
        None => {
            control
                .update_version(&record.model, &record.version, |r| {
                    change(r.regions.entry(region.to_owned()).or_default());
                })
                .await?;
        }
    }
    Ok(())
}

/// Moves the active pointer (one conditional write), releases the model's lock and starts
/// the next queued version, if any. The write that first records the version committed
/// also records when each region's replicas were verified, and yields the rollout's
/// metrics: a retried or redelivered commit finds it committed and emits nothing.
pub(crate) async fn commit(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    metrics: &mut Vec<String>,
) -> Result<Value, RolloutError> {
    let active = control.active(&record.model).await?;
    let expected = active
        .as_ref()
        .filter(|a| a.version != record.version)
        .map(|a| a.version.clone());
    if !control
        .commit(
            &record.model,
            &record.version,
            &record.digest,
            expected.as_deref(),
            Utc::now(),
        )
        .await?
    {
        return Err(RolloutError::Retryable(format!(
            "the active pointer of {} moved during the commit; retrying",
            record.model
        )));
    }
    let replicated = if crate::timings::ended(record) {
        BTreeMap::new()
    } else {
        replica_verified_times(deps, record).await
    };
    let ends_rollout = AtomicBool::new(false);
    let committed = control
        .update_version(&record.model, &record.version, |r| {
            ends_rollout.store(!crate::timings::ended(r), Ordering::Relaxed);
            r.status = VersionStatus::Active;
            r.reason = None;
            r.phases
                .entry(crate::timings::COMMITTED.into())
                .or_insert_with(Utc::now);
            record_replicated(r, &replicated);
        })
        .await?;
    if ends_rollout.load(Ordering::Relaxed) {
        metrics.extend(crate::timings::metric_lines(&committed, Utc::now()));
    }
    let next = start_next(deps, control, record).await?;
    Ok(json!({ "model": record.model, "active": record.version, "next": next }))
}

/// When each region's replicas were verified (its ready verdict), read from the region's
/// own replica. Best effort, for the metrics: a region that cannot be read in time is
/// left out (and logged), and the commit goes on.
pub(crate) async fn replica_verified_times(
    deps: &RolloutDeps<impl RolloutStores>,
    record: &VersionRecord,
) -> BTreeMap<String, DateTime<Utc>> {
    let reads = deps.fleet.regions.iter().map(|region| async move {
        let read = tokio::time::timeout(REPLICA_TIME_READ_TIMEOUT, async {
            deps.registry(&region.name)
                .await
                .readiness(&record.model, &record.version, &region.name)
                .await
        })
        .await;
        match read {
            Ok(Ok(readiness)) => readiness
                .filter(|r| r.ready)
                .map(|r| (region.name.clone(), r.at)),
            Ok(Err(error)) => {
                tracing::warn!(region = %region.name, %error, "replica verdict unreadable; no replicate metric for the region");
                None
            }
            Err(_) => {
                tracing::warn!(region = %region.name, "replica verdict not read in time; no replicate metric for the region");
                None
            }
        }
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Records, once per region, when its replicas were verified.
pub(crate) fn record_replicated(
    record: &mut VersionRecord,
    replicated: &BTreeMap<String, DateTime<Utc>>,
) {
    for (region, at) in replicated {
        record
            .regions
            .entry(region.clone())
            .or_default()
            .replicated
            .get_or_insert(*at);
    }
}

/// Marks the version failed with the error that stopped it, releases the lock and starts
/// the next queued version. Like the commit, the write that first ends the rollout
/// yields the metrics of the phases that did complete (no `RolloutDuration`).
pub(crate) async fn mark_failed(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    error: Option<&Value>,
    metrics: &mut Vec<String>,
) -> Result<Value, RolloutError> {
    let mut reason = failure_reason(error);
    let mut replicated = BTreeMap::new();
    for region in &deps.fleet.regions {
        let regional = deps.registry(&region.name).await;
        match regional
            .readiness(&record.model, &record.version, &region.name)
            .await?
        {
            Some(readiness) if readiness.ready => {
                replicated.insert(region.name.clone(), readiness.at);
            }
            Some(readiness) => reason = format!("{reason} ({})", readiness.reason),
            None => {}
        }
    }
    let reason = format!(
        "{reason}; {}",
        meridian::rollout_end::regions_sentence(record)
    );
    let reason = meridian::bounded::text(&reason, meridian::bounded::MAX_REASON_BYTES);
    let ends_rollout = AtomicBool::new(false);
    let failed = control
        .update_version(&record.model, &record.version, |r| {
            ends_rollout.store(!crate::timings::ended(r), Ordering::Relaxed);
            r.status = VersionStatus::Failed;
            r.reason = Some(reason.clone());
            r.phases
                .entry(crate::timings::FAILED.into())
                .or_insert_with(Utc::now);
            record_replicated(r, &replicated);
        })
        .await?;
    if ends_rollout.load(Ordering::Relaxed) {
        metrics.extend(crate::timings::metric_lines(&failed, Utc::now()));
    }
    let next = start_next(deps, control, record).await?;
    Ok(json!({ "model": record.model, "failed": record.version, "reason": reason, "next": next }))
}

/// A readable reason from a Step Functions error object (`Error`, `Cause`).
pub(crate) fn failure_reason(error: Option<&Value>) -> String {
    let Some(error) = error else {
        return "rollout failed".into();
    };
    let name = error["Error"].as_str().unwrap_or("error");
    let cause = error["Cause"].as_str().unwrap_or("");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_else(|| cause.to_owned());
    format!("{name}: {message}")
}

/// Releases the fleet's lock and starts the next queued version (of any model).
pub(crate) async fn start_next(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
) -> Result<Option<String>, RolloutError> {
    let executions = deps.stores.executions().await;
    let next = meridian::rollout_end::start_next(control, &executions, &deps.fleet, record).await?;
    Ok(next.map(|(model, version)| format!("{model}/{version}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_read_lambda_errors() {
        let error = json!({ "Error": "Meridian.SilentRollback", "Cause": "{\"errorType\":\"Meridian.SilentRollback\",\"errorMessage\":\"rolled back\"}" });
        assert_eq!(
            failure_reason(Some(&error)),
            "Meridian.SilentRollback: rolled back"
        );
        assert_eq!(
            failure_reason(Some(&json!({ "Error": "States.Timeout", "Cause": "" }))),
            "States.Timeout: "
        );
        assert_eq!(failure_reason(None), "rollout failed");
    }
}
