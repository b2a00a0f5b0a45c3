//! The gateway's view of an AWS API call: the request with its body read, the SigV4
//! credential scope that says which region and service it is for, the response, and
//! forwarding to moto. Every emulation speaks these types.

use axum::body::{to_bytes, Body};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::ctx::Ctx;

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
    /// Reads the whole body of an incoming request; a body that cannot be read is a `400`.
    pub async fn read(request: http::Request<Body>) -> Result<Self, GatewayResponse> {
        let (parts, body) = request.into_parts();
        let body = to_bytes(body, MAX_BODY).await.map_err(|error| {
            GatewayResponse::json(
                StatusCode::BAD_REQUEST,
                &json!({ "message": format!("could not read the request body: {error}") }),
            )
        })?;
        Ok(Self {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            headers: parts.headers,
            body,
        })
    }

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
    /// An empty response with `status`.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

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

    /// An XML document (the REST-XML protocol of S3 and Route 53).
    pub fn xml(status: StatusCode, document: String) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml"),
        );
        Self {
            status,
            headers,
            body: Bytes::from(document),
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

    pub fn into_response(self) -> Response {
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
}
