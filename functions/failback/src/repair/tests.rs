//! The repair pass on in-memory adapters: one repair started for a drift however many
//! ticks see it, never beside a rollout or a second repair, finished by the next tick
//! when a tick stops half way, and nothing at all where it is not the primary's tick or
//! the fleet file does not allow it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use meridian::drift::Drift;
use meridian::failover::{Difference, RegionHealth};
use meridian::fleet::Fleet;
use meridian::health::{Clock, FailoverEvent, HealthError, HealthStore, Versioned, Write};
use meridian::peers::PeerProbes;
use meridian::repair::{ActiveVersion, Repair};
use meridian::rollout_lock::RolloutLock;

use super::{run, ControlFacts, RepairControl};

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn fleet(repair: bool) -> Fleet {
    let mut fleet = Fleet::from_toml_str(include_str!("../../../../fleet.example.toml"))
        .unwrap_or_else(|e| panic!("example fleet: {e}"));
    fleet.drift.repair = repair;
    fleet
}

/// Every region's record as the primary's replica has it.
#[derive(Default)]
struct Records(Mutex<HashMap<String, RegionHealth>>);

impl Records {
    fn drifted(regions: &[&str]) -> Self {
        let records = Records::default();
        for region in regions {
            let mut record = RegionHealth::new(*region, time(0));
            record.drift = Some(Drift {
                since: time(10),
                expected: "llama/v2".into(),
                differences: vec![Difference {
                    field: "config".into(),
                    expected: "llama-v2-abcdef01".into(),
                    actual: "hand-made".into(),
                }],
            });
            records
                .0
                .lock()
                .expect("lock")
                .insert((*region).into(), record);
        }
        records
    }
}

impl HealthStore for Records {
    async fn load(&self, region: &str) -> Result<Option<Versioned<RegionHealth>>, HealthError> {
        Ok(self
            .0
            .lock()
            .expect("lock")
            .get(region)
            .map(|value| Versioned {
                value: value.clone(),
                version: 1,
            }))
    }
    async fn save(&self, _: &RegionHealth, _: Option<u64>) -> Result<Write, HealthError> {
        Ok(Write::Done)
    }
    async fn load_probes(&self, _: &str) -> Result<Option<PeerProbes>, HealthError> {
        Ok(None)
    }
    async fn save_probes(&self, _: &PeerProbes) -> Result<(), HealthError> {
        Ok(())
    }
    async fn record(&self, _: &FailoverEvent) -> Result<(), HealthError> {
        Ok(())
    }
}

/// The control region in memory: the lock and repair records as the registry keeps them,
/// the executions Step Functions holds (by name, as it refuses a second of one name).
#[derive(Default)]
struct Control {
    lock: Mutex<RolloutLock>,
    repairs: Mutex<HashMap<String, Repair>>,
    executions: Mutex<BTreeSet<String>>,
    facts_read: AtomicUsize,
    /// `StartExecution` calls that fail (throttled) before one succeeds.
    start_failures: AtomicUsize,
}

impl RepairControl for Control {
    async fn facts(&self) -> Result<ControlFacts, HealthError> {
        self.facts_read.fetch_add(1, Ordering::SeqCst);
        Ok(ControlFacts {
            active: Some(ActiveVersion {
                model: "llama".into(),
                version: "v2".into(),
                digest: "abcdef01".into(),
            }),
            lock: self.lock.lock().expect("lock").clone(),
            repairs: self
                .repairs
                .lock()
                .expect("lock")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            drill: None,
        })
    }
    async fn acquire(&self, repair: &Repair) -> Result<RolloutLock, HealthError> {
        let mut lock = self.lock.lock().expect("lock");
        lock.acquire_for_repair(
            &repair.model,
            &repair.version,
            &repair.region,
            &repair.execution,
            time(30),
        );
        Ok(lock.clone())
    }
    async fn begin(&self, repair: &Repair) -> Result<(), HealthError> {
        let mut repairs = self.repairs.lock().expect("lock");
        if repairs.get(&repair.region).map(|r| r.drift_since) != Some(repair.drift_since) {
            repairs.insert(repair.region.clone(), repair.clone());
        }
        Ok(())
    }
    async fn start(&self, repair: &Repair) -> Result<(), HealthError> {
        if self.start_failures.load(Ordering::SeqCst) > 0 {
            self.start_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(HealthError::Retryable("throttled".into()));
        }
        self.executions
            .lock()
            .expect("lock")
            .insert(repair.execution.clone());
        Ok(())
    }
}

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        time(20)
    }
    async fn sleep(&self, _: std::time::Duration) {}
}

fn executions(control: &Control) -> Vec<String> {
    control
        .executions
        .lock()
        .expect("lock")
        .iter()
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_drift_seen_by_many_ticks_starts_one_repair_with_one_metric() {
    let (fleet, records, control) = (
        fleet(true),
        Records::drifted(&["eu-west-1"]),
        Control::default(),
    );
    let (summary, metrics) = run(&fleet, "us-east-1", &records, &control, &Fixed).await;
    assert_eq!(
        summary["eu-west-1"]["started"], "repair-eu-west-1-1800000010000",
        "{summary}"
    );
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert!(metrics[0].contains("RepairStarted"), "{metrics:?}");
    for _ in 0..3 {
        let (summary, metrics) = run(&fleet, "us-east-1", &records, &control, &Fixed).await;
        assert_eq!(
            summary["eu-west-1"]["running"], "repair-eu-west-1-1800000010000",
            "{summary}"
        );
        assert!(metrics.is_empty(), "{metrics:?}");
    }
    assert_eq!(executions(&control), ["repair-eu-west-1-1800000010000"]);
    let lock = control.lock.lock().expect("lock").clone();
    assert_eq!(
        lock.holder.and_then(|h| h.repair).as_deref(),
        Some("eu-west-1")
    );
}

#[tokio::test]
async fn a_tick_that_stops_before_the_execution_starts_is_finished_by_the_next() {
    let (fleet, records, control) = (
        fleet(true),
        Records::drifted(&["eu-west-1"]),
        Control::default(),
    );
    control.start_failures.store(1, Ordering::SeqCst);
    let (summary, _) = run(&fleet, "us-east-1", &records, &control, &Fixed).await;
    assert!(
        summary["unchecked"]
            .as_str()
            .is_some_and(|e| e.contains("throttled")),
        "{summary}"
    );
    assert!(executions(&control).is_empty());
    let (summary, _) = run(&fleet, "us-east-1", &records, &control, &Fixed).await;
    assert_eq!(
        summary["eu-west-1"]["running"], "repair-eu-west-1-1800000010000",
        "{summary}"
    );
    assert_eq!(executions(&control), ["repair-eu-west-1-1800000010000"]);
}

#[tokio::test]
async fn two_drifted_regions_are_repaired_one_at_a_time_and_never_beside_a_rollout() {
    let (fleet, records, control) = (
        fleet(true),
        Records::drifted(&["eu-west-1", "ap-southeast-1"]),
        Control::default(),
    );
    let (summary, _) = run(&fleet, "us-east-1", &records, &control, &Fixed).await;
    assert_eq!(executions(&control).len(), 1, "{summary}");
    let waiting = summary.as_object().map(|regions| {
        regions
            .values()
            .filter(|o| o.get("waiting").is_some())
            .count()
    });
    assert_eq!(waiting, Some(1), "{summary}");

    let (records, control) = (Records::drifted(&["eu-west-1"]), Control::default());
    control
        .lock
        .lock()
        .expect("lock")
        .acquire_or_queue("llama", "v3", time(0));
    let (summary, _) = run(&fleet, "us-east-1", &records, &control, &Fixed).await;
    assert_eq!(
        summary["eu-west-1"]["waiting"], "the rollout of llama/v3 holds the fleet's lock",
        "{summary}"
    );
    assert!(executions(&control).is_empty());
    assert!(control.repairs.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn only_the_primarys_tick_repairs_and_only_when_the_fleet_file_allows_it() {
    let records = Records::drifted(&["eu-west-1"]);
    for (fleet, region) in [(fleet(true), "eu-west-1"), (fleet(false), "us-east-1")] {
        let control = Control::default();
        let (summary, metrics) = run(&fleet, region, &records, &control, &Fixed).await;
        assert_eq!(summary, serde_json::Value::Null);
        assert!(metrics.is_empty());
        assert_eq!(control.facts_read.load(Ordering::SeqCst), 0, "nothing read");
        assert!(executions(&control).is_empty());
    }
}
