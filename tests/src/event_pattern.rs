//! EventBridge's event pattern matching, for the filters Meridian's rules use (exact
//! values, `prefix`, `suffix`, `exists`, `anything-but`, `equals-ignore-case`). Any
//! other operator panics, so a test never passes on a filter it cannot evaluate.

use serde_json::Value;

/// Whether `event` matches `pattern`: every field of the pattern matches.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        panic!("an event pattern must be a JSON object, not {pattern}");
    };
    fields.iter().all(|(name, filter)| {
        let value = event.get(name);
        match filter {
            Value::Object(_) => value.is_some_and(|v| v.is_object() && matches(filter, v)),
            Value::Array(allowed) => field_matches(allowed, value),
            other => panic!("pattern field {name:?} must be an array or an object, not {other}"),
        }
    })
}

fn field_matches(allowed: &[Value], value: Option<&Value>) -> bool {
    match value {
        Some(Value::Array(values)) => values
            .iter()
            .any(|v| allowed.iter().any(|a| value_matches(a, Some(v)))),
        value => allowed.iter().any(|a| value_matches(a, value)),
    }
}

fn value_matches(allowed: &Value, value: Option<&Value>) -> bool {
    let Value::Object(operator) = allowed else {
        return value == Some(allowed);
    };
    let Some((name, argument)) = operator.iter().next().filter(|_| operator.len() == 1) else {
        panic!("a filter object must hold exactly one operator: {allowed}");
    };
    let text = value.and_then(Value::as_str);
    match (name.as_str(), argument) {
        ("prefix", Value::String(prefix)) => text.is_some_and(|t| t.starts_with(prefix.as_str())),
        ("suffix", Value::String(suffix)) => text.is_some_and(|t| t.ends_with(suffix.as_str())),
        ("equals-ignore-case", Value::String(expected)) => {
            text.is_some_and(|t| t.eq_ignore_ascii_case(expected))
        }
        ("exists", Value::Bool(exists)) => value.is_some() == *exists,
        ("anything-but", Value::Array(excluded)) => value.is_some_and(|v| !excluded.contains(v)),
        ("anything-but", excluded) if !excluded.is_object() => value.is_some_and(|v| v != excluded),
        _ => panic!("unsupported EventBridge filter {allowed}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_nested_prefix_exists_and_anything_but_filters() {
        let event = json!({
            "source": "aws.s3",
            "detail": { "bucket": { "name": "b" }, "object": { "key": "models/m/1/a" } },
            "resources": ["arn:1", "arn:2"],
        });
        assert!(matches(&json!({ "source": ["aws.s3"] }), &event));
        assert!(!matches(&json!({ "source": ["aws.ec2"] }), &event));
        assert!(matches(
            &json!({ "detail": { "bucket": { "name": ["a", "b"] } } }),
            &event
        ));
        assert!(!matches(
            &json!({ "detail": { "bucket": { "name": ["a"] } } }),
            &event
        ));
        assert!(matches(
            &json!({ "detail": { "object": { "key": [{ "prefix": "models/" }] } } }),
            &event
        ));
        assert!(!matches(
            &json!({ "detail": { "object": { "key": [{ "prefix": "logs/" }] } } }),
            &event
        ));
        assert!(matches(&json!({ "resources": ["arn:2"] }), &event));
        assert!(matches(
            &json!({ "detail": { "reason": [{ "exists": false }] } }),
            &event
        ));
        assert!(!matches(
            &json!({ "detail": { "reason": [{ "exists": true }] } }),
            &event
        ));
        assert!(matches(
            &json!({ "source": [{ "anything-but": ["aws.ec2"] }] }),
            &event
        ));
        assert!(!matches(&json!({ "missing": { "field": ["x"] } }), &event));
    }

    #[test]
    #[should_panic(expected = "unsupported EventBridge filter")]
    fn an_unsupported_filter_is_not_silently_passed() {
        matches(
            &json!({ "source": [{ "wildcard": "aws.*" }] }),
            &json!({ "source": "aws.s3" }),
        );
    }
}
