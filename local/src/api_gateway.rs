//! API Gateway (a REST API, regional endpoint, Lambda proxy integration with response
//! streaming) in front of each region's front door: one listener per region on 127.0.0.1,
//! so each region has its own base URL, `http://127.0.0.1:{port}/live`. Each request
//! becomes the proxy event API Gateway sends, turned into the request a `lambda_http`
//! handler receives by `lambda_http` itself; the handler's response is streamed back.
//! See `EMULATIONS.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::{to_bytes, Body};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_http::request::LambdaRequest;
use lambda_http::RequestExt;
use meridian::fleet::Fleet;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::config::LocalCloudConfig;
use crate::ctx::{Ctx, LOCAL_ACCOUNT};
use crate::server::{serve, Dropped};

/// The stage every front door's API is deployed to; its name starts every path.
pub const STAGE: &str = "live";

/// The resource of the proxy integration: every path under the stage.
const RESOURCE: &str = "/{proxy+}";

/// API Gateway's largest request payload (10 MB).
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// How long a REST API waits for its integration to start answering (not scaled: it is a
/// limit of the API, not a schedule).
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// One listener per fleet region, in fleet order: on `front_door_port` and the ports
/// after it, or on free ports when it is 0.
pub async fn bind(config: &LocalCloudConfig, fleet: &Fleet) -> Result<Vec<(String, TcpListener)>> {
    let mut listeners = Vec::new();
    for (offset, region) in (0u16..).zip(&fleet.regions) {
        let port = match config.front_door_port {
            0 => 0,
            first => first
                .checked_add(offset)
                .context("front-door port out of range")?,
        };
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding {}'s front door to 127.0.0.1:{port}", region.name))?;
        listeners.push((region.name.clone(), listener));
    }
    Ok(listeners)
}

/// The base URL (API Gateway's invoke URL, stage included) of a front door listening on
/// `address`.
pub fn base_url(address: SocketAddr) -> String {
    format!("http://{address}/{STAGE}")
}

/// Serves `region`'s front door on `listener` until the local cloud stops. While the region
/// is down, connections are closed unanswered.
pub fn start(ctx: &Arc<Ctx>, region: String, listener: TcpListener) {
    let task_ctx = ctx.clone();
    ctx.spawn(async move {
        let accepting = {
            let (ctx, region) = (task_ctx.clone(), region.clone());
            move || !ctx.faults.region_is_down(&region)
        };
        serve(listener, accepting, move |request| {
            respond(task_ctx.clone(), region.clone(), request)
        })
        .await;
    });
}

async fn respond(
    ctx: Arc<Ctx>,
    region: String,
    request: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    if ctx.faults.region_is_down(&region) {
        return Err(Dropped(format!("{region} is down")));
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let Some(path) = path_in_stage(parts.uri.path()) else {
        return Ok(gateway_error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "Forbidden",
            &request_id,
        ));
    };
    let Ok(body) = to_bytes(Body::new(body), MAX_PAYLOAD).await else {
        return Ok(gateway_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            "Request Too Long",
            &request_id,
        ));
    };
    let Some(handler) = ctx.front_doors.handler(&region) else {
        tracing::debug!(%region, "no front door is hosted in this region");
        return Ok(gateway_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            "Internal server error",
            &request_id,
        ));
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let event = proxy_event(&ProxyCall {
        method: parts.method.as_str(),
        path,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
        host: &host,
        request_id: &request_id,
    });
    let event: ApiGatewayProxyRequest = match serde_json::from_value(event) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%region, %error, "the request is not a valid API Gateway event");
            return Ok(gateway_error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                "Bad Request",
                &request_id,
            ));
        }
    };
    let mut lambda_context = lambda_http::Context::default();
    lambda_context.request_id = uuid::Uuid::new_v4().to_string();
    let request = lambda_http::Request::from(LambdaRequest::ApiGatewayV1(event))
        .with_lambda_context(lambda_context);
    let mut response =
        match tokio::time::timeout(INTEGRATION_TIMEOUT, tokio::spawn(handler(request))).await {
            Ok(Ok(response)) => response,
            Ok(Err(panicked)) => {
                tracing::warn!(%region, error = %panicked, "the front door panicked");
                return Ok(gateway_error(
                    StatusCode::BAD_GATEWAY,
                    "InternalServerErrorException",
                    "Internal server error",
                    &request_id,
                ));
            }
            Err(_) => {
                return Ok(gateway_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "IntegrationTimeout",
                    "Endpoint request timed out",
                    &request_id,
                ))
            }
        };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .entry("x-amzn-requestid")
            .or_insert(id);
    }
    Ok(response)
}

/// The path below the stage (`/live/health` → `/health`); `None` outside the stage.
pub fn path_in_stage(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?.strip_prefix(STAGE)?;
    match rest {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// What the proxy event is built from.
pub struct ProxyCall<'a> {
    pub method: &'a str,
    /// The path below the stage.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub host: &'a str,
    pub request_id: &'a str,
}

/// The event a REST API's Lambda proxy integration sends for a request to the `/{proxy+}`
/// resource: headers and query parameters single- and multi-valued, the body as text (or
/// base64 when it is not UTF-8, as with binary media types `*/*`), and the request context
/// with a fresh request id.
pub fn proxy_event(call: &ProxyCall<'_>) -> Value {
    let mut headers = Map::new();
    let mut multi_headers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let forwarded = [
        ("x-forwarded-proto", "http"),
        ("x-forwarded-for", "127.0.0.1"),
    ];
    let incoming = call
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    for (name, value) in incoming.chain(forwarded) {
        headers.insert(name.to_owned(), json!(value));
        multi_headers
            .entry(name.to_owned())
            .or_default()
            .push(json!(value));
    }
    let mut query = Map::new();
    let mut multi_query: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pair in call.query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (name, value) = (decode(name), decode(value));
        query.insert(name.clone(), json!(value));
        multi_query.entry(name).or_default().push(json!(value));
    }
    let (body, base64_encoded) = match std::str::from_utf8(call.body) {
        _ if call.body.is_empty() => (Value::Null, false),
        Ok(text) => (json!(text), false),
        Err(_) => (
            json!(base64::engine::general_purpose::STANDARD.encode(call.body)),
            true,
        ),
    };
    let now = chrono::Utc::now();
    let nullable = |map: Map<String, Value>| {
        if map.is_empty() {
            Value::Null
        } else {
            Value::Object(map)
        }
    };
    json!({
        "resource": RESOURCE,
        "path": call.path,
        "httpMethod": call.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": nullable(query),
        "multiValueQueryStringParameters": if multi_query.is_empty() { Value::Null } else { json!(multi_query) },
        "pathParameters": { "proxy": call.path.trim_start_matches('/') },
        "stageVariables": null,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": RESOURCE,
            "stage": STAGE,
            "httpMethod": call.method,
            "path": format!("/{STAGE}{}", call.path),
            "protocol": "HTTP/1.1",
            "domainName": call.host,
            "domainPrefix": call.host.split('.').next().unwrap_or(call.host),
            "requestId": call.request_id,
            "extendedRequestId": call.request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": { "sourceIp": "127.0.0.1" },
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    })
}

/// An error API Gateway answers itself, before or instead of the function.
fn gateway_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let mut response = Response::new(Body::from(json!({ "message": message }).to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(kind) = HeaderValue::from_str(kind) {
        headers.insert("x-amzn-errortype", kind);
    }
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::request::RequestContext;

    #[test]
    fn only_paths_inside_the_stage_reach_the_function() {
        assert_eq!(path_in_stage("/live/health"), Some("/health"));
        assert_eq!(path_in_stage("/live"), Some("/"));
        assert_eq!(path_in_stage("/live/"), Some("/"));
        assert_eq!(path_in_stage("/lively/health"), None);
        assert_eq!(path_in_stage("/health"), None);
    }

    #[test]
    fn lambda_http_reads_the_event_as_a_rest_api_request() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("127.0.0.1:9000"),
        );
        let event = proxy_event(&ProxyCall {
            method: "POST",
            path: "/invocations",
            query: "stream=true&tag=a%20b",
            headers: &headers,
            body: b"{\"inputs\":\"hi\"}",
            host: "127.0.0.1:9000",
            request_id: "req-1",
        });
        let event: ApiGatewayProxyRequest =
            serde_json::from_value(event).expect("API Gateway's event shape");
        let request = lambda_http::Request::from(LambdaRequest::ApiGatewayV1(event));
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.raw_http_path(), "/invocations");
        assert_eq!(
            request.uri().path(),
            "/live/invocations",
            "lambda_http keeps the stage"
        );
        assert_eq!(request.query_string_parameters().first("tag"), Some("a b"));
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.body().as_ref(), b"{\"inputs\":\"hi\"}");
        match request.request_context() {
            RequestContext::ApiGatewayV1(context) => {
                assert_eq!(context.request_id.as_deref(), Some("req-1"));
                assert_eq!(context.stage.as_deref(), Some(STAGE));
            }
            other => panic!("not a REST API context: {other:?}"),
        }
    }

    #[test]
    fn a_binary_body_is_sent_base64_encoded_and_arrives_whole() {
        let event = proxy_event(&ProxyCall {
            method: "PUT",
            path: "/",
            query: "",
            headers: &HeaderMap::new(),
            body: &[0xff, 0x00, 0x01],
            host: "127.0.0.1",
            request_id: "req-2",
        });
        assert_eq!(event["isBase64Encoded"], true);
        let event: ApiGatewayProxyRequest = serde_json::from_value(event).expect("event");
        let request = lambda_http::Request::from(LambdaRequest::ApiGatewayV1(event));
        assert_eq!(request.body().as_ref(), &[0xff, 0x00, 0x01]);
    }
}
