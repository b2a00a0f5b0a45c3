//! What every function's `main.rs` does besides wiring its clients: JSON logs filtered by
//! `RUST_LOG`, EMF metric lines on stdout, and errors reported under their names.

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
