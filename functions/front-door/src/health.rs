//! `GET /health`'s answer, decided from what the region's own replica and its endpoint
//! say. Route 53's health checkers probe it: a 200 keeps the region in DNS, anything
//! else for `failure_threshold` probes in a row takes it out. So a drain is a write of
//! the region's record in its own replica, and a region that goes dark stops answering
//! and leaves DNS with nothing of ours in the path.

use http::StatusCode;
use meridian::failover::RegionHealth;
use serde_json::{json, Value};

use crate::deps::ReadError;

/// The status a SageMaker endpoint has while it serves.
pub const IN_SERVICE: &str = "InService";

/// The answer to a probe: its status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: StatusCode,
    pub body: Value,
}

/// 200 only while the region's record says it is in service (no record: nothing ever
/// happened to the region) and its endpoint is `InService`; otherwise 503 with the first
/// reason found, the record's before the endpoint's.
pub fn verdict(
    region: &str,
    endpoint: &str,
    record: &Result<Option<RegionHealth>, ReadError>,
    endpoint_status: &Result<String, ReadError>,
) -> Verdict {
    let out = |reason: String| Verdict {
        status: StatusCode::SERVICE_UNAVAILABLE,
        body: json!({ "region": region, "status": "out of service", "reason": reason }),
    };
    let health = match record {
        Err(error) => return out(format!("health record unreadable: {error}")),
        Ok(health) => health.as_ref(),
    };
    if let Some(health) = health.filter(|h| !h.state.in_service()) {
        return out(format!(
            "{} since {}: {}",
            state_name(health),
            health.since.to_rfc3339(),
            health.reason
        ));
    }
    match endpoint_status {
        Err(error) => out(format!("endpoint {endpoint} status unreadable: {error}")),
        Ok(status) if status != IN_SERVICE => out(format!("endpoint {endpoint} is {status}")),
        Ok(status) => Verdict {
            status: StatusCode::OK,
            body: json!({
                "region": region,
                "status": "in service",
                "endpoint": endpoint,
                "endpoint_status": status,
                "since": health.map(|h| h.since.to_rfc3339()),
            }),
        },
    }
}

/// The record's state as it is stored (`drained_by_alarm`, ...).
fn state_name(health: &RegionHealth) -> String {
    serde_json::to_value(health.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", health.state))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use meridian::failover::HealthState;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap_or_default()
    }

    fn record(state: HealthState, reason: &str) -> RegionHealth {
        RegionHealth {
            state,
            reason: reason.into(),
            ..RegionHealth::new("eu-west-1", at(1_800_000_000))
        }
    }

    fn in_service() -> Result<String, ReadError> {
        Ok(IN_SERVICE.into())
    }

    #[test]
    fn no_record_and_an_endpoint_in_service_is_in_service() {
        let answer = verdict("eu-west-1", "llm", &Ok(None), &in_service());
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["status"], "in service");
        assert_eq!(answer.body["region"], "eu-west-1");
        assert_eq!(answer.body["since"], Value::Null);
    }

    #[test]
    fn a_healthy_record_is_in_service_since_its_time() {
        let healthy = Ok(Some(record(HealthState::Healthy, "initial")));
        let answer = verdict("eu-west-1", "llm", &healthy, &in_service());
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["since"], "2027-01-15T08:00:00+00:00");
    }

    #[test]
    fn every_drained_state_is_out_of_service_with_the_records_reason() {
        for state in [
            HealthState::DrainedByAlarm,
            HealthState::DrainedByHand,
            HealthState::Recovering,
        ] {
            let drained = Ok(Some(record(state, "alarm llm-5xx in ALARM")));
            let answer = verdict("eu-west-1", "llm", &drained, &in_service());
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{state:?}");
            assert_eq!(answer.body["status"], "out of service");
            let reason = answer.body["reason"].as_str().unwrap_or_default();
            assert!(
                reason.ends_with("since 2027-01-15T08:00:00+00:00: alarm llm-5xx in ALARM"),
                "{reason}"
            );
        }
        let by_alarm = Ok(Some(record(HealthState::DrainedByAlarm, "x")));
        let answer = verdict("eu-west-1", "llm", &by_alarm, &in_service());
        assert!(answer.body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("drained_by_alarm since")));
    }

    #[test]
    fn an_endpoint_not_in_service_is_out_of_service() {
        let answer = verdict("eu-west-1", "llm", &Ok(None), &Ok("Updating".into()));
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.body["reason"], "endpoint llm is Updating");
    }

    #[test]
    fn unreadable_inputs_are_out_of_service_and_say_which() {
        let down = ReadError("connection refused".into());
        let answer = verdict("eu-west-1", "llm", &Err(down.clone()), &in_service());
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.body["reason"],
            "health record unreadable: connection refused"
        );
        let answer = verdict("eu-west-1", "llm", &Ok(None), &Err(down));
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.body["reason"],
            "endpoint llm status unreadable: connection refused"
        );
    }

    #[test]
    fn the_records_reason_comes_before_the_endpoints() {
        let drained = Ok(Some(record(HealthState::DrainedByHand, "maintenance")));
        let answer = verdict("eu-west-1", "llm", &drained, &Ok("Updating".into()));
        assert!(answer.body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("drained_by_hand")));
    }
}
