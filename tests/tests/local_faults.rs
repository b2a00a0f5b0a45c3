//! The local cloud's front doors, its Route 53 health checkers and routing view, and the
//! region-down and Route 53 control-plane-down faults, over real HTTP with the real AWS SDK.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_route53::error::ProvideErrorMetadata;
use axum::body::Body;
use axum::http::{Response, StatusCode};
use chrono::{DateTime, Utc};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use meridian::names::{function_name, health_check_reference, FunctionRole};
use meridian_local::calls::ApiCall;
use meridian_local::front_doors::Request;
use meridian_local::health_checkers::CheckerStatus;
use meridian_local::provision::health_check_settings;
use meridian_local::{Functions, Invocation, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud, test_config};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(30);

/// Room for a loaded test machine to run a probe later than its schedule says; the bounds
/// asserted are the AWS ones, scaled, plus this.
const SCHEDULING_SLACK: Duration = Duration::from_secs(1);

/// Hosts a front door in every region whose `/health` answers 200 while its flag is set and
/// 503 with a reason otherwise; any other path echoes what the function received.
fn host_front_doors(cloud: &LocalCloud) -> BTreeMap<String, Arc<AtomicBool>> {
    let mut flags = BTreeMap::new();
    for region in cloud.fleet().region_names() {
        let healthy = Arc::new(AtomicBool::new(true));
        let (name, flag) = (region.to_owned(), healthy.clone());
        cloud
            .front_doors()
            .register(region, move |request: Request| {
                let (region, healthy) = (name.clone(), flag.clone());
                async move { front_door(&region, &healthy, &request) }
            });
        flags.insert(region.to_owned(), healthy);
    }
    flags
}

fn front_door(region: &str, healthy: &AtomicBool, request: &Request) -> Response<Body> {
    let request_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        _ => None,
    };
    let (status, body) = match request.raw_http_path() {
        "/health" if healthy.load(Ordering::SeqCst) => (
            StatusCode::OK,
            json!({ "region": region, "status": "in service" }),
        ),
        "/health" => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "region": region, "reason": "taken out by the test" }),
        ),
        path => (
            StatusCode::OK,
            json!({
                "region": region,
                "path": path,
                "uri": request.uri().to_string(),
                "query": request.query_string_parameters().first("stream"),
                "request_id": request_id,
                "body": String::from_utf8_lossy(request.body().as_ref()),
            }),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

/// `GET /_meridian/{path}` of the cloud's gateway.
async fn control(cloud: &LocalCloud, path: &str) -> Value {
    let response = http()
        .get(format!("{}/_meridian/{path}", cloud.endpoint_url()))
        .send()
        .await
        .expect("the control API answers");
    assert_eq!(response.status(), 200, "{path}");
    json_of(response).await
}

/// What the checkers see of `region`'s health check.
fn checker(cloud: &LocalCloud, region: &str) -> Option<CheckerStatus> {
    let reference = health_check_reference(&cloud.fleet().name, region);
    cloud
        .health_check_statuses()
        .into_iter()
        .find(|status| status.caller_reference == reference)
}

/// Waits until every region's health check has been probed successfully.
async fn every_check_probed_healthy(cloud: &LocalCloud) {
    eventually("every health check probed and healthy", WITHIN, || async {
        cloud
            .fleet()
            .region_names()
            .iter()
            .all(|region| {
                checker(cloud, region).is_some_and(|status| {
                    status.healthy && status.last_probe.is_some_and(|probe| probe.success)
                })
            })
            .then_some(())
    })
    .await;
}

/// Waits until `region`'s health check is `healthy`; returns its status.
async fn checker_turns(cloud: &LocalCloud, region: &str, healthy: bool) -> CheckerStatus {
    eventually(
        &format!("{region}'s health check to be healthy = {healthy}"),
        WITHIN,
        || async { checker(cloud, region).filter(|status| status.healthy == healthy) },
    )
    .await
}

/// Route 53's detection bound for the provisioned health checks, scaled as the local cloud
/// runs them: `FailureThreshold` intervals, plus one interval for the probe under way.
fn detection_bound(cloud: &LocalCloud) -> Duration {
    let (interval, threshold) = health_check_settings(cloud.fleet());
    Duration::from_secs(interval.into()) * (threshold + 1) / test_config().schedule_speedup
}

fn elapsed_since(start: DateTime<Utc>, end: DateTime<Utc>) -> Duration {
    (end - start).to_std().unwrap_or_default()
}

/// The region each client location resolves to now.
async fn routed(cloud: &LocalCloud) -> BTreeMap<String, String> {
    let view = cloud.routing().await.expect("the routing view");
    assert!(
        view.resolutions.iter().all(|r| !r.failed_open),
        "some region stays healthy, so nothing fails open: {view:?}"
    );
    view.resolutions
        .into_iter()
        .map(|r| (r.client, r.region.unwrap_or_default()))
        .collect()
}

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

/// The next invocation from `region`, ignoring others; fails after `WITHIN`.
async fn next_from(receiver: &mut mpsc::UnboundedReceiver<Invocation>, region: &str) -> Invocation {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(invocation)) if invocation.region == region => return invocation,
            Ok(Some(_)) => {}
            _ => panic!("no invocation in {region} within {WITHIN:?}"),
        }
    }
}

fn registry_key() -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_owned(), AttributeValue::S("test#outage".into())),
        ("sk".to_owned(), AttributeValue::S("item".into())),
    ]
    .into()
}

async fn registry_item_in(cloud: &LocalCloud, region: &str) -> bool {
    aws_sdk_dynamodb::Client::new(&cloud.clients().config(region).await)
        .get_item()
        .table_name(&cloud.fleet().registry_table)
        .set_key(Some(registry_key()))
        .send()
        .await
        .is_ok_and(|output| output.item.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_region_has_its_own_front_door_served_as_api_gateway_serves_a_lambda() {
    let cloud = start_cloud(Functions::new()).await;
    let _health = host_front_doors(&cloud);
    let http = http();
    let urls: BTreeSet<&String> = cloud.front_door_urls().values().collect();
    assert_eq!(urls.len(), 3, "one base URL per region: {urls:?}");
    for region in cloud.fleet().region_names() {
        let url = cloud
            .front_door_url(region)
            .expect("a front door per region");
        assert!(
            url.ends_with("/live"),
            "the stage is part of the base URL: {url}"
        );
        let answer = http
            .get(format!("{url}/health"))
            .send()
            .await
            .expect("the front door answers");
        assert_eq!(answer.status(), 200);
        assert!(answer.headers().contains_key("x-amzn-requestid"));
        assert_eq!(json_of(answer).await["region"], region);
    }

    let url = cloud
        .front_door_url("eu-west-1")
        .expect("eu-west-1's front door");
    let answer = http
        .post(format!("{url}/invocations?stream=true"))
        .header("content-type", "application/json")
        .body(r#"{"inputs":"hi"}"#)
        .send()
        .await
        .expect("the front door answers");
    let request_id = answer
        .headers()
        .get("x-amzn-requestid")
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned);
    let echoed = json_of(answer).await;
    assert_eq!(echoed["region"], "eu-west-1");
    assert_eq!(echoed["path"], "/invocations", "the path below the stage");
    assert!(
        echoed["uri"]
            .as_str()
            .is_some_and(|uri| uri.contains("/live/invocations")),
        "lambda_http keeps the stage in the URI: {echoed}"
    );
    assert_eq!(echoed["query"], "true");
    assert_eq!(echoed["body"], r#"{"inputs":"hi"}"#);
    assert!(request_id.is_some());
    assert_eq!(
        echoed["request_id"].as_str(),
        request_id.as_deref(),
        "API Gateway's request id reaches the function and comes back"
    );

    let outside = http
        .get(format!("{}/health", url.trim_end_matches("/live")))
        .send()
        .await
        .expect("API Gateway answers");
    assert_eq!(
        outside.status(),
        403,
        "a path outside the stage is API Gateway's 403"
    );

    let listed = control(&cloud, "front-doors").await;
    assert_eq!(
        listed,
        serde_json::to_value(cloud.front_door_urls()).expect("JSON"),
        "the control API lists what `meridian local status` prints"
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_endpoint_leaves_dns_within_the_threshold_and_comes_back() {
    let cloud = start_cloud(Functions::new()).await;
    let health = host_front_doors(&cloud);
    let bound = detection_bound(&cloud);
    let (_, threshold) = health_check_settings(cloud.fleet());
    every_check_probed_healthy(&cloud).await;
    assert_eq!(routed(&cloud).await["eu-west-1"], "eu-west-1");

    let failing_since = Utc::now();
    health["eu-west-1"].store(false, Ordering::SeqCst);
    let down = checker_turns(&cloud, "eu-west-1", false).await;
    let detected_in = elapsed_since(failing_since, down.since);
    assert!(
        detected_in <= bound + SCHEDULING_SLACK,
        "unhealthy {detected_in:?} after /health failed; bound {bound:?}"
    );
    assert!(down.consecutive_failures >= threshold, "{down:?}");
    let report = down.last_probe.map(|p| p.report).unwrap_or_default();
    assert!(
        report.starts_with("Failure: HTTP Status Code 503"),
        "{report}"
    );

    let routes = routed(&cloud).await;
    assert!(
        routes.values().all(|region| region != "eu-west-1"),
        "no client location resolves to eu-west-1: {routes:?}"
    );
    assert_eq!(routes["eu-west-1"], "us-east-1", "across the Atlantic");
    let view = control(&cloud, "resolve").await;
    assert!(
        view["resolutions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["region"] != "eu-west-1"),
        "`meridian local resolve` reads the same view: {view}"
    );

    let route53 = aws_sdk_route53::Client::new(&cloud.clients().config("us-east-1").await);
    let status = route53
        .get_health_check_status()
        .health_check_id(&down.health_check_id)
        .send()
        .await
        .expect("GetHealthCheckStatus answers");
    let observed = status
        .health_check_observations()
        .first()
        .and_then(|o| o.status_report())
        .and_then(|r| r.status())
        .unwrap_or_default();
    assert!(
        observed.starts_with("Failure: HTTP Status Code 503"),
        "{observed}"
    );

    let healthy_since = Utc::now();
    health["eu-west-1"].store(true, Ordering::SeqCst);
    let up = checker_turns(&cloud, "eu-west-1", true).await;
    let recovered_in = elapsed_since(healthy_since, up.since);
    assert!(
        recovered_in <= bound + SCHEDULING_SLACK,
        "healthy {recovered_in:?} after /health recovered; bound {bound:?}"
    );
    assert_eq!(routed(&cloud).await["eu-west-1"], "eu-west-1");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_gone_dark_answers_nothing_sends_nothing_and_leaves_dns_until_it_is_back() {
    let fleet = example_fleet();
    let functions = Functions::new();
    let mut ticks = recorder(
        &functions,
        &function_name(&fleet.name, FunctionRole::Failback),
    );
    let mut replicas = recorder(
        &functions,
        &function_name(&fleet.name, FunctionRole::Replica),
    );
    let cloud = start_cloud(functions).await;
    let _health = host_front_doors(&cloud);
    let bound = detection_bound(&cloud);
    let eu_door = cloud
        .front_door_url("eu-west-1")
        .expect("a front door")
        .to_owned();
    every_check_probed_healthy(&cloud).await;
    next_from(&mut ticks, "eu-west-1").await;
    let calls_before: BTreeSet<ApiCall> = cloud.api_calls().into_iter().collect();

    let down_at = Utc::now();
    cloud.faults().take_region_down("eu-west-1");

    let started = Instant::now();
    let silent = http().get(format!("{eu_door}/health")).send().await;
    assert!(
        silent.is_err(),
        "the front door answers nothing: {silent:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let started = Instant::now();
    let dynamodb = |region: &'static str| {
        let clients = cloud.clients();
        async move { aws_sdk_dynamodb::Client::new(&clients.config(region).await) }
    };
    let refused = dynamodb("eu-west-1")
        .await
        .describe_table()
        .table_name(&fleet.registry_table)
        .send()
        .await
        .expect_err("nothing in eu-west-1 answers");
    assert!(
        matches!(refused, SdkError::DispatchFailure(_)),
        "a connection failure, not an answer: {refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the SDK gives up after its retries: {:?}",
        started.elapsed()
    );
    dynamodb("us-east-1")
        .await
        .describe_table()
        .table_name(&fleet.registry_table)
        .send()
        .await
        .expect("the other regions answer");

    let dark = checker_turns(&cloud, "eu-west-1", false).await;
    let detected_in = elapsed_since(down_at, dark.since);
    assert!(
        detected_in <= bound + SCHEDULING_SLACK,
        "out of DNS {detected_in:?} after the region went dark; bound {bound:?}"
    );
    let routes = routed(&cloud).await;
    assert!(
        routes.values().all(|region| region != "eu-west-1"),
        "no client location resolves to eu-west-1: {routes:?}"
    );

    // Replication and global-table writes reach the other regions, and wait for it.
    let key = "models/outage/1/config.json";
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
    dynamodb("us-east-1")
        .await
        .put_item()
        .table_name(&fleet.registry_table)
        .set_item(Some(registry_key()))
        .send()
        .await
        .expect("put item");

    // Its schedules stop while the others' go on (seconds: time enough for the writes above
    // to have been replicated to it, had replication not waited).
    next_from(&mut ticks, "us-east-1").await;
    while ticks.try_recv().is_ok() {}
    for _ in 0..2 {
        next_from(&mut ticks, "us-east-1").await;
    }
    let mut late = Vec::new();
    while let Ok(tick) = ticks.try_recv() {
        late.push(tick.region);
    }
    assert!(
        !late.iter().any(|r| r == "eu-west-1"),
        "eu-west-1 ticked while dark: {late:?}"
    );

    next_from(&mut replicas, "ap-southeast-1").await;
    eventually("the write to reach ap-southeast-1", WITHIN, || async {
        registry_item_in(&cloud, "ap-southeast-1")
            .await
            .then_some(())
    })
    .await;
    let mut early = Vec::new();
    while let Ok(replica) = replicas.try_recv() {
        early.push(replica.region);
    }
    assert!(
        !early.iter().any(|r| r == "eu-west-1"),
        "a replica event in eu-west-1 while dark: {early:?}"
    );

    let calls_while_down: Vec<ApiCall> = cloud
        .api_calls()
        .into_iter()
        .filter(|call| !calls_before.contains(call))
        .collect();
    assert!(
        calls_while_down
            .iter()
            .filter(|call| call.region == "eu-west-1")
            .all(|call| call.refused),
        "every eu-west-1 call was refused: {calls_while_down:?}"
    );
    assert!(
        calls_while_down
            .iter()
            .any(|call| call.region == "eu-west-1" && call.operation == "DescribeTable"),
        "refused calls are logged: {calls_while_down:?}"
    );
    assert!(
        !calls_while_down
            .iter()
            .any(|call| call.service == "route53"),
        "no Route 53 API call: {calls_while_down:?}"
    );

    let up_at = Utc::now();
    cloud.faults().bring_region_up("eu-west-1");
    let replica = next_from(&mut replicas, "eu-west-1").await;
    assert_eq!(replica.payload["detail"]["object"]["key"], key);
    let eu_bucket = &fleet.region("eu-west-1").expect("eu-west-1").bucket;
    let copied = cloud
        .clients()
        .s3("eu-west-1")
        .await
        .head_object()
        .bucket(eu_bucket)
        .key(key)
        .send()
        .await
        .expect("the replica exists once eu-west-1 is back");
    let copied_at = copied.last_modified().map_or(0, |t| t.secs());
    assert!(
        copied_at >= up_at.timestamp(),
        "the replica was written when eu-west-1 came back ({up_at}), not while it was dark ({copied_at})"
    );
    eventually("the held write to reach eu-west-1", WITHIN, || async {
        registry_item_in(&cloud, "eu-west-1").await.then_some(())
    })
    .await;
    next_from(&mut ticks, "eu-west-1").await;
    let answer = http()
        .get(format!("{eu_door}/health"))
        .send()
        .await
        .expect("the front door answers again");
    assert_eq!(answer.status(), 200);
    checker_turns(&cloud, "eu-west-1", true).await;
    assert_eq!(routed(&cloud).await["eu-west-1"], "eu-west-1");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53s_control_plane_down_fails_its_api_while_checkers_and_dns_keep_answering() {
    let cloud = start_cloud(Functions::new()).await;
    let health = host_front_doors(&cloud);
    every_check_probed_healthy(&cloud).await;
    let faults_url = format!("{}/_meridian/faults", cloud.endpoint_url());
    let set = http()
        .put(&faults_url)
        .body(r#"{"route53_control_plane_down": true}"#)
        .send()
        .await
        .expect("the control API answers");
    assert_eq!(set.status(), 200);
    let echoed = json_of(set).await;
    assert_eq!(echoed["route53_control_plane_down"], true);
    assert_eq!(echoed["regions_down"], json!([]));

    let route53 = aws_sdk_route53::Client::new(&cloud.clients().config("us-east-1").await);
    let started = Instant::now();
    let error = route53
        .list_health_checks()
        .send()
        .await
        .expect_err("the Route 53 API is down");
    assert_eq!(error.code(), Some("ServiceUnavailable"), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the SDK gives up after its retries: {:?}",
        started.elapsed()
    );
    assert!(
        cloud
            .api_calls()
            .iter()
            .any(|call| call.service == "route53"
                && call.operation == "ListHealthChecks"
                && call.refused),
        "the refused call is logged"
    );

    health["eu-west-1"].store(false, Ordering::SeqCst);
    checker_turns(&cloud, "eu-west-1", false).await;
    let routes = routed(&cloud).await;
    assert!(
        routes.values().all(|region| region != "eu-west-1"),
        "DNS still follows the checkers: {routes:?}"
    );
    assert!(control(&cloud, "resolve").await["resolutions"].is_array());

    let cleared = http()
        .put(&faults_url)
        .body("{}")
        .send()
        .await
        .expect("the control API answers");
    assert_eq!(cleared.status(), 200);
    let checks = route53
        .list_health_checks()
        .send()
        .await
        .expect("the Route 53 API is back");
    assert_eq!(checks.health_checks().len(), 3);
    cloud.shutdown().await.expect("shutdown");
}
