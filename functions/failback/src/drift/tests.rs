//! The check on in-memory adapters: what it writes in the region's record and history,
//! what it publishes, and that a duplicate tick, a rollout, a failed read or a concurrent
//! writer never makes it write twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian::drift::{Endpoint, RegistryView, Variant};
use meridian::failover::RegionHealth;
use meridian::fleet::{Fleet, RegionSpec};
use meridian::health::{Clock, FailoverEvent, HealthError, HealthStore, Versioned, Write};
use meridian::peers::PeerProbes;
use meridian::registry::{ActivePointer, LockHolder, RolloutLock, VersionRecord, VersionStatus};
use meridian::rollout::deployment_name;
use serde_json::Value;

use super::{check, DriftSources};

/// The region's replica in memory; the event log keeps one entry per id, as DynamoDB's
/// key does. `conflicts` saves answer `Conflict` first, as when the failover function
/// wrote the record in between.
#[derive(Default)]
struct Replica {
    records: Mutex<HashMap<String, Versioned<RegionHealth>>>,
    events: Mutex<BTreeMap<String, FailoverEvent>>,
    conflicts: AtomicUsize,
    saves: AtomicUsize,
}

impl HealthStore for Replica {
    async fn load(&self, region: &str) -> Result<Option<Versioned<RegionHealth>>, HealthError> {
        Ok(self.records.lock().expect("lock").get(region).cloned())
    }
    async fn save(
        &self,
        health: &RegionHealth,
        expected: Option<u64>,
    ) -> Result<Write, HealthError> {
        if self.conflicts.load(Ordering::SeqCst) > 0 {
            self.conflicts.fetch_sub(1, Ordering::SeqCst);
            return Ok(Write::Conflict);
        }
        let mut records = self.records.lock().expect("lock");
        if records.get(&health.region).map(|v| v.version) != expected {
            return Ok(Write::Conflict);
        }
        self.saves.fetch_add(1, Ordering::SeqCst);
        records.insert(
            health.region.clone(),
            Versioned {
                value: health.clone(),
                version: expected.map_or(1, |v| v + 1),
            },
        );
        Ok(Write::Done)
    }
    async fn load_probes(&self, _observer: &str) -> Result<Option<PeerProbes>, HealthError> {
        Ok(None)
    }
    async fn save_probes(&self, _probes: &PeerProbes) -> Result<(), HealthError> {
        Ok(())
    }
    async fn record(&self, event: &FailoverEvent) -> Result<(), HealthError> {
        self.events
            .lock()
            .expect("lock")
            .entry(format!("{}#{}", event.region, event.id))
            .or_insert_with(|| event.clone());
        Ok(())
    }
}

struct Fixed(Mutex<DateTime<Utc>>);

impl Fixed {
    fn at(seconds: i64) -> Self {
        Fixed(Mutex::new(time(seconds)))
    }
    fn set(&self, seconds: i64) {
        *self.0.lock().expect("lock") = time(seconds);
    }
}

impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("lock")
    }
    async fn sleep(&self, _duration: Duration) {}
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid time")
}

/// The registry and the endpoint as the test sets them; counts SageMaker reads.
struct Sources {
    view: RegistryView,
    active: Option<VersionRecord>,
    endpoint: Mutex<Result<Endpoint, String>>,
    endpoint_reads: AtomicUsize,
}

impl DriftSources for Sources {
    async fn registry(&self) -> Result<(RegistryView, Option<VersionRecord>), HealthError> {
        Ok((self.view.clone(), self.active.clone()))
    }
    async fn endpoint(&self) -> Result<Endpoint, HealthError> {
        self.endpoint_reads.fetch_add(1, Ordering::SeqCst);
        self.endpoint
            .lock()
            .expect("lock")
            .clone()
            .map_err(HealthError::Retryable)
    }
}

fn fleet() -> Fleet {
    Fleet::from_toml_str(include_str!("../../../../fleet.example.toml")).expect("example is valid")
}

fn eu() -> RegionSpec {
    fleet().region("eu-west-1").expect("eu-west-1").clone()
}

const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tgi:3";

fn version_record() -> VersionRecord {
    let manifest: meridian::manifest::Manifest = serde_json::from_value(serde_json::json!({
        "format": 1, "model": "llama", "version": "v2",
        "serving": {"image": IMAGE, "instance_type": "ml.g5.2xlarge", "instance_count": 1, "variant_name": "primary"},
        "files": [{"path": "w.safetensors", "size": 1, "sha256": "0".repeat(64)}],
    }))
    .expect("a valid manifest");
    VersionRecord {
        model: "llama".into(),
        version: "v2".into(),
        digest: "abcdef0123456789".into(),
        manifest: meridian::registry::RegisteredManifest::new(
            &manifest,
            "manifest.json",
            None,
            b"{}",
        ),
        status: VersionStatus::Active,
        phases: BTreeMap::new(),
        regions: BTreeMap::new(),
        execution: None,
        reason: None,
    }
}

fn config() -> String {
    deployment_name("llama", "v2", "abcdef0123456789")
}

fn endpoint_on(config: &str) -> Endpoint {
    Endpoint::Serving {
        status: "InService".into(),
        config: config.into(),
        variants: vec![Variant {
            name: "primary".into(),
            model: config.into(),
            model_data: Some(format!("s3://{}/models/llama/v2/", eu().bucket)),
            image: Some(IMAGE.into()),
        }],
    }
}

fn sources(endpoint: Endpoint) -> Sources {
    Sources {
        view: RegistryView {
            active: BTreeMap::from([(
                "llama".to_owned(),
                ActivePointer {
                    version: "v2".into(),
                    digest: "abcdef0123456789".into(),
                    previous: None,
                    since: time(0),
                },
            )]),
            lock: RolloutLock::default(),
        },
        active: Some(version_record()),
        endpoint: Mutex::new(Ok(endpoint)),
        endpoint_reads: AtomicUsize::new(0),
    }
}

fn metric_value(metric: Option<&String>) -> f64 {
    let line: Value = serde_json::from_str(metric.expect("a metric line")).expect("EMF JSON");
    assert_eq!(line["Region"], "eu-west-1");
    line["Drift"].as_f64().expect("a Drift value")
}

fn kinds(replica: &Replica) -> Vec<String> {
    let mut events: Vec<FailoverEvent> = replica
        .events
        .lock()
        .expect("lock")
        .values()
        .cloned()
        .collect();
    events.sort_by_key(|e| e.decided);
    events.into_iter().map(|e| e.kind).collect()
}

fn recorded(replica: &Replica) -> Option<meridian::drift::Drift> {
    replica
        .records
        .lock()
        .expect("lock")
        .get("eu-west-1")?
        .value
        .drift
        .clone()
}

#[tokio::test]
async fn a_drifted_endpoint_is_recorded_once_with_what_differs_and_a_duplicate_tick_writes_nothing()
{
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    let sources = sources(endpoint_on("hand-made"));
    let (summary, metric) = check(&eu(), "primary", &sources, &replica, &clock).await;
    assert_eq!(metric_value(metric.as_ref()), 1.0);
    let drift = recorded(&replica).expect("drift recorded in the region's record");
    assert_eq!(drift.since, time(60));
    assert_eq!(drift.expected, "llama/v2");
    assert_eq!(drift.differences.len(), 1);
    let difference = &drift.differences[0];
    assert_eq!(
        (
            difference.field.as_str(),
            difference.expected.clone(),
            difference.actual.as_str()
        ),
        ("config", config(), "hand-made")
    );
    assert_eq!(summary["drift"]["differences"][0]["actual"], "hand-made");
    assert_eq!(kinds(&replica), vec!["drift"]);
    // The same tick delivered again, and the next tick: nothing written.
    clock.set(120);
    for _ in 0..2 {
        let (_, metric) = check(&eu(), "primary", &sources, &replica, &clock).await;
        assert_eq!(metric_value(metric.as_ref()), 1.0);
    }
    assert_eq!(replica.saves.load(Ordering::SeqCst), 1);
    assert_eq!(kinds(&replica), vec!["drift"]);
    assert_eq!(recorded(&replica).map(|d| d.since), Some(time(60)));
}

#[tokio::test]
async fn a_healed_endpoint_clears_the_drift_and_records_the_end() {
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    let sources = sources(endpoint_on("hand-made"));
    check(&eu(), "primary", &sources, &replica, &clock).await;
    *sources.endpoint.lock().expect("lock") = Ok(endpoint_on(&config()));
    clock.set(180);
    let (summary, metric) = check(&eu(), "primary", &sources, &replica, &clock).await;
    assert_eq!(metric_value(metric.as_ref()), 0.0);
    assert_eq!(summary["drift"], Value::Null);
    assert_eq!(recorded(&replica), None);
    assert_eq!(kinds(&replica), vec!["drift", "drift-healed"]);
    let healed = replica
        .events
        .lock()
        .expect("lock")
        .values()
        .find(|e| e.kind == "drift-healed")
        .cloned()
        .expect("the end is recorded");
    assert!(healed.reason.contains("after 120 s"), "{}", healed.reason);
    // A clean fleet after that: nothing more.
    check(&eu(), "primary", &sources, &replica, &clock).await;
    assert_eq!(replica.saves.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_clean_endpoint_writes_nothing() {
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    let (_, metric) = check(
        &eu(),
        "primary",
        &sources(endpoint_on(&config())),
        &replica,
        &clock,
    )
    .await;
    assert_eq!(metric_value(metric.as_ref()), 0.0);
    assert_eq!(replica.saves.load(Ordering::SeqCst), 0);
    assert!(kinds(&replica).is_empty());
}

#[tokio::test]
async fn during_a_rollout_sagemaker_is_not_asked_and_a_recorded_drift_stays() {
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    let mut sources = sources(endpoint_on("hand-made"));
    check(&eu(), "primary", &sources, &replica, &clock).await;
    sources.view.lock = RolloutLock {
        holder: Some(LockHolder {
            model: "llama".into(),
            version: "v3".into(),
            since: time(0),
            execution: None,
            repair: None,
        }),
        queue: vec![],
    };
    sources.endpoint_reads.store(0, Ordering::SeqCst);
    let (summary, metric) = check(&eu(), "primary", &sources, &replica, &clock).await;
    assert_eq!(sources.endpoint_reads.load(Ordering::SeqCst), 0);
    assert_eq!(summary["not_judged"], "rollout of llama/v3 in progress");
    assert_eq!(
        metric_value(metric.as_ref()),
        1.0,
        "the recorded drift stands"
    );
    assert_eq!(replica.saves.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_read_changes_nothing_and_publishes_no_metric() {
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    let sources = sources(endpoint_on("hand-made"));
    *sources.endpoint.lock().expect("lock") = Err("throttled".into());
    let (summary, metric) = check(&eu(), "primary", &sources, &replica, &clock).await;
    assert_eq!(metric, None);
    assert!(summary["unchecked"]
        .as_str()
        .is_some_and(|s| s.contains("throttled")));
    assert_eq!(replica.saves.load(Ordering::SeqCst), 0);
    assert!(kinds(&replica).is_empty());
}

#[tokio::test]
async fn a_concurrent_write_is_retried_and_the_history_entry_written_once() {
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    replica.conflicts.store(2, Ordering::SeqCst);
    let (_, metric) = check(
        &eu(),
        "primary",
        &sources(endpoint_on("hand-made")),
        &replica,
        &clock,
    )
    .await;
    assert_eq!(metric_value(metric.as_ref()), 1.0);
    assert!(recorded(&replica).is_some());
    assert_eq!(kinds(&replica), vec!["drift"]);
    // Writers that never stop: the tick gives up, the next one tries again.
    let (replica, clock) = (Replica::default(), Fixed::at(60));
    replica.conflicts.store(10, Ordering::SeqCst);
    let (summary, metric) = check(
        &eu(),
        "primary",
        &sources(endpoint_on("hand-made")),
        &replica,
        &clock,
    )
    .await;
    assert_eq!(metric, None);
    assert!(summary["unchecked"].is_string());
}
