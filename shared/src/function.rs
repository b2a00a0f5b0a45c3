//! The one shape of every Meridian function: a typed event and its dependencies in, one
//! [`Outcome`] out. The hosts — [`crate::lambda::run`] in AWS Lambda, the local cloud's
//! hosted functions — do the rest alike for every function: parse the payload into the
//! event, print the EMF metric lines, report an error under its name.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::NamedError;

/// What one invocation produced: its result for the caller, and the EMF metric lines to
/// print. The lines come with a failed result too: a metric emitted by a write that ends
/// a rollout must not be lost to a later failure of the same invocation.
#[derive(Debug)]
pub struct Outcome<E> {
    pub result: Result<Value, E>,
    pub metrics: Vec<String>,
}

impl<E> Outcome<E> {
    /// A failed result, with no metric lines.
    pub fn failed(error: E) -> Self {
        Self {
            result: Err(error),
            metrics: Vec::new(),
        }
    }
}

impl<E> From<Result<Value, E>> for Outcome<E> {
    fn from(result: Result<Value, E>) -> Self {
        Self {
            result,
            metrics: Vec::new(),
        }
    }
}

/// A result with its metric lines: what a handler that emits metrics only on success
/// returns.
impl<E> From<Result<(Value, Vec<String>), E>> for Outcome<E> {
    fn from(result: Result<(Value, Vec<String>), E>) -> Self {
        match result {
            Ok((value, metrics)) => Self {
                result: Ok(value),
                metrics,
            },
            Err(error) => Self::failed(error),
        }
    }
}

/// A payload that is not the handler's event: every handler's error type takes it in as
/// its non-retryable "invalid input" error.
#[derive(Debug)]
pub struct InvalidEvent(pub String);

/// A function's dependencies (built once per process) and how it handles one event.
pub trait Handler: Send + Sync {
    /// The event the function's trigger delivers (an `aws_lambda_events` type where one
    /// exists).
    type Event: DeserializeOwned + Send;
    /// Its errors, named for Step Functions' `Retry`/`Catch` and for the Lambda API; a
    /// payload that is not a [`Self::Event`] becomes one through [`InvalidEvent`] (never
    /// retryable).
    type Error: NamedError + Send + From<InvalidEvent>;
    /// What the event is, for the error a payload that is not one gets.
    const EVENT: &'static str;

    fn handle(&self, event: Self::Event) -> impl Future<Output = Outcome<Self::Error>> + Send;
}

/// Parses `payload` into the handler's event and handles it: the part every host shares.
pub async fn invoke<H: Handler>(handler: &H, payload: Value) -> Outcome<H::Error> {
    match serde_json::from_value::<H::Event>(payload) {
        Ok(event) => handler.handle(event).await,
        Err(error) => Outcome::failed(InvalidEvent(format!("not {}: {error}", H::EVENT)).into()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("invalid: {0}")]
    struct Invalid(String);

    impl NamedError for Invalid {
        fn error_name(&self) -> &'static str {
            "Meridian.Invalid"
        }
    }

    #[derive(Deserialize)]
    struct Ping {
        n: u32,
    }

    struct Echo;

    impl From<InvalidEvent> for Invalid {
        fn from(InvalidEvent(message): InvalidEvent) -> Self {
            Invalid(message)
        }
    }

    impl Handler for Echo {
        type Event = Ping;
        type Error = Invalid;
        const EVENT: &'static str = "a ping";

        async fn handle(&self, event: Ping) -> Outcome<Invalid> {
            Outcome {
                result: Ok(json!({ "n": event.n })),
                metrics: vec!["metric".into()],
            }
        }
    }

    #[tokio::test]
    async fn a_payload_that_is_not_the_event_is_invalid_and_never_reaches_the_handler() {
        let outcome = invoke(&Echo, json!({ "n": "one" })).await;
        let error = outcome.result.expect_err("not a ping");
        assert_eq!(error.error_name(), "Meridian.Invalid");
        assert!(
            error.to_string().starts_with("invalid: not a ping: "),
            "{error}"
        );
        assert!(outcome.metrics.is_empty());
    }

    #[tokio::test]
    async fn the_event_reaches_the_handler_and_its_metrics_come_back() {
        let outcome = invoke(&Echo, json!({ "n": 7 })).await;
        assert_eq!(outcome.result.ok(), Some(json!({ "n": 7 })));
        assert_eq!(outcome.metrics, vec!["metric".to_owned()]);
    }
}
