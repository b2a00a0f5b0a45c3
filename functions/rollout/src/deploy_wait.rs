//! The rollout's wait for a region's endpoint update (task `await_update`, a task-token
//! wait). SageMaker announces an endpoint's status changes on EventBridge; the deploy-watch
//! function in the endpoint's region resumes this wait when one says the endpoint settled,
//! so a deploy of hours costs a few state transitions instead of one poll every
//! `StatusPollSeconds`. The token is stored in the region's own table replica, keyed by
//! the endpoint, where the deploy-watch function reads it. The state machine's timeout on
//! the wait is the backstop: a lost event costs that delay, then the status check runs
//! anyway.

use meridian::endpoint_events::EndpointChange;
use meridian::registry::VersionRecord;
use meridian::rollout::{retryable, RolloutError};
use serde_json::{json, Value};

use crate::{describe_endpoint, RolloutDeps, TaskInput};

/// Stores the wait's token, then looks at the endpoint once: an update that settled before
/// the token was stored announced it to nobody, so this wait resumes itself.
pub async fn await_update(
    deps: &RolloutDeps,
    _record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let token = input
        .token
        .as_deref()
        .ok_or_else(|| RolloutError::Invalid("await_update needs the task token".into()))?;
    deps.registry(&region.name)
        .await
        .store_deploy_wait(&region.endpoint, &region.name, token)
        .await?;
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let status = endpoint
        .endpoint_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let now = EndpointChange {
        endpoint_name: region.endpoint.clone(),
        endpoint_config_name: endpoint.endpoint_config_name().map(str::to_owned),
        endpoint_status: status.clone(),
        pending_deployment_summary: None,
    };
    if now.settled() {
        let sfn = aws_sdk_sfn::Client::new(&deps.clients.config(&deps.fleet.primary_region).await);
        let sent = sfn
            .send_task_success()
            .task_token(token)
            .output(json!({ "region": region.name, "status": status }).to_string())
            .send()
            .await;
        if let Err(error) = sent {
            let gone = error.as_service_error().is_some_and(|e| {
                e.is_task_does_not_exist() || e.is_task_timed_out() || e.is_invalid_token()
            });
            if !gone {
                return Err(retryable(
                    "resuming the deploy wait",
                    aws_sdk_sfn::error::DisplayErrorContext(error),
                ));
            }
        }
    }
    Ok(json!({ "region": region.name, "waiting": !now.settled() }))
}
