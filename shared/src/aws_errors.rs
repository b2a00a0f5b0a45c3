//! Which AWS errors are worth retrying. A request the service refused as given (a
//! validation error, a missing resource, a quota, a denied permission) fails the same way
//! every time, so retrying it only hides SageMaker's or DynamoDB's message; throttling,
//! server errors, timeouts and connection failures pass.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What to do about an AWS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: the same request may succeed later.
    Retryable,
    /// The service refused the request as given: retrying cannot help.
    Rejected,
}

/// Client-error codes (HTTP 4xx) that are transient: throttling and conflicts with a
/// concurrent request, as the AWS SDKs' standard retry strategy and the services' API
/// references list them.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "BandwidthLimitExceeded",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "ConflictException",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Classifies an error from what it tells: whether a service answered at all, its error
/// code and its HTTP status. Pure.
pub fn classify(answered: bool, code: Option<&str>, status: Option<u16>) -> ErrorClass {
    if !answered {
        return ErrorClass::Retryable;
    }
    if code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return ErrorClass::Retryable;
    }
    match status {
        Some(429) | Some(500..=599) | None => ErrorClass::Retryable,
        Some(400..=499) => ErrorClass::Rejected,
        Some(_) => ErrorClass::Retryable,
    }
}

/// Classifies an SDK error. A request the SDK could not even build is rejected; a
/// timeout, a connection failure or an unreadable answer is retryable.
pub fn class_of<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> ErrorClass {
    match error {
        SdkError::ConstructionFailure(_) => ErrorClass::Rejected,
        SdkError::ServiceError(_) => classify(
            true,
            error.code(),
            error.raw_response().map(|r| r.status().as_u16()),
        ),
        _ => ErrorClass::Retryable,
    }
}

/// An SDK error as the service put it: `context: Code: message` when the service
/// answered with both (an unmodelled error, such as SageMaker's `ValidationException` on
/// `UpdateEndpoint`, otherwise reads only "unhandled error"), the SDK's full context otherwise.
pub fn describe<E>(context: &str, error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{context}: {code}: {message}"),
        _ => format!(
            "{context}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(error)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_other_client_errors_are_rejected() {
        for code in [
            "ValidationException",
            "ResourceLimitExceeded",
            "ResourceNotFound",
            "AccessDeniedException",
        ] {
            assert_eq!(
                classify(true, Some(code), Some(400)),
                ErrorClass::Rejected,
                "{code}"
            );
        }
        assert_eq!(classify(true, None, Some(403)), ErrorClass::Rejected);
    }

    #[test]
    fn throttling_server_errors_and_silence_are_retryable() {
        for code in TRANSIENT_CODES {
            assert_eq!(
                classify(true, Some(code), Some(400)),
                ErrorClass::Retryable,
                "{code}"
            );
        }
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(
                classify(true, Some("Whatever"), Some(status)),
                ErrorClass::Retryable,
                "{status}"
            );
        }
        assert_eq!(classify(true, None, None), ErrorClass::Retryable);
        assert_eq!(
            classify(false, Some("ValidationException"), Some(400)),
            ErrorClass::Retryable,
            "no service answered: a timeout or a dropped connection"
        );
    }

    proptest::proptest! {
        /// Every 5xx is retryable and every 4xx other than 429 is rejected unless its code
        /// is a known transient one.
        #[test]
        fn the_status_decides_for_unknown_codes(status in 400u16..600, code in "[A-Z][a-zA-Z]{0,30}") {
            let class = classify(true, Some(&code), Some(status));
            let transient = TRANSIENT_CODES.contains(&code.as_str());
            let expected = if status >= 500 || status == 429 || transient {
                ErrorClass::Retryable
            } else {
                ErrorClass::Rejected
            };
            proptest::prop_assert_eq!(class, expected);
        }
    }
}
