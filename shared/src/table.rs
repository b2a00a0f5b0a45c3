//! Meridian's one table (the registry table: a global table with a replica in every fleet
//! region), item by item. The registry, the health records and the drills' items all read
//! and write through these helpers, so attribute encoding, JSON bodies, conditional-write
//! outcomes and the retryable/refused split of DynamoDB's errors are the same everywhere.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aws_errors::{class_of, describe, ErrorClass};

/// A table item as DynamoDB returns it.
pub type Item = HashMap<String, AttributeValue>;

/// Why a table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Transient: throttling, a server error, a timeout, a replica not answering.
    #[error("table unavailable: {0}")]
    Unavailable(String),
    /// DynamoDB refused the request as given (a validation error, an item over its size
    /// limit): the same request fails every time.
    #[error("table request refused: {0}")]
    Rejected(String),
    /// An item Meridian cannot read, or a value it cannot write, as JSON.
    #[error("corrupt table item {0}")]
    Corrupt(String),
}

/// A string attribute.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// `value` as a JSON string attribute.
pub fn json_attr<T: Serialize>(value: &T) -> Result<AttributeValue, TableError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| TableError::Corrupt(e.to_string()))
}

/// The JSON in the item's `body` attribute, which every registry item has; `what` names
/// the item in the error.
pub fn from_item<T: DeserializeOwned>(item: &Item, what: &str) -> Result<T, TableError> {
    json_field(item, "body", what)?.ok_or_else(|| TableError::Corrupt(format!("{what}: no body")))
}

/// The JSON in the item's `attribute`, or `None` when the item has no such string
/// attribute.
pub fn json_field<T: DeserializeOwned>(
    item: &Item,
    attribute: &str,
    what: &str,
) -> Result<Option<T>, TableError> {
    let Some(body) = string_field(item, attribute) else {
        return Ok(None);
    };
    serde_json::from_str(body)
        .map(Some)
        .map_err(|e| TableError::Corrupt(format!("{what}: {e}")))
}

/// The item's string `attribute`, if it has one.
pub fn string_field<'a>(item: &'a Item, attribute: &str) -> Option<&'a str> {
    item.get(attribute)?.as_s().ok().map(String::as_str)
}

/// The item's number `attribute`, if it has one that parses.
pub fn number_field(item: &Item, attribute: &str) -> Option<f64> {
    item.get(attribute)?.as_n().ok()?.parse().ok()
}

/// Whether a write was refused by its condition (or a transaction by one of its
/// conditions): the expected outcome of a lost race, not a failure.
pub fn is_condition_failure<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            c == "ConditionalCheckFailedException" || c == "TransactionCanceledException"
        })
}

/// A DynamoDB error, named by whether retrying can help.
pub fn dynamodb_error<E>(context: &str, error: SdkError<E, HttpResponse>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = describe(context, &error);
    match class_of(&error) {
        ErrorClass::Retryable => TableError::Unavailable(message),
        ErrorClass::Rejected => TableError::Rejected(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn a_body_reads_back_what_was_written() {
        let written = json_attr(&vec!["a", "b"]).expect("serializable");
        let read: Vec<String> = from_item(&item(&[("body", written)]), "list").expect("readable");
        assert_eq!(read, ["a", "b"]);
    }

    #[test]
    fn a_missing_or_unreadable_body_is_corrupt_and_names_the_item() {
        let missing = from_item::<Vec<String>>(&item(&[]), "rollout#llama#1");
        assert!(
            matches!(&missing, Err(TableError::Corrupt(m)) if m == "rollout#llama#1: no body"),
            "{missing:?}"
        );
        let unreadable = from_item::<Vec<String>>(&item(&[("body", s("{"))]), "model#llama");
        assert!(
            matches!(&unreadable, Err(TableError::Corrupt(m)) if m.starts_with("model#llama: ")),
            "{unreadable:?}"
        );
    }

    #[test]
    fn fields_of_another_type_read_as_absent() {
        let it = item(&[("count", n(3)), ("name", s("x"))]);
        assert_eq!(number_field(&it, "count"), Some(3.0));
        assert_eq!(number_field(&it, "name"), None);
        assert_eq!(string_field(&it, "count"), None);
        assert_eq!(string_field(&it, "name"), Some("x"));
        assert_eq!(
            json_field::<u32>(&it, "missing", "it").expect("absent"),
            None
        );
    }
}
