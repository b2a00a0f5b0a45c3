//! The failover policy: how a region's health moves on alarm events, manual drains and
//! time, and the safety rules that bound it. Pure: every input, including the clock and
//! the other regions' state, is an argument, so it is tested exhaustively without I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Safety rules, from the fleet file's `[failover]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverSettings {
    /// Regions that must stay in service; a drain that would leave fewer is suppressed.
    pub min_healthy: usize,
    /// Least time between two automatic changes of one region (no flapping).
    #[serde(with = "seconds")]
    pub cooldown: Duration,
    /// How long a drained region must stay continuously OK before it is restored.
    #[serde(with = "seconds")]
    pub failback_after: Duration,
    /// How long a region waits between writing its intent to drain and reading its peers
    /// again; above the table's replication lag, so every earlier intent is seen (the
    /// argument is in [`crate::peers`]).
    #[serde(with = "seconds")]
    pub settle: Duration,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        Self {
            min_healthy: 1,
            cooldown: Duration::from_secs(60),
            failback_after: Duration::from_secs(300),
            settle: Duration::from_secs(5),
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

/// Where a region stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// In service.
    Healthy,
    /// Out of service because a counted alarm is in `ALARM`.
    DrainedByAlarm,
    /// Out of service by an operator's decision; only an operator brings it back.
    DrainedByHand,
    /// Out of service, every alarm OK, waiting for `failback_after` to pass.
    Recovering,
}

impl HealthState {
    /// Whether the region receives traffic.
    pub fn in_service(self) -> bool {
        self == HealthState::Healthy
    }
}

/// An alarm's state as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

/// The newest state seen for one alarm, with the time CloudWatch changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmView {
    pub state: AlarmState,
    pub at: DateTime<Utc>,
}

/// One region's health record: what the failover function stores, one item per region,
/// written only by that region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionHealth {
    pub region: String,
    pub state: HealthState,
    /// When `state` last changed.
    pub since: DateTime<Utc>,
    /// Why the region is in its state (alarm names, the operator's reason, ...).
    pub reason: String,
    /// When the region last went out of or back into service (cooldown reference).
    pub last_change: Option<DateTime<Utc>>,
    /// When every counted alarm was last seen leaving `ALARM` (failback reference).
    pub ok_since: Option<DateTime<Utc>>,
    /// The newest state of each counted alarm, by CloudWatch's state-change time, so a
    /// late or duplicate event never overrides a newer one.
    pub alarms: BTreeMap<String, AlarmView>,
    /// When the region wrote its intent to drain, while it waits out the settle time
    /// before deciding; peers count an earlier intent as a region out of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_intent: Option<DateTime<Utc>>,
    /// The trigger whose handling wrote the intent: its own retry may take it over, where
    /// anyone else waits for it to be decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_intent_by: Option<String>,
    /// The region's front door base URL, published by its scheduled tick so that its
    /// peers can probe its `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_door: Option<String>,
    /// What the region's endpoint serves that the registry's active version does not,
    /// since when: kept by the region's scheduled drift check ([`crate::drift`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

impl RegionHealth {
    /// A region nothing has happened to yet.
    pub fn new(region: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            region: region.into(),
            state: HealthState::Healthy,
            since: now,
            reason: "initial".into(),
            last_change: None,
            ok_since: None,
            alarms: BTreeMap::new(),
            drain_intent: None,
            drain_intent_by: None,
            front_door: None,
            drift: None,
        }
    }

    /// The counted alarms currently in `ALARM`, sorted.
    pub fn alarms_firing(&self) -> Vec<&str> {
        self.alarms_in(AlarmState::Alarm)
    }

    /// The counted alarms currently in `INSUFFICIENT_DATA`, sorted: their metrics stopped,
    /// which is what a dark region's do, so they hold a drained region out of service.
    pub fn alarms_without_data(&self) -> Vec<&str> {
        self.alarms_in(AlarmState::InsufficientData)
    }

    /// Whether every counted alarm heard of is `OK`: the only state that counts towards
    /// a failback. Unknown is not OK.
    pub fn all_alarms_ok(&self) -> bool {
        self.alarms
            .values()
            .all(|view| view.state == AlarmState::Ok)
    }

    fn alarms_in(&self, state: AlarmState) -> Vec<&str> {
        self.alarms
            .iter()
            .filter(|(_, view)| view.state == state)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// What happened, as input to the policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A "CloudWatch Alarm State Change" event for one of the region's alarms.
    Alarm {
        alarm: String,
        state: AlarmState,
        at: DateTime<Utc>,
    },
    /// An operator drains the region.
    ManualDrain { reason: String },
    /// An operator returns the region to alarm control.
    ManualUndrain,
    /// Time passed (the scheduled failback evaluation).
    Tick,
}

/// What the caller must do to the outside world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing changes outside.
    None,
    /// Take the region out of service (its record says so; its front door's `/health`
    /// answers 503 and Route 53's checkers take it out of DNS).
    Drain,
    /// Put the region back into service.
    Restore,
    /// A drain was called for but a safety rule held it back; recorded, not applied.
    Suppressed { reason: String },
}

/// The policy's answer: the new record and the action to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub next: RegionHealth,
    pub action: Action,
}

/// The view of the rest of the fleet a decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetView {
    /// Regions in the fleet, this one included.
    pub regions: usize,
    /// Other regions currently in service.
    pub others_in_service: usize,
}

/// Decides what an input does to a region. `counted` lists the alarms that count for
/// the region (others are ignored); `now` is the decision time.
pub fn decide(
    current: &RegionHealth,
    input: &Input,
    counted: &[String],
    fleet: FleetView,
    settings: &FailoverSettings,
    now: DateTime<Utc>,
) -> Decision {
    let mut next = current.clone();
    match input {
        Input::Alarm { alarm, state, at } => {
            if !counted.iter().any(|c| c == alarm) {
                return unchanged(current);
            }
            let seen = next.alarms.get(alarm).copied();
            if let Some(seen) = seen.filter(|seen| *at <= seen.at) {
                // A late event never overrides a newer one, but a late ALARM or
                // INSUFFICIENT_DATA inside the OK streak of a recovering region means it was
                // not continuously OK: the failback clock restarts from when that alarm
                // became OK again (its newest change).
                let interrupts = next.state == HealthState::Recovering
                    && *state != AlarmState::Ok
                    && next.ok_since.is_some_and(|ok| *at >= ok && seen.at > ok);
                if !interrupts {
                    return unchanged(current);
                }
                next.ok_since = Some(seen.at);
                return Decision {
                    next,
                    action: Action::None,
                };
            }
            let was_all_ok = next.all_alarms_ok();
            next.alarms.insert(
                alarm.clone(),
                AlarmView {
                    state: *state,
                    at: *at,
                },
            );
            let all_ok = next.all_alarms_ok();
            if !was_all_ok && all_ok {
                // Each alarm has been OK at least since its newest change; with events out
                // of order, another alarm's may be later than this one's.
                next.ok_since = next.alarms.values().map(|view| view.at).max();
            }
            if !all_ok {
                next.ok_since = None;
            }
            evaluate(next, fleet, settings, now)
        }
        Input::Tick => evaluate(next, fleet, settings, now),
        Input::ManualDrain { reason } => {
            if current.state == HealthState::DrainedByHand {
                return unchanged(current);
            }
            let was_in_service = current.state.in_service();
            if was_in_service && !leaves_enough(fleet, settings) {
                return Decision {
                    action: Action::Suppressed {
                        reason: too_few_reason(fleet, settings),
                    },
                    next,
                };
            }
            set_state(
                &mut next,
                HealthState::DrainedByHand,
                format!("drained by hand: {reason}"),
                now,
            );
            if was_in_service {
                next.last_change = Some(now);
            }
            Decision {
                action: if was_in_service {
                    Action::Drain
                } else {
                    Action::None
                },
                next,
            }
        }
        Input::ManualUndrain => {
            if current.state != HealthState::DrainedByHand {
                return unchanged(current);
            }
            let firing = next.alarms_firing().join(", ");
            if firing.is_empty() {
                set_state(
                    &mut next,
                    HealthState::Healthy,
                    "undrained by hand".into(),
                    now,
                );
                next.last_change = Some(now);
                Decision {
                    next,
                    action: Action::Restore,
                }
            } else {
                set_state(
                    &mut next,
                    HealthState::DrainedByAlarm,
                    format!("undrained by hand; still in ALARM: {firing}"),
                    now,
                );
                Decision {
                    next,
                    action: Action::None,
                }
            }
        }
    }
}

fn unchanged(current: &RegionHealth) -> Decision {
    Decision {
        next: current.clone(),
        action: Action::None,
    }
}

fn set_state(health: &mut RegionHealth, state: HealthState, reason: String, now: DateTime<Utc>) {
    if health.state != state {
        health.since = now;
    }
    health.state = state;
    health.reason = reason;
}

fn leaves_enough(fleet: FleetView, settings: &FailoverSettings) -> bool {
    fleet.others_in_service >= settings.min_healthy
}

fn too_few_reason(fleet: FleetView, settings: &FailoverSettings) -> String {
    format!(
        "draining would leave {} of {} regions in service; min_healthy is {}",
        fleet.others_in_service, fleet.regions, settings.min_healthy
    )
}

fn in_cooldown(
    health: &RegionHealth,
    settings: &FailoverSettings,
    now: DateTime<Utc>,
) -> Option<chrono::Duration> {
    let cooldown = chrono::Duration::from_std(settings.cooldown).unwrap_or(chrono::Duration::MAX);
    let last = health.last_change?;
    let until = last + cooldown;
    (now < until).then(|| until - now)
}

/// Why a region out of service by alarm is not yet recovering: which alarms are in
/// `ALARM`, and which have no data (unknown is not OK).
fn not_ok_reason(health: &RegionHealth) -> String {
    let firing = health.alarms_firing().join(", ");
    let without_data = health.alarms_without_data().join(", ");
    match (firing.is_empty(), without_data.is_empty()) {
        (false, true) => format!("{firing} in ALARM"),
        (true, false) => format!("{without_data} without data (INSUFFICIENT_DATA)"),
        _ => format!("{firing} in ALARM; {without_data} without data (INSUFFICIENT_DATA)"),
    }
}

/// Applies the automatic rules to a record whose alarms are up to date.
fn evaluate(
    mut next: RegionHealth,
    fleet: FleetView,
    settings: &FailoverSettings,
    now: DateTime<Utc>,
) -> Decision {
    let firing = next.alarms_firing().join(", ");
    match next.state {
        HealthState::DrainedByHand => Decision {
            next,
            action: Action::None,
        },
        HealthState::Healthy if firing.is_empty() => Decision {
            next,
            action: Action::None,
        },
        HealthState::Healthy => {
            if !leaves_enough(fleet, settings) {
                return Decision {
                    action: Action::Suppressed {
                        reason: format!(
                            "{firing} in ALARM, but {}",
                            too_few_reason(fleet, settings)
                        ),
                    },
                    next,
                };
            }
            if let Some(left) = in_cooldown(&next, settings, now) {
                return Decision {
                    action: Action::Suppressed {
                        reason: format!("{firing} in ALARM, but the region changed less than the cooldown ago ({}s left)", left.num_seconds().max(1)),
                    },
                    next,
                };
            }
            set_state(
                &mut next,
                HealthState::DrainedByAlarm,
                format!("{firing} in ALARM"),
                now,
            );
            next.last_change = Some(now);
            Decision {
                next,
                action: Action::Drain,
            }
        }
        HealthState::DrainedByAlarm if next.all_alarms_ok() => {
            set_state(
                &mut next,
                HealthState::Recovering,
                "every alarm OK; waiting for failback".into(),
                now,
            );
            next.ok_since = next.ok_since.or(Some(now));
            evaluate(next, fleet, settings, now)
        }
        HealthState::DrainedByAlarm => {
            next.reason = not_ok_reason(&next);
            Decision {
                next,
                action: Action::None,
            }
        }
        HealthState::Recovering if !next.all_alarms_ok() => {
            let reason = format!(
                "{} while recovering; the failback clock stopped",
                not_ok_reason(&next)
            );
            set_state(&mut next, HealthState::DrainedByAlarm, reason, now);
            next.ok_since = None;
            Decision {
                next,
                action: Action::None,
            }
        }
        HealthState::Recovering => {
            let failback = chrono::Duration::from_std(settings.failback_after)
                .unwrap_or(chrono::Duration::MAX);
            let ok_since = next.ok_since.unwrap_or(next.since);
            let healthy_long_enough = now >= ok_since + failback;
            if !healthy_long_enough || in_cooldown(&next, settings, now).is_some() {
                return Decision {
                    next,
                    action: Action::None,
                };
            }
            set_state(
                &mut next,
                HealthState::Healthy,
                format!("OK since {}; failed back", ok_since.to_rfc3339()),
                now,
            );
            next.last_change = Some(now);
            Decision {
                next,
                action: Action::Restore,
            }
        }
    }
}

/// One way the endpoint differs from the registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Difference {
    /// `endpoint`, `config`, `variants`, `model_data` or `image`.
    pub field: String,
    pub expected: String,
    pub actual: String,
}

/// A region's drift as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// When a check first found the endpoint drifted (kept while it stays drifted).
    pub since: DateTime<Utc>,
    /// `model/version` the endpoint should serve.
    pub expected: String,
    pub differences: Vec<Difference>,
}

impl Drift {
    /// One line: `config: expected X, serving Y; image: ...`.
    pub fn describe(&self) -> String {
        self.differences
            .iter()
            .map(|d| format!("{}: expected {}, serving {}", d.field, d.expected, d.actual))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn settings() -> FailoverSettings {
        FailoverSettings {
            min_healthy: 1,
            cooldown: Duration::from_secs(60),
            failback_after: Duration::from_secs(300),
            settle: Duration::from_secs(5),
        }
    }

    const FLEET: FleetView = FleetView {
        regions: 3,
        others_in_service: 2,
    };

    fn alarm(state: AlarmState, seconds: i64) -> Input {
        Input::Alarm {
            alarm: "5xx".into(),
            state,
            at: at(seconds),
        }
    }

    fn counted() -> Vec<String> {
        vec!["5xx".into(), "latency".into()]
    }

    #[test]
    fn an_alarm_drains_and_failback_waits_for_the_hysteresis() {
        let start = RegionHealth::new("eu-west-1", at(0));
        let drained = decide(
            &start,
            &alarm(AlarmState::Alarm, 100),
            &counted(),
            FLEET,
            &settings(),
            at(101),
        );
        assert_eq!(drained.action, Action::Drain);
        assert_eq!(drained.next.state, HealthState::DrainedByAlarm);

        let ok = decide(
            &drained.next,
            &alarm(AlarmState::Ok, 200),
            &counted(),
            FLEET,
            &settings(),
            at(201),
        );
        assert_eq!(ok.action, Action::None);
        assert_eq!(ok.next.state, HealthState::Recovering);
        assert_eq!(ok.next.ok_since, Some(at(200)));

        let early = decide(
            &ok.next,
            &Input::Tick,
            &counted(),
            FLEET,
            &settings(),
            at(499),
        );
        assert_eq!(early.action, Action::None);
        let back = decide(
            &ok.next,
            &Input::Tick,
            &counted(),
            FLEET,
            &settings(),
            at(500),
        );
        assert_eq!(back.action, Action::Restore);
        assert_eq!(back.next.state, HealthState::Healthy);
    }

    #[test]
    fn insufficient_data_after_an_alarm_keeps_the_region_drained_without_a_clock() {
        let start = RegionHealth::new("eu-west-1", at(0));
        let drained = decide(
            &start,
            &alarm(AlarmState::Alarm, 10),
            &counted(),
            FLEET,
            &settings(),
            at(10),
        );
        assert_eq!(drained.action, Action::Drain);
        // The metrics stop (a dark region's do): unknown is not OK.
        let unknown = decide(
            &drained.next,
            &alarm(AlarmState::InsufficientData, 20),
            &counted(),
            FLEET,
            &settings(),
            at(20),
        );
        assert_eq!(unknown.action, Action::None);
        assert_eq!(unknown.next.state, HealthState::DrainedByAlarm);
        assert_eq!(unknown.next.ok_since, None);
        assert_eq!(unknown.next.reason, "5xx without data (INSUFFICIENT_DATA)");
        // However long it stays unknown, it is never failed back.
        let later = decide(
            &unknown.next,
            &Input::Tick,
            &counted(),
            FLEET,
            &settings(),
            at(100_000),
        );
        assert_eq!(later.action, Action::None);
        assert_eq!(later.next.state, HealthState::DrainedByAlarm);
        // OK again: the clock starts from then.
        let ok = decide(
            &later.next,
            &alarm(AlarmState::Ok, 100_010),
            &counted(),
            FLEET,
            &settings(),
            at(100_010),
        );
        assert_eq!(ok.next.state, HealthState::Recovering);
        assert_eq!(ok.next.ok_since, Some(at(100_010)));
    }

    #[test]
    fn insufficient_data_while_recovering_stops_the_failback_clock() {
        let mut health = RegionHealth::new("eu-west-1", at(0));
        for (input, now) in [
            (alarm(AlarmState::Alarm, 10), 10),
            (alarm(AlarmState::Ok, 20), 20),
        ] {
            health = decide(&health, &input, &counted(), FLEET, &settings(), at(now)).next;
        }
        assert_eq!(health.state, HealthState::Recovering);
        let stopped = decide(
            &health,
            &alarm(AlarmState::InsufficientData, 30),
            &counted(),
            FLEET,
            &settings(),
            at(30),
        );
        assert_eq!(stopped.action, Action::None);
        assert_eq!(stopped.next.state, HealthState::DrainedByAlarm);
        assert_eq!(stopped.next.ok_since, None);
        assert!(stopped.next.reason.contains("failback clock stopped"));
        // A healthy region with no data stays in service: no traffic is not sickness.
        let quiet = decide(
            &RegionHealth::new("eu-west-1", at(0)),
            &alarm(AlarmState::InsufficientData, 5),
            &counted(),
            FLEET,
            &settings(),
            at(5),
        );
        assert_eq!(quiet.action, Action::None);
        assert_eq!(quiet.next.state, HealthState::Healthy);
    }

    #[test]
    fn duplicates_and_late_events_change_nothing() {
        let start = RegionHealth::new("eu-west-1", at(0));
        let drained = decide(
            &start,
            &alarm(AlarmState::Alarm, 100),
            &counted(),
            FLEET,
            &settings(),
            at(101),
        )
        .next;
        let duplicate = decide(
            &drained,
            &alarm(AlarmState::Alarm, 100),
            &counted(),
            FLEET,
            &settings(),
            at(102),
        );
        assert_eq!(duplicate, unchanged(&drained));
        let late_ok = decide(
            &drained,
            &alarm(AlarmState::Ok, 50),
            &counted(),
            FLEET,
            &settings(),
            at(103),
        );
        assert_eq!(late_ok, unchanged(&drained));

        let ok_first = decide(
            &start,
            &alarm(AlarmState::Ok, 200),
            &counted(),
            FLEET,
            &settings(),
            at(201),
        )
        .next;
        let stale_alarm = decide(
            &ok_first,
            &alarm(AlarmState::Alarm, 100),
            &counted(),
            FLEET,
            &settings(),
            at(202),
        );
        assert_eq!(stale_alarm.action, Action::None);
        assert_eq!(stale_alarm.next.state, HealthState::Healthy);
    }

    #[test]
    fn the_last_healthy_region_is_never_drained() {
        let start = RegionHealth::new("eu-west-1", at(0));
        let alone = FleetView {
            regions: 3,
            others_in_service: 0,
        };
        let decision = decide(
            &start,
            &alarm(AlarmState::Alarm, 100),
            &counted(),
            alone,
            &settings(),
            at(101),
        );
        assert!(
            matches!(decision.action, Action::Suppressed { ref reason } if reason.contains("min_healthy"))
        );
        assert_eq!(decision.next.state, HealthState::Healthy);
        let manual = decide(
            &start,
            &Input::ManualDrain {
                reason: "test".into(),
            },
            &counted(),
            alone,
            &settings(),
            at(101),
        );
        assert!(matches!(manual.action, Action::Suppressed { .. }));
    }

    #[test]
    fn a_drain_inside_the_cooldown_is_suppressed() {
        let mut health = RegionHealth::new("eu-west-1", at(0));
        health.last_change = Some(at(90));
        let decision = decide(
            &health,
            &alarm(AlarmState::Alarm, 100),
            &counted(),
            FLEET,
            &settings(),
            at(100),
        );
        assert!(
            matches!(decision.action, Action::Suppressed { ref reason } if reason.contains("cooldown"))
        );
        let later = decide(
            &decision.next,
            &Input::Tick,
            &counted(),
            FLEET,
            &settings(),
            at(151),
        );
        assert_eq!(later.action, Action::Drain);
    }

    #[test]
    fn a_manual_drain_holds_until_a_manual_undrain() {
        let start = RegionHealth::new("eu-west-1", at(0));
        let drained = decide(
            &start,
            &Input::ManualDrain {
                reason: "maintenance".into(),
            },
            &counted(),
            FLEET,
            &settings(),
            at(10),
        );
        assert_eq!(drained.action, Action::Drain);
        let ok = decide(
            &drained.next,
            &alarm(AlarmState::Ok, 20),
            &counted(),
            FLEET,
            &settings(),
            at(1000),
        );
        assert_eq!(ok.next.state, HealthState::DrainedByHand);
        let tick = decide(
            &ok.next,
            &Input::Tick,
            &counted(),
            FLEET,
            &settings(),
            at(5000),
        );
        assert_eq!(tick.action, Action::None);
        let undrained = decide(
            &tick.next,
            &Input::ManualUndrain,
            &counted(),
            FLEET,
            &settings(),
            at(5001),
        );
        assert_eq!(undrained.action, Action::Restore);
        assert_eq!(undrained.next.state, HealthState::Healthy);
    }

    #[test]
    fn alarms_that_do_not_count_are_ignored() {
        let start = RegionHealth::new("eu-west-1", at(0));
        let input = Input::Alarm {
            alarm: "someone-elses".into(),
            state: AlarmState::Alarm,
            at: at(1),
        };
        assert_eq!(
            decide(&start, &input, &counted(), FLEET, &settings(), at(2)),
            unchanged(&start)
        );
    }
}
