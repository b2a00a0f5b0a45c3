//! The rollout state machine's tasks, one handler dispatched on `task`: wait for replicas
//! (task token), fast copy ([`copy`]), prepare, deploy, status, commit, roll back, mark failed, and
//! the gate at phase boundaries ([`gate`]). The same handler takes Step Functions'
//! "Execution Status Change" of an execution that ended without releasing the fleet's
//! lock, and its schedule's tick, which heals such a lock when that event was lost
//! ([`execution_end`]). Each is idempotent: Step Functions retries and redelivers.
//!
//! The task that ends a rollout (commit, mark failed) also returns the rollout's timings
//! as EMF metric lines ([`timings`]); the caller prints them (Lambda) or logs them (the
//! local cloud).

pub mod autoscaled;
pub mod copy;
pub mod deploy_wait;
pub mod execution_end;
pub mod gate;
pub mod images;
pub mod repair;
pub mod timings;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian::aws::ClientFactory;
use meridian::executions;
use meridian::fleet::{Fleet, RegionSpec};
use meridian::function::{Handler, Outcome};
use meridian::registry::{RegionProgress, Registry, VersionRecord, VersionStatus};
use meridian::repair::RepairTask;
use meridian::rollout::{
    aws_error, deploy_state, deployment_name, DeployState, RolloutError, TrafficStrategy,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// What the tasks need. Clients per region are built on demand from `clients`.
pub struct RolloutDeps {
    pub fleet: Fleet,
    pub clients: ClientFactory,
    pub state_machine_arn: String,
    /// The SageMaker execution role models run with.
    pub sagemaker_role_arn: String,
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

/// How long the commit waits for one region's replica verdict, read for the metrics
/// only: a slow or unreachable region costs its `replicate` value, never the commit.
const REPLICA_TIME_READ_TIMEOUT: Duration = Duration::from_secs(5);

impl RolloutDeps {
    pub(crate) async fn registry(&self, region: &str) -> Registry {
        Registry {
            client: aws_sdk_dynamodb_client(&self.clients, region).await,
            table: self.fleet.registry_table.clone(),
        }
    }

    pub(crate) fn region(&self, name: Option<&str>) -> Result<&RegionSpec, RolloutError> {
        let name = name.ok_or_else(|| RolloutError::Invalid("this task needs a region".into()))?;
        self.fleet.region(name).ok_or_else(|| {
            RolloutError::Invalid(format!("region {name} is not in fleet {}", self.fleet.name))
        })
    }
}

async fn aws_sdk_dynamodb_client(
    clients: &ClientFactory,
    region: &str,
) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&clients.config(region).await)
}

/// Runs one task. The task that ends a rollout returns its timings as metric lines, with
/// a failed result too: they are emitted once, by the write that ends the rollout, so a
/// later failure of the same task (and its retry) must not lose them.
impl Handler for RolloutDeps {
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
    deps: &RolloutDeps,
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
        Task::Prepare => prepare(deps, &control, &record, &input).await,
        Task::Deploy => deploy(deps, &control, &record, &input).await,
        Task::AwaitUpdate { token } => {
            deploy_wait::await_update(deps, &control, &record, &input, token).await
        }
        Task::Status => status(deps, &control, &record, &input).await,
        Task::SmokeTest => smoke_test(deps, &control, &record, &input).await,
        Task::Commit => commit(deps, &control, &record, metrics).await,
        Task::Rollback => rollback(deps, &control, &record, &input).await,
        Task::MarkFailed { error } => {
            mark_failed(deps, &control, &record, error.as_ref(), metrics).await
        }
    }
}

/// Checks the image the region's model will run (the rollout's first task in each region,
/// so a missing image fails the version before any endpoint is touched), then stores the
/// task token in the region's replica and reads the region's verdict there: the replica
/// function does the same in the other order, so neither can miss the other.
async fn await_replicas(
    deps: &RolloutDeps,
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

/// Records, once, when a region reached a stage of the rollout.
async fn stamp(
    control: &Registry,
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
async fn record_progress(
    control: &Registry,
    record: &VersionRecord,
    input: &TaskInput,
    region: &str,
    change: impl Fn(&mut RegionProgress),
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

/// The region's endpoint as SageMaker describes it.
pub(crate) async fn describe_endpoint(
    sagemaker: &aws_sdk_sagemaker::Client,
    region: &RegionSpec,
) -> Result<aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput, RolloutError> {
    sagemaker
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .map_err(|e| aws_error("reading the endpoint", e))
}

/// SageMaker model and endpoint configuration for the version, from the regional bucket.
async fn prepare(
    deps: &RolloutDeps,
    control: &Registry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    use aws_sdk_sagemaker::types::{
        ContainerDefinition, ModelCompressionType, ModelDataSource, ProductionVariant,
        ProductionVariantInstanceType, S3ModelDataSource, S3ModelDataType,
    };
    let region = deps.region(input.region.as_deref())?;
    let serving = &record.manifest.serving;
    // Sized by the fleet file, not the manifest: the region's instance type and its
    // desired count within the bounds in force now (a night window caps it).
    let now = Utc::now();
    let instances = meridian::capacity::deploy_count(region, now);
    // Every region's traffic step is checked by every region's preparation, so one region's
    // refusal stops them all before any creates its model.
    let refusals: Vec<String> = deps
        .fleet
        .regions
        .iter()
        .filter_map(|r| {
            let count = meridian::capacity::deploy_count(r, now);
            deps.fleet.rollout.traffic_shift_refusal(&r.name, count)
        })
        .collect();
    let refusals: Vec<String> = refusals
        .into_iter()
        .chain(meridian::variant::manifest_variant_refusal(
            serving.variant_name.as_deref(),
            &deps.fleet.variant_name,
        ))
        .collect();
    if !refusals.is_empty() {
        return Err(RolloutError::Invalid(refusals.join("; ")));
    }
    let image =
        meridian::images::image_for_region(&serving.image, &serving.images, &region.name)
            .map_err(|e| RolloutError::Invalid(format!("the image for {}: {e}", region.name)))?;
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let name = deployment_name(&record.model, &record.version, &record.digest);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let current = endpoint
        .endpoint_config_name()
        .unwrap_or_default()
        .to_owned();
    let data = S3ModelDataSource::builder()
        .s3_uri(format!(
            "s3://{}/{}",
            region.bucket,
            meridian::manifest::version_prefix(&record.model, &record.version)
        ))
        .s3_data_type(S3ModelDataType::S3Prefix)
        .compression_type(ModelCompressionType::None)
        .build();
    let created = sagemaker
        .create_model()
        .model_name(&name)
        .execution_role_arn(&deps.sagemaker_role_arn)
        .primary_container(
            ContainerDefinition::builder()
                .image(image.image.to_string())
                .model_data_source(ModelDataSource::builder().s3_data_source(data).build())
                .set_environment(Some(serving.environment.clone().into_iter().collect()))
                .build(),
        )
        .send()
        .await;
    ignore_existing(created.map(|_| ()), "creating the model")?;
    let config = sagemaker
        .create_endpoint_config()
        .endpoint_config_name(&name)
        .production_variants(
            ProductionVariant::builder()
                .variant_name(&deps.fleet.variant_name)
                .model_name(&name)
                .instance_type(ProductionVariantInstanceType::from(
                    region.instance_type.as_str(),
                ))
                .initial_instance_count(i32::try_from(instances).unwrap_or(i32::MAX))
                .build(),
        )
        .send()
        .await;
    ignore_existing(config.map(|_| ()), "creating the endpoint config")?;
    let (model, version, region_name) = (
        record.model.clone(),
        record.version.clone(),
        region.name.clone(),
    );
    let previous = if current == name {
        None
    } else {
        Some(current.clone())
    };
    let prepared = |progress: &mut RegionProgress| {
        if progress.previous_config.is_none() {
            progress.previous_config = previous.clone();
        }
        progress.config = Some(name.clone());
    };
    match &input.repair {
        Some(task) => {
            control
                .update_repair(task, |r| prepared(&mut r.progress))
                .await?;
        }
        None => {
            control
                .update_version(&model, &version, |r| {
                    prepared(r.regions.entry(region_name.clone()).or_default());
                    r.phases.entry("replicated".into()).or_insert_with(Utc::now);
                })
                .await?;
        }
    }
    Ok(json!({
        "region": region.name,
        "config": name,
        "instance_type": region.instance_type,
        "instances": instances,
    }))
}

fn ignore_existing<
    E: aws_sdk_sagemaker::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
>(
    result: Result<
        (),
        aws_sdk_sagemaker::error::SdkError<E, aws_sdk_sagemaker::config::http::HttpResponse>,
    >,
    context: &str,
) -> Result<(), RolloutError> {
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            let message = aws_sdk_sagemaker::error::ProvideErrorMetadata::message(&error)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if message.contains("already exist") {
                Ok(())
            } else {
                Err(aws_error(context, error))
            }
        }
    }
}

/// `UpdateEndpoint` with the fleet's guardrails (blue/green traffic shifting, auto-rollback
/// on the region's alarms). Idempotent: an endpoint already on (or moving to) the config
/// is left alone.
async fn deploy(
    deps: &RolloutDeps,
    control: &Registry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    use aws_sdk_sagemaker::types::*;
    let region = deps.region(input.region.as_deref())?;
    let name = deployment_name(&record.model, &record.version, &record.digest);
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let status = endpoint
        .endpoint_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let started_before = record
        .regions
        .get(&region.name)
        .and_then(|p| p.deploy_started);
    if started_before.is_some() || endpoint.endpoint_config_name() == Some(name.as_str()) {
        return Ok(json!({ "region": region.name, "config": name, "note": "already deploying" }));
    }
    if status == "Updating" || status == "RollingBack" {
        return Err(RolloutError::Retryable(format!(
            "endpoint {} in {} is {status}; waiting to deploy",
            region.endpoint, region.name
        )));
    }
    let settings = &deps.fleet.rollout;
    let percent = i32::try_from(settings.traffic_percent).unwrap_or(10);
    let bake = i32::try_from(settings.bake.as_secs()).unwrap_or(3600);
    let capacity = |value: i32| {
        CapacitySize::builder()
            .r#type(CapacitySizeType::CapacityPercent)
            .value(value)
            .build()
    };
    let routing = match settings.strategy {
        TrafficStrategy::Canary => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Canary)
            .canary_size(capacity(percent)),
        TrafficStrategy::Linear => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Linear)
            .linear_step_size(capacity(percent)),
        TrafficStrategy::AllAtOnce => {
            TrafficRoutingConfig::builder().r#type(TrafficRoutingConfigType::AllAtOnce)
        }
    }
    .wait_interval_in_seconds(bake)
    .build();
    let mut deployment = DeploymentConfig::builder().blue_green_update_policy(
        BlueGreenUpdatePolicy::builder()
            .traffic_routing_configuration(routing)
            .termination_wait_in_seconds(0)
            .maximum_execution_timeout_in_seconds(
                i32::try_from(settings.sagemaker_deployment_timeout()).unwrap_or(i32::MAX),
            )
            .build(),
    );
    let guard = autoscaled::AwsUpdateGuard::new(&deps.clients, &region.name).await;
    let variant = &deps.fleet.variant_name;
    let cleared = autoscaled::clear_for_update(
        &guard,
        &region.endpoint,
        variant,
        endpoint.endpoint_config_name().unwrap_or_default(),
        &name,
    )
    .await?;
    if !region.alarms.is_empty() {
        let mut rollback = AutoRollbackConfig::builder();
        for alarm in region.alarms.iter().take(10) {
            rollback = rollback.alarms(Alarm::builder().alarm_name(alarm).build());
        }
        deployment = deployment.auto_rollback_configuration(rollback.build());
    }
    let updated = sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name(&name)
        .deployment_config(deployment.build())
        .send()
        .await;
    if let Err(error) = updated {
        let error = aws_error("updating the endpoint", error);
        return Err(
            autoscaled::after_refusal(&guard, &region.endpoint, variant, &cleared, error).await,
        );
    }
    stamp(control, record, input, &region.name, |p| {
        &mut p.deploy_started
    })
    .await?;
    Ok(json!({ "region": region.name, "config": name }))
}

/// Whether the region's update is done. `InService` on a configuration that is not ours
/// is a (silent) rollback: a failure.
async fn status(
    deps: &RolloutDeps,
    control: &Registry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let name = deployment_name(&record.model, &record.version, &record.digest);
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let state = deploy_state(
        endpoint
            .endpoint_status()
            .map(|s| s.as_str())
            .unwrap_or_default(),
        endpoint.endpoint_config_name().unwrap_or_default(),
        &name,
        endpoint.failure_reason(),
    );
    let started: Option<DateTime<Utc>> = record
        .regions
        .get(&region.name)
        .and_then(|p| p.deploy_started);
    match state {
        DeployState::InProgress => {
            let deadline = started.map(|s| {
                s + chrono::Duration::from_std(deps.fleet.rollout.deploy_timeout)
                    .unwrap_or(chrono::Duration::MAX)
            });
            if deadline.is_some_and(|d| Utc::now() > d) {
                return Err(RolloutError::DeployFailed(format!(
                    "the update of {} in {} did not finish within {:?}",
                    region.endpoint, region.name, deps.fleet.rollout.deploy_timeout
                )));
            }
            Ok(json!({ "region": region.name, "done": false }))
        }
        DeployState::Done => {
            stamp(control, record, input, &region.name, |p| &mut p.deployed).await?;
            Ok(json!({ "region": region.name, "done": true }))
        }
        DeployState::RolledBack { serving } => Err(RolloutError::SilentRollback(format!(
            "{} in {} is in service on {serving}, not {name}: SageMaker rolled the update back",
            region.endpoint, region.name
        ))),
        DeployState::Failed { reason } => Err(RolloutError::DeployFailed(format!(
            "{} in {}: {reason}",
            region.endpoint, region.name
        ))),
    }
}

/// Invokes the region's endpoint once on the new version with the manifest's smoke test
/// (or the TGI default); a model error or an unhealthy answer fails the rollout, a
/// throttle or transient error is retried.
async fn smoke_test(
    deps: &RolloutDeps,
    control: &Registry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let smoke = record
        .manifest
        .serving
        .smoke_test
        .clone()
        .unwrap_or_default();
    let runtime = aws_sdk_sagemakerruntime::Client::new(&deps.clients.config(&region.name).await);
    let answer = runtime
        .invoke_endpoint()
        .endpoint_name(&region.endpoint)
        .content_type(&smoke.content_type)
        .accept(&smoke.content_type)
        .body(aws_sdk_sagemakerruntime::primitives::Blob::new(
            smoke.request_body(),
        ))
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            let permanent = error
                .as_service_error()
                .is_some_and(|e| e.is_model_error() || e.is_validation_error());
            let message = format!(
                "smoke test of {} in {}: {}",
                region.endpoint,
                region.name,
                aws_sdk_sagemakerruntime::error::DisplayErrorContext(&error)
            );
            return Err(if permanent {
                RolloutError::DeployFailed(message)
            } else {
                RolloutError::Retryable(message)
            });
        }
    };
    let body = answer
        .body()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    if let Err(why) = smoke.verdict(&body) {
        return Err(RolloutError::DeployFailed(format!(
            "smoke test of {} in {}: {why}",
            region.endpoint, region.name
        )));
    }
    stamp(control, record, input, &region.name, |p| &mut p.verified).await?;
    Ok(json!({ "region": region.name, "answer_bytes": body.len() }))
}

/// Moves the active pointer (one conditional write), releases the model's lock and starts
/// the next queued version, if any. The write that first records the version committed
/// also records when each region's replicas were verified, and yields the rollout's
/// metrics: a retried or redelivered commit finds it committed and emits nothing.
async fn commit(
    deps: &RolloutDeps,
    control: &Registry,
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
    let replicated = if timings::ended(record) {
        BTreeMap::new()
    } else {
        replica_verified_times(deps, record).await
    };
    let ends_rollout = AtomicBool::new(false);
    let committed = control
        .update_version(&record.model, &record.version, |r| {
            ends_rollout.store(!timings::ended(r), Ordering::Relaxed);
            r.status = VersionStatus::Active;
            r.reason = None;
            r.phases
                .entry(timings::COMMITTED.into())
                .or_insert_with(Utc::now);
            record_replicated(r, &replicated);
        })
        .await?;
    if ends_rollout.load(Ordering::Relaxed) {
        metrics.extend(timings::metric_lines(&committed, Utc::now()));
    }
    let next = start_next(deps, control, record).await?;
    Ok(json!({ "model": record.model, "active": record.version, "next": next }))
}

/// When each region's replicas were verified (its ready verdict), read from the region's
/// own replica. Best effort, for the metrics: a region that cannot be read in time is
/// left out (and logged), and the commit goes on.
async fn replica_verified_times(
    deps: &RolloutDeps,
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
fn record_replicated(record: &mut VersionRecord, replicated: &BTreeMap<String, DateTime<Utc>>) {
    for (region, at) in replicated {
        record
            .regions
            .entry(region.clone())
            .or_default()
            .replicated
            .get_or_insert(*at);
    }
}

/// Puts one region back on the configuration it served before this rollout. Retryable
/// while the endpoint is still updating, so the state machine's retry waits for it.
async fn rollback(
    deps: &RolloutDeps,
    control: &Registry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let Some(previous) = record
        .regions
        .get(&region.name)
        .and_then(|p| p.previous_config.clone())
    else {
        return Ok(json!({ "region": region.name, "note": "nothing deployed here" }));
    };
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let status = endpoint
        .endpoint_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let serving = endpoint
        .endpoint_config_name()
        .unwrap_or_default()
        .to_owned();
    if status == "Updating" || status == "RollingBack" {
        return Err(RolloutError::Retryable(format!(
            "{} in {} is {status}; rolling back once it settles",
            region.endpoint, region.name
        )));
    }
    if serving == previous && status == "InService" {
        stamp(control, record, input, &region.name, |p| &mut p.rolled_back).await?;
        return Ok(json!({ "region": region.name, "serving": previous }));
    }
    let guard = autoscaled::AwsUpdateGuard::new(&deps.clients, &region.name).await;
    let variant = &deps.fleet.variant_name;
    let cleared =
        autoscaled::clear_for_update(&guard, &region.endpoint, variant, &serving, &previous)
            .await?;
    let updated = sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name(&previous)
        .send()
        .await;
    if let Err(error) = updated {
        let error = aws_error("rolling the endpoint back", error);
        return Err(
            autoscaled::after_refusal(&guard, &region.endpoint, variant, &cleared, error).await,
        );
    }
    Err(RolloutError::Retryable(format!(
        "{} in {} is rolling back to {previous}",
        region.endpoint, region.name
    )))
}

/// Marks the version failed with the error that stopped it, releases the lock and starts
/// the next queued version. Like the commit, the write that first ends the rollout
/// yields the metrics of the phases that did complete (no `RolloutDuration`).
async fn mark_failed(
    deps: &RolloutDeps,
    control: &Registry,
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
            ends_rollout.store(!timings::ended(r), Ordering::Relaxed);
            r.status = VersionStatus::Failed;
            r.reason = Some(reason.clone());
            r.phases
                .entry(timings::FAILED.into())
                .or_insert_with(Utc::now);
            record_replicated(r, &replicated);
        })
        .await?;
    if ends_rollout.load(Ordering::Relaxed) {
        metrics.extend(timings::metric_lines(&failed, Utc::now()));
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
    deps: &RolloutDeps,
    control: &Registry,
    record: &VersionRecord,
) -> Result<Option<String>, RolloutError> {
    let sfn = aws_sdk_sfn::Client::new(&deps.clients.config(&deps.fleet.primary_region).await);
    let next = meridian::rollout_end::start_next(
        control,
        &sfn,
        &deps.state_machine_arn,
        &deps.fleet,
        record,
    )
    .await?;
    Ok(next.map(|(model, version)| format!("{model}/{version}")))
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
