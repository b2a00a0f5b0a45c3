//! The front door's responses: one body type for whole and streamed answers, and JSON
//! bodies for health and errors.

use bytes::Bytes;
use futures::TryStreamExt;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use meridian::NamedError;
use serde_json::{json, Value};

use crate::deps::{BoxError, InferenceError, PartStream};

/// Every response's body: a whole answer or a stream of parts, as `lambda_http`'s
/// streaming runner and any `http_body` host (the local cloud's gateway) take it.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// The header carrying the request's id on every response.
pub const REQUEST_ID: &str = "x-request-id";
/// The region whose endpoint answered an inference: the front door's own, or the peer's
/// it forwarded the request to.
pub const SERVED_BY: &str = "x-meridian-served-by";
/// SageMaker's header naming the production variant that answered.
pub const INVOKED_VARIANT: &str = "x-amzn-invoked-production-variant";

/// A whole body.
pub fn whole(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body sent part by part as `parts` yields them.
pub fn streamed(parts: PartStream) -> ResponseBody {
    StreamBody::new(parts.map_ok(http_body::Frame::data)).boxed_unsync()
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(whole(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The JSON error a caller gets: `{"error", "message", "request_id"}`.
pub fn error_response(
    status: StatusCode,
    error: &str,
    message: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    json_response(
        status,
        &json!({ "error": error, "message": message, "request_id": request_id }),
    )
}

/// A failed inference, with its status and name.
pub fn inference_error(error: &InferenceError, request_id: &str) -> Response<ResponseBody> {
    error_response(
        error.status(),
        error.error_name(),
        &error.to_string(),
        request_id,
    )
}

/// Sets `name` to `value` when it is a valid header value (a model's custom attributes
/// are opaque to us; one that is not a header value is left out rather than fail the
/// answer).
pub fn set_header(response: &mut Response<ResponseBody>, name: &'static str, value: Option<&str>) {
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}
