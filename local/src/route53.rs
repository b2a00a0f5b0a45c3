//! Route 53 calls reaching the gateway: `GetHealthCheckStatus` is answered from the local
//! health checkers (moto's answer is a fixed "Success"), and while the control plane is
//! down every call fails as Route 53 fails. Everything else goes to moto. See `EMULATIONS.md`.

use chrono::SecondsFormat;
use http::{Method, StatusCode};

use crate::ctx::Ctx;
use crate::health_checkers::{CheckerStatus, HealthCheckers};
use crate::http::{forward, GatewayRequest, GatewayResponse};

const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// The one location the local checkers report from.
const CHECKER_REGION: &str = "us-east-1";
const CHECKER_ADDRESS: &str = "127.0.0.1";

/// Handles a Route 53 request arriving at the gateway.
pub async fn handle(
    ctx: &Ctx,
    checkers: &HealthCheckers,
    request: &GatewayRequest,
) -> anyhow::Result<GatewayResponse> {
    let status = status_request(&request.method, request.path()).and_then(|id| checkers.status(id));
    match status {
        Some(status) => Ok(GatewayResponse::xml(
            StatusCode::OK,
            status_document(&status),
        )),
        None => forward(ctx, request).await,
    }
}

/// The health check ID of a `GetHealthCheckStatus` request,
/// `GET /2013-04-01/healthcheck/{id}/status`.
pub fn status_request<'a>(method: &Method, path: &'a str) -> Option<&'a str> {
    let id = path
        .strip_prefix("/2013-04-01/healthcheck/")?
        .strip_suffix("/status")?;
    (method == Method::GET && !id.is_empty() && !id.contains('/')).then_some(id)
}

/// The `GetHealthCheckStatus` reply: one observation, the local checker's last probe.
pub fn status_document(status: &CheckerStatus) -> String {
    let observations = match &status.last_probe {
        Some(probe) => format!(
            "<HealthCheckObservation><Region>{CHECKER_REGION}</Region><IPAddress>{CHECKER_ADDRESS}</IPAddress>\
             <StatusReport><Status>{}</Status><CheckedTime>{}</CheckedTime></StatusReport></HealthCheckObservation>",
            escape(&probe.report),
            probe.time.to_rfc3339_opts(SecondsFormat::Millis, true)
        ),
        None => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetHealthCheckStatusResponse xmlns=\"{XMLNS}\">\
         <HealthCheckObservations>{observations}</HealthCheckObservations></GetHealthCheckStatusResponse>"
    )
}

/// What every Route 53 call gets while the control plane is down: `503`
/// `ServiceUnavailable`, which SDKs retry and then report.
pub fn control_plane_down() -> GatewayResponse {
    let request_id = uuid::Uuid::new_v4();
    GatewayResponse::xml(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{XMLNS}\"><Error>\
             <Type>Receiver</Type><Code>ServiceUnavailable</Code>\
             <Message>injected fault: the Route 53 control plane is unavailable</Message>\
             </Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health_checkers::Probe;

    #[test]
    fn only_status_reads_are_answered_here() {
        assert_eq!(
            status_request(&Method::GET, "/2013-04-01/healthcheck/abc/status"),
            Some("abc")
        );
        assert_eq!(
            status_request(&Method::GET, "/2013-04-01/healthcheck/abc"),
            None
        );
        assert_eq!(
            status_request(&Method::POST, "/2013-04-01/healthcheck/abc/status"),
            None
        );
    }

    #[test]
    fn the_status_document_reports_the_last_probe() {
        let time = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let status = CheckerStatus {
            health_check_id: "abc".into(),
            caller_reference: "fleet-eu-west-1".into(),
            url: "http://127.0.0.1:1/live/health".into(),
            healthy: false,
            since: time,
            consecutive_failures: 2,
            consecutive_successes: 0,
            last_probe: Some(Probe {
                time,
                success: false,
                report: "Failure: HTTP Status Code 503, Service Unavailable".into(),
            }),
        };
        let document = status_document(&status);
        assert!(document
            .contains("<Status>Failure: HTTP Status Code 503, Service Unavailable</Status>"));
        assert!(document.contains("<CheckedTime>2027-01-15T08:00:00.000Z</CheckedTime>"));
        assert!(document.contains("<Region>us-east-1</Region>"));
    }
}
