//! Property tests of the failover policy ([`meridian::failover::decide`]): a simulated
//! fleet of 2 to 5 regions receives random sequences of alarm events (late, out of order
//! and duplicated), manual drains and undrains and ticks, processed one at a time with a
//! consistent view of the other regions, and these rules are checked after every step:
//!
//! - (a) at most `regions - min_healthy` regions are out of service;
//! - (b) no automatic Drain or Restore (on an alarm or a tick) within `cooldown` of the
//!   region's previous Drain or Restore of any kind;
//! - (c) only a manual undrain ends a manual drain;
//! - (d) Drain only from in service, Restore only from out of service, and the record's
//!   service changes exactly when the action says so;
//! - (e) an alarm event applied twice in a row acts once, and a duplicate of an earlier
//!   event changes nothing;
//! - (f) an automatic failback comes at least `failback_after` after the last time a
//!   counted alarm became OK from ALARM or INSUFFICIENT_DATA, and never while one's newest
//!   state is not OK (as told by the events the policy takes in);
//! - (g) unknown is not OK: a region drained by alarm runs its failback clock (is
//!   `recovering`, with `ok_since`) only while every counted alarm it has heard of is OK.
//!
//! Plus: the order in which a region's alarm events arrive does not change the alarms it
//! ends with (newest wins per alarm).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use meridian::failover::{
    decide, Action, AlarmState, AlarmView, FailoverSettings, FleetView, HealthState, Input,
    RegionHealth,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// What happens to one region in one step.
#[derive(Debug, Clone)]
enum Op {
    /// A new alarm state change event for the region's counted alarm number `alarm`
    /// (modulo the region's alarm count), stamped `lag` seconds before the current time.
    Alarm {
        alarm: usize,
        state: AlarmState,
        lag: i64,
    },
    /// An exact duplicate of the region's `nth` (modulo their number) earlier alarm event;
    /// nothing happens if the region has had none yet.
    Duplicate {
        nth: usize,
    },
    ManualDrain,
    ManualUndrain,
    Tick,
}

#[derive(Debug, Clone)]
struct Step {
    /// Seconds that pass before the input arrives.
    advance: i64,
    region: usize,
    op: Op,
}

#[derive(Debug, Clone)]
struct Scenario {
    settings: FailoverSettings,
    /// Counted alarms per region (1 or 2); its length is the number of regions.
    alarm_counts: Vec<usize>,
    steps: Vec<Step>,
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn alarm_state() -> impl Strategy<Value = AlarmState> {
    prop_oneof![
        Just(AlarmState::Ok),
        Just(AlarmState::Alarm),
        Just(AlarmState::InsufficientData),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2, alarm_state(), 0i64..=30)
            .prop_map(|(alarm, state, lag)| Op::Alarm { alarm, state, lag }),
        2 => (0usize..64).prop_map(|nth| Op::Duplicate { nth }),
        1 => Just(Op::ManualDrain),
        1 => Just(Op::ManualUndrain),
        2 => Just(Op::Tick),
    ]
}

/// Seconds between steps, 0 to 90, often short so that changes land inside cooldowns.
fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..=10, 0i64..=90]
}

fn settings(regions: usize) -> impl Strategy<Value = FailoverSettings> {
    (1..=regions, 0u64..=120, 0u64..=120).prop_map(|(min_healthy, cooldown, failback)| {
        FailoverSettings {
            min_healthy,
            cooldown: Duration::from_secs(cooldown),
            failback_after: Duration::from_secs(failback),
            ..FailoverSettings::default()
        }
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5).prop_flat_map(|regions| {
        let step = (advance(), 0..regions, op()).prop_map(|(advance, region, op)| Step {
            advance,
            region,
            op,
        });
        (
            settings(regions),
            vec(1usize..=2, regions),
            vec(step, 1..=200),
        )
            .prop_map(|(settings, alarm_counts, steps)| Scenario {
                settings,
                alarm_counts,
                steps,
            })
    })
}

fn counted_alarms(region: usize, count: usize) -> Vec<String> {
    ["5xx", "latency"]
        .iter()
        .take(count)
        .map(|kind| format!("region-{region}-{kind}"))
        .collect()
}

fn changes_service(action: &Action) -> bool {
    matches!(action, Action::Drain | Action::Restore)
}

/// A region's alarm events, `(at, state)` by alarm name.
type Heard = BTreeMap<String, Vec<(DateTime<Utc>, AlarmState)>>;

/// Where a region's alarms stand for a failback, from the events received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clear {
    /// Every alarm has only ever been OK (or none was heard of).
    Always,
    /// Every alarm is OK, the last of them since this time.
    Since(DateTime<Utc>),
    /// Some alarm's newest state is ALARM or INSUFFICIENT_DATA.
    Not,
}

/// Where a region's alarms stand, from the events received (in time order, whatever
/// order they arrived in): per alarm, the first event after its last non-OK one. Events of
/// one alarm with the same time are copies of one event.
fn all_clear_since(heard: &Heard) -> Clear {
    let mut since = None;
    for events in heard.values() {
        let mut events = events.clone();
        events.sort_by_key(|(at, _)| *at);
        events.dedup_by_key(|(at, _)| *at);
        let Some(last_not_ok) = events
            .iter()
            .rposition(|(_, state)| *state != AlarmState::Ok)
        else {
            continue;
        };
        match events.get(last_not_ok + 1) {
            Some((at, _)) => since = since.max(Some(*at)),
            None => return Clear::Not,
        }
    }
    since.map_or(Clear::Always, Clear::Since)
}

/// Which alarm events the failback rule (f) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    /// Those the policy takes in: each newer than every earlier one of its alarm (a late
    /// event older than the alarm's newest state is dropped).
    Accepted,
    /// All received, late ones included: a late ALARM older than the alarm's newest
    /// state still tells that the alarm was in ALARM after the region's `ok_since`.
    All,
}

/// Runs a scenario, checking every property after each step.
fn run(scenario: &Scenario, history: History) -> Result<(), TestCaseError> {
    let settings = &scenario.settings;
    let regions = scenario.alarm_counts.len();
    let cooldown = TimeDelta::from_std(settings.cooldown).unwrap_or(TimeDelta::MAX);
    let counted: Vec<Vec<String>> = scenario
        .alarm_counts
        .iter()
        .enumerate()
        .map(|(i, &count)| counted_alarms(i, count))
        .collect();

    let mut now = start();
    let mut records: Vec<RegionHealth> = (0..regions)
        .map(|i| RegionHealth::new(format!("region-{i}"), now))
        .collect();
    // When each region last went out of or back into service, by any decision.
    let mut last_change: Vec<Option<DateTime<Utc>>> = vec![None; regions];
    // Each region's alarm events so far, for duplicates.
    let mut sent: Vec<Vec<Input>> = vec![Vec::new(); regions];
    // Each region's alarms' events, `(at, state)`, per `history`, for the failback rule.
    let mut heard: Vec<Heard> = vec![Heard::new(); regions];

    for (n, step) in scenario.steps.iter().enumerate() {
        now += seconds(step.advance);
        let r = step.region;
        let (input, duplicate) = match &step.op {
            Op::Alarm { alarm, state, lag } => {
                let names = &counted[r];
                let name = &names[alarm % names.len()];
                // CloudWatch stamps an alarm's state changes in milliseconds, one change
                // at a time: two different events of one alarm never share a time.
                let mut at = now - seconds(*lag);
                while sent[r].iter().any(
                    |earlier| matches!(earlier, Input::Alarm { alarm, at: t, .. } if alarm == name && *t == at),
                ) {
                    at -= TimeDelta::milliseconds(1);
                }
                let input = Input::Alarm {
                    alarm: name.clone(),
                    state: *state,
                    at,
                };
                sent[r].push(input.clone());
                (input, false)
            }
            Op::Duplicate { nth } => match sent[r].len() {
                0 => continue,
                len => (sent[r][nth % len].clone(), true),
            },
            Op::ManualDrain => (
                Input::ManualDrain {
                    reason: "maintenance".into(),
                },
                false,
            ),
            Op::ManualUndrain => (Input::ManualUndrain, false),
            Op::Tick => (Input::Tick, false),
        };
        let view = FleetView {
            regions,
            others_in_service: records
                .iter()
                .enumerate()
                .filter(|(j, health)| *j != r && health.state.in_service())
                .count(),
        };
        let before = &records[r];
        let decision = decide(before, &input, &counted[r], view, settings, now);
        let after = &decision.next;
        let context = format!(
            "step {n} at +{}s, region {r}, {input:?}, {view:?}\nbefore: {before:?}\n\
             after: {after:?}\naction: {:?}",
            (now - start()).num_seconds(),
            decision.action
        );

        // (e) An alarm event applied twice in a row: the second changes nothing. A
        // duplicate of any earlier event changes nothing either.
        if let Input::Alarm { .. } = input {
            let again = decide(after, &input, &counted[r], view, settings, now);
            prop_assert_eq!(&again.next, after, "applied twice: {}", context);
            prop_assert_eq!(&again.action, &Action::None, "applied twice: {}", context);
        }
        if duplicate {
            prop_assert_eq!(after, before, "duplicate changed the record: {}", context);
            prop_assert_eq!(
                &decision.action,
                &Action::None,
                "duplicate acted: {}",
                context
            );
        }

        // (d) Drain only from in service, Restore only from out of service, and the
        // record leaves or enters service exactly when the action says so.
        let was_in = before.state.in_service();
        let is_in = after.state.in_service();
        match decision.action {
            Action::Drain => prop_assert!(was_in, "drained a drained region: {}", context),
            Action::Restore => prop_assert!(!was_in, "restored a serving region: {}", context),
            _ => {}
        }
        prop_assert_eq!(
            was_in != is_in,
            changes_service(&decision.action),
            "the record's service and the action disagree: {}",
            context
        );

        // (b) No automatic change within the cooldown of the region's previous change.
        let automatic = matches!(input, Input::Alarm { .. } | Input::Tick);
        if changes_service(&decision.action) {
            if automatic {
                if let Some(last) = last_change[r] {
                    prop_assert!(
                        now - last >= cooldown,
                        "automatic change {}s after the previous one (cooldown {}s): {}",
                        (now - last).num_seconds(),
                        cooldown.num_seconds(),
                        context
                    );
                }
            }
            last_change[r] = Some(now);
        }

        // (f) An automatic failback comes at least `failback_after` after the last time,
        // as far as the events (per `history`) tell, that a counted alarm left ALARM.
        if let Input::Alarm { alarm, state, at } = &input {
            let events = heard[r].entry(alarm.clone()).or_default();
            if history == History::All || events.iter().all(|(seen, _)| at > seen) {
                events.push((*at, *state));
            }
        }
        if automatic && decision.action == Action::Restore {
            match all_clear_since(&heard[r]) {
                Clear::Since(all_clear) => {
                    let failback =
                        TimeDelta::from_std(settings.failback_after).unwrap_or(TimeDelta::MAX);
                    prop_assert!(
                        now >= all_clear + failback,
                        "failed back {}s after the last alarm became OK at +{}s (failback \
                         {}s; events heard {:?}): {}",
                        (now - all_clear).num_seconds(),
                        (all_clear - start()).num_seconds(),
                        failback.num_seconds(),
                        heard[r],
                        context
                    );
                }
                Clear::Not => prop_assert!(
                    false,
                    "failed back while an alarm is not OK (events heard {:?}): {}",
                    heard[r],
                    context
                ),
                Clear::Always => {}
            }
        }

        // (g) Unknown is not OK: the failback clock runs only while every alarm is OK.
        if after.state == HealthState::Recovering || after.ok_since.is_some() {
            prop_assert!(
                after
                    .alarms
                    .values()
                    .all(|view| view.state == AlarmState::Ok),
                "failback clock running with an alarm not OK: {}",
                context
            );
        }

        // (c) Only a manual undrain ends a manual drain.
        if before.state == HealthState::DrainedByHand && after.state != HealthState::DrainedByHand {
            prop_assert_eq!(
                &input,
                &Input::ManualUndrain,
                "left a manual drain: {}",
                context
            );
        }

        records[r] = decision.next;

        // (a) Never fewer than min_healthy regions in service.
        let out = records.iter().filter(|h| !h.state.in_service()).count();
        prop_assert!(
            out <= regions - settings.min_healthy,
            "{out} of {regions} regions out of service, min_healthy {}: {}",
            settings.min_healthy,
            context
        );
    }
    Ok(())
}

/// A region's alarm events in some order, each with a distinct time, plus where the
/// region starts and what the rest of the fleet looks like.
#[derive(Debug, Clone)]
struct Replay {
    settings: FailoverSettings,
    view: FleetView,
    drained_by_hand: bool,
    /// `(alarm, state, seconds before now)` in time order (oldest first), distinct times.
    in_order: Vec<(usize, AlarmState, i64)>,
    /// The same events, shuffled.
    shuffled: Vec<(usize, AlarmState, i64)>,
}

/// 1 to 40 events `(alarm, state, seconds before now)`, oldest first, at distinct times
/// (positive gaps), the newest at least one second ago.
fn timed_events() -> impl Strategy<Value = Vec<(usize, AlarmState, i64)>> {
    vec((0usize..2, alarm_state(), 1i64..=5), 1..=40).prop_map(|events| {
        let mut ago: i64 = events.iter().map(|(_, _, gap)| gap).sum();
        events
            .into_iter()
            .map(|(alarm, state, gap)| {
                let event = (alarm, state, ago);
                ago -= gap;
                event
            })
            .collect()
    })
}

fn replay() -> impl Strategy<Value = Replay> {
    (2usize..=5)
        .prop_flat_map(|regions| {
            (
                settings(regions),
                (0..regions).prop_map(move |others| FleetView {
                    regions,
                    others_in_service: others,
                }),
                any::<bool>(),
                timed_events(),
            )
        })
        .prop_flat_map(|(settings, view, drained_by_hand, in_order)| {
            (Just(in_order.clone()).prop_shuffle()).prop_map(move |shuffled| Replay {
                settings,
                view,
                drained_by_hand,
                in_order: in_order.clone(),
                shuffled,
            })
        })
}

fn apply_all(replay: &Replay, events: &[(usize, AlarmState, i64)]) -> RegionHealth {
    let counted = counted_alarms(0, 2);
    let now = start() + seconds(1_000);
    let mut health = RegionHealth::new("region-0", start());
    if replay.drained_by_hand {
        let drain = Input::ManualDrain {
            reason: "maintenance".into(),
        };
        let view = FleetView {
            regions: replay.view.regions,
            others_in_service: replay.view.regions - 1,
        };
        health = decide(&health, &drain, &counted, view, &replay.settings, start()).next;
    }
    for &(alarm, state, ago) in events {
        let input = Input::Alarm {
            alarm: counted[alarm].clone(),
            state,
            at: now - seconds(ago),
        };
        health = decide(
            &health,
            &input,
            &counted,
            replay.view,
            &replay.settings,
            now,
        )
        .next;
    }
    health
}

proptest! {
    // No failure file: a failure found here is turned into a named regression test below.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn safety_rules_hold_at_every_step(scenario in scenario()) {
        run(&scenario, History::Accepted)?;
    }

    #[test]
    fn alarm_order_does_not_matter_newest_wins(replay in replay()) {
        let in_order = apply_all(&replay, &replay.in_order);
        let shuffled = apply_all(&replay, &replay.shuffled);
        prop_assert_eq!(&shuffled.alarms, &in_order.alarms);

        let counted = counted_alarms(0, 2);
        let now = start() + seconds(1_000);
        let mut newest: BTreeMap<String, AlarmView> = BTreeMap::new();
        for &(alarm, state, ago) in &replay.in_order {
            newest.insert(counted[alarm].clone(), AlarmView { state, at: now - seconds(ago) });
        }
        prop_assert_eq!(&in_order.alarms, &newest);
    }
}

fn alarm_step(advance: i64, region: usize, alarm: usize, state: AlarmState, lag: i64) -> Step {
    Step {
        advance,
        region,
        op: Op::Alarm { alarm, state, lag },
    }
}

/// Found by `safety_rules_hold_at_every_step` (rule f; this is its minimal case): a late
/// OK for one alarm, arriving after another alarm's newer change out of ALARM, set
/// `ok_since` to its own older time, so the region failed back 4s after its last alarm
/// cleared although `failback_after` is 12s.
#[test]
fn a_late_ok_does_not_shorten_the_failback() {
    use AlarmState::{Alarm, InsufficientData, Ok};
    let minimal = Scenario {
        settings: FailoverSettings {
            min_healthy: 1,
            cooldown: Duration::ZERO,
            failback_after: Duration::from_secs(12),
            ..FailoverSettings::default()
        },
        alarm_counts: vec![1, 2],
        steps: vec![
            alarm_step(0, 1, 0, Ok, 0),
            alarm_step(10, 1, 0, Alarm, 0),
            alarm_step(0, 0, 0, Ok, 0),
            alarm_step(3, 1, 1, Alarm, 11),
            alarm_step(5, 1, 0, InsufficientData, 0),
            alarm_step(4, 1, 1, Ok, 12),
        ],
    };
    let result = run(&minimal, History::Accepted);
    assert!(result.is_ok(), "{result:?}");

    // The same story, step by step.
    let settings = minimal.settings;
    let counted = counted_alarms(0, 2);
    let view = FleetView {
        regions: 2,
        others_in_service: 1,
    };
    let at = |s: i64| start() + seconds(s);
    let alarm = |i: usize, state, s| Input::Alarm {
        alarm: counted[i].clone(),
        state,
        at: at(s),
    };
    let mut health = RegionHealth::new("region-0", start());
    let steps = [
        (alarm(0, Alarm, 10), 10, Action::Drain),
        (alarm(1, Alarm, 2), 13, Action::None),
        (alarm(0, InsufficientData, 18), 18, Action::None),
        // Out of ALARM now, but alarm 0 has no data: unknown is not OK, no clock runs.
        (alarm(1, Ok, 10), 22, Action::None),
        (Input::Tick, 40, Action::None),
        // Every alarm OK, the last since +41.
        (alarm(0, Ok, 41), 41, Action::None),
        (Input::Tick, 52, Action::None),
        (Input::Tick, 53, Action::Restore),
    ];
    for (input, now, expected) in steps {
        let decision = decide(&health, &input, &counted, view, &settings, at(now));
        assert_eq!(
            decision.action, expected,
            "{input:?} at +{now}s: {decision:?}"
        );
        health = decision.next;
        if now == 22 || now == 40 {
            assert_eq!(health.state, HealthState::DrainedByAlarm);
            assert_eq!(health.ok_since, None);
        }
        if now == 41 {
            assert_eq!(health.state, HealthState::Recovering);
            assert_eq!(health.ok_since, Some(at(41)));
        }
    }
}

/// Found by rule (f) counting every event heard: a late ALARM event older than
/// its alarm's newest state is dropped whole, so it does not restart the failback clock
/// although it shows the alarm was in ALARM after `ok_since`. Here the only alarm clears
/// at +1 (`ok_since`), later flaps ALARM @41 -> INSUFFICIENT_DATA @42 with the ALARM
/// arriving last, and the region still fails back at +59, 17s after the flap, although
/// `failback_after` is 58s.
#[test]
fn a_late_alarm_restarts_the_failback_clock() {
    use AlarmState::{Alarm, InsufficientData, Ok};
    let minimal = Scenario {
        settings: FailoverSettings {
            min_healthy: 1,
            cooldown: Duration::ZERO,
            failback_after: Duration::from_secs(58),
            ..FailoverSettings::default()
        },
        alarm_counts: vec![1, 1],
        steps: vec![
            alarm_step(0, 1, 0, Alarm, 3),
            alarm_step(7, 1, 0, InsufficientData, 6),
            alarm_step(28, 0, 0, Ok, 0),
            alarm_step(10, 1, 0, InsufficientData, 3),
            alarm_step(10, 1, 0, Alarm, 14),
            alarm_step(4, 1, 0, InsufficientData, 0),
        ],
    };
    let result = run(&minimal, History::All);
    assert!(result.is_ok(), "{result:?}");
}

/// Found by `failback_counts_late_alarms` in CI: an ALARM with the same time as the OK
/// that started the failback clock was dropped as late, but its duplicate, arriving after a
/// newer OK, restarted the clock. The scenario gave one alarm two different changes in the
/// same second; CloudWatch never does (it stamps changes in milliseconds, one at a time), so
/// the second one is now stamped a millisecond earlier, and neither copy moves the clock.
#[test]
fn a_duplicate_of_a_late_alarm_leaves_the_failback_clock() {
    use AlarmState::{Alarm, Ok};
    let minimal = Scenario {
        settings: FailoverSettings {
            min_healthy: 1,
            cooldown: Duration::ZERO,
            failback_after: Duration::from_secs(62),
            ..FailoverSettings::default()
        },
        alarm_counts: vec![1, 1],
        steps: vec![
            alarm_step(0, 1, 0, Alarm, 0),
            alarm_step(9, 1, 0, Ok, 0),
            alarm_step(0, 1, 0, Alarm, 0),
            alarm_step(19, 1, 0, Ok, 0),
            Step {
                advance: 0,
                region: 1,
                op: Op::Duplicate { nth: 2 },
            },
        ],
    };
    let result = run(&minimal, History::All);
    assert!(result.is_ok(), "{result:?}");
}

proptest! {
    // Many cases: rule (f) with late ALARMs needs a rare interleaving.
    #![proptest_config(ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Rule (f) over every event heard; see `a_late_alarm_restarts_the_failback_clock`.
    #[test]
        fn failback_counts_late_alarms(scenario in scenario()) {
        run(&scenario, History::All)?;
    }
}
