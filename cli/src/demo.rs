//! `meridian demo`: Meridian's main job on a throw-away local cloud: provision the fleet,
//! upload a model version once, watch it roll out to every region, call it through the
//! fleet's name, then lose a region, impair us-east-1, and fail a region over on an alarm
//! and back after the hysteresis.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_cloudwatch::types::StateValue;
use meridian::adapters::HealthDeps;
use meridian::failover::HealthState;
use meridian::fleet::Fleet;
use meridian::health::{FailoverEvent, HealthStore};
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
        region_images: Vec::new(),
        instance_type: None,
        instance_count: None,
        variant_name: None,
        env: vec![("HF_MODEL_ID".into(), "/opt/ml/model".into())],
        smoke_test: None,
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

/// The regional failure story: a client calls the fleet's name through its front door;
/// eu-west-1 goes dark and Route 53's checkers take it out with no function of ours in the
/// path; then us-east-1 (and with it Route 53's API) is impaired, and an alarm in
/// ap-southeast-1 still drains it; the alarm clears and it fails back after the hysteresis.
async fn failover(cloud: &LocalCloud, fleet: &Fleet, step: &impl Fn(&str)) -> Result<()> {
    let (dark, impaired, alarmed) = ("eu-west-1", "us-east-1", "ap-southeast-1");
    let Some(alarm) = fleet
        .region(alarmed)
        .filter(|_| fleet.region(dark).is_some() && fleet.region(impaired).is_some())
        .and_then(|r| r.alarms.first())
    else {
        step("the fleet file lacks us-east-1, eu-west-1 or ap-southeast-1 with an alarm; skipping the failover story");
        return Ok(());
    };
    let clients = cloud.clients();
    step("waiting for every region's first tick to publish its front door and Route 53's checkers to find them healthy");
    wait_until(
        Duration::from_secs(60),
        "every front door healthy",
        || async { Ok(cloud.routing().await?.records.iter().all(|r| r.healthy())) },
    )
    .await?;
    step(
        "routing now (Route 53 latency records behind health checks on each front door's /health):",
    );
    println!("{}", routing_table(cloud).await?);
    call_through_dns(cloud, dark, step).await?;

    step(&format!(
        "{dark} goes dark: every service, its front door and its events stop answering"
    ));
    let dark_at = Instant::now();
    cloud.faults().take_region_down(dark);
    wait_until(
        Duration::from_secs(30),
        "no client routed to the dark region",
        || async { Ok(routed_to(cloud, dark).await?.is_empty()) },
    )
    .await?;
    let dns = &fleet.dns;
    step(&format!(
        "Route 53's checkers took {dark} out {:.2} s after it went dark (on AWS: {} s interval × {} failures, at most {} s with propagation and the {} s TTL); no function of Meridian's was involved",
        dark_at.elapsed().as_secs_f64(),
        dns.health_check_interval_seconds,
        dns.failure_threshold,
        dns.worst_case_failover().as_secs(),
        dns.ttl_seconds,
    ));
    println!("{}", routing_table(cloud).await?);
    call_through_dns(cloud, dark, step).await?;
    let outage = wait_for_history(cloud, fleet, impaired, |e| {
        e.region == dark && e.kind == "unreachable"
    })
    .await?;
    step(&format!(
        "the history read in {impaired} shows the outage, detected by a peer's probe at {}: {}",
        outage.decided.format("%H:%M:%S%.3f"),
        outage.reason
    ));

    cloud.faults().bring_region_up(dark);
    wait_until(
        Duration::from_secs(30),
        "the dark region back in DNS",
        || async { Ok(!routed_to(cloud, dark).await?.is_empty()) },
    )
    .await?;
    step(&format!(
        "{dark} is back: its checks pass again and it is back in DNS"
    ));

    step(&format!(
        "{impaired} is impaired (down, and Route 53's API with it); alarm {alarm} in {alarmed} goes to ALARM"
    ));
    cloud.faults().take_region_down(impaired);
    cloud.faults().set_route53_control_plane_down(true);
    wait_for_history(cloud, fleet, alarmed, |e| {
        e.region == impaired && e.kind == "unreachable"
    })
    .await?;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&clients.config(alarmed).await);
    let deps = HealthDeps::new(&clients, fleet, alarmed).await;
    let alarm_at = Instant::now();
    cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(StateValue::Alarm)
        .state_reason("demo: 5xx errors above threshold")
        .send()
        .await?;
    wait_for(&deps, alarmed, HealthState::DrainedByAlarm).await?;
    let drained_after = alarm_at.elapsed();
    wait_until(
        Duration::from_secs(30),
        "no client routed to the alarmed region",
        || async { Ok(routed_to(cloud, alarmed).await?.is_empty()) },
    )
    .await?;
    step(&format!(
        "{alarmed} drained itself {:.2} s after the alarm (intent, {} s settle, record written in its own replica) and left DNS {:.2} s after it, with {impaired} and Route 53's API down:",
        drained_after.as_secs_f64(),
        fleet.failover.settle.as_secs(),
        alarm_at.elapsed().as_secs_f64()
    ));
    println!("{}", routing_table(cloud).await?);

    cloud.faults().bring_region_up(impaired);
    cloud.faults().set_route53_control_plane_down(false);
    step(&format!(
        "{impaired} recovers; alarm {alarm} back to OK: failback after {} s continuously OK (demo hysteresis)",
        DEMO_HYSTERESIS.as_secs()
    ));
    cloudwatch
        .set_alarm_state()
        .alarm_name(alarm)
        .state_value(StateValue::Ok)
        .state_reason("demo: recovered")
        .send()
        .await?;
    wait_for(&deps, alarmed, HealthState::Recovering).await?;
    step(&format!("{alarmed} is recovering (still drained)"));
    wait_for(&deps, alarmed, HealthState::Healthy).await?;
    wait_until(
        Duration::from_secs(30),
        "every region back in DNS",
        || async { Ok(cloud.routing().await?.records.iter().all(|r| r.healthy())) },
    )
    .await?;
    step(&format!("{alarmed} failed back; routing is as before:"));
    println!("{}", routing_table(cloud).await?);
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

/// A client in `client_region` resolves the fleet's name and calls the front door it gets.
async fn call_through_dns(
    cloud: &LocalCloud,
    client_region: &str,
    step: &impl Fn(&str),
) -> Result<()> {
    let view = cloud.routing().await?;
    let region = view
        .resolutions
        .iter()
        .find(|r| r.client == client_region)
        .and_then(|r| r.region.clone())
        .context("the client's location resolves to no region")?;
    let url = cloud
        .front_door_url(&region)
        .with_context(|| format!("{region} has no front door"))?;
    let response = reqwest::Client::new()
        .post(format!("{url}/invocations"))
        .header("content-type", "application/json")
        .body(r#"{"inputs": "What is Meridian?"}"#)
        .send()
        .await?;
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = response.text().await?;
    step(&format!(
        "a client in {client_region} calls the fleet's name: resolved to {region}'s front door, POST /invocations → {status} (request id {request_id}): {body}"
    ));
    Ok(())
}

async fn routed_to(cloud: &LocalCloud, region: &str) -> Result<Vec<String>> {
    Ok(cloud
        .routing()
        .await?
        .resolutions
        .into_iter()
        .filter(|r| r.region.as_deref() == Some(region))
        .map(|r| r.client)
        .collect())
}

async fn routing_table(cloud: &LocalCloud) -> Result<comfy_table::Table> {
    Ok(crate::ops::resolution_table(
        &cloud.routing().await?.resolutions,
    ))
}

/// Polls `check` until it holds, or fails after `within`.
async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + within;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits for a history event, read in `replica`'s table, that `matches`.
async fn wait_for_history(
    cloud: &LocalCloud,
    fleet: &Fleet,
    replica: &str,
    matches: impl Fn(&FailoverEvent) -> bool,
) -> Result<FailoverEvent> {
    let clients = cloud.clients();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = crate::ops::all_history(fleet, &clients, Some(replica)).await?;
        if let Some(event) = events.into_iter().find(|e| matches(e)) {
            return Ok(event);
        }
        if Instant::now() > deadline {
            bail!("no such event in the history read in {replica} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
