//! Failure injection for the emulations, so failure paths can be tested on demand.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The failures currently injected. Settable in-process or through the gateway's
/// `PUT /_meridian/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSet {
    /// Regions whose buckets receive no replicas: replication to them fails.
    pub replication_fails_to: BTreeSet<String>,
    /// Regions where every `UpdateEndpoint` ends `Failed`.
    pub endpoint_updates_fail_in: BTreeSet<String>,
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

    /// Makes every endpoint update in `region` end `Failed` from now on.
    pub fn fail_endpoint_updates_in(&self, region: &str) {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        faults.endpoint_updates_fail_in.insert(region.to_owned());
    }

    pub fn replication_fails_to(&self, region: &str) -> bool {
        self.snapshot().replication_fails_to.contains(region)
    }

    pub fn endpoint_updates_fail_in(&self, region: &str) -> bool {
        self.snapshot().endpoint_updates_fail_in.contains(region)
    }
}
