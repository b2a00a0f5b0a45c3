//! What the replication emulation reads about buckets, kept once read: their replication
//! configuration and region. S3 applies both from its own control plane; reading them from
//! moto for every replicated object was half of the emulation's calls. The gateway forgets
//! a bucket's entry whenever it passes a request that may change it.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result};
use aws_sdk_s3::types::ReplicationConfiguration;

#[derive(Default)]
pub struct BucketCache {
    replication: Mutex<HashMap<String, Option<ReplicationConfiguration>>>,
    regions: Mutex<HashMap<String, String>>,
}

impl BucketCache {
    /// The bucket's replication configuration, `None` when it has none (or cannot be read).
    pub async fn replication(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Option<ReplicationConfiguration> {
        if let Some(known) = lock(&self.replication).get(bucket) {
            return known.clone();
        }
        let configuration = match s3.get_bucket_replication().bucket(bucket).send().await {
            Ok(output) => output.replication_configuration,
            Err(error) if is_not_configured(&error) => None,
            Err(_) => return None,
        };
        lock(&self.replication).insert(bucket.to_owned(), configuration.clone());
        configuration
    }

    /// The bucket's region (`GetBucketLocation`; an empty constraint is us-east-1).
    pub async fn region(&self, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<String> {
        if let Some(region) = lock(&self.regions).get(bucket) {
            return Ok(region.clone());
        }
        let location = s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .with_context(|| format!("locating bucket {bucket}"))?;
        let region = location
            .location_constraint()
            .map(|c| c.as_str().to_owned())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "us-east-1".to_owned());
        lock(&self.regions).insert(bucket.to_owned(), region.clone());
        Ok(region)
    }

    /// Drops what is known of the bucket: the next read asks moto again.
    pub fn forget(&self, bucket: &str) {
        lock(&self.replication).remove(bucket);
        lock(&self.regions).remove(bucket);
    }
}

fn is_not_configured(
    error: &aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::get_bucket_replication::GetBucketReplicationError,
    >,
) -> bool {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    error.code() == Some("ReplicationConfigurationNotFoundError")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
