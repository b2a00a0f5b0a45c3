//! The fast copy, the fallback for late or failed replication, in three tasks so that no
//! invocation copies more than a bounded number of bytes, whatever the model's size:
//!
//! - `fast_copy` starts it: forgets the region's replica verdict and splits the version's
//!   files into lanes ([`copy_plan::lanes`]), which the state machine's Map runs side by side;
//! - `copy_files` copies some of one lane's files, server-side, from the primary bucket:
//!   until [`CopySettings::invocation_bytes`] are started, then it returns where it stopped
//!   and the state machine calls it again. It is resumable by construction: a file whose
//!   copy already has the manifest's size and CRC64NVME is skipped, and a multipart copy
//!   goes on with the parts its upload still lacks (`ListParts`), so a retry after a
//!   timeout or a crash copies nothing twice;
//! - `fast_copy_done` writes the manifest last and stamps the region fast-copied.
//!
//! Copies carry S3's full-object CRC64NVME (named on `CopyObject` and
//! `CreateMultipartUpload`), so the replica check verifies them by `HeadObject` like
//! replicas; a multipart copy's completion also names the manifest's CRC64NVME, which S3
//! checks before it stores the object.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use meridian::copy_plan::{self, CopyMethod, CopySettings, PartRange};
use meridian::manifest::{FileEntry, Manifest};
use meridian::manifest_store::{self, Stored};
use meridian::registry::VersionRecord;
use meridian::registry_store::RolloutRegistry;
use meridian::replica_check::{self, ByMetadata, ReplicaHead};
use meridian::rollout::{aws_error, RolloutError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::stores::RolloutStores;
use crate::{RolloutDeps, TaskInput};

/// How many `UploadPartCopy` calls one invocation runs at once.
const PART_CONCURRENCY: usize = 8;
/// After this long an invocation starts no new copy (Lambda stops it at 15 minutes; a
/// part of at most 5 GiB started before then finishes well within the rest).
const TIME_BUDGET: Duration = Duration::from_secs(600);

/// Where one lane of a region's copy stands: lane `index` of `count`, at position `next`
/// of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lane {
    pub index: usize,
    pub count: usize,
    pub next: usize,
}

/// The `fast_copy` task: forgets the region's replica verdict (the copies get a new one)
/// and returns the lanes, as the Map's items.
pub(crate) async fn start(
    deps: &RolloutDeps<impl RolloutStores>,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let (manifest, _) = registered_manifest(deps, record).await?;
    deps.registry(&region.name)
        .await
        .reset_readiness(&record.model, &record.version, &region.name)
        .await?;
    let count = copy_plan::lane_count(manifest.files.len());
    let lanes: Vec<Value> = (0..count)
        .map(|index| {
            json!({
                "model": record.model,
                "version": record.version,
                "region": region.name,
                "lane": Lane { index, count, next: 0 },
            })
        })
        .collect();
    Ok(json!({ "region": region.name, "lanes": lanes }))
}

/// The `copy_files` task: copies one lane's files from `next` on within the invocation's
/// budget; returns the task's input with the lane moved on, and `done` once every file of
/// the lane is there.
pub(crate) async fn copy_files(
    deps: &RolloutDeps<impl RolloutStores>,
    record: &VersionRecord,
    input: &TaskInput,
    lane: Lane,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let (manifest, _) = registered_manifest(deps, record).await?;
    let sizes: Vec<u64> = manifest.files.iter().map(|f| f.size).collect();
    if lane.count != copy_plan::lane_count(sizes.len()) || lane.index >= lane.count {
        return Err(RolloutError::Invalid(format!(
            "lane {} of {} does not fit a version of {} files",
            lane.index,
            lane.count,
            sizes.len()
        )));
    }
    let files = copy_plan::lanes(&sizes, lane.count).swap_remove(lane.index);
    let verified = deps
        .registry(&region.name)
        .await
        .region_checks((&record.model, &record.version), &region.name)
        .await?;
    let copier = Copier {
        s3: deps.clients.s3(&region.name).await,
        from: &deps.fleet.primary_bucket,
        to: &region.bucket,
        settings: deps.fleet.rollout.copy,
    };
    let mut budget = Budget::new(copier.settings);
    let mut next = lane.next;
    while let Some(&index) = files.get(next) {
        if budget.spent() {
            break;
        }
        let file = &manifest.files[index];
        if !verified.is_verified(index) && !copier.finished(&manifest, file).await? {
            let key = manifest.object_key(file);
            if !copier.copy(&key, file, &mut budget).await? {
                break;
            }
        }
        next += 1;
    }
    let done = next >= files.len();
    tracing::info!(region = %region.name, lane = lane.index, next, done, "fast copy lane");
    Ok(json!({
        "model": record.model,
        "version": record.version,
        "region": region.name,
        "lane": Lane { next, ..lane },
        "done": done,
    }))
}

/// The `fast_copy_done` task: writes the registered manifest into the region (last, so
/// the replica check finds every file there) and stamps the region fast-copied.
pub(crate) async fn finish(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let (_, manifest_bytes) = registered_manifest(deps, record).await?;
    let manifest_key = meridian::manifest::manifest_key(&record.model, &record.version);
    deps.clients
        .s3(&region.name)
        .await
        .put_object()
        .bucket(&region.bucket)
        .key(&manifest_key)
        .body(manifest_bytes.to_vec().into())
        .content_type("application/json")
        .send()
        .await
        .map_err(|e| aws_error("copying the manifest", e))?;
    crate::bookkeeping::stamp(control, record, input, &region.name, |p| &mut p.fast_copied).await?;
    tracing::info!(region = %region.name, "fast copy done");
    Ok(json!({ "region": region.name }))
}

/// The version's registered manifest, read from the primary bucket at its recorded S3
/// version and checked against its digest.
async fn registered_manifest(
    deps: &RolloutDeps<impl RolloutStores>,
    record: &VersionRecord,
) -> Result<(Arc<Manifest>, Arc<[u8]>), RolloutError> {
    let primary = deps.clients.s3(&deps.fleet.primary_region).await;
    let bucket = &deps.fleet.primary_bucket;
    match manifest_store::read(&primary, bucket, &record.manifest, &record.digest, true).await? {
        Stored::Registered(manifest, bytes) => Ok((manifest, bytes)),
        Stored::Missing => Err(RolloutError::Invalid(format!(
            "the registered manifest s3://{bucket}/{} is gone",
            record.manifest.key
        ))),
        Stored::Other(what) => Err(RolloutError::Invalid(format!(
            "s3://{bucket}/{} holds {what}",
            record.manifest.key
        ))),
    }
}

/// Copies one file from bucket `from` to bucket `to` as a lane of `copy_files`
/// invocations would, one budget after another (the fast-copy benchmark,
/// `./scripts/bench copy`); returns how many invocations it took.
pub async fn copy_file(
    s3: aws_sdk_s3::Client,
    from: &str,
    to: &str,
    manifest: &Manifest,
    file: &FileEntry,
    settings: CopySettings,
) -> Result<usize, RolloutError> {
    let copier = Copier {
        s3,
        from,
        to,
        settings,
    };
    let key = manifest.object_key(file);
    let mut invocations = 1;
    while !copier.copy(&key, file, &mut Budget::new(settings)).await? {
        invocations += 1;
    }
    Ok(invocations)
}

/// What one invocation may still start.
struct Budget {
    bytes_left: u64,
    deadline: Instant,
    /// Whether this invocation started a copy (it always may start one).
    started: bool,
}

impl Budget {
    fn new(settings: CopySettings) -> Self {
        Self {
            bytes_left: settings.invocation_bytes,
            deadline: Instant::now() + TIME_BUDGET,
            started: false,
        }
    }

    fn spent(&self) -> bool {
        self.started && (self.bytes_left == 0 || Instant::now() >= self.deadline)
    }

    fn take(&mut self, bytes: u64) {
        self.started = true;
        self.bytes_left = self.bytes_left.saturating_sub(bytes);
    }
}

/// Server-side copies from one bucket to another in the region's S3.
struct Copier<'a> {
    s3: aws_sdk_s3::Client,
    from: &'a str,
    to: &'a str,
    settings: CopySettings,
}

impl Copier<'_> {
    /// Whether the region already holds the file as the manifest lists it (size and S3's
    /// full-object CRC64NVME): then a retry does not copy it again.
    async fn finished(&self, manifest: &Manifest, file: &FileEntry) -> Result<bool, RolloutError> {
        let head = match self
            .s3
            .head_object()
            .bucket(self.to)
            .key(manifest.object_key(file))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(head) => head,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(false)
            }
            Err(error) => return Err(aws_error("reading a copy's metadata", error)),
        };
        let full_object = head.checksum_type() == Some(&ChecksumType::FullObject);
        let head = ReplicaHead {
            size: head.content_length().unwrap_or(0),
            full_object_crc64nvme: head
                .checksum_crc64_nvme()
                .filter(|_| full_object)
                .map(str::to_owned),
        };
        Ok(matches!(
            replica_check::by_metadata(file, &head),
            ByMetadata::Verified(_)
        ))
    }

    /// Copies what the budget allows of one file; `true` once the file is complete.
    async fn copy(
        &self,
        key: &str,
        file: &FileEntry,
        budget: &mut Budget,
    ) -> Result<bool, RolloutError> {
        let method = copy_plan::copy_method(file.size, self.settings.part_bytes)
            .map_err(|e| RolloutError::Invalid(format!("{}: {e}", file.path)))?;
        match method {
            CopyMethod::Single => {
                budget.take(file.size);
                self.s3
                    .copy_object()
                    .bucket(self.to)
                    .key(key)
                    .copy_source(meridian::s3_copy::copy_source(self.from, key))
                    .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                    .send()
                    .await
                    .map_err(|e| aws_error("copying a file", e))?;
                Ok(true)
            }
            CopyMethod::Multipart { part_bytes, .. } => {
                self.copy_parts(key, file, part_bytes, budget).await
            }
        }
    }

    /// Goes on with the file's multipart copy (or starts one): copies the parts its upload
    /// lacks within the budget, and completes it once every part is there.
    async fn copy_parts(
        &self,
        key: &str,
        file: &FileEntry,
        part_bytes: u64,
        budget: &mut Budget,
    ) -> Result<bool, RolloutError> {
        let (upload_id, uploaded) = self.upload_for(key, file.size, part_bytes).await?;
        let done: BTreeSet<u32> = uploaded.iter().map(|p| p.number).collect();
        let ranges = copy_plan::next_parts(file.size, part_bytes, &done, budget.bytes_left);
        budget.take(ranges.iter().map(PartRange::bytes).sum());
        let total = copy_plan::part_ranges(file.size, part_bytes).count();
        let complete = done.len() + ranges.len() == total;
        let copied: Vec<Part> = stream::iter(ranges)
            .map(|range| self.copy_part(key, &upload_id, range))
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        if !complete {
            return Ok(false);
        }
        let mut parts: Vec<Part> = uploaded.into_iter().chain(copied).collect();
        parts.sort_by_key(|p| p.number);
        let completed: Vec<CompletedPart> = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                    .e_tag(p.etag)
                    .set_checksum_crc64_nvme(p.crc64nvme)
                    .build()
            })
            .collect();
        self.s3
            .complete_multipart_upload()
            .bucket(self.to)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .checksum_type(ChecksumType::FullObject)
            .set_checksum_crc64_nvme(file.crc64nvme.clone())
            .send()
            .await
            .map_err(|e| aws_error("completing a multipart copy", e))?;
        Ok(true)
    }

    /// The key's multipart upload of this plan and its parts so far: the oldest upload in
    /// progress whose parts fit the plan, or a new one. Uploads of another part size (the
    /// setting changed since) are aborted.
    async fn upload_for(
        &self,
        key: &str,
        size: u64,
        part_bytes: u64,
    ) -> Result<(String, Vec<Part>), RolloutError> {
        let listed = self
            .s3
            .list_multipart_uploads()
            .bucket(self.to)
            .prefix(key)
            .send()
            .await
            .map_err(|e| aws_error("listing multipart copies", e))?;
        let mut uploads: Vec<_> = listed
            .uploads()
            .iter()
            .filter(|u| u.key() == Some(key))
            .filter_map(|u| Some((u.initiated().copied(), u.upload_id()?.to_owned())))
            .collect();
        uploads.sort_by_key(|(initiated, _)| initiated.map(|t| (t.secs(), t.subsec_nanos())));
        for (_, upload_id) in uploads {
            let parts = self.parts(key, &upload_id).await?;
            let sizes: Vec<(u32, u64)> = parts.iter().map(|p| (p.number, p.size)).collect();
            if copy_plan::parts_fit(size, part_bytes, &sizes) {
                return Ok((upload_id, parts));
            }
            self.s3
                .abort_multipart_upload()
                .bucket(self.to)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
                .map_err(|e| aws_error("aborting a multipart copy of another part size", e))?;
        }
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(self.to)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| aws_error("starting a multipart copy", e))?;
        let upload_id = created.upload_id().ok_or_else(|| {
            RolloutError::Retryable("CreateMultipartUpload returned no upload id".into())
        })?;
        Ok((upload_id.to_owned(), Vec::new()))
    }

    /// Every part of an upload so far (`ListParts`, page by page).
    async fn parts(&self, key: &str, upload_id: &str) -> Result<Vec<Part>, RolloutError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .s3
                .list_parts()
                .bucket(self.to)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws_error("listing a multipart copy's parts", e))?;
            parts.extend(page.parts().iter().filter_map(|p| {
                Some(Part {
                    number: u32::try_from(p.part_number()?).ok()?,
                    size: u64::try_from(p.size()?).ok()?,
                    etag: p.e_tag()?.to_owned(),
                    crc64nvme: p.checksum_crc64_nvme().map(str::to_owned),
                })
            }));
            match page.next_part_number_marker() {
                Some(next) if page.is_truncated() == Some(true) => marker = Some(next.to_owned()),
                _ => return Ok(parts),
            }
        }
    }

    async fn copy_part(
        &self,
        key: &str,
        upload_id: &str,
        range: PartRange,
    ) -> Result<Part, RolloutError> {
        let copied = self
            .s3
            .upload_part_copy()
            .bucket(self.to)
            .key(key)
            .upload_id(upload_id)
            .part_number(i32::try_from(range.number).unwrap_or(i32::MAX))
            .copy_source(meridian::s3_copy::copy_source(self.from, key))
            .copy_source_range(format!("bytes={}-{}", range.first, range.last))
            .send()
            .await
            .map_err(|e| aws_error("copying a part", e))?;
        let result = copied.copy_part_result();
        Ok(Part {
            number: range.number,
            size: range.bytes(),
            etag: result
                .and_then(|r| r.e_tag())
                .unwrap_or_default()
                .to_owned(),
            crc64nvme: result
                .and_then(|r| r.checksum_crc64_nvme())
                .map(str::to_owned),
        })
    }
}

/// One part of a multipart copy, as `CompleteMultipartUpload` needs it.
struct Part {
    number: u32,
    size: u64,
    etag: String,
    crc64nvme: Option<String>,
}
