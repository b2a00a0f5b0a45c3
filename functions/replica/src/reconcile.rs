//! The replica function's schedule: heals what a lost or dropped `Object Created` event
//! left undone. The manifest's replica can arrive before its registration has reached this
//! region's table replica (the upload function registers a version only after looking at
//! every file), and once Lambda's retries of that event are spent nothing else sweeps the
//! region before the rollout's replica timeout. While a rollout waits for this region, each
//! tick sweeps the files not yet verified (unless another sweep runs) and settles the
//! region when it can; a verdict already recorded is sent to the waiting task again, which
//! heals a lost resume.

use serde_json::{json, Value};

use meridian::manifest_store::Stored;
use meridian::rollout::RolloutError;

use crate::{bucket_of, damaged_manifest, settle, verify_region, ReplicaDeps};

/// Sweeps for the rollout holding the fleet's lock, if it waits for this region.
pub async fn reconcile(deps: &ReplicaDeps) -> Result<Value, RolloutError> {
    let (lock, _) = deps.registry.lock().await?;
    let Some(holder) = lock.holder.filter(|h| h.repair.is_none()) else {
        return Ok(json!({ "region": deps.region, "idle": "no rollout holds the lock" }));
    };
    let Some(record) = deps
        .registry
        .version(&holder.model, &holder.version)
        .await?
    else {
        return Ok(json!({
            "region": deps.region,
            "waiting": format!("{}/{} is not registered in this region yet", holder.model, holder.version),
        }));
    };
    let bucket = bucket_of(deps)?;
    match deps.manifest(&record, &bucket).await? {
        Ok(manifest) => verify_region(deps, &manifest, &bucket, None).await,
        Err(Stored::Other(detail)) => {
            let verdict = damaged_manifest(deps, &detail);
            settle(deps, &holder.model, &holder.version, &verdict).await
        }
        Err(_) => Ok(json!({
            "region": deps.region,
            "waiting": format!("the manifest of {}/{} is not readable in {bucket} yet", holder.model, holder.version),
        })),
    }
}
