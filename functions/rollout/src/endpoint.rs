//! The endpoint's lifecycle in one region: the SageMaker model and endpoint config
//! ([`prepare`]), the blue/green `UpdateEndpoint` ([`deploy`]), its end ([`status`]), the
//! smoke test ([`smoke_test`]) and the way back ([`rollback`]).

use chrono::{DateTime, Utc};
use meridian::fleet::RegionSpec;
use meridian::registry::{RegionProgress, VersionRecord};
use meridian::registry_store::RolloutRegistry;
use meridian::rollout::{
    aws_error, deploy_state, deployment_name, DeployState, RolloutError, TrafficStrategy,
};
use serde_json::{json, Value};

use crate::bookkeeping::stamp;
use crate::stores::RolloutStores;
use crate::{RolloutDeps, TaskInput};

/// The region's endpoint as SageMaker describes it.
pub(crate) async fn describe_endpoint(
    sagemaker: &aws_sdk_sagemaker::Client,
    region: &RegionSpec,
) -> Result<aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput, RolloutError> {
    sagemaker
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .map_err(|e| aws_error("reading the endpoint", e))
}

/// SageMaker model and endpoint configuration for the version, from the regional bucket.
pub(crate) async fn prepare(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    use aws_sdk_sagemaker::types::{
        ContainerDefinition, ModelCompressionType, ModelDataSource, ProductionVariant,
        ProductionVariantInstanceType, S3ModelDataSource, S3ModelDataType,
    };
    let region = deps.region(input.region.as_deref())?;
    let serving = &record.manifest.serving;
    // Sized by the fleet file, not the manifest: the region's instance type and its
    // desired count within the bounds in force now (a night window caps it).
    let now = Utc::now();
    let instances = meridian::capacity::deploy_count(region, now);
    // Every region's traffic step is checked by every region's preparation, so one region's
    // refusal stops them all before any creates its model.
    let refusals: Vec<String> = deps
        .fleet
        .regions
        .iter()
        .filter_map(|r| {
            let count = meridian::capacity::deploy_count(r, now);
            deps.fleet.rollout.traffic_shift_refusal(&r.name, count)
        })
        .collect();
    let refusals: Vec<String> = refusals
        .into_iter()
        .chain(meridian::variant::manifest_variant_refusal(
            serving.variant_name.as_deref(),
            &deps.fleet.variant_name,
        ))
        .collect();
    if !refusals.is_empty() {
        return Err(RolloutError::Invalid(refusals.join("; ")));
    }
    let image =
        meridian::images::image_for_region(&serving.image, &serving.images, &region.name)
            .map_err(|e| RolloutError::Invalid(format!("the image for {}: {e}", region.name)))?;
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let name = deployment_name(&record.model, &record.version, &record.digest);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let current = endpoint
        .endpoint_config_name()
        .unwrap_or_default()
        .to_owned();
    let data = S3ModelDataSource::builder()
        .s3_uri(format!(
            "s3://{}/{}",
            region.bucket,
            meridian::manifest::version_prefix(&record.model, &record.version)
        ))
        .s3_data_type(S3ModelDataType::S3Prefix)
        .compression_type(ModelCompressionType::None)
        .build();
    let created = sagemaker
        .create_model()
        .model_name(&name)
        .execution_role_arn(&deps.sagemaker_role_arn)
        .primary_container(
            ContainerDefinition::builder()
                .image(image.image.to_string())
                .model_data_source(ModelDataSource::builder().s3_data_source(data).build())
                .set_environment(Some(serving.environment.clone().into_iter().collect()))
                .build(),
        )
        .send()
        .await;
    ignore_existing(created.map(|_| ()), "creating the model")?;
    let config = sagemaker
        .create_endpoint_config()
        .endpoint_config_name(&name)
        .production_variants(
            ProductionVariant::builder()
                .variant_name(&deps.fleet.variant_name)
                .model_name(&name)
                .instance_type(ProductionVariantInstanceType::from(
                    region.instance_type.as_str(),
                ))
                .initial_instance_count(i32::try_from(instances).unwrap_or(i32::MAX))
                .build(),
        )
        .send()
        .await;
    ignore_existing(config.map(|_| ()), "creating the endpoint config")?;
    let (model, version, region_name) = (
        record.model.clone(),
        record.version.clone(),
        region.name.clone(),
    );
    let previous = if current == name {
        None
    } else {
        Some(current.clone())
    };
    let prepared = |progress: &mut RegionProgress| {
        if progress.previous_config.is_none() {
            progress.previous_config = previous.clone();
        }
        progress.config = Some(name.clone());
    };
    match &input.repair {
        Some(task) => {
            control
                .update_repair(task, |r| prepared(&mut r.progress))
                .await?;
        }
        None => {
            control
                .update_version(&model, &version, |r| {
                    prepared(r.regions.entry(region_name.clone()).or_default());
                    r.phases.entry("replicated".into()).or_insert_with(Utc::now);
                })
                .await?;
        }
    }
    Ok(json!({
        "region": region.name,
        "config": name,
        "instance_type": region.instance_type,
        "instances": instances,
    }))
}

pub(crate) fn ignore_existing<
    E: aws_sdk_sagemaker::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
>(
    result: Result<
        (),
        aws_sdk_sagemaker::error::SdkError<E, aws_sdk_sagemaker::config::http::HttpResponse>,
    >,
    context: &str,
) -> Result<(), RolloutError> {
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            let message = aws_sdk_sagemaker::error::ProvideErrorMetadata::message(&error)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if message.contains("already exist") {
                Ok(())
            } else {
                Err(aws_error(context, error))
            }
        }
    }
}

/// `UpdateEndpoint` with the fleet's guardrails (blue/green traffic shifting, auto-rollback
/// on the region's alarms). Idempotent: an endpoint already on (or moving to) the config
/// is left alone.
pub(crate) async fn deploy(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    use aws_sdk_sagemaker::types::*;
    let region = deps.region(input.region.as_deref())?;
    let name = deployment_name(&record.model, &record.version, &record.digest);
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let status = endpoint
        .endpoint_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let started_before = record
        .regions
        .get(&region.name)
        .and_then(|p| p.deploy_started);
    if started_before.is_some() || endpoint.endpoint_config_name() == Some(name.as_str()) {
        return Ok(json!({ "region": region.name, "config": name, "note": "already deploying" }));
    }
    if status == "Updating" || status == "RollingBack" {
        return Err(RolloutError::Retryable(format!(
            "endpoint {} in {} is {status}; waiting to deploy",
            region.endpoint, region.name
        )));
    }
    let settings = &deps.fleet.rollout;
    let percent = i32::try_from(settings.traffic_percent).unwrap_or(10);
    let bake = i32::try_from(settings.bake.as_secs()).unwrap_or(3600);
    let capacity = |value: i32| {
        CapacitySize::builder()
            .r#type(CapacitySizeType::CapacityPercent)
            .value(value)
            .build()
    };
    let routing = match settings.strategy {
        TrafficStrategy::Canary => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Canary)
            .canary_size(capacity(percent)),
        TrafficStrategy::Linear => TrafficRoutingConfig::builder()
            .r#type(TrafficRoutingConfigType::Linear)
            .linear_step_size(capacity(percent)),
        TrafficStrategy::AllAtOnce => {
            TrafficRoutingConfig::builder().r#type(TrafficRoutingConfigType::AllAtOnce)
        }
    }
    .wait_interval_in_seconds(bake)
    .build();
    let mut deployment = DeploymentConfig::builder().blue_green_update_policy(
        BlueGreenUpdatePolicy::builder()
            .traffic_routing_configuration(routing)
            .termination_wait_in_seconds(0)
            .maximum_execution_timeout_in_seconds(
                i32::try_from(settings.sagemaker_deployment_timeout()).unwrap_or(i32::MAX),
            )
            .build(),
    );
    if !region.alarms.is_empty() {
        let mut rollback = AutoRollbackConfig::builder();
        for alarm in region.alarms.iter().take(10) {
            rollback = rollback.alarms(Alarm::builder().alarm_name(alarm).build());
        }
        deployment = deployment.auto_rollback_configuration(rollback.build());
    }
    let from = endpoint.endpoint_config_name().unwrap_or_default();
    let deployment = Some(deployment.build());
    update_endpoint(
        deps,
        &sagemaker,
        region,
        (from, &name),
        deployment,
        "updating the endpoint",
    )
    .await?;
    stamp(control, record, input, &region.name, |p| {
        &mut p.deploy_started
    })
    .await?;
    Ok(json!({ "region": region.name, "config": name }))
}

/// Whether the region's update is done. `InService` on a configuration that is not ours
/// is a (silent) rollback: a failure.
pub(crate) async fn status(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let name = deployment_name(&record.model, &record.version, &record.digest);
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let state = deploy_state(
        endpoint
            .endpoint_status()
            .map(|s| s.as_str())
            .unwrap_or_default(),
        endpoint.endpoint_config_name().unwrap_or_default(),
        &name,
        endpoint.failure_reason(),
    );
    let started: Option<DateTime<Utc>> = record
        .regions
        .get(&region.name)
        .and_then(|p| p.deploy_started);
    match state {
        DeployState::InProgress => {
            let deadline = started.map(|s| {
                s + chrono::Duration::from_std(deps.fleet.rollout.deploy_timeout)
                    .unwrap_or(chrono::Duration::MAX)
            });
            if deadline.is_some_and(|d| Utc::now() > d) {
                return Err(RolloutError::DeployFailed(format!(
                    "the update of {} in {} did not finish within {:?}",
                    region.endpoint, region.name, deps.fleet.rollout.deploy_timeout
                )));
            }
            Ok(json!({ "region": region.name, "done": false }))
        }
        DeployState::Done => {
            stamp(control, record, input, &region.name, |p| &mut p.deployed).await?;
            Ok(json!({ "region": region.name, "done": true }))
        }
        DeployState::RolledBack { serving } => Err(RolloutError::SilentRollback(format!(
            "{} in {} is in service on {serving}, not {name}: SageMaker rolled the update back",
            region.endpoint, region.name
        ))),
        DeployState::Failed { reason } => Err(RolloutError::DeployFailed(format!(
            "{} in {}: {reason}",
            region.endpoint, region.name
        ))),
    }
}

/// Invokes the region's endpoint once on the new version with the manifest's smoke test
/// (or the TGI default); a model error or an unhealthy answer fails the rollout, a
/// throttle or transient error is retried.
pub(crate) async fn smoke_test(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let smoke = record
        .manifest
        .serving
        .smoke_test
        .clone()
        .unwrap_or_default();
    let runtime = aws_sdk_sagemakerruntime::Client::new(&deps.clients.config(&region.name).await);
    let answer = runtime
        .invoke_endpoint()
        .endpoint_name(&region.endpoint)
        .content_type(&smoke.content_type)
        .accept(&smoke.content_type)
        .body(aws_sdk_sagemakerruntime::primitives::Blob::new(
            smoke.request_body(),
        ))
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            let permanent = error
                .as_service_error()
                .is_some_and(|e| e.is_model_error() || e.is_validation_error());
            let message = format!(
                "smoke test of {} in {}: {}",
                region.endpoint,
                region.name,
                aws_sdk_sagemakerruntime::error::DisplayErrorContext(&error)
            );
            return Err(if permanent {
                RolloutError::DeployFailed(message)
            } else {
                RolloutError::Retryable(message)
            });
        }
    };
    let body = answer
        .body()
        .map(|b| b.as_ref().to_vec())
        .unwrap_or_default();
    if let Err(why) = smoke.verdict(&body) {
        return Err(RolloutError::DeployFailed(format!(
            "smoke test of {} in {}: {why}",
            region.endpoint, region.name
        )));
    }
    stamp(control, record, input, &region.name, |p| &mut p.verified).await?;
    Ok(json!({ "region": region.name, "answer_bytes": body.len() }))
}

/// Puts one region back on the configuration it served before this rollout. Retryable
/// while the endpoint is still updating, so the state machine's retry waits for it.
pub(crate) async fn rollback(
    deps: &RolloutDeps<impl RolloutStores>,
    control: &impl RolloutRegistry,
    record: &VersionRecord,
    input: &TaskInput,
) -> Result<Value, RolloutError> {
    let region = deps.region(input.region.as_deref())?;
    let Some(previous) = record
        .regions
        .get(&region.name)
        .and_then(|p| p.previous_config.clone())
    else {
        return Ok(json!({ "region": region.name, "note": "nothing deployed here" }));
    };
    let sagemaker = aws_sdk_sagemaker::Client::new(&deps.clients.config(&region.name).await);
    let endpoint = describe_endpoint(&sagemaker, region).await?;
    let status = endpoint
        .endpoint_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let serving = endpoint
        .endpoint_config_name()
        .unwrap_or_default()
        .to_owned();
    if status == "Updating" || status == "RollingBack" {
        return Err(RolloutError::Retryable(format!(
            "{} in {} is {status}; rolling back once it settles",
            region.endpoint, region.name
        )));
    }
    if serving == previous && status == "InService" {
        stamp(control, record, input, &region.name, |p| &mut p.rolled_back).await?;
        return Ok(json!({ "region": region.name, "serving": previous }));
    }
    let change = (serving.as_str(), previous.as_str());
    update_endpoint(
        deps,
        &sagemaker,
        region,
        change,
        None,
        "rolling the endpoint back",
    )
    .await?;
    Err(RolloutError::Retryable(format!(
        "{} in {} is rolling back to {previous}",
        region.endpoint, region.name
    )))
}

/// `UpdateEndpoint` from one config to another (`from`, `to`) the way an autoscaled
/// variant requires: its scalable target deregistered first when the instance type changes,
/// and SageMaker's refusal read in that light ([`crate::autoscaled`]).
async fn update_endpoint(
    deps: &RolloutDeps<impl RolloutStores>,
    sagemaker: &aws_sdk_sagemaker::Client,
    region: &RegionSpec,
    (from, to): (&str, &str),
    deployment: Option<aws_sdk_sagemaker::types::DeploymentConfig>,
    context: &str,
) -> Result<(), RolloutError> {
    let guard = crate::autoscaled::AwsUpdateGuard::new(&deps.clients, &region.name).await;
    let variant = &deps.fleet.variant_name;
    let cleared =
        crate::autoscaled::clear_for_update(&guard, &region.endpoint, variant, from, to).await?;
    let updated = sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name(to)
        .set_deployment_config(deployment)
        .send()
        .await;
    match updated {
        Ok(_) => Ok(()),
        Err(error) => Err(crate::autoscaled::after_refusal(
            &guard,
            &region.endpoint,
            variant,
            &cleared,
            aws_error(context, error),
        )
        .await),
    }
}
