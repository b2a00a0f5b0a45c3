//! Rollout timings as metrics: how long each phase took in each region, and the whole
//! rollout, from the timestamps the registry holds. Pure: no I/O, no clock.
//!
//! | phase | from | to |
//! |---|---|---|
//! | `replicate` | `phases.registered` (the manifest registered) | `regions[r].replicated` (every file verified in `r`, fast copy included) |
//! | `deploy` | `regions[r].deploy_started` (`UpdateEndpoint` accepted) | `regions[r].deployed` (in service on the new configuration, as polled) |
//! | `verify` | `regions[r].deployed` | `regions[r].verified` (smoke test passed) |
//! | whole rollout | `phases.registered` | `phases.committed` |
//!
//! A phase is measured only when both its ends were recorded: a region that never got
//! that far, or a failed step, yields no value rather than a misleading one. An end
//! recorded before its start (clocks of different regions) yields nothing either.

use chrono::{DateTime, Utc};
use meridian::metrics::{
    PHASE_DEPLOY, PHASE_REPLICATE, PHASE_VERIFY, ROLLOUT_DURATION, ROLLOUT_PHASE_DURATION,
};
use meridian::registry::{RegionProgress, VersionRecord};

/// The phase names of the registry's version record.
pub const REGISTERED: &str = "registered";
pub const COMMITTED: &str = "committed";
pub const FAILED: &str = "failed";

/// A phase of a rollout in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Replicate,
    Deploy,
    Verify,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Replicate, Phase::Deploy, Phase::Verify];

    /// The `Phase` dimension value.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Replicate => PHASE_REPLICATE,
            Phase::Deploy => PHASE_DEPLOY,
            Phase::Verify => PHASE_VERIFY,
        }
    }

    fn span(
        self,
        record: &VersionRecord,
        progress: &RegionProgress,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match self {
            Phase::Replicate => (record.phases.get(REGISTERED).copied(), progress.replicated),
            Phase::Deploy => (progress.deploy_started, progress.deployed),
            Phase::Verify => (progress.deployed, progress.verified),
        }
    }
}

/// How long one phase took in one region.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseDuration {
    pub region: String,
    pub phase: Phase,
    pub seconds: f64,
}

/// Seconds from `start` to `end` (millisecond precision), when both are known and in order.
fn seconds(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let elapsed = end? - start?;
    (elapsed >= chrono::Duration::zero()).then(|| elapsed.num_milliseconds() as f64 / 1000.0)
}

/// Every phase that completed, per region (regions in name order, phases in rollout order).
pub fn phase_durations(record: &VersionRecord) -> Vec<PhaseDuration> {
    record
        .regions
        .iter()
        .flat_map(|(region, progress)| {
            Phase::ALL.into_iter().filter_map(move |phase| {
                let (start, end) = phase.span(record, progress);
                Some(PhaseDuration {
                    region: region.clone(),
                    phase,
                    seconds: seconds(start, end)?,
                })
            })
        })
        .collect()
}

/// Registered → committed, once the version is committed.
pub fn rollout_seconds(record: &VersionRecord) -> Option<f64> {
    seconds(
        record.phases.get(REGISTERED).copied(),
        record.phases.get(COMMITTED).copied(),
    )
}

/// Whether the version's rollout has ended (committed or marked failed). The task that
/// ends it, in the write that records the end, is the one that emits its metrics.
pub fn ended(record: &VersionRecord) -> bool {
    record.phases.contains_key(COMMITTED) || record.phases.contains_key(FAILED)
}

/// The EMF lines of an ended rollout: one `RolloutPhaseDuration` per completed phase and
/// region, and `RolloutDuration` if it was committed. All stamped `time` (the moment
/// they are emitted), so one rollout's values sit together on a graph.
pub fn metric_lines(record: &VersionRecord, time: DateTime<Utc>) -> Vec<String> {
    let mut lines: Vec<String> = phase_durations(record)
        .iter()
        .map(|d| ROLLOUT_PHASE_DURATION.line(d.seconds, [&d.region, d.phase.name()], time))
        .collect();
    if let Some(whole) = rollout_seconds(record) {
        lines.push(ROLLOUT_DURATION.line(whole, [], time));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use meridian::manifest::{Manifest, Serving};
    use meridian::registry::{RegisteredManifest, VersionStatus};
    use serde_json::Value;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn manifest() -> Manifest {
        Manifest {
            format: 1,
            model: "m".into(),
            version: "1".into(),
            files: Vec::new(),
            serving: Serving {
                image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:1".into(),
                images: BTreeMap::new(),
                instance_type: "ml.g5.xlarge".into(),
                instance_count: 1,
                variant_name: None,
                environment: BTreeMap::new(),
                smoke_test: None,
            },
        }
    }

    fn record(phases: &[(&str, i64)], regions: &[(&str, RegionProgress)]) -> VersionRecord {
        VersionRecord {
            model: "m".into(),
            version: "1".into(),
            digest: "d".into(),
            manifest: RegisteredManifest::new(&manifest(), "models/m/1/manifest.json", None, b"{}"),
            status: VersionStatus::RollingOut,
            phases: phases
                .iter()
                .map(|(name, t)| ((*name).to_owned(), at(*t)))
                .collect(),
            regions: regions
                .iter()
                .map(|(name, p)| ((*name).to_owned(), p.clone()))
                .collect::<BTreeMap<_, _>>(),
            execution: None,
            reason: None,
        }
    }

    fn complete(replicated: i64, started: i64, deployed: i64, verified: i64) -> RegionProgress {
        RegionProgress {
            replicated: Some(at(replicated)),
            deploy_started: Some(at(started)),
            deployed: Some(at(deployed)),
            verified: Some(at(verified)),
            ..RegionProgress::default()
        }
    }

    fn durations(record: &VersionRecord) -> Vec<(String, &'static str, f64)> {
        phase_durations(record)
            .into_iter()
            .map(|d| (d.region, d.phase.name(), d.seconds))
            .collect()
    }

    #[test]
    fn a_committed_rollout_times_every_phase_of_every_region() {
        let record = record(
            &[
                ("registered", 0),
                ("rollout_started", 1),
                ("committed", 900),
            ],
            &[
                ("eu-west-1", complete(120, 130, 730, 735)),
                ("us-east-1", complete(60, 125, 725, 726)),
            ],
        );
        assert_eq!(
            durations(&record),
            vec![
                ("eu-west-1".into(), "replicate", 120.0),
                ("eu-west-1".into(), "deploy", 600.0),
                ("eu-west-1".into(), "verify", 5.0),
                ("us-east-1".into(), "replicate", 60.0),
                ("us-east-1".into(), "deploy", 600.0),
                ("us-east-1".into(), "verify", 1.0),
            ]
        );
        assert_eq!(rollout_seconds(&record), Some(900.0));
        assert!(ended(&record));
    }

    #[test]
    fn missing_timestamps_and_regions_that_never_got_that_far_yield_nothing() {
        let record = record(
            &[("registered", 0), ("failed", 400)],
            &[
                // Replicated and deployed, then the smoke test failed: no verify.
                (
                    "eu-west-1",
                    RegionProgress {
                        verified: None,
                        ..complete(100, 110, 300, 0)
                    },
                ),
                // Replicated, the update never finished.
                (
                    "us-east-1",
                    RegionProgress {
                        replicated: Some(at(50)),
                        deploy_started: Some(at(110)),
                        ..RegionProgress::default()
                    },
                ),
                // Nothing recorded at all.
                ("ap-southeast-1", RegionProgress::default()),
            ],
        );
        assert_eq!(
            durations(&record),
            vec![
                ("eu-west-1".into(), "replicate", 100.0),
                ("eu-west-1".into(), "deploy", 190.0),
                ("us-east-1".into(), "replicate", 50.0),
            ]
        );
        assert_eq!(rollout_seconds(&record), None, "never committed");
        assert!(ended(&record));
        let lines = metric_lines(&record, at(401));
        assert_eq!(lines.len(), 3, "no RolloutDuration for a failed version");
    }

    #[test]
    fn no_registration_time_means_no_replicate_or_whole_rollout_value() {
        let record = record(
            &[("committed", 900)],
            &[("eu-west-1", complete(120, 130, 730, 735))],
        );
        assert_eq!(
            durations(&record),
            vec![
                ("eu-west-1".into(), "deploy", 600.0),
                ("eu-west-1".into(), "verify", 5.0),
            ]
        );
        assert_eq!(rollout_seconds(&record), None);
    }

    #[test]
    fn an_end_before_its_start_is_not_a_duration() {
        let record = record(
            &[("registered", 100), ("committed", 50)],
            &[("eu-west-1", complete(90, 200, 150, 160))],
        );
        assert_eq!(
            durations(&record),
            vec![("eu-west-1".into(), "verify", 10.0)]
        );
        assert_eq!(rollout_seconds(&record), None);
    }

    #[test]
    fn durations_keep_milliseconds() {
        let mut record = record(&[("registered", 0)], &[]);
        record.regions.insert(
            "eu-west-1".into(),
            RegionProgress {
                replicated: Some(at(2) + chrono::Duration::milliseconds(250)),
                ..RegionProgress::default()
            },
        );
        assert_eq!(
            durations(&record),
            vec![("eu-west-1".into(), "replicate", 2.25)]
        );
    }

    #[test]
    fn phases_are_the_declared_dimension_values_in_rollout_order() {
        assert_eq!(
            Phase::ALL.map(Phase::name),
            meridian::metrics::ROLLOUT_PHASES
        );
    }

    #[test]
    fn a_rollout_in_progress_has_not_ended() {
        let record = record(
            &[("registered", 0), ("rollout_started", 1)],
            &[("eu-west-1", complete(120, 130, 730, 735))],
        );
        assert!(!ended(&record));
    }

    #[test]
    fn lines_carry_region_phase_and_value() {
        let record = record(
            &[("registered", 0), ("committed", 900)],
            &[("eu-west-1", complete(120, 130, 730, 735))],
        );
        let documents: Vec<Value> = metric_lines(&record, at(901))
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(documents.len(), 4);
        let deploy = &documents[1];
        assert_eq!(deploy["Region"], "eu-west-1");
        assert_eq!(deploy["Phase"], "deploy");
        assert_eq!(deploy["RolloutPhaseDuration"], 600.0);
        assert_eq!(
            deploy["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Seconds"
        );
        assert_eq!(deploy["_aws"]["Timestamp"], at(901).timestamp_millis());
        let whole = &documents[3];
        assert_eq!(whole["RolloutDuration"], 900.0);
        assert!(whole.get("Region").is_none());
    }
}
