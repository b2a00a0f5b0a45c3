//! The Step Functions calls that several functions make about one rollout execution:
//! starting it (the upload function, and the rollout function for the next queued
//! version) and resuming its wait for a region's replicas (the replica function, and the
//! rollout function when the verdict was there before the task token).

use aws_sdk_sfn::error::ProvideErrorMetadata;
use serde_json::json;

use crate::fleet::Fleet;
use crate::registry::Readiness;
use crate::rollout::{execution_name, retryable, RolloutError};

/// Starts (idempotently) the rollout execution of a version.
pub async fn start_rollout(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    fleet: &Fleet,
    model: &str,
    version: &str,
    digest: &str,
) -> Result<String, RolloutError> {
    let name = execution_name(model, version, digest);
    let input = json!({
        "model": model,
        "version": version,
        "digest": digest,
        "regions": fleet.regions.iter().map(|r| json!({ "model": model, "version": version, "digest": digest, "region": r.name })).collect::<Vec<_>>(),
    });
    match sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
    {
        Ok(_) => Ok(name),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            Ok(name)
        }
        Err(error) => Err(retryable(
            "starting the rollout",
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
