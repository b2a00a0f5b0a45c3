//! The registry-only tasks (commit, mark failed, gate) and the execution-ended handling on
//! the in-memory registry and executions: the error paths the local cloud cannot produce
//! (a replica unavailable mid-task, a corrupt record, a response lost after a write) and
//! the idempotence Step Functions' retries and EventBridge's redeliveries rely on.

use std::collections::BTreeMap;

use chrono::Utc;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::function::{invoke, Outcome};
use meridian::operator::{OperatorAction, OperatorControl};
use meridian::registry::{
    model_key, rollout_key, ActivePointer, Readiness, RegisteredManifest, RegistryError,
    VersionRecord, VersionStatus, LOCK_PK,
};
use meridian::registry_memory::MemoryRegistry;
use meridian::registry_store::{LockRegistry, RolloutRegistry};
use meridian::rollout::{execution_name, RolloutError};
use meridian::rollout_executions::MemoryExecutions;
use meridian::rollout_lock::{LockHolder, QueuedVersion, RolloutLock};
use meridian::NamedError;
use serde_json::{json, Value};

use crate::stores::RolloutStores;
use crate::RolloutDeps;

const STATE_MACHINE: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:meridian-demo-rollout";
const MODEL: &str = "llama";

/// Each region's registry replica (not replicated to one another) and the executions.
struct Memory {
    replicas: BTreeMap<String, MemoryRegistry>,
    executions: MemoryExecutions,
}

impl RolloutStores for Memory {
    type Registry = MemoryRegistry;
    type Executions = MemoryExecutions;

    async fn registry(&self, region: &str) -> MemoryRegistry {
        self.replicas.get(region).cloned().unwrap_or_default()
    }

    async fn executions(&self) -> MemoryExecutions {
        self.executions.clone()
    }
}

fn deps() -> RolloutDeps<Memory> {
    let fleet = Fleet::from_toml_str(include_str!("../../../fleet.example.toml"))
        .expect("the example fleet is valid");
    let replicas = fleet
        .regions
        .iter()
        .map(|r| (r.name.clone(), MemoryRegistry::default()))
        .collect();
    RolloutDeps {
        clients: ClientFactory::for_endpoint("http://127.0.0.1:9"),
        state_machine_arn: STATE_MACHINE.into(),
        sagemaker_role_arn: "arn:aws:iam::123456789012:role/meridian-sagemaker".into(),
        stores: Memory {
            replicas,
            executions: MemoryExecutions::new(STATE_MACHINE),
        },
        fleet,
    }
}

fn control(deps: &RolloutDeps<Memory>) -> &MemoryRegistry {
    &deps.stores.replicas[&deps.fleet.primary_region]
}

fn record(version: &str, status: VersionStatus) -> VersionRecord {
    VersionRecord {
        model: MODEL.into(),
        version: version.into(),
        digest: format!("digest-{version}"),
        manifest: RegisteredManifest {
            key: meridian::manifest::manifest_key(MODEL, version),
            version_id: None,
            size: 2,
            sha256: "0".repeat(64),
            files: 1,
            bytes: 1,
            serving: serde_json::from_value(json!({
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:1",
                "instance_type": "ml.g5.xlarge",
                "instance_count": 2,
                "environment": {}
            }))
            .expect("serving"),
        },
        status,
        phases: BTreeMap::from([("registered".to_owned(), Utc::now())]),
        regions: BTreeMap::new(),
        execution: None,
        reason: None,
    }
}

fn execution_of(version: &str) -> String {
    execution_name(MODEL, version, &format!("digest-{version}"))
}

/// `v1` active, `v2` rolling out under execution `v2`'s name and holding the lock, `v3`
/// registered and queued behind it.
fn rolling_out_with_one_queued(deps: &RolloutDeps<Memory>) {
    let registry = control(deps);
    let mut v2 = record("v2", VersionStatus::RollingOut);
    v2.execution = Some(execution_of("v2"));
    for r in [
        record("v1", VersionStatus::Active),
        v2,
        record("v3", VersionStatus::Queued),
    ] {
        registry.put_json(&model_key(MODEL), &format!("version#{}", r.version), &r);
    }
    let active = ActivePointer {
        version: "v1".into(),
        digest: "digest-v1".into(),
        previous: None,
        since: Utc::now(),
    };
    registry.put_json(&model_key(MODEL), "active", &active);
    let lock = RolloutLock {
        holder: Some(LockHolder {
            model: MODEL.into(),
            version: "v2".into(),
            since: Utc::now(),
            execution: Some(execution_of("v2")),
            repair: None,
        }),
        queue: vec![QueuedVersion {
            model: MODEL.into(),
            version: "v3".into(),
            queued: Utc::now(),
        }],
    };
    registry.put_json(LOCK_PK, "lock", &lock);
}

async fn task(deps: &RolloutDeps<Memory>, payload: Value) -> Outcome<RolloutError> {
    invoke(deps, payload).await
}

fn error_of(outcome: &Outcome<RolloutError>) -> (&'static str, String) {
    match &outcome.result {
        Err(error) => (error.error_name(), error.to_string()),
        Ok(value) => panic!("expected an error, got {value}"),
    }
}

async fn version(deps: &RolloutDeps<Memory>, v: &str) -> VersionRecord {
    control(deps)
        .version(MODEL, v)
        .await
        .expect("readable")
        .expect("registered")
}

async fn lock(deps: &RolloutDeps<Memory>) -> RolloutLock {
    control(deps).lock().await.expect("readable")
}

#[tokio::test]
async fn a_commit_retried_after_a_lost_response_commits_once() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let commit = json!({ "task": "commit", "model": MODEL, "version": "v2" });

    let first = task(&deps, commit.clone()).await;
    let answer = first.result.expect("committed");
    assert_eq!(answer["next"], "llama/v3");
    assert!(
        !first.metrics.is_empty(),
        "the commit that ends the rollout emits its metrics"
    );
    let active = control(&deps)
        .active(MODEL)
        .await
        .expect("readable")
        .expect("active");
    assert_eq!(
        (active.version.as_str(), active.previous.as_deref()),
        ("v2", Some("v1"))
    );
    assert_eq!(version(&deps, "v2").await.status, VersionStatus::Active);
    assert!(lock(&deps).await.held_by(MODEL, "v3"));
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);
    assert_eq!(version(&deps, "v3").await.status, VersionStatus::RollingOut);

    // The response was lost: Step Functions runs the task again.
    let items = control(&deps).items();
    let again = task(&deps, commit).await;
    assert_eq!(again.result.expect("committed")["next"], Value::Null);
    assert!(again.metrics.is_empty(), "metrics are emitted once");
    assert_eq!(control(&deps).items(), items, "the retry changes nothing");
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);
}

#[tokio::test]
async fn a_commit_that_lost_its_replica_after_moving_the_pointer_finishes_on_retry() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let commit = json!({ "task": "commit", "model": MODEL, "version": "v2" });
    control(&deps).fail(Some((Some("release"), RegistryError::Unavailable)));

    let failed = task(&deps, commit.clone()).await;
    assert_eq!(error_of(&failed).0, "Meridian.Retryable");
    assert!(
        !failed.metrics.is_empty(),
        "the write that ended the rollout keeps its metrics"
    );
    assert!(lock(&deps).await.held_by(MODEL, "v2"), "not released yet");
    assert!(deps.stores.executions.started().is_empty());

    control(&deps).fail(None);
    let retried = task(&deps, commit).await;
    assert_eq!(retried.result.expect("committed")["next"], "llama/v3");
    assert!(retried.metrics.is_empty(), "already emitted");
    let active = control(&deps)
        .active(MODEL)
        .await
        .expect("readable")
        .expect("active");
    assert_eq!(
        active.previous.as_deref(),
        Some("v1"),
        "moved once, from v1"
    );
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);
}

#[tokio::test]
async fn a_replica_unavailable_mid_task_is_retryable_and_changes_nothing() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let region = deps.fleet.regions[1].name.clone();
    deps.stores.replicas[&region].fail(Some((Some("readiness"), RegistryError::Unavailable)));
    let before = control(&deps).items();
    let mark_failed = json!({ "task": "mark_failed", "model": MODEL, "version": "v2", "error": { "Error": "Meridian.DeployFailed", "Cause": "boom" } });

    let failed = task(&deps, mark_failed.clone()).await;
    let (name, message) = error_of(&failed);
    assert_eq!(name, "Meridian.Retryable");
    assert!(message.contains("readiness"), "{message}");
    assert_eq!(control(&deps).items(), before, "nothing written");
    assert!(deps.stores.executions.started().is_empty());

    deps.stores.replicas[&region].fail(None);
    task(&deps, mark_failed)
        .await
        .result
        .expect("marked failed");
    assert_eq!(version(&deps, "v2").await.status, VersionStatus::Failed);
}

#[tokio::test]
async fn a_failed_version_is_marked_once_and_releases_the_lock_once() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let ready_at = Utc::now();
    let region = deps.fleet.regions[1].name.clone();
    deps.stores.replicas[&region].put_json(
        &rollout_key(MODEL, "v2"),
        &format!("ready#{region}"),
        &Readiness {
            ready: true,
            reason: "verified".into(),
            at: ready_at,
        },
    );
    let mark_failed = json!({
        "task": "mark_failed", "model": MODEL, "version": "v2",
        "error": { "Error": "Meridian.DeployFailed", "Cause": "{\"errorMessage\":\"the endpoint failed\"}" }
    });

    let first = task(&deps, mark_failed.clone()).await;
    let answer = first.result.expect("marked failed");
    assert_eq!(answer["next"], "llama/v3");
    assert!(!first.metrics.is_empty());
    let failed = version(&deps, "v2").await;
    assert_eq!(failed.status, VersionStatus::Failed);
    let reason = failed.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("Meridian.DeployFailed: the endpoint failed"),
        "{reason}"
    );
    assert_eq!(failed.regions[&region].replicated, Some(ready_at));
    assert!(lock(&deps).await.held_by(MODEL, "v3"));

    let items = control(&deps).items();
    let again = task(&deps, mark_failed).await;
    assert_eq!(again.result.expect("marked failed")["next"], Value::Null);
    assert!(again.metrics.is_empty());
    assert_eq!(
        control(&deps).items(),
        items,
        "recorded once, released once"
    );
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);
}

#[tokio::test]
async fn a_corrupt_record_is_invalid_with_a_message_naming_it_and_changes_nothing() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    control(&deps).put_item(&model_key(MODEL), "version#v2", "{\"model\": \"llama\"");
    let before = control(&deps).items();
    for payload in [
        json!({ "task": "commit", "model": MODEL, "version": "v2" }),
        json!({ "task": "gate", "model": MODEL, "version": "v2", "boundary": "deployed", "poll_seconds": 30 }),
    ] {
        let outcome = task(&deps, payload).await;
        let (name, message) = error_of(&outcome);
        assert_eq!(name, "Meridian.Invalid", "never retried");
        assert!(message.starts_with("version: "), "{message}");
    }
    control(&deps).put_item(LOCK_PK, "lock", "[]");
    let ended = task(&deps, status_change(&execution_of("v2"), "ABORTED")).await;
    let (name, message) = error_of(&ended);
    assert_eq!(name, "Meridian.Invalid");
    assert!(message.starts_with("lock: "), "{message}");
    let mut expected = before;
    expected.insert((LOCK_PK.into(), "lock".into()), "[]".into());
    assert_eq!(control(&deps).items(), expected);
    assert!(deps.stores.executions.started().is_empty());
}

/// Step Functions' "Execution Status Change" of the rollout state machine.
fn status_change(execution: &str, status: &str) -> Value {
    json!({
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-12-07T01:00:00Z",
        "region": "us-east-1",
        "resources": [meridian::rollout_end::execution_arn(STATE_MACHINE, execution)],
        "detail": {
            "executionArn": meridian::rollout_end::execution_arn(STATE_MACHINE, execution),
            "stateMachineArn": STATE_MACHINE,
            "name": execution,
            "status": status,
            "startDate": 1_800_000_000_000u64,
            "stopDate": 1_800_000_100_000u64,
            "input": "{}",
            "output": null,
            "inputDetails": { "included": true },
            "outputDetails": null,
            "error": "States.Timeout",
            "cause": null
        }
    })
}

#[tokio::test]
async fn an_execution_end_releases_only_the_lock_its_execution_holds_and_only_once() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let before = control(&deps).items();

    let other = task(&deps, status_change("an-older-execution", "ABORTED")).await;
    assert!(other.result.expect("ignored")["ignored"].is_string());
    assert_eq!(
        control(&deps).items(),
        before,
        "another execution's end changes nothing"
    );

    let holder = execution_of("v2");
    let ended = task(&deps, status_change(&holder, "TIMED_OUT")).await;
    assert_eq!(ended.result.expect("released")["next"], "llama/v3");
    let failed = version(&deps, "v2").await;
    assert_eq!(failed.status, VersionStatus::Failed);
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "execution {holder} ended TIMED_OUT (States.Timeout)"
        )),
        "{reason}"
    );
    assert!(lock(&deps).await.held_by(MODEL, "v3"));
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);

    let items = control(&deps).items();
    let redelivered = task(&deps, status_change(&holder, "TIMED_OUT")).await;
    assert!(redelivered.result.expect("ignored")["ignored"].is_string());
    assert_eq!(control(&deps).items(), items);
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);
}

#[tokio::test]
async fn the_schedule_heals_a_lost_execution_end_and_leaves_a_running_holder_alone() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let tick: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/events/scheduled-event.json"
    ))
    .expect("fixture");
    let before = control(&deps).items();

    let running = task(&deps, tick.clone()).await;
    assert_eq!(
        running.result.expect("nothing to heal")["lock"],
        "nothing to heal"
    );
    assert_eq!(control(&deps).items(), before);

    deps.stores.executions.end(&execution_of("v2"), "ABORTED");
    let healed = task(&deps, tick.clone()).await;
    assert_eq!(healed.result.expect("healed")["next"], "llama/v3");
    assert_eq!(version(&deps, "v2").await.status, VersionStatus::Failed);
    assert!(lock(&deps).await.held_by(MODEL, "v3"));
    assert_eq!(deps.stores.executions.started(), [execution_of("v3")]);

    deps.stores.executions.fail(Some(RolloutError::Retryable));
    let unreadable = task(&deps, tick).await;
    assert_eq!(error_of(&unreadable).0, "Meridian.Retryable");
}

#[tokio::test]
async fn a_paused_gate_holds_and_records_the_pause_once_and_an_abort_is_answered() {
    let deps = deps();
    rolling_out_with_one_queued(&deps);
    let mut operator = OperatorControl::default();
    operator
        .apply(OperatorAction::Pause, "ops@example.com", None, Utc::now())
        .expect("a pause applies");
    control(&deps).put_json(&rollout_key(MODEL, "v2"), "control", &operator);
    let gate = json!({ "task": "gate", "model": MODEL, "version": "v2", "boundary": "replicated", "poll_seconds": 30 });

    let held = task(&deps, gate.clone()).await.result.expect("a decision");
    assert_eq!(held["decision"], "hold");
    let paused_at = version(&deps, "v2").await.phases["paused_at_replicated"];
    task(&deps, gate.clone()).await.result.expect("a decision");
    assert_eq!(
        version(&deps, "v2").await.phases["paused_at_replicated"],
        paused_at,
        "recorded once"
    );

    operator
        .apply(
            OperatorAction::Abort,
            "ops@example.com",
            Some("bad weights"),
            Utc::now(),
        )
        .expect("an abort applies");
    control(&deps).put_json(&rollout_key(MODEL, "v2"), "control", &operator);
    let aborted = task(&deps, gate).await.result.expect("a decision");
    assert_eq!(aborted["decision"], "abort");
    let status = task(
        &deps,
        json!({ "task": "status", "model": MODEL, "version": "v2", "region": "eu-west-1" }),
    )
    .await;
    assert_eq!(error_of(&status).0, "Meridian.Aborted");
}
