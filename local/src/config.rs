//! The local cloud's tunables.

use std::path::PathBuf;
use std::time::Duration;

use crate::moto;

/// Tunables of the local cloud. The defaults suit an interactive demo; tests shorten them.
#[derive(Debug, Clone)]
pub struct LocalCloudConfig {
    /// Gateway port on 127.0.0.1; 0 picks a free one.
    pub gateway_port: u16,
    /// moto port on 127.0.0.1; 0 picks a free one.
    pub moto_port: u16,
    /// Port of the first region's front door on 127.0.0.1, the next regions' on the ports
    /// after it, in fleet order; 0 picks a free port for each.
    pub front_door_port: u16,
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
    /// `rate(...)` schedules, and Route 53 health checks' request intervals and probe
    /// timeouts, run this many times faster than on AWS.
    pub schedule_speedup: u32,
    /// How often alarms, schedules and health checks are polled besides the gateway's own
    /// triggers.
    pub poll_interval: Duration,
    /// Seconds the rollout state machine waits between endpoint status checks.
    pub rollout_poll_seconds: u64,
    /// The rollout's backstop on a deploy wait (`DeployBackstopSeconds`): long enough that
    /// a rollout finishing in seconds shows the wait was resumed by SageMaker's events (or
    /// an abort), not by it.
    pub deploy_backstop_seconds: u64,
    /// Most bytes the hosted replica function hashes per invocation (Lambda's default is
    /// `meridian::replica_check::DEFAULT_HASH_BUDGET_BYTES`); tests make it small.
    pub replica_hash_budget: u64,
}

impl Default for LocalCloudConfig {
    fn default() -> Self {
        Self {
            gateway_port: 4566,
            moto_port: 4567,
            front_door_port: 0,
            home: moto::meridian_home(),
            venv: moto::default_venv(),
            replication_delay: Duration::from_secs(2),
            global_table_lag: Duration::from_millis(500),
            endpoint_update_duration: Duration::from_secs(5),
            schedule_speedup: 1,
            poll_interval: Duration::from_secs(1),
            rollout_poll_seconds: 1,
            deploy_backstop_seconds: 60,
            replica_hash_budget: meridian::replica_check::DEFAULT_HASH_BUDGET_BYTES,
        }
    }
}

impl LocalCloudConfig {
    /// Short delays and free ports: for tests.
    pub fn for_tests(home: PathBuf) -> Self {
        Self {
            gateway_port: 0,
            moto_port: 0,
            front_door_port: 0,
            venv: home.join("venv"),
            home,
            replication_delay: Duration::from_millis(200),
            global_table_lag: Duration::from_millis(200),
            endpoint_update_duration: Duration::from_millis(1500),
            schedule_speedup: 60,
            poll_interval: Duration::from_millis(250),
            rollout_poll_seconds: 1,
            deploy_backstop_seconds: 60,
            replica_hash_budget: meridian::replica_check::DEFAULT_HASH_BUDGET_BYTES,
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.home.join("local")
    }

    /// An AWS duration as it passes in this local cloud: divided by `schedule_speedup`.
    pub fn scaled(&self, aws: Duration) -> Duration {
        aws / self.schedule_speedup.max(1)
    }
}
