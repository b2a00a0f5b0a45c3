//! What every function's `main.rs` does besides wiring its clients: JSON logs filtered by
//! `RUST_LOG`, EMF metric lines on stdout, and errors reported under their names.

use std::future::Future;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

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

/// Runs `handler` for every invocation. It answers with its result and its EMF metric
/// lines: the lines are printed (in Lambda each stdout line is a log event, and CloudWatch
/// turns EMF documents into metrics), and an error becomes a `Diagnostic` whose
/// `errorType` is its [`NamedError::error_name`].
pub async fn run<H, F, E>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Value) -> F,
    F: Future<Output = (Result<Value, E>, Vec<String>)>,
    E: NamedError,
{
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let reply = handler(event.payload);
        async move {
            let (result, metrics) = reply.await;
            for line in &metrics {
                println!("{line}");
            }
            result.map_err(|e| Diagnostic {
                error_type: e.error_name().into(),
                error_message: e.to_string(),
            })
        }
    }))
    .await
}
