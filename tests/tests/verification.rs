//! Replica verification at the speed of metadata, end to end on the local cloud: a replica
//! whose S3 full-object CRC64NVME matches the manifest's is verified by `HeadObject` without
//! reading it; one whose checksum differs is refused with the reason; files without a
//! full-object checksum (or a manifest without checksums) are read and hashed, at most a
//! bounded number of bytes per invocation, the rest by the event's retry.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::types::ChecksumAlgorithm;
use meridian::fleet::Fleet;
use meridian::function::invoke;
use meridian::manifest::{describe_dir, manifest_key, Manifest, Serving};
use meridian::names::{function_name, FunctionRole};
use meridian::registry::{Registry, VersionRecord, VersionStatus};
use meridian::replica_record::Verification;
use meridian_local::calls::ApiCall;
use meridian_local::{Functions, Invocation, LocalCloud};
use meridian_replica::ReplicaDeps;
use meridian_tests::objects::{put_full_object_multipart, MIN_PART};
use meridian_tests::{eventually, example_fleet, start_cloud_for, start_cloud_with, test_config};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(90);
const MIB: usize = 1024 * 1024;

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    // Longer than any test here takes, so the fast copy never stands in for verification.
    fleet.rollout.replica_timeout = Duration::from_secs(300);
    fleet
}

fn serving() -> Serving {
    Serving {
        image:
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:latest"
                .into(),
        images: Default::default(),
        instance_type: "ml.g5.2xlarge".into(),
        instance_count: 2,
        variant_name: None,
        environment: Default::default(),
        smoke_test: None,
    }
}

/// A version folder: a multipart shard (three parts), a 2 MiB shard and a small config.
fn model_dir(seed: u8) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("weights")).expect("mkdir");
    for (name, size) in [
        ("weights/shard-1.safetensors", 2 * MIN_PART + MIB),
        ("weights/shard-2.safetensors", 2 * MIB),
    ] {
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
            .collect();
        std::fs::write(dir.path().join(name), bytes).expect("write shard");
    }
    std::fs::write(
        dir.path().join("config.json"),
        format!("{{\"seed\": {seed}}}"),
    )
    .expect("write config");
    dir
}

/// How the files reach the primary bucket.
#[derive(Clone, Copy, PartialEq)]
enum Stored {
    /// As `meridian upload` stores them: CRC64NVME, multipart of type `FULL_OBJECT`.
    Crc64Nvme,
    /// With the SDK's default checksum (CRC32), as other tools may: no full-object
    /// CRC64NVME, so replicas are read and hashed.
    Crc32,
}

/// Uploads the folder's files, then its manifest (with or without checksums) last.
async fn upload(
    cloud: &LocalCloud,
    dir: &Path,
    version: &str,
    stored: Stored,
    with_checksums: bool,
) -> Manifest {
    let mut manifest = describe_dir(dir, "llama", version, serving()).expect("manifest");
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    for file in &manifest.files {
        let body = std::fs::read(dir.join(&file.path)).expect("read file");
        let key = manifest.object_key(file);
        match stored {
            Stored::Crc64Nvme if body.len() > MIN_PART => {
                put_full_object_multipart(&s3, &fleet.primary_bucket, &key, &body, MIN_PART).await
            }
            Stored::Crc64Nvme => {
                s3.put_object()
                    .bucket(&fleet.primary_bucket)
                    .key(&key)
                    .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                    .body(body.into())
                    .send()
                    .await
                    .expect("put file");
            }
            Stored::Crc32 => {
                s3.put_object()
                    .bucket(&fleet.primary_bucket)
                    .key(&key)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(body.into())
                    .send()
                    .await
                    .expect("put file");
            }
        }
    }
    if !with_checksums {
        for file in &mut manifest.files {
            file.crc64nvme = None;
        }
    }
    s3.put_object()
        .bucket(&fleet.primary_bucket)
        .key(manifest_key("llama", version))
        .body(manifest.to_json_pretty().into_bytes().into())
        .send()
        .await
        .expect("put manifest");
    manifest
}

async fn registry(cloud: &LocalCloud, region: &str) -> Registry {
    Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(region).await),
        table: cloud.fleet().registry_table.clone(),
    }
}

async fn settled(cloud: &LocalCloud, version: &str) -> VersionRecord {
    let registry = registry(cloud, &cloud.fleet().primary_region).await;
    eventually(&format!("llama/{version} to settle"), WITHIN, || async {
        let record = registry.version("llama", version).await.ok()??;
        matches!(record.status, VersionStatus::Active | VersionStatus::Failed).then_some(record)
    })
    .await
}

/// How every file was verified in every region: (region, file index, how); no check
/// failed.
async fn checks(cloud: &LocalCloud, version: &str) -> Vec<(String, usize, Verification)> {
    let mut all = Vec::new();
    for region in &cloud.fleet().regions {
        let registry = registry(cloud, &region.name).await;
        let checks = registry
            .region_checks(("llama", version), &region.name)
            .await
            .expect("replica checks");
        assert!(checks.failed.is_empty(), "{}: {checks:?}", region.name);
        for index in &checks.by_checksum {
            all.push((region.name.clone(), *index, Verification::Checksum));
        }
        for index in &checks.by_hash {
            all.push((region.name.clone(), *index, Verification::Hash));
        }
    }
    all
}

/// The `Object Created` event of `key` in `region`'s bucket.
fn object_created(cloud: &LocalCloud, region: &str, key: &str) -> Value {
    let bucket = cloud
        .fleet()
        .region(region)
        .expect("a fleet region")
        .bucket
        .clone();
    json!({
        "version": "0", "id": format!("evt-{region}-{key}"), "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "region": region, "resources": [],
        "detail": { "bucket": { "name": bucket }, "object": { "key": key } }
    })
}

/// The replica function's S3 calls since `before`, by operation, in `region`.
fn replica_s3_calls(
    cloud: &LocalCloud,
    before: &BTreeMap<ApiCall, u64>,
    region: &str,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (call, count) in cloud.api_call_counts() {
        let replica = call.caller.as_deref() == Some("meridian-replica");
        if replica && call.service == "s3" && call.region == region {
            let grown = count - before.get(&call).copied().unwrap_or(0);
            if grown > 0 {
                *counts.entry(call.operation.clone()).or_default() += grown;
            }
        }
    }
    counts
}

/// A cloud whose hosted replica function does nothing, so that the test runs the real one
/// (`ReplicaDeps`, as wired in Lambda) invocation by invocation and sees each one's calls.
async fn cloud_with_held_replica_events() -> meridian_tests::TestCloud {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    cloud.functions().register(
        function_name(&cloud.fleet().name, FunctionRole::Replica),
        |_: Invocation| async { Ok(json!({ "held": "by the test" })) },
    );
    cloud
}

/// Waits until every file and the manifest are replicated to `region` and the version is
/// registered there.
async fn replicated(cloud: &LocalCloud, manifest: &Manifest, region: &str) {
    let bucket = cloud.fleet().region(region).expect("region").bucket.clone();
    let s3 = cloud.clients().s3(region).await;
    let mut keys: Vec<String> = manifest
        .files
        .iter()
        .map(|f| manifest.object_key(f))
        .collect();
    keys.push(manifest_key(&manifest.model, &manifest.version));
    let registry = registry(cloud, region).await;
    eventually(&format!("the replicas in {region}"), WITHIN, || {
        let (s3, keys, bucket, registry) = (&s3, &keys, &bucket, &registry);
        async move {
            for key in keys {
                s3.head_object().bucket(bucket).key(key).send().await.ok()?;
            }
            registry
                .version(&manifest.model, &manifest.version)
                .await
                .ok()?
                .map(drop)
        }
    })
    .await;
}

/// The replica function of `region`, as Lambda wires it, hashing at most `budget` bytes.
async fn replica_function(cloud: &LocalCloud, region: &str, budget: u64) -> ReplicaDeps {
    let clients = cloud.clients().for_function(FunctionRole::Replica);
    let mut deps = ReplicaDeps::new(&clients, cloud.fleet().clone(), region.to_owned()).await;
    deps.hash_budget = budget;
    deps
}

/// The manifest's arrival in each region, handled by the real replica function; returns
/// each region's replica S3 calls.
async fn manifest_arrives_everywhere(
    cloud: &LocalCloud,
    manifest: &Manifest,
) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut calls = BTreeMap::new();
    for region in cloud.fleet().regions.clone() {
        replicated(cloud, manifest, &region.name).await;
        let deps = replica_function(cloud, &region.name, u64::MAX).await;
        let before = cloud.api_call_counts();
        let event = object_created(
            cloud,
            &region.name,
            &manifest_key("llama", &manifest.version),
        );
        let outcome = invoke(&deps, event).await;
        assert!(
            outcome.result.is_ok(),
            "{}: {:?}",
            region.name,
            outcome.result
        );
        calls.insert(
            region.name.clone(),
            replica_s3_calls(cloud, &before, &region.name),
        );
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_the_manifests_checksum_are_verified_without_reading_a_byte() {
    let cloud = cloud_with_held_replica_events().await;
    let dir = model_dir(1);
    let manifest = upload(&cloud, dir.path(), "1", Stored::Crc64Nvme, true).await;
    let calls = manifest_arrives_everywhere(&cloud, &manifest).await;
    for (region, calls) in &calls {
        assert_eq!(
            calls.get("GetObject").copied(),
            Some(1),
            "{region}: only manifest.json is read, no replica: {calls:?}"
        );
        assert_eq!(
            calls.get("HeadObject").copied(),
            Some(manifest.files.len() as u64),
            "{region}: one HeadObject per file: {calls:?}"
        );
    }
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    let checks = checks(&cloud, "1").await;
    assert_eq!(checks.len(), 3 * manifest.files.len());
    for (region, file, how) in checks {
        assert_eq!(how, Verification::Checksum, "{region} file {file}");
    }
    // A data file's late event in a settled region stops at the verdict: it does not call
    // Step Functions with the spent token (10,000 late events would be 10,000 calls).
    let deps = replica_function(&cloud, "eu-west-1", u64::MAX).await;
    let before = cloud.api_call_counts();
    let late = object_created(
        &cloud,
        "eu-west-1",
        &manifest.object_key(&manifest.files[0]),
    );
    let outcome = invoke(&deps, late).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let step_functions_calls: u64 = cloud
        .api_call_counts()
        .iter()
        .filter(|(call, _)| {
            call.caller.as_deref() == Some("meridian-replica") && call.service == "states"
        })
        .map(|(call, count)| count - before.get(call).copied().unwrap_or(0))
        .sum();
    assert_eq!(step_functions_calls, 0, "a late file event resumed nothing");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_manifest_without_checksums_is_verified_by_reading_and_hashing() {
    let cloud = cloud_with_held_replica_events().await;
    let dir = model_dir(2);
    let manifest = upload(&cloud, dir.path(), "1", Stored::Crc64Nvme, false).await;
    let calls = manifest_arrives_everywhere(&cloud, &manifest).await;
    for (region, calls) in &calls {
        assert_eq!(
            calls.get("GetObject").copied(),
            Some(1 + manifest.files.len() as u64),
            "{region}: manifest.json and every replica are read: {calls:?}"
        );
    }
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    for (region, file, how) in checks(&cloud, "1").await {
        assert_eq!(how, Verification::Hash, "{region} file {file}");
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_without_a_full_object_checksum_are_hashed_a_bounded_slice_per_invocation() {
    let cloud = cloud_with_held_replica_events().await;
    let dir = model_dir(3);
    let manifest = upload(&cloud, dir.path(), "1", Stored::Crc32, true).await;
    // 12 MiB: the config and the multipart shard (11 MiB) in the first invocation, the
    // 2 MiB shard left to the next.
    let budget = (12 * MIB) as u64;
    for region in cloud.fleet().regions.clone() {
        replicated(&cloud, &manifest, &region.name).await;
        let deps = replica_function(&cloud, &region.name, budget).await;
        let event = object_created(&cloud, &region.name, &manifest_key("llama", "1"));
        let mut hashed_per_invocation = Vec::new();
        for attempt in 1..=3 {
            let before = cloud.api_call_counts();
            let outcome = invoke(&deps, event.clone()).await;
            let calls = replica_s3_calls(&cloud, &before, &region.name);
            // manifest.json is read once per warm function, on its first invocation.
            let manifest_reads = u64::from(attempt == 1);
            hashed_per_invocation
                .push(calls.get("GetObject").copied().unwrap_or(0) - manifest_reads);
            match outcome.result {
                Ok(_) => break,
                Err(error) => {
                    assert_eq!(
                        meridian::NamedError::error_name(&error),
                        "Meridian.Retryable",
                        "{error}"
                    );
                    assert!(error.to_string().contains("left to hash"), "{error}");
                }
            }
        }
        assert_eq!(
            hashed_per_invocation,
            [2, 1],
            "{}: the config and the 11 MiB shard, then the 2 MiB shard",
            region.name
        );
    }
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    for (region, file, how) in checks(&cloud, "1").await {
        assert_eq!(how, Verification::Hash, "{region} file {file}");
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_alone_finish_a_model_larger_than_one_invocations_hashing_budget() {
    let mut config = test_config();
    // Each file in an invocation of its own (at least one file each time): three
    // invocations, the event's first attempt and Lambda's two retries.
    config.replica_hash_budget = 1;
    let cloud = start_cloud_with(config, fleet(), Functions::new(), true).await;
    let dir = model_dir(4);
    upload(&cloud, dir.path(), "1", Stored::Crc32, true).await;
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_checksum_differs_is_refused_with_the_reason() {
    let cloud = cloud_with_held_replica_events().await;
    let dir = model_dir(5);
    let manifest = upload(&cloud, dir.path(), "1", Stored::Crc64Nvme, true).await;
    replicated(&cloud, &manifest, "eu-west-1").await;
    // The 2 MiB shard's replica overwritten with other bytes of the same size, by a client
    // that names CRC64NVME: S3 keeps the CRC64NVME of what it was given.
    let file = manifest
        .files
        .iter()
        .find(|f| f.path == "weights/shard-2.safetensors")
        .expect("the shard");
    let mut other = std::fs::read(dir.path().join(&file.path)).expect("read shard");
    other[0] = other[0].wrapping_add(1);
    let bucket = cloud
        .fleet()
        .region("eu-west-1")
        .expect("region")
        .bucket
        .clone();
    cloud
        .clients()
        .s3("eu-west-1")
        .await
        .put_object()
        .bucket(&bucket)
        .key(manifest.object_key(file))
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .body(other.clone().into())
        .send()
        .await
        .expect("overwrite the replica");

    let deps = replica_function(&cloud, "eu-west-1", u64::MAX).await;
    let before = cloud.api_call_counts();
    let event = object_created(&cloud, "eu-west-1", &manifest_key("llama", "1"));
    let outcome = invoke(&deps, event).await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let calls = replica_s3_calls(&cloud, &before, "eu-west-1");
    assert_eq!(
        calls.get("GetObject").copied(),
        Some(1),
        "no replica read: {calls:?}"
    );

    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.unwrap_or_default();
    let expected = format!(
        "weights/shard-2.safetensors: CRC64NVME {} (S3's full-object checksum of the replica), \
         manifest says {}",
        meridian::checksum::crc64nvme(&other),
        file.crc64nvme.as_deref().unwrap_or_default()
    );
    assert!(
        reason.contains("eu-west-1") && reason.contains(&expected),
        "{reason}"
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_whose_object_created_events_are_all_lost_are_verified_by_the_replica_schedule() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    let mut deps = BTreeMap::new();
    for region in &cloud.fleet().regions {
        let replica = replica_function(&cloud, &region.name, u64::MAX).await;
        deps.insert(region.name.clone(), std::sync::Arc::new(replica));
    }
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = lost.clone();
    // Every Object Created event is lost; only the schedule's ticks reach the function.
    cloud.functions().register(
        function_name(&cloud.fleet().name, FunctionRole::Replica),
        move |invocation: Invocation| {
            let (deps, lost) = (deps.clone(), counter.clone());
            async move {
                if invocation.payload["detail-type"] != "Scheduled Event" {
                    lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(json!({ "lost": "by the test" }));
                }
                let replica = deps.get(&invocation.region).expect("a fleet region");
                let outcome = invoke(&**replica, invocation.payload).await;
                outcome.result.map_err(|error| {
                    meridian_local::FunctionError::new(
                        meridian::NamedError::error_name(&error),
                        error.to_string(),
                    )
                })
            }
        },
    );
    let dir = model_dir(5);
    let manifest = upload(&cloud, dir.path(), "1", Stored::Crc64Nvme, true).await;
    // Within WITHIN (90 s), well before the 300 s replica timeout and its fast copy.
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    let lost = lost.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        lost >= 3 * (manifest.files.len() + 1),
        "every replica's event was lost ({lost})"
    );
    let checks = checks(&cloud, "1").await;
    assert_eq!(checks.len(), 3 * manifest.files.len(), "{checks:?}");
    assert!(checks
        .iter()
        .all(|(_, _, how)| *how == Verification::Checksum));
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sweep_runs_at_a_time_until_its_claim_ends_or_expires() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    let registry = registry(&cloud, "eu-west-1").await;
    let (rollout, region) = (("llama", "1"), "eu-west-1");
    let lease = Duration::from_secs(900);
    let now = chrono::Utc::now();
    let claim = |at| registry.claim_sweep(rollout, region, at, lease);
    assert!(claim(now).await.expect("claim"), "the first sweep");
    assert!(!claim(now).await.expect("claim"), "a second sweep waits");
    assert!(
        registry
            .claim_sweep(("llama", "2"), region, now, lease)
            .await
            .expect("claim"),
        "another version's sweep is its own"
    );
    let expired = now + chrono::Duration::seconds(901);
    assert!(
        claim(expired).await.expect("claim"),
        "a claim past its lease (a sweep that died) is taken over"
    );
    registry
        .release_sweep(rollout, region)
        .await
        .expect("release");
    assert!(claim(now).await.expect("claim"), "a released claim");
    cloud.shutdown().await.expect("shutdown");
}
