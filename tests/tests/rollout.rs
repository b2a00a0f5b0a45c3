//! The model rollout end to end on the local cloud: upload once, every region serves the
//! new version, or none does.

use std::path::Path;
use std::time::Duration;

use meridian::fleet::Fleet;
use meridian::manifest::{describe_dir, manifest_key, Manifest, Serving};
use meridian::registry::{Registry, VersionRecord, VersionStatus};
use meridian::rollout::deployment_name;
use meridian_local::{Functions, LocalCloud};
use meridian_tests::objects::{boto3_sha256, put_multipart, read_validated, MIN_PART};
use meridian_tests::{calls_since, eventually, example_fleet, start_cloud_for, TestCloud};
use sha2::{Digest, Sha256};

const WITHIN: Duration = Duration::from_secs(90);

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    fleet.rollout.replica_timeout = Duration::from_secs(20);
    fleet
}

async fn start() -> TestCloud {
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
        images: Default::default(),
        instance_type: "ml.g5.2xlarge".into(),
        instance_count: 2,
        variant_name: None,
        environment: Default::default(),
        smoke_test: None,
    }
}

/// Uploads the files, then the manifest last, as `aws s3 cp` plus `meridian manifest` would.
async fn upload(cloud: &LocalCloud, dir: &Path, model: &str, version: &str) -> Manifest {
    upload_serving(cloud, dir, model, version, serving()).await
}

/// [`upload`] with a serving spec of the test's own.
async fn upload_serving(
    cloud: &LocalCloud,
    dir: &Path,
    model: &str,
    version: &str,
    serving: Serving,
) -> Manifest {
    let manifest = describe_dir(dir, model, version, serving).expect("manifest");
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
    settled_within(cloud, model, version, WITHIN).await
}

async fn settled_within(
    cloud: &LocalCloud,
    model: &str,
    version: &str,
    within: Duration,
) -> VersionRecord {
    let registry = registry(cloud).await;
    eventually(&format!("{model}/{version} to settle"), within, || async {
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

/// The image each region's model of `manifest` runs, as `DescribeModel` in that region
/// reports it.
async fn model_images(cloud: &LocalCloud, manifest: &Manifest) -> Vec<(String, String)> {
    let name = deployment_name(
        &manifest.model,
        &manifest.version,
        &manifest.canonical_digest(),
    );
    let mut images = Vec::new();
    for region in &cloud.fleet().regions {
        let model = aws_sdk_sagemaker::Client::new(&cloud.clients().config(&region.name).await)
            .describe_model()
            .model_name(&name)
            .send()
            .await
            .expect("describe model");
        let image = model
            .primary_container()
            .and_then(|c| c.image())
            .unwrap_or_default()
            .to_owned();
        images.push((region.name.clone(), image));
    }
    images
}

/// Puts an image `repository:tag` into the fleet account's ECR registry in `region`.
async fn push_image(cloud: &LocalCloud, region: &str, repository: &str, tag: &str) {
    let ecr = aws_sdk_ecr::Client::new(&cloud.clients().config(region).await);
    let created = ecr
        .create_repository()
        .repository_name(repository)
        .send()
        .await;
    if let Err(error) = created {
        let exists = error
            .as_service_error()
            .is_some_and(|e| e.is_repository_already_exists_exception());
        assert!(exists, "create repository: {error:?}");
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1470,
            "digest": format!("sha256:{}", "c".repeat(64))
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": 3_208_942,
            "digest": format!("sha256:{}", "d".repeat(64))
        }]
    });
    ecr.put_image()
        .repository_name(repository)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .expect("put image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_missing_in_one_region_is_refused_before_any_endpoint_is_touched() {
    let cloud = start().await;
    let own = |region: &str| format!("123456789012.dkr.ecr.{region}.amazonaws.com/meridian-llm:7");
    let spec = Serving {
        image: own("us-east-1"),
        ..serving()
    };
    for region in ["us-east-1", "eu-west-1"] {
        push_image(&cloud, region, "meridian-llm", "7").await;
    }
    let before = serving_configs(&cloud).await;
    let dir = model_dir(7);
    upload_serving(&cloud, dir.path(), "llama", "1", spec.clone()).await;
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("Meridian.Invalid: ")
            && reason.contains(&format!(
                "ap-southeast-1 has no image {}",
                own("ap-southeast-1")
            )),
        "{reason}"
    );
    assert_eq!(serving_configs(&cloud).await, before, "no endpoint touched");
    let sagemaker_writes: Vec<String> = cloud
        .api_calls()
        .into_iter()
        .filter(|c| c.caller.as_deref() == Some("meridian-rollout") && c.service == "sagemaker")
        .map(|c| format!("{} {}", c.region, c.operation))
        .collect();
    assert!(
        sagemaker_writes.is_empty(),
        "SageMaker was called: {sagemaker_writes:?}"
    );

    // Once the image is in the third region too, the next version rolls out, and each
    // region's model runs the image from its own registry.
    push_image(&cloud, "ap-southeast-1", "meridian-llm", "7").await;
    let dir = model_dir(8);
    let manifest = upload_serving(&cloud, dir.path(), "llama", "2", spec).await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    for (region, image) in model_images(&cloud, &manifest).await {
        assert_eq!(image, own(&region), "the model in {region}");
    }
    cloud.shutdown().await.expect("shutdown");
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
    // Sized by the fleet file (us-east-1 and eu-west-1: 2), not the manifest (1).
    for region in &cloud.fleet().regions {
        let described = aws_sdk_sagemaker::Client::new(&cloud.clients().config(&region.name).await)
            .describe_endpoint_config()
            .endpoint_config_name(&expected)
            .send()
            .await
            .expect("describe endpoint config");
        let variant = &described.production_variants()[0];
        assert_eq!(
            variant.initial_instance_count(),
            i32::try_from(meridian::capacity::deploy_count(region, chrono::Utc::now())).ok(),
            "{}",
            region.name
        );
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
    // SageMaker pulls from the endpoint's region: each region's model runs the manifest's
    // image (an AWS Deep Learning Container in us-east-1) from its own region's registry.
    for (region, image) in model_images(&cloud, &manifest).await {
        assert_eq!(
            image,
            serving().image.replace("us-east-1", &region),
            "the model in {region}"
        );
    }
    // Every function's calls reach the call log the IAM check reads, each call under
    // its own function, in the region it was made in.
    let log = cloud.api_calls();
    let by_function = meridian_tests::iam::calls_by_function(&log);
    for function in ["meridian-upload", "meridian-replica", "meridian-rollout"] {
        assert!(
            by_function.contains_key(function),
            "no calls of {function}: {by_function:?}"
        );
    }
    assert!(log
        .iter()
        .any(|call| call.caller.as_deref() == Some("meridian-replica")
            && call.region == "ap-southeast-1"
            && call.operation == "GetObject"));
    cloud.shutdown().await.expect("shutdown");
}

async fn executions(cloud: &LocalCloud) -> Vec<String> {
    let sfn =
        aws_sdk_sfn::Client::new(&cloud.clients().config(&cloud.fleet().primary_region).await);
    sfn.list_executions()
        .state_machine_arn(meridian_local::hosted::state_machine_arn(cloud.fleet()))
        .send()
        .await
        .expect("list executions")
        .executions()
        .iter()
        .map(|e| e.name().to_owned())
        .collect()
}

/// The same event the primary bucket's manifest upload produced.
fn manifest_event(cloud: &LocalCloud, model: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": format!("evt-{model}-{version}"), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "region": cloud.fleet().primary_region, "resources": [],
        "detail": { "bucket": { "name": cloud.fleet().primary_bucket }, "object": { "key": manifest_key(model, version) } }
    })
}

async fn invoke_upload(cloud: &LocalCloud, payload: serde_json::Value) -> serde_json::Value {
    cloud
        .functions()
        .invoke(meridian_local::Invocation {
            function_name: meridian::names::function_name(
                &cloud.fleet().name,
                meridian::names::FunctionRole::Upload,
            ),
            region: cloud.fleet().primary_region.clone(),
            payload,
        })
        .await
        .expect("upload function")
}

async fn rolled_out(cloud: &LocalCloud, version: &str, seed: u8) -> Manifest {
    let dir = model_dir(seed);
    let manifest = upload(cloud, dir.path(), "llama", version).await;
    let record = settled(cloud, "llama", version).await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    manifest
}

async fn assert_all_serve(cloud: &LocalCloud, manifest: &Manifest) {
    let expected = deployment_name(
        &manifest.model,
        &manifest.version,
        &manifest.canonical_digest(),
    );
    for (region, config) in serving_configs(cloud).await {
        assert_eq!(config, expected, "{region} serves the expected version");
    }
    let active = registry(cloud)
        .await
        .active(&manifest.model)
        .await
        .expect("pointer")
        .expect("an active version");
    assert_eq!(active.version, manifest.version, "active pointer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_manifest_twice_starts_one_execution_and_a_different_one_is_rejected() {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    let again = invoke_upload(&cloud, manifest_event(&cloud, "llama", "1")).await;
    assert!(again.get("rejected").is_none(), "{again}");
    assert_eq!(
        executions(&cloud).await.len(),
        1,
        "one execution for duplicate events"
    );

    let mut different = first.clone();
    different.serving.instance_count = 3;
    put_manifest(
        &cloud,
        "llama",
        "1",
        different.to_json_pretty().into_bytes(),
    )
    .await;
    let verdict = invoke_upload(&cloud, manifest_event(&cloud, "llama", "1")).await;
    assert!(
        verdict["reason"]
            .as_str()
            .is_some_and(|r| r.contains("immutable")),
        "{verdict}"
    );
    let registry = registry(&cloud).await;
    eventually("the rejection to be recorded", WITHIN, || async {
        (!registry.rejections("llama").await.ok()?.is_empty()).then_some(())
    })
    .await;
    let record = registry
        .version("llama", "1")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(
        record.digest,
        first.canonical_digest(),
        "the first version is intact"
    );
    assert_eq!(record.status, VersionStatus::Active);
    assert_eq!(executions(&cloud).await.len(), 1);
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_rejected_at_upload_and_nothing_starts() {
    let cloud = start().await;
    let dir = model_dir(3);
    let manifest = describe_dir(dir.path(), "llama", "2", serving()).expect("manifest");
    put_manifest(&cloud, "llama", "2", manifest.to_json_pretty().into_bytes()).await;
    let verdict = invoke_upload(&cloud, manifest_event(&cloud, "llama", "2")).await;
    assert!(
        verdict["reason"]
            .as_str()
            .is_some_and(|r| r.contains("missing")),
        "{verdict}"
    );
    assert!(
        registry(&cloud)
            .await
            .version("llama", "2")
            .await
            .expect("read")
            .is_none(),
        "nothing registered"
    );
    assert!(executions(&cloud).await.is_empty());
    cloud.shutdown().await.expect("shutdown");
}

async fn damaged_replicas_fail_the_version(
    corruption: meridian_local::faults::Corruption,
    expected: &str,
) {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    cloud
        .faults()
        .corrupt_replicas_in("ap-southeast-1", corruption);
    let dir = model_dir(2);
    upload(&cloud, dir.path(), "llama", "2").await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("ap-southeast-1") && reason.contains(expected),
        "{reason}"
    );
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_mismatch_in_one_region_fails_the_version_without_a_commit() {
    damaged_replicas_fail_the_version(meridian_local::faults::Corruption::Size, "size").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_mismatch_in_one_region_fails_the_version_without_a_commit() {
    damaged_replicas_fail_the_version(meridian_local::faults::Corruption::Checksum, "SHA-256")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_failure_falls_back_to_the_fast_copy() {
    let mut fleet = fleet();
    // Long enough for the regions whose replication works, on a loaded two-core machine
    // running other tests' clouds (their checkers, ticks and front doors) side by side.
    fleet.rollout.replica_timeout = Duration::from_secs(10);
    let cloud = start_cloud_for(fleet, Functions::new(), true).await;
    cloud.faults().fail_replication_to("eu-west-1");
    let dir = model_dir(4);
    // A path with a space and a character outside ASCII: S3 takes a copy source only
    // URL-encoded.
    std::fs::create_dir_all(dir.path().join("tokenizer")).expect("mkdir");
    std::fs::write(
        dir.path().join("tokenizer/special tokens ü.json"),
        b"{\"bos\": \"<s>\"}",
    )
    .expect("write tokenizer file");
    let manifest = upload(&cloud, dir.path(), "llama", "1").await;
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    assert!(
        record.regions["eu-west-1"].fast_copied.is_some(),
        "eu-west-1 was fast-copied"
    );
    assert!(record.regions["us-east-1"].fast_copied.is_none());
    assert_all_serve(&cloud, &manifest).await;
    cloud.shutdown().await.expect("shutdown");
}

/// A file above the fast copy's part size (5 MiB here: the setting, not gigabytes) is
/// copied in parts by bounded invocations that each resume where the last stopped: an
/// upload an earlier invocation left part-way (as one stopped by Lambda's timeout would)
/// is finished, its parts never copied again; the copy carries S3's full-object CRC64NVME,
/// so the replica check verifies it without reading it, and the version rolls out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_fast_copy_resumes_part_way_and_is_verified_by_its_checksum() {
    const MIB: u64 = 1024 * 1024;
    let mut fleet = fleet();
    fleet.rollout.replica_timeout = Duration::from_secs(10);
    // 23 MiB in 5 parts of 5 MiB; two parts (10 MiB) started per invocation.
    fleet.rollout.copy = meridian::copy_plan::CopySettings {
        part_bytes: 5 * MIB,
        invocation_bytes: 10 * MIB,
    };
    let cloud = start_cloud_for(fleet, Functions::new(), true).await;
    cloud.faults().fail_replication_to("eu-west-1");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("weights")).expect("mkdir");
    let large: Vec<u8> = (0..23 * MIB)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add((i >> 20) as u8))
        .collect();
    std::fs::write(dir.path().join("weights/large.safetensors"), &large).expect("write");
    std::fs::write(dir.path().join("config.json"), "{}").expect("write config");
    let described = describe_dir(dir.path(), "llama", "1", serving()).expect("manifest");
    let key = described.object_key(
        described
            .files
            .iter()
            .find(|f| f.path == "weights/large.safetensors")
            .expect("the large file"),
    );

    // What an invocation stopped part-way leaves: an upload with parts 1 and 2.
    let fleet = cloud.fleet().clone();
    let eu = fleet.region("eu-west-1").expect("eu-west-1").clone();
    let s3 = cloud.clients().s3(&eu.name).await;
    let stopped = s3
        .create_multipart_upload()
        .bucket(&eu.bucket)
        .key(&key)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
        .checksum_type(aws_sdk_s3::types::ChecksumType::FullObject)
        .send()
        .await
        .expect("create multipart upload");
    for (number, part) in large.chunks(5 * MIB as usize).take(2).enumerate() {
        s3.upload_part()
            .bucket(&eu.bucket)
            .key(&key)
            .upload_id(stopped.upload_id().expect("an upload id"))
            .part_number(number as i32 + 1)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
            .body(part.to_vec().into())
            .send()
            .await
            .expect("upload part");
    }

    let manifest = upload(&cloud, dir.path(), "llama", "1").await;
    let record = settled_within(&cloud, "llama", "1", Duration::from_secs(180)).await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    assert!(record.regions["eu-west-1"].fast_copied.is_some());
    let rollout_calls = |operation: &str| {
        cloud.api_call_count(&meridian_local::calls::ApiCall {
            caller: Some("meridian-rollout".into()),
            region: eu.name.clone(),
            service: "s3".into(),
            operation: operation.into(),
            refused: false,
        })
    };
    assert_eq!(
        rollout_calls("UploadPartCopy"),
        3,
        "parts 3 to 5 copied, once each; parts 1 and 2 kept"
    );
    assert_eq!(
        rollout_calls("CreateMultipartUpload"),
        0,
        "the upload resumed"
    );
    assert_eq!(rollout_calls("CompleteMultipartUpload"), 1);
    assert!(
        rollout_calls("ListParts") >= 2,
        "two invocations (the budget is two parts) each looked at the upload's parts"
    );
    let regional = Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&eu.name).await),
        table: fleet.registry_table.clone(),
    };
    let checks = regional
        .region_checks(("llama", "1"), &eu.name)
        .await
        .expect("replica checks");
    let large_file = manifest
        .files
        .iter()
        .position(|f| f.path == "weights/large.safetensors")
        .expect("the large file is in the manifest");
    assert!(
        checks.by_checksum.contains(&large_file),
        "the large file verified by its CRC64NVME: {checks:?}"
    );
    assert_eq!(
        read_validated(&s3, &eu.bucket, &key)
            .await
            .map(|b| hex::encode(Sha256::digest(b))),
        Ok(hex::encode(Sha256::digest(&large))),
        "the copy reads back with checksum validation"
    );
    assert_all_serve(&cloud, &manifest).await;
    cloud.shutdown().await.expect("shutdown");
}

/// Files uploaded in 5 MiB parts with CRC32 part checksums, as boto3 does by default, one
/// above the fast copy's 64 MiB part size (its `UploadPartCopy` path) and one
/// below it (its `CopyObject` path), each read back in every region with checksum
/// validation on: replicas as S3 replication makes them, and eu-west-1's fast copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_files_replicated_or_fast_copied_read_back_with_checksum_validation() {
    const MIB: usize = 1024 * 1024;
    let mut fleet = fleet();
    // Time for the working regions to verify 70 MiB on a loaded two-core machine.
    fleet.rollout.replica_timeout = Duration::from_secs(30);
    let cloud = start_cloud_for(fleet, Functions::new(), true).await;
    cloud.faults().fail_replication_to("eu-west-1");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("weights")).expect("mkdir");
    let files = [
        ("weights/large.safetensors", 64 * MIB + 3),
        ("weights/small.safetensors", 6 * MIB),
    ];
    for (path, size) in files {
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(13).wrapping_add((i >> 20) as u8))
            .collect();
        std::fs::write(dir.path().join(path), bytes).expect("write file");
    }
    let manifest = describe_dir(dir.path(), "llama", "1", serving()).expect("manifest");
    let fleet = cloud.fleet().clone();
    let primary = cloud.clients().s3(&fleet.primary_region).await;
    for file in &manifest.files {
        let body = std::fs::read(dir.path().join(&file.path)).expect("read file");
        put_multipart(
            &primary,
            &fleet.primary_bucket,
            &manifest.object_key(file),
            &body,
            MIN_PART,
        )
        .await;
    }
    put_manifest(&cloud, "llama", "1", manifest.to_json_pretty().into_bytes()).await;
    let record = settled_within(&cloud, "llama", "1", Duration::from_secs(180)).await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    assert!(record.regions["eu-west-1"].fast_copied.is_some());
    for region in &fleet.regions {
        let s3 = cloud.clients().s3(&region.name).await;
        for file in &manifest.files {
            let key = manifest.object_key(file);
            let read = read_validated(&s3, &region.bucket, &key).await;
            assert_eq!(
                read.map(|b| hex::encode(Sha256::digest(b))),
                Ok(file.sha256.clone()),
                "the Rust SDK reads {key} in {}",
                region.name
            );
            assert_eq!(
                boto3_sha256(&cloud.endpoint_url(), &region.name, &region.bucket, &key),
                Ok(file.sha256.clone()),
                "boto3 reads {key} in {}",
                region.name
            );
        }
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_during_a_rollout_is_queued_and_its_replicas_arriving_first_do_not_hang_it()
{
    // Slow endpoint updates keep v1's rollout running while v2's replicas all arrive.
    let mut config = meridian_tests::test_config();
    config.endpoint_update_duration = Duration::from_secs(8);
    let cloud = meridian_tests::start_cloud_with(config, fleet(), Functions::new(), true).await;
    let first_dir = model_dir(1);
    let second_dir = model_dir(2);
    upload(&cloud, first_dir.path(), "llama", "1").await;
    let second = upload(&cloud, second_dir.path(), "llama", "2").await;
    let registry = registry(&cloud).await;
    let queued = eventually("v2 to be queued behind v1", WITHIN, || async {
        let record = registry.version("llama", "2").await.ok()??;
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("queued behind"))
            .then_some(record)
    })
    .await;
    assert_eq!(queued.status, VersionStatus::Queued, "{queued:?}");

    let first = settled(&cloud, "llama", "1").await;
    assert_eq!(first.status, VersionStatus::Active, "{first:?}");
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    let started = record.phases["rollout_started"];
    for region in &cloud.fleet().regions {
        let regional = Registry {
            client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&region.name).await),
            table: cloud.fleet().registry_table.clone(),
        };
        let readiness = regional
            .readiness("llama", "2", &region.name)
            .await
            .expect("read")
            .expect("ready");
        assert!(
            readiness.ready && readiness.at < started,
            "{}: ready at {} before the rollout started at {started}",
            region.name,
            readiness.at
        );
    }
    assert_all_serve(&cloud, &second).await;
    assert_eq!(
        registry
            .active("llama")
            .await
            .expect("read")
            .expect("pointer")
            .previous
            .as_deref(),
        Some("1")
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_failure_in_one_region_rolls_every_region_back() {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    cloud.faults().fail_endpoint_updates_in("eu-west-1");
    let dir = model_dir(2);
    upload(&cloud, dir.path(), "llama", "2").await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("DeployFailed")),
        "{record:?}"
    );
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sagemaker_rollback_in_one_region_rolls_every_region_back() {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    aws_sdk_cloudwatch::Client::new(&cloud.clients().config("ap-southeast-1").await)
        .set_alarm_state()
        .alarm_name("meridian-demo-llm-5xx")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test: errors during the update")
        .send()
        .await
        .expect("set alarm");
    let dir = model_dir(2);
    upload(&cloud, dir.path(), "llama", "2").await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("SilentRollback")),
        "{record:?}"
    );
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_manifest_class_is_rejected_with_a_clear_error_and_changes_nothing() {
    let cloud = start().await;
    let dir = model_dir(5);
    let good = describe_dir(dir.path(), "llama", "9", serving()).expect("manifest");
    let good_json: serde_json::Value = serde_json::from_str(&good.to_json_pretty()).expect("json");
    let digest = "a".repeat(64);
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("unknown field", {
            let mut m = good_json.clone();
            m["extra"] = serde_json::json!(1);
            m
        }),
        ("..", {
            let mut m = good_json.clone();
            m["files"][0]["path"] = serde_json::json!("../escape.bin");
            m
        }),
        ("absolute", {
            let mut m = good_json.clone();
            m["files"][0]["path"] = serde_json::json!("/etc/passwd");
            m
        }),
        ("empty segment", {
            let mut m = good_json.clone();
            m["files"][0]["path"] = serde_json::json!("weights//a.bin");
            m
        }),
        ("twice", {
            let mut m = good_json.clone();
            let first = m["files"][0].clone();
            m["files"].as_array_mut().expect("files").push(first);
            m
        }),
        ("hex", {
            let mut m = good_json.clone();
            m["files"][0]["sha256"] = serde_json::json!("z".repeat(64));
            m
        }),
        ("64", {
            let mut m = good_json.clone();
            m["files"][0]["sha256"] = serde_json::json!(&digest[..10]);
            m
        }),
        ("empty file", {
            let mut m = good_json.clone();
            m["files"][0]["size"] = serde_json::json!(0);
            m
        }),
        ("5 TiB", {
            let mut m = good_json.clone();
            m["files"][0]["size"] = serde_json::json!(6u64 * 1024u64.pow(4));
            m
        }),
    ];
    let mut reasons = Vec::new();
    for (expected, manifest) in &cases {
        put_manifest(
            &cloud,
            "llama",
            "9",
            serde_json::to_vec(manifest).expect("bytes"),
        )
        .await;
        let verdict = invoke_upload(&cloud, manifest_event(&cloud, "llama", "9")).await;
        let reason = verdict["reason"].as_str().unwrap_or_default().to_owned();
        assert!(
            reason.to_lowercase().contains(&expected.to_lowercase()),
            "{expected}: {verdict}"
        );
        reasons.push(reason);
    }
    put_manifest(
        &cloud,
        "llama",
        "9",
        vec![b' '; meridian::manifest::MAX_MANIFEST_BYTES + 1],
    )
    .await;
    let too_large = invoke_upload(&cloud, manifest_event(&cloud, "llama", "9")).await;
    assert!(
        too_large["reason"]
            .as_str()
            .is_some_and(|r| r.contains("large")),
        "{too_large}"
    );
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons.len(), cases.len(), "each class has its own message");
    assert!(
        registry(&cloud)
            .await
            .version("llama", "9")
            .await
            .expect("read")
            .is_none(),
        "nothing registered"
    );
    assert!(executions(&cloud).await.is_empty(), "nothing started");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_smoke_test_in_one_region_rolls_every_region_back() {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    cloud.faults().fail_invocations_in("us-east-1");
    let dir = model_dir(2);
    upload(&cloud, dir.path(), "llama", "2").await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("smoke test")),
        "{record:?}"
    );
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_key_longer_than_s3_allows_is_refused_as_invalid_before_any_call() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    // Just over S3's limit, and long enough that the SDK could not even build its URI.
    for length in [1_100, 70_000] {
        let mut event = manifest_event(&cloud, "llama", "1");
        let key = format!("models/llama/1/{}/manifest.json", "k".repeat(length));
        event["detail"]["object"]["key"] = serde_json::Value::String(key);
        let calls_before = cloud.api_call_counts();
        let refused = cloud
            .functions()
            .invoke(meridian_local::Invocation {
                function_name: meridian::names::function_name(
                    &cloud.fleet().name,
                    meridian::names::FunctionRole::Upload,
                ),
                region: cloud.fleet().primary_region.clone(),
                payload: event,
            })
            .await
            .expect_err("refused");
        let meridian_local::functions::InvokeError::Failed(error) = refused else {
            panic!("the function ran: {refused:?}");
        };
        assert_eq!(error.error_type, "Meridian.Invalid", "{error:?}");
        assert!(
            error.error_message.contains("at most 1024 bytes"),
            "{error:?}"
        );
        let calls: Vec<_> = calls_since(&cloud, &calls_before)
            .into_iter()
            .filter(|c| c.caller.as_deref() == Some("meridian-upload"))
            .collect();
        assert!(calls.is_empty(), "no call was made with the key: {calls:?}");
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_one_instance_is_refused_before_any_region_is_touched() {
    let mut one_instance_in_apac = fleet();
    let apac = &mut one_instance_in_apac.regions[2];
    assert_eq!(apac.name, "ap-southeast-1");
    (apac.instance_count, apac.min_instances) = (1, 1);
    let cloud = start_cloud_for(one_instance_in_apac, Functions::new(), true).await;
    let before = serving_configs(&cloud).await;
    let dir = model_dir(1);
    upload(&cloud, dir.path(), "llama", "1").await;

    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains("a canary of 10% on 1 instance(s) in ap-southeast-1")
            && reason.contains("SageMaker allows at most 50% of the fleet per step"),
        "{reason}"
    );
    let touched: Vec<_> = cloud
        .api_calls()
        .into_iter()
        .filter(|c| c.caller.as_deref() == Some("meridian-rollout") && c.service == "sagemaker")
        .filter(|c| {
            ["CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]
                .contains(&c.operation.as_str())
        })
        .collect();
    assert!(touched.is_empty(), "refused before SageMaker: {touched:?}");
    assert_eq!(serving_configs(&cloud).await, before);
    cloud.shutdown().await.expect("shutdown");
}

/// Uploads a version whose manifest carries `smoke_test`.
async fn upload_with_smoke_test(
    cloud: &LocalCloud,
    version: &str,
    seed: u8,
    smoke_test: meridian::smoke::SmokeTest,
) -> Manifest {
    let dir = model_dir(seed);
    let mut with_test = serving();
    with_test.smoke_test = Some(smoke_test);
    upload_serving(cloud, dir.path(), "llama", version, with_test).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_smoke_test_is_sent_and_its_expected_field_decides() {
    let cloud = start().await;
    let chat = |expect: &str| meridian::smoke::SmokeTest {
        content_type: "application/json".into(),
        body: serde_json::json!({"messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4}),
        expect: Some(expect.into()),
    };
    // Only a chat request gets a chat completion back: the default TGI request would not
    // hold this field, so the version commits only if the manifest's request was sent.
    let chatty = upload_with_smoke_test(&cloud, "1", 1, chat("/choices/0/message/content")).await;
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    assert_all_serve(&cloud, &chatty).await;

    upload_with_smoke_test(&cloud, "2", 2, chat("/usage/total_tokens")).await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains("the answer has no /usage/total_tokens"),
        "{reason}"
    );
    assert_all_serve(&cloud, &chatty).await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sagemaker_validation_error_fails_the_version_at_once_with_sagemakers_message() {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    let update_endpoint = meridian_local::calls::ApiCall {
        caller: Some(meridian::names::sdk_app_name(
            meridian::names::FunctionRole::Rollout,
        )),
        region: "eu-west-1".into(),
        service: "sagemaker".into(),
        operation: "UpdateEndpoint".into(),
        refused: false,
    };
    let updates_before = cloud.api_call_count(&update_endpoint);
    let message = "Canary size must not exceed 50% of the instance count (test)";
    cloud
        .faults()
        .reject_sagemaker_action("eu-west-1", "UpdateEndpoint", message);
    let dir = model_dir(2);
    upload(&cloud, dir.path(), "llama", "2").await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("Meridian.Rejected") && reason.contains(message),
        "the version carries SageMaker's message: {reason}"
    );
    assert_eq!(
        cloud.api_call_count(&update_endpoint) - updates_before,
        1,
        "refused once, never retried"
    );
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}

/// Step Functions abandons a failed Map's other iterations, not the Lambda invocations they
/// started: a region's deploy call still on its way to SageMaker when another region is
/// refused must land before that region is rolled back, or it lands after the rollback and
/// the region serves the failed version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_call_still_in_flight_when_another_region_is_refused_is_rolled_back_too() {
    let cloud = start().await;
    let first = rolled_out(&cloud, "1", 1).await;
    let late = "ap-southeast-1";
    let update_endpoint = meridian_local::calls::ApiCall {
        caller: Some(meridian::names::sdk_app_name(
            meridian::names::FunctionRole::Rollout,
        )),
        region: late.into(),
        service: "sagemaker".into(),
        operation: "UpdateEndpoint".into(),
        refused: false,
    };
    let updates_before = cloud.api_call_count(&update_endpoint);
    cloud
        .faults()
        .delay_sagemaker_action(late, "UpdateEndpoint", Duration::from_secs(5));
    cloud.faults().reject_sagemaker_action(
        "eu-west-1",
        "UpdateEndpoint",
        "Linear step size must be between 10% and 50% (test)",
    );
    let dir = model_dir(2);
    upload(&cloud, dir.path(), "llama", "2").await;
    let record = settled(&cloud, "llama", "2").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    assert_eq!(
        cloud.api_call_count(&update_endpoint) - updates_before,
        2,
        "{late}: the late deploy call landed, then the rollback's, before the version failed"
    );
    assert_all_serve(&cloud, &first).await;
    cloud.shutdown().await.expect("shutdown");
}
