//! The fleet's rollout lock and operators' control, end to end on the local cloud: two
//! models never roll out at once on the shared endpoints; an execution stopped from
//! outside releases the lock and the next queued version starts; pause, resume, promote
//! and abort do what they say and are recorded.

use std::path::Path;
use std::time::Duration;

use meridian::executions::{wake_deploy_waits, Woken};
use meridian::fleet::Fleet;
use meridian::manifest::{describe_dir, manifest_key, Manifest, Serving};
use meridian::operator::OperatorAction;
use meridian::registry::{Registry, VersionRecord, VersionStatus};
use meridian::rollout::{deployment_name, RolloutError};
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_with, TestCloud};

const WITHIN: Duration = Duration::from_secs(120);

/// The example fleet with no SageMaker bake and Meridian's own bake of `commit_bake`.
fn fleet(commit_bake: Duration) -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::ZERO;
    fleet.rollout.replica_timeout = Duration::from_secs(20);
    fleet.rollout.commit_bake = commit_bake;
    fleet
}

async fn start(commit_bake: Duration, endpoint_update: Duration) -> TestCloud {
    let mut config = meridian_tests::test_config();
    config.endpoint_update_duration = endpoint_update;
    start_cloud_with(config, fleet(commit_bake), Functions::new(), true).await
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

/// Uploads a small model version: its files, then the manifest last.
async fn upload(cloud: &LocalCloud, model: &str, version: &str, seed: u8) -> Manifest {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes: Vec<u8> = (0..256 * 1024)
        .map(|i: usize| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(dir.path().join("model.safetensors"), bytes).expect("write");
    put_version(cloud, dir.path(), model, version).await
}

async fn put_version(cloud: &LocalCloud, dir: &Path, model: &str, version: &str) -> Manifest {
    let manifest = describe_dir(dir, model, version, serving()).expect("manifest");
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
        .key(manifest_key(model, version))
        .body(manifest.to_json_pretty().into_bytes().into())
        .send()
        .await
        .expect("put manifest");
    manifest
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

/// Waits until the version's record has `phase`.
async fn reached(cloud: &LocalCloud, model: &str, version: &str, phase: &str) -> VersionRecord {
    let registry = registry(cloud).await;
    eventually(
        &format!("{model}/{version} to reach {phase}"),
        WITHIN,
        || async {
            let record = registry.version(model, version).await.ok()??;
            record.phases.contains_key(phase).then_some(record)
        },
    )
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

/// What `meridian rollout <action>` does for the running version: records the command and,
/// for an abort, wakes every region's wait for an endpoint update (what it woke is returned).
async fn operator(
    cloud: &LocalCloud,
    model: &str,
    version: &str,
    action: OperatorAction,
) -> Vec<(String, Result<Woken, RolloutError>)> {
    registry(cloud)
        .await
        .apply_operator_action(model, version, action, "test-operator", Some("e2e"))
        .await
        .expect("registry")
        .unwrap_or_else(|refusal| panic!("{action:?} refused: {refusal}"));
    if action == OperatorAction::Abort {
        wake_deploy_waits(&cloud.clients(), cloud.fleet(), "abort").await
    } else {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_uploaded_back_to_back_never_roll_out_at_once() {
    let cloud = start(Duration::ZERO, Duration::from_secs(3)).await;
    upload(&cloud, "llama", "1", 1).await;
    let mistral = upload(&cloud, "mistral", "1", 2).await;
    let llama = settled(&cloud, "llama", "1").await;
    let second = settled(&cloud, "mistral", "1").await;
    assert_eq!(llama.status, VersionStatus::Active, "{llama:?}");
    assert_eq!(second.status, VersionStatus::Active, "{second:?}");
    // The uploads raced to the lock; whichever won, the other started after it committed.
    let (first, later, later_manifest) =
        if llama.phases["rollout_started"] < second.phases["rollout_started"] {
            (&llama, &second, Some(&mistral))
        } else {
            (&second, &llama, None)
        };
    assert!(
        later.phases["rollout_started"] >= first.phases["committed"],
        "{}/{} started at {} before {}/{} committed at {}",
        later.model,
        later.version,
        later.phases["rollout_started"],
        first.model,
        first.version,
        first.phases["committed"]
    );
    let expected = match later_manifest {
        Some(m) => deployment_name(&m.model, &m.version, &m.canonical_digest()),
        None => deployment_name(&later.model, &later.version, &later.digest),
    };
    for (region, config) in serving_configs(&cloud).await {
        assert_eq!(config, expected, "{region} serves the later rollout");
    }
    let (lock, _) = registry(&cloud).await.lock().await.expect("lock");
    assert_eq!(lock, Default::default(), "released");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_execution_releases_the_lock_and_the_next_queued_version_starts() {
    // A long bake keeps v1's execution running until it is stopped.
    let cloud = start(Duration::from_secs(3600), Duration::from_secs(1)).await;
    upload(&cloud, "llama", "1", 1).await;
    let baking = reached(&cloud, "llama", "1", "baking").await;
    upload(&cloud, "mistral", "1", 2).await;
    let registry = registry(&cloud).await;
    eventually("mistral/1 to queue behind llama/1", WITHIN, || async {
        let (lock, _) = registry.lock().await.ok()?;
        (lock.queue.len() == 1).then_some(())
    })
    .await;
    let execution = baking.execution.clone().expect("v1's execution");
    stop_execution(&cloud, &execution).await;

    let stopped = settled(&cloud, "llama", "1").await;
    assert_eq!(stopped.status, VersionStatus::Failed, "{stopped:?}");
    let reason = stopped.reason.unwrap_or_default();
    assert!(
        reason.contains(&execution) && reason.contains("ABORTED"),
        "{reason}"
    );
    assert!(
        reason.contains("not back on the previous version"),
        "every region was deployed and none rolled back: {reason}"
    );
    let next = eventually("mistral/1 to take the lock and start", WITHIN, || async {
        let (lock, _) = registry.lock().await.ok()?;
        let holder = lock.holder?;
        (holder.model == "mistral" && holder.execution.is_some()).then_some(holder)
    })
    .await;
    let record = registry
        .version("mistral", "1")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(record.status, VersionStatus::RollingOut, "{record:?}");
    assert_eq!(record.execution, next.execution);
    cloud.shutdown().await.expect("shutdown");
}

/// Stops the execution `name` of the rollout state machine, as an operator in the console.
async fn stop_execution(cloud: &LocalCloud, name: &str) {
    let sfn =
        aws_sdk_sfn::Client::new(&cloud.clients().config(&cloud.fleet().primary_region).await);
    sfn.stop_execution()
        .execution_arn(meridian::rollout_end::execution_arn(
            &meridian_local::hosted::state_machine_arn(cloud.fleet()),
            name,
        ))
        .send()
        .await
        .expect("stop execution");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_event_is_healed_by_the_next_upload() {
    let cloud = start(Duration::from_secs(3600), Duration::from_secs(1)).await;
    upload(&cloud, "llama", "1", 1).await;
    let baking = reached(&cloud, "llama", "1", "baking").await;
    lose_status_events(&cloud).await;
    stop_reconcile_schedule(&cloud).await;
    stop_execution(&cloud, &baking.execution.clone().expect("execution")).await;
    let registry = registry(&cloud).await;
    let still = registry
        .version("llama", "1")
        .await
        .expect("read")
        .expect("registered");
    assert_eq!(
        still.status,
        VersionStatus::RollingOut,
        "nothing released it yet"
    );

    upload(&cloud, "mistral", "1", 2).await;
    let stopped = settled(&cloud, "llama", "1").await;
    assert_eq!(stopped.status, VersionStatus::Failed, "{stopped:?}");
    eventually("mistral/1 to take the lock and start", WITHIN, || async {
        let (lock, _) = registry.lock().await.ok()?;
        let holder = lock.holder?;
        (holder.model == "mistral" && holder.execution.is_some()).then_some(())
    })
    .await;
    cloud.shutdown().await.expect("shutdown");
}

/// Removes the target of the rule that delivers "Execution Status Change" to the rollout
/// function: the next such event reaches nothing, as one lost after every retry.
async fn lose_status_events(cloud: &LocalCloud) {
    let fleet = cloud.fleet();
    aws_sdk_eventbridge::Client::new(&cloud.clients().config(&fleet.primary_region).await)
        .remove_targets()
        .rule(meridian::names::event_rule_name(
            &fleet.name,
            meridian::names::FunctionRole::Rollout,
        ))
        .ids("deliver")
        .send()
        .await
        .expect("remove the rule's target");
}

/// Stops the rollout function's schedule (its rule loses its target), so only an upload
/// can heal a lost status event.
async fn stop_reconcile_schedule(cloud: &LocalCloud) {
    let fleet = cloud.fleet();
    aws_sdk_eventbridge::Client::new(&cloud.clients().config(&fleet.primary_region).await)
        .remove_targets()
        .rule(meridian::names::schedule_rule_name(
            &fleet.name,
            meridian::names::FunctionRole::Rollout,
        ))
        .ids(meridian::names::FunctionRole::Rollout.binary())
        .send()
        .await
        .expect("remove the schedule's target");
}

/// With no upload to notice it, the rollout function's schedule finds the lock held by an
/// execution that ended, releases it and starts the version queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_event_is_healed_by_the_schedule_without_an_upload() {
    let cloud = start(Duration::from_secs(3600), Duration::from_secs(1)).await;
    upload(&cloud, "llama", "1", 1).await;
    let baking = reached(&cloud, "llama", "1", "baking").await;
    upload(&cloud, "mistral", "1", 2).await;
    let registry = registry(&cloud).await;
    eventually("mistral/1 to queue behind llama/1", WITHIN, || async {
        let (lock, _) = registry.lock().await.ok()?;
        (lock.queue.len() == 1).then_some(())
    })
    .await;
    lose_status_events(&cloud).await;
    stop_execution(&cloud, &baking.execution.clone().expect("execution")).await;
    let stopped = settled(&cloud, "llama", "1").await;
    assert_eq!(stopped.status, VersionStatus::Failed, "{stopped:?}");
    eventually("mistral/1 to take the lock and start", WITHIN, || async {
        let (lock, _) = registry.lock().await.ok()?;
        let holder = lock.holder?;
        (holder.model == "mistral" && holder.execution.is_some()).then_some(())
    })
    .await;
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_resume_goes_on_and_promote_skips_a_long_bake() {
    let cloud = start(Duration::from_secs(3600), Duration::from_secs(1)).await;
    let before = serving_configs(&cloud).await;
    // Paused before the rollout reaches its first phase boundary.
    operator(&cloud, "llama", "1", OperatorAction::Pause).await;
    let manifest = upload(&cloud, "llama", "1", 1).await;
    let held = reached(&cloud, "llama", "1", "paused_at_replicated").await;
    assert_eq!(held.status, VersionStatus::RollingOut);
    assert!(
        held.regions.values().all(|p| p.deploy_started.is_none()),
        "held before preparing and deploying: {held:?}"
    );
    assert_eq!(serving_configs(&cloud).await, before, "no endpoint touched");

    operator(&cloud, "llama", "1", OperatorAction::Resume).await;
    reached(&cloud, "llama", "1", "baking").await;
    // An hour's bake: without the promote, the version would not settle within WITHIN.
    operator(&cloud, "llama", "1", OperatorAction::Promote).await;
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    let expected = deployment_name("llama", "1", &manifest.canonical_digest());
    for (region, config) in serving_configs(&cloud).await {
        assert_eq!(config, expected, "{region}");
    }
    let control = registry(&cloud)
        .await
        .operator_control("llama", "1")
        .await
        .expect("control");
    let recorded: Vec<(OperatorAction, &str, Option<&str>)> = control
        .history
        .iter()
        .map(|r| (r.action, r.who.as_str(), r.why.as_deref()))
        .collect();
    assert_eq!(
        recorded,
        [
            (OperatorAction::Pause, "test-operator", Some("e2e")),
            (OperatorAction::Resume, "test-operator", Some("e2e")),
            (OperatorAction::Promote, "test-operator", Some("e2e")),
        ]
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_rolls_every_region_back_and_records_who_and_why() {
    let cloud = start(Duration::from_secs(3600), Duration::from_secs(1)).await;
    let before = serving_configs(&cloud).await;
    upload(&cloud, "llama", "1", 1).await;
    reached(&cloud, "llama", "1", "baking").await;
    assert_ne!(
        serving_configs(&cloud).await,
        before,
        "deployed before the abort"
    );
    registry(&cloud)
        .await
        .apply_operator_action(
            "llama",
            "1",
            OperatorAction::Abort,
            "arn:aws:iam::123456789012:user/ann",
            Some("bad answers"),
        )
        .await
        .expect("registry")
        .expect("abort applies");
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("Meridian.Aborted")
            && reason.contains("aborted by arn:aws:iam::123456789012:user/ann: bad answers")
            && reason.contains("every region is on its previous version"),
        "{reason}"
    );
    assert_eq!(serving_configs(&cloud).await, before, "every region back");
    assert!(registry(&cloud)
        .await
        .active("llama")
        .await
        .expect("read")
        .is_none());
    let (lock, _) = registry(&cloud).await.lock().await.expect("lock");
    assert!(lock.holder.is_none(), "released: {lock:?}");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_while_the_endpoints_update_rolls_back_without_waiting_for_sagemaker() {
    // SageMaker's endpoint events are lost and the deploy wait's backstop is far beyond the
    // test's deadline: only the abort (which wakes every region's wait) ends the waits.
    let mut config = meridian_tests::test_config();
    config.endpoint_update_duration = Duration::from_secs(8);
    config.deploy_backstop_seconds = 3600;
    let cloud = start_cloud_with(config, fleet(Duration::ZERO), Functions::new(), true).await;
    for region in &cloud.fleet().regions {
        cloud.faults().drop_endpoint_events_in(&region.name);
    }
    let before = serving_configs(&cloud).await;
    upload(&cloud, "llama", "1", 1).await;
    let fleet = cloud.fleet().clone();
    eventually("every region to wait for its update", WITHIN, || async {
        for region in &fleet.regions {
            let regional = Registry {
                client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&region.name).await),
                table: fleet.registry_table.clone(),
            };
            regional
                .deploy_wait(&region.endpoint, &region.name)
                .await
                .ok()??;
        }
        Some(())
    })
    .await;
    let woken = operator(&cloud, "llama", "1", OperatorAction::Abort).await;
    assert!(
        woken.iter().all(|(_, w)| matches!(w, Ok(Woken::Resumed))),
        "every region's wait woken by the abort: {woken:?}"
    );
    let record = settled(&cloud, "llama", "1").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("Meridian.Aborted: aborted by test-operator: e2e"),
        "{reason}"
    );
    assert!(
        record.regions.values().all(|p| p.deployed.is_none()),
        "aborted before any region finished deploying: {record:?}"
    );
    assert_eq!(serving_configs(&cloud).await, before, "every region back");
    cloud.shutdown().await.expect("shutdown");
}
