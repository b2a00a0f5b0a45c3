//! What the front door reads from an API Gateway request: its id, the path it routes on,
//! and the inference call it carries.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, Method};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::deps::InferenceCall;
use crate::metrics::{ROUTE_HEALTH, ROUTE_INVOKE, ROUTE_INVOKE_STREAM};

/// SageMaker's pass-through header, sent on to the model and back to the caller.
pub const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";

/// API Gateway's id of the request (what its access logs and `x-amzn-requestid` show),
/// else a fresh one: a request from a host other than API Gateway still gets an id.
pub fn request_id(request: &Request) -> String {
    let from_api_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        _ => None,
    };
    from_api_gateway
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The path the front door routes on, without the stage: API Gateway gives the resource
/// path (`/health`) in the event, but `lambda_http` puts the stage in front of it in the
/// request's URI (`/live/health`) when the API was called by its execute-api URL.
pub fn route_path(request: &Request) -> String {
    let raw = request.raw_http_path();
    let path = if raw.is_empty() {
        request.uri().path()
    } else {
        raw
    };
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.clone(),
        _ => None,
    };
    let unstaged = stage
        .filter(|stage| !stage.is_empty() && stage != "$default")
        .and_then(|stage| {
            path.strip_prefix(&format!("/{stage}"))
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(str::to_owned)
        });
    match unstaged {
        Some(rest) if rest.is_empty() => "/".to_owned(),
        Some(rest) => rest,
        None => path.to_owned(),
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`.
    Health,
    /// `POST /invocations`: `InvokeEndpoint`, the answer whole.
    Invoke,
    /// `POST /invocations-stream`: `InvokeEndpointWithResponseStream`, the answer
    /// streamed to the caller part by part as the model produces it.
    InvokeStream,
}

impl Route {
    /// The `Route` metric dimension.
    pub fn name(self) -> &'static str {
        match self {
            Route::Health => ROUTE_HEALTH,
            Route::Invoke => ROUTE_INVOKE,
            Route::InvokeStream => ROUTE_INVOKE_STREAM,
        }
    }
}

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No such path.
    NotFound,
    /// The path exists, for this method only.
    MethodNotAllowed { allow: Method },
}

/// The route of `method` on `path`.
pub fn route(method: &Method, path: &str) -> Result<Route, NoRoute> {
    let (route, allow) = match path.trim_end_matches('/') {
        "/health" => (Route::Health, Method::GET),
        "/invocations" => (Route::Invoke, Method::POST),
        "/invocations-stream" => (Route::InvokeStream, Method::POST),
        _ => return Err(NoRoute::NotFound),
    };
    // Route 53's HTTPS checks send GET; a HEAD gets the same answer without a body.
    let allowed = *method == allow || (allow == Method::GET && *method == Method::HEAD);
    if allowed {
        Ok(route)
    } else {
        Err(NoRoute::MethodNotAllowed { allow })
    }
}

/// The inference call a request carries: its body and the headers SageMaker reads.
pub fn inference_call(endpoint: &str, request: Request) -> InferenceCall {
    let (parts, body) = request.into_parts();
    let header = |headers: &HeaderMap, name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    InferenceCall {
        endpoint: endpoint.to_owned(),
        body: Bytes::copy_from_slice(&body),
        content_type: header(&parts.headers, CONTENT_TYPE.as_str()),
        accept: header(&parts.headers, ACCEPT.as_str()),
        custom_attributes: header(&parts.headers, CUSTOM_ATTRIBUTES),
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
    use lambda_http::Body;

    use super::*;

    fn api_gateway(path: &str, stage: Option<&str>, id: Option<&str>) -> Request {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.stage = stage.map(str::to_owned);
        context.request_id = id.map(str::to_owned);
        http::Request::builder()
            .uri(path)
            .body(Body::Empty)
            .unwrap_or_default()
            .with_request_context(RequestContext::ApiGatewayV1(context))
    }

    #[test]
    fn the_request_id_is_api_gateways_when_there_is_one() {
        let request = api_gateway(
            "/health",
            None,
            Some("c6af9ac6-7b61-11e6-9a41-93e8deadbeef"),
        );
        assert_eq!(request_id(&request), "c6af9ac6-7b61-11e6-9a41-93e8deadbeef");
        let bare = http::Request::new(Body::Empty);
        let (first, second) = (request_id(&bare), request_id(&bare));
        assert_eq!(first.len(), 36, "a uuid: {first}");
        assert_ne!(first, second);
    }

    #[test]
    fn the_stage_is_not_part_of_the_route() {
        assert_eq!(
            route_path(&api_gateway("/live/health", Some("live"), None)),
            "/health"
        );
        assert_eq!(
            route_path(&api_gateway("/health", Some("live"), None)),
            "/health"
        );
        assert_eq!(
            route_path(&api_gateway("/livelier", Some("live"), None)),
            "/livelier"
        );
        assert_eq!(route_path(&api_gateway("/live", Some("live"), None)), "/");
        assert_eq!(
            route_path(&api_gateway("/health", Some("$default"), None)),
            "/health"
        );
        let raw = api_gateway("/live/health", Some("live"), None).with_raw_http_path("/health");
        assert_eq!(route_path(&raw), "/health");
    }

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(route(&Method::GET, "/health"), Ok(Route::Health));
        assert_eq!(route(&Method::HEAD, "/health/"), Ok(Route::Health));
        assert_eq!(route(&Method::POST, "/invocations"), Ok(Route::Invoke));
        assert_eq!(
            route(&Method::POST, "/invocations-stream"),
            Ok(Route::InvokeStream)
        );
        assert_eq!(
            route(&Method::GET, "/invocations"),
            Err(NoRoute::MethodNotAllowed {
                allow: Method::POST
            })
        );
        assert_eq!(
            route(&Method::POST, "/health"),
            Err(NoRoute::MethodNotAllowed { allow: Method::GET })
        );
        assert_eq!(route(&Method::GET, "/"), Err(NoRoute::NotFound));
        assert_eq!(
            route(&Method::POST, "/invocations/x"),
            Err(NoRoute::NotFound)
        );
    }

    #[test]
    fn an_inference_call_carries_the_body_and_the_headers_sagemaker_reads() {
        let request = http::Request::builder()
            .method(Method::POST)
            .uri("/invocations")
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream")
            .header("X-Amzn-SageMaker-Custom-Attributes", "trace=1")
            .header("Authorization", "not for the model")
            .body(Body::Binary(b"{\"inputs\":\"hi\"}".to_vec()))
            .unwrap_or_default();
        let call = inference_call("llm", request);
        assert_eq!(call.endpoint, "llm");
        assert_eq!(call.body, Bytes::from_static(b"{\"inputs\":\"hi\"}"));
        assert_eq!(call.content_type.as_deref(), Some("application/json"));
        assert_eq!(call.accept.as_deref(), Some("text/event-stream"));
        assert_eq!(call.custom_attributes.as_deref(), Some("trace=1"));
    }
}
