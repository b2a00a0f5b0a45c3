//! The `detail` of S3's EventBridge "Object Created" event, typed from S3's documentation
//! (`aws_lambda_events` types only the S3 notification shape, not EventBridge's), so the
//! upload and replica functions reject events without a bucket or key instead of reading
//! empty strings.

use serde::{Deserialize, Serialize};

/// `detail` of an `aws.s3` / `Object Created` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectCreated {
    pub bucket: EventBucket,
    pub object: EventObject,
    /// `PutObject`, `CopyObject`, `CompleteMultipartUpload`, ... (absent for replicas).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `detail.bucket`: the bucket the object was created in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBucket {
    pub name: String,
}

/// `detail.object`: the key is required; the rest is informational (a replica's
/// `size` and `etag` are checked against the manifest by reading the object itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EventObject {
    pub key: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub sequencer: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_detail_without_a_key_is_refused() {
        let detail = json!({ "version": "0", "bucket": { "name": "b" }, "object": { "size": 1 } });
        let error = serde_json::from_value::<ObjectCreated>(detail)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("missing field `key`"), "{error}");
    }
}
