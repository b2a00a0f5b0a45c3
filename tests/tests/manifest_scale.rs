//! Manifests at the documented limits (docs/manifest.md) register and roll out: 10,000
//! files, and long paths that make the manifest larger than a DynamoDB item (400 KB).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use meridian::fleet::Fleet;
use meridian::manifest::{manifest_key, FileEntry, Manifest, Serving, FORMAT};
use meridian::registry::{Registry, VersionStatus};
use meridian_local::{Functions, LocalCloud, LocalCloudConfig};
use meridian_tests::{eventually, example_fleet, start_cloud_for, start_cloud_with, test_config};
use sha2::{Digest, Sha256};

/// Objects put at once.
const PUT_CONCURRENCY: usize = 32;

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    fleet.rollout.replica_timeout = Duration::from_secs(600);
    fleet
}

fn serving(instance_count: u32) -> Serving {
    Serving {
        image:
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:latest"
                .into(),
        instance_type: "ml.g5.2xlarge".into(),
        instance_count,
        variant_name: None,
        environment: Default::default(),
        images: Default::default(),
        smoke_test: None,
    }
}

/// A manifest of tiny files at `paths`, each holding its own index, with the CRC64NVME
/// `meridian upload` records.
fn manifest_of(version: &str, paths: Vec<String>) -> (Manifest, Vec<Vec<u8>>) {
    let bodies: Vec<Vec<u8>> = (0..paths.len())
        .map(|i| format!("{i}").into_bytes())
        .collect();
    let files = paths
        .into_iter()
        .zip(&bodies)
        .map(|(path, body)| FileEntry {
            path,
            size: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
            crc64nvme: Some(meridian::checksum::crc64nvme(body)),
        })
        .collect();
    let manifest = Manifest {
        format: FORMAT,
        model: "llama".into(),
        version: version.into(),
        files,
        serving: serving(1),
    };
    (manifest, bodies)
}

/// Puts every file with its CRC64NVME (as `meridian upload` does), then the manifest last.
async fn upload(cloud: &LocalCloud, manifest: &Manifest, bodies: &[Vec<u8>]) {
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    let puts: Vec<_> = manifest
        .files
        .iter()
        .zip(bodies)
        .map(|(file, body)| {
            let (s3, key) = (s3.clone(), manifest.object_key(file));
            let bucket = fleet.primary_bucket.clone();
            async move {
                s3.put_object()
                    .bucket(bucket)
                    .key(key)
                    .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
                    .body(body.clone().into())
                    .send()
                    .await
                    .map(drop)
            }
        })
        .collect();
    let failures = stream::iter(puts)
        .buffer_unordered(PUT_CONCURRENCY)
        .filter(|put| std::future::ready(put.is_err()))
        .count()
        .await;
    assert_eq!(failures, 0, "every file uploaded");
    put_manifest(cloud, manifest).await;
}

async fn put_manifest(cloud: &LocalCloud, manifest: &Manifest) {
    let fleet = cloud.fleet();
    cloud
        .clients()
        .s3(&fleet.primary_region)
        .await
        .put_object()
        .bucket(&fleet.primary_bucket)
        .key(manifest_key(&manifest.model, &manifest.version))
        .body(manifest.to_json_pretty().into_bytes().into())
        .send()
        .await
        .expect("put manifest");
}

async fn registry(cloud: &LocalCloud) -> Registry {
    Registry {
        client: aws_sdk_dynamodb::Client::new(
            &cloud.clients().config(&cloud.fleet().primary_region).await,
        ),
        table: cloud.fleet().registry_table.clone(),
    }
}

/// The documented maximum, end to end: 10,000 files put (with the CRC64NVME `meridian
/// upload` records), replicated to every region, registered, each replica verified by its
/// checksum without a byte read, and rolled out. The slowest test here (about ten minutes
/// on two cores): every object costs the local cloud's one moto process a dozen calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_of_10000_files_registers_and_rolls_out() {
    // Schedules at AWS's pace: at the tests' usual 60-fold speed-up each region's failback
    // would run every second, an eighth of moto's work beside this test. Nothing here
    // waits on a schedule.
    let config = LocalCloudConfig {
        schedule_speedup: 1,
        ..test_config()
    };
    let cloud = start_cloud_with(config, fleet(), Functions::new(), true).await;
    let paths = (0..10_000)
        .map(|i| format!("shards/{:02}/part-{i:05}.bin", i % 100))
        .collect();
    let (manifest, bodies) = manifest_of("1", paths);
    let started = Instant::now();
    upload(&cloud, &manifest, &bodies).await;
    let uploaded = started.elapsed();
    let registry = registry(&cloud).await;
    let record = eventually(
        "the 10,000-file version to settle",
        Duration::from_secs(1800),
        || async {
            let record = registry.version("llama", "1").await.ok()??;
            matches!(record.status, VersionStatus::Active | VersionStatus::Failed).then_some(record)
        },
    )
    .await;
    eprintln!(
        "10,000 files: uploaded in {uploaded:?}, rolled out in {:?} after the upload",
        started.elapsed() - uploaded
    );
    assert_eq!(record.status, VersionStatus::Active, "{:?}", record.reason);
    assert_eq!(record.manifest.files, 10_000);
    assert_eq!(record.digest, manifest.canonical_digest());
    for region in &cloud.fleet().regions {
        let checks = registry
            .region_checks(("llama", "1"), &region.name)
            .await
            .expect("read the region's checks");
        assert_eq!(
            (checks.by_checksum.len(), checks.by_hash.len()),
            (10_000, 0),
            "{}: every replica verified by its CRC64NVME, none read",
            region.name
        );
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_larger_than_a_dynamodb_item_registers_and_a_different_one_is_refused() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    // 450 paths of 886 bytes (the limit is 900): a manifest of about 0.44 MB.
    let segment = |c: char| c.to_string().repeat(219);
    let paths = (0..450)
        .map(|i| {
            format!(
                "{}/{}/{}/{}/f-{i:04}",
                segment('a'),
                segment('b'),
                segment('c'),
                segment('d')
            )
        })
        .collect();
    let (manifest, bodies) = manifest_of("1", paths);
    let size = manifest.to_json_pretty().len();
    assert!(size > 400 * 1024, "the manifest is {size} bytes");
    upload(&cloud, &manifest, &bodies).await;
    let registry = registry(&cloud).await;
    let record = eventually(
        "the version to register",
        Duration::from_secs(120),
        || async { registry.version("llama", "1").await.ok()? },
    )
    .await;
    assert_eq!(record.digest, manifest.canonical_digest());
    assert_eq!(record.manifest.files, 450);

    let mut different = manifest.clone();
    different.serving = serving(2);
    put_manifest(&cloud, &different).await;
    let rejections = eventually(
        "the different manifest to be refused and recorded",
        Duration::from_secs(120),
        || async {
            let rejections = registry.rejections("llama").await.ok()?;
            (!rejections.is_empty()).then_some(rejections)
        },
    )
    .await;
    assert!(
        rejections[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("immutable")),
        "{rejections:?}"
    );
    let kept = registry
        .version("llama", "1")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(
        kept.digest,
        manifest.canonical_digest(),
        "the version is intact"
    );
    cloud.shutdown().await.expect("shutdown");
}
