//! The front door end to end over in-memory adapters: routes, health answers and their
//! cache, inference pass-through, error statuses, request ids and metric lines.

use std::collections::BTreeMap;
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
use meridian::traffic::{DrillShift, FORWARDED_FROM};
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

/// What the region's replica holds, and how often the region's own record was read.
#[derive(Clone)]
struct Record {
    value: Arc<Mutex<Result<Option<RegionHealth>, ReadError>>>,
    reads: Arc<AtomicUsize>,
    /// The peers' records, as replicated.
    peers: Arc<Mutex<BTreeMap<String, RegionHealth>>>,
    shift: Arc<Mutex<Option<DrillShift>>>,
    counts: Arc<Mutex<Vec<DrillCount>>>,
}

impl RegionRecord for Record {
    async fn load(&self, region: &str) -> Result<Option<RegionHealth>, ReadError> {
        if region != "eu-west-1" {
            return Ok(self.peers.lock().ok().and_then(|p| p.get(region).cloned()));
        }
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.value.lock().map(|v| v.clone()).unwrap_or(Ok(None))
    }

    async fn drill_shift(&self, _region: &str) -> Result<Option<DrillShift>, ReadError> {
        Ok(self.shift.lock().ok().and_then(|s| s.clone()))
    }

    async fn count_drill_request(&self, count: DrillCount) -> Result<(), ReadError> {
        if let Ok(mut counts) = self.counts.lock() {
            counts.push(count);
        }
        Ok(())
    }
}

/// Peers' front doors: each call (URL, forwarding region), and what they answer.
#[derive(Clone)]
struct Peers {
    outcome: Arc<Mutex<Result<ForwardedReply, String>>>,
    calls: Arc<Mutex<Vec<(String, String)>>>,
}

impl Forward for Peers {
    async fn forward(
        &self,
        base_url: &str,
        from: &str,
        _call: &InferenceCall,
    ) -> Result<ForwardedReply, String> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((base_url.to_owned(), from.to_owned()));
        }
        self.outcome
            .lock()
            .map(|o| o.clone())
            .unwrap_or(Err("poisoned".into()))
    }
}

impl Peers {
    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
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

type Door = FrontDoor<Record, Endpoint, Model, Peers>;

struct World {
    door: Door,
    record: Record,
    endpoint: Endpoint,
    model: Model,
    peers: Peers,
}

fn world_in(region: &str) -> World {
    world_of(FLEET, region)
}

fn world_of(fleet: &str, region: &str) -> World {
    let fleet = Fleet::from_toml_str(fleet).unwrap_or_else(|e| panic!("test fleet: {e}"));
    let record = Record {
        value: Arc::new(Mutex::new(Ok(None))),
        reads: Arc::default(),
        peers: Arc::default(),
        shift: Arc::default(),
        counts: Arc::default(),
    };
    let peers = Peers {
        outcome: Arc::new(Mutex::new(Ok(ForwardedReply {
            status: StatusCode::OK,
            body: Bytes::from_static(b"{\"generated_text\":\"from a peer\"}"),
            content_type: Some("application/json".into()),
            custom_attributes: None,
            invoked_variant: Some("primary".into()),
            served_by: Some("us-east-1".into()),
        }))),
        calls: Arc::default(),
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
        peers.clone(),
    );
    World {
        door,
        record,
        endpoint,
        model,
        peers,
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

async fn answer(door: &Door, request: lambda_http::Request) -> Answered {
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

mod forwarding {
    //! Forwarding a share of the region's inference to a peer's front door.

    use super::*;

    /// The test fleet, active-passive: us-east-1 is the primary, eu-west-1 its standby.
    fn passive(warm_percent: f64) -> String {
        format!(
            "{}\n[traffic]\nwarm_percent = {warm_percent}\n",
            FLEET.replace("\"active-active\"", "\"active-passive\"")
        )
    }

    /// eu-west-1 as a peer: in service (or not), its front door published.
    fn peer(in_service: bool) -> RegionHealth {
        let mut record = RegionHealth::new(
            "us-east-1",
            DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        );
        if !in_service {
            record.state = HealthState::DrainedByAlarm;
        }
        record.front_door = Some("https://peer.example/live".into());
        record
    }

    fn with_peer(w: &World, region: &str, record: RegionHealth) {
        if let Ok(mut peers) = w.record.peers.lock() {
            peers.insert(region.into(), record);
        }
    }

    fn request_numbered(i: usize, forwarded_from: Option<&str>) -> lambda_http::Request {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.stage = Some("live".into());
        context.request_id = Some(format!("{i:08x}-5e1f-4b0e-9c2a-{:012x}", i * 7919));
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri("https://abc123.execute-api.eu-west-1.amazonaws.com/live/invocations");
        if let Some(from) = forwarded_from {
            builder = builder.header(FORWARDED_FROM, from);
        }
        builder
            .body(Body::Binary(b"{}".to_vec()))
            .unwrap_or_default()
            .with_request_context(RequestContext::ApiGatewayV1(context))
    }

    /// The primary eu-west-1 of a passive fleet: the standby is us-east-1 here.
    fn primary_world(warm_percent: f64) -> World {
        let fleet = passive(warm_percent).replace(
            "primary_region = \"us-east-1\"",
            "primary_region = \"eu-west-1\"",
        );
        let w = world_of(&fleet, "eu-west-1");
        with_peer(&w, "us-east-1", peer(true));
        w
    }

    #[tokio::test]
    async fn a_primary_sends_its_warm_share_to_the_standby_and_no_more() {
        let w = primary_world(10.0);
        let n = 2_000;
        let mut forwarded = 0;
        for i in 0..n {
            let answered = answer(&w.door, request_numbered(i, None)).await;
            assert_eq!(answered.status, StatusCode::OK);
            if answered.header(SERVED_BY) == Some("us-east-1") {
                forwarded += 1;
                assert_eq!(answered.json()["generated_text"], "from a peer");
                assert_eq!(answered.metrics.len(), 5, "request, latency, forwarded x3");
                let count: Value = serde_json::from_str(&answered.metrics[2]).unwrap_or_default();
                assert_eq!(count["FrontDoorForwardedRequests"], 1.0);
                assert_eq!(count["Target"], "us-east-1");
                assert_eq!(count["Reason"], "warm");
            } else {
                assert_eq!(answered.header(SERVED_BY), Some("eu-west-1"));
            }
        }
        // 10% of 2,000: sd = sqrt(2000 * 0.1 * 0.9) ≈ 13.4; 4 sd either side.
        assert!(
            (146..=254).contains(&forwarded),
            "{forwarded} of {n} forwarded"
        );
        assert_eq!(w.peers.calls().len(), forwarded);
        assert!(w
            .peers
            .calls()
            .iter()
            .all(|(url, from)| url == "https://peer.example/live" && from == "eu-west-1"));
        assert!(
            w.record
                .counts
                .lock()
                .map(|c| c.is_empty())
                .unwrap_or(false),
            "warm traffic is no drill"
        );
    }

    #[tokio::test]
    async fn the_same_request_id_always_goes_the_same_way() {
        let w = primary_world(50.0);
        for i in 0..50 {
            let first = answer(&w.door, request_numbered(i, None)).await;
            let again = answer(&w.door, request_numbered(i, None)).await;
            assert_eq!(first.header(SERVED_BY), again.header(SERVED_BY));
        }
    }

    #[tokio::test]
    async fn a_forwarded_request_is_never_forwarded_again() {
        let w = primary_world(50.0);
        for i in 0..200 {
            let answered = answer(&w.door, request_numbered(i, Some("ap-southeast-1"))).await;
            assert_eq!(answered.header(SERVED_BY), Some("eu-west-1"));
            assert_eq!(answered.metrics.len(), 2);
        }
        assert!(w.peers.calls().is_empty());
        assert_eq!(w.model.calls().len(), 200);
    }

    #[tokio::test]
    async fn nothing_goes_to_a_drained_standby_or_from_a_standby_or_with_warm_traffic_off() {
        let w = primary_world(50.0);
        with_peer(&w, "us-east-1", peer(false));
        for i in 0..100 {
            answer(&w.door, request_numbered(i, None)).await;
        }
        assert!(w.peers.calls().is_empty(), "drained standby");
        let standby = world_of(&passive(50.0), "eu-west-1");
        with_peer(&standby, "us-east-1", peer(true));
        let off = primary_world(0.0);
        for i in 0..100 {
            answer(&standby.door, request_numbered(i, None)).await;
            answer(&off.door, request_numbered(i, None)).await;
        }
        assert!(
            standby.peers.calls().is_empty(),
            "a standby forwards nothing"
        );
        assert!(off.peers.calls().is_empty(), "warm_percent = 0");
    }

    fn shift(percent: u32, seconds_left: i64) -> DrillShift {
        DrillShift {
            drill_id: "drill-1".into(),
            from: "eu-west-1".into(),
            to: "us-east-1".into(),
            percent,
            step: 3,
            until: chrono::Utc::now() + chrono::Duration::seconds(seconds_left),
        }
    }

    #[tokio::test]
    async fn a_drill_shifts_its_share_and_counts_each_request_of_its_step() {
        let w = world();
        with_peer(&w, "us-east-1", peer(true));
        set(&w.record.shift, Some(shift(100, 60)));
        for i in 0..20 {
            let answered = answer(&w.door, request_numbered(i, None)).await;
            assert_eq!(answered.header(SERVED_BY), Some("us-east-1"));
            let count: Value = serde_json::from_str(&answered.metrics[2]).unwrap_or_default();
            assert_eq!(count["Reason"], "drill");
        }
        let counts = w
            .record
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        assert_eq!(counts.len(), 20);
        assert!(counts
            .iter()
            .all(|c| c.drill_id == "drill-1" && c.step == 3 && !c.failed));
    }

    #[tokio::test]
    async fn a_peer_that_fails_or_does_not_answer_counts_as_an_error() {
        let w = world();
        with_peer(&w, "us-east-1", peer(true));
        set(&w.record.shift, Some(shift(100, 60)));
        set(&w.peers.outcome, Err("connection refused".into()));
        let answered = answer(&w.door, request_numbered(1, None)).await;
        assert_eq!(answered.status, StatusCode::OK, "served here instead");
        assert_eq!(answered.header(SERVED_BY), Some("eu-west-1"));
        let errors: Value = serde_json::from_str(&answered.metrics[3]).unwrap_or_default();
        assert_eq!(errors["FrontDoorForwardedErrors"], 1.0);
        set(
            &w.peers.outcome,
            Ok(ForwardedReply {
                status: StatusCode::BAD_GATEWAY,
                body: Bytes::from_static(b"{\"error\":\"BadGateway\"}"),
                content_type: Some("application/json".into()),
                custom_attributes: None,
                invoked_variant: None,
                served_by: None,
            }),
        );
        let answered = answer(&w.door, request_numbered(2, None)).await;
        assert_eq!(
            answered.status,
            StatusCode::BAD_GATEWAY,
            "the peer's answer is the caller's"
        );
        let counts = w
            .record
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        assert_eq!(counts.iter().filter(|c| c.failed).count(), 2);
    }

    #[tokio::test]
    async fn a_lapsed_drill_shift_shifts_nothing() {
        let w = world();
        with_peer(&w, "us-east-1", peer(true));
        set(&w.record.shift, Some(shift(100, -1)));
        for i in 0..50 {
            answer(&w.door, request_numbered(i, None)).await;
        }
        assert!(w.peers.calls().is_empty());
    }
}
