//! In-process Lambda functions: the registry the gateway's Lambda Invoke API, event
//! delivery and schedules call into.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::Value;

/// One call of a function, with the region it runs in (Lambda's `AWS_REGION`).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function_name: String,
    pub region: String,
    pub payload: Value,
}

/// A function's error as Lambda reports it: `errorType` is what Step Functions
/// `Retry`/`Catch` match on.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{error_type}: {error_message}")]
pub struct FunctionError {
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

/// The future a function returns.
pub type FunctionFuture = Pin<Box<dyn Future<Output = Result<Value, FunctionError>> + Send>>;

/// A Lambda handler hosted in-process.
pub trait Function: Send + Sync + 'static {
    fn call(&self, invocation: Invocation) -> FunctionFuture;
}

impl<F, Fut> Function for F
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, FunctionError>> + Send + 'static,
{
    fn call(&self, invocation: Invocation) -> FunctionFuture {
        Box::pin(self(invocation))
    }
}

/// Why an invocation produced no result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("Function not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Failed(#[from] FunctionError),
}

/// Functions by name. Cloning shares the registry, so functions can be added after the
/// local cloud has started.
#[derive(Clone, Default)]
pub struct Functions {
    by_name: Arc<RwLock<HashMap<String, Arc<dyn Function>>>>,
}

impl Functions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the function called `name`.
    pub fn register(&self, name: impl Into<String>, function: impl Function) {
        let mut by_name = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        by_name.insert(name.into(), Arc::new(function));
    }

    pub fn names(&self) -> Vec<String> {
        let by_name = self.by_name.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// Runs a function on its own task, so a panicking handler is reported as a Lambda
    /// `Unhandled` error instead of taking the gateway down.
    pub async fn invoke(&self, invocation: Invocation) -> Result<Value, InvokeError> {
        let function = {
            let by_name = self.by_name.read().unwrap_or_else(|e| e.into_inner());
            by_name.get(&invocation.function_name).cloned()
        };
        let Some(function) = function else {
            return Err(InvokeError::NotFound(invocation.function_name));
        };
        match tokio::spawn(function.call(invocation)).await {
            Ok(result) => Ok(result?),
            Err(join_error) => Err(FunctionError::new(
                "Runtime.ExitError",
                format!("handler panicked: {join_error}"),
            )
            .into()),
        }
    }
}

/// The function name inside a Lambda `FunctionName` parameter, which may be a plain name,
/// `name:qualifier`, a partial ARN or a full ARN.
pub fn function_name_from_identifier(identifier: &str) -> &str {
    let parts: Vec<&str> = identifier.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        [_account, "function", name, ..] => name,
        [name, ..] => name,
        [] => identifier,
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

/// The region in a function ARN (`arn:aws:lambda:{region}:...`), if the identifier is one.
pub fn arn_region(identifier: &str) -> Option<&str> {
    identifier
        .strip_prefix("arn:")
        .and_then(|arn| arn.split(':').nth(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_invoke_paths_are_recognised_and_decoded() {
        let identifier = lambda_invoke_target(
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aecho/invocations",
        );
        assert_eq!(
            identifier.as_deref(),
            Some("arn:aws:lambda:us-east-1:123456789012:function:echo")
        );
        assert_eq!(
            arn_region(identifier.as_deref().unwrap_or("")),
            Some("us-east-1")
        );
        assert_eq!(arn_region("echo"), None);
        assert_eq!(lambda_invoke_target("/2015-03-31/functions/echo"), None);
    }

    #[test]
    fn function_names_are_found_in_every_identifier_form() {
        for (identifier, name) in [
            ("meridian-upload", "meridian-upload"),
            ("meridian-upload:$LATEST", "meridian-upload"),
            ("123456789012:function:meridian-upload", "meridian-upload"),
            (
                "arn:aws:lambda:eu-west-1:123456789012:function:meridian-upload",
                "meridian-upload",
            ),
            (
                "arn:aws:lambda:eu-west-1:123456789012:function:meridian-upload:live",
                "meridian-upload",
            ),
        ] {
            assert_eq!(
                function_name_from_identifier(identifier),
                name,
                "{identifier}"
            );
        }
    }

    #[tokio::test]
    async fn panics_and_unknown_names_are_errors_not_crashes() {
        let functions = Functions::new();
        functions.register("boom", |_inv: Invocation| async move {
            if true {
                panic!("boom");
            }
            Ok(Value::Null)
        });
        let call = |name: &str| Invocation {
            function_name: name.into(),
            region: "us-east-1".into(),
            payload: Value::Null,
        };
        assert!(matches!(
            functions.invoke(call("boom")).await,
            Err(InvokeError::Failed(e)) if e.error_type == "Runtime.ExitError"
        ));
        assert!(matches!(
            functions.invoke(call("nope")).await,
            Err(InvokeError::NotFound(_))
        ));
    }
}
