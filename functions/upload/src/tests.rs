//! The upload handler on the in-memory registry, executions and bucket: immutable
//! registration, the lock taken or queued for, the queue served when the holder's
//! ended execution is found, and the failures the local cloud cannot produce.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use meridian::fleet::Fleet;
use meridian::function::{invoke, Outcome};
use meridian::manifest::manifest_key;
use meridian::registry::{model_key, RegistryError, VersionStatus};
use meridian::registry_memory::MemoryRegistry;
use meridian::registry_store::LockRegistry;
use meridian::rollout::{execution_name, RolloutError};
use meridian::rollout_executions::MemoryExecutions;
use meridian::NamedError;
use serde_json::{json, Value};

use crate::objects::UploadedObjects;
use crate::UploadDeps;

const STATE_MACHINE: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:meridian-demo-rollout";
const MODEL: &str = "llama";

/// The primary bucket in memory; `failing` makes every read fail.
#[derive(Clone, Default)]
struct Bucket {
    objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    failing: Arc<Mutex<bool>>,
}

impl Bucket {
    fn put(&self, key: &str, bytes: &[u8]) {
        self.objects
            .lock()
            .expect("lock")
            .insert(key.to_owned(), bytes.to_vec());
    }

    fn check(&self, what: &str) -> Result<(), RolloutError> {
        if *self.failing.lock().expect("lock") {
            return Err(RolloutError::Retryable(format!("{what}: injected")));
        }
        Ok(())
    }
}

impl UploadedObjects for Bucket {
    async fn manifest(&self, key: &str) -> Result<(Vec<u8>, Option<String>), RolloutError> {
        self.check("reading the manifest")?;
        let bytes = self.objects.lock().expect("lock").get(key).cloned();
        let bytes = bytes.ok_or_else(|| RolloutError::Rejected(format!("no object {key}")))?;
        Ok((bytes, Some("version-1".into())))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, RolloutError> {
        self.check("checking the uploaded files")?;
        let objects = self.objects.lock().expect("lock");
        Ok(objects.get(key).map(|bytes| bytes.len() as u64))
    }
}

fn deps() -> UploadDeps<MemoryRegistry, MemoryExecutions, Bucket> {
    UploadDeps {
        fleet: Fleet::from_toml_str(include_str!("../../../fleet.example.toml"))
            .expect("the example fleet is valid"),
        registry: MemoryRegistry::default(),
        executions: MemoryExecutions::new(STATE_MACHINE),
        objects: Bucket::default(),
    }
}

const CONFIG: &[u8] = b"{}\n";

/// Uploads `version`'s one file and its manifest (`image` tells manifests apart; the
/// upload checks sizes, not contents).
fn upload(deps: &UploadDeps<MemoryRegistry, MemoryExecutions, Bucket>, version: &str, image: &str) {
    let prefix = meridian::manifest::version_prefix(MODEL, version);
    deps.objects.put(&format!("{prefix}config.json"), CONFIG);
    let manifest = json!({
        "format": 1,
        "model": MODEL,
        "version": version,
        "files": [{ "path": "config.json", "size": CONFIG.len(), "sha256": "a".repeat(64) }],
        "serving": {
            "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{image}"),
            "instance_type": "ml.g5.xlarge",
            "instance_count": 2
        }
    });
    deps.objects.put(
        &manifest_key(MODEL, version),
        manifest.to_string().as_bytes(),
    );
}

/// S3's `Object Created` of `version`'s manifest in the primary bucket.
fn created(deps: &UploadDeps<MemoryRegistry, MemoryExecutions, Bucket>, version: &str) -> Value {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/events/s3-object-created.json"
    ))
    .expect("fixture");
    event["detail"]["bucket"]["name"] = json!(deps.fleet.primary_bucket);
    event["detail"]["object"]["key"] = json!(manifest_key(MODEL, version));
    event
}

async fn handle(
    deps: &UploadDeps<MemoryRegistry, MemoryExecutions, Bucket>,
    version: &str,
) -> Outcome<RolloutError> {
    invoke(deps, created(deps, version)).await
}

/// The execution the version's rollout runs as.
async fn execution_of(
    deps: &UploadDeps<MemoryRegistry, MemoryExecutions, Bucket>,
    version: &str,
) -> String {
    let record = deps
        .registry
        .version(MODEL, version)
        .await
        .expect("readable")
        .expect("registered");
    execution_name(MODEL, version, &record.digest)
}

#[tokio::test]
async fn a_new_version_takes_the_free_lock_and_a_redelivered_event_starts_nothing_more() {
    let deps = deps();
    upload(&deps, "v1", "tgi:1");
    let answer = handle(&deps, "v1").await.result.expect("started");
    assert_eq!(answer["status"], "rolling_out");
    let execution = execution_of(&deps, "v1").await;
    assert_eq!(answer["execution"], execution.as_str());
    assert_eq!(deps.executions.started(), std::slice::from_ref(&execution));
    let lock = deps.registry.lock().await.expect("readable");
    assert!(lock.held_by(MODEL, "v1"));
    assert_eq!(
        lock.holder.and_then(|h| h.execution),
        Some(execution.clone())
    );

    let items = deps.registry.items();
    let again = handle(&deps, "v1").await.result.expect("the same start");
    assert_eq!(again["status"], "rolling_out");
    assert_eq!(deps.executions.started(), [execution]);
    assert_eq!(
        deps.registry.items(),
        items,
        "a redelivered event changes nothing"
    );
}

#[tokio::test]
async fn a_registered_version_with_another_manifest_is_refused_and_changes_nothing_else() {
    let deps = deps();
    upload(&deps, "v1", "tgi:1");
    handle(&deps, "v1").await.result.expect("started");
    let before = deps.registry.items();

    upload(&deps, "v1", "tgi:2");
    let refused = handle(&deps, "v1")
        .await
        .result
        .expect("a refusal is an answer");
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("versions are immutable"), "{reason}");
    let after = deps.registry.items();
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].0, model_key(MODEL));
    assert!(added[0].1.starts_with("rejected#v1#"), "{added:?}");
    assert!(
        before.iter().all(|(k, v)| after.get(k) == Some(v)),
        "the registered version, its lock and its rollout are untouched"
    );
    assert_eq!(deps.executions.started().len(), 1);
}

#[tokio::test]
async fn a_queued_version_starts_when_the_holders_ended_execution_is_found() {
    let deps = deps();
    upload(&deps, "v1", "tgi:1");
    handle(&deps, "v1").await.result.expect("started");
    upload(&deps, "v2", "tgi:2");
    let queued = handle(&deps, "v2").await.result.expect("queued");
    assert_eq!(
        (queued["status"].as_str(), queued["behind"].as_str()),
        (Some("queued"), Some("llama/v1"))
    );
    let v2 = deps
        .registry
        .version(MODEL, "v2")
        .await
        .expect("readable")
        .expect("registered");
    assert_eq!(v2.status, VersionStatus::Queued);
    assert_eq!(deps.executions.started().len(), 1, "v2 waits");

    // v1's execution was stopped and its status event lost: the next upload finds it.
    let v1 = execution_of(&deps, "v1").await;
    deps.executions.end(&v1, "ABORTED");
    upload(&deps, "v3", "tgi:3");
    let behind = handle(&deps, "v3").await.result.expect("queued");
    assert_eq!(
        behind["behind"], "llama/v2",
        "the oldest queued version goes first"
    );
    let v1_record = deps
        .registry
        .version(MODEL, "v1")
        .await
        .expect("readable")
        .expect("registered");
    assert_eq!(v1_record.status, VersionStatus::Failed);
    let v2 = execution_of(&deps, "v2").await;
    assert_eq!(deps.executions.started(), [v1, v2]);
    let lock = deps.registry.lock().await.expect("readable");
    assert!(lock.held_by(MODEL, "v2"));
    let queue: Vec<_> = lock.queue.iter().map(|q| q.version.as_str()).collect();
    assert_eq!(queue, ["v3"]);
}

#[tokio::test]
async fn the_registry_unavailable_while_queuing_is_retryable_and_the_retry_starts_once() {
    let deps = deps();
    upload(&deps, "v1", "tgi:1");
    deps.registry
        .fail(Some((Some("acquire_or_queue"), RegistryError::Unavailable)));
    let failed = handle(&deps, "v1").await;
    let error = failed.result.expect_err("the lock cannot be read");
    assert_eq!(error.error_name(), "Meridian.Retryable");
    assert!(deps.executions.started().is_empty());
    assert_eq!(deps.registry.lock().await.expect("readable").holder, None);

    deps.registry.fail(None);
    let answer = handle(&deps, "v1").await.result.expect("started");
    assert_eq!(answer["status"], "rolling_out");
    assert_eq!(deps.executions.started(), [execution_of(&deps, "v1").await]);
}

#[tokio::test]
async fn an_incomplete_upload_is_refused_by_name_and_an_unreadable_bucket_is_retryable() {
    let deps = deps();
    upload(&deps, "v1", "tgi:1");
    let prefix = meridian::manifest::version_prefix(MODEL, "v1");
    deps.objects.put(&format!("{prefix}config.json"), b"{}");
    let refused = handle(&deps, "v1")
        .await
        .result
        .expect("a refusal is an answer");
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("config.json: size 2 in S3, 3 in the manifest"),
        "{reason}"
    );
    assert_eq!(
        deps.registry.version(MODEL, "v1").await.expect("readable"),
        None
    );
    assert_eq!(deps.registry.lock().await.expect("readable").holder, None);

    let before = deps.registry.items();
    *deps.objects.failing.lock().expect("lock") = true;
    let failed = handle(&deps, "v1").await;
    assert_eq!(
        failed.result.expect_err("S3 unavailable").error_name(),
        "Meridian.Retryable"
    );
    assert_eq!(deps.registry.items(), before);
    assert!(deps.executions.started().is_empty());
}
