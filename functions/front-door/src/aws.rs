//! The front door's AWS adapters, all in its own region: the health record from the
//! region's table replica (DynamoDB `GetItem`), the endpoint's status (SageMaker
//! `DescribeEndpoint`), and inference (SageMaker runtime `InvokeEndpoint` and
//! `InvokeEndpointWithResponseStream`). Each is a regional data-plane read or call: the
//! front door answers while any other region, us-east-1 included, is down.

use aws_sdk_sagemakerruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint_with_response_stream::InvokeEndpointWithResponseStreamError;
use aws_sdk_sagemakerruntime::types::error::{ModelError, ResponseStreamError};
use aws_sdk_sagemakerruntime::types::ResponseStream;
use aws_smithy_types::Blob;
use bytes::Bytes;
use meridian::adapters::{DynamoHealthStore, HealthDeps};
use meridian::aws::ClientFactory;
use meridian::drill_store::DrillStore;
use meridian::failover::RegionHealth;
use meridian::fleet::Fleet;
use meridian::health::HealthStore;
use meridian::traffic::{DrillShift, FORWARDED_FROM};

use crate::deps::{
    BoxError, DrillCount, EndpointStatus, Forward, ForwardedReply, Inference, InferenceCall,
    InferenceError, InferenceReply, PartStream, ReadError, RegionRecord, StreamedReply,
};
use crate::request::CUSTOM_ATTRIBUTES;
use crate::response::{INVOKED_VARIANT, SERVED_BY};
use crate::FrontDoor;

/// The AWS-backed front door.
pub type AwsFrontDoor =
    FrontDoor<DynamoRegionRecord, SageMakerEndpoint, SageMakerRuntime, HttpForward>;

impl AwsFrontDoor {
    /// The front door of `region`, with clients for that region only.
    pub async fn from_clients(clients: &ClientFactory, fleet: Fleet, region: &str) -> Self {
        let config = clients.config(region).await;
        let store = HealthDeps::new(clients, &fleet, region).await.store;
        let drills = DrillStore {
            client: store.local.clone(),
            table: store.table.clone(),
        };
        FrontDoor::new(
            &fleet,
            region,
            DynamoRegionRecord { store, drills },
            SageMakerEndpoint {
                client: aws_sdk_sagemaker::Client::new(&config),
            },
            SageMakerRuntime {
                client: aws_sdk_sagemakerruntime::Client::new(&config),
            },
            HttpForward::default(),
        )
    }
}

/// The region's health record through the store the failover functions write with:
/// one strongly consistent `GetItem` in this region's replica.
pub struct DynamoRegionRecord {
    pub store: DynamoHealthStore,
    /// The drills' shift of this region and their counts, in the same replica.
    pub drills: DrillStore,
}

impl RegionRecord for DynamoRegionRecord {
    async fn load(&self, region: &str) -> Result<Option<RegionHealth>, ReadError> {
        HealthStore::load(&self.store, region)
            .await
            .map(|record| record.map(|versioned| versioned.value))
            .map_err(|error| ReadError(error.to_string()))
    }

    async fn drill_shift(&self, region: &str) -> Result<Option<DrillShift>, ReadError> {
        self.drills
            .shift(region)
            .await
            .map_err(|error| ReadError(error.to_string()))
    }

    async fn count_drill_request(&self, count: DrillCount) -> Result<(), ReadError> {
        self.drills
            .count(&count)
            .await
            .map_err(|error| ReadError(error.to_string()))
    }
}

/// Peers' front doors over HTTPS. Timeouts are a client's: the peer's answer is the
/// caller's answer, so it may take as long as an inference does.
#[derive(Default)]
pub struct HttpForward {
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

/// Longest wait for a peer's front door to accept a connection: a dark peer costs the
/// caller this, then the request is served here.
const FORWARD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest wait for a peer's whole answer (API Gateway's own integration limit is 29 s
/// by default).
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(29);

impl Forward for HttpForward {
    async fn forward(
        &self,
        base_url: &str,
        from: &str,
        call: &InferenceCall,
    ) -> Result<ForwardedReply, String> {
        let client = self
            .client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(FORWARD_CONNECT_TIMEOUT)
                    .timeout(FORWARD_TIMEOUT)
                    .build()
                    .map_err(|e| format!("building the HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let url = format!("{}/invocations", base_url.trim_end_matches('/'));
        let mut request = client
            .post(&url)
            .header(FORWARDED_FROM, from)
            .body(call.body.clone());
        for (name, value) in [
            ("content-type", &call.content_type),
            ("accept", &call.accept),
            (CUSTOM_ATTRIBUTES, &call.custom_attributes),
        ] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (content_type, custom_attributes, invoked_variant, served_by) = (
            header("content-type"),
            header(CUSTOM_ATTRIBUTES),
            header(INVOKED_VARIANT),
            header(SERVED_BY),
        );
        let status =
            http::StatusCode::from_u16(response.status().as_u16()).map_err(|e| e.to_string())?;
        let body = response.bytes().await.map_err(|e| error_chain(&e))?;
        Ok(ForwardedReply {
            status,
            body,
            content_type,
            custom_attributes,
            invoked_variant,
            served_by,
        })
    }
}

/// An error with its causes.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The endpoint's status from SageMaker's `DescribeEndpoint`.
pub struct SageMakerEndpoint {
    pub client: aws_sdk_sagemaker::Client,
}

impl EndpointStatus for SageMakerEndpoint {
    async fn status(&self, endpoint: &str) -> Result<String, ReadError> {
        let described = self
            .client
            .describe_endpoint()
            .endpoint_name(endpoint)
            .send()
            .await
            .map_err(|e| ReadError(aws_sdk_sagemaker::error::DisplayErrorContext(e).to_string()))?;
        described
            .endpoint_status()
            .map(|status| status.as_str().to_owned())
            .ok_or_else(|| ReadError(format!("endpoint {endpoint} has no status")))
    }
}

/// Inference through the SageMaker runtime.
pub struct SageMakerRuntime {
    pub client: aws_sdk_sagemakerruntime::Client,
}

impl Inference for SageMakerRuntime {
    async fn invoke(&self, call: InferenceCall) -> Result<InferenceReply, InferenceError> {
        let answer = self
            .client
            .invoke_endpoint()
            .endpoint_name(call.endpoint)
            .body(Blob::new(call.body.to_vec()))
            .set_content_type(call.content_type)
            .set_accept(call.accept)
            .set_custom_attributes(call.custom_attributes)
            .send()
            .await
            .map_err(|error| {
                let model = match error.as_service_error() {
                    Some(InvokeEndpointError::ModelError(model)) => Some(model_error(model)),
                    _ => None,
                };
                classify(&error, model)
            })?;
        Ok(InferenceReply {
            body: answer
                .body
                .map(|blob| Bytes::from(blob.into_inner()))
                .unwrap_or_default(),
            content_type: answer.content_type,
            custom_attributes: answer.custom_attributes,
            invoked_variant: answer.invoked_production_variant,
        })
    }

    async fn invoke_stream(&self, call: InferenceCall) -> Result<StreamedReply, InferenceError> {
        let mut answer = self
            .client
            .invoke_endpoint_with_response_stream()
            .endpoint_name(call.endpoint)
            .body(Blob::new(call.body.to_vec()))
            .set_content_type(call.content_type)
            .set_accept(call.accept)
            .set_custom_attributes(call.custom_attributes)
            .send()
            .await
            .map_err(|error| {
                let model = match error.as_service_error() {
                    Some(InvokeEndpointWithResponseStreamError::ModelError(model)) => {
                        Some(model_error(model))
                    }
                    Some(InvokeEndpointWithResponseStreamError::ModelStreamError(stream)) => Some(
                        stream_error(stream.error_code(), &DisplayErrorContext(&error)),
                    ),
                    _ => None,
                };
                classify(&error, model)
            })?;
        // The first part is awaited before the response head is sent, so a model that
        // fails at once still gets its HTTP status; a later failure can only end the
        // stream.
        let first = next_part(&mut answer.body)
            .await
            .map_err(|error| classify_stream_error(&error))?;
        let rest = futures::stream::unfold(Some(answer.body), |receiver| async move {
            let mut receiver = receiver?;
            match next_part(&mut receiver).await {
                Ok(Some(part)) => Some((Ok(part), Some(receiver))),
                Ok(None) => None,
                Err(error) => {
                    let error: BoxError = classify_stream_error(&error).to_string().into();
                    tracing::warn!(error = %error, "the model's stream failed");
                    Some((Err(error), None))
                }
            }
        });
        let parts: PartStream = Box::pin(futures::StreamExt::chain(
            futures::stream::iter(first.map(Ok)),
            rest,
        ));
        Ok(StreamedReply {
            parts,
            content_type: answer.content_type,
            custom_attributes: answer.custom_attributes,
            invoked_variant: answer.invoked_production_variant,
        })
    }
}

type StreamReceiver = aws_sdk_sagemakerruntime::primitives::event_stream::EventReceiver<
    ResponseStream,
    ResponseStreamError,
>;
type StreamFailure = SdkError<ResponseStreamError, aws_smithy_types::event_stream::RawMessage>;

/// The next non-empty payload part, `None` at the end of the stream.
async fn next_part(receiver: &mut StreamReceiver) -> Result<Option<Bytes>, StreamFailure> {
    loop {
        match receiver.recv().await? {
            Some(ResponseStream::PayloadPart(part)) => {
                let bytes = part
                    .bytes
                    .map(|blob| Bytes::from(blob.into_inner()))
                    .unwrap_or_default();
                if !bytes.is_empty() {
                    return Ok(Some(bytes));
                }
            }
            // An event kind newer than this SDK: nothing of it to pass on.
            Some(_) => {}
            None => return Ok(None),
        }
    }
}

fn model_error(model: &ModelError) -> InferenceError {
    InferenceError::Model {
        status: model
            .original_status_code()
            .and_then(|status| u16::try_from(status).ok()),
        message: model
            .original_message()
            .or(model.message())
            .unwrap_or("no message")
            .to_owned(),
    }
}

/// A `ModelStreamError`: `ModelInvocationTimeExceeded` is a timeout, `StreamBroken` (the
/// model's connection reset) and the rest a failed model.
fn stream_error(code: Option<&str>, error: &dyn std::fmt::Display) -> InferenceError {
    match code {
        Some("ModelInvocationTimeExceeded") => InferenceError::Timeout(error.to_string()),
        _ => InferenceError::Model {
            status: None,
            message: error.to_string(),
        },
    }
}

fn classify_stream_error(error: &StreamFailure) -> InferenceError {
    let specific = match error.as_service_error() {
        Some(ResponseStreamError::ModelStreamError(stream)) => Some(stream_error(
            stream.error_code(),
            &DisplayErrorContext(error),
        )),
        _ => None,
    };
    classify(error, specific)
}

/// An SDK error as the caller's kind of failure: `specific`, when the operation's own
/// error type said more, else by the error's code, else by how the call failed.
fn classify<E, R>(error: &SdkError<E, R>, specific: Option<InferenceError>) -> InferenceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let Some(specific) = specific {
        return specific;
    }
    let message = DisplayErrorContext(error).to_string();
    match error {
        SdkError::TimeoutError(_) => InferenceError::Timeout(message),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            InferenceError::Timeout(message)
        }
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ValidationError") => InferenceError::Validation(message),
            Some("ThrottlingException" | "Throttling" | "TooManyRequestsException") => {
                InferenceError::Throttled(message)
            }
            Some("ServiceUnavailable" | "ModelNotReadyException") => {
                InferenceError::Unavailable(message)
            }
            _ => InferenceError::Other(message),
        },
        _ => InferenceError::Other(message),
    }
}
