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
use meridian::registry_store::UploadRegistry;
use meridian::rollout::RolloutError;
use meridian::rollout_end;
use meridian::rollout_executions::{RolloutExecutions, SfnExecutions};
use serde_json::{json, Value};

pub mod objects;
#[cfg(test)]
mod tests;

use objects::{S3Objects, UploadedObjects};

/// What the handler needs: the registry through the primary region's replica, the
/// rollout state machine's executions, and the primary bucket.
pub struct UploadDeps<R = Registry, X = SfnExecutions, O = S3Objects> {
    pub fleet: Fleet,
    pub registry: R,
    pub executions: X,
    pub objects: O,
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
            executions: SfnExecutions {
                sfn: aws_sdk_sfn::Client::new(&config),
                state_machine_arn,
            },
            objects: S3Objects {
                s3: clients.s3(&fleet.primary_region).await,
                bucket: fleet.primary_bucket.clone(),
            },
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

impl<R, X, O> Handler for UploadDeps<R, X, O>
where
    R: UploadRegistry,
    X: RolloutExecutions,
    O: UploadedObjects,
{
    type Event = Event;
    type Error = RolloutError;
    const EVENT: &'static str = "an S3 Object Created EventBridge event";

    async fn handle(&self, event: Event) -> Outcome<RolloutError> {
        handle(self, event).await.into()
    }
}

/// Handles one `Object Created` event of the primary bucket.
async fn handle<R: UploadRegistry, X: RolloutExecutions, O: UploadedObjects>(
    deps: &UploadDeps<R, X, O>,
    event: Event,
) -> Result<Value, RolloutError> {
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
    let (bytes, version_id) = deps.objects.manifest(key).await?;
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
        let healed =
            rollout_end::heal_ended_holder(&deps.registry, &deps.executions, &deps.fleet, &lock)
                .await?;
        if healed.is_some() {
            lock = deps.registry.lock().await?;
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
    let execution =
        rollout_end::start(&deps.registry, &deps.executions, &deps.fleet, &record).await?;
    Ok(
        json!({ "model": model, "version": version, "status": "rolling_out", "execution": execution }),
    )
}

/// Every file of the manifest is in the primary bucket with its stated size.
async fn check_files(
    deps: &UploadDeps<impl UploadRegistry, impl RolloutExecutions, impl UploadedObjects>,
    manifest: &Manifest,
) -> Result<Result<(), String>, RolloutError> {
    let bucket = deps.fleet.primary_bucket.as_str();
    let objects = &deps.objects;
    let lookups: Vec<_> = manifest
        .files
        .iter()
        .map(|file| async move {
            let key = manifest.object_key(file);
            Ok::<_, RolloutError>(match objects.size(&key).await? {
                Some(size) if size == file.size => None,
                Some(size) => Some(format!(
                    "{}: size {size} in S3, {} in the manifest",
                    file.path, file.size
                )),
                None => Some(format!("{}: missing from s3://{bucket}/{key}", file.path)),
            })
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
