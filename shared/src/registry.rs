//! The model registry in the global table. Key design (pk / sk):
//!
//! | item | pk | sk | writer |
//! |---|---|---|---|
//! | version | `model#<m>` | `version#<v>` | control region (upload, rollout tasks) |
//! | rejected manifest | `model#<m>` | `rejected#<v>#<digest>` | control region |
//! | active pointer | `model#<m>` | `active` | control region (commit only) |
//! | rollout lock + queue of the fleet's endpoints (every model) | `endpoints` | `lock` | control region |
//! | a region's latest drift repair ([`crate::repair`]) | `endpoints` | `repair#<region>` | control region (primary's failback tick, rollout tasks) |
//! | operator control of a rollout | `rollout#<m>#<v>` | `control` | control region (CLI) |
//! | files verified, a number set per 100 files ([`crate::replica_record`]) | `rollout#<m>#<v>` | `verified#<region>#<chunk>` | that region (replica function) |
//! | failed replica check of a file | `rollout#<m>#<v>` | `file#<region>#<path>` | that region (replica function) |
//! | region ready / failed | `rollout#<m>#<v>` | `ready#<region>` | that region (replica function) |
//! | waiting task token | `rollout#<m>#<v>` | `token#<region>` | control, written into that region's replica |
//!
//! Every item has one writer region, and every conditional write goes to that region's
//! replica, so last-writer-wins replication never loses a decision. The readiness
//! protocol of a region runs entirely in that region's replica (strongly consistent
//! reads): the waiting task writes its token then reads readiness; the replica function
//! writes readiness then reads the token. Whichever comes second sees the other, so the
//! last replica arriving before the token is stored cannot hang the rollout.
//!
//! No item grows with the manifest. A manifest may list 10,000 files with paths of up to
//! 900 bytes (about 10 MB), while a DynamoDB item holds at most 400 KB: the version item
//! keeps the manifest's S3 location, its digest and a bounded summary
//! ([`RegisteredManifest`]), and the functions that need the file list read
//! `manifest.json` from their own region's bucket, where it is replicated like every
//! file. Reasons are cut to [`crate::bounded::MAX_REASON_BYTES`], and every write is
//! checked against the item limit before it is sent ([`RegistryError::Rejected`]).

use std::collections::BTreeMap;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, Serving};
use crate::operator::{OperatorAction, OperatorControl, Refusal};
pub use crate::region_progress::RegionProgress;
use crate::repair::{Repair, RepairTask};
pub use crate::rollout_lock::{LockHolder, QueuedVersion, RolloutLock};
use crate::table::{dynamodb_error, from_item, is_condition_failure, json_attr, s, TableError};

/// Why a registry operation failed: the registry is items of the table, and fails as the
/// table does.
pub type RegistryError = TableError;

/// DynamoDB's item size limit: the UTF-8 lengths of attribute names and values together.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The size DynamoDB counts for an item of string attributes.
fn item_bytes(attributes: &[(&str, &str)]) -> usize {
    attributes
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum()
}

pub fn model_key(model: &str) -> String {
    format!("model#{model}")
}

/// The sort key of a region's repair record (partition [`LOCK_PK`]).
pub fn repair_key(region: &str) -> String {
    format!("repair#{region}")
}

pub fn rollout_key(model: &str, version: &str) -> String {
    format!("rollout#{model}#{version}")
}

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Registered, waiting for another rollout of the model to end.
    Queued,
    /// Its rollout runs.
    RollingOut,
    /// Every region serves it; the active pointer names it.
    Active,
    /// Its rollout failed; every region is back on the previous version.
    Failed,
}

/// What the registry keeps of a version's manifest: where it is and a bounded summary.
/// The file list stays in `manifest.json`, read (and checked against the version's
/// digest) by the functions that need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredManifest {
    /// `models/<model>/<version>/manifest.json`, in the primary bucket and, replicated,
    /// in every regional bucket.
    pub key: String,
    /// The S3 version of the registered manifest in the primary bucket, so a manifest
    /// put over it later (and refused) does not hide it.
    pub version_id: Option<String>,
    /// The manifest object's size and SHA-256: what its replica in each region is checked
    /// against, like any file of the version.
    pub size: u64,
    pub sha256: String,
    /// How many files it lists.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// How to serve the version (bounded by the manifest's own limits).
    pub serving: Serving,
}

impl RegisteredManifest {
    /// The summary of `manifest`, read as `bytes` at `key` (S3 version `version_id`).
    pub fn new(manifest: &Manifest, key: &str, version_id: Option<String>, bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self {
            key: key.to_owned(),
            version_id,
            size: bytes.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            files: manifest.files.len(),
            bytes: manifest.files.iter().map(|f| f.size).sum(),
            serving: manifest.serving.clone(),
        }
    }
}

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub model: String,
    pub version: String,
    /// The manifest's canonical digest: its identity.
    pub digest: String,
    pub manifest: RegisteredManifest,
    pub status: VersionStatus,
    /// Phase name → when it was reached (registered, rollout_started, replicated, deployed, committed, failed...).
    pub phases: BTreeMap<String, DateTime<Utc>>,
    pub regions: BTreeMap<String, RegionProgress>,
    pub execution: Option<String>,
    pub reason: Option<String>,
}

impl VersionRecord {
    /// The record a version starts with: what the table and the in-memory registry write.
    pub fn registered(
        manifest: &Manifest,
        registered: RegisteredManifest,
        digest: &str,
        status: VersionStatus,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            model: manifest.model.clone(),
            version: manifest.version.clone(),
            digest: digest.to_owned(),
            manifest: registered,
            status,
            phases: BTreeMap::from([("registered".to_owned(), now)]),
            regions: BTreeMap::new(),
            execution: None,
            reason: None,
        }
    }
}

/// The outcome of registering a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// First time: registered.
    New(VersionRecord),
    /// The same manifest again: nothing changes.
    Same(VersionRecord),
    /// A different manifest for a registered version: rejected.
    Conflict(VersionRecord),
}

/// The active version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivePointer {
    pub version: String,
    pub digest: String,
    pub previous: Option<String>,
    pub since: DateTime<Utc>,
}

/// The partition key of the fleet's rollout lock: the registry table is the fleet's, and
/// its endpoints (one per region, shared by every model) are what a rollout updates.
pub const LOCK_PK: &str = "endpoints";

/// What a replica check found for one file in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileCheck {
    pub path: String,
    pub ok: bool,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// A region's readiness for a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What committing a version does to the active pointer: the rule the table and the
/// in-memory registry both follow.
#[derive(Debug, Clone, PartialEq)]
pub enum PointerMove {
    /// The pointer already names the version (a retried commit).
    AlreadyThere,
    /// The pointer no longer names the expected previous version: another commit won.
    Refused,
    /// The pointer to write.
    To(ActivePointer),
}

/// Moves `current` to `version` only from `expected_previous`.
pub fn move_pointer(
    current: Option<&ActivePointer>,
    version: &str,
    digest: &str,
    expected_previous: Option<&str>,
    now: DateTime<Utc>,
) -> PointerMove {
    if current.is_some_and(|p| p.version == version && p.digest == digest) {
        return PointerMove::AlreadyThere;
    }
    if current.map(|p| p.version.as_str()) != expected_previous {
        return PointerMove::Refused;
    }
    PointerMove::To(ActivePointer {
        version: version.into(),
        digest: digest.into(),
        previous: expected_previous.map(str::to_owned),
        since: now,
    })
}

/// The registry, through one region's table replica.
#[derive(Clone)]
pub struct Registry {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Registry {
    async fn get(
        &self,
        pk: String,
        sk: String,
    ) -> Result<Option<HashMap<String, AttributeValue>>, RegistryError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the registry", e))?
            .item)
    }

    /// Writes `body` unless the item exists (or, with `version`, unless its version differs).
    /// An item over DynamoDB's size limit is refused here, naming the item, before the call.
    async fn put(
        &self,
        pk: String,
        sk: String,
        body: AttributeValue,
        expected: Expect,
    ) -> Result<bool, RegistryError> {
        let size = item_bytes(&[
            ("pk", &pk),
            ("sk", &sk),
            ("body", body.as_s().map(String::as_str).unwrap_or_default()),
        ]);
        if size > MAX_ITEM_BYTES {
            return Err(RegistryError::Rejected(format!(
                "item {pk} / {sk} would be {size} bytes, over DynamoDB's {MAX_ITEM_BYTES}-byte item limit"
            )));
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body.clone());
        put = match expected {
            Expect::Absent => put.condition_expression("attribute_not_exists(pk)"),
            Expect::Body(old) => put
                .condition_expression("body = :old")
                .expression_attribute_values(":old", old),
            Expect::Anything => put,
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(dynamodb_error("writing the registry", error)),
        }
    }

    /// Registers a version; idempotent for the same manifest, refuses a different one.
    pub async fn register(
        &self,
        manifest: &Manifest,
        registered: RegisteredManifest,
        digest: &str,
        status: VersionStatus,
        now: DateTime<Utc>,
    ) -> Result<Registration, RegistryError> {
        let record = VersionRecord::registered(manifest, registered, digest, status, now);
        let created = self
            .put(
                model_key(&record.model),
                format!("version#{}", record.version),
                json_attr(&record)?,
                Expect::Absent,
            )
            .await?;
        if created {
            return Ok(Registration::New(record));
        }
        let existing = self
            .version(&record.model, &record.version)
            .await?
            .ok_or_else(|| RegistryError::Corrupt("version vanished during registration".into()))?;
        Ok(if existing.digest == digest {
            Registration::Same(existing)
        } else {
            Registration::Conflict(existing)
        })
    }

    /// The most recently registered version of a model.
    pub async fn latest_version(
        &self,
        model: &str,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(model_key(model)))
            .expression_attribute_values(":prefix", s("version#"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| dynamodb_error("listing versions", e))?;
        let records: Vec<VersionRecord> = pages
            .iter()
            .map(|i| from_item(i, "version"))
            .collect::<Result<_, _>>()?;
        Ok(records
            .into_iter()
            .max_by_key(|r| r.phases.get("registered").copied()))
    }

    /// Every model with a registered version (a scan: the registry is small).
    pub async fn models(&self) -> Result<Vec<String>, RegistryError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(pk, :model) AND begins_with(sk, :version)")
            .expression_attribute_values(":model", s("model#"))
            .expression_attribute_values(":version", s("version#"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| dynamodb_error("listing models", e))?;
        let mut models: Vec<String> = items
            .iter()
            .filter_map(|i| {
                i.get("pk")?
                    .as_s()
                    .ok()?
                    .strip_prefix("model#")
                    .map(str::to_owned)
            })
            .collect();
        models.sort();
        models.dedup();
        Ok(models)
    }

    /// Every model's active pointer and rollout lock, in one scan of this replica (the
    /// registry is small): what the drift check compares the region's endpoint with.
    pub async fn heads(&self) -> Result<RegistryView, RegistryError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression(
                "(begins_with(pk, :model) AND sk = :active) OR (pk = :endpoints AND sk = :lock)",
            )
            .expression_attribute_values(":model", s("model#"))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":endpoints", s(LOCK_PK))
            .expression_attribute_values(":lock", s("lock"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| dynamodb_error("reading the active versions", e))?;
        let mut view = RegistryView::default();
        for item in &items {
            let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok());
            let (Some(pk), Some(sk)) = (key("pk"), key("sk")) else {
                continue;
            };
            if pk == LOCK_PK && sk == "lock" {
                view.lock = from_item(item, "lock")?;
                continue;
            }
            let Some(model) = pk.strip_prefix("model#") else {
                continue;
            };
            if sk == "active" {
                view.active
                    .insert(model.to_owned(), from_item(item, "active pointer")?);
            }
        }
        Ok(view)
    }

    pub async fn version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        self.get(model_key(model), format!("version#{version}"))
            .await?
            .map(|i| from_item(&i, "version"))
            .transpose()
    }

    /// Applies `change` to a version with optimistic concurrency (retrying on conflict).
    pub async fn update_version(
        &self,
        model: &str,
        version: &str,
        change: impl Fn(&mut VersionRecord),
    ) -> Result<VersionRecord, RegistryError> {
        for _ in 0..10 {
            let item = self
                .get(model_key(model), format!("version#{version}"))
                .await?
                .ok_or_else(|| {
                    RegistryError::Corrupt(format!("version {model}/{version} is not registered"))
                })?;
            let old = item
                .get("body")
                .cloned()
                .ok_or_else(|| RegistryError::Corrupt("version: no body".into()))?;
            let mut record: VersionRecord = from_item(&item, "version")?;
            change(&mut record);
            if self
                .put(
                    model_key(model),
                    format!("version#{version}"),
                    json_attr(&record)?,
                    Expect::Body(old),
                )
                .await?
            {
                return Ok(record);
            }
        }
        Err(RegistryError::Unavailable(format!(
            "version {model}/{version}: too many concurrent updates"
        )))
    }

    /// Records a manifest that was refused (kept for the operator; changes nothing else).
    pub async fn record_rejection(
        &self,
        manifest: &Manifest,
        digest: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        let reason = crate::bounded::text(reason, crate::bounded::MAX_REASON_BYTES);
        let body = serde_json::json!({ "model": manifest.model, "version": manifest.version, "digest": digest, "reason": reason, "at": now });
        self.put(
            model_key(&manifest.model),
            format!("rejected#{}#{digest}", manifest.version),
            json_attr(&body)?,
            Expect::Anything,
        )
        .await?;
        Ok(())
    }

    /// Rejections recorded for a model.
    pub async fn rejections(&self, model: &str) -> Result<Vec<serde_json::Value>, RegistryError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(model_key(model)))
            .expression_attribute_values(":prefix", s("rejected#"))
            .send()
            .await
            .map_err(|e| dynamodb_error("reading rejections", e))?;
        items
            .items()
            .iter()
            .map(|i| from_item(i, "rejection"))
            .collect()
    }

    pub async fn active(&self, model: &str) -> Result<Option<ActivePointer>, RegistryError> {
        self.get(model_key(model), "active".into())
            .await?
            .map(|i| from_item(&i, "active pointer"))
            .transpose()
    }

    /// Moves the active pointer to `version` in one conditional write, only if it still
    /// names `expected_previous`. True if moved (or already there).
    pub async fn commit(
        &self,
        model: &str,
        version: &str,
        digest: &str,
        expected_previous: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        let current = self.get(model_key(model), "active".into()).await?;
        let current_pointer: Option<ActivePointer> = current
            .as_ref()
            .map(|i| from_item(i, "active pointer"))
            .transpose()?;
        let pointer = match move_pointer(
            current_pointer.as_ref(),
            version,
            digest,
            expected_previous,
            now,
        ) {
            PointerMove::AlreadyThere => return Ok(true),
            PointerMove::Refused => return Ok(false),
            PointerMove::To(pointer) => pointer,
        };
        let expect = match current.and_then(|i| i.get("body").cloned()) {
            Some(old) => Expect::Body(old),
            None => Expect::Absent,
        };
        self.put(
            model_key(model),
            "active".into(),
            json_attr(&pointer)?,
            expect,
        )
        .await
    }

    /// The fleet's rollout lock and queue, with the stored body (for a conditional write).
    pub async fn lock(&self) -> Result<(RolloutLock, Option<AttributeValue>), RegistryError> {
        let item = self.get(LOCK_PK.into(), "lock".into()).await?;
        let body = item.as_ref().and_then(|i| i.get("body").cloned());
        let lock = item
            .map(|i| from_item(&i, "lock"))
            .transpose()?
            .unwrap_or_default();
        Ok((lock, body))
    }

    /// Takes the fleet's rollout lock for `model`/`version`, or queues the version behind
    /// the holder (of any model). Returns the lock as it now stands.
    pub async fn acquire_or_queue(
        &self,
        model: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<RolloutLock, RegistryError> {
        self.change_lock(|lock| lock.acquire_or_queue(model, version, now))
            .await
    }

    /// Records the holder's execution name in the lock (what the execution-ended event is
    /// matched with). Nothing changes if `model`/`version` no longer holds the lock.
    pub async fn record_lock_execution(
        &self,
        model: &str,
        version: &str,
        execution: &str,
    ) -> Result<(), RegistryError> {
        self.change_lock(|lock| lock.record_execution(model, version, execution))
            .await
            .map(drop)
    }

    /// Releases the lock held by `model`/`version` and hands it to the oldest queued
    /// version, which is returned (the caller starts its rollout). Idempotent: a version
    /// that does not hold the lock releases nothing.
    pub async fn release(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        let mut next = None;
        let now = Utc::now();
        self.change_lock(|lock| {
            let held = lock.held_by(model, version);
            next = lock.release(model, version, now);
            held
        })
        .await?;
        Ok(next)
    }

    /// Applies `change` to the fleet's lock with optimistic concurrency; `change` returns
    /// false when there is nothing to write. Returns the lock as it now stands.
    async fn change_lock(
        &self,
        mut change: impl FnMut(&mut RolloutLock) -> bool,
    ) -> Result<RolloutLock, RegistryError> {
        for _ in 0..10 {
            let (mut lock, old) = self.lock().await?;
            if !change(&mut lock) {
                return Ok(lock);
            }
            let expect = old.map_or(Expect::Absent, Expect::Body);
            if self
                .put(LOCK_PK.into(), "lock".into(), json_attr(&lock)?, expect)
                .await?
            {
                return Ok(lock);
            }
        }
        Err(RegistryError::Unavailable(
            "the rollout lock: too many concurrent updates".into(),
        ))
    }

    /// Takes the fleet's lock for a drift repair if it is free ([`RolloutLock::acquire_for_repair`]).
    /// Returns the lock as it now stands.
    pub async fn acquire_for_repair(
        &self,
        repair: &Repair,
        now: DateTime<Utc>,
    ) -> Result<RolloutLock, RegistryError> {
        self.change_lock(|lock| {
            lock.acquire_for_repair(
                &repair.model,
                &repair.version,
                &repair.region,
                &repair.execution,
                now,
            )
        })
        .await
    }

    /// A region's latest drift repair.
    pub async fn repair(&self, region: &str) -> Result<Option<Repair>, RegistryError> {
        self.get(LOCK_PK.into(), repair_key(region))
            .await?
            .map(|i| from_item(&i, "repair"))
            .transpose()
    }

    /// Every region's latest drift repair (what `meridian status` shows).
    pub async fn repairs(&self) -> Result<Vec<Repair>, RegistryError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(LOCK_PK))
            .expression_attribute_values(":prefix", s("repair#"))
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the repairs", e))?;
        items
            .items()
            .iter()
            .map(|i| from_item(i, "repair"))
            .collect()
    }

    /// Records a repair as its region's latest, unless that record already is this
    /// repair (same drift): a repeated start keeps the progress made. Returns the record.
    pub async fn begin_repair(&self, repair: &Repair) -> Result<Repair, RegistryError> {
        for _ in 0..10 {
            let item = self.get(LOCK_PK.into(), repair_key(&repair.region)).await?;
            let old = item.as_ref().and_then(|i| i.get("body").cloned());
            let current: Option<Repair> = item.map(|i| from_item(&i, "repair")).transpose()?;
            if let Some(current) = current.filter(|r| r.drift_since == repair.drift_since) {
                return Ok(current);
            }
            let expect = old.map_or(Expect::Absent, Expect::Body);
            if self
                .put(
                    LOCK_PK.into(),
                    repair_key(&repair.region),
                    json_attr(repair)?,
                    expect,
                )
                .await?
            {
                return Ok(repair.clone());
            }
        }
        Err(RegistryError::Unavailable(format!(
            "the repair of {}: too many concurrent updates",
            repair.region
        )))
    }

    /// Applies `change` to the repair of `task`'s region and drift with optimistic
    /// concurrency. `None` when the region's latest repair is not that one (a task of a
    /// repair superseded by a newer drift's changes nothing).
    pub async fn update_repair(
        &self,
        task: &RepairTask,
        change: impl Fn(&mut Repair),
    ) -> Result<Option<Repair>, RegistryError> {
        for _ in 0..10 {
            let Some(item) = self.get(LOCK_PK.into(), repair_key(&task.region)).await? else {
                return Ok(None);
            };
            let old = item
                .get("body")
                .cloned()
                .ok_or_else(|| RegistryError::Corrupt("repair: no body".into()))?;
            let mut repair: Repair = from_item(&item, "repair")?;
            if repair.drift_since != task.drift_since {
                return Ok(None);
            }
            change(&mut repair);
            if self
                .put(
                    LOCK_PK.into(),
                    repair_key(&task.region),
                    json_attr(&repair)?,
                    Expect::Body(old),
                )
                .await?
            {
                return Ok(Some(repair));
            }
        }
        Err(RegistryError::Unavailable(format!(
            "the repair of {}: too many concurrent updates",
            task.region
        )))
    }

    /// The operator control of a version's rollout (none given yet: the default).
    pub async fn operator_control(
        &self,
        model: &str,
        version: &str,
    ) -> Result<OperatorControl, RegistryError> {
        Ok(self
            .get(rollout_key(model, version), "control".into())
            .await?
            .map(|i| from_item(&i, "operator control"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Applies an operator's command to a version's rollout with optimistic concurrency;
    /// `Ok(Err(refusal))` when it does not apply (nothing is written).
    pub async fn apply_operator_action(
        &self,
        model: &str,
        version: &str,
        action: OperatorAction,
        who: &str,
        why: Option<&str>,
    ) -> Result<Result<OperatorControl, Refusal>, RegistryError> {
        for _ in 0..10 {
            let item = self
                .get(rollout_key(model, version), "control".into())
                .await?;
            let old = item.as_ref().and_then(|i| i.get("body").cloned());
            let mut control: OperatorControl = item
                .map(|i| from_item(&i, "operator control"))
                .transpose()?
                .unwrap_or_default();
            if let Err(refusal) = control.apply(action, who, why, Utc::now()) {
                return Ok(Err(refusal));
            }
            let expect = old.map_or(Expect::Absent, Expect::Body);
            if self
                .put(
                    rollout_key(model, version),
                    "control".into(),
                    json_attr(&control)?,
                    expect,
                )
                .await?
            {
                return Ok(Ok(control));
            }
        }
        Err(RegistryError::Unavailable(format!(
            "operator control of {model}/{version}: too many concurrent updates"
        )))
    }

    /// Records a region ready (or failed) once; the first verdict stands.
    pub async fn set_readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
        readiness: &Readiness,
    ) -> Result<Readiness, RegistryError> {
        let created = self
            .put(
                rollout_key(model, version),
                format!("ready#{region}"),
                json_attr(readiness)?,
                Expect::Absent,
            )
            .await?;
        if created {
            return Ok(readiness.clone());
        }
        Ok(self
            .readiness(model, version, region)
            .await?
            .unwrap_or_else(|| readiness.clone()))
    }

    pub async fn readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<Option<Readiness>, RegistryError> {
        self.get(rollout_key(model, version), format!("ready#{region}"))
            .await?
            .map(|i| from_item(&i, "readiness"))
            .transpose()
    }

    /// Clears a failed verdict so that a fast copy can be verified afresh.
    pub async fn reset_readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(rollout_key(model, version)))
            .key("sk", s(format!("ready#{region}")))
            .send()
            .await
            .map_err(|e| dynamodb_error("clearing readiness", e))?;
        Ok(())
    }

    pub async fn store_token(
        &self,
        model: &str,
        version: &str,
        region: &str,
        token: &str,
    ) -> Result<(), RegistryError> {
        self.put(
            rollout_key(model, version),
            format!("token#{region}"),
            s(token),
            Expect::Anything,
        )
        .await?;
        Ok(())
    }

    /// Stores the token of the rollout task waiting for `endpoint`'s update in `region`, in
    /// that region's replica, where its deploy-watch function reads it; each wait replaces
    /// the last.
    pub async fn store_deploy_wait(
        &self,
        endpoint: &str,
        region: &str,
        token: &str,
    ) -> Result<(), RegistryError> {
        self.put(
            format!("deploy-wait#{endpoint}"),
            region.to_owned(),
            s(token),
            Expect::Anything,
        )
        .await?;
        Ok(())
    }

    /// The token [`Registry::store_deploy_wait`] stored last, if any.
    pub async fn deploy_wait(
        &self,
        endpoint: &str,
        region: &str,
    ) -> Result<Option<String>, RegistryError> {
        Ok(self
            .get(format!("deploy-wait#{endpoint}"), region.to_owned())
            .await?
            .and_then(|i| i.get("body").and_then(|b| b.as_s().ok()).cloned()))
    }

    pub async fn token(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<Option<String>, RegistryError> {
        Ok(self
            .get(rollout_key(model, version), format!("token#{region}"))
            .await?
            .and_then(|i| i.get("body").and_then(|b| b.as_s().ok()).cloned()))
    }
}

/// The condition of a registry write.
enum Expect {
    Absent,
    Body(AttributeValue),
    Anything,
}

/// The registry's state for every model, as one read of the region's replica has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryView {
    pub active: BTreeMap<String, ActivePointer>,
    /// The fleet's rollout lock (one for every model: they share the endpoints).
    pub lock: RolloutLock,
}

impl RegistryView {
    /// The model whose version was committed last: the fleet's endpoints serve one model,
    /// and each commit moved every region to it. Ties (never in practice) go to the
    /// model name, so every region picks the same.
    pub fn latest_active(&self) -> Option<(&str, &ActivePointer)> {
        self.active
            .iter()
            .max_by_key(|(model, pointer)| (pointer.since, model.as_str()))
            .map(|(model, pointer)| (model.as_str(), pointer))
    }

    /// The rollout in progress (the holder of the fleet's lock), if any.
    pub fn rolling_out(&self) -> Option<(&str, &str)> {
        self.lock
            .holder
            .as_ref()
            .map(|h| (h.model.as_str(), h.version.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_moves_only_from_the_expected_version() {
        let now = Utc::now();
        let v1 = match move_pointer(None, "1", "d1", None, now) {
            PointerMove::To(pointer) => pointer,
            other => panic!("the first commit moves: {other:?}"),
        };
        assert_eq!(v1.previous, None);
        assert_eq!(
            move_pointer(Some(&v1), "1", "d1", None, now),
            PointerMove::AlreadyThere,
            "a retried commit"
        );
        assert_eq!(
            move_pointer(Some(&v1), "2", "d2", None, now),
            PointerMove::Refused,
            "another commit won"
        );
        assert!(matches!(
            move_pointer(Some(&v1), "2", "d2", Some("1"), now),
            PointerMove::To(p) if p.version == "2" && p.previous.as_deref() == Some("1")
        ));
        assert_eq!(
            move_pointer(Some(&v1), "1", "other", Some("1"), now),
            PointerMove::To(ActivePointer {
                version: "1".into(),
                digest: "other".into(),
                previous: Some("1".into()),
                since: now,
            }),
            "the same version with another digest is not already there"
        );
    }

    #[test]
    fn the_version_item_of_the_largest_manifest_fits_a_dynamodb_item() {
        let manifest = crate::manifest::tests::largest_manifest();
        let manifest_bytes = manifest.to_json_pretty().len();
        assert!(manifest_bytes > 9_000_000, "{manifest_bytes}");
        let now = Utc::now();
        let progress = RegionProgress {
            replicated: Some(now),
            fast_copied: Some(now),
            deploy_started: Some(now),
            deployed: Some(now),
            verified: Some(now),
            rolled_back: Some(now),
            previous_config: Some("c".repeat(63)),
            config: Some("c".repeat(63)),
        };
        let key = crate::manifest::manifest_key(&manifest.model, &manifest.version);
        let record = VersionRecord {
            model: manifest.model.clone(),
            version: manifest.version.clone(),
            digest: manifest.canonical_digest(),
            manifest: RegisteredManifest::new(&manifest, &key, Some("v".repeat(32)), b"{}"),
            status: VersionStatus::Failed,
            phases: [
                "registered",
                "rollout_started",
                "replicated",
                "deployed",
                "failed",
            ]
            .into_iter()
            .map(|p| (p.to_owned(), now))
            .collect(),
            regions: (0..30)
                .map(|i| (format!("region-{i}"), progress.clone()))
                .collect(),
            execution: Some("e".repeat(80)),
            reason: Some(crate::bounded::text(
                &"r".repeat(100_000),
                crate::bounded::MAX_REASON_BYTES,
            )),
        };
        let body = serde_json::to_string(&record).expect("serializable");
        let size = item_bytes(&[
            ("pk", &model_key(&record.model)),
            ("sk", &format!("version#{}", record.version)),
            ("body", &body),
        ]);
        assert!(size < MAX_ITEM_BYTES, "{size} bytes");
        assert_eq!(record.manifest.files, 10_000);
    }
}
