//! The model rollout end to end on the local cloud: upload once, every region serves the
//! new version, or none does.

use std::path::Path;
use std::time::Duration;

use meridian::fleet::Fleet;
use meridian::manifest::{describe_dir, manifest_key, Manifest, Serving};
use meridian::registry::{Registry, VersionRecord, VersionStatus};
use meridian::rollout::deployment_name;
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for};

const WITHIN: Duration = Duration::from_secs(90);

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    fleet.rollout.replica_timeout = Duration::from_secs(20);
    fleet
}

async fn start() -> LocalCloud {
    start_cloud_for(fleet(), Functions::new(), true).await
}

/// A model version folder with a few files of several MiB.
fn model_dir(seed: u8) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("weights")).expect("mkdir");
    for (name, mib) in [
        ("weights/shard-1.safetensors", 3usize),
        ("weights/shard-2.safetensors", 2),
    ] {
        let bytes: Vec<u8> = (0..mib * 1024 * 1024)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
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

fn serving() -> Serving {
    Serving {
        image:
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:latest"
                .into(),
        instance_type: "ml.g5.2xlarge".into(),
        instance_count: 1,
        variant_name: "primary".into(),
        environment: Default::default(),
    }
}

/// Uploads the files, then the manifest last, as `aws s3 cp` plus `meridian manifest` would.
async fn upload(cloud: &LocalCloud, dir: &Path, model: &str, version: &str) -> Manifest {
    let manifest = describe_dir(dir, model, version, serving()).expect("manifest");
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    for file in &manifest.files {
        let body = std::fs::read(dir.join(&file.path)).expect("read file");
        s3.put_object()
            .bucket(&fleet.primary_bucket)
            .key(manifest.object_key(file))
            .body(body.into())
            .send()
            .await
            .expect("put file");
    }
    put_manifest(
        cloud,
        model,
        version,
        manifest.to_json_pretty().into_bytes(),
    )
    .await;
    manifest
}

async fn put_manifest(cloud: &LocalCloud, model: &str, version: &str, body: Vec<u8>) {
    let fleet = cloud.fleet();
    cloud
        .clients()
        .s3(&fleet.primary_region)
        .await
        .put_object()
        .bucket(&fleet.primary_bucket)
        .key(manifest_key(model, version))
        .body(body.into())
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

async fn settled(cloud: &LocalCloud, model: &str, version: &str) -> VersionRecord {
    let registry = registry(cloud).await;
    eventually(&format!("{model}/{version} to settle"), WITHIN, || async {
        let record = registry.version(model, version).await.ok()??;
        matches!(record.status, VersionStatus::Active | VersionStatus::Failed).then_some(record)
    })
    .await
}

async fn serving_configs(cloud: &LocalCloud) -> Vec<(String, String)> {
    let mut configs = Vec::new();
    for region in &cloud.fleet().regions {
        let endpoint = aws_sdk_sagemaker::Client::new(&cloud.clients().config(&region.name).await)
            .describe_endpoint()
            .endpoint_name(&region.endpoint)
            .send()
            .await
            .expect("describe endpoint");
        configs.push((
            region.name.clone(),
            endpoint
                .endpoint_config_name()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    configs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_every_region_serves_the_new_version() {
    let cloud = start().await;
    let dir = model_dir(1);
    let manifest = upload(&cloud, dir.path(), "llama", "1").await;
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    let expected = deployment_name("llama", "1", &manifest.canonical_digest());
    for (region, config) in serving_configs(&cloud).await {
        assert_eq!(config, expected, "{region}");
    }
    let active = registry(&cloud)
        .await
        .active("llama")
        .await
        .expect("read pointer")
        .expect("pointer");
    assert_eq!(active.version, "1");
    for region in &cloud.fleet().regions {
        let progress = record.regions.get(&region.name).expect("region progress");
        assert!(
            progress.deployed.is_some() && progress.verified.is_some(),
            "{progress:?}"
        );
    }
    assert!(record.phases.contains_key("committed"));
    cloud.shutdown().await.expect("shutdown");
}
