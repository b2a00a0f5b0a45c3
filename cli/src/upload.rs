//! `meridian manifest` and `meridian upload`: describe a local model version folder as its
//! manifest, and upload it to the fleet's primary bucket with the manifest written last.
//!
//! The manifest's arrival is the commit signal of a version, so `upload` writes it only
//! after every file is in the bucket, never writes a different manifest over an existing
//! one (versions are immutable), and aborts every multipart upload it leaves unfinished.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use clap::Args;
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::manifest::{self, describe_dir, FileEntry, Manifest, Serving};
use meridian::smoke::SmokeTest;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::target::Target;

/// Instance type when neither `--instance-type` nor a fleet file gives one.
const DEFAULT_INSTANCE_TYPE: &str = "ml.g5.2xlarge";
/// Instance count when neither `--instance-count` nor a fleet file gives one.
const DEFAULT_INSTANCE_COUNT: u32 = 1;
/// The fleet file `manifest` looks for when `--fleet` is not given.
const DEFAULT_FLEET: &str = "fleet.example.toml";
const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last), its largest part and its most parts per upload.
const MIN_PART_MIB: u64 = 5;
const MAX_PART_MIB: u64 = 5 * 1024;
const MAX_PARTS: u64 = 10_000;

/// The version folder, its names and how to serve it: what both commands describe.
#[derive(Args, Clone, Debug)]
pub struct VersionArgs {
    /// The local folder holding the version's files (a top-level manifest.json is skipped).
    pub dir: PathBuf,
    /// Model name (1 to 63 of a-z, 0-9 and '-').
    #[arg(long)]
    pub model: String,
    /// Version name (1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-').
    #[arg(long)]
    pub version: String,
    /// Container image URI that serves the model: a private ECR image; a region without
    /// --region-image runs the same repository and tag from its own region.
    #[arg(long)]
    pub image: String,
    /// The image one region runs instead, REGION=IMAGE, an ECR image in that region
    /// (repeatable).
    #[arg(long = "region-image", value_name = "REGION=IMAGE", value_parser = parse_env)]
    pub region_images: Vec<(String, String)>,
    /// SageMaker instance type [default: the fleet's primary region's, else ml.g5.2xlarge].
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Instances per region [default: the fleet's primary region's, else 1].
    #[arg(long)]
    pub instance_count: Option<u32>,
    /// Deprecated: the fleet file's `variant_name` names the variant. Written into the
    /// manifest when given; a rollout refuses a version naming another variant than the
    /// fleet's.
    #[arg(long)]
    pub variant_name: Option<String>,
    /// Container environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// JSON file with the smoke test every region must pass before the version commits:
    /// {"content_type": ..., "body": {...}, "expect": "/json/pointer"} (docs/manifest.md)
    /// [default: a one-token TGI request, any answer healthy].
    #[arg(long, value_name = "FILE")]
    pub smoke_test: Option<PathBuf>,
}

/// `meridian manifest`.
#[derive(Args, Clone, Debug)]
pub struct ManifestArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    /// Fleet file whose primary region gives the default instance type and count
    /// [default: fleet.example.toml, if it exists].
    #[arg(long, env = "MERIDIAN_FLEET")]
    pub fleet: Option<PathBuf>,
}

/// `meridian upload`.
#[derive(Args, Clone)]
pub struct UploadArgs {
    #[command(flatten)]
    pub version: VersionArgs,
    /// Most parts and files in flight at once, across all files.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Multipart part size in MiB; larger files are uploaded in parts (5 to 5120).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(MIN_PART_MIB..=MAX_PART_MIB))]
    pub part_size_mib: u64,
    #[command(flatten)]
    pub target: Target,
}

/// Reads a `--smoke-test` file.
fn read_smoke_test(path: &Path) -> Result<SmokeTest> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a smoke test (docs/manifest.md)", path.display()))
}

/// Parses one `--env KEY=VALUE` (or `--region-image REGION=IMAGE`).
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE with a non-empty KEY")),
    }
}

impl VersionArgs {
    /// The serving spec, with instance type and count defaulting to `fleet`'s primary
    /// region, then to the built-in defaults.
    fn serving(&self, fleet: Option<&Fleet>) -> Result<Serving> {
        let mut environment = BTreeMap::new();
        for (key, value) in &self.env {
            if environment.insert(key.clone(), value.clone()).is_some() {
                bail!("--env {key} is given twice");
            }
        }
        let mut images = BTreeMap::new();
        for (region, image) in &self.region_images {
            if images.insert(region.clone(), image.clone()).is_some() {
                bail!("--region-image {region} is given twice");
            }
        }
        let primary = fleet.map(Fleet::primary);
        Ok(Serving {
            image: self.image.clone(),
            images,
            instance_type: self
                .instance_type
                .clone()
                .or_else(|| primary.map(|r| r.instance_type.clone()))
                .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_owned()),
            instance_count: self
                .instance_count
                .or_else(|| primary.map(|r| r.instance_count))
                .unwrap_or(DEFAULT_INSTANCE_COUNT),
            variant_name: self.variant_name.clone(),
            environment,
            smoke_test: self
                .smoke_test
                .as_deref()
                .map(read_smoke_test)
                .transpose()?,
        })
    }

    /// Hashes the folder into its manifest, with a progress indicator on stderr.
    async fn describe(&self, serving: Serving) -> Result<Manifest> {
        let dir = self.dir.clone();
        let (model, version) = (self.model.clone(), self.version.clone());
        let spinner = ProgressBar::new_spinner().with_style(style(
            "{spinner} hashing {msg} ({elapsed})",
            ProgressStyle::default_spinner(),
        ));
        spinner.set_message(dir.display().to_string());
        spinner.enable_steady_tick(Duration::from_millis(120));
        let described =
            tokio::task::spawn_blocking(move || describe_dir(&dir, &model, &version, serving))
                .await
                .context("the hashing task failed")?;
        spinner.finish_and_clear();
        described.map_err(|error| anyhow!("{error}"))
    }
}

fn style(template: &str, fallback: ProgressStyle) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or(fallback)
}

/// `meridian manifest`: prints the folder's manifest JSON to stdout.
pub async fn manifest(args: ManifestArgs) -> Result<ExitCode> {
    let fleet = match &args.fleet {
        Some(path) => Some(
            Fleet::load(path).with_context(|| format!("reading the fleet {}", path.display()))?,
        ),
        None => Fleet::load(Path::new(DEFAULT_FLEET)).ok(),
    };
    let serving = args.version.serving(fleet.as_ref())?;
    let manifest = args.version.describe(serving).await?;
    println!("{}", manifest.to_json_pretty());
    Ok(ExitCode::SUCCESS)
}

/// What `upload` reports.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub version: String,
    /// True when the same manifest was already there and nothing was uploaded.
    pub already_uploaded: bool,
    pub files: usize,
    pub total_bytes: u64,
    /// Files uploaded in parts, and their parts in all.
    pub multipart_files: usize,
    pub parts: u64,
    pub hash_seconds: f64,
    pub upload_seconds: f64,
    /// Hashing plus uploading.
    pub elapsed_seconds: f64,
    /// Upload throughput, MiB/s.
    pub throughput_mib_s: f64,
    pub region: String,
    pub bucket: String,
    pub manifest_uri: String,
}

/// `meridian upload`.
pub async fn upload(args: UploadArgs) -> Result<ExitCode> {
    let (fleet, clients) = args.target.load()?;
    let summary = upload_version(
        &args.version,
        args.concurrency,
        args.part_size_mib,
        &fleet,
        &clients,
    )
    .await?;
    report(&summary, args.target.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Uploads a version folder to `fleet`'s primary bucket through `clients`, the manifest
/// last; what `meridian upload` and the demo do.
pub async fn upload_version(
    version: &VersionArgs,
    concurrency: u16,
    part_size_mib: u64,
    fleet: &Fleet,
    clients: &ClientFactory,
) -> Result<Summary> {
    let started = Instant::now();
    let serving = version.serving(Some(fleet))?;
    let manifest = version.describe(serving).await?;
    let hash_seconds = started.elapsed().as_secs_f64();
    let stamps = file_stamps(&version.dir, &manifest)?;

    let region = fleet.primary_region.clone();
    let bucket = fleet.primary_bucket.clone();
    let s3 = clients.s3(&region).await;
    let manifest_key = manifest::manifest_key(&manifest.model, &manifest.version);
    let manifest_uri = format!("s3://{bucket}/{manifest_key}");
    let mut summary = Summary {
        model: manifest.model.clone(),
        version: manifest.version.clone(),
        already_uploaded: false,
        files: manifest.files.len(),
        total_bytes: manifest.total_bytes(),
        multipart_files: 0,
        parts: 0,
        hash_seconds,
        upload_seconds: 0.0,
        elapsed_seconds: 0.0,
        throughput_mib_s: 0.0,
        region,
        bucket: bucket.clone(),
        manifest_uri,
    };

    if existing_manifest(&s3, &bucket, &manifest_key, &manifest).await? {
        summary.already_uploaded = true;
        summary.elapsed_seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    let upload_started = Instant::now();
    let part_size = part_size_mib * MIB;
    let progress = ProgressBar::new(manifest.total_bytes()).with_style(
        style(
            "uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ProgressStyle::default_bar(),
        )
        .progress_chars("=> "),
    );
    let uploader = Arc::new(Uploader {
        s3: s3.clone(),
        bucket: bucket.clone(),
        permits: Semaphore::new(usize::from(concurrency)),
        concurrency: usize::from(concurrency),
        failed: AtomicBool::new(false),
        progress: progress.clone(),
    });
    let jobs = manifest.files.iter().map(|entry| {
        let job = FileJob {
            local: version.dir.join(&entry.path),
            key: manifest.object_key(entry),
            entry: entry.clone(),
            part_size: part_size_for(entry.size, part_size),
        };
        let uploader = uploader.clone();
        async move { uploader.upload_file(job).await }
    });
    let results: Vec<Result<u64>> = stream::iter(jobs)
        .buffer_unordered(usize::from(concurrency))
        .collect()
        .await;
    progress.finish_and_clear();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(0) => {}
            Ok(parts) => {
                summary.multipart_files += 1;
                summary.parts += parts;
            }
            Err(error) if error.is::<Cancelled>() => {}
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    if !failures.is_empty() {
        bail!(
            "the upload failed; manifest.json was not written, so version {} of {} is not \
             committed (run the upload again):\n  {}",
            manifest.version,
            manifest.model,
            failures.join("\n  ")
        );
    }
    check_unchanged(&version.dir, &manifest, &stamps)?;
    write_manifest(&s3, &bucket, &manifest_key, &manifest).await?;

    summary.upload_seconds = upload_started.elapsed().as_secs_f64();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    summary.throughput_mib_s = if summary.upload_seconds > 0.0 {
        summary.total_bytes as f64 / MIB as f64 / summary.upload_seconds
    } else {
        0.0
    };
    Ok(summary)
}

fn report(summary: &Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    let mut text = String::new();
    if summary.already_uploaded {
        writeln!(
            text,
            "version {} of {} is already uploaded with this manifest; nothing to do",
            summary.version, summary.model
        )?;
    } else {
        writeln!(
            text,
            "uploaded version {} of {}: {} files, {} in {:.1} s ({:.1} MiB/s; hashing {:.1} s)",
            summary.version,
            summary.model,
            summary.files,
            human_bytes(summary.total_bytes),
            summary.upload_seconds,
            summary.throughput_mib_s,
            summary.hash_seconds,
        )?;
        if summary.multipart_files > 0 {
            writeln!(
                text,
                "  {} files in {} parts (multipart)",
                summary.multipart_files, summary.parts
            )?;
        }
    }
    write!(text, "  manifest: {}", summary.manifest_uri)?;
    println!("{text}");
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// An SDK error with its whole context (code, message, cause), for error messages.
fn sdk_error<E, R>(error: SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    anyhow!("{}", DisplayErrorContext(error))
}

/// Whether the same manifest is already stored (true), or none is (false); an error when a
/// different one is, since versions are immutable.
async fn existing_manifest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    manifest: &Manifest,
) -> Result<bool> {
    let object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(SdkError::ServiceError(error)) if error.err().is_no_such_key() => return Ok(false),
        Err(error) => {
            return Err(sdk_error(error))
                .with_context(|| format!("checking for s3://{bucket}/{key}"))
        }
    };
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?
        .into_bytes();
    let same = manifest::parse(&bytes)
        .is_ok_and(|stored| stored.canonical_digest() == manifest.canonical_digest());
    if same {
        Ok(true)
    } else {
        bail!(
            "version {} of {} is already uploaded with a different manifest; versions are \
             immutable (s3://{bucket}/{key}); upload under a new version name",
            manifest.version,
            manifest.model
        )
    }
}

/// Writes `manifest.json`, the commit signal, only if no manifest exists yet: a concurrent
/// upload of the same version cannot be overwritten.
async fn write_manifest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    manifest: &Manifest,
) -> Result<()> {
    let body = manifest.to_json_pretty().into_bytes();
    let checksum = base64_sha256(&body);
    let written = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .if_none_match("*")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(checksum)
        .body(ByteStream::from(body))
        .send()
        .await;
    match written {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(error))
            if matches!(
                error.err().code(),
                Some("PreconditionFailed" | "ConditionalRequestConflict")
            ) =>
        {
            // Another upload wrote it meanwhile: fine if it is the same manifest.
            if existing_manifest(s3, bucket, key, manifest).await? {
                Ok(())
            } else {
                bail!("another upload wrote s3://{bucket}/{key} meanwhile")
            }
        }
        Err(error) => Err(sdk_error(error)).with_context(|| {
            format!("writing s3://{bucket}/{key}; every file is uploaded, run the upload again")
        }),
    }
}

/// Size and modification time of every file after hashing, to detect files that change
/// before the manifest is written.
type Stamp = (u64, Option<SystemTime>);

fn file_stamps(dir: &Path, manifest: &Manifest) -> Result<Vec<Stamp>> {
    manifest
        .files
        .iter()
        .map(|entry| {
            let path = dir.join(&entry.path);
            let metadata =
                std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok((metadata.len(), metadata.modified().ok()))
        })
        .collect()
}

fn check_unchanged(dir: &Path, manifest: &Manifest, stamps: &[Stamp]) -> Result<()> {
    let now = file_stamps(dir, manifest)?;
    for ((entry, before), after) in manifest.files.iter().zip(stamps).zip(&now) {
        if before != after {
            bail!(
                "{} changed during the upload; manifest.json was not written (run the \
                 upload again once the folder is complete)",
                dir.join(&entry.path).display()
            );
        }
    }
    Ok(())
}

/// The part size for a file: the requested one, raised to whole MiB when the file would
/// otherwise need more than S3's 10,000 parts.
fn part_size_for(size: u64, requested: u64) -> u64 {
    let least = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    requested.max(least)
}

fn base64_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// The error of a file whose upload was not started or stopped because another failed.
#[derive(Debug, thiserror::Error)]
#[error("cancelled because another upload failed")]
struct Cancelled;

/// One file to upload.
struct FileJob {
    local: PathBuf,
    key: String,
    entry: FileEntry,
    part_size: u64,
}

impl FileJob {
    /// The manifest's CRC64NVME of the file (`describe_dir` always records it).
    fn crc64nvme(&self) -> Result<String> {
        self.entry
            .crc64nvme
            .clone()
            .with_context(|| format!("the manifest has no CRC64NVME for {}", self.entry.path))
    }
}

/// Shared state of one `upload`: the client, the in-flight bound and the failure flag.
struct Uploader {
    s3: aws_sdk_s3::Client,
    bucket: String,
    /// One permit per request body in flight (a part or a small file), across all files.
    permits: Semaphore,
    /// The number of permits.
    concurrency: usize,
    /// Set by the first failure; nothing new starts after it.
    failed: AtomicBool,
    progress: ProgressBar,
}

impl Uploader {
    /// Uploads one file; returns its number of parts (0 for a single PutObject).
    async fn upload_file(&self, job: FileJob) -> Result<u64> {
        let result = if job.entry.size > job.part_size {
            self.upload_multipart(&job).await
        } else {
            self.upload_single(&job).await.map(|()| 0)
        };
        if let Err(error) = &result {
            if !error.is::<Cancelled>() {
                self.failed.store(true, Ordering::SeqCst);
            }
        }
        result
    }

    /// A permit to send one body, or `Cancelled` once any upload failed.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        let permit = self.permits.acquire().await?;
        if self.failed.load(Ordering::SeqCst) {
            return Err(Cancelled.into());
        }
        Ok(permit)
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// PutObject with the manifest's CRC64NVME, so S3 rejects content that differs from it
    /// and stores it as the object's full-object checksum, the one replicas are verified by.
    async fn upload_single(&self, job: &FileJob) -> Result<()> {
        let _permit = self.permit().await?;
        let (body, _) = read_part(job.local.clone(), 0, job.entry.size).await?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&job.key)
            .content_length(i64::try_from(job.entry.size)?)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(job.crc64nvme()?)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| {
                format!(
                    "uploading {} to {}",
                    job.local.display(),
                    self.uri(&job.key)
                )
            })?;
        self.progress.inc(job.entry.size);
        Ok(())
    }

    /// A multipart upload of type `FULL_OBJECT` with CRC64NVME per part, completed with the
    /// manifest's CRC64NVME of the whole file (S3 checks both); aborted on any failure.
    async fn upload_multipart(&self, job: &FileJob) -> Result<u64> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Cancelled.into());
        }
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&job.key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("starting the multipart upload of {}", self.uri(&job.key)))?;
        let upload_id = created
            .upload_id()
            .context("CreateMultipartUpload returned no upload id")?
            .to_owned();
        let result = self.upload_parts(job, &upload_id).await;
        let Err(error) = result else {
            return result;
        };
        let aborted = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&job.key)
            .upload_id(&upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => Err(error.context(format!(
                "multipart upload of {} aborted",
                self.uri(&job.key)
            ))),
            Err(abort_error) if error.is::<Cancelled>() => Err(anyhow!(
                "aborting the multipart upload {upload_id} of {} after another upload failed: {}",
                self.uri(&job.key),
                DisplayErrorContext(abort_error)
            )),
            Err(abort_error) => Err(error.context(format!(
                "the multipart upload {upload_id} of {} could not be aborted either ({}); \
                 abort it by hand",
                self.uri(&job.key),
                DisplayErrorContext(abort_error)
            ))),
        }
    }

    /// Uploads every part (in parallel, bounded by the permits) and completes the upload.
    /// Stops at the first failure, cancelling the parts in flight.
    async fn upload_parts(&self, job: &FileJob, upload_id: &str) -> Result<u64> {
        let size = job.entry.size;
        let count = size.div_ceil(job.part_size);
        let parts = (1..=count).map(|number| {
            let offset = (number - 1) * job.part_size;
            let length = job.part_size.min(size - offset);
            self.upload_part(job, upload_id, number, offset, length)
        });
        let mut in_flight = stream::iter(parts).buffer_unordered(self.concurrency);
        let mut completed = Vec::new();
        while let Some(part) = in_flight.next().await {
            match part {
                Ok(part) => completed.push(part),
                Err(error) => {
                    if !error.is::<Cancelled>() {
                        self.failed.store(true, Ordering::SeqCst);
                    }
                    return Err(error);
                }
            }
        }
        drop(in_flight);
        completed.sort_by_key(|part: &CompletedPart| part.part_number());
        if self.failed.load(Ordering::SeqCst) {
            return Err(Cancelled.into());
        }
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&job.key)
            .upload_id(upload_id)
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc64_nvme(job.crc64nvme()?)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| {
                format!("completing the multipart upload of {}", self.uri(&job.key))
            })?;
        Ok(count)
    }

    async fn upload_part(
        &self,
        job: &FileJob,
        upload_id: &str,
        number: u64,
        offset: u64,
        length: u64,
    ) -> Result<CompletedPart> {
        let _permit = self.permit().await?;
        let (body, checksum) = read_part(job.local.clone(), offset, length).await?;
        let part_number = i32::try_from(number)?;
        let uploaded = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&job.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(i64::try_from(length)?)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&checksum)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| {
                format!(
                    "uploading part {number} (bytes {offset}..{}) of {} to {}",
                    offset + length,
                    job.local.display(),
                    self.uri(&job.key)
                )
            })?;
        if let Some(returned) = uploaded.checksum_crc64_nvme() {
            if returned != checksum {
                bail!(
                    "S3 stored part {number} of {} with CRC64NVME {returned}, not {checksum}",
                    self.uri(&job.key)
                );
            }
        }
        self.progress.inc(length);
        Ok(CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(uploaded.e_tag().map(str::to_owned))
            .checksum_crc64_nvme(checksum)
            .build())
    }
}

/// Reads `length` bytes at `offset` of a file (off the async threads) and their CRC64NVME,
/// base64 as S3 wants it. Only one part is ever in memory per permit.
async fn read_part(path: PathBuf, offset: u64, length: u64) -> Result<(Vec<u8>, String)> {
    tokio::task::spawn_blocking(move || {
        let read = || -> std::io::Result<Vec<u8>> {
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut buffer = Vec::new();
            let length = usize::try_from(length).map_err(std::io::Error::other)?;
            buffer.try_reserve_exact(length)?;
            file.take(length as u64).read_to_end(&mut buffer)?;
            if buffer.len() != length {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes read, {length} expected: the file shrank",
                        buffer.len()
                    ),
                ));
            }
            Ok(buffer)
        };
        let buffer =
            read().with_context(|| format!("reading {} at byte {offset}", path.display()))?;
        let checksum = meridian::checksum::crc64nvme(&buffer);
        Ok((buffer, checksum))
    })
    .await
    .context("the file reading task failed")?
}
