//! `meridian manifest` and `meridian upload` as a user runs them, against the local cloud.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::types::ChecksumMode;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::manifest::{self, Manifest};
use tokio::process::Command;

const MIB: usize = 1024 * 1024;
/// The large file: multipart with `--part-size-mib 8`, its last part short (6 parts).
const BIG: usize = 40 * MIB + 123;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn command(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meridian"));
    command
        .args(args)
        .current_dir(workspace_root())
        .env("MERIDIAN_HOME", home)
        .env(
            "MERIDIAN_VENV",
            workspace_root().join(".meridian").join("venv"),
        )
        .env_remove("MERIDIAN_FLEET");
    command
}

async fn meridian(home: &Path, args: &[&str]) -> Output {
    command(home, args)
        .output()
        .await
        .expect("the meridian binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fleet() -> Fleet {
    Fleet::load(&workspace_root().join("fleet.example.toml")).expect("the example fleet")
}

/// A running local cloud with its own home; `local down` runs on drop, even when the
/// test fails.
struct LocalCloud {
    home: tempfile::TempDir,
    endpoint: String,
}

impl LocalCloud {
    async fn up() -> LocalCloud {
        let (gateway, moto) = (free_port(), free_port());
        let cloud = LocalCloud {
            home: tempfile::tempdir().expect("temp dir"),
            endpoint: format!("http://127.0.0.1:{gateway}"),
        };
        let up = cloud
            .run(&[
                "local",
                "up",
                "--gateway-port",
                &gateway.to_string(),
                "--moto-port",
                &moto.to_string(),
            ])
            .await;
        assert!(up.status.success(), "{}", text(&up));
        cloud
    }

    async fn run(&self, args: &[&str]) -> Output {
        meridian(self.home.path(), args).await
    }

    async fn s3(&self) -> aws_sdk_s3::Client {
        ClientFactory::for_endpoint(&self.endpoint)
            .s3(&fleet().primary_region)
            .await
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let down = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(["local", "down"])
            .current_dir(workspace_root())
            .env("MERIDIAN_HOME", self.home.path())
            .output();
        if let Ok(down) = down {
            if !down.status.success() {
                eprintln!("local down failed: {}", text(&down));
            }
        }
    }
}

/// Deterministic, incompressible-looking content.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A version folder: one large file, one small file, one nested small file.
fn version_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("tokenizer")).expect("mkdir");
    std::fs::write(dir.path().join("model-00001.safetensors"), content(BIG, 1)).expect("write");
    std::fs::write(dir.path().join("config.json"), br#"{"layers": 2}"#).expect("write");
    std::fs::write(
        dir.path().join("tokenizer").join("vocab.txt"),
        content(3000, 2),
    )
    .expect("write");
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .body
        .collect()
        .await
        .expect("object body")
        .into_bytes()
        .to_vec()
}

#[tokio::test]
async fn upload_puts_every_file_then_the_manifest_in_the_primary_bucket() {
    let cloud = LocalCloud::up().await;
    let dir = version_dir();
    let upload = cloud
        .run(&[
            "upload",
            path(dir.path()),
            "--model",
            "demo",
            "--version",
            "1",
            "--image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2",
            "--local",
            "--part-size-mib",
            "8",
            "--json",
        ])
        .await;
    assert!(upload.status.success(), "{}", text(&upload));
    let summary: serde_json::Value = serde_json::from_slice(&upload.stdout).expect("summary JSON");
    assert_eq!(summary["files"], 3, "{summary}");
    assert_eq!(summary["already_uploaded"], false);
    assert_eq!(summary["multipart_files"], 1);
    assert_eq!(summary["parts"], 6);
    let fleet = fleet();
    let bucket = &fleet.primary_bucket;
    assert_eq!(
        summary["manifest_uri"],
        format!("s3://{bucket}/models/demo/1/manifest.json")
    );

    let s3 = cloud.s3().await;
    let stored = read_object(&s3, bucket, "models/demo/1/manifest.json").await;
    let manifest: Manifest = manifest::parse(&stored).expect("the stored manifest parses");
    let listed: Vec<(&str, u64)> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size))
        .collect();
    assert_eq!(
        listed,
        [
            ("config.json", 13),
            ("model-00001.safetensors", BIG as u64),
            ("tokenizer/vocab.txt", 3000),
        ]
    );
    assert_eq!(
        manifest.serving.image,
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2"
    );
    assert_eq!(
        manifest.serving.instance_type,
        fleet.primary().instance_type
    );
    assert_eq!(
        manifest.serving.instance_count,
        fleet.primary().instance_count
    );

    let objects = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("models/demo/1/")
        .send()
        .await
        .expect("list");
    let mut keys: Vec<(&str, Option<i64>)> = objects
        .contents()
        .iter()
        .filter_map(|o| o.key().map(|k| (k, o.size())))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            ("models/demo/1/config.json", Some(13)),
            ("models/demo/1/manifest.json", Some(stored.len() as i64)),
            ("models/demo/1/model-00001.safetensors", Some(BIG as i64)),
            ("models/demo/1/tokenizer/vocab.txt", Some(3000)),
        ]
    );
    for file in &manifest.files {
        let key = manifest.object_key(file);
        // Sizes are checked in the listing above: HeadObject through the gateway reports
        // Content-Length 0 (it drops moto's header and the HEAD body is empty).
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
        let etag = head.e_tag().unwrap_or_default();
        if file.size > 8 * MIB as u64 {
            assert!(etag.ends_with("-6\""), "{key} is a 6-part upload: {etag}");
        }
        // Single and multipart alike: S3's full-object CRC64NVME, the manifest's.
        assert_eq!(
            (head.checksum_type(), head.checksum_crc64_nvme()),
            (
                Some(&aws_sdk_s3::types::ChecksumType::FullObject),
                file.crc64nvme.as_deref()
            ),
            "{key} carries the manifest's CRC64NVME as its full-object checksum"
        );
        assert!(file.crc64nvme.is_some(), "{key}: the manifest records it");
    }
    let big = read_object(&s3, bucket, "models/demo/1/model-00001.safetensors").await;
    assert!(
        big == content(BIG, 1),
        "the parts were put together in order"
    );
    let manifest_head = s3
        .head_object()
        .bucket(bucket)
        .key("models/demo/1/manifest.json")
        .send()
        .await
        .expect("head manifest");
    assert_eq!(manifest_head.content_type(), Some("application/json"));
    let pending = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list multipart uploads");
    assert!(pending.uploads().is_empty(), "{pending:?}");
}

#[tokio::test]
async fn versions_are_immutable_and_a_repeated_upload_is_a_no_op() {
    let cloud = LocalCloud::up().await;
    let dir = version_dir();
    let args = [
        "upload",
        path(dir.path()),
        "--model",
        "demo",
        "--version",
        "1",
        "--image",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2",
        "--local",
        "--part-size-mib",
        "8",
    ];
    let first = cloud.run(&args).await;
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("uploaded version 1 of demo"),
        "{}",
        text(&first)
    );
    let bucket = fleet().primary_bucket;
    let s3 = cloud.s3().await;
    let manifest_before = read_object(&s3, &bucket, "models/demo/1/manifest.json").await;
    let vocab_before = read_object(&s3, &bucket, "models/demo/1/tokenizer/vocab.txt").await;

    let again = cloud.run(&args).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already uploaded"),
        "{}",
        text(&again)
    );

    std::fs::write(
        dir.path().join("tokenizer").join("vocab.txt"),
        content(3001, 3),
    )
    .expect("write");
    let changed = cloud.run(&args).await;
    assert!(!changed.status.success(), "{}", text(&changed));
    assert!(
        text(&changed).contains(
            "version 1 of demo is already uploaded with a different manifest; versions are immutable"
        ),
        "{}",
        text(&changed)
    );
    assert_eq!(
        read_object(&s3, &bucket, "models/demo/1/manifest.json").await,
        manifest_before,
        "the manifest is unchanged"
    );
    assert_eq!(
        read_object(&s3, &bucket, "models/demo/1/tokenizer/vocab.txt").await,
        vocab_before,
        "nothing was uploaded"
    );
}

#[tokio::test]
async fn manifest_prints_json_that_parses_and_names_bad_input() {
    let home = tempfile::tempdir().expect("temp dir");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("nested")).expect("mkdir");
    std::fs::write(dir.path().join("weights.bin"), content(10_000, 4)).expect("write");
    std::fs::write(dir.path().join("nested").join("a.txt"), b"hello").expect("write");
    let printed = meridian(
        home.path(),
        &[
            "manifest",
            path(dir.path()),
            "--model",
            "demo",
            "--version",
            "2.0-rc1",
            "--image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2",
            "--instance-count",
            "3",
            "--env",
            "HF_MODEL_ID=/opt/ml/model",
            "--env",
            "SM_NUM_GPUS=1",
        ],
    )
    .await;
    assert!(printed.status.success(), "{}", text(&printed));
    let manifest = manifest::parse(&printed.stdout).expect("the printed manifest parses");
    assert_eq!(manifest.model, "demo");
    assert_eq!(manifest.version, "2.0-rc1");
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["nested/a.txt", "weights.bin"]);
    assert_eq!(
        manifest.files[0].sha256,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(manifest.serving.instance_count, 3);
    assert_eq!(
        manifest.serving.instance_type,
        fleet().primary().instance_type,
        "the default comes from the fleet's primary region"
    );
    assert_eq!(manifest.serving.environment.len(), 2);

    let bad = meridian(
        home.path(),
        &[
            "manifest",
            path(dir.path()),
            "--model",
            "Demo",
            "--version",
            "1",
            "--image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2",
            "--instance-type",
            "g5.2xlarge",
        ],
    )
    .await;
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(bad.stdout.is_empty(), "no manifest is printed");
    let message = text(&bad);
    assert!(message.contains("model: \"Demo\""), "{message}");
    assert!(message.contains("serving.instance_type"), "{message}");
}

/// A proxy in front of the local cloud that fails every attempt at one part number and
/// records every request.
struct FailingProxy {
    upstream: String,
    http: reqwest::Client,
    fail_part: String,
    log: Mutex<Vec<String>>,
}

async fn proxy(State(proxy): State<Arc<FailingProxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    proxy
        .log
        .lock()
        .expect("log")
        .push(format!("{} {path_and_query}", parts.method));
    let query = parts.uri.query().unwrap_or_default();
    if parts.method == axum::http::Method::PUT && query.split('&').any(|p| p == proxy.fail_part) {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                   <Error><Code>InternalError</Code><Message>injected failure</Message></Error>";
        return (StatusCode::INTERNAL_SERVER_ERROR, xml).into_response();
    }
    let hop = |name: &HeaderName| {
        matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        )
    };
    let mut forwarded = proxy
        .http
        .request(parts.method, format!("{}{path_and_query}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !hop(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    let Ok(reply) = forwarded.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = Response::builder().status(reply.status());
    for (name, value) in reply.headers() {
        if !hop(name) {
            response = response.header(name, value);
        }
    }
    let body = reply.bytes().await.unwrap_or_default();
    response
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_aborts_the_multipart_upload_and_writes_no_manifest() {
    let cloud = LocalCloud::up().await;
    let failing = Arc::new(FailingProxy {
        upstream: cloud.endpoint.clone(),
        http: reqwest::Client::new(),
        fail_part: "partNumber=3".into(),
        log: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    let app = axum::Router::new()
        .fallback(proxy)
        .with_state(failing.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = version_dir();
    let aws = tempfile::tempdir().expect("temp dir");
    let failed = command(
        cloud.home.path(),
        &[
            "upload",
            path(dir.path()),
            "--model",
            "demo",
            "--version",
            "1",
            "--image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:2",
            "--part-size-mib",
            "8",
        ],
    )
    .env("AWS_ENDPOINT_URL", format!("http://{address}"))
    .env("AWS_ACCESS_KEY_ID", "local")
    .env("AWS_SECRET_ACCESS_KEY", "local")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_CONFIG_FILE", aws.path().join("config"))
    .env(
        "AWS_SHARED_CREDENTIALS_FILE",
        aws.path().join("credentials"),
    )
    .env_remove("AWS_PROFILE")
    .output()
    .await
    .expect("the meridian binary runs");
    server.abort();

    let message = text(&failed);
    assert!(!failed.status.success(), "{message}");
    assert!(message.contains("uploading part 3"), "{message}");
    assert!(message.contains("aborted"), "{message}");
    assert!(
        message.contains("manifest.json was not written"),
        "{message}"
    );
    let log = failing.log.lock().expect("log").clone();
    assert!(
        log.iter()
            .any(|r| r.starts_with("DELETE /") && r.contains("uploadId=")),
        "AbortMultipartUpload was sent: {log:#?}"
    );
    assert!(
        !log.iter()
            .any(|r| r.contains("manifest.json") && r.starts_with("PUT")),
        "no manifest was written: {log:#?}"
    );

    let s3 = cloud.s3().await;
    let bucket = fleet().primary_bucket;
    let manifest = s3
        .head_object()
        .bucket(&bucket)
        .key("models/demo/1/manifest.json")
        .send()
        .await;
    assert!(manifest.is_err(), "no manifest: {manifest:?}");
    let pending = s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .expect("list multipart uploads");
    assert!(pending.uploads().is_empty(), "{pending:?}");
    let big = s3
        .head_object()
        .bucket(&bucket)
        .key("models/demo/1/model-00001.safetensors")
        .send()
        .await;
    assert!(big.is_err(), "the failed file does not exist: {big:?}");
}
