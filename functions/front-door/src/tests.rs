//! The front door end to end over in-memory adapters: routes, health answers and their
//! cache, inference pass-through, error statuses, request ids and metric lines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::DateTime;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use meridian::failover::{HealthState, RegionHealth};
use meridian::fleet::Fleet;
use serde_json::Value;

use super::*;

const FLEET: &str = r#"
name = "meridian-test"
primary_region = "us-east-1"
pattern = "active-active"
primary_bucket = "meridian-test-models"
registry_table = "meridian-test-registry"

[dns]
zone = "llm.example.internal"
record = "api.llm.example.internal"

[[regions]]
name = "us-east-1"
bucket = "meridian-test-models-us-east-1"
endpoint = "llm-use1"
instance_type = "ml.g5.2xlarge"
instance_count = 1
min_instances = 1
max_instances = 1
time_zone = "America/New_York"

[[regions]]
name = "eu-west-1"
bucket = "meridian-test-models-eu-west-1"
endpoint = "llm-euw1"
instance_type = "ml.g5.2xlarge"
instance_count = 1
min_instances = 1
max_instances = 1
time_zone = "Europe/Dublin"
"#;

/// What the region's replica holds, and how often it was read.
#[derive(Clone)]
struct Record {
    value: Arc<Mutex<Result<Option<RegionHealth>, ReadError>>>,
    reads: Arc<AtomicUsize>,
}

impl RegionRecord for Record {
    async fn load(&self, region: &str) -> Result<Option<RegionHealth>, ReadError> {
        assert_eq!(
            region, "eu-west-1",
            "the front door reads its own region's record"
        );
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.value.lock().map(|v| v.clone()).unwrap_or(Ok(None))
    }
}

/// The endpoint's status, and how often it was read.
#[derive(Clone)]
struct Endpoint {
    value: Arc<Mutex<Result<String, ReadError>>>,
    reads: Arc<AtomicUsize>,
}

impl EndpointStatus for Endpoint {
    async fn status(&self, endpoint: &str) -> Result<String, ReadError> {
        assert_eq!(
            endpoint, "llm-euw1",
            "the front door reads its own region's endpoint"
        );
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.value
            .lock()
            .map(|v| v.clone())
            .unwrap_or(Ok(IN_SERVICE.into()))
    }
}

/// A model that answers `outcome` (echoing nothing of the request), recording each call
/// and whether it was streamed.
#[derive(Clone)]
struct Model {
    outcome: Arc<Mutex<Result<InferenceReply, InferenceError>>>,
    calls: Arc<Mutex<Vec<(InferenceCall, bool)>>>,
}

impl Model {
    fn answer(&self) -> Result<InferenceReply, InferenceError> {
        self.outcome
            .lock()
            .map(|o| o.clone())
            .unwrap_or(Err(InferenceError::Other("poisoned".into())))
    }

    fn record(&self, call: InferenceCall, streamed: bool) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((call, streamed));
        }
    }

    fn calls(&self) -> Vec<(InferenceCall, bool)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Inference for Model {
    async fn invoke(&self, call: InferenceCall) -> Result<InferenceReply, InferenceError> {
        self.record(call, false);
        self.answer()
    }

    async fn invoke_stream(&self, call: InferenceCall) -> Result<StreamedReply, InferenceError> {
        self.record(call, true);
        let reply = self.answer()?;
        // The answer in three parts, as a streaming container sends tokens.
        let text = reply.body.to_vec();
        let thirds: Vec<Result<Bytes, BoxError>> = text
            .chunks(text.len().div_ceil(3).max(1))
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Ok(StreamedReply {
            parts: Box::pin(futures::stream::iter(thirds)),
            content_type: reply.content_type,
            custom_attributes: reply.custom_attributes,
            invoked_variant: reply.invoked_variant,
        })
    }
}

struct World {
    door: FrontDoor<Record, Endpoint, Model>,
    record: Record,
    endpoint: Endpoint,
    model: Model,
}

fn world_in(region: &str) -> World {
    let fleet = Fleet::from_toml_str(FLEET).unwrap_or_else(|e| panic!("test fleet: {e}"));
    let record = Record {
        value: Arc::new(Mutex::new(Ok(None))),
        reads: Arc::default(),
    };
    let endpoint = Endpoint {
        value: Arc::new(Mutex::new(Ok(IN_SERVICE.into()))),
        reads: Arc::default(),
    };
    let model = Model {
        outcome: Arc::new(Mutex::new(Ok(InferenceReply {
            body: Bytes::from_static(b"{\"generated_text\":\"bonjour\"}"),
            content_type: Some("application/json".into()),
            custom_attributes: Some("trace=7".into()),
            invoked_variant: Some("primary".into()),
        }))),
        calls: Arc::default(),
    };
    let door = FrontDoor::new(
        &fleet,
        region,
        record.clone(),
        endpoint.clone(),
        model.clone(),
    );
    World {
        door,
        record,
        endpoint,
        model,
    }
}

fn world() -> World {
    world_in("eu-west-1")
}

fn set<T>(slot: &Arc<Mutex<T>>, value: T) {
    if let Ok(mut slot) = slot.lock() {
        *slot = value;
    }
}

/// A request as API Gateway's REST API delivers it through `lambda_http`: the stage in
/// the URI, the request context with its id.
fn request(method: Method, path: &str, body: &[u8]) -> lambda_http::Request {
    let mut context = ApiGatewayProxyRequestContext::default();
    context.stage = Some("live".into());
    context.request_id = Some("req-1234".into());
    http::Request::builder()
        .method(method)
        .uri(format!(
            "https://abc123.execute-api.eu-west-1.amazonaws.com/live{path}"
        ))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("x-amzn-sagemaker-custom-attributes", "trace=7")
        .body(Body::Binary(body.to_vec()))
        .unwrap_or_default()
        .with_request_context(RequestContext::ApiGatewayV1(context))
}

fn probe() -> lambda_http::Request {
    request(Method::GET, "/health", b"")
}

struct Answered {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    metrics: Vec<String>,
}

impl Answered {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn answer(
    door: &FrontDoor<Record, Endpoint, Model>,
    request: lambda_http::Request,
) -> Answered {
    let Answer { response, metrics } = door.respond(request).await;
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => panic!("body failed: {error}"),
    };
    Answered {
        status: parts.status,
        headers: parts.headers,
        body,
        metrics,
    }
}

fn drained() -> RegionHealth {
    RegionHealth {
        state: HealthState::DrainedByAlarm,
        reason: "alarm llm-5xx in ALARM".into(),
        ..RegionHealth::new(
            "eu-west-1",
            DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        )
    }
}

#[tokio::test]
async fn health_is_200_while_in_service_with_no_record() {
    let w = world();
    let answered = answer(&w.door, probe()).await;
    assert_eq!(answered.status, StatusCode::OK);
    let body = answered.json();
    assert_eq!(body["region"], "eu-west-1");
    assert_eq!(body["status"], "in service");
    assert_eq!(body["endpoint"], "llm-euw1");
    assert_eq!(answered.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn health_is_503_with_the_reason_when_drained_or_the_endpoint_is_not_in_service() {
    let w = world();
    let (record, endpoint) = (&w.record, &w.endpoint);
    let door = w.door.with_cache_ttl(Duration::ZERO);

    set(&record.value, Ok(Some(drained())));
    let answered = answer(&door, probe()).await;
    assert_eq!(answered.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = answered.json();
    assert_eq!(body["status"], "out of service");
    assert_eq!(
        body["reason"],
        "drained_by_alarm since 2027-01-15T08:00:00+00:00: alarm llm-5xx in ALARM"
    );

    set(&record.value, Ok(None));
    set(&endpoint.value, Ok("Updating".into()));
    let answered = answer(&door, probe()).await;
    assert_eq!(answered.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answered.json()["reason"], "endpoint llm-euw1 is Updating");

    set(&endpoint.value, Ok(IN_SERVICE.into()));
    set(
        &record.value,
        Err(ReadError("ResourceNotFoundException".into())),
    );
    let answered = answer(&door, probe()).await;
    assert_eq!(answered.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answered.json()["reason"],
        "health record unreadable: ResourceNotFoundException"
    );

    set(&record.value, Ok(None));
    assert_eq!(answer(&door, probe()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn probes_within_the_cache_ttl_read_nothing_again() {
    let w = world();
    for _ in 0..5 {
        assert_eq!(answer(&w.door, probe()).await.status, StatusCode::OK);
    }
    assert_eq!(w.record.reads.load(Ordering::SeqCst), 1);
    assert_eq!(w.endpoint.reads.load(Ordering::SeqCst), 1);

    // A drain written now shows once the cached read expires, not before.
    set(&w.record.value, Ok(Some(drained())));
    assert_eq!(answer(&w.door, probe()).await.status, StatusCode::OK);
    let expired = w.door.with_cache_ttl(Duration::ZERO);
    assert_eq!(
        answer(&expired, probe()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(w.record.reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn inference_passes_the_request_and_the_answer_through() {
    let w = world();
    let answered = answer(
        &w.door,
        request(Method::POST, "/invocations", b"{\"inputs\":\"hello\"}"),
    )
    .await;
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(
        answered.body,
        Bytes::from_static(b"{\"generated_text\":\"bonjour\"}")
    );
    assert_eq!(answered.header("content-type"), Some("application/json"));
    assert_eq!(answered.header(CUSTOM_ATTRIBUTES), Some("trace=7"));
    assert_eq!(answered.header(INVOKED_VARIANT), Some("primary"));
    let calls = w.model.calls();
    assert_eq!(calls.len(), 1);
    let (call, streamed) = &calls[0];
    assert!(!streamed);
    assert_eq!(
        call,
        &InferenceCall {
            endpoint: "llm-euw1".into(),
            body: Bytes::from_static(b"{\"inputs\":\"hello\"}"),
            content_type: Some("application/json".into()),
            accept: Some("application/json".into()),
            custom_attributes: Some("trace=7".into()),
        }
    );
}

#[tokio::test]
async fn the_stream_route_streams_the_models_parts() {
    let w = world();
    let Answer { response, .. } = w
        .door
        .respond(request(Method::POST, "/invocations-stream", b"{}"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut parts = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => parts.extend(frame.into_data().ok()),
            Err(error) => panic!("stream failed: {error}"),
        }
    }
    assert_eq!(parts.len(), 3, "one frame per part: {parts:?}");
    assert_eq!(parts.concat(), b"{\"generated_text\":\"bonjour\"}".to_vec());
    assert_eq!(
        w.model.calls().first().map(|(_, streamed)| *streamed),
        Some(true)
    );
}

#[tokio::test]
async fn a_drained_region_still_serves_inference_that_reaches_it() {
    let w = world();
    set(&w.record.value, Ok(Some(drained())));
    assert_eq!(
        answer(&w.door, probe()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let answered = answer(&w.door, request(Method::POST, "/invocations", b"{}")).await;
    assert_eq!(answered.status, StatusCode::OK);
}

#[tokio::test]
async fn each_inference_error_gets_its_status_and_a_json_body() {
    let cases = [
        (
            InferenceError::Model {
                status: Some(500),
                message: "CUDA out of memory".into(),
            },
            500,
            "ModelError",
        ),
        (
            InferenceError::Model {
                status: None,
                message: "no status".into(),
            },
            424,
            "ModelError",
        ),
        (
            InferenceError::Model {
                status: Some(0),
                message: "timed out waiting for the container".into(),
            },
            424,
            "ModelError",
        ),
        (
            InferenceError::Validation("bad body".into()),
            400,
            "ValidationError",
        ),
        (
            InferenceError::Throttled("slow down".into()),
            429,
            "Throttled",
        ),
        (
            InferenceError::Unavailable("try again".into()),
            503,
            "ServiceUnavailable",
        ),
        (InferenceError::Timeout("60 s".into()), 504, "Timeout"),
        (
            InferenceError::Other("connection reset".into()),
            502,
            "BadGateway",
        ),
    ];
    for (error, status, name) in cases {
        let w = world();
        set(&w.model.outcome, Err(error.clone()));
        for path in ["/invocations", "/invocations-stream"] {
            let answered = answer(&w.door, request(Method::POST, path, b"{}")).await;
            assert_eq!(answered.status.as_u16(), status, "{error:?} on {path}");
            let body = answered.json();
            assert_eq!(body["error"], name, "{error:?}");
            assert_eq!(body["message"], error.to_string());
            assert_eq!(body["request_id"], "req-1234");
        }
    }
}

#[tokio::test]
async fn every_response_carries_the_request_id() {
    let w = world();
    for (method, path) in [
        (Method::GET, "/health"),
        (Method::POST, "/invocations"),
        (Method::GET, "/nowhere"),
        (Method::DELETE, "/health"),
    ] {
        let answered = answer(&w.door, request(method.clone(), path, b"{}")).await;
        assert_eq!(
            answered.header(REQUEST_ID),
            Some("req-1234"),
            "{method} {path}"
        );
    }
    // Without API Gateway's context (another host), a fresh id per request.
    let bare = || {
        http::Request::builder()
            .uri("/health")
            .body(Body::Empty)
            .unwrap_or_default()
    };
    let first = answer(&w.door, bare()).await;
    let second = answer(&w.door, bare()).await;
    assert_eq!(first.status, StatusCode::OK);
    let (first, second) = (first.header(REQUEST_ID), second.header(REQUEST_ID));
    assert!(first.is_some_and(|id| id.len() == 36), "{first:?}");
    assert_ne!(first, second);
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let w = world();
    let missing = answer(&w.door, request(Method::GET, "/admin", b"")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"], "NotFound");
    let wrong = answer(&w.door, request(Method::GET, "/invocations", b"")).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header("allow"), Some("POST"));
    assert_eq!(wrong.json()["error"], "MethodNotAllowed");
    assert!(w.model.calls().is_empty());
}

#[tokio::test]
async fn each_request_emits_its_metric_lines() {
    let w = world();
    let answered = answer(&w.door, request(Method::GET, "/nowhere", b"")).await;
    assert_eq!(answered.metrics.len(), 2);
    let count: Value = serde_json::from_str(&answered.metrics[0]).unwrap_or_default();
    assert_eq!(count["FrontDoorRequests"], 1.0);
    assert_eq!(count["Route"], metrics::ROUTE_UNKNOWN);
    assert_eq!(count["Status"], "404");
    assert_eq!(count["Region"], "eu-west-1");
    let health = answer(&w.door, probe()).await;
    let latency: Value = serde_json::from_str(&health.metrics[1]).unwrap_or_default();
    assert_eq!(latency["Route"], "health");
    assert!(latency["FrontDoorLatency"]
        .as_f64()
        .is_some_and(|ms| ms >= 0.0));
}

#[tokio::test]
async fn a_region_outside_the_fleet_is_out_of_service_and_serves_nothing() {
    let w = world_in("ap-southeast-1");
    let answered = answer(&w.door, probe()).await;
    assert_eq!(answered.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answered.json()["error"], "NotInFleet");
    let invoked = answer(&w.door, request(Method::POST, "/invocations", b"{}")).await;
    assert_eq!(invoked.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(w.model.calls().is_empty());
    assert_eq!(w.record.reads.load(Ordering::SeqCst), 0);
}
