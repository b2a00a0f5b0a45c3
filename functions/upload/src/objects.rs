//! The uploaded objects in the primary bucket, as the upload handler reads them: the
//! manifest and each file's size. [`S3Objects`] is S3; the handler tests use memory.

use std::future::Future;

use meridian::manifest;
use meridian::rollout::{aws_error, retryable, RolloutError};

/// Reads of the primary bucket.
pub trait UploadedObjects: Send + Sync {
    /// The manifest's bytes and its S3 version id. A manifest over
    /// [`manifest::MAX_MANIFEST_BYTES`] is not read: its bytes are that limit plus one.
    fn manifest(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(Vec<u8>, Option<String>), RolloutError>> + Send;
    /// The object's size, `None` when there is no such object.
    fn size(&self, key: &str) -> impl Future<Output = Result<Option<u64>, RolloutError>> + Send;
}

/// The primary bucket in S3.
pub struct S3Objects {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

impl UploadedObjects for S3Objects {
    async fn manifest(&self, key: &str) -> Result<(Vec<u8>, Option<String>), RolloutError> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
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

    async fn size(&self, key: &str) -> Result<Option<u64>, RolloutError> {
        match self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(aws_error("checking the uploaded files", error)),
        }
    }
}
