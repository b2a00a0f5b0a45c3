//! The upload handler: a manifest's arrival in the primary bucket is the commit signal of
//! a model version. Validate it, check every file is there with its stated size, register
//! the version (immutable), and start its rollout under a deterministic execution name —
//! or queue it behind the rollout (of any model) holding the fleet's endpoints.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use meridian::aws::ClientFactory;
use meridian::events::ObjectCreated;
use meridian::fleet::Fleet;
use meridian::function::{Handler, Outcome};
use meridian::manifest::{self, Manifest};
use meridian::registry::{RegisteredManifest, Registration, Registry, VersionStatus};
use meridian::rollout::{aws_error, retryable, RolloutError};
use meridian::rollout_end;
use serde_json::{json, Value};

/// What the handler needs.
pub struct UploadDeps {
    pub fleet: Fleet,
    /// The registry through the primary region's replica.
    pub registry: Registry,
    /// S3 in the primary region.
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

impl UploadDeps {
    /// The clients of the upload function, all in the primary region.
    pub async fn new(clients: &ClientFactory, fleet: Fleet, state_machine_arn: String) -> Self {
        let config = clients.config(&fleet.primary_region).await;
        Self {
            registry: Registry {
                client: aws_sdk_dynamodb::Client::new(&config),
                table: fleet.registry_table.clone(),
            },
            s3: clients.s3(&fleet.primary_region).await,
            sfn: aws_sdk_sfn::Client::new(&config),
            state_machine_arn,
            fleet,
        }
    }
}

/// The most bytes of a manifest's problems the function returns (a manifest of 10,000 bad
/// entries names each); the whole list is in the log.
const MAX_VERDICT_BYTES: usize = 64 * 1024;

/// Files checked for presence at once.
const HEAD_CONCURRENCY: usize = 16;

/// The event this function's EventBridge rule delivers: S3's `Object Created` of
/// the primary bucket.
pub type Event = EventBridgeEvent<ObjectCreated>;

impl Handler for UploadDeps {
    type Event = Event;
    type Error = RolloutError;
    const EVENT: &'static str = "an S3 Object Created EventBridge event";

    async fn handle(&self, event: Event) -> Outcome<RolloutError> {
        handle(self, event).await.into()
    }
}

/// Handles one `Object Created` event of the primary bucket.
async fn handle(deps: &UploadDeps, event: Event) -> Result<Value, RolloutError> {
    let bucket = event.detail.bucket.name.as_str();
    let key = event
        .detail
        .object
        .checked_key()
        .map_err(RolloutError::Invalid)?;
    if bucket != deps.fleet.primary_bucket {
        return Err(RolloutError::Invalid(format!(
            "event for bucket {bucket:?}, not the primary bucket {}",
            deps.fleet.primary_bucket
        )));
    }
    let Some((model, version)) = manifest::parse_manifest_key(key) else {
        return Ok(json!({ "ignored": key, "why": "not a manifest" }));
    };
    let (bytes, version_id) = read_manifest(deps, key).await?;
    let manifest = match manifest::parse(&bytes).and_then(|m| m.check_key(key).map(|()| m)) {
        Ok(manifest) => manifest,
        Err(error) => {
            tracing::warn!(%key, %error, "manifest rejected");
            let reason = meridian::bounded::text(&error.to_string(), MAX_VERDICT_BYTES);
            return Ok(
                json!({ "rejected": key, "model": model, "version": version, "reason": reason }),
            );
        }
    };
    let digest = manifest.canonical_digest();
    if let Err(reason) = check_files(deps, &manifest).await? {
        deps.registry
            .record_rejection(&manifest, &digest, &reason, Utc::now())
            .await?;
        tracing::warn!(%key, %reason, "manifest rejected");
        return Ok(json!({ "rejected": key, "reason": reason }));
    }
    let record = match deps
        .registry
        .register(
            &manifest,
            RegisteredManifest::new(&manifest, key, version_id, &bytes),
            &digest,
            VersionStatus::Queued,
            Utc::now(),
        )
        .await?
    {
        Registration::New(record) | Registration::Same(record) => record,
        Registration::Conflict(existing) => {
            let reason = format!(
                "version {version} of {model} is registered with manifest {}; versions are immutable, this manifest ({digest}) is refused",
                existing.digest
            );
            deps.registry
                .record_rejection(&manifest, &digest, &reason, Utc::now())
                .await?;
            tracing::warn!(%key, %reason, "manifest rejected");
            return Ok(json!({ "rejected": key, "reason": reason }));
        }
    };
    if matches!(record.status, VersionStatus::Active | VersionStatus::Failed) {
        return Ok(
            json!({ "model": model, "version": version, "status": record.status, "note": "already rolled out; nothing to do" }),
        );
    }
    let mut lock = deps
        .registry
        .acquire_or_queue(&model, &version, Utc::now())
        .await?;
    if !lock.held_by(&model, &version) {
        let healed = rollout_end::heal_ended_holder(
            &deps.registry,
            &deps.sfn,
            &deps.state_machine_arn,
            &deps.fleet,
            &lock,
        )
        .await?;
        if healed.is_some() {
            lock = deps.registry.lock().await?.0;
        }
        if lock.held_by(&model, &version) {
            return Ok(
                json!({ "model": model, "version": version, "status": "rolling_out", "note": "the previous holder's execution had ended; its lock was released" }),
            );
        }
        let holder = lock
            .holder
            .map(|h| format!("{}/{}", h.model, h.version))
            .unwrap_or_default();
        deps.registry
            .update_version(&model, &version, |r| {
                r.status = VersionStatus::Queued;
                r.reason = Some(format!("queued behind the rollout of {holder}"));
            })
            .await?;
        return Ok(
            json!({ "model": model, "version": version, "status": "queued", "behind": holder }),
        );
    }
    let execution = rollout_end::start(
        &deps.registry,
        &deps.sfn,
        &deps.state_machine_arn,
        &deps.fleet,
        &record,
    )
    .await?;
    Ok(
        json!({ "model": model, "version": version, "status": "rolling_out", "execution": execution }),
    )
}

/// The manifest's bytes and its S3 version id (what the registry records as its location).
async fn read_manifest(
    deps: &UploadDeps,
    key: &str,
) -> Result<(Vec<u8>, Option<String>), RolloutError> {
    let object = deps
        .s3
        .get_object()
        .bucket(&deps.fleet.primary_bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| aws_error("reading the manifest", e))?;
    let version_id = object.version_id().map(str::to_owned);
    if object.content_length().unwrap_or(0) > manifest::MAX_MANIFEST_BYTES as i64 {
        return Ok((vec![0; manifest::MAX_MANIFEST_BYTES + 1], version_id));
    }
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| retryable("reading the manifest", e))?;
    Ok((bytes.to_vec(), version_id))
}

/// Every file of the manifest is in the primary bucket with its stated size.
async fn check_files(
    deps: &UploadDeps,
    manifest: &Manifest,
) -> Result<Result<(), String>, RolloutError> {
    let bucket = deps.fleet.primary_bucket.clone();
    let lookups: Vec<_> = manifest
        .files
        .iter()
        .map(|file| (file.path.clone(), file.size, manifest.object_key(file)))
        .map(|(path, size, key)| {
            let (s3, bucket) = (deps.s3.clone(), bucket.clone());
            async move {
                match s3.head_object().bucket(&bucket).key(&key).send().await {
                    Ok(head) if head.content_length() == Some(size as i64) => Ok(None),
                    Ok(head) => Ok(Some(format!(
                        "{path}: size {} in S3, {size} in the manifest",
                        head.content_length().unwrap_or(0)
                    ))),
                    Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                        Ok(Some(format!("{path}: missing from s3://{bucket}/{key}")))
                    }
                    Err(error) => Err(aws_error("checking the uploaded files", error)),
                }
            }
        })
        .collect();
    let found: Vec<Option<String>> = stream::iter(lookups)
        .buffer_unordered(HEAD_CONCURRENCY)
        .try_collect()
        .await?;
    let mut problems: Vec<String> = found.into_iter().flatten().collect();
    if problems.is_empty() {
        return Ok(Ok(()));
    }
    problems.sort();
    Ok(Err(format!(
        "the upload is incomplete ({} of {} files): {}",
        problems.len(),
        manifest.files.len(),
        meridian::bounded::list(&problems, meridian::bounded::MAX_REASON_BYTES - 100)
    )))
}
