//! Failover drills (`meridian drill start --from R1 --to R2`): the pure decisions the
//! drill's state machine tasks make. A drill shifts a share of R1's inference to R2
//! through R1's front door ([`crate::traffic`]) step by step, bakes each step, aborts
//! and restores at the first sign of trouble, and restores at the end. Every input is an
//! argument (the fleet's alarms, the regions' records, the step's counts, the clock), so
//! the decisions are tested without I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fleet::Fleet;
use crate::traffic::DrillShift;

/// A step's counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCounts {
    pub requests: u64,
    pub errors: u64,
    /// Sum of the requests' forwarding latencies; over `requests`, their mean.
    pub latency_ms_total: f64,
}

impl StepCounts {
    /// Percent of the step's requests that failed (0 with none).
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.requests as f64
        }
    }

    /// Mean forwarding latency, when there were requests.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.latency_ms_total / self.requests as f64)
    }
}

/// The default steps, percent of the source region's inference.
pub const DEFAULT_STEPS: [u32; 4] = [10, 25, 50, 100];
/// The default bake of each step.
pub const DEFAULT_BAKE: Duration = Duration::from_secs(300);
/// Longest bake of one step.
pub const MAX_BAKE: Duration = Duration::from_secs(3_600);
/// How long a written shift outlives the bake it was written for: if the drill's state
/// machine stops renewing it (its region gone), the shift lapses by itself this long
/// after its step should have ended.
pub const SHIFT_GRACE: Duration = Duration::from_secs(60);
/// Fewest shifted requests in a step before its error rate can abort the drill: one
/// failure out of three is noise, not a rate.
pub const MIN_REQUESTS_FOR_RATE: u64 = 10;

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRequest {
    pub from: String,
    pub to: String,
    pub steps: Vec<u32>,
    #[serde(with = "seconds")]
    pub bake: Duration,
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// Why a drill cannot start as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request itself is wrong (unknown region, bad steps or bake).
    #[error("invalid drill: {0}")]
    Invalid(String),
    /// The fleet is not in a state to drill.
    #[error("drill refused: {0}")]
    Refused(String),
}

/// Checks the request against the fleet file alone.
pub fn validate(fleet: &Fleet, request: &DrillRequest) -> Result<(), Refusal> {
    let invalid = |why: String| Err(Refusal::Invalid(why));
    for region in [&request.from, &request.to] {
        if fleet.region(region).is_none() {
            return invalid(format!("region {region} is not in fleet {}", fleet.name));
        }
    }
    if request.from == request.to {
        return invalid(format!("--from and --to are both {}", request.from));
    }
    if request.steps.is_empty() {
        return invalid("no steps".into());
    }
    if let Some(bad) = request.steps.iter().find(|s| !(1..=100).contains(*s)) {
        return invalid(format!("step {bad}% is not within 1 to 100"));
    }
    if request.steps.windows(2).any(|w| w[0] >= w[1]) {
        return invalid(format!("steps {:?} do not rise", request.steps));
    }
    if request.bake > MAX_BAKE {
        return invalid(format!(
            "bake {} s is more than {} s",
            request.bake.as_secs(),
            MAX_BAKE.as_secs()
        ));
    }
    Ok(())
}

/// What else is going on in the fleet when a drill asks to start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetActivity {
    /// The rollout holding the registry's lock, if any.
    pub rollout: Option<String>,
    /// The drill already running, if any.
    pub drill: Option<String>,
    /// Regions whose records say they are out of service, with why.
    pub drained: Vec<(String, String)>,
}

/// One drill at a time, never during a rollout, never while any region is drained: a
/// drill tests failover capacity, and a fleet already short of a region or changing
/// versions would make its result meaningless and its traffic a risk.
pub fn may_start(activity: &FleetActivity) -> Result<(), Refusal> {
    if let Some(rollout) = &activity.rollout {
        return Err(Refusal::Refused(format!(
            "rollout {rollout} holds the registry's lock"
        )));
    }
    if let Some(drill) = &activity.drill {
        return Err(Refusal::Refused(format!("drill {drill} is running")));
    }
    if let Some((region, why)) = activity.drained.first() {
        return Err(Refusal::Refused(format!("{region} is drained: {why}")));
    }
    Ok(())
}

/// The shift to write for step `step` of `request`, good until its bake is over and
/// [`SHIFT_GRACE`] more.
pub fn shift_for(
    drill_id: &str,
    request: &DrillRequest,
    step: usize,
    now: DateTime<Utc>,
) -> Option<DrillShift> {
    let percent = *request.steps.get(step)?;
    let lease = chrono::Duration::from_std(request.bake + SHIFT_GRACE).ok()?;
    Some(DrillShift {
        drill_id: drill_id.to_owned(),
        from: request.from.clone(),
        to: request.to.clone(),
        percent,
        step,
        until: now + lease,
    })
}

/// After a step has baked: the next step, or the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Step(usize),
    Restore,
}

/// The step after `step`.
pub fn next(request: &DrillRequest, step: usize) -> Next {
    if step + 1 < request.steps.len() {
        Next::Step(step + 1)
    } else {
        Next::Restore
    }
}

/// What the drill sees while a step bakes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Fleet alarms in `ALARM`, as `region/alarm`.
    pub alarms_firing: Vec<String>,
    /// Regions whose records say they are out of service (an automatic failover drained
    /// one), with why.
    pub drained: Vec<(String, String)>,
    /// The step's shifted requests so far.
    pub counts: StepCounts,
}

/// Whether the drill goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Abort(String),
}

/// Abort when any fleet alarm is in `ALARM`, any region is drained, or more than
/// `max_error_percent` of the step's shifted requests failed (once there are
/// [`MIN_REQUESTS_FOR_RATE`] of them).
pub fn verdict(observation: &Observation, max_error_percent: f64) -> Verdict {
    if !observation.alarms_firing.is_empty() {
        return Verdict::Abort(format!(
            "alarm in ALARM: {}",
            observation.alarms_firing.join(", ")
        ));
    }
    if let Some((region, why)) = observation.drained.first() {
        return Verdict::Abort(format!("{region} was drained: {why}"));
    }
    let counts = &observation.counts;
    if counts.requests >= MIN_REQUESTS_FOR_RATE && counts.error_percent() > max_error_percent {
        return Verdict::Abort(format!(
            "{} of {} shifted requests failed ({:.1}% > {max_error_percent}%)",
            counts.errors,
            counts.requests,
            counts.error_percent()
        ));
    }
    Verdict::Continue
}

/// What the drill's state machine does after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The step goes on baking: wait and check again.
    Bake,
    /// The step baked cleanly: shift to the next one.
    Next,
    /// The last step baked cleanly: restore, the drill passed.
    Restore,
    /// Something went wrong: restore now, the drill aborted.
    Abort,
}

/// The check's decision: abort on a bad verdict whatever the bake, else bake until the
/// step's time is up, then the next step or the end.
pub fn after_check(verdict: &Verdict, baked: bool, next: Next) -> Action {
    match (verdict, baked, next) {
        (Verdict::Abort(_), _, _) => Action::Abort,
        (Verdict::Continue, false, _) => Action::Bake,
        (Verdict::Continue, true, Next::Step(_)) => Action::Next,
        (Verdict::Continue, true, Next::Restore) => Action::Restore,
    }
}

/// How a drill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    Running,
    /// Every step baked cleanly and the traffic was restored.
    Completed,
    /// Stopped early (alarm, drain, errors, an operator, a failed task) and restored.
    Aborted,
}

/// One step as it ran: its share, its times and the shifted requests' counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub percent: u32,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub counts: StepCounts,
}

/// A drill's record, kept in the primary region's replica for `drill status` and
/// `meridian history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    pub id: String,
    pub request: DrillRequest,
    pub started: DateTime<Utc>,
    pub status: DrillStatus,
    /// Why it aborted.
    pub reason: Option<String>,
    pub ended: Option<DateTime<Utc>>,
    pub steps: Vec<StepResult>,
}

impl DrillRecord {
    /// Ends the drill (once: a second end, a retried restore, changes nothing).
    pub fn end(&mut self, reason: Option<String>, now: DateTime<Utc>) {
        if self.status != DrillStatus::Running {
            return;
        }
        if let Some(step) = self.steps.last_mut() {
            step.ended.get_or_insert(now);
        }
        self.status = if reason.is_some() {
            DrillStatus::Aborted
        } else {
            DrillStatus::Completed
        };
        self.reason = reason;
        self.ended = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fleet() -> Fleet {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fleet.example.toml"
        ))
        .unwrap_or_default();
        Fleet::from_toml_str(&text).unwrap_or_else(|e| panic!("example fleet: {e}"))
    }

    fn request(steps: &[u32]) -> DrillRequest {
        DrillRequest {
            from: "us-east-1".into(),
            to: "eu-west-1".into(),
            steps: steps.to_vec(),
            bake: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_request_is_checked_against_the_fleet() {
        let fleet = fleet();
        assert_eq!(validate(&fleet, &request(&DEFAULT_STEPS)), Ok(()));
        let bad = |r: DrillRequest| validate(&fleet, &r).err().map(|e| e.to_string());
        let mut unknown = request(&[10]);
        unknown.to = "mars-east-1".into();
        assert!(bad(unknown).is_some_and(|e| e.contains("mars-east-1")));
        let mut same = request(&[10]);
        same.to = same.from.clone();
        assert!(bad(same).is_some_and(|e| e.contains("both")));
        assert!(bad(request(&[])).is_some_and(|e| e.contains("no steps")));
        assert!(bad(request(&[0, 10])).is_some_and(|e| e.contains("0%")));
        assert!(bad(request(&[10, 101])).is_some_and(|e| e.contains("101%")));
        assert!(bad(request(&[50, 25])).is_some_and(|e| e.contains("rise")));
        assert!(bad(request(&[10, 10])).is_some_and(|e| e.contains("rise")));
        let mut long = request(&[10]);
        long.bake = MAX_BAKE + Duration::from_secs(1);
        assert!(bad(long).is_some_and(|e| e.contains("bake")));
    }

    #[test]
    fn a_drill_is_refused_during_a_rollout_another_drill_or_a_drain() {
        assert_eq!(may_start(&FleetActivity::default()), Ok(()));
        let rollout = FleetActivity {
            rollout: Some("llama/2".into()),
            ..FleetActivity::default()
        };
        assert!(
            matches!(may_start(&rollout), Err(Refusal::Refused(why)) if why.contains("llama/2"))
        );
        let drill = FleetActivity {
            drill: Some("d0".into()),
            ..FleetActivity::default()
        };
        assert!(matches!(may_start(&drill), Err(Refusal::Refused(why)) if why.contains("d0")));
        let drained = FleetActivity {
            drained: vec![("eu-west-1".into(), "drained_by_hand".into())],
            ..FleetActivity::default()
        };
        assert!(
            matches!(may_start(&drained), Err(Refusal::Refused(why)) if why.contains("eu-west-1"))
        );
    }

    #[test]
    fn steps_run_in_order_then_restore() {
        let r = request(&DEFAULT_STEPS);
        assert_eq!(next(&r, 0), Next::Step(1));
        assert_eq!(next(&r, 2), Next::Step(3));
        assert_eq!(next(&r, 3), Next::Restore);
        assert_eq!(next(&request(&[100]), 0), Next::Restore);
    }

    #[test]
    fn a_steps_shift_lasts_its_bake_and_the_grace() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let shift = shift_for("d1", &request(&DEFAULT_STEPS), 2, now);
        assert_eq!(
            shift,
            Some(DrillShift {
                drill_id: "d1".into(),
                from: "us-east-1".into(),
                to: "eu-west-1".into(),
                percent: 50,
                step: 2,
                until: now + chrono::Duration::seconds(90),
            })
        );
        assert_eq!(shift_for("d1", &request(&DEFAULT_STEPS), 4, now), None);
    }

    fn counts(requests: u64, errors: u64) -> StepCounts {
        StepCounts {
            requests,
            errors,
            latency_ms_total: 0.0,
        }
    }

    #[test]
    fn an_alarm_a_drain_or_failing_shifted_traffic_aborts() {
        let quiet = Observation::default();
        assert_eq!(verdict(&quiet, 5.0), Verdict::Continue);
        let alarm = Observation {
            alarms_firing: vec!["eu-west-1/llm-5xx".into()],
            ..Observation::default()
        };
        assert!(matches!(verdict(&alarm, 5.0), Verdict::Abort(why) if why.contains("llm-5xx")));
        let drained = Observation {
            drained: vec![("eu-west-1".into(), "drained_by_alarm".into())],
            ..Observation::default()
        };
        assert!(matches!(verdict(&drained, 5.0), Verdict::Abort(why) if why.contains("eu-west-1")));
        let failing = Observation {
            counts: counts(100, 6),
            ..Observation::default()
        };
        assert!(matches!(verdict(&failing, 5.0), Verdict::Abort(why) if why.contains("6 of 100")));
        let at_threshold = Observation {
            counts: counts(100, 5),
            ..Observation::default()
        };
        assert_eq!(verdict(&at_threshold, 5.0), Verdict::Continue);
        let too_few = Observation {
            counts: counts(MIN_REQUESTS_FOR_RATE - 1, MIN_REQUESTS_FOR_RATE - 1),
            ..Observation::default()
        };
        assert_eq!(verdict(&too_few, 5.0), Verdict::Continue);
    }

    #[test]
    fn a_check_aborts_at_once_or_bakes_until_the_steps_time_then_moves_on() {
        let abort = Verdict::Abort("alarm".into());
        for baked in [false, true] {
            for next in [Next::Step(1), Next::Restore] {
                assert_eq!(after_check(&abort, baked, next), Action::Abort);
            }
        }
        let fine = Verdict::Continue;
        assert_eq!(after_check(&fine, false, Next::Step(1)), Action::Bake);
        assert_eq!(after_check(&fine, false, Next::Restore), Action::Bake);
        assert_eq!(after_check(&fine, true, Next::Step(1)), Action::Next);
        assert_eq!(after_check(&fine, true, Next::Restore), Action::Restore);
    }

    #[test]
    fn a_drill_ends_once() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let mut record = DrillRecord {
            id: "d1".into(),
            request: request(&[10]),
            started: now,
            status: DrillStatus::Running,
            reason: None,
            ended: None,
            steps: vec![StepResult {
                percent: 10,
                started: now,
                ended: None,
                counts: StepCounts::default(),
            }],
        };
        let later = now + chrono::Duration::seconds(5);
        record.end(Some("alarm".into()), later);
        assert_eq!(record.status, DrillStatus::Aborted);
        assert_eq!(record.steps[0].ended, Some(later));
        record.end(None, later + chrono::Duration::seconds(5));
        assert_eq!(
            record.status,
            DrillStatus::Aborted,
            "a retried restore changes nothing"
        );
        assert_eq!(record.ended, Some(later));
    }

    proptest! {
        #[test]
        fn the_error_rate_aborts_exactly_above_the_threshold(
            requests in MIN_REQUESTS_FOR_RATE..10_000u64,
            errors_permille in 0u64..=1000,
            max in 0.0f64..=100.0,
        ) {
            let errors = requests * errors_permille / 1000;
            let observation = Observation { counts: counts(requests, errors), ..Observation::default() };
            let rate = errors as f64 * 100.0 / requests as f64;
            prop_assert_eq!(verdict(&observation, max) == Verdict::Continue, rate <= max);
        }

        #[test]
        fn every_step_is_visited_once_in_order(steps in proptest::collection::btree_set(1u32..=100, 1..8)) {
            let r = request(&steps.into_iter().collect::<Vec<_>>());
            let mut visited = vec![0];
            while let Next::Step(i) = next(&r, *visited.last().unwrap_or(&0)) {
                visited.push(i);
            }
            prop_assert_eq!(visited, (0..r.steps.len()).collect::<Vec<_>>());
        }
    }
}
