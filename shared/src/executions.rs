//! The Step Functions calls that several functions make about one rollout execution:
//! starting it (the upload function, and the rollout function for the next queued
//! version; the primary's failback tick for a drift repair) and resuming its wait for a
//! region's replicas (the replica function, and the rollout function when the verdict was
//! there before the task token) or its wait for a region's endpoint update (the
//! deploy-watch function, the wait task itself, and `meridian rollout abort`).

use aws_sdk_sfn::error::ProvideErrorMetadata;
use serde_json::{json, Value};

use crate::aws::ClientFactory;
use crate::fleet::Fleet;
use crate::registry::{Readiness, Registry};
use crate::repair::{Repair, RepairTask};
use crate::rollout::{execution_name, retryable, RolloutError};

/// Starts (idempotently) the rollout execution of a version. Its input's `repair` is
/// `null` (the state machine passes it to every task; a repair sets it).
pub async fn start_rollout(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    fleet: &Fleet,
    model: &str,
    version: &str,
    digest: &str,
) -> Result<String, RolloutError> {
    let name = execution_name(model, version, digest);
    let regions: Vec<&str> = fleet.regions.iter().map(|r| r.name.as_str()).collect();
    let input = rollout_input(model, version, digest, &regions, None);
    start(
        sfn,
        state_machine_arn,
        &name,
        &input,
        "starting the rollout",
    )
    .await?;
    Ok(name)
}

/// Starts (idempotently) the execution of a drift repair: the rollout state machine for
/// the repair's region alone, with its `repair` input ([`crate::repair`]).
pub async fn start_repair(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    repair: &Repair,
) -> Result<(), RolloutError> {
    let input = rollout_input(
        &repair.model,
        &repair.version,
        &repair.digest,
        &[repair.region.as_str()],
        Some(&repair.task()),
    );
    start(
        sfn,
        state_machine_arn,
        &repair.execution,
        &input,
        "starting the repair",
    )
    .await
}

/// The rollout state machine's input: the version, the `regions` its Maps iterate over
/// (each item carrying what the region's tasks are given), and `repair`.
pub fn rollout_input(
    model: &str,
    version: &str,
    digest: &str,
    regions: &[&str],
    repair: Option<&RepairTask>,
) -> Value {
    json!({
        "model": model,
        "version": version,
        "digest": digest,
        "repair": repair,
        "regions": regions.iter().map(|region| json!({ "model": model, "version": version, "digest": digest, "region": region, "repair": repair })).collect::<Vec<_>>(),
    })
}

/// `StartExecution`; an execution of that name already there is the same start repeated
/// (the names are derived from what they run).
async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: &Value,
    context: &str,
) -> Result<(), RolloutError> {
    match sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input.to_string())
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            Ok(())
        }
        Err(error) => Err(retryable(
            context,
            aws_sdk_sfn::error::DisplayErrorContext(error),
        )),
    }
}

/// Sends a region's verdict to the task waiting on `token`. A token already used or
/// expired is not an error: the verdict is recorded either way.
pub async fn resume(
    sfn: &aws_sdk_sfn::Client,
    token: &str,
    region: &str,
    readiness: &Readiness,
) -> Result<(), RolloutError> {
    let result: Result<(), aws_sdk_sfn::Error> = if readiness.ready {
        sfn.send_task_success()
            .task_token(token)
            .output(
                json!({ "region": region, "ready": true, "reason": readiness.reason }).to_string(),
            )
            .send()
            .await
            .map(drop)
            .map_err(Into::into)
    } else {
        sfn.send_task_failure()
            .task_token(token)
            .error("Meridian.ReplicaFailed")
            .cause(&readiness.reason)
            .send()
            .await
            .map(drop)
            .map_err(Into::into)
    };
    match result {
        Ok(()) => Ok(()),
        Err(error)
            if matches!(
                error.code(),
                Some("TaskDoesNotExist" | "TaskTimedOut" | "InvalidToken")
            ) =>
        {
            let code = error.code().unwrap_or_default();
            tracing::info!(%region, %code, "the waiting task is gone; verdict recorded only");
            Ok(())
        }
        Err(error) => Err(retryable(
            "resuming the rollout",
            aws_sdk_sfn::error::DisplayErrorContext(error),
        )),
    }
}

/// Resumes the task waiting for an endpoint's update (`SendTaskSuccess` with `output`); the
/// task's next step reads the endpoint and the operator record and judges. Returns whether
/// a task was resumed: a token already used, expired or of an ended execution is `false`,
/// not an error, so repeated and stale resumes are harmless.
pub async fn resume_deploy_wait(
    sfn: &aws_sdk_sfn::Client,
    token: &str,
    output: &Value,
) -> Result<bool, RolloutError> {
    match sfn
        .send_task_success()
        .task_token(token)
        .output(output.to_string())
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(error)
            if matches!(
                error.code(),
                Some("TaskDoesNotExist" | "TaskTimedOut" | "InvalidToken")
            ) =>
        {
            Ok(false)
        }
        Err(error) => Err(retryable(
            "resuming the deploy wait",
            aws_sdk_sfn::error::DisplayErrorContext(error),
        )),
    }
}

/// What waking one region's deploy wait did.
#[derive(Debug)]
pub enum Woken {
    /// A waiting task was resumed.
    Resumed,
    /// No task was waiting (no token stored, or its task already went on).
    NotWaiting,
}

/// Wakes every region's wait for an endpoint update at once (after an operator's abort is
/// recorded): each region's token is read from that region's own table replica, where the
/// wait stores it (a strongly consistent read, so a wait that stored its token before the
/// abort was recorded is found, and one that stores it later sees the abort itself), and
/// resumed through Step Functions in the control region. Data-plane calls only
/// (`dynamodb:GetItem`, `states:SendTaskSuccess`); one result per region, so a region that
/// does not answer is reported and the others are still woken.
pub async fn wake_deploy_waits(
    clients: &ClientFactory,
    fleet: &Fleet,
    why: &str,
) -> Vec<(String, Result<Woken, RolloutError>)> {
    let sfn = aws_sdk_sfn::Client::new(&clients.config(&fleet.primary_region).await);
    let mut woken = Vec::new();
    for region in &fleet.regions {
        let registry = Registry {
            client: aws_sdk_dynamodb::Client::new(&clients.config(&region.name).await),
            table: fleet.registry_table.clone(),
        };
        let output = json!({ "region": region.name, "endpoint": region.endpoint, "woken": why });
        let result = async {
            match registry.deploy_wait(&region.endpoint, &region.name).await? {
                Some(token) if resume_deploy_wait(&sfn, &token, &output).await? => {
                    Ok(Woken::Resumed)
                }
                _ => Ok(Woken::NotWaiting),
            }
        }
        .await;
        woken.push((region.name.clone(), result));
    }
    woken
}
