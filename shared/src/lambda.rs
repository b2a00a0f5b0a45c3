//! What every function's `main.rs` does besides wiring its clients: JSON logs filtered by
//! `RUST_LOG`, EMF metric lines on stdout, and errors reported under their names. The
//! event functions run through [`run`]; the front door, an HTTP function behind API
//! Gateway, through [`run_http`] (feature `http`).

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::function::{invoke, Handler};
use crate::NamedError;

/// JSON log lines without timestamps (CloudWatch Logs stamps each line), at the level
/// `RUST_LOG` gives (the template sets it from `LogLevel`), `info` without one.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Runs `handler` for every invocation: the payload parsed into its event, its EMF metric
/// lines printed (in Lambda each stdout line is a log event, and CloudWatch turns EMF
/// documents into metrics), and an error reported as a `Diagnostic` whose `errorType` is
/// its [`NamedError::error_name`].
pub async fn run<H: Handler>(handler: H) -> Result<(), lambda_runtime::Error> {
    let handler = &handler;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        // Boxed: a handler's future nests deep enough to overflow the compiler's layout
        // query depth when laid out inline in `main`'s.
        let outcome = Box::pin(invoke(handler, event.payload)).await;
        for line in &outcome.metrics {
            println!("{line}");
        }
        outcome.result.map_err(|e| Diagnostic {
            error_type: e.error_name().into(),
            error_message: e.to_string(),
        })
    }))
    .await
}

/// Runs an HTTP function behind an API Gateway REST API whose Lambda integration streams
/// responses (`ResponseTransferMode: STREAM`, so Lambda is invoked with
/// `InvokeWithResponseStream`): `respond` turns each request into a response and its EMF
/// metric lines; the lines are printed once the response head is ready, and the body is
/// streamed to API Gateway as it is produced (a long model answer reaches the caller
/// token by token). An HTTP function has no error to report to Lambda: every failure is
/// an HTTP status in its response.
#[cfg(feature = "http")]
pub async fn run_http<F, Fut, B>(respond: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(lambda_http::Request) -> Fut + Sync,
    Fut: std::future::Future + Send,
    Fut::Output: Into<(lambda_http::http::Response<B>, Vec<String>)>,
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Into<bytes::Bytes> + Send,
    B::Error: Into<lambda_runtime::Error> + Send + std::fmt::Debug,
{
    let respond = &respond;
    lambda_http::run_with_streaming_response(lambda_http::service_fn(
        |request: lambda_http::Request| async move {
            // Boxed, as in `run`: the answer's future nests too deep to lay out inline.
            let (response, metrics) = Box::pin(respond(request)).await.into();
            for line in &metrics {
                println!("{line}");
            }
            Ok::<_, lambda_runtime::Error>(response)
        },
    ))
    .await
}
