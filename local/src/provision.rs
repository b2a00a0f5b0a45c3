//! Creates the fleet's resources in the local cloud through the gateway, with the same
//! SDK calls a user would make, and checks them afterwards. Every step is idempotent.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateReplicationGroupMemberAction, KeySchemaElement,
    KeyType, ReplicationGroupUpdate, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, EventBridgeConfiguration,
    Metrics, MetricsStatus, NotificationConfiguration, ReplicationConfiguration, ReplicationRule,
    ReplicationRuleFilter, ReplicationRuleStatus, ReplicationTime, ReplicationTimeStatus,
    ReplicationTimeValue, VersioningConfiguration,
};
use meridian::aws::ClientFactory;
use meridian::fleet::{Fleet, RegionSpec};
use meridian::names::{self, FunctionRole};
use serde::Serialize;
use serde_json::json;

use crate::ctx::LOCAL_ACCOUNT;
use crate::delivery::Subscription;

/// The key prefix under which model versions live and replicate.
pub const MODELS_PREFIX: &str = "models/";

/// The keys whose creation reaches the upload function: manifests, the commit signal.
pub const MANIFEST_KEYS: &str = "models/*/manifest.json";

/// What provisioning created that the gateway and callers need to know.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub subscriptions: Vec<Subscription>,
    pub hosted_zone_id: String,
    pub health_checks: BTreeMap<String, String>,
}

/// Creates everything the fleet file describes; each region's health check probes its
/// front door at `front_doors[region]`.
pub async fn provision(
    clients: &ClientFactory,
    fleet: &Fleet,
    front_doors: &BTreeMap<String, String>,
    poll_seconds: u64,
    deploy_backstop_seconds: u64,
) -> Result<Provisioned> {
    let mut provisioned = Provisioned::default();
    for region in &fleet.regions {
        bucket(clients, &region.name, &region.bucket).await?;
    }
    bucket(clients, &fleet.primary_region, &fleet.primary_bucket).await?;
    replication(clients, fleet).await?;
    registry_table(clients, fleet).await?;
    for region in &fleet.regions {
        let replica = route_events(
            clients,
            fleet,
            &region.name,
            FunctionRole::Replica,
            event_pattern(fleet, region, FunctionRole::Replica),
        )
        .await?;
        provisioned.subscriptions.push(replica);
        let failover = route_events(
            clients,
            fleet,
            &region.name,
            FunctionRole::Failover,
            event_pattern(fleet, region, FunctionRole::Failover),
        )
        .await?;
        provisioned.subscriptions.push(failover);
        let deploy_watch = route_events(
            clients,
            fleet,
            &region.name,
            FunctionRole::DeployWatch,
            event_pattern(fleet, region, FunctionRole::DeployWatch),
        )
        .await?;
        provisioned.subscriptions.push(deploy_watch);
        endpoint(clients, fleet, region).await?;
        alarms(clients, fleet, region).await?;
        scalable_target(clients, fleet, region).await?;
        schedule(
            clients,
            fleet,
            &region.name,
            FunctionRole::Failback,
            names::FAILBACK_SCHEDULE,
        )
        .await?;
        schedule(
            clients,
            fleet,
            &region.name,
            FunctionRole::Replica,
            names::REPLICA_RECONCILE_SCHEDULE,
        )
        .await?;
    }
    let primary = fleet
        .region(&fleet.primary_region)
        .context("the primary region is not in the fleet")?;
    let upload = route_events(
        clients,
        fleet,
        &fleet.primary_region,
        FunctionRole::Upload,
        event_pattern(fleet, primary, FunctionRole::Upload),
    )
    .await?;
    provisioned.subscriptions.push(upload);
    let execution_ended = route_events(
        clients,
        fleet,
        &fleet.primary_region,
        FunctionRole::Rollout,
        event_pattern(fleet, primary, FunctionRole::Rollout),
    )
    .await?;
    provisioned.subscriptions.push(execution_ended);
    schedule(
        clients,
        fleet,
        &fleet.primary_region,
        FunctionRole::Rollout,
        names::ROLLOUT_RECONCILE_SCHEDULE,
    )
    .await?;
    rollout_state_machine(clients, fleet, poll_seconds, deploy_backstop_seconds).await?;
    drill_state_machine(clients, fleet, poll_seconds).await?;
    let (zone, checks) = dns(clients, fleet, front_doors).await?;
    provisioned.hosted_zone_id = zone;
    provisioned.health_checks = checks;
    Ok(provisioned)
}

async fn bucket(clients: &ClientFactory, region: &str, name: &str) -> Result<()> {
    let s3 = clients.s3(region).await;
    let mut create = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    if let Err(error) = create.send().await {
        let exists = error
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_owned_by_you());
        if !exists {
            return Err(aws_sdk_s3::Error::from(error))
                .with_context(|| format!("creating bucket {name} in {region}"));
        }
    }
    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("enabling versioning on {name}"))?;
    s3.put_bucket_notification_configuration()
        .bucket(name)
        .notification_configuration(
            NotificationConfiguration::builder()
                .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("sending {name}'s events to EventBridge"))?;
    Ok(())
}

/// Cross-Region Replication from the primary bucket to every regional bucket, with
/// Replication Time Control (15 minutes) and its metrics.
async fn replication(clients: &ClientFactory, fleet: &Fleet) -> Result<()> {
    let mut configuration = ReplicationConfiguration::builder().role(format!(
        "arn:aws:iam::{LOCAL_ACCOUNT}:role/{}-replication",
        fleet.name
    ));
    for (priority, region) in (1..).zip(&fleet.regions) {
        let fifteen_minutes = ReplicationTimeValue::builder().minutes(15).build();
        let destination = Destination::builder()
            .bucket(format!("arn:aws:s3:::{}", region.bucket))
            .replication_time(
                ReplicationTime::builder()
                    .status(ReplicationTimeStatus::Enabled)
                    .time(fifteen_minutes.clone())
                    .build()?,
            )
            .metrics(
                Metrics::builder()
                    .status(MetricsStatus::Enabled)
                    .event_threshold(fifteen_minutes)
                    .build()?,
            )
            .build()?;
        configuration = configuration.rules(
            ReplicationRule::builder()
                .id(format!("to-{}", region.name))
                .priority(priority)
                .status(ReplicationRuleStatus::Enabled)
                .filter(
                    ReplicationRuleFilter::builder()
                        .prefix(MODELS_PREFIX)
                        .build(),
                )
                .delete_marker_replication(
                    DeleteMarkerReplication::builder()
                        .status(DeleteMarkerReplicationStatus::Disabled)
                        .build(),
                )
                .destination(destination)
                .build()?,
        );
    }
    clients
        .s3(&fleet.primary_region)
        .await
        .put_bucket_replication()
        .bucket(&fleet.primary_bucket)
        .replication_configuration(configuration.build()?)
        .send()
        .await
        .context("configuring replication on the primary bucket")?;
    Ok(())
}

/// The registry: one table, partition key `pk` and sort key `sk`, replicated to every
/// region of the fleet (global tables version 2019.11.21).
async fn registry_table(clients: &ClientFactory, fleet: &Fleet) -> Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&clients.config(&fleet.primary_region).await);
    let created = dynamodb
        .create_table()
        .table_name(&fleet.registry_table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(KeyType::Range)
                .build()?,
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        )
        .send()
        .await;
    if let Err(error) = created {
        let exists = error
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if !exists {
            return Err(aws_sdk_dynamodb::Error::from(error))
                .context("creating the registry table");
        }
    }
    let replicas: Vec<&RegionSpec> = fleet
        .regions
        .iter()
        .filter(|r| r.name != fleet.primary_region)
        .collect();
    if replicas.is_empty() {
        return Ok(());
    }
    let mut update = dynamodb.update_table().table_name(&fleet.registry_table);
    for region in replicas {
        update = update.replica_updates(
            ReplicationGroupUpdate::builder()
                .create(
                    CreateReplicationGroupMemberAction::builder()
                        .region_name(&region.name)
                        .build()?,
                )
                .build(),
        );
    }
    update
        .send()
        .await
        .context("adding the registry's replicas")?;
    Ok(())
}

fn attribute(name: &str) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

/// An EventBridge rule with an SQS queue as its target, delivered to `role`'s function.
/// The EventBridge pattern of a function's rule in `region`: the same patterns
/// `template.yaml` gives the deployed rules (a test holds them equal), so the local cloud
/// routes events as AWS will. `Null` for functions no rule targets.
pub fn event_pattern(fleet: &Fleet, region: &RegionSpec, role: FunctionRole) -> serde_json::Value {
    match role {
        FunctionRole::Replica => json!({
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": { "bucket": { "name": [region.bucket] } },
        }),
        FunctionRole::Failover => json!({
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": { "alarmName": region.alarms },
        }),
        FunctionRole::Upload => json!({
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": { "name": [fleet.primary_bucket] },
                "object": { "key": [{ "wildcard": MANIFEST_KEYS }] },
            },
        }),
        FunctionRole::DeployWatch => json!({
            "source": [meridian::endpoint_events::SOURCE],
            "detail-type": [
                meridian::endpoint_events::ENDPOINT_STATE_CHANGE,
                meridian::endpoint_events::DEPLOYMENT_STATE_CHANGE,
            ],
            "detail": { "EndpointName": [region.endpoint] },
        }),
        FunctionRole::Rollout => json!({
            "source": ["aws.states"],
            "detail-type": ["Step Functions Execution Status Change"],
            "detail": {
                "status": ["ABORTED", "TIMED_OUT", "FAILED"],
                "stateMachineArn": [crate::hosted::state_machine_arn(fleet)],
            },
        }),
        FunctionRole::Failback | FunctionRole::FrontDoor | FunctionRole::Drill => {
            serde_json::Value::Null
        }
    }
}

async fn route_events(
    clients: &ClientFactory,
    fleet: &Fleet,
    region: &str,
    role: FunctionRole,
    pattern: serde_json::Value,
) -> Result<Subscription> {
    let config = clients.config(region).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_name = names::event_queue_name(&fleet.name, role);
    let queue = sqs
        .create_queue()
        .queue_name(&queue_name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "5",
        )
        .send()
        .await
        .with_context(|| format!("creating queue {queue_name} in {region}"))?;
    let queue_url = queue.queue_url().unwrap_or_default().to_owned();
    let queue_arn = format!("arn:aws:sqs:{region}:{LOCAL_ACCOUNT}:{queue_name}");
    let events = aws_sdk_eventbridge::Client::new(&config);
    let rule = names::event_rule_name(&fleet.name, role);
    events
        .put_rule()
        .name(&rule)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .with_context(|| format!("creating rule {rule} in {region}"))?;
    events
        .put_targets()
        .rule(&rule)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("deliver")
                .arn(queue_arn)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("targeting rule {rule} in {region}"))?;
    Ok(Subscription {
        region: region.to_owned(),
        queue_url,
        function_name: names::function_name(&fleet.name, role),
    })
}

/// The bootstrap model, endpoint config and endpoint of a region, if absent.
async fn endpoint(clients: &ClientFactory, fleet: &Fleet, region: &RegionSpec) -> Result<()> {
    use aws_sdk_sagemaker::types::{
        ContainerDefinition, ProductionVariant, ProductionVariantInstanceType,
    };
    let sagemaker = aws_sdk_sagemaker::Client::new(&clients.config(&region.name).await);
    if sagemaker
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    let bootstrap = format!("{}-bootstrap", region.endpoint);
    let model = sagemaker
        .create_model()
        .model_name(&bootstrap)
        .execution_role_arn(format!(
            "arn:aws:iam::{LOCAL_ACCOUNT}:role/{}-sagemaker",
            fleet.name
        ))
        .primary_container(
            ContainerDefinition::builder()
                .image(format!(
                    "763104351884.dkr.ecr.{}.amazonaws.com/meridian-bootstrap:latest",
                    region.name
                ))
                .build(),
        )
        .send()
        .await;
    if let Err(error) = model {
        ignore_existing(error).context("creating the bootstrap model")?;
    }
    let config = sagemaker
        .create_endpoint_config()
        .endpoint_config_name(&bootstrap)
        .production_variants(
            ProductionVariant::builder()
                .variant_name(&fleet.variant_name)
                .model_name(&bootstrap)
                .instance_type(ProductionVariantInstanceType::from(
                    region.instance_type.as_str(),
                ))
                .initial_instance_count(i32::try_from(region.instance_count).unwrap_or(i32::MAX))
                .build(),
        )
        .send()
        .await;
    if let Err(error) = config {
        ignore_existing(error).context("creating the bootstrap endpoint config")?;
    }
    sagemaker
        .create_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name(&bootstrap)
        .send()
        .await
        .with_context(|| format!("creating endpoint {} in {}", region.endpoint, region.name))?;
    Ok(())
}

/// The region's endpoint alarms named in the fleet file. Their metric is nominal (latency
/// alarms watch `ModelLatency`, the others `Invocation5XXErrors`): local alarms change
/// state only through `SetAlarmState`.
async fn alarms(clients: &ClientFactory, fleet: &Fleet, region: &RegionSpec) -> Result<()> {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&clients.config(&region.name).await);
    for name in &region.alarms {
        let latency = name.contains("latency");
        cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .alarm_description(format!(
                "{} of endpoint {}",
                if latency {
                    "model latency"
                } else {
                    "5xx errors"
                },
                region.endpoint
            ))
            .namespace("AWS/SageMaker")
            .metric_name(if latency {
                "ModelLatency"
            } else {
                "Invocation5XXErrors"
            })
            .dimensions(
                Dimension::builder()
                    .name("EndpointName")
                    .value(&region.endpoint)
                    .build(),
            )
            .dimensions(
                Dimension::builder()
                    .name("VariantName")
                    .value(&fleet.variant_name)
                    .build(),
            )
            .statistic(if latency {
                Statistic::Average
            } else {
                Statistic::Sum
            })
            .period(60)
            .evaluation_periods(3)
            .threshold(if latency { 2_000_000.0 } else { 5.0 })
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .send()
            .await
            .with_context(|| format!("creating alarm {name} in {}", region.name))?;
    }
    Ok(())
}

/// The endpoint variant as an Application Auto Scaling target with the fleet's bounds.
/// Re-provisioning keeps a minimum raised by a standby scale-up.
async fn scalable_target(
    clients: &ClientFactory,
    fleet: &Fleet,
    region: &RegionSpec,
) -> Result<()> {
    use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
    let autoscaling =
        aws_sdk_applicationautoscaling::Client::new(&clients.config(&region.name).await);
    let resource =
        meridian::variant::scalable_target_resource_id(&region.endpoint, &fleet.variant_name);
    let existing = autoscaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_ids(&resource)
        .send()
        .await
        .with_context(|| format!("reading the scalable target of {}", region.name))?;
    if !existing.scalable_targets().is_empty() {
        return Ok(());
    }
    autoscaling
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Sagemaker)
        .resource_id(&resource)
        .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
        .min_capacity(i32::try_from(region.min_instances).unwrap_or(i32::MAX))
        .max_capacity(i32::try_from(region.max_instances).unwrap_or(i32::MAX))
        .send()
        .await
        .with_context(|| format!("registering the scalable target of {}", region.name))?;
    Ok(())
}

/// The schedule that runs `role`'s function in a region, as the template's `Schedule`
/// event does.
async fn schedule(
    clients: &ClientFactory,
    fleet: &Fleet,
    region: &str,
    role: FunctionRole,
    expression: &str,
) -> Result<()> {
    let events = aws_sdk_eventbridge::Client::new(&clients.config(region).await);
    let rule = names::schedule_rule_name(&fleet.name, role);
    events
        .put_rule()
        .name(&rule)
        .schedule_expression(expression)
        .send()
        .await
        .with_context(|| format!("creating rule {rule} in {region}"))?;
    let function = names::function_name(&fleet.name, role);
    events
        .put_targets()
        .rule(&rule)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id(role.binary())
                .arn(format!(
                    "arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{function}"
                ))
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("targeting rule {rule} in {region}"))?;
    Ok(())
}

/// The rollout definition, with the template's `DefinitionSubstitutions` applied.
pub const ROLLOUT_ASL: &str = include_str!("../../statemachines/rollout.asl.json");

/// Applies `${Name}` substitutions to an ASL definition, as SAM's DefinitionSubstitutions do.
pub fn substitute(definition: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(definition.to_owned(), |text, (name, value)| {
            text.replace(&format!("${{{name}}}"), value)
        })
}

/// The rollout state machine in the primary region, created or updated to the definition.
async fn rollout_state_machine(
    clients: &ClientFactory,
    fleet: &Fleet,
    poll_seconds: u64,
    deploy_backstop_seconds: u64,
) -> Result<()> {
    let function = names::function_name(&fleet.name, FunctionRole::Rollout);
    let definition = substitute(
        ROLLOUT_ASL,
        &[
            (
                "RolloutFunctionArn",
                format!(
                    "arn:aws:lambda:{}:{LOCAL_ACCOUNT}:function:{function}",
                    fleet.primary_region
                ),
            ),
            (
                "ReplicaTimeoutSeconds",
                fleet.rollout.replica_timeout.as_secs().max(1).to_string(),
            ),
            ("StatusPollSeconds", poll_seconds.max(1).to_string()),
            (
                "DeployBackstopSeconds",
                deploy_backstop_seconds.max(1).to_string(),
            ),
        ],
    );
    let name = names::rollout_state_machine_name(&fleet.name);
    put_state_machine(clients, fleet, &name, &definition).await
}

/// The drill definition, with the template's `DefinitionSubstitutions` applied.
pub const DRILL_ASL: &str = include_str!("../../statemachines/drill.asl.json");

/// The drill state machine in the primary region, created or updated to the definition.
async fn drill_state_machine(
    clients: &ClientFactory,
    fleet: &Fleet,
    poll_seconds: u64,
) -> Result<()> {
    let function = names::function_name(&fleet.name, FunctionRole::Drill);
    let definition = substitute(
        DRILL_ASL,
        &[
            (
                "DrillFunctionArn",
                format!(
                    "arn:aws:lambda:{}:{LOCAL_ACCOUNT}:function:{function}",
                    fleet.primary_region
                ),
            ),
            ("DrillPollSeconds", poll_seconds.max(1).to_string()),
        ],
    );
    let name = names::drill_state_machine_name(&fleet.name);
    put_state_machine(clients, fleet, &name, &definition).await
}

/// Creates the state machine `name` in the primary region, or updates its definition.
async fn put_state_machine(
    clients: &ClientFactory,
    fleet: &Fleet,
    name: &str,
    definition: &str,
) -> Result<()> {
    let sfn = aws_sdk_sfn::Client::new(&clients.config(&fleet.primary_region).await);
    let arn = crate::hosted::state_machine_arn_named(fleet, name);
    let role = format!("arn:aws:iam::{LOCAL_ACCOUNT}:role/{}-states", fleet.name);
    if sfn
        .describe_state_machine()
        .state_machine_arn(&arn)
        .send()
        .await
        .is_ok()
    {
        sfn.update_state_machine()
            .state_machine_arn(&arn)
            .definition(definition)
            .send()
            .await
            .with_context(|| format!("updating state machine {name}"))?;
    } else {
        sfn.create_state_machine()
            .name(name)
            .role_arn(role)
            .definition(definition)
            .send()
            .await
            .with_context(|| format!("creating state machine {name}"))?;
    }
    Ok(())
}

/// SageMaker reports a name already taken as a `ValidationException` "... already
/// existing ..."; that is success for idempotent provisioning.
fn ignore_existing<E, R>(error: aws_sdk_sagemaker::error::SdkError<E, R>) -> Result<()>
where
    E: aws_sdk_sagemaker::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = aws_sdk_sagemaker::error::ProvideErrorMetadata::message(&error)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if message.contains("already exist") {
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "{}",
        aws_sdk_sagemaker::error::DisplayErrorContext(&error)
    ))
}

/// The request interval (seconds) and failure threshold of the regions' health checks,
/// from the fleet file's `[dns]`.
pub fn health_check_settings(fleet: &Fleet) -> (u32, u32) {
    (
        fleet.dns.health_check_interval_seconds,
        fleet.dns.failure_threshold,
    )
}

/// What a region's health check probes: its front door's `/health`, at the address and
/// port of the front door's base URL, the path below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckTarget {
    pub address: String,
    pub port: u16,
    pub resource_path: String,
}

/// The health check target of a front door whose base URL is `base_url`
/// (`http://127.0.0.1:{port}/{stage}`).
pub fn health_check_target(base_url: &str) -> Result<HealthCheckTarget> {
    let url = reqwest::Url::parse(base_url)
        .with_context(|| format!("the front door URL {base_url} is not a URL"))?;
    Ok(HealthCheckTarget {
        address: url
            .host_str()
            .with_context(|| format!("the front door URL {base_url} has no host"))?
            .to_owned(),
        port: url
            .port_or_known_default()
            .with_context(|| format!("the front door URL {base_url} has no port"))?,
        resource_path: format!("{}/health", url.path().trim_end_matches('/')),
    })
}

/// The hosted zone, one health check per region probing its front door, and latency
/// records that use them.
async fn dns(
    clients: &ClientFactory,
    fleet: &Fleet,
    front_doors: &BTreeMap<String, String>,
) -> Result<(String, BTreeMap<String, String>)> {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckType, ResourceRecord,
        ResourceRecordSet, ResourceRecordSetRegion, RrType,
    };
    let route53 = aws_sdk_route53::Client::new(&clients.config("us-east-1").await);
    let zone_name = format!("{}.", fleet.dns.zone.trim_end_matches('.'));
    let zones = route53
        .list_hosted_zones_by_name()
        .dns_name(&zone_name)
        .send()
        .await?;
    let zone_id = match zones.hosted_zones().iter().find(|z| z.name() == zone_name) {
        Some(zone) => zone.id().to_owned(),
        None => route53
            .create_hosted_zone()
            .name(&zone_name)
            .caller_reference(format!("{}-zone", fleet.name))
            .send()
            .await
            .context("creating the hosted zone")?
            .hosted_zone()
            .map(|z| z.id().to_owned())
            .unwrap_or_default(),
    };
    let (interval, threshold) = health_check_settings(fleet);
    let existing = route53.list_health_checks().send().await?;
    let mut checks = BTreeMap::new();
    let mut changes = Vec::new();
    for region in &fleet.regions {
        let reference = names::health_check_reference(&fleet.name, &region.name);
        let front_door = front_doors
            .get(&region.name)
            .with_context(|| format!("{} has no front door", region.name))?;
        let target = health_check_target(front_door)?;
        let runtime_host = format!("runtime.sagemaker.{}.amazonaws.com", region.name);
        let id = match existing
            .health_checks()
            .iter()
            .find(|c| c.caller_reference() == reference)
        {
            Some(check) => check.id().to_owned(),
            None => route53
                .create_health_check()
                .caller_reference(&reference)
                .health_check_config(
                    HealthCheckConfig::builder()
                        .r#type(HealthCheckType::Http)
                        .ip_address(&target.address)
                        .port(i32::from(target.port))
                        .resource_path(&target.resource_path)
                        .request_interval(i32::try_from(interval).unwrap_or(30))
                        .failure_threshold(i32::try_from(threshold).unwrap_or(3))
                        .inverted(false)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("creating the health check of {}", region.name))?
                .health_check()
                .map(|c| c.id().to_owned())
                .unwrap_or_default(),
        };
        changes.push(
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(
                    ResourceRecordSet::builder()
                        .name(&fleet.dns.record)
                        .r#type(RrType::Cname)
                        .set_identifier(&region.name)
                        .region(ResourceRecordSetRegion::from(region.name.as_str()))
                        .ttl(60)
                        .health_check_id(&id)
                        .resource_records(ResourceRecord::builder().value(&runtime_host).build()?)
                        .build()?,
                )
                .build()?,
        );
        checks.insert(region.name.clone(), id);
    }
    route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build()?)
        .send()
        .await
        .context("writing the latency records")?;
    Ok((zone_id, checks))
}

/// One region's state as seen through the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct RegionCheck {
    pub region: String,
    pub primary: bool,
    pub bucket_versioning: String,
    pub registry_replica: bool,
    pub endpoint_status: String,
    pub endpoint_config: String,
    pub health_check: String,
    pub health_check_inverted: bool,
}

impl RegionCheck {
    /// Whether the region is fully provisioned.
    pub fn is_ready(&self) -> bool {
        self.bucket_versioning == "Enabled"
            && self.registry_replica
            && self.endpoint_status == "InService"
            && !self.health_check.is_empty()
    }
}

/// Reads back each region's resources.
pub async fn verify(clients: &ClientFactory, fleet: &Fleet) -> Result<Vec<RegionCheck>> {
    let route53 = aws_sdk_route53::Client::new(&clients.config("us-east-1").await);
    let checks = route53.list_health_checks().send().await?;
    let mut report = Vec::new();
    for region in &fleet.regions {
        let config = clients.config(&region.name).await;
        let versioning = clients
            .s3(&region.name)
            .await
            .get_bucket_versioning()
            .bucket(&region.bucket)
            .send()
            .await
            .map(|v| {
                v.status()
                    .map_or_else(|| "never enabled".to_owned(), |s| s.as_str().to_owned())
            })
            .unwrap_or_else(|e| {
                format!("unreadable: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
            });
        let registry_replica = aws_sdk_dynamodb::Client::new(&config)
            .describe_table()
            .table_name(&fleet.registry_table)
            .send()
            .await
            .is_ok();
        let endpoint = aws_sdk_sagemaker::Client::new(&config)
            .describe_endpoint()
            .endpoint_name(&region.endpoint)
            .send()
            .await
            .ok();
        let reference = names::health_check_reference(&fleet.name, &region.name);
        let check = checks
            .health_checks()
            .iter()
            .find(|c| c.caller_reference() == reference);
        report.push(RegionCheck {
            region: region.name.clone(),
            primary: region.name == fleet.primary_region,
            bucket_versioning: versioning,
            registry_replica,
            endpoint_status: endpoint
                .as_ref()
                .and_then(|e| e.endpoint_status().map(|s| s.as_str().to_owned()))
                .unwrap_or_else(|| "missing".into()),
            endpoint_config: endpoint
                .as_ref()
                .and_then(|e| e.endpoint_config_name().map(str::to_owned))
                .unwrap_or_default(),
            health_check: check.map(|c| c.id().to_owned()).unwrap_or_default(),
            health_check_inverted: check
                .and_then(|c| c.health_check_config())
                .and_then(|c| c.inverted())
                .unwrap_or(false),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_check_probes_the_front_doors_health_path() {
        assert_eq!(
            health_check_target("http://127.0.0.1:45123/live").expect("a URL"),
            HealthCheckTarget {
                address: "127.0.0.1".into(),
                port: 45123,
                resource_path: "/live/health".into(),
            }
        );
        assert_eq!(
            health_check_target("https://abc.execute-api.eu-west-1.amazonaws.com/live/")
                .expect("a URL")
                .port,
            443
        );
        assert!(health_check_target("not a url").is_err());
    }
}
