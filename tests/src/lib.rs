//! Shared harness for the integration and end-to-end tests: each test starts its own
//! local cloud (its own moto, its own gateway on free ports), so no test depends on
//! another's state.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use meridian::fleet::Fleet;
use meridian_local::{Functions, LocalCloud, LocalCloudConfig};

pub mod bench;
pub mod event_pattern;
pub mod iam;
pub mod lambda_bench;
pub mod objects;
pub mod template;

/// A local cloud for one test. When the test ends (by [`TestCloud::shutdown`] or by
/// going out of scope without a panic), every AWS call Meridian's functions made in it
/// must be one their IAM roles allow ([`iam::assert_calls_declared`]).
pub struct TestCloud {
    cloud: Option<LocalCloud>,
}

impl TestCloud {
    /// Checks the calls made, then stops moto and the gateway.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        match self.cloud.take() {
            Some(cloud) => {
                iam::assert_calls_declared(&cloud.api_calls());
                cloud.shutdown().await
            }
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for TestCloud {
    type Target = LocalCloud;

    fn deref(&self) -> &LocalCloud {
        self.cloud
            .as_ref()
            .unwrap_or_else(|| unreachable!("a TestCloud holds its cloud until shut down"))
    }
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        if let Some(cloud) = self.cloud.take() {
            if !std::thread::panicking() {
                iam::assert_calls_declared(&cloud.api_calls());
            }
        }
    }
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The example fleet: us-east-1 (primary), eu-west-1, ap-southeast-1.
pub fn example_fleet() -> Fleet {
    match Fleet::load(&workspace_root().join("fleet.example.toml")) {
        Ok(fleet) => fleet,
        Err(error) => panic!("fleet.example.toml must be valid: {error}"),
    }
}

/// Starts and provisions a local cloud for the example fleet with short delays.
pub async fn start_cloud(functions: Functions) -> TestCloud {
    start_cloud_for(example_fleet(), functions, false).await
}

/// Starts and provisions a local cloud for `fleet`, optionally hosting Meridian's own
/// functions (failover, failback) as deployed.
pub async fn start_cloud_for(fleet: Fleet, functions: Functions, host_meridian: bool) -> TestCloud {
    start_cloud_with(test_config(), fleet, functions, host_meridian).await
}

/// The local cloud settings tests use (short delays, free ports).
pub fn test_config() -> LocalCloudConfig {
    LocalCloudConfig::for_tests(workspace_root().join(".meridian"))
}

/// [`start_cloud_for`] with explicit local cloud settings.
pub async fn start_cloud_with(
    config: LocalCloudConfig,
    fleet: Fleet,
    functions: Functions,
    host_meridian: bool,
) -> TestCloud {
    init_tracing();
    let cloud = match LocalCloud::start(config, fleet, functions).await {
        Ok(cloud) => cloud,
        Err(error) => panic!("the local cloud did not start: {error:#}"),
    };
    if host_meridian {
        cloud.host_meridian_functions();
    }
    if let Err(error) = cloud.provision().await {
        panic!("provisioning failed: {error:#}");
    }
    TestCloud { cloud: Some(cloud) }
}

/// Logs go to the test output when `RUST_LOG` is set.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Polls `check` until it yields a value or `within` passes; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The calls made since `before` (a snapshot of [`LocalCloud::api_call_counts`]): each call
/// whose count grew. The call log is a set of distinct calls, so comparing counts, not
/// positions, is what tells a new call from an old one.
pub fn calls_since(
    cloud: &LocalCloud,
    before: &std::collections::BTreeMap<meridian_local::calls::ApiCall, u64>,
) -> Vec<meridian_local::calls::ApiCall> {
    cloud
        .api_call_counts()
        .into_iter()
        .filter(|(call, count)| before.get(call).copied().unwrap_or(0) < *count)
        .map(|(call, _)| call)
        .collect()
}
