//! `meridian demo`: Meridian's main job on a throw-away local cloud. For now it stops at
//! a provisioned, verified fleet whose replication and event delivery are shown working;
//! the rollout and failover stories join it as they land.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_cloudwatch::types::StateValue;
use comfy_table::Table;
use meridian::adapters::HealthDeps;
use meridian::failover::HealthState;
use meridian::fleet::Fleet;
use meridian::health::HealthStore;
use meridian::names::{function_name, FunctionRole};
use meridian_local::moto::{self, MOTO_VERSION};
use meridian_local::provision::verify;
use meridian_local::{Functions, Invocation, LocalCloud, LocalCloudConfig};
use serde_json::Value;
use tokio::sync::mpsc;

/// Cooldown and failback hysteresis of the demo (the fleet file's are minutes).
const DEMO_HYSTERESIS: Duration = Duration::from_secs(5);

/// Size of the sample object the demo uploads.
const SAMPLE_BYTES: usize = 8 * 1024 * 1024;

pub async fn run(fleet_path: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    let fleet =
        Fleet::load(fleet_path).with_context(|| format!("checking {}", fleet_path.display()))?;
    let step = |text: &str| println!("[{:>6.1}s] {text}", started.elapsed().as_secs_f64());

    let venv = moto::default_venv();
    if !moto::moto_server_path(&venv).exists() {
        step(&format!(
            "installing moto {MOTO_VERSION} into {} (first run only)",
            venv.display()
        ));
    }
    let functions = Functions::new();
    let (sender, mut replicas) = mpsc::unbounded_channel::<Invocation>();
    functions.register(
        function_name(&fleet.name, FunctionRole::Replica),
        move |invocation: Invocation| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(invocation);
                Ok(Value::Null)
            }
        },
    );
    let mut fleet = fleet;
    fleet.failover.cooldown = DEMO_HYSTERESIS;
    fleet.failover.failback_after = DEMO_HYSTERESIS;
    let config = LocalCloudConfig {
        gateway_port: 0,
        moto_port: 0,
        replication_delay: Duration::from_secs(1),
        schedule_speedup: 60,
        ..LocalCloudConfig::default()
    };
    let cloud = LocalCloud::start(config, fleet.clone(), functions).await?;
    cloud.host_meridian_functions();
    step(&format!(
        "local cloud started at {} (moto {MOTO_VERSION} behind Meridian's gateway)",
        cloud.endpoint_url()
    ));
    let outcome = story(&cloud, &fleet, &mut replicas, &step).await;
    cloud.shutdown().await?;
    outcome?;
    step("done; the local cloud is stopped and nothing is left running");
    Ok(ExitCode::SUCCESS)
}

async fn story(
    cloud: &LocalCloud,
    fleet: &Fleet,
    replicas: &mut mpsc::UnboundedReceiver<Invocation>,
    step: &impl Fn(&str),
) -> Result<()> {
    cloud.provision().await?;
    let regions = verify(&cloud.clients(), fleet).await?;
    step(&format!(
        "fleet {} provisioned in {} regions:",
        fleet.name,
        regions.len()
    ));
    println!("{}", crate::local::region_table(&regions));
    if let Some(region) = regions.iter().find(|r| !r.is_ready()) {
        bail!("region {} is not fully provisioned", region.region);
    }

    let key = "models/demo/0/sample.bin";
    let body: Vec<u8> = (0..SAMPLE_BYTES).map(|i| (i % 251) as u8).collect();
    let uploaded = Instant::now();
    cloud
        .clients()
        .s3(&fleet.primary_region)
        .await
        .put_object()
        .bucket(&fleet.primary_bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .context("uploading the sample object")?;
    step(&format!(
        "uploaded s3://{}/{key} ({} MiB); waiting for its replicas",
        fleet.primary_bucket,
        SAMPLE_BYTES / (1024 * 1024)
    ));

    let mut arrivals: BTreeMap<String, Duration> = BTreeMap::new();
    while arrivals.len() < fleet.regions.len() {
        let invocation = tokio::time::timeout(Duration::from_secs(60), replicas.recv())
            .await
            .ok()
            .flatten()
            .context("a replica did not arrive within 60 s")?;
        if invocation.payload["detail"]["object"]["key"] != key {
            continue;
        }
        let elapsed = uploaded.elapsed();
        step(&format!(
            "replica event delivered to {} in {}",
            function_name(&fleet.name, FunctionRole::Replica),
            invocation.region
        ));
        arrivals.entry(invocation.region).or_insert(elapsed);
    }
    let mut table = Table::new();
    table.set_header(["region", "bucket", "replica event after"]);
    for region in &fleet.regions {
        let after = arrivals
            .get(&region.name)
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        table.add_row([region.name.clone(), region.bucket.clone(), after]);
    }
    println!("{table}");
    failover(cloud, fleet, step).await
}

/// Alarm one region, show traffic moving away, clear the alarm, show the failback.
async fn failover(cloud: &LocalCloud, fleet: &Fleet, step: &impl Fn(&str)) -> Result<()> {
    let Some(region) = fleet
        .regions
        .iter()
        .find(|r| r.name != fleet.primary_region && !r.alarms.is_empty())
    else {
        step("no secondary region with alarms in the fleet file; skipping the failover story");
        return Ok(());
    };
    let alarm = &region.alarms[0];
    let clients = cloud.clients();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&clients.config(&region.name).await);
    let deps = HealthDeps::new(&clients, fleet, &region.name).await;
    step("routing before the incident (Route 53 latency routing, health checks as they are):");
    println!(
        "{}",
        crate::ops::resolution_table(&crate::ops::resolutions(fleet, &clients).await?)
    );

    step(&format!("alarm {alarm} in {} goes to ALARM", region.name));
    cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(StateValue::Alarm)
        .state_reason("demo: 5xx errors above threshold")
        .send()
        .await?;
    wait_for(&deps, &region.name, HealthState::DrainedByAlarm).await?;
    let events = crate::ops::all_history(fleet, &clients).await?;
    let reaction = events
        .iter()
        .rev()
        .find(|e| e.kind == "drain")
        .and_then(|e| e.reaction_ms)
        .unwrap_or_default();
    step(&format!(
        "{} drained from DNS {reaction} ms after the alarm changed state; traffic moves:",
        region.name
    ));
    println!(
        "{}",
        crate::ops::resolution_table(&crate::ops::resolutions(fleet, &clients).await?)
    );

    step(&format!(
        "alarm {alarm} back to OK; failback after {} s continuously OK (demo hysteresis)",
        DEMO_HYSTERESIS.as_secs()
    ));
    cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(StateValue::Ok)
        .state_reason("demo: recovered")
        .send()
        .await?;
    wait_for(&deps, &region.name, HealthState::Recovering).await?;
    step(&format!("{} is recovering (still drained)", region.name));
    wait_for(&deps, &region.name, HealthState::Healthy).await?;
    step(&format!(
        "{} failed back; routing is as before:",
        region.name
    ));
    println!(
        "{}",
        crate::ops::resolution_table(&crate::ops::resolutions(fleet, &clients).await?)
    );
    println!(
        "{}",
        crate::ops::status_table(&crate::ops::region_statuses(fleet, &clients).await?)
    );
    println!(
        "{}",
        crate::ops::history_table(&crate::ops::all_history(fleet, &clients).await?)
    );
    Ok(())
}

async fn wait_for(deps: &HealthDeps, region: &str, state: HealthState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if deps
            .store
            .load(region)
            .await?
            .is_some_and(|h| h.value.state == state)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{region} did not become {state:?} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
