//! EventBridge's event pattern matching, for the filters Meridian's rules use (exact
//! values, `prefix`, `suffix`, `wildcard`, `exists`, `anything-but`, `equals-ignore-case`). Any
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
        ("wildcard", Value::String(pattern)) => text.is_some_and(|t| wildcard_matches(pattern, t)),
        ("equals-ignore-case", Value::String(expected)) => {
            text.is_some_and(|t| t.eq_ignore_ascii_case(expected))
        }
        ("exists", Value::Bool(exists)) => value.is_some() == *exists,
        ("anything-but", Value::Array(excluded)) => value.is_some_and(|v| !excluded.contains(v)),
        ("anything-but", excluded) if !excluded.is_object() => value.is_some_and(|v| v != excluded),
        _ => panic!("unsupported EventBridge filter {allowed}"),
    }
}

/// EventBridge's `wildcard`: `*` stands for any run of characters, `\\*` for a `*`.
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let mut literals = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => literals
                .last_mut()
                .expect("starts with one")
                .extend(chars.next()),
            '*' => literals.push(String::new()),
            c => literals.last_mut().expect("starts with one").push(c),
        }
    }
    let (first, rest) = literals.split_first().expect("starts with one");
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for literal in middle {
        match remaining.find(literal.as_str()) {
            Some(at) => remaining = &remaining[at + literal.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last.as_str())
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
    fn wildcards_match_any_run_of_characters() {
        let cases = [
            ("models/*/manifest.json", "models/m/1/manifest.json", true),
            ("models/*/manifest.json", "models//manifest.json", true),
            ("models/*/manifest.json", "models/m/1/a.bin", false),
            ("models/*/manifest.json", "logs/m/manifest.json", false),
            ("models/*/manifest.json", "models/manifest.json", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "acb", false),
            ("*", "", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                wildcard_matches(pattern, text),
                expected,
                "{pattern} {text}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "unsupported EventBridge filter")]
    fn an_unsupported_filter_is_not_silently_passed() {
        matches(
            &json!({ "source": [{ "numeric": [">", 0] }] }),
            &json!({ "source": "aws.s3" }),
        );
    }
}
