//! Reading a registered version's `manifest.json` back from a bucket. The registry keeps
//! only the manifest's location, digest and summary ([`RegisteredManifest`]); the file list
//! is read here, from the caller's own region's bucket (a data-plane read in that region),
//! and used only if its canonical digest is the registered one.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::manifest::{self, Manifest};
use crate::registry::RegisteredManifest;
use crate::rollout::{aws_error, retryable, RolloutError};

/// What a bucket holds at a registered manifest's key.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// The registered manifest: its bytes and its parsed content.
    Registered(Arc<Manifest>, Arc<[u8]>),
    /// Nothing yet (its replica has not arrived).
    Missing,
    /// Other bytes (a damaged replica, or a manifest put over the registered one and
    /// refused): what differs, as a replica check says it.
    Other(String),
}

/// Reads `registered`'s manifest from `bucket`: at its S3 version when `at_version` (the
/// primary bucket, where the version id was recorded), else the current object (a regional
/// bucket: replication keeps version ids on AWS, but not in the local cloud).
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    registered: &RegisteredManifest,
    digest: &str,
    at_version: bool,
) -> Result<Stored, RolloutError> {
    let version_id = registered.version_id.as_deref().filter(|_| at_version);
    let object = match s3
        .get_object()
        .bucket(bucket)
        .key(&registered.key)
        .set_version_id(version_id.map(str::to_owned))
        .send()
        .await
    {
        Ok(object) => object,
        Err(error)
            if error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 404) =>
        {
            return Ok(Stored::Missing)
        }
        Err(error) => return Err(aws_error("reading the registered manifest", error)),
    };
    let size = object.content_length().unwrap_or(0);
    if size != registered.size as i64 {
        return Ok(Stored::Other(format!(
            "size {size}, registered {}",
            registered.size
        )));
    }
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| retryable("reading the registered manifest", e))?;
    Ok(identify(&bytes.into_bytes(), registered, digest))
}

/// Whether `bytes` are the manifest registered as `registered` with `digest`: the same size
/// and SHA-256 as the object registered, and its canonical digest. Pure.
pub fn identify(bytes: &[u8], registered: &RegisteredManifest, digest: &str) -> Stored {
    if bytes.len() as u64 != registered.size {
        return Stored::Other(format!(
            "size {}, registered {}",
            bytes.len(),
            registered.size
        ));
    }
    let sha256 = hex::encode(Sha256::digest(bytes));
    if sha256 != registered.sha256 {
        return Stored::Other(format!(
            "SHA-256 {sha256}, registered {}",
            registered.sha256
        ));
    }
    match manifest::parse(bytes) {
        Ok(manifest) if manifest.canonical_digest() == digest => {
            Stored::Registered(Arc::new(manifest), Arc::from(bytes))
        }
        Ok(manifest) => Stored::Other(format!(
            "manifest {} (registered: {digest})",
            manifest.canonical_digest()
        )),
        Err(error) => Stored::Other(format!("a manifest that does not parse: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(size: u64) -> String {
        serde_json::json!({
            "format": 1, "model": "llama", "version": "1",
            "files": [{ "path": "a.bin", "size": size, "sha256": "a".repeat(64) }],
            "serving": {
                "image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:2.4",
                "instance_type": "ml.g5.2xlarge", "instance_count": 1,
                "variant_name": "primary"
            }
        })
        .to_string()
    }

    #[test]
    fn only_the_registered_manifest_is_used() {
        let bytes = manifest_json(1);
        let manifest = manifest::parse(bytes.as_bytes()).expect("valid");
        let digest = manifest.canonical_digest();
        let registered = RegisteredManifest::new(&manifest, "k", None, bytes.as_bytes());
        assert_eq!(
            identify(bytes.as_bytes(), &registered, &digest),
            Stored::Registered(Arc::new(manifest), Arc::from(bytes.as_bytes()))
        );
        let mut damaged = bytes.clone().into_bytes();
        damaged[0] = b'|';
        assert!(matches!(
            identify(&damaged, &registered, &digest),
            Stored::Other(why) if why.starts_with("SHA-256")
        ));
        let longer = format!("{bytes} ");
        assert!(matches!(
            identify(longer.as_bytes(), &registered, &digest),
            Stored::Other(why) if why.starts_with("size")
        ));
        let other = manifest_json(2);
        let other_registered = RegisteredManifest::new(
            &manifest::parse(other.as_bytes()).expect("valid"),
            "k",
            None,
            other.as_bytes(),
        );
        assert!(matches!(
            identify(other.as_bytes(), &other_registered, &digest),
            Stored::Other(why) if why.contains(&digest)
        ));
    }
}
