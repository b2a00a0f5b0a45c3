//! The registry in memory, for handler tests: one table replica's items, keyed and
//! encoded as the DynamoDB [`crate::registry::Registry`] keeps them (`pk`, `sk`, a JSON
//! `body`), with the same conditional-write outcomes: a version registers once and then
//! only the same manifest is accepted; the active pointer moves only from the expected
//! version; the lock is taken, queued for and released by [`RolloutLock`]'s rules; an
//! item over DynamoDB's size limit is refused. A test can plant any item (a corrupt one
//! included) and make calls fail the way DynamoDB can, which the local cloud cannot.
//!
//! What it does not model: the replica function's number sets of verified files (a
//! region's checks are kept as the [`RegionChecks`] reading them gives), replication
//! between regions (each region's replica is a
//! separate value; a test shares one where replication is assumed done), the lost races
//! of concurrent writers (every call is atomic here, so the DynamoDB adapter's
//! optimistic retries, and its "too many concurrent updates" after ten, never happen),
//! and throttling except as injected failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::manifest::Manifest;
use crate::operator::OperatorControl;
use crate::registry::{
    model_key, move_pointer, repair_key, rollout_key, ActivePointer, PointerMove, Readiness,
    RegisteredManifest, Registration, RegistryError, VersionRecord, VersionStatus, LOCK_PK,
    MAX_ITEM_BYTES,
};
use crate::registry_store::{LockRegistry, RolloutRegistry, UploadRegistry};
use crate::repair::{Repair, RepairTask};
use crate::replica_record::RegionChecks;
use crate::rollout_lock::RolloutLock;

/// An item's key: partition and sort key.
pub type Key = (String, String);

/// An injected failure: the operation it hits (every one when `None`) and the error.
pub type Failure = (Option<&'static str>, fn(String) -> RegistryError);

/// Whose replica checks: model, version, region.
type ChecksKey = (String, String, String);

fn checks_key(rollout: (&str, &str), region: &str) -> ChecksKey {
    (
        rollout.0.to_owned(),
        rollout.1.to_owned(),
        region.to_owned(),
    )
}

#[derive(Default)]
struct State {
    items: BTreeMap<Key, String>,
    /// A region's replica checks, which the table keeps as number sets per 100 files
    /// ([`crate::replica_record`]): kept here as what reading them gives.
    checks: BTreeMap<ChecksKey, RegionChecks>,
    failing: Option<Failure>,
    writes: usize,
}

/// One table replica's registry items in memory. Clones share the items.
#[derive(Clone, Default)]
pub struct MemoryRegistry {
    state: Arc<Mutex<State>>,
}

fn version_key(model: &str, version: &str) -> Key {
    (model_key(model), format!("version#{version}"))
}

fn lock_key() -> Key {
    (LOCK_PK.to_owned(), "lock".to_owned())
}

impl MemoryRegistry {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the calls `failure` names fail with its error from now on (`None`: none).
    pub fn fail(&self, failure: Option<Failure>) {
        self.state().failing = failure;
    }

    /// Every item, as stored: what a test compares to show a call changed nothing.
    pub fn items(&self) -> BTreeMap<Key, String> {
        self.state().items.clone()
    }

    /// How many writes succeeded (items put or deleted).
    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// Stores `body` as the item `pk`/`sk`, whatever it is (a corrupt one included), as
    /// another writer (the replica function, an operator's command) would have.
    pub fn put_item(&self, pk: &str, sk: &str, body: &str) {
        self.state()
            .items
            .insert((pk.to_owned(), sk.to_owned()), body.to_owned());
    }

    /// Stores `value` as JSON in the item `pk`/`sk` (see [`Self::put_item`]).
    pub fn put_json<T: Serialize>(&self, pk: &str, sk: &str, value: &T) {
        let body = serde_json::to_string(value).unwrap_or_default();
        self.put_item(pk, sk, &body);
    }

    /// Records `region`'s replica checks of `model`/`version`, as the replica function
    /// would have.
    pub fn set_region_checks(
        &self,
        model: &str,
        version: &str,
        region: &str,
        checks: RegionChecks,
    ) {
        self.state()
            .checks
            .insert(checks_key((model, version), region), checks);
    }

    /// Runs one operation atomically on the items, unless an injected failure hits it.
    fn with<T>(
        &self,
        operation: &str,
        run: impl FnOnce(&mut Items<'_>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut state = self.state();
        if let Some((hit, error)) = state.failing {
            if hit.is_none_or(|hit| hit == operation) {
                return Err(error(format!("{operation}: injected")));
            }
        }
        let State {
            items,
            checks,
            writes,
            ..
        } = &mut *state;
        run(&mut Items {
            items,
            checks,
            writes,
        })
    }
}

/// The items during one operation.
struct Items<'a> {
    items: &'a mut BTreeMap<Key, String>,
    checks: &'a mut BTreeMap<ChecksKey, RegionChecks>,
    writes: &'a mut usize,
}

impl Items<'_> {
    fn get<T: DeserializeOwned>(&self, key: &Key, what: &str) -> Result<Option<T>, RegistryError> {
        self.items
            .get(key)
            .map(|body| {
                serde_json::from_str(body)
                    .map_err(|e| RegistryError::Corrupt(format!("{what}: {e}")))
            })
            .transpose()
    }

    /// `value` as the body of `key`, refused (as DynamoDB refuses it, before any
    /// condition is evaluated) when the item would be over the size limit.
    fn encode<T: Serialize>(key: &Key, value: &T) -> Result<String, RegistryError> {
        let body =
            serde_json::to_string(value).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
        Self::check_size(key, &body)?;
        Ok(body)
    }

    fn check_size(key: &Key, body: &str) -> Result<(), RegistryError> {
        let size = "pk".len() + key.0.len() + "sk".len() + key.1.len() + "body".len() + body.len();
        if size > MAX_ITEM_BYTES {
            return Err(RegistryError::Rejected(format!(
                "item {} / {} would be {size} bytes, over DynamoDB's {MAX_ITEM_BYTES}-byte item limit",
                key.0, key.1
            )));
        }
        Ok(())
    }

    /// Writes `body` (already checked) as the item `key`.
    fn put_body(&mut self, key: Key, body: String) {
        self.items.insert(key, body);
        *self.writes += 1;
    }

    /// Writes `value` as JSON, unconditionally.
    fn put<T: Serialize>(&mut self, key: Key, value: &T) -> Result<(), RegistryError> {
        let body = Self::encode(&key, value)?;
        self.put_body(key, body);
        Ok(())
    }

    /// Writes a plain string body (a task token), as the DynamoDB registry does.
    fn put_text(&mut self, key: Key, text: &str) -> Result<(), RegistryError> {
        Self::check_size(&key, text)?;
        self.put_body(key, text.to_owned());
        Ok(())
    }

    fn change_lock(
        &mut self,
        change: impl FnOnce(&mut RolloutLock) -> bool,
    ) -> Result<RolloutLock, RegistryError> {
        let mut lock: RolloutLock = self.get(&lock_key(), "lock")?.unwrap_or_default();
        if change(&mut lock) {
            self.put(lock_key(), &lock)?;
        }
        Ok(lock)
    }
}

impl LockRegistry for MemoryRegistry {
    async fn version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        self.with("version", |items| {
            items.get(&version_key(model, version), "version")
        })
    }

    async fn update_version(
        &self,
        model: &str,
        version: &str,
        change: impl Fn(&mut VersionRecord) + Send + Sync,
    ) -> Result<VersionRecord, RegistryError> {
        self.with("update_version", |items| {
            let key = version_key(model, version);
            let mut record: VersionRecord = items.get(&key, "version")?.ok_or_else(|| {
                RegistryError::Corrupt(format!("version {model}/{version} is not registered"))
            })?;
            change(&mut record);
            items.put(key, &record)?;
            Ok(record)
        })
    }

    async fn lock(&self) -> Result<RolloutLock, RegistryError> {
        self.with("lock", |items| {
            Ok(items.get(&lock_key(), "lock")?.unwrap_or_default())
        })
    }

    async fn record_lock_execution(
        &self,
        model: &str,
        version: &str,
        execution: &str,
    ) -> Result<(), RegistryError> {
        self.with("record_lock_execution", |items| {
            items
                .change_lock(|lock| lock.record_execution(model, version, execution))
                .map(drop)
        })
    }

    async fn release(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        self.with("release", |items| {
            let mut next = None;
            items.change_lock(|lock| {
                let held = lock.held_by(model, version);
                next = lock.release(model, version, Utc::now());
                held
            })?;
            Ok(next)
        })
    }

    async fn repair(&self, region: &str) -> Result<Option<Repair>, RegistryError> {
        self.with("repair", |items| {
            items.get(&(LOCK_PK.to_owned(), repair_key(region)), "repair")
        })
    }

    async fn update_repair(
        &self,
        task: &RepairTask,
        change: impl Fn(&mut Repair) + Send + Sync,
    ) -> Result<Option<Repair>, RegistryError> {
        self.with("update_repair", |items| {
            let key = (LOCK_PK.to_owned(), repair_key(&task.region));
            let Some(mut repair) = items.get::<Repair>(&key, "repair")? else {
                return Ok(None);
            };
            if repair.drift_since != task.drift_since {
                return Ok(None);
            }
            change(&mut repair);
            items.put(key, &repair)?;
            Ok(Some(repair))
        })
    }
}

impl UploadRegistry for MemoryRegistry {
    async fn register(
        &self,
        manifest: &Manifest,
        registered: RegisteredManifest,
        digest: &str,
        status: VersionStatus,
        now: DateTime<Utc>,
    ) -> Result<Registration, RegistryError> {
        self.with("register", |items| {
            let key = version_key(&manifest.model, &manifest.version);
            let record = VersionRecord::registered(manifest, registered, digest, status, now);
            let body = Items::encode(&key, &record)?;
            if let Some(existing) = items.get::<VersionRecord>(&key, "version")? {
                return Ok(if existing.digest == digest {
                    Registration::Same(existing)
                } else {
                    Registration::Conflict(existing)
                });
            }
            items.put_body(key, body);
            Ok(Registration::New(record))
        })
    }

    async fn record_rejection(
        &self,
        manifest: &Manifest,
        digest: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        self.with("record_rejection", |items| {
            let reason = crate::bounded::text(reason, crate::bounded::MAX_REASON_BYTES);
            let body = serde_json::json!({ "model": manifest.model, "version": manifest.version, "digest": digest, "reason": reason, "at": now });
            items.put(
                (
                    model_key(&manifest.model),
                    format!("rejected#{}#{digest}", manifest.version),
                ),
                &body,
            )
        })
    }

    async fn acquire_or_queue(
        &self,
        model: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<RolloutLock, RegistryError> {
        self.with("acquire_or_queue", |items| {
            items.change_lock(|lock| lock.acquire_or_queue(model, version, now))
        })
    }
}

impl RolloutRegistry for MemoryRegistry {
    async fn active(&self, model: &str) -> Result<Option<ActivePointer>, RegistryError> {
        self.with("active", |items| {
            items.get(&(model_key(model), "active".to_owned()), "active pointer")
        })
    }

    async fn commit(
        &self,
        model: &str,
        version: &str,
        digest: &str,
        expected_previous: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        self.with("commit", |items| {
            let key = (model_key(model), "active".to_owned());
            let current: Option<ActivePointer> = items.get(&key, "active pointer")?;
            match move_pointer(current.as_ref(), version, digest, expected_previous, now) {
                PointerMove::AlreadyThere => Ok(true),
                PointerMove::Refused => Ok(false),
                PointerMove::To(pointer) => {
                    items.put(key, &pointer)?;
                    Ok(true)
                }
            }
        })
    }

    async fn operator_control(
        &self,
        model: &str,
        version: &str,
    ) -> Result<OperatorControl, RegistryError> {
        self.with("operator_control", |items| {
            Ok(items
                .get(
                    &(rollout_key(model, version), "control".to_owned()),
                    "operator control",
                )?
                .unwrap_or_default())
        })
    }

    async fn readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<Option<Readiness>, RegistryError> {
        self.with("readiness", |items| {
            items.get(
                &(rollout_key(model, version), format!("ready#{region}")),
                "readiness",
            )
        })
    }

    async fn region_checks(
        &self,
        rollout: (&str, &str),
        region: &str,
    ) -> Result<RegionChecks, RegistryError> {
        self.with("region_checks", |items| {
            Ok(items
                .checks
                .get(&checks_key(rollout, region))
                .cloned()
                .unwrap_or_default())
        })
    }

    async fn reset_readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<(), RegistryError> {
        self.with("reset_readiness", |items| {
            items
                .items
                .remove(&(rollout_key(model, version), format!("ready#{region}")));
            *items.writes += 1;
            Ok(())
        })
    }

    async fn store_token(
        &self,
        model: &str,
        version: &str,
        region: &str,
        token: &str,
    ) -> Result<(), RegistryError> {
        self.with("store_token", |items| {
            items.put_text(
                (rollout_key(model, version), format!("token#{region}")),
                token,
            )
        })
    }

    async fn store_deploy_wait(
        &self,
        endpoint: &str,
        region: &str,
        token: &str,
    ) -> Result<(), RegistryError> {
        self.with("store_deploy_wait", |items| {
            items.put_text(
                (format!("deploy-wait#{endpoint}"), region.to_owned()),
                token,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> Manifest {
        let value = serde_json::json!({
            "format": 1, "model": "llama", "version": version,
            "files": [{ "path": "config.json", "size": 3, "sha256": "a".repeat(64) }],
            "serving": { "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:1", "instance_type": "ml.g5.xlarge", "instance_count": 2 }
        });
        crate::manifest::parse(value.to_string().as_bytes()).expect("valid")
    }

    async fn register(registry: &MemoryRegistry, version: &str, digest: &str) -> Registration {
        let manifest = manifest(version);
        let registered = RegisteredManifest::new(&manifest, "k", None, b"{}");
        registry
            .register(
                &manifest,
                registered,
                digest,
                VersionStatus::Queued,
                Utc::now(),
            )
            .await
            .expect("registered")
    }

    #[tokio::test]
    async fn a_version_registers_once_and_only_its_manifest_is_the_same() {
        let registry = MemoryRegistry::default();
        assert!(matches!(
            register(&registry, "v1", "d1").await,
            Registration::New(_)
        ));
        let items = registry.items();
        assert!(
            matches!(register(&registry, "v1", "d1").await, Registration::Same(r) if r.digest == "d1")
        );
        assert!(
            matches!(register(&registry, "v1", "d2").await, Registration::Conflict(r) if r.digest == "d1")
        );
        assert_eq!(registry.items(), items, "nothing rewritten");
        let missing = registry.update_version("llama", "v9", |_| {}).await;
        assert!(
            matches!(missing, Err(RegistryError::Corrupt(m)) if m.contains("llama/v9 is not registered"))
        );
    }

    #[tokio::test]
    async fn an_item_over_dynamodbs_limit_is_refused_and_not_written() {
        let registry = MemoryRegistry::default();
        register(&registry, "v1", "d1").await;
        let items = registry.items();
        let huge = "r".repeat(MAX_ITEM_BYTES);
        let refused = registry
            .update_version("llama", "v1", |r| r.reason = Some(huge.clone()))
            .await;
        assert!(matches!(refused, Err(RegistryError::Rejected(m)) if m.contains("item limit")));
        assert_eq!(registry.items(), items);
    }

    #[tokio::test]
    async fn the_pointer_moves_only_from_the_expected_version() {
        let registry = MemoryRegistry::default();
        let now = Utc::now();
        assert!(registry
            .commit("llama", "v1", "d1", None, now)
            .await
            .expect("ok"));
        assert!(
            !registry
                .commit("llama", "v2", "d2", None, now)
                .await
                .expect("ok"),
            "v1 is there"
        );
        assert!(registry
            .commit("llama", "v2", "d2", Some("v1"), now)
            .await
            .expect("ok"));
        assert!(
            registry
                .commit("llama", "v2", "d2", None, now)
                .await
                .expect("ok"),
            "already there"
        );
        let pointer = registry.active("llama").await.expect("ok").expect("active");
        assert_eq!(
            (pointer.version.as_str(), pointer.previous.as_deref()),
            ("v2", Some("v1"))
        );
    }

    #[tokio::test]
    async fn the_lock_is_taken_queued_for_and_released_once() {
        let registry = MemoryRegistry::default();
        let now = Utc::now();
        assert!(registry
            .acquire_or_queue("llama", "v1", now)
            .await
            .expect("ok")
            .held_by("llama", "v1"));
        let lock = registry
            .acquire_or_queue("mistral", "v1", now)
            .await
            .expect("ok");
        assert_eq!(lock.queue.len(), 1);
        assert_eq!(
            registry
                .acquire_or_queue("mistral", "v1", now)
                .await
                .expect("ok"),
            lock,
            "once"
        );
        registry
            .record_lock_execution("mistral", "v1", "e")
            .await
            .expect("ok");
        assert_eq!(
            registry.lock().await.expect("ok"),
            lock,
            "not the holder: nothing"
        );
        assert_eq!(
            registry.release("llama", "v1").await.expect("ok"),
            Some(("mistral".into(), "v1".into()))
        );
        let writes = registry.writes();
        assert_eq!(registry.release("llama", "v1").await.expect("ok"), None);
        assert_eq!(registry.writes(), writes, "a second release writes nothing");
    }

    #[tokio::test]
    async fn injected_failures_hit_their_operation_and_corrupt_items_are_named() {
        let registry = MemoryRegistry::default();
        registry.fail(Some((Some("lock"), RegistryError::Unavailable)));
        assert!(matches!(
            registry.lock().await,
            Err(RegistryError::Unavailable(_))
        ));
        assert!(registry
            .version("llama", "v1")
            .await
            .expect("not hit")
            .is_none());
        registry.fail(None);
        registry.put_item(LOCK_PK, "lock", "{");
        assert!(
            matches!(registry.lock().await, Err(RegistryError::Corrupt(m)) if m.starts_with("lock: "))
        );
    }
}
