//! The `detail` of S3's EventBridge "Object Created" event, typed from S3's documentation
//! (`aws_lambda_events` types only the S3 notification shape, not EventBridge's), so the
//! upload and replica functions reject events without a bucket or key instead of reading
//! empty strings.

use serde::{Deserialize, Serialize};

/// S3's longest object key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

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

impl EventObject {
    /// The event's key, refused (before any call is made with it) when S3 could not hold
    /// such a key: empty, or longer than [`MAX_KEY_BYTES`].
    pub fn checked_key(&self) -> Result<&str, String> {
        let bytes = self.key.len();
        if bytes == 0 {
            return Err("the event's object key is empty".into());
        }
        if bytes > MAX_KEY_BYTES {
            return Err(format!(
                "the event's object key is {bytes} bytes long; S3 keys are at most {MAX_KEY_BYTES} bytes"
            ));
        }
        Ok(&self.key)
    }
}

/// `key` as S3's notification format encodes it (`+` for a space, `%XX` for other bytes)
/// decoded back to the key S3 stores, when that differs from `key` and is valid UTF-8.
/// EventBridge's events carry keys as stored; a relayed notification, encoded: callers
/// that match keys against known names accept either.
pub fn decoded_key(key: &str) -> Option<String> {
    let plus_as_space = key.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()?
        .into_owned();
    (decoded != key).then_some(decoded)
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

    fn object(key: String) -> EventObject {
        EventObject {
            key,
            size: None,
            etag: None,
            version_id: None,
            sequencer: None,
        }
    }

    #[test]
    fn keys_longer_than_s3_allows_are_refused_before_any_call() {
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert_eq!(object(longest.clone()).checked_key(), Ok(longest.as_str()));
        let error = object("k".repeat(MAX_KEY_BYTES + 1))
            .checked_key()
            .unwrap_err();
        assert!(error.contains("1025 bytes"), "{error}");
        // Bytes, not characters: 342 three-byte characters are 1,026 bytes.
        assert!(object("€".repeat(342)).checked_key().is_err());
        assert!(object(String::new()).checked_key().is_err());
    }

    #[test]
    fn notification_encoded_keys_decode_to_the_stored_key() {
        assert_eq!(
            decoded_key("models/m/1/my+file%C3%BC.bin").as_deref(),
            Some("models/m/1/my fileü.bin")
        );
        assert_eq!(decoded_key("models/m/1/plain.bin"), None);
        assert_eq!(decoded_key("models/m/1/%FF.bin"), None, "not UTF-8");
    }
}
