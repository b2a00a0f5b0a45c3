//! S3 Cross-Region Replication emulation (moto stores replication configuration but never
//! replicates). See `EMULATIONS.md`.

use std::sync::Arc;

use anyhow::{Context, Result};
use http::Method;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::ctx::Ctx;
use crate::faults::Corruption;
use crate::http::GatewayRequest;

/// Sub-resources whose PUT/POST on an object key does not create an object.
const NON_CREATING_SUBRESOURCES: &[&str] = &[
    "partNumber",
    "tagging",
    "acl",
    "retention",
    "legal-hold",
    "restore",
    "select",
    "attributes",
];

/// Characters to escape in an `x-amz-copy-source` key (everything but unreserved and '/').
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The (bucket, key) a successful path-style S3 request created, if it created an object:
/// PutObject, CopyObject, or CompleteMultipartUpload.
pub fn created_object(method: &Method, path: &str, query: &str) -> Option<(String, String)> {
    let (bucket, key) = path.strip_prefix('/')?.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(p))
        .collect();
    let creates = match *method {
        Method::PUT => !params
            .iter()
            .any(|p| NON_CREATING_SUBRESOURCES.contains(p) || *p == "uploadId"),
        Method::POST => params.contains(&"uploadId"),
        _ => false,
    };
    creates.then(|| {
        (
            percent_decode_str(bucket).decode_utf8_lossy().into_owned(),
            percent_decode_str(key).decode_utf8_lossy().into_owned(),
        )
    })
}

/// Called after every successful S3 request through the gateway: schedules replication of
/// a created object according to its bucket's replication configuration.
pub fn after_s3_write(ctx: &Arc<Ctx>, request: &GatewayRequest) {
    let Some((bucket, key)) = created_object(&request.method, request.path(), request.query())
    else {
        return;
    };
    let task_ctx = ctx.clone();
    ctx.spawn(async move {
        if let Err(error) = replicate(&task_ctx, &bucket, &key).await {
            tracing::warn!(%bucket, %key, error = %format!("{error:#}"), "replication emulation failed");
        }
    });
}

/// One destination of a replication rule that applies to a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub rule_id: String,
    pub bucket: String,
}

async fn replicate(ctx: &Arc<Ctx>, bucket: &str, key: &str) -> Result<()> {
    let s3 = ctx.moto.s3(&ctx.fleet.primary_region).await;
    let configuration = match s3.get_bucket_replication().bucket(bucket).send().await {
        Ok(output) => output.replication_configuration,
        Err(_) => return Ok(()),
    };
    let Some(configuration) = configuration else {
        return Ok(());
    };
    let destinations = destinations_for(&configuration, key);
    if destinations.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(ctx.config.replication_delay).await;
    let source_region = bucket_region(&s3, bucket).await?;
    for destination in destinations {
        let region = bucket_region(&s3, &destination.bucket).await?;
        let copy = Copy {
            s3: s3.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source_region: source_region.clone(),
            destination,
            region,
        };
        let task_ctx = ctx.clone();
        ctx.spawn(async move {
            let (bucket, key) = (copy.bucket.clone(), copy.key.clone());
            if let Err(error) = copy.run(&task_ctx).await {
                tracing::warn!(%bucket, %key, error = %format!("{error:#}"), "replication emulation failed");
            }
        });
    }
    Ok(())
}

/// One object on its way to one destination bucket.
struct Copy {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    source_region: String,
    destination: Destination,
    /// The destination bucket's region.
    region: String,
}

impl Copy {
    /// Copies the object, unless a fault says otherwise. While the source or the
    /// destination region is down the copy waits, and happens once both are back.
    async fn run(self, ctx: &Ctx) -> Result<()> {
        let Self {
            s3,
            bucket,
            key,
            source_region,
            destination,
            region,
        } = self;
        ctx.faults.wait_until_up(&[&source_region, &region]).await;
        if ctx.faults.replication_fails_to(&region) {
            tracing::warn!(
                source = %bucket, %key, destination = %destination.bucket, %region,
                rule = %destination.rule_id,
                "injected fault: replication failed, no replica created"
            );
            return Ok(());
        }
        if let Some(corruption) = ctx.faults.replica_corruption(&region) {
            let original = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .with_context(|| format!("reading s3://{bucket}/{key}"))?;
            let mut bytes = original.body.collect().await?.to_vec();
            match corruption {
                Corruption::Size => bytes.push(0),
                Corruption::Checksum => {
                    if let Some(first) = bytes.first_mut() {
                        *first = first.wrapping_add(1);
                    }
                }
            }
            s3.put_object()
                .bucket(&destination.bucket)
                .key(&key)
                .body(bytes.into())
                .send()
                .await?;
            tracing::warn!(source = %bucket, %key, destination = %destination.bucket, %region, ?corruption, "injected fault: replica damaged");
            return Ok(());
        }
        let copy_source = format!("{bucket}/{}", utf8_percent_encode(&key, COPY_SOURCE));
        s3.copy_object()
            .bucket(&destination.bucket)
            .key(&key)
            .copy_source(copy_source)
            .send()
            .await
            .with_context(|| format!("copying s3://{bucket}/{key} to {}", destination.bucket))?;
        tracing::info!(source = %bucket, %key, destination = %destination.bucket, %region, "replicated");
        Ok(())
    }
}

async fn bucket_region(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<String> {
    let location = s3
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .with_context(|| format!("locating bucket {bucket}"))?;
    Ok(location
        .location_constraint()
        .map(|c| c.as_str().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "us-east-1".to_owned()))
}

/// The destinations whose enabled rules match `key`. As on S3, when several rules name
/// the same destination the one with the highest priority wins.
pub fn destinations_for(
    configuration: &aws_sdk_s3::types::ReplicationConfiguration,
    key: &str,
) -> Vec<Destination> {
    use aws_sdk_s3::types::{ReplicationRuleFilter, ReplicationRuleStatus};
    let mut matching: Vec<(i32, Destination)> = Vec::new();
    for rule in configuration.rules() {
        if rule.status() != &ReplicationRuleStatus::Enabled {
            continue;
        }
        #[allow(deprecated)]
        let legacy_prefix = rule.prefix();
        let prefix = match rule.filter() {
            Some(ReplicationRuleFilter {
                prefix: Some(p), ..
            }) => p.as_str(),
            Some(ReplicationRuleFilter { and: Some(and), .. }) => and.prefix().unwrap_or(""),
            _ => legacy_prefix.unwrap_or(""),
        };
        if !key.starts_with(prefix) {
            continue;
        }
        let Some(destination) = rule.destination() else {
            continue;
        };
        let bucket = destination
            .bucket()
            .rsplit(":::")
            .next()
            .unwrap_or(destination.bucket())
            .to_owned();
        let candidate = Destination {
            rule_id: rule.id().unwrap_or("").to_owned(),
            bucket,
        };
        let priority = rule.priority().unwrap_or(0);
        match matching
            .iter_mut()
            .find(|(_, d)| d.bucket == candidate.bucket)
        {
            Some(existing) if existing.0 < priority => *existing = (priority, candidate),
            Some(_) => {}
            None => matching.push((priority, candidate)),
        }
    }
    matching.into_iter().map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_creating_requests_replicate() {
        let cases = [
            (Method::PUT, "/b/models/m/1/a.bin", "x-id=PutObject", true),
            (Method::PUT, "/b/models/m/1/a%20b.bin", "", true),
            (Method::POST, "/b/k", "uploadId=abc", true),
            (Method::PUT, "/b/k", "partNumber=1&uploadId=abc", false),
            (Method::PUT, "/b/k", "tagging", false),
            (Method::POST, "/b/k", "uploads", false),
            (Method::PUT, "/b", "replication", false),
            (Method::PUT, "/b/", "", false),
            (Method::GET, "/b/k", "", false),
            (Method::DELETE, "/b/k", "", false),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(
                created_object(&method, path, query).is_some(),
                expected,
                "{method} {path}?{query}"
            );
        }
        assert_eq!(
            created_object(&Method::PUT, "/b/a%20b.bin", ""),
            Some(("b".into(), "a b.bin".into()))
        );
    }

    #[test]
    fn rules_match_by_prefix_status_and_priority() {
        use aws_sdk_s3::types::{
            Destination as S3Destination, ReplicationConfiguration, ReplicationRule,
            ReplicationRuleFilter, ReplicationRuleStatus,
        };
        let rule = |id: &str, prefix: &str, dest: &str, priority: i32, enabled: bool| {
            ReplicationRule::builder()
                .id(id)
                .priority(priority)
                .status(if enabled {
                    ReplicationRuleStatus::Enabled
                } else {
                    ReplicationRuleStatus::Disabled
                })
                .filter(ReplicationRuleFilter::builder().prefix(prefix).build())
                .destination(
                    S3Destination::builder()
                        .bucket(format!("arn:aws:s3:::{dest}"))
                        .build()
                        .expect("bucket is set"),
                )
                .build()
                .expect("status is set")
        };
        let configuration = ReplicationConfiguration::builder()
            .role("arn:aws:iam::123456789012:role/replication")
            .rules(rule("eu", "models/", "eu", 1, true))
            .rules(rule("eu-high", "models/m/", "eu", 5, true))
            .rules(rule("ap", "other/", "ap", 2, true))
            .rules(rule("off", "", "us", 3, false))
            .build()
            .expect("role and rules are set");
        assert_eq!(
            destinations_for(&configuration, "models/m/1/a.bin"),
            vec![Destination {
                rule_id: "eu-high".into(),
                bucket: "eu".into()
            }]
        );
        assert!(destinations_for(&configuration, "elsewhere").is_empty());
    }
}
