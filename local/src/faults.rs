//! Failure injection for the emulations, so failure paths can be tested on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The failures currently injected. Settable in-process or through the gateway's
/// `PUT /_meridian/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSet {
    /// Regions whose buckets receive no replicas: replication to them fails.
    pub replication_fails_to: BTreeSet<String>,
    /// Regions where the next `UpdateEndpoint` ends `Failed` (one update each: the
    /// rollback that follows succeeds).
    pub endpoint_updates_fail_in: BTreeSet<String>,
    /// Regions whose replicas arrive damaged: `"size"` (one byte more) or `"checksum"`
    /// (same size, first byte changed).
    pub corrupt_replicas_in: BTreeMap<String, Corruption>,
    /// Regions whose alarm state changes are never delivered as events (the state still
    /// changes in CloudWatch): a lost event, which only the scheduled tick can heal.
    pub alarm_events_dropped_in: BTreeSet<String>,
    /// Regions whose endpoints answer every invocation with a model error (HTTP 424).
    pub invocations_fail_in: BTreeSet<String>,
}

/// How a replica is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    Size,
    Checksum,
}

/// Shared, mutable fault settings.
#[derive(Debug, Default)]
pub struct Faults(Mutex<FaultSet>);

impl Faults {
    pub fn snapshot(&self) -> FaultSet {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, faults: FaultSet) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Makes replication to `region` fail from now on.
    pub fn fail_replication_to(&self, region: &str) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.replication_fails_to.insert(region.to_owned());
    }

    /// Makes the next endpoint update in `region` end `Failed`.
    pub fn fail_endpoint_updates_in(&self, region: &str) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.endpoint_updates_fail_in.insert(region.to_owned());
    }

    /// Makes replicas arriving in `region` damaged from now on.
    pub fn corrupt_replicas_in(&self, region: &str, corruption: Corruption) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults
            .corrupt_replicas_in
            .insert(region.to_owned(), corruption);
    }

    /// Makes every endpoint invocation in `region` fail from now on.
    pub fn fail_invocations_in(&self, region: &str) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.invocations_fail_in.insert(region.to_owned());
    }

    /// Drops every alarm state-change event of `region` from now on.
    pub fn drop_alarm_events_in(&self, region: &str) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.alarm_events_dropped_in.insert(region.to_owned());
    }

    pub fn alarm_events_dropped_in(&self, region: &str) -> bool {
        self.snapshot().alarm_events_dropped_in.contains(region)
    }

    pub fn invocations_fail_in(&self, region: &str) -> bool {
        self.snapshot().invocations_fail_in.contains(region)
    }

    pub fn replica_corruption(&self, region: &str) -> Option<Corruption> {
        self.snapshot().corrupt_replicas_in.get(region).copied()
    }

    pub fn replication_fails_to(&self, region: &str) -> bool {
        self.snapshot().replication_fails_to.contains(region)
    }

    /// Whether this update in `region` fails; consumes the injected fault.
    pub fn take_endpoint_update_failure(&self, region: &str) -> bool {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.endpoint_updates_fail_in.remove(region)
    }
}
