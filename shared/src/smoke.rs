//! The smoke test a rollout sends to each region's endpoint before it commits: what request,
//! and what answer counts as healthy. Containers differ (TGI takes `inputs`, vLLM and LMI
//! chat servers take `messages`), so a manifest may say; the default suits TGI. Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest smoke-test request body, in bytes of its JSON text: a probe, not a workload.
pub const MAX_SMOKE_BODY_BYTES: usize = 64 * 1024;
/// Longest content type, in characters (SageMaker's `ContentType` limit).
pub const MAX_CONTENT_TYPE_CHARS: usize = 1024;

/// The request sent to every region's endpoint on the new version, and the answer it must
/// give. A non-2xx answer from the container is always a failure (SageMaker reports it as a
/// model error with the container's status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeTest {
    /// `Content-Type` of the request (and the `Accept` asked for).
    #[serde(default = "json_content_type")]
    pub content_type: String,
    /// The request body, as JSON.
    pub body: Value,
    /// A JSON pointer (RFC 6901, e.g. `/choices/0/message/content`) into the answer that
    /// must name a value that is neither null nor empty; without it, any non-empty answer
    /// is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
}

fn json_content_type() -> String {
    "application/json".into()
}

impl Default for SmokeTest {
    /// A one-token TGI generation, healthy when anything comes back.
    fn default() -> Self {
        Self {
            content_type: json_content_type(),
            body: serde_json::json!({"inputs": "Say OK.", "parameters": {"max_new_tokens": 4}}),
            expect: None,
        }
    }
}

impl SmokeTest {
    /// The request body's bytes.
    pub fn request_body(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }

    /// Problems with the smoke test as written, each with its field below `serving.smoke_test`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let content_type = self.content_type.trim();
        if content_type.is_empty() {
            problems.push(("content_type", "is empty".to_owned()));
        } else if self.content_type.chars().count() > MAX_CONTENT_TYPE_CHARS {
            problems.push((
                "content_type",
                format!("is longer than {MAX_CONTENT_TYPE_CHARS} characters"),
            ));
        }
        let size = self.request_body().len();
        if size > MAX_SMOKE_BODY_BYTES {
            problems.push((
                "body",
                format!("is {size} bytes of JSON, more than {MAX_SMOKE_BODY_BYTES}"),
            ));
        }
        if let Some(pointer) = &self.expect {
            if !pointer.starts_with('/') {
                problems.push((
                    "expect",
                    format!(
                        "{pointer:?} is not a JSON pointer: it starts with '/' \
                         (e.g. \"/choices/0/message/content\")"
                    ),
                ));
            }
        }
        problems
    }

    /// Whether `answer` (the endpoint's 2xx body) is healthy; the reason when it is not.
    pub fn verdict(&self, answer: &[u8]) -> Result<(), String> {
        if answer.is_empty() {
            return Err("empty answer".into());
        }
        let Some(pointer) = &self.expect else {
            return Ok(());
        };
        let parsed: Value = serde_json::from_slice(answer).map_err(|e| {
            format!(
                "the answer is not JSON ({e}), so it has no {pointer}: {}",
                preview(answer)
            )
        })?;
        match parsed.pointer(pointer) {
            None => Err(format!("the answer has no {pointer}: {}", preview(answer))),
            Some(Value::Null) => Err(format!("{pointer} is null in the answer")),
            Some(Value::String(s)) if s.is_empty() => {
                Err(format!("{pointer} is empty in the answer"))
            }
            Some(Value::Array(a)) if a.is_empty() => {
                Err(format!("{pointer} is empty in the answer"))
            }
            Some(_) => Ok(()),
        }
    }
}

/// The start of an answer, for an error message.
fn preview(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let mut shown: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(expect: &str) -> SmokeTest {
        SmokeTest {
            content_type: "application/json".into(),
            body: json!({"messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4}),
            expect: Some(expect.into()),
        }
    }

    #[test]
    fn the_default_is_a_tgi_request_and_any_answer_is_healthy() {
        let default = SmokeTest::default();
        let body: Value = serde_json::from_slice(&default.request_body()).expect("json");
        assert_eq!(body["inputs"], "Say OK.");
        assert_eq!(default.verdict(b"not even json"), Ok(()));
        assert_eq!(default.verdict(b""), Err("empty answer".into()));
        assert!(default.problems().is_empty());
    }

    #[test]
    fn an_expected_field_must_hold_a_value() {
        let test = chat("/choices/0/message/content");
        let good = json!({"choices": [{"message": {"content": "OK"}}]}).to_string();
        assert_eq!(test.verdict(good.as_bytes()), Ok(()));
        for (answer, expected) in [
            (
                json!({"generated_text": "OK"}).to_string(),
                "has no /choices/0/message/content",
            ),
            (
                json!({"choices": []}).to_string(),
                "has no /choices/0/message/content",
            ),
            (
                json!({"choices": [{"message": {"content": ""}}]}).to_string(),
                "/choices/0/message/content is empty",
            ),
            (
                json!({"choices": [{"message": {"content": null}}]}).to_string(),
                "/choices/0/message/content is null",
            ),
            ("<html>".to_owned(), "the answer is not JSON"),
        ] {
            let verdict = test.verdict(answer.as_bytes()).expect_err(&answer);
            assert!(verdict.contains(expected), "{verdict}");
        }
    }

    #[test]
    fn a_written_smoke_test_names_its_problems() {
        let mut test = chat("choices");
        test.content_type = " ".into();
        test.body = json!({"inputs": "x".repeat(MAX_SMOKE_BODY_BYTES)});
        let fields: Vec<&str> = test.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["content_type", "body", "expect"]);
    }

    #[test]
    fn it_reads_with_defaults_and_refuses_unknown_fields() {
        let read: SmokeTest =
            serde_json::from_value(json!({"body": {"inputs": "hi"}})).expect("valid");
        assert_eq!(read.content_type, "application/json");
        assert_eq!(read.expect, None);
        assert!(serde_json::from_value::<SmokeTest>(json!({"body": 1, "expected": "/a"})).is_err());
    }
}
