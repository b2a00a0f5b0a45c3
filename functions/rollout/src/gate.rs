//! The `gate` task: at each phase boundary (and through Meridian's bake before the
//! commit) the state machine asks whether to go on, hold or abort, as the operator's
//! control record and the fleet's `commit_bake_seconds` decide ([`meridian::operator::gate`]).

use std::time::Duration;

use chrono::Utc;
use meridian::operator::{self, Boundary, Gate};
use meridian::registry::VersionRecord;
use meridian::registry_store::RolloutRegistry;
use meridian::rollout::RolloutError;
use serde_json::{json, Value};

use crate::stores::RolloutStores;
use crate::RolloutDeps;

/// The phase the bake is measured from: recorded by the first gate after the deploy.
pub const BAKING: &str = "baking";

/// Decides at `boundary`. The answer always has `decision`, `wait` and `reason`, so the
/// state machine's `ResultSelector` can read them whatever the decision.
pub async fn gate(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    boundary: Boundary,
    poll_seconds: u64,
) -> Result<Value, RolloutError> {
    let poll = Duration::from_secs(poll_seconds);
    let operator = control
        .operator_control(&record.model, &record.version)
        .await?;
    let now = Utc::now();
    let baking_since = match (boundary, record.phases.get(BAKING)) {
        (Boundary::Deployed, Some(since)) => *since,
        (Boundary::Deployed, None) => control
            .update_version(&record.model, &record.version, |r| {
                r.phases.entry(BAKING.into()).or_insert(now);
            })
            .await?
            .phases
            .get(BAKING)
            .copied()
            .unwrap_or(now),
        _ => now,
    };
    let decision = operator::gate(
        &operator,
        boundary,
        deps.fleet.rollout.commit_bake,
        baking_since,
        now,
        poll,
    );
    tracing::info!(model = %record.model, version = %record.version, ?boundary, ?decision, "gate");
    if operator.paused {
        let held = held_phase(boundary);
        if !record.phases.contains_key(&held) {
            control
                .update_version(&record.model, &record.version, |r| {
                    r.phases.entry(held.clone()).or_insert(now);
                })
                .await?;
        }
    }
    Ok(match decision {
        Gate::Proceed => json!({ "decision": "proceed", "wait": 0, "reason": "" }),
        Gate::Hold { wait } => json!({ "decision": "hold", "wait": wait, "reason": "" }),
        Gate::Abort { reason } => json!({ "decision": "abort", "wait": 0, "reason": reason }),
    })
}

/// The phase recording when a pause first held the rollout at `boundary`
/// (`paused_at_replicated`, ...), shown by `meridian rollout status`.
pub fn held_phase(boundary: Boundary) -> String {
    let name = serde_json::to_value(boundary)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("paused_at_{name}")
}

/// Fails a task of an aborted rollout (`Meridian.Aborted`): the status check after a deploy
/// wait (which the abort wakes, [`crate::deploy_wait`]) and the smoke test, so an abort given
/// while the endpoints deploy rolls them back instead of going on after the deployment.
pub async fn refuse_if_aborted(
    control: &impl RolloutRegistry,
    record: &VersionRecord,
) -> Result<(), RolloutError> {
    let operator = control
        .operator_control(&record.model, &record.version)
        .await?;
    if operator.aborted {
        return Err(RolloutError::Aborted(operator.abort_reason()));
    }
    Ok(())
}
