//! The front door: one per region, behind the region's API Gateway REST API and the
//! fleet's DNS name. It serves inference, forwarded to the region's SageMaker endpoint,
//! and `GET /health`, which Route 53's HTTPS health checks probe: 200 only while the
//! region's record in its own table replica says it is in service and its endpoint is
//! `InService`. So draining a region is a write in that region's replica, and a region
//! that goes dark leaves DNS by Route 53's checkers alone, with nothing of ours (and no
//! control-plane call) in the path.
//!
//! Its shape is HTTP, not the event [`meridian::function::Handler`] of the other
//! functions: a request in, an [`Answer`] (the response and its EMF metric lines) out.
//! In Lambda, `meridian::lambda::run_http` runs it with response streaming; the local
//! cloud calls [`FrontDoor::respond`] directly.
//!
//! Routes (anything else is a JSON 404, or 405 with `Allow`):
//! - `GET /health` (and `HEAD`): `{"region", "status": "in service", ...}` or 503
//!   `{"region", "status": "out of service", "reason"}`.
//! - `POST /invocations`: `InvokeEndpoint`, the answer whole.
//! - `POST /invocations-stream`: `InvokeEndpointWithResponseStream`, the answer streamed
//!   part by part as the model produces it.
//!
//! Both inference routes pass the body, `Content-Type`, `Accept` and
//! `X-Amzn-SageMaker-Custom-Attributes` through, and answer with the model's body and
//! content type; a drained region still serves them (a client whose resolver cached the
//! region's address is served, not failed). Every response carries `x-request-id`, and
//! every log line of the request its `request_id`.

pub mod aws;
mod cache;
pub mod deps;
mod forwarding;
mod health;
pub mod metrics;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use chrono::Utc;
use http::header::ALLOW;
use http::{HeaderValue, Response, StatusCode};
use lambda_http::Request;
use meridian::failover::RegionHealth;
use meridian::fleet::Fleet;
use meridian::traffic::FORWARDED_FROM;
use serde_json::json;
use tracing::Instrument;

use crate::cache::Cached;
pub use crate::deps::{
    BoxError, DrillCount, EndpointStatus, Forward, ForwardedReply, Inference, InferenceCall,
    InferenceError, InferenceReply, PartStream, ReadError, RegionRecord, StreamedReply,
};
use crate::forwarding::Routing;
pub use crate::health::IN_SERVICE;
pub use crate::request::CUSTOM_ATTRIBUTES;
use crate::request::{NoRoute, Route};
use crate::response::{
    error_response, inference_error, json_response, set_header, streamed, whole,
};
pub use crate::response::{ResponseBody, INVOKED_VARIANT, REQUEST_ID, SERVED_BY};

/// How long a read of the record or of the endpoint status answers probes: Route 53's
/// checkers, uncoordinated, probe several times a second at times; a second of staleness
/// is nothing next to `interval x failure_threshold` (20 s by default).
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// One request's outcome: the response, and the EMF metric lines to print.
pub struct Answer {
    pub response: Response<ResponseBody>,
    pub metrics: Vec<String>,
}

impl From<Answer> for (Response<ResponseBody>, Vec<String>) {
    fn from(answer: Answer) -> Self {
        (answer.response, answer.metrics)
    }
}

/// A region's front door: its record reader `R`, endpoint status reader `E`, inference
/// client `I` and forwarder to peers' front doors `F` (AWS-backed from
/// [`FrontDoor::from_clients`]).
pub struct FrontDoor<R, E, I, F> {
    fleet: Fleet,
    region: String,
    fleet_name: String,
    /// The region's SageMaker endpoint; `None` when the fleet does not serve from the
    /// region (a deployment mistake, answered 503 rather than a crash loop).
    endpoint: Option<String>,
    record: R,
    endpoint_status: E,
    inference: I,
    forwarder: F,
    record_cache: Cached<Result<Option<RegionHealth>, ReadError>>,
    status_cache: Cached<Result<String, ReadError>>,
    routing_cache: Cached<Result<Routing, ReadError>>,
}

impl<R: RegionRecord, E: EndpointStatus, I: Inference, F: Forward> FrontDoor<R, E, I, F> {
    /// The front door of `region` of `fleet`, caching its reads for [`CACHE_TTL`].
    pub fn new(
        fleet: &Fleet,
        region: &str,
        record: R,
        endpoint_status: E,
        inference: I,
        forwarder: F,
    ) -> Self {
        Self {
            fleet: fleet.clone(),
            region: region.to_owned(),
            fleet_name: fleet.name.clone(),
            endpoint: fleet.region(region).map(|r| r.endpoint.clone()),
            record,
            endpoint_status,
            inference,
            forwarder,
            record_cache: Cached::new(CACHE_TTL),
            status_cache: Cached::new(CACHE_TTL),
            routing_cache: Cached::new(CACHE_TTL),
        }
    }

    /// The same front door with another cache time-to-live (tests, drills).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.record_cache = Cached::new(ttl);
        self.status_cache = Cached::new(ttl);
        self.routing_cache = Cached::new(ttl);
        self
    }

    /// Answers one request. Never fails: every failure is an HTTP status with a JSON
    /// body. The latency metric ends when the response head is ready (a streamed
    /// answer's parts follow it).
    pub async fn respond(&self, request: Request) -> Answer {
        let started = Instant::now();
        let request_id = request::request_id(&request);
        let path = request::route_path(&request);
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %path,
        );
        async move {
            let mut forwarded_lines = Vec::new();
            let (route, mut response) = match request::route(request.method(), &path) {
                Ok(Route::Health) => (Route::Health.name(), self.health(&request_id).await),
                Ok(Route::Invoke) if !request.headers().contains_key(FORWARDED_FROM) => {
                    let (response, lines) = self.invoke_or_forward(request, &request_id).await;
                    forwarded_lines = lines;
                    (Route::Invoke.name(), response)
                }
                Ok(route) => (route.name(), self.invoke(route, request, &request_id).await),
                Err(no_route) => (
                    metrics::ROUTE_UNKNOWN,
                    no_route_response(&no_route, &request_id),
                ),
            };
            set_header(&mut response, REQUEST_ID, Some(&request_id));
            let status = response.status();
            let latency = started.elapsed();
            tracing::info!(
                route,
                status = status.as_u16(),
                latency_ms = latency.as_secs_f64() * 1000.0,
                "answered"
            );
            let mut lines = metrics::lines(&self.region, route, status, latency, Utc::now());
            lines.extend(forwarded_lines);
            Answer {
                metrics: lines,
                response,
            }
        }
        .instrument(span)
        .await
    }

    async fn health(&self, request_id: &str) -> Response<ResponseBody> {
        let Some(endpoint) = self.endpoint.as_deref() else {
            return self.not_in_fleet(request_id);
        };
        let (record, status) = tokio::join!(
            self.record_cache.get(|| self.record.load(&self.region)),
            self.status_cache
                .get(|| self.endpoint_status.status(endpoint)),
        );
        let verdict = health::verdict(&self.region, endpoint, &record, &status);
        if verdict.status != StatusCode::OK {
            tracing::info!(reason = %verdict.body["reason"], "out of service");
        }
        json_response(verdict.status, &verdict.body)
    }

    async fn invoke(
        &self,
        route: Route,
        request: Request,
        request_id: &str,
    ) -> Response<ResponseBody> {
        let Some(endpoint) = self.endpoint.as_deref() else {
            return self.not_in_fleet(request_id);
        };
        let call = request::inference_call(endpoint, request);
        self.answer(route, call, request_id).await
    }

    /// The region's own endpoint's answer to `call`.
    async fn answer(
        &self,
        route: Route,
        call: InferenceCall,
        request_id: &str,
    ) -> Response<ResponseBody> {
        let answered = if route == Route::InvokeStream {
            self.inference.invoke_stream(call).await.map(|reply| {
                model_response(
                    streamed(reply.parts),
                    [
                        ("content-type", reply.content_type),
                        (CUSTOM_ATTRIBUTES, reply.custom_attributes),
                        (INVOKED_VARIANT, reply.invoked_variant),
                        (SERVED_BY, Some(self.region.clone())),
                    ],
                )
            })
        } else {
            self.inference.invoke(call).await.map(|reply| {
                model_response(
                    whole(reply.body),
                    [
                        ("content-type", reply.content_type),
                        (CUSTOM_ATTRIBUTES, reply.custom_attributes),
                        (INVOKED_VARIANT, reply.invoked_variant),
                        (SERVED_BY, Some(self.region.clone())),
                    ],
                )
            })
        };
        answered.unwrap_or_else(|error| {
            tracing::warn!(error = %error, "inference failed");
            inference_error(&error, request_id)
        })
    }

    /// 503 in /health's shape, so a probe's reader finds the reason where it looks.
    fn not_in_fleet(&self, request_id: &str) -> Response<ResponseBody> {
        let reason = format!(
            "region {} is not in fleet {}: this front door has no endpoint",
            self.region, self.fleet_name
        );
        tracing::error!(%reason, "misconfigured");
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "region": self.region,
                "status": "out of service",
                "reason": reason,
                "error": "NotInFleet",
                "request_id": request_id,
            }),
        )
    }
}

/// A model's answer with the headers SageMaker gave it.
fn model_response(
    body: ResponseBody,
    headers: [(&'static str, Option<String>); 4],
) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    for (name, value) in headers {
        set_header(&mut response, name, value.as_deref());
    }
    response
}

/// 404, or 405 naming the method the path takes.
fn no_route_response(no_route: &NoRoute, request_id: &str) -> Response<ResponseBody> {
    match no_route {
        NoRoute::NotFound => error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "no such route: GET /health, POST /invocations and POST /invocations-stream are served",
            request_id,
        ),
        NoRoute::MethodNotAllowed { allow } => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!("this route takes {allow}"),
                request_id,
            );
            if let Ok(value) = HeaderValue::from_str(allow.as_str()) {
                response.headers_mut().insert(ALLOW, value);
            }
            response
        }
    }
}
