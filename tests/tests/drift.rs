//! Drift end to end on the local cloud: after a committed rollout, an endpoint changed
//! behind Meridian's back (`UpdateEndpoint` straight to a hand-made configuration in one
//! region) is reported by that region's next tick with what differs, recorded once in its
//! record and history whatever the number of ticks, and cleared when the endpoint serves
//! the active version again; the regions that were not touched report nothing. Where the
//! fleet file does not allow repairs the endpoint is left as it is; where it does, one
//! repair (one execution, however many ticks see the drift) puts the active version back,
//! and a repair waits while a rollout holds the fleet's lock.

use std::path::Path;
use std::time::Duration;

use aws_sdk_sagemaker::types::{
    ContainerDefinition, ModelCompressionType, ModelDataSource, ProductionVariant,
    ProductionVariantInstanceType, S3ModelDataSource, S3ModelDataType,
};
use chrono::Utc;
use meridian::adapters::{read_history, HealthDeps};
use meridian::drift::Drift;
use meridian::fleet::Fleet;
use meridian::health::{FailoverEvent, HealthStore};
use meridian::manifest::{describe_dir, manifest_key, Serving};
use meridian::names::{function_name, FunctionRole};
use meridian::registry::{Registry, VersionStatus};
use meridian::repair::{Repair, RepairStatus};
use meridian::rollout::deployment_name;
use meridian_local::{Functions, Invocation, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(90);
const IMAGE: &str =
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:latest";
const HAND_MADE: &str = "hand-made-by-an-operator";
const TOUCHED: &str = "eu-west-1";

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    fleet
}

/// Uploads a small version (files first, the manifest last) and waits for its commit.
async fn roll_out(cloud: &LocalCloud, dir: &Path) -> String {
    let serving = Serving {
        image: IMAGE.into(),
        instance_type: "ml.g5.2xlarge".into(),
        instance_count: 1,
        variant_name: None,
        environment: Default::default(),
        images: Default::default(),
        smoke_test: None,
    };
    let manifest = describe_dir(dir, "llama", "1", serving).expect("manifest");
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    for file in &manifest.files {
        s3.put_object()
            .bucket(&fleet.primary_bucket)
            .key(manifest.object_key(file))
            .body(std::fs::read(dir.join(&file.path)).expect("read").into())
            .send()
            .await
            .expect("put file");
    }
    s3.put_object()
        .bucket(&fleet.primary_bucket)
        .key(manifest_key("llama", "1"))
        .body(manifest.to_json_pretty().into_bytes().into())
        .send()
        .await
        .expect("put manifest");
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    };
    let record = eventually("llama/1 to settle", WITHIN, || async {
        let record = registry.version("llama", "1").await.ok()??;
        matches!(record.status, VersionStatus::Active | VersionStatus::Failed).then_some(record)
    })
    .await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    // The lock is released after the commit: only then is there something to judge.
    eventually("the rollout lock to be released", WITHIN, || async {
        let (lock, _) = registry.lock().await.ok()?;
        lock.holder.is_none().then_some(())
    })
    .await;
    deployment_name("llama", "1", &manifest.canonical_digest())
}

async fn sagemaker(cloud: &LocalCloud, region: &str) -> aws_sdk_sagemaker::Client {
    aws_sdk_sagemaker::Client::new(&cloud.clients().config(region).await)
}

/// A model and configuration made by hand (another image, another data location), and
/// the endpoint moved onto it, as an operator with the console would.
async fn update_by_hand(cloud: &LocalCloud, region: &str) {
    let sagemaker = sagemaker(cloud, region).await;
    let data = S3ModelDataSource::builder()
        .s3_uri("s3://someone-elses-bucket/llama/experimental/")
        .s3_data_type(S3ModelDataType::S3Prefix)
        .compression_type(ModelCompressionType::None)
        .build();
    sagemaker
        .create_model()
        .model_name(HAND_MADE)
        .execution_role_arn(meridian_local::hosted::sagemaker_role_arn(cloud.fleet()))
        .primary_container(
            ContainerDefinition::builder()
                .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/experimental:dev")
                .model_data_source(ModelDataSource::builder().s3_data_source(data).build())
                .build(),
        )
        .send()
        .await
        .expect("create model");
    sagemaker
        .create_endpoint_config()
        .endpoint_config_name(HAND_MADE)
        .production_variants(
            ProductionVariant::builder()
                .variant_name("primary")
                .model_name(HAND_MADE)
                .instance_type(ProductionVariantInstanceType::MlG52Xlarge)
                .initial_instance_count(1)
                .build(),
        )
        .send()
        .await
        .expect("create endpoint config");
    update_endpoint(cloud, region, HAND_MADE).await;
}

/// `UpdateEndpoint` straight to `config`, waiting until the endpoint is in service on it.
async fn update_endpoint(cloud: &LocalCloud, region: &str, config: &str) {
    let sagemaker = sagemaker(cloud, region).await;
    let endpoint = &cloud.fleet().region(region).expect("region").endpoint;
    sagemaker
        .update_endpoint()
        .endpoint_name(endpoint)
        .endpoint_config_name(config)
        .send()
        .await
        .expect("update endpoint");
    eventually(
        &format!("{region} in service on {config}"),
        WITHIN,
        || async {
            let described = sagemaker
                .describe_endpoint()
                .endpoint_name(endpoint)
                .send()
                .await
                .ok()?;
            (described.endpoint_status().map(|s| s.as_str()) == Some("InService")
                && described.endpoint_config_name() == Some(config))
            .then_some(())
        },
    )
    .await;
}

/// One failback tick in `region`, as its schedule delivers it; returns the drift part of
/// its answer. The id is fixed so that a second call is the same event delivered again.
async fn tick(cloud: &LocalCloud, region: &str, id: &str) -> Value {
    tick_answer(cloud, region, id).await["drift"].clone()
}

/// [`tick`]'s whole answer.
async fn tick_answer(cloud: &LocalCloud, region: &str, id: &str) -> Value {
    let mut event = meridian_local::schedules::scheduled_event(
        region,
        &format!("arn:aws:events:{region}:123456789012:rule/meridian-demo-failback-schedule"),
        Utc::now(),
    );
    event["id"] = Value::from(id);
    cloud
        .functions()
        .invoke(Invocation {
            function_name: function_name(&cloud.fleet().name, FunctionRole::Failback),
            region: region.into(),
            payload: event,
        })
        .await
        .expect("the tick succeeds")
}

/// The region's record as its own replica has it: (drift, record version).
async fn recorded(cloud: &LocalCloud, region: &str) -> (Option<Drift>, u64) {
    let deps = HealthDeps::new(&cloud.clients(), cloud.fleet(), region).await;
    let stored = deps.store.load(region).await.expect("read record");
    stored.map_or((None, 0), |s| (s.value.drift, s.version))
}

async fn drift_history(cloud: &LocalCloud, region: &str) -> Vec<FailoverEvent> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&cloud.clients().config(region).await);
    read_history(&dynamodb, &cloud.fleet().registry_table, region)
        .await
        .expect("read history")
        .into_iter()
        .filter(|e| e.kind.starts_with("drift"))
        .collect()
}

fn fields(drift: &Value) -> Vec<(String, String)> {
    drift["differences"]
        .as_array()
        .map(|differences| {
            differences
                .iter()
                .map(|d| {
                    (
                        d["field"].as_str().unwrap_or_default().to_owned(),
                        d["actual"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_changed_behind_meridians_back_is_reported_within_one_tick_and_healed() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("weights.safetensors"), vec![7u8; 64 * 1024]).expect("write");
    let committed = roll_out(&cloud, dir.path()).await;

    // A clean fleet: every region's tick reports no drift, and nothing is recorded.
    for region in cloud.fleet().region_names() {
        let drift = tick(&cloud, region, &format!("clean-{region}")).await;
        assert_eq!(drift, serde_json::json!({ "drift": null }), "{region}");
        assert_eq!(recorded(&cloud, region).await.0, None, "{region}");
        assert!(drift_history(&cloud, region).await.is_empty(), "{region}");
    }

    // One region moved behind Meridian's back: two regions now serve different versions.
    update_by_hand(&cloud, TOUCHED).await;
    let reported = tick(&cloud, TOUCHED, "after-the-change").await;
    let drift = &reported["drift"];
    assert_eq!(drift["expected"], "llama/1", "{reported}");
    let bucket = &cloud.fleet().region(TOUCHED).expect("region").bucket;
    assert_eq!(
        fields(drift),
        vec![
            ("config".to_owned(), HAND_MADE.to_owned()),
            (
                "model_data".to_owned(),
                "s3://someone-elses-bucket/llama/experimental/".to_owned()
            ),
            (
                "image".to_owned(),
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/experimental:dev".to_owned()
            ),
        ],
        "{reported}"
    );
    assert_eq!(drift["differences"][0]["expected"], committed.as_str());
    assert_eq!(
        drift["differences"][1]["expected"],
        format!("s3://{bucket}/models/llama/1/")
    );
    let (record, version) = recorded(&cloud, TOUCHED).await;
    let record = record.expect("the drift is in the region's record");
    assert_eq!(
        fields(&serde_json::to_value(&record).expect("json")),
        fields(drift)
    );

    // The same tick delivered again, and later ticks: nothing more is written.
    let again = tick(&cloud, TOUCHED, "after-the-change").await;
    assert_eq!(again["drift"], reported["drift"]);
    tick(&cloud, TOUCHED, "a-later-tick").await;
    assert_eq!(recorded(&cloud, TOUCHED).await.1, version, "no write");
    let history = drift_history(&cloud, TOUCHED).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].kind, "drift");
    assert!(
        history[0].reason.contains(HAND_MADE),
        "{}",
        history[0].reason
    );
    // The fleet file does not allow repairs: the primary's ticks leave the endpoint as it is.
    assert!(!cloud.fleet().drift.repair);
    let primary = cloud.fleet().primary_region.clone();
    for id in ["primary-1", "primary-2"] {
        assert_eq!(
            tick_answer(&cloud, &primary, id).await["repair"],
            Value::Null
        );
    }
    assert_eq!(serving(&cloud, TOUCHED).await, HAND_MADE);
    assert_eq!(
        registry(&cloud).await.repair(TOUCHED).await.expect("read"),
        None
    );
    assert!(repair_executions(&cloud).await.is_empty());

    // The regions nobody touched still report nothing.
    for region in cloud
        .fleet()
        .region_names()
        .into_iter()
        .filter(|r| *r != TOUCHED)
    {
        assert_eq!(
            tick(&cloud, region, "untouched").await["drift"],
            Value::Null
        );
        assert!(drift_history(&cloud, region).await.is_empty(), "{region}");
    }

    // Back on the committed configuration: the next tick clears it and records the end.
    update_endpoint(&cloud, TOUCHED, &committed).await;
    assert_eq!(tick(&cloud, TOUCHED, "healed").await["drift"], Value::Null);
    assert_eq!(recorded(&cloud, TOUCHED).await.0, None);
    let kinds: Vec<String> = drift_history(&cloud, TOUCHED)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"drift-healed".to_owned()), "{kinds:?}");
    cloud.shutdown().await.expect("shutdown");
}

/// The primary region's registry.
async fn registry(cloud: &LocalCloud) -> Registry {
    let fleet = cloud.fleet();
    Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    }
}

/// The configuration `region`'s endpoint serves.
async fn serving(cloud: &LocalCloud, region: &str) -> String {
    let endpoint = &cloud.fleet().region(region).expect("region").endpoint;
    sagemaker(cloud, region)
        .await
        .describe_endpoint()
        .endpoint_name(endpoint)
        .send()
        .await
        .expect("describe endpoint")
        .endpoint_config_name()
        .unwrap_or_default()
        .to_owned()
}

/// The names of the rollout state machine's repair executions.
async fn repair_executions(cloud: &LocalCloud) -> Vec<String> {
    let fleet = cloud.fleet();
    let sfn = aws_sdk_sfn::Client::new(&cloud.clients().config(&fleet.primary_region).await);
    let listed = sfn
        .list_executions()
        .state_machine_arn(meridian_local::hosted::state_machine_arn(fleet))
        .send()
        .await
        .expect("list executions");
    listed
        .executions()
        .iter()
        .map(|e| e.name().to_owned())
        .filter(|name| name.starts_with("repair-"))
        .collect()
}

fn repairing_fleet() -> Fleet {
    let mut fleet = fleet();
    fleet.drift.repair = true;
    fleet
}

/// Waits for `region`'s repair to end and returns it.
async fn repair_ended(registry: &Registry, region: &str) -> Repair {
    eventually(
        &format!("the repair of {region} to end"),
        WITHIN,
        || async {
            registry
                .repair(region)
                .await
                .ok()?
                .filter(|r| r.status != RepairStatus::Running)
        },
    )
    .await
}

/// The region serves `config` and its own record no longer holds a drift.
async fn back_in_sync(cloud: &LocalCloud, region: &str, config: &str) {
    assert_eq!(serving(cloud, region).await, config);
    eventually(&format!("{region}'s drift to clear"), WITHIN, || async {
        recorded(cloud, region).await.0.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_region_is_repaired_once_when_the_fleet_file_allows_it() {
    let cloud = start_cloud_for(repairing_fleet(), Functions::new(), true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("weights.safetensors"), vec![7u8; 64 * 1024]).expect("write");
    let committed = roll_out(&cloud, dir.path()).await;
    let registry = registry(&cloud).await;
    let active_before = registry
        .active("llama")
        .await
        .expect("read")
        .expect("active");

    update_by_hand(&cloud, TOUCHED).await;
    // Every region ticks every second here: the drift is seen by many ticks, in the
    // touched region (which records it) and in the primary (which repairs it).
    let repair = repair_ended(&registry, TOUCHED).await;
    assert_eq!(repair.status, RepairStatus::Succeeded, "{repair:?}");
    // The drift was reported first, and the repair is that drift's.
    let reported: Vec<String> = drift_history(&cloud, TOUCHED)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    let drift_id = format!("drift@{}", repair.drift_since.timestamp_millis());
    assert!(reported.contains(&drift_id), "{reported:?}");
    assert_eq!(
        (repair.model.as_str(), repair.version.as_str()),
        ("llama", "1")
    );
    assert_eq!(repair.progress.previous_config.as_deref(), Some(HAND_MADE));
    assert!(repair.progress.deploy_started.is_some() && repair.progress.verified.is_some());
    back_in_sync(&cloud, TOUCHED, &committed).await;

    // The same drift seen again (a late tick of the primary) starts nothing new.
    let primary = cloud.fleet().primary_region.clone();
    tick_answer(&cloud, &primary, "late").await;
    tick_answer(&cloud, &primary, "late").await;
    assert_eq!(
        repair_executions(&cloud).await,
        vec![repair.execution.clone()]
    );
    // The repair changed neither the active pointer nor the version, and let go of the lock.
    assert_eq!(
        registry.active("llama").await.expect("read"),
        Some(active_before)
    );
    let version = registry
        .version("llama", "1")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(version.status, VersionStatus::Active);
    assert_eq!(registry.lock().await.expect("read").0.holder, None);
    let kinds: Vec<String> = drift_history(&cloud, TOUCHED)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"drift-healed".to_owned()), "{kinds:?}");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_waits_while_a_rollout_holds_the_fleets_lock() {
    let cloud = start_cloud_for(repairing_fleet(), Functions::new(), true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("weights.safetensors"), vec![7u8; 64 * 1024]).expect("write");
    let committed = roll_out(&cloud, dir.path()).await;
    let registry = registry(&cloud).await;

    drift_under_a_held_lock(&cloud, &registry, &committed).await;
    let primary = cloud.fleet().primary_region.clone();
    eventually("the primary to see the drift and wait", WITHIN, || async {
        let answer = tick_answer(&cloud, &primary, &Utc::now().to_rfc3339()).await;
        answer["repair"][TOUCHED]["waiting"]
            .as_str()
            .is_some_and(|why| why.contains("mistral/9 holds the fleet's lock"))
            .then_some(())
    })
    .await;
    tick_answer(&cloud, &primary, "while-held").await;
    assert_eq!(
        registry.repair(TOUCHED).await.expect("read"),
        None,
        "no repair while the lock is held"
    );
    assert!(repair_executions(&cloud).await.is_empty());
    assert_eq!(serving(&cloud, TOUCHED).await, HAND_MADE);
    assert!(registry
        .lock()
        .await
        .expect("read")
        .0
        .held_by("mistral", "9"));

    // The rollout ends: the next tick repairs, alone.
    assert_eq!(
        registry.release("mistral", "9").await.expect("release"),
        None
    );
    let repair = repair_ended(&registry, TOUCHED).await;
    assert_eq!(repair.status, RepairStatus::Succeeded, "{repair:?}");
    back_in_sync(&cloud, TOUCHED, &committed).await;
    assert_eq!(repair_executions(&cloud).await.len(), 1);
    cloud.shutdown().await.expect("shutdown");
}

/// A rollout (`mistral/9`, held by hand) takes the lock just after the touched region
/// recorded its drift: the endpoint is changed, and the drift written as that region's
/// check would have written it (while the lock is held its check judges nothing).
async fn drift_under_a_held_lock(cloud: &LocalCloud, registry: &Registry, committed: &str) {
    let lock = registry
        .acquire_or_queue("mistral", "9", Utc::now())
        .await
        .expect("lock");
    assert!(lock.held_by("mistral", "9"));
    update_by_hand(cloud, TOUCHED).await;
    let deps = HealthDeps::new(&cloud.clients(), cloud.fleet(), TOUCHED).await;
    let stored = deps.store.load(TOUCHED).await.expect("read");
    let mut record = stored.as_ref().map_or_else(
        || meridian::failover::RegionHealth::new(TOUCHED, Utc::now()),
        |s| s.value.clone(),
    );
    record.drift = Some(Drift {
        since: Utc::now(),
        expected: "llama/1".into(),
        differences: vec![meridian::failover::Difference {
            field: "config".into(),
            expected: committed.to_owned(),
            actual: HAND_MADE.into(),
        }],
    });
    deps.store
        .save(&record, stored.map(|s| s.version))
        .await
        .expect("write drift");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_repair_is_recorded_leaves_the_version_alone_and_is_not_retried() {
    let cloud = start_cloud_for(repairing_fleet(), Functions::new(), true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("weights.safetensors"), vec![7u8; 64 * 1024]).expect("write");
    let committed = roll_out(&cloud, dir.path()).await;
    let registry = registry(&cloud).await;
    let active_before = registry
        .active("llama")
        .await
        .expect("read")
        .expect("active");
    drift_under_a_held_lock(&cloud, &registry, &committed).await;
    // The repair's UpdateEndpoint will end Failed (its rollback succeeds).
    cloud.faults().fail_endpoint_updates_in(TOUCHED);
    assert_eq!(
        registry.release("mistral", "9").await.expect("release"),
        None
    );

    let repair = repair_ended(&registry, TOUCHED).await;
    assert_eq!(repair.status, RepairStatus::Failed, "{repair:?}");
    let reason = repair.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("every region is on its previous version"),
        "{reason}"
    );
    assert!(repair.progress.rolled_back.is_some(), "{repair:?}");
    // Back on what it served before the repair; the drift stays reported; the version,
    // its active pointer and the lock are as before.
    eventually("the drift to be judged again", WITHIN, || async {
        let drift = tick(&cloud, TOUCHED, &Utc::now().to_rfc3339()).await;
        (drift["drift"]["since"].as_str().is_some()
            && registry.lock().await.ok()?.0.holder.is_none())
        .then_some(())
    })
    .await;
    assert_eq!(serving(&cloud, TOUCHED).await, HAND_MADE);
    assert!(recorded(&cloud, TOUCHED).await.0.is_some());
    assert_eq!(
        registry.active("llama").await.expect("read"),
        Some(active_before)
    );
    let version = registry
        .version("llama", "1")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(version.status, VersionStatus::Active);
    // Later ticks of the primary report the failure and start nothing.
    let primary = cloud.fleet().primary_region.clone();
    let answer = tick_answer(&cloud, &primary, "after-the-failure").await;
    let why = answer["repair"][TOUCHED]["nothing"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("not retried"), "{answer}");
    assert_eq!(
        repair_executions(&cloud).await,
        vec![repair.execution.clone()]
    );
    cloud.shutdown().await.expect("shutdown");
}
