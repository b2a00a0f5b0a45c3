//! SageMaker's endpoint events on EventBridge ("SageMaker Endpoint State Change" and
//! "SageMaker Endpoint Deployment State Change", source `aws.sagemaker`), typed from the
//! SageMaker developer guide's examples (`tests/fixtures/events`). They are wake-ups, not
//! verdicts: SageMaker may send several per state change, in any order, and some are lost,
//! so a deploy wait that one resumes reads the endpoint itself (`DescribeEndpoint`) to
//! judge it. What an event decides is only whether it is worth resuming for.

use serde::{Deserialize, Serialize};

/// `detail-type` of an endpoint's status change.
pub const ENDPOINT_STATE_CHANGE: &str = "SageMaker Endpoint State Change";
/// `detail-type` of a deployment's progress (blue/green stages, capacity changes).
pub const DEPLOYMENT_STATE_CHANGE: &str = "SageMaker Endpoint Deployment State Change";
/// `source` of both.
pub const SOURCE: &str = "aws.sagemaker";

/// Either event as EventBridge delivers it, as far as a deploy wait reads it. Not
/// `aws_lambda_events`' `EventBridgeEvent`: that requires an RFC 3339 `time`, and the
/// developer guide's own example of the endpoint event gives epoch milliseconds there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub region: String,
    pub detail: EndpointChange,
}

/// `detail` of both events: the fields a deploy wait needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointChange {
    pub endpoint_name: String,
    /// The configuration the endpoint serves.
    #[serde(default)]
    pub endpoint_config_name: Option<String>,
    /// `UPDATING`, `IN_SERVICE`, `FAILED`, ... (upper snake case in the events).
    pub endpoint_status: String,
    /// Present while a deployment is under way: the configuration being deployed.
    #[serde(default)]
    pub pending_deployment_summary: Option<PendingDeployment>,
}

/// `detail.PendingDeploymentSummary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PendingDeployment {
    #[serde(default)]
    pub endpoint_config_name: Option<String>,
}

impl EndpointChange {
    /// Whether the endpoint has settled (in service, failed or out of service, with no
    /// deployment pending): the moment a waiting deploy should look again. Statuses are
    /// compared without case or underscores, so `IN_SERVICE` (events) and `InService`
    /// (`DescribeEndpoint`) read the same.
    pub fn settled(&self) -> bool {
        let status: String = self
            .endpoint_status
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let at_rest = matches!(status.as_str(), "inservice" | "failed" | "outofservice");
        at_rest && self.pending_deployment_summary.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/events")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("fixture");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    fn detail(event: &serde_json::Value) -> EndpointChange {
        let parsed: EndpointEvent =
            serde_json::from_value(event.clone()).expect("the documented event parses");
        assert_eq!(parsed.source, SOURCE);
        parsed.detail
    }

    #[test]
    fn the_documented_events_parse_and_only_a_settled_endpoint_ends_a_wait() {
        let deploying = fixture("sagemaker-endpoint-deployment-state-change.json");
        assert_eq!(deploying["detail-type"], DEPLOYMENT_STATE_CHANGE);
        assert_eq!(deploying["source"], SOURCE);
        let deploying = detail(&deploying);
        assert_eq!(deploying.endpoint_name, "sample-endpoint");
        assert_eq!(
            deploying
                .pending_deployment_summary
                .as_ref()
                .and_then(|p| p.endpoint_config_name.as_deref()),
            Some("sample-endpoint-config-2")
        );
        assert!(!deploying.settled());

        let in_service = fixture("sagemaker-endpoint-state-change.json");
        assert_eq!(in_service["detail-type"], ENDPOINT_STATE_CHANGE);
        let in_service = detail(&in_service);
        assert_eq!(
            in_service.endpoint_config_name.as_deref(),
            Some("MyEndpointConfig")
        );
        assert!(in_service.settled());
    }

    #[test]
    fn statuses_read_alike_in_either_spelling() {
        let with = |status: &str, pending: bool| EndpointChange {
            endpoint_name: "llm".into(),
            endpoint_config_name: None,
            endpoint_status: status.into(),
            pending_deployment_summary: pending.then(|| PendingDeployment {
                endpoint_config_name: Some("v2".into()),
            }),
        };
        for settled in [
            "IN_SERVICE",
            "InService",
            "FAILED",
            "Failed",
            "OUT_OF_SERVICE",
        ] {
            assert!(with(settled, false).settled(), "{settled}");
        }
        for moving in [
            "UPDATING",
            "Updating",
            "ROLLING_BACK",
            "SYSTEM_UPDATING",
            "CREATING",
        ] {
            assert!(!with(moving, false).settled(), "{moving}");
        }
        assert!(
            !with("IN_SERVICE", true).settled(),
            "a deployment still pending"
        );
    }
}
