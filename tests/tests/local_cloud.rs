//! Each emulation of the local cloud, exercised over real HTTP with the real AWS SDK.

use std::time::Duration;

use aws_lambda_events::cloudwatch_alarms::{
    CloudWatchAlarmData, CloudWatchAlarmStateValue, CloudWatchMetricAlarmConfiguration,
};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use meridian::names::{function_name, FunctionRole};
use meridian_local::provision::verify;
use meridian_local::{FunctionError, Functions, Invocation};
use meridian_tests::{eventually, start_cloud};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(30);

/// A function that forwards every invocation to a channel and succeeds.
fn recorder(functions: &Functions, name: &str) -> mpsc::UnboundedReceiver<Invocation> {
    let (sender, receiver) = mpsc::unbounded_channel();
    functions.register(name, move |invocation: Invocation| {
        let sender = sender.clone();
        async move {
            let _ = sender.send(invocation);
            Ok(Value::Null)
        }
    });
    receiver
}

async fn next(receiver: &mut mpsc::UnboundedReceiver<Invocation>, what: &str) -> Invocation {
    match tokio::time::timeout(WITHIN, receiver.recv()).await {
        Ok(Some(invocation)) => invocation,
        _ => panic!("no invocation for {what} within {WITHIN:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_and_every_region_is_ready() {
    let cloud = start_cloud(Functions::new()).await;
    let again = cloud
        .provision()
        .await
        .expect("provisioning twice succeeds");
    assert_eq!(again.health_checks.len(), 3);
    let report = verify(&cloud.clients(), cloud.fleet())
        .await
        .expect("verify");
    assert_eq!(report.len(), 3);
    for region in &report {
        assert!(region.is_ready(), "{region:?}");
        assert!(!region.health_check_inverted, "{region:?}");
    }
    assert_eq!(report.iter().filter(|r| r.primary).count(), 1);
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_task_reaches_the_in_process_handler_and_its_result_flows_on() {
    let functions = Functions::new();
    functions.register("echo", |invocation: Invocation| async move {
        match invocation.payload["n"].as_i64() {
            Some(n) if n >= 0 => Ok(json!({ "doubled": n * 2, "region": invocation.region })),
            _ => Err(FunctionError::new(
                "Meridian.InvalidInput",
                "n must be a non-negative integer",
            )),
        }
    });
    let cloud = start_cloud(functions).await;
    let sfn = aws_sdk_sfn::Client::new(&cloud.clients().config("eu-west-1").await);
    let definition = json!({
        "StartAt": "Double",
        "States": {
            "Double": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:eu-west-1:123456789012:function:echo",
                    "Payload.$": "$"
                },
                "ResultSelector": { "result.$": "$.Payload" },
                "Catch": [{ "ErrorEquals": ["Meridian.InvalidInput"], "ResultPath": "$.error", "Next": "Rejected" }],
                "Next": "IsEight"
            },
            "IsEight": {
                "Type": "Choice",
                "Choices": [{ "Variable": "$.result.doubled", "NumericEquals": 8, "Next": "Done" }],
                "Default": "Wrong"
            },
            "Done": { "Type": "Succeed" },
            "Wrong": { "Type": "Fail", "Error": "Wrong" },
            "Rejected": { "Type": "Pass", "Result": "rejected", "ResultPath": "$.outcome", "End": true }
        }
    });
    let machine = sfn
        .create_state_machine()
        .name("echo-test")
        .role_arn("arn:aws:iam::123456789012:role/sfn")
        .definition(definition.to_string())
        .send()
        .await
        .expect("create state machine");
    let run = |name: &'static str, input: Value| {
        let sfn = sfn.clone();
        let arn = machine.state_machine_arn().to_owned();
        async move {
            let execution = sfn
                .start_execution()
                .state_machine_arn(arn)
                .name(name)
                .input(input.to_string())
                .send()
                .await
                .expect("start execution");
            eventually("the execution to finish", WITHIN, || {
                let sfn = sfn.clone();
                let execution_arn = execution.execution_arn().to_owned();
                async move {
                    let described = sfn
                        .describe_execution()
                        .execution_arn(execution_arn)
                        .send()
                        .await
                        .ok()?;
                    match described.status().as_str() {
                        "RUNNING" => None,
                        status => Some((status.to_owned(), described.output().map(str::to_owned))),
                    }
                }
            })
            .await
        }
    };
    let (status, output) = run("four", json!({ "n": 4 })).await;
    assert_eq!(status, "SUCCEEDED");
    let output: Value = serde_json::from_str(&output.expect("output")).expect("json output");
    assert_eq!(
        output["result"],
        json!({ "doubled": 8, "region": "eu-west-1" })
    );

    let (status, output) = run("negative", json!({ "n": -1 })).await;
    assert_eq!(
        status, "SUCCEEDED",
        "the handler's error name is caught by Catch"
    );
    let output: Value = serde_json::from_str(&output.expect("output")).expect("json output");
    assert_eq!(output["outcome"], "rejected");
    assert_eq!(output["error"]["Error"], "Meridian.InvalidInput");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_in_the_primary_bucket_is_replicated_and_each_replica_event_reaches_its_region() {
    let functions = Functions::new();
    let fleet = meridian_tests::example_fleet();
    let mut uploads = recorder(
        &functions,
        &function_name(&fleet.name, FunctionRole::Upload),
    );
    let mut replicas = recorder(
        &functions,
        &function_name(&fleet.name, FunctionRole::Replica),
    );
    let cloud = start_cloud(functions).await;
    // A manifest's key: the upload rule passes only those (a model's other files reach
    // the replica functions alone).
    let key = "models/llama/1/manifest.json";
    let body = vec![7u8; 3 * 1024 * 1024];
    cloud
        .clients()
        .s3(&fleet.primary_region)
        .await
        .put_object()
        .bucket(&fleet.primary_bucket)
        .key(key)
        .body(body.clone().into())
        .send()
        .await
        .expect("put object");

    let upload = next(&mut uploads, "the primary bucket's Object Created event").await;
    let event: EventBridgeEvent =
        serde_json::from_value(upload.payload).expect("EventBridge shape");
    assert_eq!(event.detail_type, "Object Created");
    assert_eq!(event.source, "aws.s3");
    assert_eq!(upload.region, fleet.primary_region);
    assert_eq!(
        event.detail["bucket"]["name"],
        fleet.primary_bucket.as_str()
    );
    assert_eq!(event.detail["object"]["key"], key);

    let mut seen = Vec::new();
    for _ in &fleet.regions {
        let replica = next(&mut replicas, "a replica's Object Created event").await;
        let event: EventBridgeEvent =
            serde_json::from_value(replica.payload).expect("EventBridge shape");
        let region = fleet.region(&replica.region).expect("a fleet region");
        assert_eq!(
            event.detail["bucket"]["name"],
            region.bucket.as_str(),
            "event delivered in its own region"
        );
        assert_eq!(event.detail["object"]["key"], key);
        assert_eq!(event.region.as_deref(), Some(replica.region.as_str()));
        seen.push(replica.region);
    }
    seen.sort();
    let mut expected: Vec<String> = fleet.regions.iter().map(|r| r.name.clone()).collect();
    expected.sort();
    assert_eq!(seen, expected);

    for region in &fleet.regions {
        let object = cloud
            .clients()
            .s3(&region.name)
            .await
            .get_object()
            .bucket(&region.bucket)
            .key(key)
            .send()
            .await
            .expect("replica exists");
        let bytes = object
            .body
            .collect()
            .await
            .expect("replica body")
            .into_bytes();
        assert_eq!(
            bytes.as_ref(),
            body.as_slice(),
            "replica in {} has the same bytes",
            region.name
        );
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_replication_failure_produces_no_replica() {
    let functions = Functions::new();
    let fleet = meridian_tests::example_fleet();
    let mut replicas = recorder(
        &functions,
        &function_name(&fleet.name, FunctionRole::Replica),
    );
    let cloud = start_cloud(functions).await;
    cloud.faults().fail_replication_to("eu-west-1");
    let key = "models/llama/2/config.json";
    cloud
        .clients()
        .s3(&fleet.primary_region)
        .await
        .put_object()
        .bucket(&fleet.primary_bucket)
        .key(key)
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect("put object");
    // Replication walks destinations in rule priority order (us-east-1, eu-west-1,
    // ap-southeast-1), so once ap-southeast-1 has its replica the eu-west-1 attempt is over.
    let mut regions = vec![
        next(&mut replicas, "the first replica").await.region,
        next(&mut replicas, "the second replica").await.region,
    ];
    regions.sort();
    assert_eq!(regions, ["ap-southeast-1", "us-east-1"]);
    let eu = fleet.region("eu-west-1").expect("eu-west-1 in the fleet");
    let missing = cloud
        .clients()
        .s3("eu-west-1")
        .await
        .head_object()
        .bucket(&eu.bucket)
        .key(key)
        .send()
        .await;
    assert!(missing.is_err(), "no replica in eu-west-1");
    assert!(
        replicas.try_recv().is_err(),
        "no replica event from eu-west-1"
    );
    cloud.shutdown().await.expect("shutdown");
}

fn registry_key(id: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_owned(), AttributeValue::S(format!("test#{id}"))),
        ("sk".to_owned(), AttributeValue::S("item".into())),
    ]
    .into()
}

async fn read_value(cloud: &meridian_local::LocalCloud, region: &str, id: &str) -> Option<String> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&cloud.clients().config(region).await);
    let item = dynamodb
        .get_item()
        .table_name(&cloud.fleet().registry_table)
        .set_key(Some(registry_key(id)))
        .send()
        .await
        .ok()?
        .item?;
    item.get("value")?.as_s().ok().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_write_in_one_region_is_read_in_the_others_and_the_last_writer_wins() {
    let cloud = start_cloud(Functions::new()).await;
    let table = cloud.fleet().registry_table.clone();
    let put = |region: &'static str, id: &'static str, value: &'static str| {
        let (clients, table) = (cloud.clients(), table.clone());
        async move {
            let mut item = registry_key(id);
            item.insert("value".into(), AttributeValue::S(value.into()));
            aws_sdk_dynamodb::Client::new(&clients.config(region).await)
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .send()
                .await
                .expect("put item");
        }
    };
    put("eu-west-1", "a", "from-eu").await;
    for region in ["us-east-1", "ap-southeast-1"] {
        let value = eventually("the write to reach every region", WITHIN, || {
            read_value(&cloud, region, "a")
        })
        .await;
        assert_eq!(value, "from-eu", "{region}");
    }

    put("us-east-1", "b", "first").await;
    put("ap-southeast-1", "b", "second").await;
    for region in ["us-east-1", "eu-west-1", "ap-southeast-1"] {
        eventually(
            "every region to converge on the last write",
            WITHIN,
            || async {
                (read_value(&cloud, region, "b").await.as_deref() == Some("second")).then_some(())
            },
        )
        .await;
    }

    let replicas = aws_sdk_dynamodb::Client::new(&cloud.clients().config("us-east-1").await)
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe table")
        .table
        .map(|t| t.replicas.unwrap_or_default().len());
    assert_eq!(replicas, Some(3));
    cloud.shutdown().await.expect("shutdown");
}

/// A model and endpoint config named `name` in `region`, ready for `UpdateEndpoint`.
async fn endpoint_config(
    cloud: &meridian_local::LocalCloud,
    region: &str,
    name: &str,
) -> aws_sdk_sagemaker::Client {
    use aws_sdk_sagemaker::types::{
        ContainerDefinition, ProductionVariant, ProductionVariantInstanceType,
    };
    let sagemaker = aws_sdk_sagemaker::Client::new(&cloud.clients().config(region).await);
    sagemaker
        .create_model()
        .model_name(name)
        .execution_role_arn("arn:aws:iam::123456789012:role/sagemaker")
        .primary_container(ContainerDefinition::builder().image("llm:2").build())
        .send()
        .await
        .expect("create model");
    sagemaker
        .create_endpoint_config()
        .endpoint_config_name(name)
        .production_variants(
            ProductionVariant::builder()
                .variant_name(meridian::variant::DEFAULT_VARIANT_NAME)
                .model_name(name)
                .instance_type(ProductionVariantInstanceType::MlG52Xlarge)
                .initial_instance_count(1)
                .build(),
        )
        .send()
        .await
        .expect("create endpoint config");
    sagemaker
}

fn guardrails(alarm: Option<&str>) -> aws_sdk_sagemaker::types::DeploymentConfig {
    use aws_sdk_sagemaker::types::*;
    let policy = BlueGreenUpdatePolicy::builder()
        .traffic_routing_configuration(
            TrafficRoutingConfig::builder()
                .r#type(TrafficRoutingConfigType::Canary)
                .wait_interval_in_seconds(60)
                .canary_size(
                    CapacitySize::builder()
                        .r#type(CapacitySizeType::CapacityPercent)
                        .value(10)
                        .build(),
                )
                .build(),
        )
        .build();
    let mut config = DeploymentConfig::builder().blue_green_update_policy(policy);
    if let Some(alarm) = alarm {
        config = config.auto_rollback_configuration(
            AutoRollbackConfig::builder()
                .alarms(Alarm::builder().alarm_name(alarm).build())
                .build(),
        );
    }
    config.build()
}

async fn settled(
    sagemaker: &aws_sdk_sagemaker::Client,
    endpoint: &str,
) -> aws_sdk_sagemaker::operation::describe_endpoint::DescribeEndpointOutput {
    eventually("the endpoint update to settle", WITHIN, || async {
        let described = sagemaker
            .describe_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
            .ok()?;
        match described.endpoint_status()?.as_str() {
            "Updating" | "RollingBack" => None,
            _ => Some(described),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_endpoint_goes_updating_then_in_service_on_the_new_config() {
    let cloud = start_cloud(Functions::new()).await;
    let region = cloud
        .fleet()
        .region("ap-southeast-1")
        .expect("region")
        .clone();
    let sagemaker = endpoint_config(&cloud, &region.name, "llm-v2").await;
    let before = sagemaker
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .expect("describe");
    let old_config = before.endpoint_config_name().expect("config").to_owned();
    sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name("llm-v2")
        .deployment_config(guardrails(None))
        .send()
        .await
        .expect("update endpoint");
    let during = sagemaker
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .expect("describe");
    assert_eq!(
        during.endpoint_status().map(|s| s.as_str()),
        Some("Updating")
    );
    assert_eq!(during.endpoint_config_name(), Some(old_config.as_str()));
    let second = sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name("llm-v2")
        .send()
        .await;
    assert!(
        second.is_err(),
        "an endpoint that is updating cannot be updated again"
    );

    let after = settled(&sagemaker, &region.endpoint).await;
    assert_eq!(
        after.endpoint_status().map(|s| s.as_str()),
        Some("InService")
    );
    assert_eq!(after.endpoint_config_name(), Some("llm-v2"));
    assert!(after.last_deployment_config().is_some());
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_during_the_update_silently_ends_on_the_old_config() {
    let cloud = start_cloud(Functions::new()).await;
    let region = cloud.fleet().region("eu-west-1").expect("region").clone();
    let sagemaker = endpoint_config(&cloud, &region.name, "llm-v3").await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&cloud.clients().config(&region.name).await);
    put_alarm(&cloudwatch, "llm-5xx", &region.endpoint).await;
    let old_config = sagemaker
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .expect("describe")
        .endpoint_config_name()
        .map(str::to_owned);
    sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name("llm-v3")
        .deployment_config(guardrails(Some("llm-5xx")))
        .send()
        .await
        .expect("update endpoint");
    set_alarm(
        &cloudwatch,
        "llm-5xx",
        aws_sdk_cloudwatch::types::StateValue::Alarm,
    )
    .await;
    set_alarm(
        &cloudwatch,
        "llm-5xx",
        aws_sdk_cloudwatch::types::StateValue::Ok,
    )
    .await;
    let after = settled(&sagemaker, &region.endpoint).await;
    assert_eq!(
        after.endpoint_status().map(|s| s.as_str()),
        Some("InService"),
        "a rollback is silent"
    );
    assert_eq!(
        after.endpoint_config_name().map(str::to_owned),
        old_config,
        "back on the old config"
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_update_failure_ends_failed_on_the_old_config() {
    let cloud = start_cloud(Functions::new()).await;
    cloud.faults().fail_endpoint_updates_in("us-east-1");
    let region = cloud.fleet().region("us-east-1").expect("region").clone();
    let sagemaker = endpoint_config(&cloud, &region.name, "llm-v4").await;
    sagemaker
        .update_endpoint()
        .endpoint_name(&region.endpoint)
        .endpoint_config_name("llm-v4")
        .send()
        .await
        .expect("update endpoint");
    let after = settled(&sagemaker, &region.endpoint).await;
    assert_eq!(after.endpoint_status().map(|s| s.as_str()), Some("Failed"));
    assert!(after.failure_reason().is_some_and(|r| r.contains("llm-v4")));
    assert_ne!(after.endpoint_config_name(), Some("llm-v4"));
    cloud.shutdown().await.expect("shutdown");
}

async fn put_alarm(cloudwatch: &aws_sdk_cloudwatch::Client, name: &str, endpoint: &str) {
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .alarm_description("5xx errors of the LLM endpoint")
        .namespace("AWS/SageMaker")
        .metric_name("Invocation5XXErrors")
        .dimensions(
            Dimension::builder()
                .name("EndpointName")
                .value(endpoint)
                .build(),
        )
        .dimensions(
            Dimension::builder()
                .name("VariantName")
                .value(meridian::variant::DEFAULT_VARIANT_NAME)
                .build(),
        )
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("put alarm");
}

async fn set_alarm(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    state: aws_sdk_cloudwatch::types::StateValue,
) {
    cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state.clone())
        .state_reason(format!("test set {}", state.as_str()))
        .send()
        .await
        .expect("set alarm state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_state_change_delivers_the_documented_event_to_its_region() {
    let functions = Functions::new();
    let fleet = meridian_tests::example_fleet();
    let mut failovers = recorder(
        &functions,
        &function_name(&fleet.name, FunctionRole::Failover),
    );
    let cloud = start_cloud(functions).await;
    let region = fleet.region("ap-southeast-1").expect("region");
    // One of the fleet's alarms: the failover rule routes only those (as on AWS).
    let alarm = region.alarms[0].as_str();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&cloud.clients().config(&region.name).await);
    put_alarm(&cloudwatch, alarm, &region.endpoint).await;
    set_alarm(
        &cloudwatch,
        alarm,
        aws_sdk_cloudwatch::types::StateValue::Alarm,
    )
    .await;

    let invocation = next(&mut failovers, "the alarm state change event").await;
    assert_eq!(invocation.region, "ap-southeast-1");
    let event: EventBridgeEvent<CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration>> =
        serde_json::from_value(invocation.payload.clone())
            .unwrap_or_else(|e| panic!("documented shape: {e}: {}", invocation.payload));
    assert_eq!(event.source, "aws.cloudwatch");
    assert_eq!(event.detail_type, "CloudWatch Alarm State Change");
    assert_eq!(event.region.as_deref(), Some("ap-southeast-1"));
    assert!(event.account.is_some());
    assert_eq!(event.resources.as_deref().map(|r| r.len()), Some(1));
    assert!(event.resources.as_deref().unwrap_or_default()[0].ends_with(&format!(":alarm:{alarm}")));
    assert_eq!(event.detail.alarm_name, alarm);
    let state = event.detail.state.expect("state");
    assert_eq!(state.value, CloudWatchAlarmStateValue::Alarm);
    assert_eq!(state.reason, "test set ALARM");
    let previous = event.detail.previous_state.expect("previous state");
    assert_ne!(previous.value, CloudWatchAlarmStateValue::Alarm);
    assert!(state.timestamp >= previous.timestamp);
    let metric = &event.detail.configuration.metrics[0];
    let stat = &metric.metric_stat;
    assert_eq!(stat.metric.name, "Invocation5XXErrors");
    assert_eq!(stat.metric.namespace.as_deref(), Some("AWS/SageMaker"));
    assert_eq!(
        stat.metric
            .dimensions
            .get("EndpointName")
            .map(String::as_str),
        Some(region.endpoint.as_str())
    );
    assert_eq!(
        event.detail.configuration.description.as_deref(),
        Some("5xx errors of the LLM endpoint")
    );

    set_alarm(
        &cloudwatch,
        alarm,
        aws_sdk_cloudwatch::types::StateValue::Alarm,
    )
    .await;
    set_alarm(
        &cloudwatch,
        alarm,
        aws_sdk_cloudwatch::types::StateValue::Ok,
    )
    .await;
    let recovered = next(&mut failovers, "the OK event").await;
    assert_eq!(
        recovered.payload["detail"]["state"]["value"], "OK",
        "setting the same state again emits nothing"
    );
    assert_eq!(
        recovered.payload["detail"]["previousState"]["value"],
        "ALARM"
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rule_fires_on_its_schedule() {
    let functions = Functions::new();
    let mut ticks = recorder(&functions, "tick");
    let cloud = start_cloud(functions).await;
    let events = aws_sdk_eventbridge::Client::new(&cloud.clients().config("eu-west-1").await);
    let rule = events
        .put_rule()
        .name("every-minute")
        .schedule_expression("rate(1 minute)")
        .send()
        .await
        .expect("put rule");
    events
        .put_targets()
        .rule("every-minute")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("tick")
                .arn("arn:aws:lambda:eu-west-1:123456789012:function:tick")
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("put targets");
    let first = next(&mut ticks, "the first scheduled event").await;
    let second = next(&mut ticks, "the second scheduled event").await;
    for tick in [&first, &second] {
        assert_eq!(tick.region, "eu-west-1");
        assert_eq!(tick.payload["detail-type"], "Scheduled Event");
        assert_eq!(tick.payload["source"], "aws.events");
        assert_eq!(
            tick.payload["resources"][0],
            rule.rule_arn().unwrap_or_default()
        );
    }
    assert_ne!(first.payload["id"], second.payload["id"]);
    cloud.shutdown().await.expect("shutdown");
}
