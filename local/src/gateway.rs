//! The gateway: the one AWS endpoint of the local cloud. It serves the Lambda Invoke API
//! for in-process functions, runs the emulations of `EMULATIONS.md` around the calls that
//! need them, and forwards everything else to moto unchanged.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::cloud::Ctx;
use crate::faults::FaultSet;
use crate::functions::{function_name_from_identifier, Invocation, InvokeError};
use crate::{alarms, global_tables, replication, sagemaker};

/// Largest request body the gateway accepts: S3's limit for a single PUT. Bodies are
/// buffered in memory, so local uploads should stay small (multipart parts are).
const MAX_BODY: usize = 5 * 1024 * 1024 * 1024;

/// The region and service a SigV4-signed request is scoped to.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialScope {
    pub region: String,
    pub service: String,
}

/// Reads `Credential=AKID/date/region/service/aws4_request` from the Authorization header.
pub fn credential_scope(headers: &HeaderMap) -> Option<CredentialScope> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let credential = credential.split([',', ' ']).next()?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [_, _, region, service, "aws4_request"] => Some(CredentialScope {
            region: (*region).to_owned(),
            service: (*service).to_owned(),
        }),
        _ => None,
    }
}

/// A request as the gateway sees it, body already read.
pub struct GatewayRequest {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl GatewayRequest {
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.path_and_query.split_once('?').map_or("", |(_, q)| q)
    }

    pub fn target(&self) -> Option<&str> {
        self.headers.get("x-amz-target")?.to_str().ok()
    }
}

/// A response the gateway sends back.
pub struct GatewayResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl GatewayResponse {
    pub fn json(status: StatusCode, value: &Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Self {
            status,
            headers,
            body: Bytes::from(value.to_string()),
        }
    }

    /// An AWS JSON-protocol error that SDKs decode into the named error.
    pub fn aws_json_error(status: StatusCode, code: &str, message: &str) -> Self {
        let mut response = Self::json(status, &json!({ "__type": code, "message": message }));
        if let Ok(value) = HeaderValue::from_str(code) {
            response.headers.insert("x-amzn-errortype", value);
        }
        response.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        response
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Headers that belong to one hop and must not be copied across the gateway.
fn is_hop_header(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive"
    )
}

/// Sends a request to moto unchanged (but for hop-by-hop headers).
pub async fn forward(ctx: &Ctx, request: &GatewayRequest) -> anyhow::Result<GatewayResponse> {
    let url = format!("{}{}", ctx.moto_url, request.path_and_query);
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if !is_hop_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let response = ctx
        .http
        .request(request.method.clone(), url)
        .headers(headers)
        .body(request.body.clone())
        .send()
        .await?;
    let status = response.status();
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        // A HEAD reply's Content-Length describes the object, not the (empty) body.
        let keep = !is_hop_header(name)
            || (request.method == Method::HEAD && name == http::header::CONTENT_LENGTH);
        if keep {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = response.bytes().await?;
    Ok(GatewayResponse {
        status,
        headers,
        body,
    })
}

/// The axum entry point for every request.
pub async fn handle(State(ctx): State<Arc<Ctx>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(error) => {
            return GatewayResponse::json(
                StatusCode::BAD_REQUEST,
                &json!({ "message": format!("could not read the request body: {error}") }),
            )
            .into_response()
        }
    };
    let request = GatewayRequest {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts.headers,
        body,
    };
    match route(&ctx, request).await {
        Ok(response) => response.into_response(),
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "gateway request failed");
            GatewayResponse::json(
                StatusCode::BAD_GATEWAY,
                &json!({ "message": format!("meridian local gateway: {error:#}") }),
            )
            .into_response()
        }
    }
}

async fn route(ctx: &Arc<Ctx>, request: GatewayRequest) -> anyhow::Result<GatewayResponse> {
    if let Some(control) = request.path().strip_prefix("/_meridian/") {
        return Ok(control_api(ctx, control, &request));
    }
    let scope = credential_scope(&request.headers);
    ctx.calls.record(&request, scope.as_ref());
    if let Some(identifier) = lambda_invoke_target(request.path()) {
        return Ok(invoke_lambda(ctx, &identifier, scope.as_ref(), &request).await);
    }
    if let Some((service, operation)) = crate::cbor::rpc_v2_target(request.path()) {
        let json_request = match crate::cbor::to_json_request(&request, service, operation) {
            Ok(json_request) => json_request,
            Err(problem) => {
                return Ok(GatewayResponse::json(
                    StatusCode::BAD_REQUEST,
                    &json!({ "__type": "SerializationException", "message": problem }),
                ))
            }
        };
        let response = crate::cbor::to_cbor_response(forward(ctx, &json_request).await?);
        if let Some(scope) = scope.filter(|s| s.service == "monitoring") {
            alarms::scan_region(ctx, &scope.region).await;
        }
        return Ok(response);
    }
    let Some(scope) = scope else {
        return forward(ctx, &request).await;
    };
    match scope.service.as_str() {
        "sagemaker" => sagemaker::handle(ctx, &scope.region, request).await,
        "dynamodb" => global_tables::handle(ctx, &scope.region, request).await,
        "events" => crate::events::handle(ctx, &scope.region, request).await,
        "s3" => {
            let mut response = forward(ctx, &request).await?;
            correct_versioning_root(&request, &mut response);
            if response.is_success() {
                replication::after_s3_write(ctx, &request);
            }
            Ok(response)
        }
        "monitoring" => {
            let response = forward(ctx, &request).await?;
            alarms::scan_region(ctx, &scope.region).await;
            Ok(response)
        }
        _ => forward(ctx, &request).await,
    }
}

/// moto 5.2.5 names the root element of a GetBucketVersioning reply
/// `GetBucketVersioningResponse`; S3 (and the Rust SDK's parser) use `VersioningConfiguration`.
fn correct_versioning_root(request: &GatewayRequest, response: &mut GatewayResponse) {
    let is_get_versioning = request.method == http::Method::GET
        && request
            .query()
            .split('&')
            .any(|p| p == "versioning" || p == "versioning=");
    if !is_get_versioning || !response.is_success() {
        return;
    }
    let body = String::from_utf8_lossy(&response.body);
    if body.contains("<GetBucketVersioningResponse") {
        let corrected = body
            .replace("<GetBucketVersioningResponse", "<VersioningConfiguration")
            .replace(
                "</GetBucketVersioningResponse>",
                "</VersioningConfiguration>",
            );
        response.body = corrected.into_bytes().into();
    }
}

/// The `FunctionName` in a Lambda Invoke path, `/2015-03-31/functions/{name}/invocations`.
pub fn lambda_invoke_target(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let encoded = rest.strip_suffix("/invocations")?;
    Some(
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

async fn invoke_lambda(
    ctx: &Arc<Ctx>,
    identifier: &str,
    scope: Option<&CredentialScope>,
    request: &GatewayRequest,
) -> GatewayResponse {
    let arn_region = identifier
        .strip_prefix("arn:")
        .and_then(|arn| arn.split(':').nth(2))
        .map(str::to_owned);
    let region = arn_region
        .or_else(|| scope.map(|s| s.region.clone()))
        .unwrap_or_else(|| ctx.fleet.primary_region.clone());
    let payload = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(payload) => payload,
            Err(error) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {error}"),
                )
            }
        }
    };
    let invocation = Invocation {
        function_name: function_name_from_identifier(identifier).to_owned(),
        region,
        payload,
    };
    let invocation_type = request
        .headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "DryRun" => {
            return GatewayResponse {
                status: StatusCode::NO_CONTENT,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            }
        }
        "Event" => {
            let functions = ctx.functions.clone();
            let name = invocation.function_name.clone();
            if !functions.names().contains(&name) {
                return function_not_found(&name);
            }
            tokio::spawn(async move {
                if let Err(error) = functions.invoke(invocation).await {
                    tracing::warn!(function = %name, %error, "asynchronous invocation failed");
                }
            });
            return GatewayResponse {
                status: StatusCode::ACCEPTED,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            };
        }
        _ => {}
    }
    let name = invocation.function_name.clone();
    let mut response = match ctx.functions.invoke(invocation).await {
        Ok(result) => GatewayResponse::json(StatusCode::OK, &result),
        Err(InvokeError::NotFound(name)) => return function_not_found(&name),
        Err(InvokeError::Failed(error)) => {
            tracing::info!(function = %name, %error, "function returned an error");
            let mut response = GatewayResponse::json(
                StatusCode::OK,
                &serde_json::to_value(&error).unwrap_or(Value::Null),
            );
            response.headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            response
        }
    };
    response.headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    response
}

fn function_not_found(name: &str) -> GatewayResponse {
    lambda_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("Function not found: {name}"),
    )
}

fn lambda_error(status: StatusCode, code: &str, message: &str) -> GatewayResponse {
    let mut response =
        GatewayResponse::json(status, &json!({ "Type": "User", "message": message }));
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers.insert("x-amzn-errortype", value);
    }
    response
}

fn control_api(ctx: &Arc<Ctx>, path: &str, request: &GatewayRequest) -> GatewayResponse {
    match (request.method.as_str(), path) {
        ("GET", "health") => GatewayResponse::json(
            StatusCode::OK,
            &json!({
                "status": if ctx.is_provisioned() { "ready" } else { "starting" },
                "fleet": ctx.fleet.name,
                "regions": ctx.fleet.region_names(),
                "functions": ctx.functions.names(),
                "moto": ctx.moto_url,
            }),
        ),
        ("GET", "faults") => GatewayResponse::json(
            StatusCode::OK,
            &serde_json::to_value(ctx.faults.snapshot()).unwrap_or(Value::Null),
        ),
        ("PUT", "faults") => match serde_json::from_slice::<FaultSet>(&request.body) {
            Ok(faults) => {
                ctx.faults.replace(faults.clone());
                tracing::info!(?faults, "faults replaced");
                GatewayResponse::json(
                    StatusCode::OK,
                    &serde_json::to_value(faults).unwrap_or(Value::Null),
                )
            }
            Err(error) => GatewayResponse::json(
                StatusCode::BAD_REQUEST,
                &json!({ "message": format!("invalid fault set: {error}") }),
            ),
        },
        _ => GatewayResponse::json(
            StatusCode::NOT_FOUND,
            &json!({ "message": format!("no control endpoint {} /_meridian/{path}", request.method) }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_scope_is_read_from_sigv4_authorization() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20261124/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=abc",
            ),
        );
        assert_eq!(
            credential_scope(&headers),
            Some(CredentialScope {
                region: "eu-west-1".into(),
                service: "s3".into()
            })
        );
        assert_eq!(credential_scope(&HeaderMap::new()), None);
    }

    #[test]
    fn lambda_invoke_paths_are_recognised_and_decoded() {
        assert_eq!(
            lambda_invoke_target(
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho/invocations"
            )
            .as_deref(),
            Some("arn:aws:lambda:us-east-1:123456789012:function:echo")
        );
        assert_eq!(lambda_invoke_target("/2015-03-31/functions/echo"), None);
    }
}
