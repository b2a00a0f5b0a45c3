//! The front door's metrics, as CloudWatch Embedded Metric Format lines like every other
//! Meridian metric ([`meridian::metrics`]): one request count and one latency per
//! request, by region, route and status, so a dashboard or alarm can tell probes from
//! inference and a drained region's 503s from failed inferences.

use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian::metrics::{Metric, MetricSpec, REGION};

/// The dimension naming the route a request took: one of [`ROUTES`].
pub const ROUTE: &str = "Route";
/// The dimension carrying the HTTP status the caller got (`200`, `503`, ...).
pub const STATUS: &str = "Status";

/// `Route` of `GET /health`.
pub const ROUTE_HEALTH: &str = "health";
/// `Route` of `POST /invocations`.
pub const ROUTE_INVOKE: &str = "invocations";
/// `Route` of `POST /invocations-stream`.
pub const ROUTE_INVOKE_STREAM: &str = "invocations-stream";
/// `Route` of any other path or method (answered 404 or 405).
pub const ROUTE_UNKNOWN: &str = "unknown";
/// Every value of the `Route` dimension.
pub const ROUTES: [&str; 4] = [
    ROUTE_HEALTH,
    ROUTE_INVOKE,
    ROUTE_INVOKE_STREAM,
    ROUTE_UNKNOWN,
];

/// One per request.
pub const REQUESTS: Metric<3> = Metric {
    name: "FrontDoorRequests",
    unit: "Count",
    dimensions: [REGION, ROUTE, STATUS],
};

/// Request received to response head ready: for a streamed answer, the time to its
/// first part, not to its end.
pub const LATENCY: Metric<3> = Metric {
    name: "FrontDoorLatency",
    unit: "Milliseconds",
    dimensions: [REGION, ROUTE, STATUS],
};

/// The dimension naming the peer region a request was forwarded to.
pub const TARGET: &str = "Target";
/// The dimension saying why it was forwarded: [`REASON_WARM`] or [`REASON_DRILL`].
pub const REASON: &str = "Reason";
/// `Reason` of continuous warm traffic to a standby.
pub const REASON_WARM: &str = "warm";
/// `Reason` of a drill's shifted share.
pub const REASON_DRILL: &str = "drill";

/// One per request forwarded to a peer's front door.
pub const FORWARDED_REQUESTS: Metric<3> = Metric {
    name: "FrontDoorForwardedRequests",
    unit: "Count",
    dimensions: [REGION, TARGET, REASON],
};

/// One per forwarded request the peer failed (5xx, 429) or did not answer (then served
/// here): 0 or 1, so its average is the forwarded traffic's error rate.
pub const FORWARDED_ERRORS: Metric<3> = Metric {
    name: "FrontDoorForwardedErrors",
    unit: "Count",
    dimensions: [REGION, TARGET, REASON],
};

/// Forward sent to the peer's answer received.
pub const FORWARDED_LATENCY: Metric<3> = Metric {
    name: "FrontDoorForwardedLatency",
    unit: "Milliseconds",
    dimensions: [REGION, TARGET, REASON],
};

/// Every metric the front door emits.
pub fn all() -> Vec<MetricSpec> {
    vec![
        REQUESTS.spec(),
        LATENCY.spec(),
        FORWARDED_REQUESTS.spec(),
        FORWARDED_ERRORS.spec(),
        FORWARDED_LATENCY.spec(),
    ]
}

/// The lines one forwarded request emits, besides its [`lines`].
pub fn forwarded_lines(
    region: &str,
    target: &str,
    reason: &str,
    failed: bool,
    latency: Duration,
    time: DateTime<Utc>,
) -> Vec<String> {
    let dimensions = [region, target, reason];
    vec![
        FORWARDED_REQUESTS.line(1.0, dimensions, time),
        FORWARDED_ERRORS.line(if failed { 1.0 } else { 0.0 }, dimensions, time),
        FORWARDED_LATENCY.line(latency.as_secs_f64() * 1000.0, dimensions, time),
    ]
}

/// The lines one request emits.
pub fn lines(
    region: &str,
    route: &str,
    status: http::StatusCode,
    latency: Duration,
    time: DateTime<Utc>,
) -> Vec<String> {
    let dimensions = [region, route, status.as_str()];
    vec![
        REQUESTS.line(1.0, dimensions, time),
        LATENCY.line(latency.as_secs_f64() * 1000.0, dimensions, time),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn a_request_emits_its_count_and_latency_by_region_route_and_status() {
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let lines = lines(
            "eu-west-1",
            ROUTE_HEALTH,
            http::StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_micros(2_500),
            time,
        );
        let documents: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        assert_eq!(documents.len(), 2);
        for document in &documents {
            assert_eq!(document["Region"], "eu-west-1");
            assert_eq!(document["Route"], "health");
            assert_eq!(document["Status"], "503");
            assert_eq!(
                document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
                serde_json::json!(["Region", "Route", "Status"])
            );
        }
        assert_eq!(documents[0]["FrontDoorRequests"], 1.0);
        assert_eq!(documents[1]["FrontDoorLatency"], 2.5);
    }

    #[test]
    fn a_forwarded_request_counts_by_target_and_reason() {
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let lines = forwarded_lines(
            "us-east-1",
            "eu-west-1",
            REASON_DRILL,
            true,
            Duration::from_millis(40),
            time,
        );
        let documents: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        assert_eq!(documents.len(), 3);
        for document in &documents {
            assert_eq!(document["Region"], "us-east-1");
            assert_eq!(document["Target"], "eu-west-1");
            assert_eq!(document["Reason"], "drill");
        }
        assert_eq!(documents[0]["FrontDoorForwardedRequests"], 1.0);
        assert_eq!(documents[1]["FrontDoorForwardedErrors"], 1.0);
        assert_eq!(documents[2]["FrontDoorForwardedLatency"], 40.0);
    }
}
