//! The rollout state machine's tasks, one handler dispatched on the typed [`TaskInput`], by
//! job: waiting for replicas (task token, here), the fast copy ([`copy`]), the endpoint's
//! lifecycle in a region (prepare, deploy, status, smoke test, roll back: `endpoint`), the
//! registry's account of the rollout (progress, commit, mark failed: `bookkeeping`), and
//! the gate at phase boundaries ([`gate`]). The same handler takes Step Functions'
//! "Execution Status Change" of an execution that ended without releasing the fleet's
//! lock, and its schedule's tick, which heals such a lock when that event was lost
//! ([`execution_end`]). Each is idempotent: Step Functions retries and redelivers.
//!
//! The registry (each region's replica) and the rollout executions are reached through
//! [`stores::RolloutStores`]: DynamoDB and Step Functions, or memory in the handler tests
//! (`handler_tests`); SageMaker, S3 and ECR through SDK clients built from `clients`.
//!
//! The task that ends a rollout (commit, mark failed) also returns the rollout's timings
//! as EMF metric lines ([`timings`]); the caller prints them (Lambda) or logs them (the
//! local cloud).

pub mod autoscaled;
mod bookkeeping;
pub mod copy;
pub mod deploy_wait;
mod endpoint;
pub mod execution_end;
pub mod gate;
#[cfg(test)]
mod handler_tests;
pub mod images;
pub mod repair;
pub mod stores;
pub mod timings;

use meridian::aws::ClientFactory;
use meridian::executions;
use meridian::fleet::{Fleet, RegionSpec};
use meridian::function::{Handler, Outcome};
use meridian::registry::VersionRecord;
use meridian::registry_store::{LockRegistry, RolloutRegistry};
use meridian::repair::RepairTask;
use meridian::rollout::RolloutError;
use serde::Deserialize;
use serde_json::{json, Value};
use stores::RolloutStores;

/// What the tasks need. Clients per region are built on demand from `clients`; the
/// registry and the executions come from `stores`.
pub struct RolloutDeps<S = stores::AwsStores> {
    pub fleet: Fleet,
    pub clients: ClientFactory,
    pub state_machine_arn: String,
    /// The SageMaker execution role models run with.
    pub sagemaker_role_arn: String,
    pub stores: S,
}

impl RolloutDeps {
    /// The rollout function's dependencies on AWS.
    pub fn new(
        fleet: Fleet,
        clients: ClientFactory,
        state_machine_arn: String,
        sagemaker_role_arn: String,
    ) -> Self {
        let stores = stores::AwsStores {
            clients: clients.clone(),
            table: fleet.registry_table.clone(),
            primary_region: fleet.primary_region.clone(),
            state_machine_arn: state_machine_arn.clone(),
        };
        Self {
            fleet,
            clients,
            state_machine_arn,
            sagemaker_role_arn,
            stores,
        }
    }
}

/// The task input: which task (with what only it needs), for which version (and region).
#[derive(Debug, Deserialize)]
pub struct TaskInput {
    #[serde(flatten)]
    task: Task,
    model: String,
    version: String,
    #[serde(default)]
    pub(crate) region: Option<String>,
    /// Set in a drift repair's execution ([`repair`]); `null` in a rollout's.
    #[serde(default)]
    pub(crate) repair: Option<RepairTask>,
}

/// The state machine's tasks, by the `task` name its payloads carry.
#[derive(Debug, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
enum Task {
    /// Waits for the region's replicas, resumed by the replica function with `token`.
    AwaitReplicas {
        token: String,
    },
    /// Starts the fast copy: the lanes.
    FastCopy,
    /// Copies some of one lane's files.
    CopyFiles {
        lane: copy::Lane,
    },
    /// Writes the manifest last.
    FastCopyDone,
    Prepare,
    Deploy,
    /// Waits for the endpoint's update, resumed by the deploy-watch function with `token`.
    AwaitUpdate {
        token: String,
    },
    Status,
    SmokeTest,
    /// Operators' control and Meridian's bake at a phase boundary; a hold waits at most
    /// `poll_seconds` (the state machine's poll interval) before asking again.
    Gate {
        boundary: meridian::operator::Boundary,
        poll_seconds: u64,
    },
    Commit,
    Rollback,
    /// Step Functions' error object (`Error`, `Cause`) of what stopped the rollout.
    MarkFailed {
        #[serde(default)]
        error: Option<Value>,
    },
}

impl<S: RolloutStores> RolloutDeps<S> {
    pub(crate) async fn registry(&self, region: &str) -> S::Registry {
        self.stores.registry(region).await
    }

    pub(crate) fn region(&self, name: Option<&str>) -> Result<&RegionSpec, RolloutError> {
        let name = name.ok_or_else(|| RolloutError::Invalid("this task needs a region".into()))?;
        self.fleet.region(name).ok_or_else(|| {
            RolloutError::Invalid(format!("region {name} is not in fleet {}", self.fleet.name))
        })
    }
}

/// Runs one task. The task that ends a rollout returns its timings as metric lines, with
/// a failed result too: they are emitted once, by the write that ends the rollout, so a
/// later failure of the same task (and its retry) must not lose them.
impl<S: RolloutStores> Handler for RolloutDeps<S> {
    type Event = execution_end::RolloutEvent;
    type Error = RolloutError;
    const EVENT: &'static str =
        "a rollout task input, a Step Functions Execution Status Change event or a Scheduled Event";

    async fn handle(&self, event: execution_end::RolloutEvent) -> Outcome<RolloutError> {
        let input = match event {
            execution_end::RolloutEvent::Task(input) => input,
            execution_end::RolloutEvent::ExecutionEnded(event) => {
                return execution_end::handle(self, &event).await.into();
            }
            execution_end::RolloutEvent::Scheduled(_) => {
                return execution_end::reconcile(self).await.into();
            }
        };
        let mut metrics = Vec::new();
        let result = run(self, input, &mut metrics).await;
        Outcome { result, metrics }
    }
}

async fn run(
    deps: &RolloutDeps<impl RolloutStores>,
    input: TaskInput,
    metrics: &mut Vec<String>,
) -> Result<Value, RolloutError> {
    let control = deps.registry(&deps.fleet.primary_region).await;
    let record = control
        .version(&input.model, &input.version)
        .await?
        .ok_or_else(|| {
            RolloutError::Invalid(format!(
                "{}/{} is not registered",
                input.model, input.version
            ))
        })?;
    let record = match &input.repair {
        Some(task) => repair::as_repaired(record, &repair::load(&control, task, &input).await?),
        None => record,
    };
    if matches!(input.task, Task::Status | Task::SmokeTest) {
        gate::refuse_if_aborted(&control, &record).await?;
    }
    match (&input.task, &input.repair) {
        (Task::Commit, Some(task)) => {
            return repair::succeed(deps, &control, &record, task, metrics).await
        }
        (Task::MarkFailed { error }, Some(task)) => {
            return repair::fail(deps, &control, &record, task, error.as_ref(), metrics).await
        }
        _ => {}
    }
    match &input.task {
        Task::Gate {
            boundary,
            poll_seconds,
        } => gate::gate(deps, &control, &record, *boundary, *poll_seconds).await,
        Task::AwaitReplicas { token } => await_replicas(deps, &record, &input, token).await,
        Task::FastCopy => copy::start(deps, &record, &input).await,
        Task::CopyFiles { lane } => copy::copy_files(deps, &record, &input, *lane).await,
        Task::FastCopyDone => copy::finish(deps, &control, &record, &input).await,
        Task::Prepare => endpoint::prepare(deps, &control, &record, &input).await,
        Task::Deploy => endpoint::deploy(deps, &control, &record, &input).await,
        Task::AwaitUpdate { token } => {
            deploy_wait::await_update(deps, &control, &record, &input, token).await
        }
        Task::Status => endpoint::status(deps, &control, &record, &input).await,
        Task::SmokeTest => endpoint::smoke_test(deps, &control, &record, &input).await,
        Task::Commit => bookkeeping::commit(deps, &control, &record, metrics).await,
        Task::Rollback => endpoint::rollback(deps, &control, &record, &input).await,
        Task::MarkFailed { error } => {
            bookkeeping::mark_failed(deps, &control, &record, error.as_ref(), metrics).await
        }
    }
}

/// Checks the image the region's model will run (the rollout's first task in each region,
/// so a missing image fails the version before any endpoint is touched), then stores the
/// task token in the region's replica and reads the region's verdict there: the replica
/// function does the same in the other order, so neither can miss the other.
async fn await_replicas(
    deps: &RolloutDeps<impl RolloutStores>,
    record: &VersionRecord,
    input: &TaskInput,
    token: &str,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let account = images::arn_account(&deps.sagemaker_role_arn).ok_or_else(|| {
        RolloutError::Invalid(format!(
            "the SageMaker role {:?} is not an IAM role ARN with an account",
            deps.sagemaker_role_arn
        ))
    })?;
    let catalog = images::EcrCatalog {
        clients: &deps.clients,
    };
    images::check_region_image(&catalog, &record.manifest.serving, &region.name, account).await?;
    let regional = deps.registry(&region.name).await;
    regional
        .store_token(&record.model, &record.version, &region.name, token)
        .await?;
    if let Some(readiness) = regional
        .readiness(&record.model, &record.version, &region.name)
        .await?
    {
        let sfn = aws_sdk_sfn::Client::new(&deps.clients.config(&deps.fleet.primary_region).await);
        executions::resume(&sfn, token, &region.name, &readiness).await?;
    }
    Ok(json!({ "region": region.name, "waiting": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_carries_what_only_it_needs_and_a_wrong_one_is_refused_by_name() {
        let parsed = |value: Value| serde_json::from_value::<TaskInput>(value);
        let gate = parsed(json!({
            "task": "gate", "model": "m", "version": "v",
            "boundary": "deployed", "poll_seconds": 30
        }))
        .expect("a gate task");
        assert!(matches!(
            gate.task,
            Task::Gate {
                boundary: meridian::operator::Boundary::Deployed,
                poll_seconds: 30
            }
        ));
        let status = parsed(json!({
            "task": "status", "model": "m", "version": "v", "region": "eu-west-1", "repair": null
        }))
        .expect("a status task");
        assert!(matches!(status.task, Task::Status));
        assert_eq!(status.region.as_deref(), Some("eu-west-1"));
        let missing = parsed(json!({ "task": "gate", "model": "m", "version": "v" }))
            .expect_err("a gate without its boundary");
        assert!(missing.to_string().contains("boundary"), "{missing}");
        let unknown = parsed(json!({ "task": "launch", "model": "m", "version": "v" }))
            .expect_err("an unknown task");
        assert!(unknown.to_string().contains("launch"), "{unknown}");
        let no_token = parsed(json!({ "task": "await_update", "model": "m", "version": "v" }))
            .expect_err("a wait without its token");
        assert!(no_token.to_string().contains("token"), "{no_token}");
    }
}
