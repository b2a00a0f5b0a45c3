//! Starting, wiring and stopping the local cloud.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;

use crate::alarms::AlarmWatcher;
use crate::calls::{ApiCall, CallLog};
use crate::config::LocalCloudConfig;
use crate::ctx::{Ctx, Urls};
use crate::delivery::Subscription;
use crate::events::ScheduleTargets;
use crate::faults::Faults;
use crate::front_doors::FrontDoors;
use crate::functions::Functions;
use crate::gateway::Gateway;
use crate::global_tables::GlobalTables;
use crate::health_checkers::{CheckerStatus, HealthCheckers};
use crate::moto::{self, MotoServer};
use crate::provision::{self, Provisioned};
use crate::routing_view::{self, RoutingView};
use crate::sagemaker::Endpoints;
use crate::{alarms, api_gateway, delivery, gateway, health_checkers, schedules};

/// A running local cloud: moto plus the gateway, its emulations and the front doors.
pub struct LocalCloud {
    ctx: Arc<Ctx>,
    calls: Arc<CallLog>,
    checkers: Arc<HealthCheckers>,
    moto: Option<MotoServer>,
    address: SocketAddr,
}

impl LocalCloud {
    /// Installs moto if needed, starts it, the gateway and every region's front-door
    /// listener. Nothing is provisioned yet: call [`LocalCloud::provision`].
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
        let front_door_listeners = api_gateway::bind(&config, &fleet).await?;
        let front_door_urls = front_door_listeners
            .iter()
            .map(|(region, listener)| {
                Ok((
                    region.clone(),
                    api_gateway::base_url(listener.local_addr()?),
                ))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let moto_port = match config.moto_port {
            0 => free_port()?,
            port => port,
        };
        let moto_log = config.log_dir().join(format!("moto-{moto_port}.log"));
        let moto = MotoServer::start(&server, moto_port, address.port(), &moto_log).await?;
        let urls = Urls {
            moto: format!("http://127.0.0.1:{moto_port}"),
            gateway: format!("http://{address}"),
            front_doors: front_door_urls,
        };
        let ctx = Arc::new(Ctx::new(config, fleet, functions, urls)?);
        let gateway = Arc::new(Gateway {
            ctx: ctx.clone(),
            calls: Arc::new(CallLog::default()),
            endpoints: Arc::new(Endpoints::default()),
            global_tables: Arc::new(GlobalTables::default()),
            alarms: Arc::new(AlarmWatcher::default()),
            schedule_targets: Arc::new(ScheduleTargets::default()),
            checkers: Arc::new(HealthCheckers::default()),
            stopped_executions: Arc::default(),
        });
        alarms::start(&ctx, &gateway.alarms);
        crate::sagemaker::start(&ctx, &gateway.endpoints, &gateway.alarms);
        crate::execution_events::start(
            &ctx,
            &gateway.stopped_executions,
            ctx.fleet.primary_region.clone(),
            crate::hosted::state_machine_arn(&ctx.fleet),
        );
        schedules::start(&ctx, &gateway.schedule_targets);
        health_checkers::start(&ctx, &gateway.checkers);
        for (region, listener) in front_door_listeners {
            api_gateway::start(&ctx, region, listener);
        }
        let (calls, checkers) = (gateway.calls.clone(), gateway.checkers.clone());
        gateway::start(gateway, listener);
        tracing::info!(gateway = %ctx.gateway_url, moto = %ctx.moto_url, front_doors = ?ctx.front_door_urls, "local cloud started");
        Ok(Self {
            ctx,
            calls,
            checkers,
            moto: Some(moto),
            address,
        })
    }

    /// Creates the fleet's resources (idempotently) and starts delivering their events.
    pub async fn provision(&self) -> Result<Provisioned> {
        let provisioned = provision::provision(
            &self.clients(),
            &self.ctx.fleet,
            &self.ctx.front_door_urls,
            self.ctx.config.rollout_poll_seconds,
            self.ctx.config.deploy_backstop_seconds,
        )
        .await?;
        for subscription in &provisioned.subscriptions {
            self.subscribe(subscription.clone());
        }
        self.ctx.mark_provisioned();
        Ok(provisioned)
    }

    /// Hosts Meridian's own functions in-process, as deployed.
    pub fn host_meridian_functions(&self) {
        crate::hosted::register(
            &self.ctx.functions,
            &self.ctx.fleet,
            self.clients(),
            &self.ctx.front_door_urls,
            self.ctx.config.replica_hash_budget,
        );
        crate::hosted::register_front_doors(&self.ctx.front_doors, &self.ctx.fleet, self.clients());
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
        self.calls.calls()
    }

    /// Every distinct AWS API call so far with how many times it was made.
    pub fn api_call_counts(&self) -> std::collections::BTreeMap<ApiCall, u64> {
        self.calls.counts()
    }

    /// How many times `call` was made through the gateway so far.
    pub fn api_call_count(&self, call: &ApiCall) -> u64 {
        self.calls.count(call)
    }

    pub fn fleet(&self) -> &Fleet {
        &self.ctx.fleet
    }

    pub fn functions(&self) -> &Functions {
        &self.ctx.functions
    }

    /// Where each region's front door is hosted: register a handler per region.
    pub fn front_doors(&self) -> &FrontDoors {
        &self.ctx.front_doors
    }

    /// The base URL of `region`'s front door (API Gateway's invoke URL, stage included),
    /// what the deployed failback function gets as `FRONT_DOOR_URL`.
    pub fn front_door_url(&self, region: &str) -> Option<&str> {
        self.ctx.front_door_urls.get(region).map(String::as_str)
    }

    /// Every region's front-door base URL.
    pub fn front_door_urls(&self) -> &BTreeMap<String, String> {
        &self.ctx.front_door_urls
    }

    /// The Route 53 health checkers' view of every probed health check.
    pub fn health_check_statuses(&self) -> Vec<CheckerStatus> {
        self.checkers.statuses()
    }

    /// Where Route 53 sends each client location now (the `meridian local resolve` view).
    pub async fn routing(&self) -> Result<RoutingView> {
        routing_view::view(&self.ctx, &self.checkers).await
    }

    pub fn faults(&self) -> &Faults {
        &self.ctx.faults
    }

    /// Stops every background task and moto.
    pub async fn shutdown(mut self) -> Result<()> {
        self.ctx.abort_tasks();
        if let Some(moto) = self.moto.take() {
            moto.stop().await?;
        }
        Ok(())
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        self.ctx.abort_tasks();
    }
}

/// A free TCP port on loopback (there is a small window before moto binds it).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
