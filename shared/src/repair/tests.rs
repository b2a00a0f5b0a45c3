use super::*;
use crate::failover::{Difference, Drift};
use crate::rollout_lock::{LockHolder, QueuedVersion};

const REGION: &str = "eu-west-1";

fn at(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default()
}

fn active() -> ActiveVersion {
    ActiveVersion {
        model: "llama".into(),
        version: "v2".into(),
        digest: "abcdef01".into(),
    }
}

fn drift(expected: &str) -> Drift {
    Drift {
        since: at(10),
        expected: expected.into(),
        differences: vec![Difference {
            field: "config".into(),
            expected: "llama-v2-abcdef01".into(),
            actual: "hand-made".into(),
        }],
    }
}

fn health(state: HealthState, drift: Option<Drift>) -> RegionHealth {
    let mut record = RegionHealth::new(REGION, at(0));
    record.state = state;
    record.drift = drift;
    record
}

fn holder(model: &str, repair: Option<&str>, execution: Option<&str>) -> LockHolder {
    LockHolder {
        model: model.into(),
        version: "v2".into(),
        since: at(5),
        execution: execution.map(str::to_owned),
        repair: repair.map(str::to_owned),
    }
}

fn repair(since: DateTime<Utc>, status: RepairStatus) -> Repair {
    Repair {
        region: REGION.into(),
        drift_since: since,
        model: "llama".into(),
        version: "v2".into(),
        digest: "abcdef01".into(),
        execution: execution_name(REGION, since),
        status,
        started: since,
        ended: None,
        reason: Some("it broke".into()),
        progress: RegionProgress::default(),
    }
}

/// One combination of the facts, named.
struct Case {
    name: String,
    allowed: bool,
    health: Option<RegionHealth>,
    active: Option<ActiveVersion>,
    lock: RolloutLock,
    last: Option<Repair>,
    drill: Option<&'static str>,
}

/// Every combination of the facts, with a name for each choice.
fn combinations() -> Vec<Case> {
    let ours = execution_name(REGION, at(10));
    let healths: Vec<(&str, Option<RegionHealth>)> = vec![
        ("no record", None),
        ("in sync", Some(health(HealthState::Healthy, None))),
        (
            "drifted",
            Some(health(HealthState::Healthy, Some(drift("llama/v2")))),
        ),
        (
            "drifted from an older commit",
            Some(health(HealthState::Healthy, Some(drift("llama/v1")))),
        ),
        (
            "drifted and drained",
            Some(health(HealthState::DrainedByAlarm, Some(drift("llama/v2")))),
        ),
        (
            "drifted and recovering",
            Some(health(HealthState::Recovering, Some(drift("llama/v2")))),
        ),
    ];
    let locks: Vec<(&str, RolloutLock)> = vec![
        ("free", RolloutLock::default()),
        (
            "a rollout",
            RolloutLock {
                holder: Some(holder("mistral", None, Some("e"))),
                queue: vec![],
            },
        ),
        (
            "this repair",
            RolloutLock {
                holder: Some(holder("llama", Some(REGION), Some(&ours))),
                queue: vec![],
            },
        ),
        (
            "another region's repair",
            RolloutLock {
                holder: Some(holder(
                    "llama",
                    Some("us-west-2"),
                    Some("repair-us-west-2-1"),
                )),
                queue: vec![],
            },
        ),
        (
            "only a queue",
            RolloutLock {
                holder: None,
                queue: vec![QueuedVersion {
                    model: "llama".into(),
                    version: "v3".into(),
                    queued: at(1),
                }],
            },
        ),
    ];
    let lasts: Vec<(&str, Option<Repair>)> = vec![
        ("no repair", None),
        ("running", Some(repair(at(10), RepairStatus::Running))),
        ("succeeded", Some(repair(at(10), RepairStatus::Succeeded))),
        ("failed", Some(repair(at(10), RepairStatus::Failed))),
        (
            "an older drift's failure",
            Some(repair(at(1), RepairStatus::Failed)),
        ),
    ];
    let mut all = Vec::new();
    for allowed in [false, true] {
        for (h, health) in &healths {
            for active in [None, Some(active())] {
                for (l, lock) in &locks {
                    for (r, last) in &lasts {
                        for drill in [None, Some("drill-1")] {
                            let name = format!("allowed={allowed} {h}, active={}, lock={l}, last={r}, drill={drill:?}", active.is_some());
                            all.push(Case {
                                name,
                                allowed,
                                health: health.clone(),
                                active: active.clone(),
                                lock: lock.clone(),
                                last: last.clone(),
                                drill,
                            });
                        }
                    }
                }
            }
        }
    }
    all
}

#[test]
fn a_repair_starts_only_when_every_condition_holds_and_resumes_only_its_own_lock() {
    let ours = execution_name(REGION, at(10));
    for Case {
        name,
        allowed,
        health,
        active,
        lock,
        last,
        drill,
    } in combinations()
    {
        let facts = Facts {
            allowed,
            region: REGION,
            health: health.as_ref(),
            active: active.as_ref(),
            lock: &lock,
            last: last.as_ref(),
            drill,
        };
        let decision = decide(&facts, at(20));
        let drifted_from_active = health
            .as_ref()
            .and_then(|h| h.drift.as_ref())
            .is_some_and(|d| active.is_some() && d.expected == "llama/v2");
        let in_service = health
            .as_ref()
            .is_some_and(|h| h.state == HealthState::Healthy);
        let same_drift_done = last
            .as_ref()
            .is_some_and(|r| r.drift_since == at(10) && r.status != RepairStatus::Running);
        let same_drift_running = last
            .as_ref()
            .is_some_and(|r| r.drift_since == at(10) && r.status == RepairStatus::Running);
        let ours_holds = lock
            .holder
            .as_ref()
            .is_some_and(|h| h.execution.as_deref() == Some(ours.as_str()));
        let due = allowed && drifted_from_active && !same_drift_done;
        match &decision {
            Decision::Start(repair) => {
                assert!(
                    due && in_service
                        && drill.is_none()
                        && lock.holder.is_none()
                        && lock.queue.is_empty()
                        && last.as_ref().is_none_or(|r| r.drift_since != at(10)),
                    "{name}: {decision:?}"
                );
                assert_eq!(repair.execution, ours, "{name}");
                assert_eq!(repair.started, at(20), "{name}");
                assert_eq!(repair.status, RepairStatus::Running, "{name}");
                assert_eq!(
                    (
                        repair.model.as_str(),
                        repair.version.as_str(),
                        repair.digest.as_str()
                    ),
                    ("llama", "v2", "abcdef01"),
                    "{name}"
                );
                assert_eq!(
                    repair.task(),
                    RepairTask {
                        region: REGION.into(),
                        drift_since: at(10)
                    }
                );
            }
            Decision::Resume(repair) => {
                assert!(due && ours_holds, "{name}: {decision:?}");
                assert_eq!(
                    repair.started,
                    at(5),
                    "the lock's since: every tick writes the same record ({name})"
                );
            }
            Decision::Wait(_) => {
                assert!(
                    due && !ours_holds && !same_drift_running,
                    "{name}: {decision:?}"
                );
                assert!(
                    !in_service
                        || drill.is_some()
                        || lock.holder.is_some()
                        || !lock.queue.is_empty(),
                    "{name}: {decision:?}"
                );
            }
            Decision::Nothing(_) => {
                assert!(
                    !due || (same_drift_running && !ours_holds),
                    "{name}: {decision:?}"
                );
            }
        }
        // A duplicate tick decides the same.
        assert_eq!(decide(&facts, at(20)), decision, "{name}");
    }
}

#[test]
fn the_reasons_say_what_holds_the_repair_back() {
    let drifted = health(HealthState::Healthy, Some(drift("llama/v2")));
    let active = active();
    let free = RolloutLock::default();
    let rollout = RolloutLock {
        holder: Some(holder("mistral", None, Some("e"))),
        queue: vec![],
    };
    let held = Facts {
        allowed: true,
        region: REGION,
        health: Some(&drifted),
        active: Some(&active),
        lock: &rollout,
        last: None,
        drill: None,
    };
    assert_eq!(
        decide(&held, at(20)),
        Decision::Wait("the rollout of mistral/v2 holds the fleet's lock".into())
    );
    let off = Facts {
        allowed: false,
        ..held
    };
    assert!(
        matches!(decide(&off, at(20)), Decision::Nothing(why) if why.contains("[drift] repair"))
    );
    let failed = repair(at(10), RepairStatus::Failed);
    let after_failure = Facts {
        last: Some(&failed),
        lock: &free,
        ..held
    };
    assert!(matches!(decide(&after_failure, at(20)),
        Decision::Nothing(why) if why.contains("it broke") && why.contains("not retried")));
    let drained = health(HealthState::DrainedByHand, Some(drift("llama/v2")));
    let out = Facts {
        health: Some(&drained),
        lock: &free,
        ..held
    };
    assert!(matches!(decide(&out, at(20)), Decision::Wait(why) if why.contains("out of service")));
    let drilling = Facts {
        drill: Some("d1"),
        lock: &free,
        ..held
    };
    assert_eq!(
        decide(&drilling, at(20)),
        Decision::Wait("drill d1 is running".into())
    );
}

#[test]
fn the_execution_name_is_a_valid_step_functions_name_for_every_region() {
    for region in crate::regions::AWS_REGIONS {
        let name = execution_name(region, at(10));
        assert!(name.len() <= 80, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
    }
    assert_ne!(
        execution_name(REGION, at(10)),
        execution_name(REGION, at(11))
    );
    assert_ne!(
        execution_name(REGION, at(10)),
        execution_name("us-west-2", at(10))
    );
}

#[test]
fn the_lock_is_held_by_a_repair_only_with_its_region_and_execution() {
    let ours = repair(at(10), RepairStatus::Running);
    let lock = |region: &str, execution: &str| RolloutLock {
        holder: Some(holder("llama", Some(region), Some(execution))),
        queue: vec![],
    };
    assert!(holds_lock(&lock(REGION, &ours.execution), &ours));
    assert!(!holds_lock(&lock("us-west-2", &ours.execution), &ours));
    assert!(!holds_lock(&lock(REGION, "repair-eu-west-1-1"), &ours));
    assert!(!holds_lock(&RolloutLock::default(), &ours));
}
