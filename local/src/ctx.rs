//! The shared context of a running local cloud: what the gateway, every emulation and every
//! background task use (moto, the fleet, the tunables, the hosted functions and front doors,
//! the faults). Emulations keep their own state; this holds only what they share.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use serde_json::Value;
use tokio::task::AbortHandle;

use crate::config::LocalCloudConfig;
use crate::faults::Faults;
use crate::front_doors::FrontDoors;
use crate::functions::Functions;

/// The account moto uses; events and ARNs of the local cloud carry it.
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// Replica copies the emulation makes at once. S3 replicates asynchronously at its own
/// pace; copies beyond this wait in memory rather than crowd moto, whose latency for every
/// other call (the event queues' receives among them) grows with its concurrent requests.
pub const CONCURRENT_COPIES: usize = 32;

/// Shared state of a running local cloud.
pub struct Ctx {
    pub config: LocalCloudConfig,
    pub fleet: Fleet,
    pub functions: Functions,
    /// Each region's front-door handler, served on that region's listener.
    pub front_doors: FrontDoors,
    /// Each region's front-door base URL (API Gateway's invoke URL, stage included).
    pub front_door_urls: BTreeMap<String, String>,
    pub faults: Faults,
    pub moto_url: String,
    pub gateway_url: String,
    pub http: reqwest::Client,
    /// Clients that talk to moto directly, bypassing the gateway, so emulations never
    /// trigger themselves.
    pub moto: ClientFactory,
    /// Objects' CRC64NVME as the S3 emulation reports them (`checksums.rs`).
    pub crc64nvme: crate::crc64_cache::Crc64Cache,
    /// Buckets' replication configurations and regions (`bucket_cache.rs`).
    pub buckets: crate::bucket_cache::BucketCache,
    /// Replica copies under way at once (`replication.rs`), [`CONCURRENT_COPIES`].
    pub replication_slots: tokio::sync::Semaphore,
    provisioned: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A moto JSON-protocol reply.
pub struct MotoReply {
    pub status: http::StatusCode,
    pub body: Value,
}

impl Ctx {
    /// The shared context of a local cloud whose parts answer at `urls`; no front door is
    /// registered yet.
    pub fn new(
        config: LocalCloudConfig,
        fleet: Fleet,
        functions: Functions,
        urls: Urls,
    ) -> Result<Self> {
        Ok(Self {
            moto: ClientFactory::for_endpoint(urls.moto.clone()),
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_idle_timeout(std::time::Duration::from_secs(5))
                .build()?,
            moto_url: urls.moto,
            gateway_url: urls.gateway,
            front_door_urls: urls.front_doors,
            front_doors: FrontDoors::default(),
            faults: Faults::default(),
            crc64nvme: Default::default(),
            buckets: Default::default(),
            replication_slots: tokio::sync::Semaphore::new(CONCURRENT_COPIES),
            provisioned: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            config,
            fleet,
            functions,
        })
    }

    pub fn is_provisioned(&self) -> bool {
        self.provisioned.load(Ordering::SeqCst)
    }

    pub fn mark_provisioned(&self) {
        self.provisioned.store(true, Ordering::SeqCst);
    }

    /// Runs a background task until the local cloud stops (or its handle aborts it).
    pub fn spawn(
        &self,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> AbortHandle {
        let handle = tokio::spawn(task).abort_handle();
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle.clone());
        handle
    }

    /// Stops every background task started with [`Ctx::spawn`].
    pub fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }

    /// Calls a JSON-protocol API of moto directly, scoped to `region`.
    pub async fn moto_json(
        &self,
        region: &str,
        service: &str,
        target: &str,
        json_version: &str,
        body: &Value,
    ) -> Result<MotoReply> {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=meridian-local/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let response = self
            .http
            .post(format!("{}/", self.moto_url))
            .header("authorization", authorization)
            .header("x-amz-target", target)
            .header(
                "content-type",
                format!("application/x-amz-json-{json_version}"),
            )
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("calling {target} on moto"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(MotoReply { status, body })
    }
}

/// Where a local cloud's parts answer.
pub struct Urls {
    pub moto: String,
    pub gateway: String,
    /// Per region, the front door's base URL.
    pub front_doors: BTreeMap<String, String>,
}
