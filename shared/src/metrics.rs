//! Metrics as CloudWatch Embedded Metric Format log lines: printed to stdout in Lambda,
//! they become metrics without any extra API call.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// The namespace of every Meridian metric.
pub const NAMESPACE: &str = "Meridian";

/// One EMF document with one metric and the given dimensions.
pub fn emf_line(
    metric: &str,
    unit: &str,
    value: f64,
    dimensions: &[(&str, &str)],
    time: DateTime<Utc>,
) -> String {
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": time.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": [{ "Name": metric, "Unit": unit }],
            }],
        }),
    );
    for (name, value) in dimensions {
        document.insert((*name).into(), json!(value));
    }
    document.insert(metric.into(), json!(value));
    Value::Object(document).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_documents_declare_and_carry_the_metric() {
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let line = emf_line(
            "FailoverReactionTime",
            "Milliseconds",
            812.0,
            &[("Region", "eu-west-1")],
            time,
        );
        let document: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(document["_aws"]["Timestamp"], 1_800_000_000_000_i64);
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Region"
        );
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "FailoverReactionTime"
        );
        assert_eq!(document["Region"], "eu-west-1");
        assert_eq!(document["FailoverReactionTime"], 812.0);
    }
}
