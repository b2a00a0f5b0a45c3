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

/// Every metric the front door emits.
pub fn all() -> Vec<MetricSpec> {
    vec![REQUESTS.spec(), LATENCY.spec()]
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
}
