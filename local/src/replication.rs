//! S3 Cross-Region Replication emulation (moto stores replication configuration but never
//! replicates). See `EMULATIONS.md`.

use std::sync::Arc;

use anyhow::{Context, Result};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, ObjectAttributes};
use http::Method;
use percent_encoding::percent_decode_str;

use crate::ctx::Ctx;
use crate::faults::Corruption;
use crate::http::{GatewayRequest, GatewayResponse};

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

/// One version of an object, as `PutObject` reports it: a single-part object, whose
/// replica is one `CopyObject` of this version.
#[derive(Debug, Clone, PartialEq)]
pub struct PutVersion {
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// The `PutVersion` of a request that was a `PutObject` (not a copy, not a multipart
/// completion), from its response's headers.
fn put_version(request: &GatewayRequest, response: &GatewayResponse) -> Option<PutVersion> {
    if request.method != Method::PUT || request.headers.contains_key("x-amz-copy-source") {
        return None;
    }
    let header = |name: &str| {
        response
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Some(PutVersion {
        version_id: header("x-amz-version-id").filter(|v| v != "null"),
        etag: header("etag"),
    })
}

/// The bucket a successful bucket-level `PUT` or `DELETE` (creation, deletion, any
/// sub-resource such as `?replication`) may have changed.
fn changed_bucket(method: &Method, path: &str) -> Option<String> {
    let bucket = path.strip_prefix('/')?.trim_end_matches('/');
    (matches!(*method, Method::PUT | Method::DELETE) && !bucket.is_empty() && !bucket.contains('/'))
        .then(|| percent_decode_str(bucket).decode_utf8_lossy().into_owned())
}

/// Called after every successful S3 request through the gateway: forgets what a bucket
/// request may have changed, and schedules replication of a created object according to
/// its bucket's replication configuration.
pub fn after_s3_write(ctx: &Arc<Ctx>, request: &GatewayRequest, response: &GatewayResponse) {
    if let Some(bucket) = changed_bucket(&request.method, request.path()) {
        ctx.buckets.forget(&bucket);
        return;
    }
    let Some((bucket, key)) = created_object(&request.method, request.path(), request.query())
    else {
        return;
    };
    let put = put_version(request, response);
    let task_ctx = ctx.clone();
    ctx.spawn(async move {
        if let Err(error) = replicate(&task_ctx, &bucket, &key, put).await {
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

async fn replicate(ctx: &Arc<Ctx>, bucket: &str, key: &str, put: Option<PutVersion>) -> Result<()> {
    let s3 = ctx.moto.s3(&ctx.fleet.primary_region).await;
    let Some(configuration) = ctx.buckets.replication(&s3, bucket).await else {
        return Ok(());
    };
    let destinations = destinations_for(&configuration, key);
    if destinations.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(ctx.config.replication_delay).await;
    let source_region = ctx.buckets.region(&s3, bucket).await?;
    for destination in destinations {
        let region = ctx.buckets.region(&s3, &destination.bucket).await?;
        let copy = Copy {
            s3: s3.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            put: put.clone(),
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
    /// Known when `PutObject` created the source.
    put: Option<PutVersion>,
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
            put,
            source_region,
            destination,
            region,
        } = self;
        ctx.faults.wait_until_up(&[&source_region, &region]).await;
        let Ok(_slot) = ctx.replication_slots.acquire().await else {
            return Ok(());
        };
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
            // Written as a client would write it, with the source's checksum algorithm: a
            // damaged replica of a CRC64NVME object has the CRC64NVME of its own bytes.
            let (algorithm, _) = checksum_of(&s3, &bucket, &key, None).await?;
            s3.put_object()
                .bucket(&destination.bucket)
                .key(&key)
                .set_checksum_algorithm(algorithm)
                .body(bytes.into())
                .send()
                .await?;
            tracing::warn!(source = %bucket, %key, destination = %destination.bucket, %region, ?corruption, "injected fault: replica damaged");
            return Ok(());
        }
        let parts = copy_object(ctx, &s3, &bucket, &key, put, &destination.bucket)
            .await
            .with_context(|| format!("copying s3://{bucket}/{key} to {}", destination.bucket))?;
        tracing::info!(source = %bucket, %key, destination = %destination.bucket, %region, parts, "replicated");
        Ok(())
    }
}

/// Copies the source as S3 replication does: the version `PutObject` stored (`put`, a
/// single-part object) with `CopyObject`; otherwise the key's current version, a multipart
/// object part by part, with the source's part sizes and checksum algorithm and type, so
/// the replica has the source's ETag and checksum (a composite `-N` one included), and any
/// other object with `CopyObject`. moto's `CopyObject` would store a multipart source as
/// one part under the source's composite checksum, which standard clients then refuse to
/// read. Returns the number of parts (0 for a single-part object).
async fn copy_object(
    ctx: &Ctx,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    put: Option<PutVersion>,
    destination: &str,
) -> Result<usize> {
    if let Some(put) = put {
        copy_single_part(ctx, s3, bucket, key, &put, destination).await?;
        return Ok(0);
    }
    let first = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .part_number(1)
        .send()
        .await
        .context("reading the source's first part")?;
    let version = PutVersion {
        version_id: first
            .version_id()
            .filter(|v| *v != "null")
            .map(str::to_owned),
        etag: first.e_tag().map(str::to_owned),
    };
    let Some(parts) = first.parts_count().and_then(|n| usize::try_from(n).ok()) else {
        copy_single_part(ctx, s3, bucket, key, &version, destination).await?;
        return Ok(0);
    };
    let copy_source = copy_source(bucket, key, &version);
    let mut sizes = vec![u64::try_from(first.content_length().unwrap_or(0))?];
    for number in 2..=parts {
        let part = s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(first.version_id().map(str::to_owned))
            .part_number(i32::try_from(number)?)
            .send()
            .await
            .with_context(|| format!("reading the source's part {number}"))?;
        sizes.push(u64::try_from(part.content_length().unwrap_or(0))?);
    }
    let (algorithm, checksum_type) = checksum_of(s3, bucket, key, first.version_id()).await?;
    let upload = s3
        .create_multipart_upload()
        .bucket(destination)
        .key(key)
        .set_content_type(first.content_type().map(str::to_owned))
        .set_metadata(first.metadata().cloned())
        .set_checksum_algorithm(algorithm)
        .set_checksum_type(checksum_type)
        .send()
        .await?;
    let upload_id = upload.upload_id().unwrap_or_default();
    let mut completed = Vec::with_capacity(parts);
    let mut start = 0u64;
    for (index, size) in sizes.into_iter().enumerate() {
        let number = i32::try_from(index + 1)?;
        let part = s3
            .upload_part_copy()
            .bucket(destination)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(&copy_source)
            .copy_source_range(format!(
                "bytes={start}-{}",
                (start + size).saturating_sub(1)
            ))
            .send()
            .await
            .with_context(|| format!("copying part {number}"))?;
        start += size;
        completed.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(
                    part.copy_part_result()
                        .and_then(|r| r.e_tag())
                        .map(str::to_owned),
                )
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(destination)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await?;
    Ok(parts)
}

/// `bucket/key`, encoded, naming the version when there is one.
fn copy_source(bucket: &str, key: &str, version: &PutVersion) -> String {
    let source = meridian::s3_copy::copy_source(bucket, key);
    match &version.version_id {
        Some(id) => format!("{source}?versionId={id}"),
        None => source,
    }
}

/// Copies one version of a single-part object; the replica keeps the source's known
/// CRC64NVME (same bytes, same ETag).
async fn copy_single_part(
    ctx: &Ctx,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: &PutVersion,
    destination: &str,
) -> Result<()> {
    s3.copy_object()
        .bucket(destination)
        .key(key)
        .copy_source(copy_source(bucket, key, version))
        .send()
        .await?;
    if let Some(etag) = &version.etag {
        crate::checksums::remember_copy(ctx, bucket, key, etag, destination);
    }
    Ok(())
}

/// The algorithm and type of the object's checksum (`GetObjectAttributes`; moto's
/// `HeadObject` leaves the type out).
async fn checksum_of(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<(Option<ChecksumAlgorithm>, Option<ChecksumType>)> {
    let attributes = s3
        .get_object_attributes()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .object_attributes(ObjectAttributes::Checksum)
        .send()
        .await
        .context("reading the source's checksum")?;
    let Some(checksum) = attributes.checksum() else {
        return Ok((None, None));
    };
    let algorithm = [
        (checksum.checksum_crc32(), ChecksumAlgorithm::Crc32),
        (checksum.checksum_crc32_c(), ChecksumAlgorithm::Crc32C),
        (checksum.checksum_crc64_nvme(), ChecksumAlgorithm::Crc64Nvme),
        (checksum.checksum_sha1(), ChecksumAlgorithm::Sha1),
        (checksum.checksum_sha256(), ChecksumAlgorithm::Sha256),
    ]
    .into_iter()
    .find_map(|(value, algorithm)| value.map(|_| algorithm));
    Ok((algorithm, checksum.checksum_type().cloned()))
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
    fn bucket_requests_forget_what_they_may_change() {
        let cases = [
            (Method::PUT, "/b", Some("b")),
            (Method::PUT, "/b/", Some("b")),
            (Method::DELETE, "/b", Some("b")),
            (Method::PUT, "/my%2Ebucket", Some("my.bucket")),
            (Method::GET, "/b", None),
            (Method::POST, "/b", None),
            (Method::PUT, "/b/k", None),
            (Method::PUT, "/", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                changed_bucket(&method, path).as_deref(),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_put_object_reports_the_version_it_stored_and_a_copy_does_not() {
        let request = |method: Method, copy: bool| {
            let mut headers = http::HeaderMap::new();
            if copy {
                headers.insert("x-amz-copy-source", "b/k".parse().expect("header value"));
            }
            GatewayRequest {
                method,
                path_and_query: "/b/k?x-id=PutObject".into(),
                headers,
                body: Default::default(),
            }
        };
        let mut response = GatewayResponse::empty(http::StatusCode::OK);
        response
            .headers
            .insert("x-amz-version-id", "v1".parse().expect("header value"));
        response
            .headers
            .insert("etag", "\"abc\"".parse().expect("header value"));
        assert_eq!(
            put_version(&request(Method::PUT, false), &response),
            Some(PutVersion {
                version_id: Some("v1".into()),
                etag: Some("\"abc\"".into())
            })
        );
        assert_eq!(put_version(&request(Method::PUT, true), &response), None);
        assert_eq!(put_version(&request(Method::POST, false), &response), None);
        let unversioned = GatewayResponse::empty(http::StatusCode::OK);
        assert_eq!(
            put_version(&request(Method::PUT, false), &unversioned),
            Some(PutVersion {
                version_id: None,
                etag: None
            })
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
