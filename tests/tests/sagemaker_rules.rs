//! End to end on the local cloud: SageMaker's rules about the production variant that a
//! rollout must respect. The fleet file names the variant (blue/green updates keep it, and
//! alarms and autoscaling are keyed by it), and an update that changes an autoscaled
//! variant's instance type needs its scalable target out of the way first.

use std::path::Path;
use std::time::Duration;

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_sagemaker::types::{ProductionVariant, ProductionVariantInstanceType};
use meridian::fleet::Fleet;
use meridian::manifest::{describe_dir, manifest_key, Manifest, Serving};
use meridian::registry::{Registry, VersionRecord, VersionStatus};
use meridian::rollout::deployment_name;
use meridian::variant::scalable_target_resource_id;
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for};

const WITHIN: Duration = Duration::from_secs(90);

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.rollout.bake = Duration::from_secs(0);
    fleet.rollout.replica_timeout = Duration::from_secs(20);
    fleet
}

fn serving(variant_name: Option<&str>) -> Serving {
    Serving {
        image:
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:latest"
                .into(),
        images: Default::default(),
        instance_type: "ml.g5.2xlarge".into(),
        instance_count: 2,
        variant_name: variant_name.map(str::to_owned),
        environment: Default::default(),
        smoke_test: None,
    }
}

/// Uploads a small version (files first, the manifest last).
async fn upload(cloud: &LocalCloud, version: &str, serving: Serving) -> Manifest {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("config.json"),
        format!("{{\"v\": {version:?}}}"),
    )
    .expect("write config");
    std::fs::write(dir.path().join("weights.bin"), vec![7u8; 1024 * 1024]).expect("write");
    let manifest = describe_dir(dir.path(), "llama", version, serving).expect("manifest");
    let fleet = cloud.fleet();
    let s3 = cloud.clients().s3(&fleet.primary_region).await;
    for file in &manifest.files {
        let body = std::fs::read(Path::new(dir.path()).join(&file.path)).expect("read");
        s3.put_object()
            .bucket(&fleet.primary_bucket)
            .key(manifest.object_key(file))
            .body(body.into())
            .send()
            .await
            .expect("put file");
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

async fn settled(cloud: &LocalCloud, version: &str) -> VersionRecord {
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(
            &cloud.clients().config(&cloud.fleet().primary_region).await,
        ),
        table: cloud.fleet().registry_table.clone(),
    };
    eventually(&format!("llama/{version} to settle"), WITHIN, || async {
        let record = registry.version("llama", version).await.ok()??;
        matches!(record.status, VersionStatus::Active | VersionStatus::Failed).then_some(record)
    })
    .await
}

fn sagemaker_writes_by_rollout(cloud: &LocalCloud) -> Vec<String> {
    cloud
        .api_calls()
        .into_iter()
        .filter(|c| c.caller.as_deref() == Some("meridian-rollout") && c.service == "sagemaker")
        .filter(|c| {
            ["CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]
                .contains(&c.operation.as_str())
        })
        .map(|c| format!("{} {}", c.region, c.operation))
        .collect()
}

/// The variant names of the configuration `region`'s endpoint serves.
async fn served_variants(cloud: &LocalCloud, region: &str) -> Vec<String> {
    let spec = cloud.fleet().region(region).expect("in the fleet");
    let sagemaker = aws_sdk_sagemaker::Client::new(&cloud.clients().config(region).await);
    let endpoint = sagemaker
        .describe_endpoint()
        .endpoint_name(&spec.endpoint)
        .send()
        .await
        .expect("describe endpoint");
    let config = sagemaker
        .describe_endpoint_config()
        .endpoint_config_name(endpoint.endpoint_config_name().unwrap_or_default())
        .send()
        .await
        .expect("describe config");
    config
        .production_variants()
        .iter()
        .filter_map(|v| v.variant_name().map(str::to_owned))
        .collect()
}

async fn scalable_target_exists(cloud: &LocalCloud, region: &str) -> bool {
    let spec = cloud.fleet().region(region).expect("in the fleet");
    let autoscaling =
        aws_sdk_applicationautoscaling::Client::new(&cloud.clients().config(region).await);
    autoscaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_ids(scalable_target_resource_id(
            &spec.endpoint,
            &cloud.fleet().variant_name,
        ))
        .send()
        .await
        .expect("describe targets")
        .scalable_targets()
        .len()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_another_variant_is_refused_before_any_region_is_touched() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    upload(&cloud, "1", serving(Some("blue"))).await;
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Failed, "{record:?}");
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains("Meridian.Invalid")
            && reason.contains("serving.variant_name \"blue\"")
            && reason.contains("deprecated")
            && reason.contains("fleet file's variant_name \"primary\""),
        "{reason}"
    );
    let touched = sagemaker_writes_by_rollout(&cloud);
    assert!(touched.is_empty(), "refused before SageMaker: {touched:?}");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_variant_name_is_deployed_scaled_and_kept_by_every_rollout() {
    let mut named = fleet();
    named.variant_name = "blue".into();
    let cloud = start_cloud_for(named, Functions::new(), true).await;
    for region in cloud.fleet().region_names() {
        assert_eq!(served_variants(&cloud, region).await, ["blue"], "{region}");
        assert!(scalable_target_exists(&cloud, region).await, "{region}");
    }
    // A manifest repeating the fleet's name is accepted, as is one naming none.
    for (version, variant) in [("1", Some("blue")), ("2", None)] {
        let manifest = upload(&cloud, version, serving(variant)).await;
        let record = settled(&cloud, version).await;
        assert_eq!(record.status, VersionStatus::Active, "{record:?}");
        let config = deployment_name("llama", version, &manifest.canonical_digest());
        assert_eq!(
            record.regions["us-east-1"].config.as_deref(),
            Some(config.as_str())
        );
        for region in cloud.fleet().region_names() {
            assert_eq!(served_variants(&cloud, region).await, ["blue"], "{region}");
        }
    }
    cloud.shutdown().await.expect("shutdown");
}

/// Puts `region`'s endpoint on a hand-made configuration of `instance_type`, the way an
/// operator following AWS's procedure would: the scalable target deregistered, the update,
/// the target registered again (the failback tick may register it in between: then again).
async fn serve_instance_type(cloud: &LocalCloud, region: &str, instance_type: &str) {
    let spec = cloud.fleet().region(region).expect("in the fleet").clone();
    let variant = cloud.fleet().variant_name.clone();
    let config = aws_sdk_sagemaker::Client::new(&cloud.clients().config(region).await);
    let bootstrap = format!("{}-bootstrap", spec.endpoint);
    let handmade = format!("{}-handmade", spec.endpoint);
    config
        .create_endpoint_config()
        .endpoint_config_name(&handmade)
        .production_variants(
            ProductionVariant::builder()
                .variant_name(&variant)
                .model_name(&bootstrap)
                .instance_type(ProductionVariantInstanceType::from(instance_type))
                .initial_instance_count(2)
                .build(),
        )
        .send()
        .await
        .expect("create the hand-made config");
    let update = || {
        config
            .update_endpoint()
            .endpoint_name(&spec.endpoint)
            .endpoint_config_name(&handmade)
            .send()
    };
    // SageMaker's rule, emulated: not while the variant is a scalable target.
    let refused = update().await.expect_err("refused while autoscaled");
    let message = aws_sdk_sagemaker::error::DisplayErrorContext(&refused).to_string();
    assert!(
        message.contains("ValidationException")
            && message.contains("registered as Application Auto Scaling targets"),
        "{message}"
    );
    let autoscaling =
        aws_sdk_applicationautoscaling::Client::new(&cloud.clients().config(region).await);
    let resource = scalable_target_resource_id(&spec.endpoint, &variant);
    eventually("the hand-made update", WITHIN, || async {
        let _ = autoscaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&resource)
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .send()
            .await;
        update().await.ok()
    })
    .await;
    eventually("the hand-made config in service", WITHIN, || async {
        let endpoint = config
            .describe_endpoint()
            .endpoint_name(&spec.endpoint)
            .send()
            .await
            .ok()?;
        (endpoint.endpoint_config_name() == Some(handmade.as_str())
            && endpoint.endpoint_status().map(|s| s.as_str()) == Some("InService"))
        .then_some(())
    })
    .await;
    eventually("the target registered again", WITHIN, || async {
        scalable_target_exists(cloud, region).await.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_type_change_on_an_autoscaled_variant_deploys_and_autoscaling_comes_back() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    let region = "eu-west-1";
    assert_eq!(
        cloud
            .fleet()
            .region(region)
            .map(|r| r.instance_type.as_str()),
        Some("ml.g5.2xlarge")
    );
    // The endpoint runs another type than the fleet file says, autoscaled.
    serve_instance_type(&cloud, region, "ml.g5.4xlarge").await;
    let calls_before = cloud.api_calls().len();

    let manifest = upload(&cloud, "1", serving(None)).await;
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    let config = deployment_name("llama", "1", &manifest.canonical_digest());
    assert_eq!(
        record.regions[region].config.as_deref(),
        Some(config.as_str())
    );
    let deregistered: Vec<String> = cloud.api_calls()[calls_before..]
        .iter()
        .filter(|c| c.caller.as_deref() == Some("meridian-rollout"))
        .filter(|c| c.operation == "DeregisterScalableTarget")
        .map(|c| c.region.clone())
        .collect();
    assert_eq!(deregistered, [region], "only the region whose type changed");
    // The failback tick's capacity reconcile registers the target again.
    eventually("autoscaling back in eu-west-1", WITHIN, || async {
        scalable_target_exists(&cloud, region).await.then_some(())
    })
    .await;
    cloud.shutdown().await.expect("shutdown");
}

/// The bodies of the messages in `queue` so far (each received once).
async fn drain(sqs: &aws_sdk_sqs::Client, queue: &str, into: &mut Vec<serde_json::Value>) {
    let received = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive");
    for message in received.messages() {
        if let Some(body) = message.body().and_then(|b| serde_json::from_str(b).ok()) {
            into.push(body);
        }
        if let Some(handle) = message.receipt_handle() {
            let _ = sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(handle)
                .send()
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_update_sends_sagemakers_endpoint_events() {
    use meridian::endpoint_events::{
        EndpointChange, DEPLOYMENT_STATE_CHANGE, ENDPOINT_STATE_CHANGE,
    };
    let cloud = start_cloud_for(fleet(), Functions::new(), false).await;
    let region = "eu-west-1";
    let spec = cloud.fleet().region(region).expect("in the fleet").clone();
    let config = cloud.clients().config(region).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs
        .create_queue()
        .queue_name("sagemaker-events")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let queue_arn = format!("arn:aws:sqs:{region}:123456789012:sagemaker-events");
    let events = aws_sdk_eventbridge::Client::new(&config);
    let pattern = serde_json::json!({
        "source": ["aws.sagemaker"],
        "detail-type": [ENDPOINT_STATE_CHANGE, DEPLOYMENT_STATE_CHANGE],
        "detail": { "EndpointName": [spec.endpoint] }
    });
    events
        .put_rule()
        .name("sagemaker-events")
        .event_pattern(pattern.to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule("sagemaker-events")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("target");

    // A model-only update (same instance type: allowed with the variant autoscaled).
    let sagemaker = aws_sdk_sagemaker::Client::new(&config);
    let next = format!("{}-next", spec.endpoint);
    sagemaker
        .create_endpoint_config()
        .endpoint_config_name(&next)
        .production_variants(
            ProductionVariant::builder()
                .variant_name(&cloud.fleet().variant_name)
                .model_name(format!("{}-bootstrap", spec.endpoint))
                .instance_type(ProductionVariantInstanceType::from(
                    spec.instance_type.as_str(),
                ))
                .initial_instance_count(2)
                .build(),
        )
        .send()
        .await
        .expect("config");
    sagemaker
        .update_endpoint()
        .endpoint_name(&spec.endpoint)
        .endpoint_config_name(&next)
        .send()
        .await
        .expect("a model-only update is allowed");

    // Nobody describes the endpoint: its end is noticed and announced all the same.
    let seen = std::sync::Mutex::new(Vec::new());
    let (sqs, queue, next_name, seen_so_far) = (&sqs, &queue, next.as_str(), &seen);
    // EventBridge delivers the two events independently, in any order: wait for both ends.
    eventually(
        "the endpoint's in-service event and the deployment's end",
        WITHIN,
        move || async move {
            let mut batch = Vec::new();
            drain(sqs, queue, &mut batch).await;
            let mut seen = seen_so_far.lock().expect("lock");
            seen.extend(batch);
            let in_service = seen.iter().any(|e| {
                e["detail-type"] == ENDPOINT_STATE_CHANGE
                    && e["detail"]["EndpointStatus"] == "IN_SERVICE"
                    && e["detail"]["EndpointConfigName"] == next_name
            });
            let deployment_ended = seen.iter().any(|e| {
                e["detail-type"] == DEPLOYMENT_STATE_CHANGE
                    && serde_json::from_value::<EndpointChange>(e["detail"].clone())
                        .is_ok_and(|d| d.settled())
            });
            (in_service && deployment_ended).then_some(())
        },
    )
    .await;
    let seen = seen.into_inner().expect("lock");
    let details: Vec<(String, EndpointChange)> = seen
        .iter()
        .map(|e| {
            let detail = serde_json::from_value(e["detail"].clone()).expect("the typed detail");
            (
                e["detail-type"].as_str().unwrap_or_default().to_owned(),
                detail,
            )
        })
        .collect();
    let deploying = details
        .iter()
        .find(|(kind, d)| kind == DEPLOYMENT_STATE_CHANGE && d.endpoint_status == "UPDATING")
        .map(|(_, d)| d.clone())
        .expect("a deployment event while updating");
    assert_eq!(
        deploying
            .pending_deployment_summary
            .as_ref()
            .and_then(|p| p.endpoint_config_name.as_deref()),
        Some(next.as_str())
    );
    assert!(!deploying.settled());
    assert!(details
        .iter()
        .any(|(kind, d)| kind == DEPLOYMENT_STATE_CHANGE && d.settled()));
    assert!(seen
        .iter()
        .all(|e| e["source"] == "aws.sagemaker" && e["region"] == region));
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_regions_deploy_wait_is_resumed_by_sagemakers_events() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    upload(&cloud, "1", serving(None)).await;
    let record = settled(&cloud, "1").await;
    assert_eq!(record.status, VersionStatus::Active, "{record:?}");
    // The deploy-watch functions resumed every region's wait (the backstop, 60 s locally,
    // never had to); Step Functions is called in the control region.
    let resume = meridian_local::calls::ApiCall {
        caller: Some(meridian::names::sdk_app_name(
            meridian::names::FunctionRole::DeployWatch,
        )),
        region: cloud.fleet().primary_region.clone(),
        service: "states".into(),
        operation: "SendTaskSuccess".into(),
        refused: false,
    };
    let resumes = cloud.api_call_count(&resume);
    assert!(
        resumes >= cloud.fleet().regions.len() as u64,
        "one resume per region at least: {resumes}"
    );
    cloud.shutdown().await.expect("shutdown");
}
