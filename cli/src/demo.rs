//! `meridian demo`: Meridian's main job on a throw-away local cloud: provision the fleet,
//! upload a model version once, watch it roll out to every region, then fail a region
//! over on an alarm and back after the hysteresis.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_cloudwatch::types::StateValue;
use meridian::adapters::HealthDeps;
use meridian::failover::HealthState;
use meridian::fleet::Fleet;
use meridian::health::HealthStore;
use meridian_local::moto::{self, MOTO_VERSION};
use meridian_local::provision::verify;
use meridian_local::{Functions, LocalCloud, LocalCloudConfig};

/// Cooldown and failback hysteresis of the demo (the fleet file's are minutes).
const DEMO_HYSTERESIS: Duration = Duration::from_secs(5);

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
    let outcome = story(&cloud, &fleet, &step).await;
    cloud.shutdown().await?;
    outcome?;
    step("done; the local cloud is stopped and nothing is left running");
    Ok(ExitCode::SUCCESS)
}

async fn story(cloud: &LocalCloud, fleet: &Fleet, step: &impl Fn(&str)) -> Result<()> {
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
    rollout(cloud, fleet, step).await?;
    failover(cloud, fleet, step).await
}

/// Generates a small model, uploads it once and follows its rollout to every region.
async fn rollout(cloud: &LocalCloud, fleet: &Fleet, step: &impl Fn(&str)) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("meridian-demo-model-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("weights"))?;
    for (name, mib) in [
        ("weights/model-00001-of-00002.safetensors", 6usize),
        ("weights/model-00002-of-00002.safetensors", 4),
    ] {
        let bytes: Vec<u8> = (0..mib * 1024 * 1024)
            .map(|i| (i % 251) as u8 ^ (mib as u8))
            .collect();
        std::fs::write(dir.join(name), bytes)?;
    }
    std::fs::write(
        dir.join("config.json"),
        br#"{"architectures": ["LlamaForCausalLM"], "demo": true}"#,
    )?;
    let version = crate::upload::VersionArgs {
        dir: dir.clone(),
        model: "demo-llm".into(),
        version: "1".into(),
        image: "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.4-tgi2.4-gpu-py311-cu124-ubuntu22.04".into(),
        instance_type: None,
        instance_count: None,
        variant_name: meridian::names::VARIANT_NAME.into(),
        env: vec![("HF_MODEL_ID".into(), "/opt/ml/model".into())],
    };
    let started = Instant::now();
    let summary = crate::upload::upload_version(&version, 8, 5, fleet, &cloud.clients()).await;
    let _ = std::fs::remove_dir_all(&dir);
    let summary = summary?;
    step(&format!(
        "uploaded {} files ({:.1} MiB) of demo-llm 1 to s3://{}/models/demo-llm/1/, manifest.json last",
        summary.files,
        summary.total_bytes as f64 / 1048576.0,
        fleet.primary_bucket
    ));
    let control = meridian::registry::Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let record = loop {
        if let Some(record) = control.version("demo-llm", "1").await? {
            let report = crate::rollout_cmd::report(fleet, &cloud.clients(), &record).await?;
            for row in &report.regions {
                let stage = if row.verified.is_some() {
                    "deployed and verified"
                } else if row.replicated.is_some() {
                    "every file replicated and verified"
                } else {
                    ""
                };
                if !stage.is_empty() && seen.get(&row.region).map(String::as_str) != Some(stage) {
                    step(&format!("{}: {stage}", row.region));
                    seen.insert(row.region.clone(), stage.into());
                }
            }
            if matches!(
                record.status,
                meridian::registry::VersionStatus::Active
                    | meridian::registry::VersionStatus::Failed
            ) {
                crate::rollout_cmd::print_report(&report);
                break record;
            }
        }
        if Instant::now() > deadline {
            bail!("the rollout did not finish within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if record.status != meridian::registry::VersionStatus::Active {
        bail!("the rollout failed: {}", record.reason.unwrap_or_default());
    }
    step(&format!(
        "demo-llm 1 is active in all {} regions, {:.1} s after the upload started",
        fleet.regions.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
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
    let events = crate::ops::all_history(fleet, &clients, None).await?;
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
        crate::ops::status_table(&crate::ops::region_statuses(fleet, &clients, None).await?)
    );
    println!(
        "{}",
        crate::ops::history_table(&crate::ops::all_history(fleet, &clients, None).await?)
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
