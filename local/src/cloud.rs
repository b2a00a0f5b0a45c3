//! Starting, wiring and stopping the local cloud.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use serde_json::Value;
use tokio::task::AbortHandle;

use crate::alarms::AlarmWatcher;
use crate::calls::{ApiCall, CallLog};
use crate::delivery::Subscription;
use crate::faults::Faults;
use crate::functions::Functions;
use crate::global_tables::GlobalTables;
use crate::moto::{self, MotoServer};
use crate::provision::{self, Provisioned};
use crate::sagemaker::Endpoints;
use crate::{alarms, delivery, gateway, schedules};

/// The account moto uses; events and ARNs of the local cloud carry it.
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// Tunables of the local cloud. The defaults suit an interactive demo; tests shorten them.
#[derive(Debug, Clone)]
pub struct LocalCloudConfig {
    /// Gateway port on 127.0.0.1; 0 picks a free one.
    pub gateway_port: u16,
    /// moto port on 127.0.0.1; 0 picks a free one.
    pub moto_port: u16,
    /// Where logs and local state live.
    pub home: PathBuf,
    /// The virtualenv moto is installed into.
    pub venv: PathBuf,
    /// Time from an object's creation to its replica's creation.
    pub replication_delay: Duration,
    /// Time for a global-table write to reach the other regions.
    pub global_table_lag: Duration,
    /// Time an endpoint spends `Updating` after `UpdateEndpoint`.
    pub endpoint_update_duration: Duration,
    /// `rate(...)` schedules fire this many times faster than on AWS.
    pub schedule_speedup: u32,
    /// How often alarms and schedules are polled besides the gateway's own triggers.
    pub poll_interval: Duration,
    /// Seconds the rollout state machine waits between endpoint status checks.
    pub rollout_poll_seconds: u64,
}

impl Default for LocalCloudConfig {
    fn default() -> Self {
        Self {
            gateway_port: 4566,
            moto_port: 4567,
            home: moto::meridian_home(),
            venv: moto::default_venv(),
            replication_delay: Duration::from_secs(2),
            global_table_lag: Duration::from_millis(500),
            endpoint_update_duration: Duration::from_secs(5),
            schedule_speedup: 1,
            poll_interval: Duration::from_secs(1),
            rollout_poll_seconds: 1,
        }
    }
}

impl LocalCloudConfig {
    /// Short delays and free ports: for tests.
    pub fn for_tests(home: PathBuf) -> Self {
        Self {
            gateway_port: 0,
            moto_port: 0,
            venv: home.join("venv"),
            home,
            replication_delay: Duration::from_millis(200),
            global_table_lag: Duration::from_millis(200),
            endpoint_update_duration: Duration::from_millis(1500),
            schedule_speedup: 60,
            poll_interval: Duration::from_millis(250),
            rollout_poll_seconds: 1,
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.home.join("local")
    }
}

/// Shared state of a running local cloud, used by the gateway and every emulation.
pub struct Ctx {
    pub config: LocalCloudConfig,
    pub fleet: Fleet,
    pub functions: Functions,
    pub faults: Faults,
    pub moto_url: String,
    pub gateway_url: String,
    pub http: reqwest::Client,
    /// Clients that talk to moto directly, bypassing the gateway, so emulations never
    /// trigger themselves.
    pub moto: ClientFactory,
    pub endpoints: Endpoints,
    pub global_tables: GlobalTables,
    pub alarms: AlarmWatcher,
    pub schedule_targets: crate::events::ScheduleTargets,
    /// Who called which API (CloudTrail's view), for least-privilege checks.
    pub calls: CallLog,
    provisioned: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A moto JSON-protocol reply.
pub struct MotoReply {
    pub status: http::StatusCode,
    pub body: Value,
}

impl Ctx {
    pub fn is_provisioned(&self) -> bool {
        self.provisioned.load(Ordering::SeqCst)
    }

    /// Runs a background task until the local cloud stops.
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
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

/// A running local cloud: moto plus the gateway and its emulations.
pub struct LocalCloud {
    ctx: Arc<Ctx>,
    moto: Option<MotoServer>,
    address: SocketAddr,
}

impl LocalCloud {
    /// Installs moto if needed, starts it and the gateway. Nothing is provisioned yet:
    /// call [`LocalCloud::provision`].
    pub async fn start(
        config: LocalCloudConfig,
        fleet: Fleet,
        functions: Functions,
    ) -> Result<Self> {
        let server = moto::ensure_installed(&config.venv).await?;
        std::fs::create_dir_all(config.log_dir())?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.gateway_port))
            .await
            .with_context(|| format!("binding the gateway to 127.0.0.1:{}", config.gateway_port))?;
        let address = listener.local_addr()?;
        let moto_port = match config.moto_port {
            0 => free_port()?,
            port => port,
        };
        let moto_log = config.log_dir().join(format!("moto-{moto_port}.log"));
        let moto = MotoServer::start(&server, moto_port, address.port(), &moto_log).await?;
        let moto_url = format!("http://127.0.0.1:{moto_port}");
        let ctx = Arc::new(Ctx {
            moto: ClientFactory::for_endpoint(moto_url.clone()),
            gateway_url: format!("http://{address}"),
            moto_url,
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            endpoints: Endpoints::default(),
            global_tables: GlobalTables::default(),
            alarms: AlarmWatcher::default(),
            schedule_targets: crate::events::ScheduleTargets::default(),
            calls: CallLog::default(),
            faults: Faults::default(),
            provisioned: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            config,
            fleet,
            functions,
        });
        let app = axum::Router::new()
            .fallback(gateway::handle)
            .with_state(ctx.clone());
        ctx.spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "gateway server stopped");
            }
        });
        alarms::start(&ctx);
        schedules::start(&ctx);
        tracing::info!(gateway = %ctx.gateway_url, moto = %ctx.moto_url, "local cloud started");
        Ok(Self {
            ctx,
            moto: Some(moto),
            address,
        })
    }

    /// Creates the fleet's resources (idempotently) and starts delivering their events.
    pub async fn provision(&self) -> Result<Provisioned> {
        let provisioned = provision::provision(
            &self.clients(),
            &self.ctx.fleet,
            self.ctx.config.rollout_poll_seconds,
        )
        .await?;
        for subscription in &provisioned.subscriptions {
            self.subscribe(subscription.clone());
        }
        self.ctx.provisioned.store(true, Ordering::SeqCst);
        Ok(provisioned)
    }

    /// Hosts Meridian's own functions in-process, as deployed.
    pub fn host_meridian_functions(&self) {
        crate::hosted::register(&self.ctx.functions, &self.ctx.fleet, self.clients());
    }

    /// Delivers the messages of an SQS queue to a function, as a Lambda event source would.
    pub fn subscribe(&self, subscription: Subscription) {
        delivery::start(&self.ctx, subscription);
    }

    /// The endpoint to give SDKs (`AWS_ENDPOINT_URL`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Clients that reach the local cloud through the gateway.
    pub fn clients(&self) -> ClientFactory {
        ClientFactory::for_endpoint(self.endpoint_url())
    }

    /// Every distinct AWS API call made through the gateway so far, with its caller.
    pub fn api_calls(&self) -> Vec<ApiCall> {
        self.ctx.calls.calls()
    }

    pub fn fleet(&self) -> &Fleet {
        &self.ctx.fleet
    }

    pub fn functions(&self) -> &Functions {
        &self.ctx.functions
    }

    pub fn faults(&self) -> &Faults {
        &self.ctx.faults
    }

    /// Stops every background task and moto.
    pub async fn shutdown(mut self) -> Result<()> {
        self.abort_tasks();
        if let Some(moto) = self.moto.take() {
            moto.stop().await?;
        }
        Ok(())
    }

    fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *self.ctx.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

/// A free TCP port on loopback (there is a small window before moto binds it).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
