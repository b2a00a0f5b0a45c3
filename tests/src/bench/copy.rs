//! The fast copy of one multipart file between two regions' buckets on the local S3:
//! Meridian's (`meridian_rollout::copy::copy_file`: parallel `UploadPartCopy` of the
//! fleet's part size, in per-invocation budgets, as the `copy_files` task does) against
//! `aws s3 cp s3://… s3://…` (the AWS CLI's own server-side multipart copy, its defaults),
//! alternating, `RUNS` times each, in one run of one local cloud.
//!
//! The AWS CLI is the one `scripts/tools bench` installs (pinned), found through
//! `$MERIDIAN_AWS_CLI` (`./scripts/bench` sets it). Replication from the primary is turned
//! off (a fault) so that no background copy competes with the timed ones; each copy is
//! deleted, every version of it, before the next.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use meridian::checksum::crc64nvme;
use meridian::copy_plan::{copy_method, CopySettings};
use meridian::manifest::{FileEntry, Manifest, Serving, FORMAT};
use meridian_local::{Functions, LocalCloud};
use sha2::{Digest, Sha256};

use crate::objects::put_full_object_multipart;

const MIB: usize = 1024 * 1024;
/// The source's upload part size (as `meridian upload` stores a shard, in fewer moto calls).
const UPLOAD_PART: usize = 64 * MIB;

/// `./scripts/bench copy [RUNS] [MIB]`.
pub async fn run(args: Vec<String>) -> Result<()> {
    let runs: usize = args.first().map(|n| n.parse()).transpose()?.unwrap_or(3);
    let mib: usize = args.get(1).map(|n| n.parse()).transpose()?.unwrap_or(1024);
    if mib < 128 {
        bail!("the file must be at least 128 MiB (several parts)");
    }
    let aws = aws_cli()?;
    let fleet = crate::example_fleet();
    let cloud = crate::start_cloud_for(fleet, Functions::new(), false).await;
    let (source_region, source_bucket) = (
        cloud.fleet().primary_region.clone(),
        cloud.fleet().primary_bucket.clone(),
    );
    let destination = cloud
        .fleet()
        .regions
        .iter()
        .find(|r| r.name != source_region)
        .context("the fleet has a second region")?
        .clone();
    for region in &cloud.fleet().regions {
        cloud.faults().fail_replication_to(&region.name);
    }

    let (manifest, file) = upload(&cloud, mib).await?;
    let settings = CopySettings::default();
    println!(
        "file: {} MiB in {source_region}, copied to {} ({:?} with the default settings)",
        mib,
        destination.name,
        copy_method(file.size, settings.part_bytes)?
    );
    let key = manifest.object_key(&file);
    let s3 = cloud.clients().s3(&destination.name).await;
    let (mut meridian, mut cli) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let started = Instant::now();
        let invocations = meridian_rollout::copy::copy_file(
            s3.clone(),
            &source_bucket,
            &destination.bucket,
            &manifest,
            &file,
            settings,
        )
        .await?;
        meridian.push(started.elapsed().as_secs_f64());
        check_and_delete(&s3, &destination.bucket, &key, file.size).await?;

        let started = Instant::now();
        aws_s3_cp(
            &aws,
            &cloud.endpoint_url(),
            &destination.name,
            &format!("s3://{source_bucket}/{key}"),
            &format!("s3://{}/{key}", destination.bucket),
        )?;
        cli.push(started.elapsed().as_secs_f64());
        check_and_delete(&s3, &destination.bucket, &key, file.size).await?;
        println!(
            "run {run}/{runs}: Meridian's fast copy {:.3} s ({invocations} invocation(s)), \
             aws s3 cp {:.3} s",
            meridian[run - 1],
            cli[run - 1]
        );
    }
    let (meridian_median, meridian_line) = crate::bench::summary(&meridian);
    let (cli_median, cli_line) = crate::bench::summary(&cli);
    println!("\ncopy {mib} MiB between two regions' buckets ({runs} runs each):");
    println!("  Meridian's fast copy  {meridian_line}");
    println!("  aws s3 cp             {cli_line}");
    println!(
        "  aws s3 cp / fast copy: {:.2}x (medians); fast copy {:.0} MiB/s",
        cli_median / meridian_median,
        mib as f64 / meridian_median
    );
    cloud.shutdown().await
}

/// The AWS CLI `scripts/tools bench` installed.
fn aws_cli() -> Result<PathBuf> {
    let path = std::env::var_os("MERIDIAN_AWS_CLI")
        .map(PathBuf::from)
        .context("MERIDIAN_AWS_CLI is not set: run the benchmark as ./scripts/bench copy")?;
    if !path.is_file() {
        bail!("no AWS CLI at {}", path.display());
    }
    Ok(path)
}

fn aws_s3_cp(aws: &PathBuf, endpoint: &str, region: &str, from: &str, to: &str) -> Result<()> {
    let output = std::process::Command::new(aws)
        .args(["s3", "cp", from, to, "--only-show-errors"])
        .args(["--endpoint-url", endpoint, "--region", region])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .context("running aws s3 cp")?;
    if !output.status.success() {
        bail!(
            "aws s3 cp failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Checks the copy's size, then deletes every version of it (the buckets are versioned).
async fn check_and_delete(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    size: u64,
) -> Result<()> {
    let head = s3.head_object().bucket(bucket).key(key).send().await?;
    if head.content_length() != Some(size as i64) {
        bail!(
            "the copy of {key} has {:?} bytes, not {size}",
            head.content_length()
        );
    }
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await?;
    for version in versions.versions().iter().filter(|v| v.key() == Some(key)) {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.version_id().map(str::to_owned))
            .send()
            .await?;
    }
    Ok(())
}

/// One file of `mib` MiB of pseudo-random bytes, uploaded as `meridian upload` stores a
/// shard (multipart, full-object CRC64NVME), and a manifest listing it.
async fn upload(cloud: &LocalCloud, mib: usize) -> Result<(Manifest, FileEntry)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..mib * MIB / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let file = FileEntry {
        path: "weights/shard-00001.safetensors".into(),
        size: body.len() as u64,
        sha256: hex::encode(Sha256::digest(&body)),
        crc64nvme: Some(crc64nvme(&body)),
    };
    let manifest = Manifest {
        format: FORMAT,
        model: "bench-copy".into(),
        version: "1".into(),
        files: vec![file.clone()],
        serving: Serving {
            image: "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:latest".into(),
            images: Default::default(),
            instance_type: "ml.g5.2xlarge".into(),
            instance_count: 2,
            variant_name: None,
            environment: Default::default(),
            smoke_test: None,
        },
    };
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    let started = Instant::now();
    put_full_object_multipart(
        &s3,
        &fleet.primary_bucket,
        &manifest.object_key(&file),
        &body,
        UPLOAD_PART,
    )
    .await;
    println!(
        "uploaded in {:.1} s",
        Duration::as_secs_f64(&started.elapsed())
    );
    Ok((manifest, file))
}
