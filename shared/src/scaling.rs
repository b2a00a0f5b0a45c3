//! The Application Auto Scaling state a region's declared capacity asks for, and the
//! declarative reconcile's pure parts: what AAS should hold ([`desired`]), the rule that
//! keeps a drained region or a raised standby from being scaled down under a failover
//! ([`held_target`]), and the differences to apply ([`diff`]) — only those, so a second
//! run with nothing changed makes no write call. The reading and writing sit behind
//! [`AutoScaling`]; the AWS adapter is [`crate::scaling_aws`].

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::capacity::{self, Bounds, Window};
use crate::failover::RegionHealth;
use crate::fleet::{Fleet, RegionSpec};
use crate::health::HealthError;

/// The predefined metric Meridian's target-tracking policy tracks.
pub const INVOCATIONS_METRIC: &str = "SageMakerVariantInvocationsPerInstance";
/// Seconds between scaling activities of the target-tracking policy, both ways: SageMaker's
/// documented default of 300 s, stated so that the policy read back compares equal.
pub const COOLDOWN_SECONDS: i32 = 300;

/// What suspends scaling on a scalable target (AAS's `SuspendedState`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Suspended {
    pub dynamic_in: bool,
    pub dynamic_out: bool,
    pub scheduled: bool,
}

/// A scalable target: the variant's floor and ceiling, and what is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Target {
    pub min: u32,
    pub max: u32,
    pub suspended: Suspended,
}

/// A target-tracking scaling policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    /// `TargetTrackingScaling`, or whatever else AAS reports.
    pub policy_type: String,
    /// The predefined metric tracked (empty for a custom or other kind of policy).
    pub metric: String,
    pub target_value: f64,
    pub scale_in_cooldown: Option<i32>,
    pub scale_out_cooldown: Option<i32>,
}

/// A recurring scheduled action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledAction {
    pub name: String,
    /// `cron(...)` in local time of `timezone`.
    pub schedule: String,
    /// IANA zone name (AAS's `Timezone`); `None` when AAS reports none (UTC).
    pub timezone: Option<String>,
    pub min: Option<u32>,
    pub max: Option<u32>,
}

/// What AAS holds (or should hold) for one endpoint variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScalingState {
    pub target: Option<Target>,
    pub policies: Vec<Policy>,
    pub actions: Vec<ScheduledAction>,
}

/// One write to AAS.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum ScalingChange {
    /// `RegisterScalableTarget` (creates or updates).
    RegisterTarget(Target),
    /// `PutScalingPolicy` (creates or updates).
    PutPolicy(Policy),
    DeletePolicy {
        name: String,
    },
    /// `PutScheduledAction` (creates or updates).
    PutAction(ScheduledAction),
    DeleteAction {
        name: String,
    },
}

impl ScalingChange {
    /// One line for logs and the CLI.
    pub fn describe(&self) -> String {
        match self {
            ScalingChange::RegisterTarget(t) => format!(
                "scalable target min {} max {}{}",
                t.min,
                t.max,
                if t.suspended.scheduled {
                    ", scheduled scaling suspended"
                } else {
                    ""
                }
            ),
            ScalingChange::PutPolicy(p) => {
                format!("policy {} target {} {}", p.name, p.target_value, p.metric)
            }
            ScalingChange::DeletePolicy { name } => format!("delete policy {name}"),
            ScalingChange::PutAction(a) => format!(
                "scheduled action {} {} {} min {} max {}",
                a.name,
                a.schedule,
                a.timezone.as_deref().unwrap_or("UTC"),
                a.min.map_or("-".into(), |v| v.to_string()),
                a.max.map_or("-".into(), |v| v.to_string()),
            ),
            ScalingChange::DeleteAction { name } => format!("delete scheduled action {name}"),
        }
    }
}

/// Why a region's capacity is held where it is rather than lowered to the file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hold {
    /// The region is drained (or waiting to drain): it keeps its capacity for failback.
    Drained,
    /// An active-passive standby raised to serve for its primary.
    StandbyRaised,
}

/// Whether `region` is held, from its own health record (as its own replica has it) and
/// whether its tick raised it as a standby: a region out of service, or about to drain,
/// keeps its capacity for the failback; a raised standby serves for its primary.
pub fn hold(health: Option<&RegionHealth>, standby_raised: bool) -> Option<Hold> {
    let drained = health.is_some_and(|h| !h.state.in_service() || h.drain_intent.is_some());
    if drained {
        Some(Hold::Drained)
    } else if standby_raised {
        Some(Hold::StandbyRaised)
    } else {
        None
    }
}

/// The prefix of every policy and scheduled action Meridian manages for `fleet`: names
/// with it are Meridian's to change or delete; others are left alone.
pub fn managed_prefix(fleet: &Fleet) -> String {
    format!("{}.", fleet.name)
}

/// The name of the region's target-tracking policy.
pub fn policy_name(fleet: &Fleet) -> String {
    format!("{}invocations-per-instance", managed_prefix(fleet))
}

/// The name of a window's scheduled action at one of its ends.
pub fn action_name(fleet: &Fleet, window: &Window, edge: capacity::Edge) -> String {
    format!("{}{}.{edge}", managed_prefix(fleet), window.name)
}

/// AAS's cron (`cron(min hour day-of-month month day-of-week year)`) for a local time on
/// `days` (every day when empty).
pub fn cron(time: chrono::NaiveTime, days: &[chrono::Weekday]) -> String {
    use chrono::Timelike;
    let (minute, hour) = (time.minute(), time.hour());
    if days.is_empty() || days.len() == 7 {
        format!("cron({minute} {hour} * * ? *)")
    } else {
        let mut days = days.to_vec();
        days.sort_by_key(|d| d.num_days_from_monday());
        let names: Vec<String> = days
            .iter()
            .map(|d| capacity::day_name(*d).to_uppercase())
            .collect();
        format!("cron({minute} {hour} ? * {} *)", names.join(","))
    }
}

/// The AAS state `region`'s declaration asks for at `now`: the target at the bounds in
/// force then (so a reconcile never undoes a window's action that already fired), the
/// target-tracking policy if declared, and two scheduled actions per window.
pub fn desired(fleet: &Fleet, region: &RegionSpec, now: DateTime<Utc>) -> ScalingState {
    let Bounds { min, max } = capacity::in_force(region, now).bounds;
    let base = capacity::base_bounds(region);
    let zone = region.time_zone.name().to_owned();
    let policies = region
        .target_invocations_per_instance
        .map(|target| Policy {
            name: policy_name(fleet),
            policy_type: "TargetTrackingScaling".into(),
            metric: INVOCATIONS_METRIC.into(),
            target_value: f64::from(target),
            scale_in_cooldown: Some(COOLDOWN_SECONDS),
            scale_out_cooldown: Some(COOLDOWN_SECONDS),
        })
        .into_iter()
        .collect();
    let mut actions = Vec::new();
    for window in &region.windows {
        actions.push(ScheduledAction {
            name: action_name(fleet, window, capacity::Edge::Start),
            schedule: cron(window.start, &window.days),
            timezone: Some(zone.clone()),
            min: Some(window.min_instances),
            max: Some(window.max_instances),
        });
        actions.push(ScheduledAction {
            name: action_name(fleet, window, capacity::Edge::End),
            schedule: cron(window.end, &window.end_days()),
            timezone: Some(zone.clone()),
            min: Some(base.min),
            max: Some(base.max),
        });
    }
    ScalingState {
        target: Some(Target {
            min,
            max,
            suspended: Suspended::default(),
        }),
        policies,
        actions,
    }
}

/// The target a reconcile writes: the declared one, unless the region is held. A held
/// region is never lowered: its floor and ceiling stay at least where they are in force,
/// and its scheduled scaling is suspended so that a night window cannot fire under a
/// failover either; once the hold ends, the next tick writes the declared bounds back
/// and resumes scheduled scaling.
pub fn held_target(desired: Target, in_force: Option<&Target>, hold: Option<Hold>) -> Target {
    match (hold, in_force) {
        (None, _) => desired,
        (Some(_), None) => Target {
            suspended: Suspended {
                scheduled: true,
                ..desired.suspended
            },
            ..desired
        },
        (Some(_), Some(current)) => Target {
            min: desired.min.max(current.min),
            max: desired.max.max(current.max),
            suspended: Suspended {
                scheduled: true,
                ..desired.suspended
            },
        },
    }
}

/// The writes that make `in_force` match `desired`, for Meridian's own names only
/// (`prefix`): the target first (policies and actions need it), then policies, then
/// actions. Empty when they already match.
pub fn diff(desired: &ScalingState, in_force: &ScalingState, prefix: &str) -> Vec<ScalingChange> {
    let mut changes = Vec::new();
    if let Some(target) = desired.target {
        if in_force.target != Some(target) {
            changes.push(ScalingChange::RegisterTarget(target));
        }
    }
    for policy in &desired.policies {
        if !in_force.policies.contains(policy) {
            changes.push(ScalingChange::PutPolicy(policy.clone()));
        }
    }
    for policy in &in_force.policies {
        let ours = policy.name.starts_with(prefix);
        if ours && !desired.policies.iter().any(|p| p.name == policy.name) {
            changes.push(ScalingChange::DeletePolicy {
                name: policy.name.clone(),
            });
        }
    }
    for action in &desired.actions {
        if !in_force.actions.contains(action) {
            changes.push(ScalingChange::PutAction(action.clone()));
        }
    }
    for action in &in_force.actions {
        let ours = action.name.starts_with(prefix);
        if ours && !desired.actions.iter().any(|a| a.name == action.name) {
            changes.push(ScalingChange::DeleteAction {
                name: action.name.clone(),
            });
        }
    }
    changes
}

impl ScalingState {
    /// The state after AAS applied `change` (for the in-memory adapter and the tests).
    pub fn apply(&mut self, change: &ScalingChange) {
        match change {
            ScalingChange::RegisterTarget(target) => self.target = Some(*target),
            ScalingChange::PutPolicy(policy) => {
                self.policies.retain(|p| p.name != policy.name);
                self.policies.push(policy.clone());
            }
            ScalingChange::DeletePolicy { name } => self.policies.retain(|p| &p.name != name),
            ScalingChange::PutAction(action) => {
                self.actions.retain(|a| a.name != action.name);
                self.actions.push(action.clone());
            }
            ScalingChange::DeleteAction { name } => self.actions.retain(|a| &a.name != name),
        }
    }
}

/// Application Auto Scaling for one region's endpoint variant.
pub trait AutoScaling: Send + Sync {
    /// What is in force: the target, every policy and every scheduled action on it.
    fn read(
        &self,
        endpoint: &str,
    ) -> impl Future<Output = Result<ScalingState, HealthError>> + Send;
    /// Applies one change.
    fn write(
        &self,
        endpoint: &str,
        change: &ScalingChange,
    ) -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// Application Auto Scaling in memory, for handler tests: one state per endpoint, and
/// every write recorded.
#[derive(Default)]
pub struct MemoryAutoScaling {
    pub state: std::sync::Mutex<std::collections::BTreeMap<String, ScalingState>>,
    pub writes: std::sync::Mutex<Vec<ScalingChange>>,
}

impl AutoScaling for MemoryAutoScaling {
    async fn read(&self, endpoint: &str) -> Result<ScalingState, HealthError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(state.get(endpoint).cloned().unwrap_or_default())
    }

    async fn write(&self, endpoint: &str, change: &ScalingChange) -> Result<(), HealthError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = state.entry(endpoint.to_owned()).or_default();
        if entry.target.is_none() && !matches!(change, ScalingChange::RegisterTarget(_)) {
            // AAS refuses a policy or an action on a target that is not registered.
            return Err(HealthError::Invalid(format!(
                "no scalable target for endpoint {endpoint}"
            )));
        }
        entry.apply(change);
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Weekday};
    use proptest::prelude::*;

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    fn example() -> Fleet {
        Fleet::from_toml_str(EXAMPLE).expect("example is valid")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn cron_in_local_time() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
        assert_eq!(cron(t(0, 0), &[]), "cron(0 0 * * ? *)");
        assert_eq!(cron(t(6, 30), &[]), "cron(30 6 * * ? *)");
        assert_eq!(
            cron(t(20, 5), &[Weekday::Sat, Weekday::Fri]),
            "cron(5 20 ? * FRI,SAT *)"
        );
    }

    #[test]
    fn the_example_asks_for_a_policy_and_a_night_in_singapore() {
        let fleet = example();
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        // 10:00 in Singapore: base bounds.
        let day = desired(&fleet, apac, at("2026-04-01T02:00:00Z"));
        assert_eq!(
            day.target,
            Some(Target {
                min: 2,
                max: 4,
                suspended: Suspended::default()
            })
        );
        assert_eq!(day.policies.len(), 1);
        assert_eq!(
            day.policies[0].name,
            "meridian-demo.invocations-per-instance"
        );
        assert_eq!(day.policies[0].metric, INVOCATIONS_METRIC);
        assert_eq!(day.policies[0].target_value, 100.0);
        let names: Vec<&str> = day.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            ["meridian-demo.night.start", "meridian-demo.night.end"]
        );
        assert_eq!(day.actions[0].schedule, "cron(0 0 * * ? *)");
        assert_eq!(day.actions[0].timezone.as_deref(), Some("Asia/Singapore"));
        assert_eq!((day.actions[0].min, day.actions[0].max), (Some(1), Some(2)));
        assert_eq!(day.actions[1].schedule, "cron(0 6 * * ? *)");
        assert_eq!((day.actions[1].min, day.actions[1].max), (Some(2), Some(4)));
        // 03:00 in Singapore: the night's bounds, so the reconcile agrees with the action.
        let night = desired(&fleet, apac, at("2026-04-01T19:00:00Z"));
        assert_eq!(night.target.map(|t| (t.min, t.max)), Some((1, 2)));
    }

    #[test]
    fn a_window_crossing_midnight_ends_on_the_next_days() {
        let text = EXAMPLE.replace(
            "start = \"00:00\"\nend = \"06:00\"",
            "start = \"22:00\"\nend = \"06:00\"\ndays = [\"fri\", \"sun\"]",
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        let state = desired(&fleet, apac, at("2026-04-01T02:00:00Z"));
        assert_eq!(state.actions[0].schedule, "cron(0 22 ? * FRI,SUN *)");
        assert_eq!(state.actions[1].schedule, "cron(0 6 ? * MON,SAT *)");
    }

    #[test]
    fn foreign_names_are_left_alone_and_ours_removed() {
        let fleet = example();
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        let want = desired(&fleet, apac, at("2026-04-01T02:00:00Z"));
        let mut have = want.clone();
        let foreign = ScheduledAction {
            name: "someone-else".into(),
            schedule: "cron(0 1 * * ? *)".into(),
            timezone: None,
            min: Some(3),
            max: Some(3),
        };
        have.actions.push(foreign.clone());
        have.actions.push(ScheduledAction {
            name: "meridian-demo.old.start".into(),
            ..foreign
        });
        let changes = diff(&want, &have, &managed_prefix(&fleet));
        assert_eq!(
            changes,
            [ScalingChange::DeleteAction {
                name: "meridian-demo.old.start".into()
            }]
        );
    }

    #[test]
    fn held_targets_are_never_lowered() {
        let desired = Target {
            min: 1,
            max: 2,
            suspended: Suspended::default(),
        };
        let raised = Target {
            min: 4,
            max: 4,
            suspended: Suspended::default(),
        };
        assert_eq!(held_target(desired, Some(&raised), None), desired);
        let held = held_target(desired, Some(&raised), Some(Hold::StandbyRaised));
        assert_eq!((held.min, held.max), (4, 4));
        assert!(held.suspended.scheduled);
        // A declared floor above what is in force is still applied.
        let low = Target {
            min: 1,
            max: 1,
            ..raised
        };
        let held = held_target(raised, Some(&low), Some(Hold::Drained));
        assert_eq!((held.min, held.max), (4, 4));
    }

    #[test]
    fn drained_or_raised_regions_are_held() {
        use crate::failover::HealthState;
        let now = at("2026-04-01T00:00:00Z");
        let mut health = RegionHealth::new("eu-west-1", now);
        assert_eq!(hold(None, false), None);
        assert_eq!(hold(Some(&health), false), None);
        assert_eq!(hold(Some(&health), true), Some(Hold::StandbyRaised));
        health.drain_intent = Some(now);
        assert_eq!(hold(Some(&health), false), Some(Hold::Drained));
        health.drain_intent = None;
        for state in [
            HealthState::DrainedByAlarm,
            HealthState::DrainedByHand,
            HealthState::Recovering,
        ] {
            health.state = state;
            assert_eq!(hold(Some(&health), false), Some(Hold::Drained));
            assert_eq!(hold(Some(&health), true), Some(Hold::Drained));
        }
    }

    fn arb_target() -> impl Strategy<Value = Target> {
        (1u32..10, 0u32..10, any::<[bool; 3]>()).prop_map(|(min, extra, s)| Target {
            min,
            max: min + extra,
            suspended: Suspended {
                dynamic_in: s[0],
                dynamic_out: s[1],
                scheduled: s[2],
            },
        })
    }

    fn arb_action() -> impl Strategy<Value = ScheduledAction> {
        (
            prop::sample::select(vec![
                "meridian-demo.night.start",
                "meridian-demo.night.end",
                "meridian-demo.old.end",
                "other",
            ]),
            0u32..24,
            1u32..4,
            prop::option::of(prop::sample::select(vec!["Asia/Singapore", "UTC"])),
        )
            .prop_map(|(name, hour, n, zone)| ScheduledAction {
                name: name.into(),
                schedule: format!("cron(0 {hour} * * ? *)"),
                timezone: zone.map(str::to_owned),
                min: Some(n),
                max: Some(n),
            })
    }

    fn arb_state() -> impl Strategy<Value = ScalingState> {
        (
            prop::option::of(arb_target()),
            prop::option::of((
                1u32..200,
                prop::sample::select(vec!["meridian-demo.invocations-per-instance", "manual"]),
            )),
            prop::collection::vec(arb_action(), 0..5),
        )
            .prop_map(|(target, policy, actions)| {
                let mut unique = Vec::<ScheduledAction>::new();
                for action in actions {
                    if !unique.iter().any(|a| a.name == action.name) {
                        unique.push(action);
                    }
                }
                ScalingState {
                    target,
                    policies: policy
                        .map(|(value, name)| Policy {
                            name: name.into(),
                            policy_type: "TargetTrackingScaling".into(),
                            metric: INVOCATIONS_METRIC.into(),
                            target_value: f64::from(value),
                            scale_in_cooldown: None,
                            scale_out_cooldown: Some(60),
                        })
                        .into_iter()
                        .collect(),
                    actions: unique,
                }
            })
    }

    proptest! {
        /// Whatever is in force, applying the diff makes Meridian's part match the
        /// declaration, leaves foreign names as they were, and a second diff is empty.
        #[test]
        fn reconcile_converges_in_one_run(
            in_force in arb_state(),
            hour in 0i64..(24 * 7),
            hold in prop::option::of(prop::sample::select(vec![Hold::Drained, Hold::StandbyRaised])),
        ) {
            let fleet = example();
            let now = at("2026-04-06T00:00:00Z") + chrono::Duration::hours(hour);
            let prefix = managed_prefix(&fleet);
            for region in &fleet.regions {
                let mut want = desired(&fleet, region, now);
                want.target = want
                    .target
                    .map(|t| held_target(t, in_force.target.as_ref(), hold));
                let mut state = in_force.clone();
                for change in diff(&want, &state, &prefix) {
                    state.apply(&change);
                }
                prop_assert!(diff(&want, &state, &prefix).is_empty());
                prop_assert_eq!(state.target, want.target);
                let ours = |s: &ScalingState| -> Vec<String> {
                    let mut names: Vec<String> = s.actions.iter().map(|a| a.name.clone())
                        .chain(s.policies.iter().map(|p| p.name.clone()))
                        .filter(|n| n.starts_with(&prefix)).collect();
                    names.sort();
                    names
                };
                prop_assert_eq!(ours(&state), ours(&want));
                let foreign = |s: &ScalingState| -> Vec<ScheduledAction> {
                    s.actions.iter().filter(|a| !a.name.starts_with(&prefix)).cloned().collect()
                };
                prop_assert_eq!(foreign(&state), foreign(&in_force));
                // A hold never lowers what is in force.
                if let (Some(_), Some(before), Some(after)) = (hold, in_force.target, state.target) {
                    prop_assert!(after.min >= before.min && after.max >= before.max);
                    prop_assert!(after.suspended.scheduled);
                }
            }
        }
    }
}
