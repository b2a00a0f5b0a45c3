//! The rollout's wait for a region's endpoint update (task `await_update`, a task-token
//! wait). SageMaker announces an endpoint's status changes on EventBridge; the deploy-watch
//! function in the endpoint's region resumes this wait when one says the endpoint settled,
//! so a deploy of hours costs a few state transitions instead of one poll every
//! `StatusPollSeconds`. The token is stored in the region's own table replica, keyed by
//! the endpoint, where the deploy-watch function reads it (and `meridian rollout abort`, to
//! roll back without waiting for SageMaker). The state machine's timeout on
//! the wait is the backstop: a lost event costs that delay, then the status check runs
//! anyway.

use meridian::endpoint_events::EndpointChange;
use meridian::executions;
use meridian::registry::VersionRecord;
use meridian::registry_store::RolloutRegistry;
use meridian::rollout::RolloutError;
use serde_json::{json, Value};

use crate::endpoint::describe_endpoint;
use crate::stores::RolloutStores;
use crate::{RolloutDeps, TaskInput};

/// Stores the wait's token, then looks at the operator record and the endpoint once, and
/// resumes itself if the rollout was aborted or the update already settled: an abort
/// recorded before the token was stored woke no one (`meridian rollout abort` wakes the
/// waits whose tokens it finds), and an update that settled before then announced it to
/// nobody. The status check that follows the wait judges both.
pub async fn await_update(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
    token: &str,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    deps.registry(&region.name)
        .await
        .store_deploy_wait(&region.endpoint, &region.name, token)
        .await?;
    let aborted = control
        .operator_control(&record.model, &record.version)
        .await?
        .aborted;
    let settled = aborted || {
        let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
        let endpoint = describe_endpoint(&sagemaker, region).await?;
        EndpointChange {
            endpoint_name: region.endpoint.clone(),
            endpoint_config_name: endpoint.endpoint_config_name().map(str::to_owned),
            endpoint_status: endpoint
                .endpoint_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            pending_deployment_summary: None,
        }
        .settled()
    };
    if settled {
        let sfn = aws_sdk_sfn::Client::new(&deps.clients.config(&deps.fleet.primary_region).await);
        let output = json!({ "region": region.name, "aborted": aborted });
        executions::resume_deploy_wait(&sfn, token, &output).await?;
    }
    Ok(json!({ "region": region.name, "waiting": !settled, "aborted": aborted }))
}
