//! The deploy-watch handler, in every region: when SageMaker announces that the region's
//! endpoint settled ("SageMaker Endpoint State Change" or "... Deployment State Change",
//! [`meridian::endpoint_events`]), it resumes the rollout task waiting for that endpoint's
//! update, whose token the wait task stored in this region's table replica. The event is
//! only a wake-up: the rollout's next task reads the endpoint and judges it. Events that
//! announce no settling, a token already used, or no wait at all change nothing, so
//! duplicates and stale events are harmless, and a lost one costs the wait's backstop.

use std::future::Future;

use meridian::aws::ClientFactory;
use meridian::endpoint_events::{EndpointChange, EndpointEvent};
use meridian::fleet::Fleet;
use meridian::function::{Handler, Outcome};
use meridian::registry::Registry;
use meridian::rollout::RolloutError;
use serde_json::{json, Value};

/// The wait tokens and the way to resume one.
pub trait DeployWaits: Send + Sync {
    /// The token of the task waiting for `endpoint`'s update in this region, if any.
    fn waiting_token(
        &self,
        endpoint: &str,
    ) -> impl Future<Output = Result<Option<String>, RolloutError>> + Send;
    /// `SendTaskSuccess` with `output`; a task already resumed or gone is not an error.
    fn resume(
        &self,
        token: &str,
        output: &Value,
    ) -> impl Future<Output = Result<(), RolloutError>> + Send;
}

/// The handler for one region.
pub struct DeployWatch<W> {
    pub fleet: Fleet,
    pub region: String,
    pub waits: W,
}

/// The handler on the region's table replica and the control region's Step Functions.
pub type AwsDeployWatch = DeployWatch<AwsDeployWaits>;

impl AwsDeployWatch {
    /// The clients of the function in `region` (Lambda and the local cloud alike).
    pub async fn new(clients: &ClientFactory, fleet: Fleet, region: String) -> Self {
        let waits = AwsDeployWaits {
            registry: Registry {
                client: aws_sdk_dynamodb::Client::new(&clients.config(&region).await),
                table: fleet.registry_table.clone(),
            },
            sfn: aws_sdk_sfn::Client::new(&clients.config(&fleet.primary_region).await),
            region: region.clone(),
        };
        Self {
            fleet,
            region,
            waits,
        }
    }
}

impl<W: DeployWaits> Handler for DeployWatch<W> {
    type Event = EndpointEvent;
    type Error = RolloutError;
    const EVENT: &'static str = "a SageMaker endpoint EventBridge event";

    async fn handle(&self, event: Self::Event) -> Outcome<RolloutError> {
        handle(self, &event.detail).await.into()
    }
}

async fn handle<W: DeployWaits>(
    deps: &DeployWatch<W>,
    change: &EndpointChange,
) -> Result<Value, RolloutError> {
    let spec = deps.fleet.region(&deps.region).ok_or_else(|| {
        RolloutError::Invalid(format!("region {} is not in the fleet", deps.region))
    })?;
    if change.endpoint_name != spec.endpoint {
        return Err(RolloutError::Invalid(format!(
            "event for endpoint {:?}, not {}'s endpoint {}",
            change.endpoint_name, deps.region, spec.endpoint
        )));
    }
    if !change.settled() {
        return Ok(json!({ "ignored": change.endpoint_status }));
    }
    let Some(token) = deps.waits.waiting_token(&spec.endpoint).await? else {
        return Ok(json!({ "no_wait": spec.endpoint }));
    };
    let output = json!({
        "region": deps.region,
        "endpoint": spec.endpoint,
        "status": change.endpoint_status,
    });
    deps.waits.resume(&token, &output).await?;
    tracing::info!(region = %deps.region, endpoint = %spec.endpoint, status = %change.endpoint_status, "deploy wait resumed");
    Ok(json!({ "resumed": spec.endpoint }))
}

/// [`DeployWaits`] on the region's table replica and Step Functions in the control region.
pub struct AwsDeployWaits {
    pub registry: Registry,
    pub sfn: aws_sdk_sfn::Client,
    pub region: String,
}

impl DeployWaits for AwsDeployWaits {
    async fn waiting_token(&self, endpoint: &str) -> Result<Option<String>, RolloutError> {
        Ok(self.registry.deploy_wait(endpoint, &self.region).await?)
    }

    async fn resume(&self, token: &str, output: &Value) -> Result<(), RolloutError> {
        meridian::executions::resume_deploy_wait(&self.sfn, token, output)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct MemoryWaits {
        token: Option<String>,
        resumed: Mutex<Vec<(String, Value)>>,
        fail: bool,
    }

    impl DeployWaits for MemoryWaits {
        async fn waiting_token(&self, _endpoint: &str) -> Result<Option<String>, RolloutError> {
            Ok(self.token.clone())
        }

        async fn resume(&self, token: &str, output: &Value) -> Result<(), RolloutError> {
            if self.fail {
                return Err(RolloutError::Retryable("throttled".into()));
            }
            self.resumed
                .lock()
                .expect("lock")
                .push((token.to_owned(), output.clone()));
            Ok(())
        }
    }

    fn watch(waits: MemoryWaits) -> DeployWatch<MemoryWaits> {
        let fleet = Fleet::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fleet.example.toml"),
        )
        .expect("example fleet");
        DeployWatch {
            fleet,
            region: "eu-west-1".into(),
            waits,
        }
    }

    fn change(endpoint: &str, status: &str) -> EndpointChange {
        serde_json::from_value(json!({
            "EndpointName": endpoint,
            "EndpointConfigName": "llama-2-abcdef01",
            "EndpointStatus": status,
        }))
        .expect("detail")
    }

    #[tokio::test]
    async fn a_settled_endpoint_resumes_the_waiting_task() {
        let deps = watch(MemoryWaits {
            token: Some("token-1".into()),
            ..MemoryWaits::default()
        });
        let result = handle(&deps, &change("meridian-demo-llm", "IN_SERVICE")).await;
        assert_eq!(
            result.expect("handled"),
            json!({ "resumed": "meridian-demo-llm" })
        );
        let resumed = deps.waits.resumed.lock().expect("lock").clone();
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].0, "token-1");
        assert_eq!(resumed[0].1["status"], "IN_SERVICE");
    }

    #[tokio::test]
    async fn progress_events_and_absent_waits_change_nothing() {
        let deps = watch(MemoryWaits {
            token: Some("token-1".into()),
            ..MemoryWaits::default()
        });
        let updating = handle(&deps, &change("meridian-demo-llm", "UPDATING")).await;
        assert_eq!(updating.expect("ignored"), json!({ "ignored": "UPDATING" }));
        let idle = watch(MemoryWaits::default());
        let nobody = handle(&idle, &change("meridian-demo-llm", "IN_SERVICE")).await;
        assert_eq!(
            nobody.expect("ignored"),
            json!({ "no_wait": "meridian-demo-llm" })
        );
        assert!(deps.waits.resumed.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn another_endpoint_is_refused_and_a_failed_resume_is_retried() {
        let deps = watch(MemoryWaits {
            token: Some("token-1".into()),
            fail: true,
            ..MemoryWaits::default()
        });
        let other = handle(&deps, &change("someone-elses", "IN_SERVICE")).await;
        assert!(matches!(other, Err(RolloutError::Invalid(_))), "{other:?}");
        let failed = handle(&deps, &change("meridian-demo-llm", "FAILED")).await;
        assert!(
            matches!(failed, Err(RolloutError::Retryable(_))),
            "{failed:?}"
        );
    }
}
