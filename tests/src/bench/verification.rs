//! Replica verification by S3's full-object checksum (`HeadObject`) against reading and
//! hashing (the fallback), on one replicated model of at least 1 GiB in three regions.
//!
//! It starts a local cloud of the example fleet with Meridian's functions, uploads a model
//! as `meridian upload` stores it (CRC64NVME; the shards multipart of type `FULL_OBJECT`),
//! waits for its rollout (replication to the three regional buckets, every replica
//! verified), then times, `RUNS` times in alternation, the replica function's check
//! (`meridian_replica::check_file`, as wired in Lambda) of every file in all three regions
//! at once: with the manifest (checksums) and with the same manifest without them (an older
//! manifest: every replica read and hashed). One untimed round of each comes first (the
//! local cloud computes an object's CRC64NVME on its first checksum read, where S3 does at
//! write: `local/EMULATIONS.md`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_s3::types::ChecksumAlgorithm;
use futures::stream::{self, StreamExt, TryStreamExt};
use meridian::checksum::crc64nvme;
use meridian::manifest::{manifest_key, FileEntry, Manifest, Serving, FORMAT};
use meridian::names::FunctionRole;
use meridian::registry::{Registry, VersionStatus};
use meridian_local::{Functions, LocalCloud};
use meridian_replica::ReplicaDeps;
use sha2::{Digest, Sha256};

use crate::objects::put_full_object_multipart;

const MIB: usize = 1024 * 1024;
/// The part size of the multipart shards (`meridian upload`'s default is 16 MiB; larger
/// parts cost moto fewer calls).
const PART: usize = 64 * MIB;
/// Replicas checked at once per region, as the replica function does.
const CONCURRENCY: usize = 8;

/// `./scripts/bench verification [RUNS] [MIB]`.
pub async fn run(args: Vec<String>) -> Result<()> {
    let runs: usize = args.first().map(|n| n.parse()).transpose()?.unwrap_or(5);
    let mib: usize = args.get(1).map(|n| n.parse()).transpose()?.unwrap_or(1024);
    if mib < 64 {
        bail!("the model must be at least 64 MiB");
    }
    let mut fleet = crate::example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    fleet.rollout.replica_timeout = Duration::from_secs(1800);
    let cloud = crate::start_cloud_for(fleet, Functions::new(), true).await;

    let files = model_files(mib);
    let total: usize = files.iter().map(|(_, body)| body.len()).sum();
    println!(
        "model: {} files, {:.0} MiB ({} multipart of {} MiB parts), in 3 regions",
        files.len(),
        total as f64 / MIB as f64,
        files.iter().filter(|(_, b)| b.len() > PART).count(),
        PART / MIB
    );
    let started = Instant::now();
    let manifest = upload(&cloud, &files).await?;
    drop(files);
    wait_active(&cloud, &manifest).await?;
    println!(
        "uploaded, replicated and rolled out in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut old = manifest.clone();
    for file in &mut old.files {
        file.crc64nvme = None;
    }
    verify_everywhere(&cloud, &manifest).await?;
    verify_everywhere(&cloud, &old).await?;
    let (mut by_checksum, mut by_hashing) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        by_checksum.push(verify_everywhere(&cloud, &manifest).await?);
        by_hashing.push(verify_everywhere(&cloud, &old).await?);
        println!(
            "run {run}/{runs}: checksum {:.3} s, read and hash {:.3} s",
            by_checksum[run - 1],
            by_hashing[run - 1]
        );
    }
    let (checksum, checksum_line) = crate::bench::summary(&by_checksum);
    let (hashing, hashing_line) = crate::bench::summary(&by_hashing);
    println!("\nverify every replica in 3 regions ({runs} runs each):");
    println!("  by S3's checksum (HeadObject)  {checksum_line}");
    println!("  by reading and hashing         {hashing_line}");
    println!(
        "  read and hash / checksum: {:.0}x (medians); hashing read {:.0} MiB/s",
        hashing / checksum,
        3.0 * total as f64 / MIB as f64 / hashing
    );
    cloud.shutdown().await
}

/// The model's files: two multipart shards, one single-part shard and a config, `mib` MiB
/// (and a few bytes) in all, of pseudo-random bytes.
fn model_files(mib: usize) -> Vec<(String, Vec<u8>)> {
    let single = (48 * MIB).min(mib * MIB / 4);
    let multipart = (mib * MIB - single) / 2;
    let shards = [
        ("weights/shard-00001.safetensors", multipart),
        (
            "weights/shard-00002.safetensors",
            mib * MIB - single - multipart,
        ),
        ("weights/shard-00003.safetensors", single),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut files: Vec<(String, Vec<u8>)> = shards
        .iter()
        .map(|(path, size)| {
            let body = (0..size.div_ceil(8))
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()
                })
                .take(*size)
                .collect();
            ((*path).to_owned(), body)
        })
        .collect();
    files.push(("config.json".into(), b"{\"bench\": true}".to_vec()));
    files
}

/// Uploads the files as `meridian upload` stores them, then the manifest.
async fn upload(cloud: &LocalCloud, files: &[(String, Vec<u8>)]) -> Result<Manifest> {
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    let manifest = Manifest {
        format: FORMAT,
        model: "bench".into(),
        version: "1".into(),
        files: files
            .iter()
            .map(|(path, body)| FileEntry {
                path: path.clone(),
                size: body.len() as u64,
                sha256: hex::encode(Sha256::digest(body)),
                crc64nvme: Some(crc64nvme(body)),
            })
            .collect(),
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
    manifest.validate()?;
    for (file, (_, body)) in manifest.files.iter().zip(files) {
        let key = manifest.object_key(file);
        if body.len() > PART {
            put_full_object_multipart(&s3, &fleet.primary_bucket, &key, body, PART).await;
        } else {
            s3.put_object()
                .bucket(&fleet.primary_bucket)
                .key(&key)
                .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                .body(body.clone().into())
                .send()
                .await
                .with_context(|| format!("uploading {key}"))?;
        }
    }
    s3.put_object()
        .bucket(&fleet.primary_bucket)
        .key(manifest_key(&manifest.model, &manifest.version))
        .body(manifest.to_json_pretty().into_bytes().into())
        .send()
        .await
        .context("uploading the manifest")?;
    Ok(manifest)
}

async fn wait_active(cloud: &LocalCloud, manifest: &Manifest) -> Result<()> {
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(
            &cloud.clients().config(&cloud.fleet().primary_region).await,
        ),
        table: cloud.fleet().registry_table.clone(),
    };
    let record = crate::eventually("the rollout", Duration::from_secs(1800), || async {
        let record = registry
            .version(&manifest.model, &manifest.version)
            .await
            .ok()??;
        matches!(record.status, VersionStatus::Active | VersionStatus::Failed).then_some(record)
    })
    .await;
    if record.status != VersionStatus::Active {
        bail!("the rollout failed: {:?}", record.reason);
    }
    Ok(())
}

/// Seconds to check every replica of `manifest` in all three regions at once, each region
/// by its own replica function; every check must pass.
async fn verify_everywhere(cloud: &LocalCloud, manifest: &Manifest) -> Result<f64> {
    let clients = cloud.clients().for_function(FunctionRole::Replica);
    let mut regions = Vec::new();
    for region in &cloud.fleet().regions {
        let deps = ReplicaDeps::new(&clients, cloud.fleet().clone(), region.name.clone()).await;
        regions.push((deps, region.bucket.clone()));
    }
    let started = Instant::now();
    futures::future::try_join_all(regions.iter().map(|(deps, bucket)| {
        stream::iter(&manifest.files)
            .map(move |file| async move {
                let found = meridian_replica::check_file(deps, manifest, bucket, file)
                    .await?
                    .with_context(|| format!("{} is missing in {bucket}", file.path))?;
                if let meridian_replica::Found::Failed(check) = found {
                    bail!("{} in {bucket}: {}", check.path, check.detail);
                }
                Ok(())
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
    }))
    .await?;
    Ok(started.elapsed().as_secs_f64())
}
