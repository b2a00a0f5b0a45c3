//! What the front door reads and calls, behind small traits: the AWS adapters are in
//! [`crate::aws`], and the unit tests use in-memory ones.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use http::StatusCode;
pub use meridian::drill_store::DrillCount;
use meridian::failover::RegionHealth;
use meridian::traffic::DrillShift;

/// A boxed error, as HTTP bodies report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The parts of a streamed model answer, as they arrive.
pub type PartStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A read the health answer depends on failed; its message becomes the 503's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// What the front door keeps in its region's table replica: the region's health record
/// (what the failover and failback functions of this region wrote; a drain is such a
/// write), its peers' records as replicated (their state and published front door),
/// a running drill's shift of the region's traffic, and the drill's per-step counts.
pub trait RegionRecord: Send + Sync {
    /// `None` when the region never had a record: nothing ever happened to it.
    fn load(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Option<RegionHealth>, ReadError>> + Send;
    /// The drill's shift of `region`'s traffic, if a drill wrote one.
    fn drill_shift(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Option<DrillShift>, ReadError>> + Send;
    /// Adds one forwarded request of a drill's step to its counts.
    fn count_drill_request(
        &self,
        count: DrillCount,
    ) -> impl Future<Output = Result<(), ReadError>> + Send;
}

/// A peer front door's answer to a forwarded request, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedReply {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub custom_attributes: Option<String>,
    pub invoked_variant: Option<String>,
    /// The region whose endpoint answered (the peer's `x-meridian-served-by`).
    pub served_by: Option<String>,
}

/// Peers' front doors, over HTTPS: how a share of this region's inference is served
/// elsewhere.
pub trait Forward: Send + Sync {
    /// `POST {base_url}/invocations` with the call's body and headers, marked as
    /// forwarded from `from`. `Err` when no answer came (connect, timeout).
    fn forward(
        &self,
        base_url: &str,
        from: &str,
        call: &InferenceCall,
    ) -> impl Future<Output = Result<ForwardedReply, String>> + Send;
}

/// The status of the region's SageMaker endpoint (`InService`, `Updating`, ...).
pub trait EndpointStatus: Send + Sync {
    fn status(&self, endpoint: &str) -> impl Future<Output = Result<String, ReadError>> + Send;
}

/// One inference request, as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceCall {
    pub endpoint: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    /// `X-Amzn-SageMaker-Custom-Attributes`, passed through to the model.
    pub custom_attributes: Option<String>,
}

/// What the model answered, whole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InferenceReply {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub custom_attributes: Option<String>,
    pub invoked_variant: Option<String>,
}

/// What the model answers, as a stream of parts.
pub struct StreamedReply {
    pub parts: PartStream,
    pub content_type: Option<String>,
    pub custom_attributes: Option<String>,
    pub invoked_variant: Option<String>,
}

/// The region's SageMaker endpoint, through the SageMaker runtime.
pub trait Inference: Send + Sync {
    /// `InvokeEndpoint`: the whole answer at once.
    fn invoke(
        &self,
        call: InferenceCall,
    ) -> impl Future<Output = Result<InferenceReply, InferenceError>> + Send;
    /// `InvokeEndpointWithResponseStream`: the answer part by part. An error before the
    /// first part is an `Err` (it still gets its HTTP status); a later one ends the parts.
    fn invoke_stream(
        &self,
        call: InferenceCall,
    ) -> impl Future<Output = Result<StreamedReply, InferenceError>> + Send;
}

/// Why an inference failed, each kind with the HTTP status the caller gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    /// The model's container answered with an error (SageMaker's `ModelError`).
    #[error("the model failed{}: {message}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Model {
        /// The status the container answered with, when SageMaker reports one.
        status: Option<u16>,
        message: String,
    },
    /// SageMaker refused the request as given (`ValidationError`).
    #[error("invalid request: {0}")]
    Validation(String),
    /// Too many requests for the endpoint or the account.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The endpoint cannot serve now (`ServiceUnavailable`, a model still loading).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No answer in time (the SDK's timeout, or the model's invocation time exceeded).
    #[error("timed out: {0}")]
    Timeout(String),
    /// Anything else between the front door and SageMaker.
    #[error("{0}")]
    Other(String),
}

impl InferenceError {
    /// The HTTP status the caller gets: the model's own 4xx/5xx when SageMaker passes it
    /// on (424, SageMaker's, otherwise), 400, 429, 503, 504, and 502 for the rest.
    pub fn status(&self) -> StatusCode {
        match self {
            InferenceError::Model { status, .. } => status
                .filter(|s| (400..=599).contains(s))
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::FAILED_DEPENDENCY),
            InferenceError::Validation(_) => StatusCode::BAD_REQUEST,
            InferenceError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            InferenceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            InferenceError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            InferenceError::Other(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The `error` field of the JSON body the caller gets.
impl meridian::NamedError for InferenceError {
    fn error_name(&self) -> &'static str {
        match self {
            InferenceError::Model { .. } => "ModelError",
            InferenceError::Validation(_) => "ValidationError",
            InferenceError::Throttled(_) => "Throttled",
            InferenceError::Unavailable(_) => "ServiceUnavailable",
            InferenceError::Timeout(_) => "Timeout",
            InferenceError::Other(_) => "BadGateway",
        }
    }
}
