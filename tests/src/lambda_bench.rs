//! Lambda cold-start and invocation measurement, shared by the benchmarks
//! (`./scripts/bench cold-start`, `./scripts/bench regional-failover`): release binaries spawned
//! against a stub of the Lambda Runtime API, as Lambda would spawn them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workspace_root;
use anyhow::{bail, Context};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long one process may take to reach the Runtime API, or to answer an event.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The hello-world baseline's binary and package.
pub const HELLO: &str = "hello-lambda";

/// One binary under test: its name, package, region and the event it is handed.
pub struct Subject {
    pub binary: &'static str,
    pub package: &'static str,
    pub region: &'static str,
    pub event: Value,
}

pub fn subjects() -> Vec<Subject> {
    let bucket_event = |bucket: &str, key: &str| {
        json!({
            "version": "0", "id": "bench", "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
            "resources": [format!("arn:aws:s3:::{bucket}")],
            "detail": {
                "version": "0", "bucket": {"name": bucket},
                "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                           "sequencer": "617f08299329d189"},
                "request-id": "bench", "requester": "123456789012", "reason": "PutObject"
            }
        })
    };
    let alarm = "meridian-demo-llm-5xx";
    vec![
        Subject {
            binary: HELLO,
            package: "meridian-hello-lambda",
            region: "eu-west-1",
            event: json!({"hello": "world"}),
        },
        Subject {
            binary: "upload",
            package: "meridian-upload",
            region: "us-east-1",
            event: bucket_event("meridian-demo-models", "models/bench/v1/manifest.json"),
        },
        Subject {
            binary: "replica",
            package: "meridian-replica",
            region: "eu-west-1",
            event: bucket_event(
                "meridian-demo-models-eu-west-1",
                "models/bench/v1/weights.bin",
            ),
        },
        Subject {
            binary: "rollout",
            package: "meridian-rollout",
            region: "us-east-1",
            event: json!({"task": "status", "model": "bench", "version": "v1", "region": "eu-west-1"}),
        },
        Subject {
            binary: "failover",
            package: "meridian-failover",
            region: "eu-west-1",
            event: json!({
                "version": "0", "id": "bench", "detail-type": "CloudWatch Alarm State Change",
                "source": "aws.cloudwatch", "account": "123456789012",
                "time": "2026-12-01T00:00:00Z", "region": "eu-west-1",
                "resources": [format!("arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{alarm}")],
                "detail": {
                    "alarmName": alarm,
                    "configuration": {"metrics": []},
                    "previousState": {"value": "OK", "reason": "bench",
                                      "timestamp": "2026-12-01T00:00:00.000+0000"},
                    "state": {"value": "OK", "reason": "bench",
                              "timestamp": "2026-12-01T00:00:00.000+0000"}
                }
            }),
        },
        Subject {
            binary: "front-door",
            package: "meridian-front-door",
            region: "eu-west-1",
            event: json!({
                "resource": "/{proxy+}", "path": "/health", "httpMethod": "GET",
                "headers": {"Host": "bench.execute-api.eu-west-1.amazonaws.com"},
                "multiValueHeaders": {"Host": ["bench.execute-api.eu-west-1.amazonaws.com"]},
                "queryStringParameters": null, "multiValueQueryStringParameters": null,
                "pathParameters": {"proxy": "health"}, "stageVariables": null,
                "requestContext": {
                    "accountId": "123456789012", "resourceId": "bench", "stage": "live",
                    "requestId": "bench", "resourcePath": "/{proxy+}", "httpMethod": "GET",
                    "apiId": "bench", "path": "/live/health",
                    "identity": {"sourceIp": "127.0.0.1"}
                },
                "body": null, "isBase64Encoded": false
            }),
        },
        Subject {
            binary: "failback",
            package: "meridian-failback",
            region: "eu-west-1",
            event: json!({
                "version": "0", "id": "bench", "detail-type": "Scheduled Event",
                "source": "aws.events", "account": "123456789012",
                "time": "2026-12-01T00:00:00Z", "region": "eu-west-1",
                "resources": ["arn:aws:events:eu-west-1:123456789012:rule/bench"], "detail": {}
            }),
        },
    ]
}

/// What the stub Runtime API saw, in order.
#[derive(Debug)]
pub enum Seen {
    /// `GET .../invocation/next` arrived (and was answered at once when an event was left).
    Next(Instant),
    /// The answer to an event: `.../response` (ok) or `.../error` (the error's JSON).
    Answer(Instant, Result<(), String>),
    /// `.../init/error`: the function failed to start.
    InitError(String),
}

#[derive(Clone)]
pub struct Stub {
    events: Arc<Mutex<VecDeque<Value>>>,
    seen: mpsc::UnboundedSender<Seen>,
}

/// A stub of the Lambda Runtime API on a free loopback port, handing out `events` in
/// order and then holding `next` open, as the real one does between invocations.
pub async fn start_stub(
    events: Vec<Value>,
) -> anyhow::Result<(
    String,
    mpsc::UnboundedReceiver<Seen>,
    tokio::task::JoinHandle<()>,
)> {
    let (seen, receiver) = mpsc::unbounded_channel();
    let stub = Stub {
        events: Arc::new(Mutex::new(events.into())),
        seen,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(
                |State(stub): State<Stub>,
                 UrlPath(_id): UrlPath<String>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let _ = stub.seen.send(Seen::Answer(
                        Instant::now(),
                        streamed_status(&headers, &body),
                    ));
                    StatusCode::ACCEPTED
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(
                |State(stub): State<Stub>, UrlPath(_id): UrlPath<String>, body: String| async move {
                    let _ = stub.seen.send(Seen::Answer(Instant::now(), Err(body)));
                    StatusCode::ACCEPTED
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|State(stub): State<Stub>, body: String| async move {
                let _ = stub.seen.send(Seen::InitError(body));
                StatusCode::ACCEPTED
            }),
        )
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((address, receiver, server))
}

/// A streamed answer's HTTP status (the front door's): `Err` for 4xx and 5xx, with the
/// response body. A buffered answer, or a streamed one without a readable prelude, is
/// `Ok`: the answer arrived.
pub fn streamed_status(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let streaming = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode == "streaming");
    let prelude_end = body.windows(8).position(|w| w == [0u8; 8]);
    let (true, Some(end)) = (streaming, prelude_end) else {
        return Ok(());
    };
    let prelude: Value = serde_json::from_slice(&body[..end]).unwrap_or(Value::Null);
    match prelude["statusCode"].as_u64() {
        Some(status) if status >= 400 => Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[end + 8..])
        )),
        _ => Ok(()),
    }
}

pub async fn next(State(stub): State<Stub>) -> (StatusCode, HeaderMap, String) {
    let _ = stub.seen.send(Seen::Next(Instant::now()));
    let event = stub.events.lock().ok().and_then(|mut e| e.pop_front());
    let Some(event) = event else {
        // No more events: hold the request, as Lambda does until the next invocation.
        std::future::pending::<()>().await;
        unreachable!("a pending future never completes");
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    let mut headers = HeaderMap::new();
    let id = uuid_like();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, event.to_string())
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-0000-0000-{:012}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Spawns `binary` as Lambda would: the Runtime API address, the function's settings,
/// static credentials, and (for invocations) the local cloud's endpoint.
pub fn spawn(
    binary: &Path,
    subject: &Subject,
    runtime_api: &str,
    endpoint: Option<&str>,
    log: &Path,
) -> anyhow::Result<Child> {
    let fleet_toml = std::fs::read_to_string(workspace_root().join("fleet.example.toml"))?;
    let log = std::fs::File::create(log)?;
    let mut command = Command::new(binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env(
            "AWS_LAMBDA_FUNCTION_NAME",
            format!("meridian-{}", subject.binary),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", subject.region)
        .env("AWS_DEFAULT_REGION", subject.region)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHMARK")
        .env("AWS_SECRET_ACCESS_KEY", "benchmark-secret")
        .env("AWS_SESSION_TOKEN", "benchmark-token")
        .env("MERIDIAN_FLEET_TOML", fleet_toml)
        .env(
            "STATE_MACHINE_ARN",
            "arn:aws:states:us-east-1:123456789012:stateMachine:meridian-demo-rollout",
        )
        .env(
            "SAGEMAKER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/meridian-demo-sagemaker",
        )
        .env("RUST_LOG", "warn")
        .env("SSL_CERT_FILE", certificate_bundle())
        .env_remove("SSL_CERT_DIR")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if let Some(endpoint) = endpoint {
        command.env("AWS_ENDPOINT_URL", endpoint);
    }
    command
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))
}

/// The trusted root certificates as Lambda's `provided.al2023` keeps them: one bundle file
/// (`/etc/pki/tls/certs/ca-bundle.crt`) and no hashed certificate directory. Here: this
/// machine's bundle, named by `SSL_CERT_FILE`, with `SSL_CERT_DIR` unset, so that a
/// Debian-style directory of one file per certificate does not count against start-up.
pub fn certificate_bundle() -> &'static str {
    [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
    .unwrap_or("/etc/ssl/certs/ca-certificates.crt")
}

/// The next thing the stub saw, or why there was none.
pub async fn expect(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    child: &mut Child,
    what: &str,
) -> anyhow::Result<Seen> {
    tokio::select! {
        seen = seen.recv() => match seen {
            Some(Seen::InitError(body)) => bail!("init failed: {body}"),
            Some(seen) => Ok(seen),
            None => bail!("the stub stopped"),
        },
        status = child.wait() => bail!("exited ({}) before {what}", status?),
        () = tokio::time::sleep(DEADLINE) => bail!("no {what} within {DEADLINE:?}"),
    }
}

/// One cold start: spawn → first `next`, in milliseconds.
pub async fn cold_start(binary: &Path, subject: &Subject, log: &Path) -> anyhow::Result<f64> {
    let (address, mut seen, server) = start_stub(Vec::new()).await?;
    let started = Instant::now();
    let mut child = spawn(binary, subject, &address, None, log)?;
    let result = match expect(&mut seen, &mut child, "the first next").await {
        Ok(Seen::Next(at)) => Ok(ms(at - started)),
        Ok(other) => Err(anyhow::anyhow!("expected next, saw {other:?}")),
        Err(error) => Err(error),
    };
    let _ = child.kill().await;
    server.abort();
    result.with_context(|| format!("{} (log: {})", subject.binary, log.display()))
}

/// One fresh process handed the event twice: (first, warm) in milliseconds, and the
/// first answer's outcome.
pub async fn invocations(
    binary: &Path,
    subject: &Subject,
    endpoint: &str,
    log: &Path,
) -> anyhow::Result<(f64, f64, Result<(), String>)> {
    let events = vec![subject.event.clone(), subject.event.clone()];
    let (address, mut seen, server) = start_stub(events).await?;
    let mut child = spawn(binary, subject, &address, Some(endpoint), log)?;
    let mut timings = Vec::new();
    let mut first_outcome = Ok(());
    for n in 0..2 {
        let Seen::Next(handed) = expect(&mut seen, &mut child, "next").await? else {
            bail!("expected next");
        };
        let Seen::Answer(answered, outcome) = expect(&mut seen, &mut child, "an answer").await?
        else {
            bail!("expected an answer");
        };
        timings.push(ms(answered - handed));
        if n == 0 {
            first_outcome = outcome;
        }
    }
    let _ = child.kill().await;
    server.abort();
    Ok((timings[0], timings[1], first_outcome))
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// (median, min, max) of `values`.
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    (
        median,
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
    )
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds every subject with the release profile, showing cargo's progress.
pub fn build(subjects: &[Subject]) -> anyhow::Result<()> {
    let mut command = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    command
        .current_dir(workspace_root())
        .args(["build", "--release", "--locked", "--bins"]);
    for subject in subjects {
        command.args(["-p", subject.package]);
    }
    println!("==> building the release binaries: {command:?}");
    let status = command.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(())
}

pub fn outcome_text(outcome: &Result<(), String>) -> String {
    match outcome {
        Ok(()) => "ok".to_owned(),
        Err(body) => {
            let error: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let kind = error["errorType"].as_str().unwrap_or("error");
            let message = error["errorMessage"].as_str().unwrap_or(body);
            let message: String = message.chars().take(60).collect();
            format!("{kind}: {message}")
        }
    }
}
