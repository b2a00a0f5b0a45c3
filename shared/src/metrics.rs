//! Metrics as CloudWatch Embedded Metric Format log lines: printed to stdout in Lambda,
//! they become metrics without any extra API call.
//!
//! Every metric Meridian emits is declared here, once, with its unit and the dimension
//! names it is always emitted with ([`all`]). CloudWatch keeps one metric per dimension
//! set, so the dashboard must name exactly these dimensions: the template test checks it.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// The namespace of every Meridian metric.
pub const NAMESPACE: &str = "Meridian";

/// The dimension naming the fleet region a value is about.
pub const REGION: &str = "Region";
/// The dimension naming a rollout phase: one of [`ROLLOUT_PHASES`].
pub const PHASE: &str = "Phase";

/// `Phase` of the replication: registered → every file verified in the region.
pub const PHASE_REPLICATE: &str = "replicate";
/// `Phase` of the endpoint update: `UpdateEndpoint` → in service on the new configuration.
pub const PHASE_DEPLOY: &str = "deploy";
/// `Phase` of the smoke test: in service → smoke test passed.
pub const PHASE_VERIFY: &str = "verify";
/// Every value of the `Phase` dimension, in rollout order.
pub const ROLLOUT_PHASES: [&str; 3] = [PHASE_REPLICATE, PHASE_DEPLOY, PHASE_VERIFY];

/// A metric Meridian emits: name, CloudWatch unit and its `N` dimension names. Values
/// are emitted through [`Metric::line`], which takes exactly `N` dimension values, so no
/// call site can emit the metric with another dimension set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric<const N: usize> {
    pub name: &'static str,
    pub unit: &'static str,
    pub dimensions: [&'static str; N],
}

/// A metric's declaration whatever its number of dimensions (for listings and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    pub dimensions: Vec<&'static str>,
}

impl<const N: usize> Metric<N> {
    /// One EMF document for one value, with the dimension values in declaration order.
    pub fn line(&self, value: f64, dimension_values: [&str; N], time: DateTime<Utc>) -> String {
        let dimensions: Vec<(&str, &str)> = self
            .dimensions
            .iter()
            .copied()
            .zip(dimension_values)
            .collect();
        emf_line(self.name, self.unit, value, &dimensions, time)
    }

    pub fn spec(&self) -> MetricSpec {
        MetricSpec {
            name: self.name,
            unit: self.unit,
            dimensions: self.dimensions.to_vec(),
        }
    }
}

/// Failover function: alarm state change to the region's health check flipped (drain).
pub const FAILOVER_REACTION_TIME: Metric<1> = Metric {
    name: "FailoverReactionTime",
    unit: "Milliseconds",
    dimensions: [REGION],
};

/// Failover function: alarm back to OK to the region restored by that alarm event.
pub const FAILBACK_REACTION_TIME: Metric<1> = Metric {
    name: "FailbackReactionTime",
    unit: "Milliseconds",
    dimensions: [REGION],
};

/// Failback function: region OK since → restored after the hysteresis.
pub const FAILBACK_AFTER_OK: Metric<1> = Metric {
    name: "FailbackAfterOk",
    unit: "Milliseconds",
    dimensions: [REGION],
};

/// Rollout function, once per version when it is committed or marked failed: how long
/// one phase took in one region (`replicate`: registered → the region's replicas
/// verified; `deploy`: `UpdateEndpoint` → in service on the new configuration; `verify`:
/// in service → smoke test passed). Emitted in the control region; `Region` is the
/// fleet region the value is about.
pub const ROLLOUT_PHASE_DURATION: Metric<2> = Metric {
    name: "RolloutPhaseDuration",
    unit: "Seconds",
    dimensions: [REGION, PHASE],
};

/// Rollout function, once per committed version: registered → committed.
pub const ROLLOUT_DURATION: Metric<0> = Metric {
    name: "RolloutDuration",
    unit: "Seconds",
    dimensions: [],
};

/// Failback function, every tick whose drift check ran: 1 while the region's endpoint
/// differs from the registry's active version (recorded drift), else 0.
pub const DRIFT: Metric<1> = Metric {
    name: "Drift",
    unit: "Count",
    dimensions: [REGION],
};

/// Failback function of the primary region: a drift repair of the region started
/// ([`crate::repair`]), once per repair.
pub const REPAIR_STARTED: Metric<1> = Metric {
    name: "RepairStarted",
    unit: "Count",
    dimensions: [REGION],
};

/// Rollout function: a drift repair of the region put the active version back.
pub const REPAIR_SUCCEEDED: Metric<1> = Metric {
    name: "RepairSucceeded",
    unit: "Count",
    dimensions: [REGION],
};

/// Rollout function: a drift repair of the region failed (the drift stays reported).
pub const REPAIR_FAILED: Metric<1> = Metric {
    name: "RepairFailed",
    unit: "Count",
    dimensions: [REGION],
};

/// Every metric Meridian emits.
pub fn all() -> Vec<MetricSpec> {
    vec![
        FAILOVER_REACTION_TIME.spec(),
        FAILBACK_REACTION_TIME.spec(),
        FAILBACK_AFTER_OK.spec(),
        ROLLOUT_PHASE_DURATION.spec(),
        ROLLOUT_DURATION.spec(),
        DRIFT.spec(),
        REPAIR_STARTED.spec(),
        REPAIR_SUCCEEDED.spec(),
        REPAIR_FAILED.spec(),
    ]
}

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

    #[test]
    fn declared_metrics_emit_their_dimension_names_in_order() {
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let line = ROLLOUT_PHASE_DURATION.line(42.5, ["eu-west-1", "deploy"], time);
        let document: Value = serde_json::from_str(&line).expect("json");
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Region", "Phase"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{ "Name": "RolloutPhaseDuration", "Unit": "Seconds" }])
        );
        assert_eq!(document["Region"], "eu-west-1");
        assert_eq!(document["Phase"], "deploy");
        assert_eq!(document["RolloutPhaseDuration"], 42.5);

        let whole: Value =
            serde_json::from_str(&ROLLOUT_DURATION.line(600.0, [], time)).expect("json");
        assert_eq!(
            whole["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(whole["RolloutDuration"], 600.0);
    }

    #[test]
    fn every_metric_is_declared_once_with_a_cloudwatch_unit() {
        let all = all();
        let mut names: Vec<&str> = all.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "metric names are unique");
        for metric in &all {
            assert!(
                ["Seconds", "Milliseconds", "Count"].contains(&metric.unit),
                "{metric:?}"
            );
        }
    }
}
