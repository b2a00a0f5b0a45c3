//! The replica handler, in every region: each object created in the regional bucket is
//! checked against the registered manifest — by `HeadObject` alone when the manifest
//! records the file's CRC64NVME and S3 reports the replica's full-object CRC64NVME, else by
//! size and a streamed SHA-256, at most [`ReplicaDeps::hash_budget`] bytes per invocation
//! (`meridian::replica_check`) — the check is recorded (`meridian::replica_record`), and
//! once the region holds every file verified (or one file failed) the region's verdict is
//! recorded and the waiting rollout task is resumed. The file list
//! comes from the version's `manifest.json` in this region's own bucket (the registry
//! keeps only its digest and summary), used once its digest is the registered one.

use std::sync::{Arc, Mutex};

mod reconcile;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use chrono::Utc;
use futures::stream::{self, StreamExt};
use meridian::aws::ClientFactory;
use meridian::events::ObjectCreated;
use meridian::executions::resume;
use meridian::fleet::Fleet;
use meridian::function::{Handler, Outcome};
use meridian::manifest::{FileEntry, Manifest, MANIFEST_FILE};
use meridian::manifest_store::{self, Stored};
use meridian::registry::{FileCheck, Readiness, Registry, VersionRecord};
use meridian::replica_check::{self, ByMetadata, ReplicaHead};
use meridian::replica_record::Verification;
use meridian::rollout::{aws_error, retryable, RolloutError};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the handler needs, for the region it runs in.
pub struct ReplicaDeps {
    pub fleet: Fleet,
    pub region: String,
    /// The registry through this region's replica.
    pub registry: Registry,
    /// S3 in this region.
    pub s3: aws_sdk_s3::Client,
    /// Step Functions in the control (primary) region.
    pub sfn: aws_sdk_sfn::Client,
    /// The last registered manifest read, by digest: a warm function reads and parses a
    /// 10,000-file manifest once, not once per replica event.
    manifest: Mutex<Option<(String, Arc<Manifest>)>>,
    /// Most bytes one invocation reads and hashes for the manifest's arrival (files without
    /// a full-object checksum); the rest is hashed by the event's retry.
    pub hash_budget: u64,
}

impl ReplicaDeps {
    /// The clients of the replica function in `region` (Lambda and the local cloud alike).
    pub async fn new(clients: &ClientFactory, fleet: Fleet, region: String) -> Self {
        Self {
            registry: Registry {
                client: aws_sdk_dynamodb::Client::new(&clients.config(&region).await),
                table: fleet.registry_table.clone(),
            },
            s3: clients.s3(&region).await,
            sfn: aws_sdk_sfn::Client::new(&clients.config(&fleet.primary_region).await),
            region,
            fleet,
            manifest: Mutex::default(),
            hash_budget: replica_check::DEFAULT_HASH_BUDGET_BYTES,
        }
    }

    /// The registered manifest of `record`, from this region's bucket; or what the bucket
    /// holds instead.
    pub(crate) async fn manifest(
        &self,
        record: &VersionRecord,
        bucket: &str,
    ) -> Result<Result<Arc<Manifest>, Stored>, RolloutError> {
        let cached = self
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|(digest, _)| *digest == record.digest);
        if let Some((_, manifest)) = cached {
            return Ok(Ok(manifest));
        }
        let stored =
            manifest_store::read(&self.s3, bucket, &record.manifest, &record.digest, false).await?;
        let Stored::Registered(manifest, _) = stored else {
            return Ok(Err(stored));
        };
        *self.manifest.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((record.digest.clone(), manifest.clone()));
        Ok(Ok(manifest))
    }
}

/// Replicas looked at (or read and hashed) at once when the manifest's arrival checks
/// every file.
const CHECK_CONCURRENCY: usize = 8;

/// What this function's rules deliver: S3's `Object Created` of the regional bucket, or
/// the reconcile schedule's event ([`reconcile`]).
#[derive(Debug)]
pub enum Event {
    ObjectCreated(EventBridgeEvent<ObjectCreated>),
    Scheduled(EventBridgeEvent<Value>),
}

/// EventBridge's `detail-type` of a scheduled rule's event.
const SCHEDULED_EVENT: &str = "Scheduled Event";

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.get("detail-type").and_then(Value::as_str) == Some(SCHEDULED_EVENT) {
            serde_json::from_value(value).map(Event::Scheduled)
        } else {
            serde_json::from_value(value).map(Event::ObjectCreated)
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Handler for ReplicaDeps {
    type Event = Event;
    type Error = RolloutError;
    const EVENT: &'static str =
        "an S3 Object Created EventBridge event or the replica schedule's Scheduled Event";

    async fn handle(&self, event: Event) -> Outcome<RolloutError> {
        match event {
            Event::ObjectCreated(event) => handle(self, event).await.into(),
            Event::Scheduled(_) => reconcile::reconcile(self).await.into(),
        }
    }
}

/// Handles one `Object Created` event of the regional bucket.
async fn handle(
    deps: &ReplicaDeps,
    event: EventBridgeEvent<ObjectCreated>,
) -> Result<Value, RolloutError> {
    let bucket = event.detail.bucket.name.as_str();
    let key = event
        .detail
        .object
        .checked_key()
        .map_err(RolloutError::Invalid)?
        .to_owned();
    let spec = deps.fleet.region(&deps.region).ok_or_else(|| {
        RolloutError::Invalid(format!("region {} is not in the fleet", deps.region))
    })?;
    if bucket != spec.bucket {
        return Err(RolloutError::Invalid(format!(
            "event for bucket {bucket:?}, not {}'s bucket {}",
            deps.region, spec.bucket
        )));
    }
    let Some((model, version, path)) = split_key(&key) else {
        return Ok(json!({ "ignored": key }));
    };
    let Some(record) = deps.registry.version(&model, &version).await? else {
        if path == MANIFEST_FILE {
            return Err(RolloutError::Retryable(format!(
                "{model}/{version} is not registered (yet) in {}; retry",
                deps.region
            )));
        }
        // Files arrive before their manifest; the manifest's own arrival checks them all.
        return Ok(json!({ "deferred": key, "why": "version not registered yet" }));
    };
    let bucket = bucket_of(deps)?;
    let manifest = match deps.manifest(&record, &bucket).await? {
        Ok(manifest) => manifest,
        Err(_) if path != MANIFEST_FILE => {
            // The registered manifest's own arrival here checks every file.
            return Ok(
                json!({ "deferred": key, "why": "the registered manifest is not in this region's bucket yet" }),
            );
        }
        Err(Stored::Other(detail)) => {
            return settle(deps, &model, &version, &damaged_manifest(deps, &detail)).await;
        }
        Err(_) => {
            return Err(RolloutError::Retryable(format!(
                "{key} is not readable in {bucket} yet; retry"
            )))
        }
    };
    let path = manifest_path(&manifest, &key, path);
    verify_region(deps, &manifest, &bucket, Some(&path)).await
}

/// The manifest's name for the event's file: its path as the event gives it, or, when
/// that names no file and the key is in S3's notification encoding (`+`, `%XX`), the
/// decoded one. Either form of the key is accepted.
fn manifest_path(manifest: &Manifest, key: &str, path: String) -> String {
    let known = |p: &str| p == MANIFEST_FILE || manifest.files.iter().any(|f| f.path == p);
    if known(&path) {
        return path;
    }
    meridian::events::decoded_key(key)
        .and_then(|decoded| split_key(&decoded))
        .map(|(_, _, decoded)| decoded)
        .filter(|decoded| known(decoded))
        .unwrap_or(path)
}

/// The verdict on a region whose `manifest.json` is not the registered one: the
/// version's own manifest is a replica like any file, and a damaged one fails the region.
fn damaged_manifest(deps: &ReplicaDeps, detail: &str) -> Readiness {
    Readiness {
        ready: false,
        reason: format!(
            "replica check failed in {}: {MANIFEST_FILE}: {}",
            deps.region,
            meridian::bounded::text(detail, meridian::bounded::MAX_REASON_BYTES)
        ),
        at: Utc::now(),
    }
}

fn bucket_of(deps: &ReplicaDeps) -> Result<String, RolloutError> {
    deps.fleet
        .region(&deps.region)
        .map(|r| r.bucket.clone())
        .ok_or_else(|| RolloutError::Invalid(format!("region {} is not in the fleet", deps.region)))
}

/// `models/<model>/<version>/<path>` → (model, version, path).
pub fn split_key(key: &str) -> Option<(String, String, String)> {
    let rest = key.strip_prefix("models/")?;
    let mut parts = rest.splitn(3, '/');
    let (model, version, path) = (parts.next()?, parts.next()?, parts.next()?);
    (!model.is_empty() && !version.is_empty() && !path.is_empty())
        .then(|| (model.to_owned(), version.to_owned(), path.to_owned()))
}

/// Checks the files `trigger` calls for (one data file; every file not yet verified for
/// the manifest or `None`), records the checks, and settles the region when it can. One
/// file's passing check reads the region's record only when it fills a chunk of the
/// verified sets (`meridian::replica_record`): only then can the region be complete. The
/// manifest's arrival (and the fast copy, which writes it again) sweeps every file not yet
/// verified and always reads the record, which heals whatever a lost event left undone.
pub async fn verify_region(
    deps: &ReplicaDeps,
    manifest: &Manifest,
    bucket: &str,
    trigger: Option<&str>,
) -> Result<Value, RolloutError> {
    let (model, version, region) = (&manifest.model, &manifest.version, &deps.region);
    let rollout = (model.as_str(), version.as_str());
    if let Some(readiness) = deps.registry.readiness(model, version, region).await? {
        // The manifest's event and the schedule's sweep resume the wait again (a lost
        // resume heals); a data file's late event does not, or a 10,000-file version's late
        // events would each call Step Functions with a spent token.
        let file_event = matches!(trigger, Some(path) if path != MANIFEST_FILE);
        if !file_event {
            notify(deps, model, version, &readiness).await?;
        }
        return Ok(json!({ "region": region, "settled": readiness }));
    }
    let total = manifest.files.len();
    match trigger {
        Some(path) if path != MANIFEST_FILE => {
            let Some(index) = manifest.files.iter().position(|f| f.path == path) else {
                return Ok(json!({ "ignored": path, "why": "not a file of the manifest" }));
            };
            let file = &manifest.files[index];
            match check_file(deps, manifest, bucket, file).await? {
                None => return Ok(json!({ "region": region, "waiting_for": path })),
                Some(Found::Verified(how)) => {
                    let filled = deps
                        .registry
                        .record_verified(rollout, region, &[index], how, total)
                        .await?;
                    if !filled {
                        return Ok(json!({ "region": region, "verified": path }));
                    }
                }
                Some(Found::Failed(check)) => {
                    deps.registry
                        .record_failed(rollout, region, index, &check)
                        .await?;
                }
            }
        }
        _ => {
            // One sweep at a time per region and version (the manifest's event, the fast
            // copy's rewrite of it, the schedule's ticks): two would look at and hash the
            // same files side by side. A sweep already running covers this one, and each
            // file arriving after it has its own event.
            let now = Utc::now();
            if !deps
                .registry
                .claim_sweep(rollout, region, now, SWEEP_LEASE)
                .await?
            {
                return Ok(json!({ "region": region, "skipped": "another sweep runs" }));
            }
            let swept = sweep(deps, manifest, bucket).await;
            deps.registry.release_sweep(rollout, region).await?;
            swept?;
        }
    }
    let checks = deps.registry.region_checks(rollout, region).await?;
    let failed: Vec<String> = checks
        .failures()
        .iter()
        .map(|c| format!("{}: {}", c.path, c.detail))
        .collect();
    let verdict = if !failed.is_empty() {
        Readiness {
            ready: false,
            reason: format!(
                "replica check failed in {region} ({} of {total} files): {}",
                failed.len(),
                meridian::bounded::list(&failed, meridian::bounded::MAX_REASON_BYTES - 100)
            ),
            at: Utc::now(),
        }
    } else if checks.complete(total) {
        Readiness {
            ready: true,
            reason: format!("{total} files verified in {region}"),
            at: Utc::now(),
        }
    } else {
        let verified = checks.verified().len();
        return Ok(json!({ "region": region, "verified": verified, "of": total }));
    };
    settle(deps, model, version, &verdict).await
}

/// How long a sweep's claim lasts: Lambda's longest run (the function's timeout), so a
/// sweep that died mid-way holds the next ones back no longer than that.
const SWEEP_LEASE: std::time::Duration = std::time::Duration::from_secs(900);

/// Files a sweep looks at before recording what it found: an invocation that ends early
/// keeps the batches recorded so far.
const SWEEP_BATCH: usize = 1_000;

/// Checks (and records) every file of the manifest not yet verified in the region: all of
/// them by their metadata first (no byte read), a batch at a time, then those their
/// metadata cannot tell by hashing, at most `deps.hash_budget` bytes in this invocation.
/// A file refused by its metadata ends the sweep (the region fails; nothing more is read).
/// When files are left to hash, a retryable error says so: the event's retry (Lambda
/// retries an asynchronous invocation twice) continues from the checks recorded so far,
/// and the fast copy after the replica timeout re-drives whatever is left (each copied
/// file's own event checks it).
async fn sweep(deps: &ReplicaDeps, manifest: &Manifest, bucket: &str) -> Result<(), RolloutError> {
    let (model, version, region) = (&manifest.model, &manifest.version, &deps.region);
    let rollout = (model.as_str(), version.as_str());
    let recorded = deps.registry.region_checks(rollout, region).await?;
    let unverified: Vec<usize> = (0..manifest.files.len())
        .filter(|i| !recorded.is_verified(*i))
        .collect();
    let mut to_hash = Vec::new();
    for batch in unverified.chunks(SWEEP_BATCH) {
        let looks = batch.iter().copied().map(|index| async move {
            (
                index,
                look(deps, manifest, bucket, &manifest.files[index]).await,
            )
        });
        let looked: Vec<(usize, Result<Looked, RolloutError>)> = stream::iter(looks)
            .buffered(CHECK_CONCURRENCY)
            .collect()
            .await;
        let mut found = Vec::new();
        let mut error = None;
        for (index, looked) in looked {
            match looked {
                Ok(Looked::Missing) => {}
                Ok(Looked::Verified) => {
                    found.push((index, Found::Verified(Verification::Checksum)))
                }
                Ok(Looked::Refused(check)) => found.push((index, Found::Failed(check))),
                Ok(Looked::NeedsHash) => to_hash.push(index),
                Err(failure) => error = error.or(Some(failure)),
            }
        }
        let damaged = record(deps, manifest, found).await?;
        if let Some(error) = error {
            return Err(error);
        }
        if damaged {
            return Ok(());
        }
    }
    let sizes: Vec<u64> = to_hash.iter().map(|&i| manifest.files[i].size).collect();
    let now = replica_check::hash_now(&sizes, deps.hash_budget);
    let hashing = to_hash[..now].iter().copied().map(|index| async move {
        (
            index,
            hash_replica(deps, manifest, bucket, &manifest.files[index]).await,
        )
    });
    let hashed: Vec<(usize, Result<Option<Found>, RolloutError>)> = stream::iter(hashing)
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect()
        .await;
    let mut found = Vec::new();
    let mut error = None;
    for (index, hashed) in hashed {
        match hashed {
            Ok(Some(checked)) => found.push((index, checked)),
            Ok(None) => {}
            Err(failure) => error = error.or(Some(failure)),
        }
    }
    let damaged = record(deps, manifest, found).await?;
    if let Some(error) = error {
        return Err(error);
    }
    let left = &sizes[now..];
    if left.is_empty() || damaged {
        // Done, or a damaged replica fails the region now, whatever is left.
        return Ok(());
    }
    Err(RolloutError::Retryable(format!(
        "{model}/{version} in {region}: hashed {} files ({} bytes); {} files ({} bytes) \
         without a full-object checksum are left to hash (at most {} bytes per invocation); \
         the retry continues",
        now,
        sizes[..now].iter().sum::<u64>(),
        left.len(),
        left.iter().sum::<u64>(),
        deps.hash_budget
    )))
}

/// Records what a sweep found, even when some of its checks failed to run (what was found
/// is kept for the next sweep); true when a replica is damaged.
async fn record(
    deps: &ReplicaDeps,
    manifest: &Manifest,
    found: Vec<(usize, Found)>,
) -> Result<bool, RolloutError> {
    let rollout = (manifest.model.as_str(), manifest.version.as_str());
    let (region, total) = (&deps.region, manifest.files.len());
    let (mut by_checksum, mut by_hash, mut damaged) = (Vec::new(), Vec::new(), Vec::new());
    for (index, checked) in found {
        match checked {
            Found::Verified(Verification::Checksum) => by_checksum.push(index),
            Found::Verified(Verification::Hash) => by_hash.push(index),
            Found::Failed(check) => damaged.push((index, check)),
        }
    }
    deps.registry
        .record_verified(rollout, region, &by_checksum, Verification::Checksum, total)
        .await?;
    deps.registry
        .record_verified(rollout, region, &by_hash, Verification::Hash, total)
        .await?;
    for (index, check) in &damaged {
        deps.registry
            .record_failed(rollout, region, *index, check)
            .await?;
    }
    Ok(!damaged.is_empty())
}

/// Records the region's verdict (the first one stands) and resumes the waiting task.
pub(crate) async fn settle(
    deps: &ReplicaDeps,
    model: &str,
    version: &str,
    verdict: &Readiness,
) -> Result<Value, RolloutError> {
    let region = &deps.region;
    let settled = deps
        .registry
        .set_readiness(model, version, region, verdict)
        .await?;
    tracing::info!(%region, %model, %version, ready = settled.ready, reason = %settled.reason, "region settled");
    notify(deps, model, version, &settled).await?;
    Ok(json!({ "region": region, "settled": settled }))
}

/// What checking one replica found.
#[derive(Debug)]
pub enum Found {
    Verified(Verification),
    Failed(FileCheck),
}

/// What a replica's metadata says.
enum Looked {
    /// Not in the bucket (yet).
    Missing,
    /// Its size and full-object CRC64NVME match the manifest.
    Verified,
    /// Its metadata contradicts the manifest.
    Refused(FileCheck),
    /// Only reading and hashing it can tell.
    NeedsHash,
}

/// Judges one replica by `HeadObject` (with its checksums): no byte of it is read.
async fn look(
    deps: &ReplicaDeps,
    manifest: &Manifest,
    bucket: &str,
    file: &FileEntry,
) -> Result<Looked, RolloutError> {
    let head = match deps
        .s3
        .head_object()
        .bucket(bucket)
        .key(manifest.object_key(file))
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(head) => head,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
            return Ok(Looked::Missing)
        }
        Err(error) => return Err(aws_error("reading a replica's metadata", error)),
    };
    let full_object = head.checksum_type() == Some(&ChecksumType::FullObject);
    let head = ReplicaHead {
        size: head.content_length().unwrap_or(0),
        full_object_crc64nvme: head
            .checksum_crc64_nvme()
            .filter(|_| full_object)
            .map(str::to_owned),
    };
    Ok(match replica_check::by_metadata(file, &head) {
        ByMetadata::Verified(_) => Looked::Verified,
        ByMetadata::Refused(detail) => Looked::Refused(FileCheck {
            path: file.path.clone(),
            ok: false,
            detail,
            at: Utc::now(),
        }),
        ByMetadata::NeedsHash => Looked::NeedsHash,
    })
}

/// Compares one replica with its manifest entry, by its metadata when that tells, else by
/// reading it; `None` when it has not arrived yet. (Public for the verification benchmark,
/// `./scripts/bench verification`.)
pub async fn check_file(
    deps: &ReplicaDeps,
    manifest: &Manifest,
    bucket: &str,
    file: &FileEntry,
) -> Result<Option<Found>, RolloutError> {
    match look(deps, manifest, bucket, file).await? {
        Looked::Missing => Ok(None),
        Looked::Verified => Ok(Some(Found::Verified(Verification::Checksum))),
        Looked::Refused(check) => Ok(Some(Found::Failed(check))),
        Looked::NeedsHash => hash_replica(deps, manifest, bucket, file).await,
    }
}

/// Reads one replica and compares its size and SHA-256 with its manifest entry; `None`
/// when it has not arrived yet.
async fn hash_replica(
    deps: &ReplicaDeps,
    manifest: &Manifest,
    bucket: &str,
    file: &FileEntry,
) -> Result<Option<Found>, RolloutError> {
    let key = manifest.object_key(file);
    // The SHA-256 below is the check; S3's own response checksums are composite for
    // multipart objects and need not be validated again here.
    let no_validation = aws_sdk_s3::config::Builder::default()
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
    let object = match deps
        .s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .customize()
        .config_override(no_validation)
        .send()
        .await
    {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok(None)
        }
        Err(error) => return Err(aws_error("reading a replica", error)),
    };
    let failed = |detail: String| {
        Some(Found::Failed(FileCheck {
            path: file.path.clone(),
            ok: false,
            detail,
            at: Utc::now(),
        }))
    };
    let size = object.content_length().unwrap_or(0);
    if size != file.size as i64 {
        return Ok(failed(format!("size {size}, manifest says {}", file.size)));
    }
    let mut body = object.body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| retryable("reading a replica", e))?
    {
        hasher.update(&chunk);
    }
    let digest = hex::encode(hasher.finalize());
    Ok(if digest == file.sha256 {
        Some(Found::Verified(Verification::Hash))
    } else {
        failed(format!("SHA-256 {digest}, manifest says {}", file.sha256))
    })
}

/// Resumes the waiting rollout task of this region, if its token is stored yet.
pub async fn notify(
    deps: &ReplicaDeps,
    model: &str,
    version: &str,
    readiness: &Readiness,
) -> Result<(), RolloutError> {
    let Some(token) = deps.registry.token(model, version, &deps.region).await? else {
        return Ok(());
    };
    resume(&deps.sfn, &token, &deps.region, readiness).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_model_version_and_path() {
        assert_eq!(
            split_key("models/llama/1/weights/a.bin"),
            Some(("llama".into(), "1".into(), "weights/a.bin".into()))
        );
        assert_eq!(
            split_key("models/llama/1/manifest.json"),
            Some(("llama".into(), "1".into(), "manifest.json".into()))
        );
        assert_eq!(split_key("models/llama/1/"), None);
        assert_eq!(split_key("other/llama/1/a"), None);
    }

    #[test]
    fn a_key_in_notification_encoding_finds_its_file() {
        let manifest = meridian::manifest::parse(
            serde_json::json!({
                "format": 1, "model": "llama", "version": "1",
                "files": [
                    { "path": "weights/my shard ü.bin", "size": 1, "sha256": "a".repeat(64) },
                    { "path": "weights/a+b.bin", "size": 1, "sha256": "b".repeat(64) }
                ],
                "serving": {
                    "image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:2.4",
                    "instance_type": "ml.g5.2xlarge", "instance_count": 1,
                    "variant_name": "primary", "environment": {}
                }
            })
            .to_string()
            .as_bytes(),
        )
        .expect("valid manifest");
        let path_of = |key: &str| {
            let (_, _, path) = split_key(key).expect("a model key");
            manifest_path(&manifest, key, path)
        };
        assert_eq!(
            path_of("models/llama/1/weights/my+shard+%C3%BC.bin"),
            "weights/my shard ü.bin",
            "S3's notification encoding"
        );
        assert_eq!(
            path_of("models/llama/1/weights/my shard ü.bin"),
            "weights/my shard ü.bin",
            "the key as stored"
        );
        assert_eq!(
            path_of("models/llama/1/weights/a+b.bin"),
            "weights/a+b.bin",
            "a literal + that names a file is kept"
        );
        assert_eq!(path_of("models/llama/1/other.bin"), "other.bin");
    }
}
