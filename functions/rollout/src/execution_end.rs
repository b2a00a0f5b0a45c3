//! The rollout function's second event: Step Functions' "Execution Status Change" for a
//! rollout execution that ended `ABORTED`, `TIMED_OUT` or `FAILED` (the template's rule).
//! An execution that ends that way without its last task (stopped, timed out, over the
//! history limit, failed outside the `Catch`) never released the fleet's lock: release
//! it, mark the version failed and start the next queued version
//! ([`meridian::rollout_end::release_ended`]). Idempotent; late or repeated events and
//! events of executions that released the lock themselves change nothing. EventBridge
//! delivers that event at least once but may still lose one (a target failing every
//! retry), so the function's schedule (`names::ROLLOUT_RECONCILE_SCHEDULE`) looks at the
//! lock's holder too and heals what a lost event left
//! ([`meridian::rollout_end::heal_ended_holder`]).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use meridian::registry_store::LockRegistry;
use meridian::rollout::RolloutError;
use meridian::rollout_end::{self, ExecutionStatusChange};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::stores::RolloutStores;
use crate::{RolloutDeps, TaskInput};

/// What the rollout function is invoked with: a state machine task, the EventBridge event
/// of an execution's end, or its schedule's tick (told apart by EventBridge's
/// `detail-type`).
#[derive(Debug)]
pub enum RolloutEvent {
    Task(TaskInput),
    ExecutionEnded(EventBridgeEvent<ExecutionStatusChange>),
    Scheduled(EventBridgeEvent<Value>),
}

/// EventBridge's `detail-type` of a scheduled rule's event.
const SCHEDULED_EVENT: &str = "Scheduled Event";

impl<'de> Deserialize<'de> for RolloutEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.get("detail-type").and_then(Value::as_str) == Some(SCHEDULED_EVENT) {
            serde_json::from_value(value)
                .map(RolloutEvent::Scheduled)
                .map_err(serde::de::Error::custom)
        } else if value.get("detail-type").is_some() {
            serde_json::from_value(value)
                .map(RolloutEvent::ExecutionEnded)
                .map_err(serde::de::Error::custom)
        } else {
            serde_json::from_value(value)
                .map(RolloutEvent::Task)
                .map_err(serde::de::Error::custom)
        }
    }
}

/// Handles one execution's end; events of other state machines are refused as invalid.
pub async fn handle(
    deps: &RolloutDeps<impl RolloutStores>,
    event: &EventBridgeEvent<ExecutionStatusChange>,
) -> Result<Value, RolloutError> {
    let ended = &event.detail;
    if ended.state_machine_arn != deps.state_machine_arn {
        return Err(RolloutError::Invalid(format!(
            "an execution of {}, not of the rollout state machine {}",
            ended.state_machine_arn, deps.state_machine_arn
        )));
    }
    let (registry, executions) = control_stores(deps).await;
    rollout_end::release_ended(&registry, &executions, &deps.fleet, ended).await
}

/// The schedule's tick: releases the lock of a holder whose execution has ended, as its
/// lost status event would have. A running holder, or none, is left alone.
pub async fn reconcile(deps: &RolloutDeps<impl RolloutStores>) -> Result<Value, RolloutError> {
    let (registry, executions) = control_stores(deps).await;
    let lock = registry.lock().await?;
    let healed = rollout_end::heal_ended_holder(&registry, &executions, &deps.fleet, &lock).await?;
    Ok(match healed {
        Some(released) => released,
        None => json!({ "lock": "nothing to heal" }),
    })
}

/// The registry and the executions in the control (primary) region.
async fn control_stores<S: RolloutStores>(deps: &RolloutDeps<S>) -> (S::Registry, S::Executions) {
    (
        deps.registry(&deps.fleet.primary_region).await,
        deps.stores.executions().await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The event as Step Functions sends it to EventBridge.
    fn event(status: &str) -> Value {
        json!({
            "version": "0",
            "id": "315c1398-40ff-a850-213b-158f73e60175",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": "123456789012",
            "time": "2026-12-07T01:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:states:us-east-1:123456789012:execution:f-rollout:e1"],
            "detail": {
                "executionArn": "arn:aws:states:us-east-1:123456789012:execution:f-rollout:e1",
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:f-rollout",
                "name": "e1",
                "status": status,
                "startDate": 1_800_000_000_000u64,
                "stopDate": 1_800_000_100_000u64,
                "input": "{}",
                "output": null,
                "inputDetails": { "included": true },
                "outputDetails": null,
                "error": null,
                "cause": null
            }
        })
    }

    #[test]
    fn status_change_events_and_task_inputs_are_told_apart() {
        match serde_json::from_value::<RolloutEvent>(event("ABORTED")) {
            Ok(RolloutEvent::ExecutionEnded(e)) => {
                assert_eq!(e.detail.name, "e1");
                assert_eq!(e.detail.status, "ABORTED");
            }
            other => panic!("{other:?}"),
        }
        let task = json!({ "task": "commit", "model": "m", "version": "v" });
        assert!(matches!(
            serde_json::from_value::<RolloutEvent>(task),
            Ok(RolloutEvent::Task(_))
        ));
        let tick: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/events/scheduled-event.json"
        ))
        .expect("fixture");
        assert!(matches!(
            serde_json::from_value::<RolloutEvent>(tick),
            Ok(RolloutEvent::Scheduled(_))
        ));
        let broken =
            json!({ "detail-type": "Step Functions Execution Status Change", "detail": {} });
        assert!(serde_json::from_value::<RolloutEvent>(broken).is_err());
    }
}
