//! The drill's tasks on in-memory items and fleet reads: refusals that change nothing,
//! retried tasks that change nothing more, and the store failures moto cannot produce.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use meridian::drill::{DrillRecord, DrillRequest, DrillStatus, StepCounts};
use meridian::fleet::Fleet;
use meridian::function::Handler;
use meridian::table::TableError;
use meridian::traffic::DrillShift;
use meridian::NamedError;
use serde_json::Value;

use crate::{Drill, DrillError, DrillItems, FleetReads, Task};

/// An injected store failure: the operation it hits (every one when `None`) and the error.
type Failure = (Option<&'static str>, fn(String) -> TableError);

/// A drill's record and the operator's abort request, by drill.
type Records = BTreeMap<String, (DrillRecord, Option<String>)>;

/// The drills' items, in memory; `failing` makes calls fail.
#[derive(Clone, Default)]
struct Items {
    records: Arc<Mutex<Records>>,
    lock: Arc<Mutex<Option<String>>>,
    shifts: Arc<Mutex<BTreeMap<String, DrillShift>>>,
    counts: Arc<Mutex<BTreeMap<(String, usize), StepCounts>>>,
    failing: Arc<Mutex<Option<Failure>>>,
    writes: Arc<Mutex<usize>>,
}

impl Items {
    fn check(&self, operation: &str) -> Result<(), TableError> {
        match *self.failing.lock().expect("lock") {
            Some((hit, error)) if hit.is_none_or(|hit| hit == operation) => {
                Err(error(format!("{operation}: injected")))
            }
            _ => Ok(()),
        }
    }

    fn wrote(&self) {
        *self.writes.lock().expect("lock") += 1;
    }

    fn writes(&self) -> usize {
        *self.writes.lock().expect("lock")
    }

    fn fail(&self, failure: Option<Failure>) {
        *self.failing.lock().expect("lock") = failure;
    }
}

impl DrillItems for Items {
    async fn record(
        &self,
        drill_id: &str,
    ) -> Result<Option<(DrillRecord, Option<String>)>, TableError> {
        self.check("record")?;
        Ok(self.records.lock().expect("lock").get(drill_id).cloned())
    }

    async fn save_record(&self, record: &DrillRecord) -> Result<(), TableError> {
        self.check("save_record")?;
        self.wrote();
        let mut records = self.records.lock().expect("lock");
        let abort = records.get(&record.id).and_then(|(_, abort)| abort.clone());
        records.insert(record.id.clone(), (record.clone(), abort));
        Ok(())
    }

    async fn lock_holder(&self) -> Result<Option<String>, TableError> {
        self.check("lock_holder")?;
        Ok(self.lock.lock().expect("lock").clone())
    }

    async fn take_lock(&self, drill_id: &str) -> Result<Result<(), String>, TableError> {
        self.check("take_lock")?;
        let mut lock = self.lock.lock().expect("lock");
        match lock.as_deref() {
            Some(holder) if holder != drill_id => Ok(Err(holder.to_owned())),
            _ => {
                self.wrote();
                *lock = Some(drill_id.to_owned());
                Ok(Ok(()))
            }
        }
    }

    async fn release_lock(&self, drill_id: &str) -> Result<(), TableError> {
        self.check("release_lock")?;
        let mut lock = self.lock.lock().expect("lock");
        if lock.as_deref() == Some(drill_id) {
            self.wrote();
            *lock = None;
        }
        Ok(())
    }

    async fn put_shift(&self, shift: &DrillShift) -> Result<(), TableError> {
        self.check("put_shift")?;
        self.wrote();
        self.shifts
            .lock()
            .expect("lock")
            .insert(shift.from.clone(), shift.clone());
        Ok(())
    }

    async fn clear_shift(&self, region: &str, drill_id: &str) -> Result<(), TableError> {
        self.check("clear_shift")?;
        let mut shifts = self.shifts.lock().expect("lock");
        if shifts.get(region).is_some_and(|s| s.drill_id == drill_id) {
            self.wrote();
            shifts.remove(region);
        }
        Ok(())
    }

    async fn step_counts(&self, drill_id: &str, step: usize) -> Result<StepCounts, TableError> {
        self.check("step_counts")?;
        Ok(self
            .counts
            .lock()
            .expect("lock")
            .get(&(drill_id.to_owned(), step))
            .cloned()
            .unwrap_or_default())
    }
}

/// The rest of the fleet as the test sets it.
#[derive(Clone, Default)]
struct Reads {
    rollout: Arc<Mutex<Option<String>>>,
    drained: Arc<Mutex<Vec<(String, String)>>>,
    alarms: Arc<Mutex<Vec<String>>>,
}

impl FleetReads for Reads {
    async fn rollout_holder(&self) -> Result<Option<String>, DrillError> {
        Ok(self.rollout.lock().expect("lock").clone())
    }

    async fn drained(&self) -> Result<Vec<(String, String)>, DrillError> {
        Ok(self.drained.lock().expect("lock").clone())
    }

    async fn alarms_firing(&self) -> Result<Vec<String>, DrillError> {
        Ok(self.alarms.lock().expect("lock").clone())
    }
}

fn drill() -> (Drill<Items, Reads>, Items, Reads) {
    let fleet = Fleet::from_toml_str(include_str!("../../../fleet.example.toml"))
        .unwrap_or_else(|e| panic!("example fleet: {e}"));
    let (items, reads) = (Items::default(), Reads::default());
    let drill = Drill {
        fleet,
        store: items.clone(),
        reads: reads.clone(),
    };
    (drill, items, reads)
}

fn request() -> DrillRequest {
    DrillRequest {
        from: "us-east-1".into(),
        to: "eu-west-1".into(),
        steps: vec![10, 50],
        bake: std::time::Duration::from_secs(0),
    }
}

fn start(drill_id: &str) -> Task {
    Task::Start {
        drill_id: drill_id.into(),
        request: request(),
    }
}

async fn run(drill: &Drill<Items, Reads>, task: Task) -> Result<Value, DrillError> {
    drill.handle(task).await.result
}

fn error_name(result: &Result<Value, DrillError>) -> &'static str {
    result.as_ref().err().map_or("ok", |e| e.error_name())
}

#[tokio::test]
async fn a_start_during_a_rollout_or_a_drain_is_refused_and_writes_nothing() {
    let (drill, items, reads) = drill();
    *reads.rollout.lock().expect("lock") = Some("llama/2".into());
    let refused = run(&drill, start("d1")).await;
    assert_eq!(error_name(&refused), "Meridian.Rejected", "{refused:?}");
    assert!(
        format!("{refused:?}").contains("llama/2"),
        "names the rollout: {refused:?}"
    );
    *reads.rollout.lock().expect("lock") = None;
    *reads.drained.lock().expect("lock") = vec![("eu-west-1".into(), "DrainedByAlarm".into())];
    let refused = run(&drill, start("d1")).await;
    assert_eq!(error_name(&refused), "Meridian.Rejected", "{refused:?}");
    assert_eq!(items.writes(), 0, "a refusal changes nothing");
    assert!(items.lock.lock().expect("lock").is_none());
}

#[tokio::test]
async fn a_retried_start_is_done_and_a_second_drill_is_refused() {
    let (drill, items, _) = drill();
    run(&drill, start("d1")).await.expect("starts");
    let writes = items.writes();
    run(&drill, start("d1"))
        .await
        .expect("a retried start is done");
    assert_eq!(items.writes(), writes, "a retried start writes nothing");
    let second = run(&drill, start("d2")).await;
    assert_eq!(error_name(&second), "Meridian.Rejected", "{second:?}");
    assert_eq!(items.lock.lock().expect("lock").as_deref(), Some("d1"));
    assert_eq!(items.records.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn a_shift_sent_twice_records_its_step_once() {
    let (drill, items, _) = drill();
    run(&drill, start("d1")).await.expect("starts");
    for _ in 0..2 {
        let shifted = run(
            &drill,
            Task::Shift {
                drill_id: "d1".into(),
                step: 0,
            },
        )
        .await
        .expect("shifts");
        assert_eq!(shifted["percent"], 10);
    }
    let (record, _) = items.records.lock().expect("lock")["d1"].clone();
    assert_eq!(record.steps.len(), 1);
    assert_eq!(items.shifts.lock().expect("lock")["us-east-1"].percent, 10);
}

#[tokio::test]
async fn an_operators_abort_request_aborts_at_the_next_check() {
    let (drill, items, _) = drill();
    run(&drill, start("d1")).await.expect("starts");
    run(
        &drill,
        Task::Shift {
            drill_id: "d1".into(),
            step: 0,
        },
    )
    .await
    .expect("shifts");
    items
        .records
        .lock()
        .expect("lock")
        .get_mut("d1")
        .expect("recorded")
        .1 = Some("sre on call".into());
    let checked = run(
        &drill,
        Task::Check {
            drill_id: "d1".into(),
            step: 0,
        },
    )
    .await
    .expect("checks");
    assert_eq!(checked["action"], "abort");
    assert!(
        checked["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sre on call")),
        "{checked}"
    );
}

/// DynamoDB throttling is retried by the state machine; a refused or unreadable item is
/// not (the same request fails every time), and neither hides behind the other's name.
#[tokio::test]
async fn store_failures_are_named_by_whether_a_retry_can_help() {
    let (drill, items, _) = drill();
    items.fail(Some((None, TableError::Unavailable)));
    assert_eq!(
        error_name(&run(&drill, start("d1")).await),
        "Meridian.Retryable"
    );
    items.fail(Some((None, TableError::Rejected)));
    assert_eq!(
        error_name(&run(&drill, start("d1")).await),
        "Meridian.Invalid"
    );
    items.fail(Some((None, TableError::Corrupt)));
    assert_eq!(
        error_name(&run(&drill, start("d1")).await),
        "Meridian.Invalid"
    );
    assert_eq!(items.writes(), 0);
}

/// The restore puts the traffic back first: a store failure after that leaves the source
/// region serving its own traffic, and the retried restore finishes the rest once.
#[tokio::test]
async fn a_restore_that_fails_midway_has_already_removed_the_shift_and_a_retry_finishes_it() {
    let (drill, items, _) = drill();
    run(&drill, start("d1")).await.expect("starts");
    run(
        &drill,
        Task::Shift {
            drill_id: "d1".into(),
            step: 0,
        },
    )
    .await
    .expect("shifts");
    let restore = || Task::Restore {
        drill_id: "d1".into(),
        error: None,
        reason: Some("alarm".into()),
    };
    items.fail(Some((Some("save_record"), TableError::Unavailable)));
    let failed = run(&drill, restore()).await;
    assert_eq!(error_name(&failed), "Meridian.Retryable", "{failed:?}");
    assert!(
        items.shifts.lock().expect("lock").is_empty(),
        "the traffic is back before the record is written"
    );
    assert_eq!(items.lock.lock().expect("lock").as_deref(), Some("d1"));
    items.fail(None);
    run(&drill, restore()).await.expect("the retry restores");
    let (record, _) = items.records.lock().expect("lock")["d1"].clone();
    assert_eq!(record.status, DrillStatus::Aborted);
    assert!(items.lock.lock().expect("lock").is_none(), "lock released");
    run(&drill, restore())
        .await
        .expect("a third restore is done");
    let (again, _) = items.records.lock().expect("lock")["d1"].clone();
    assert_eq!(again.ended, record.ended, "ended once");
}
