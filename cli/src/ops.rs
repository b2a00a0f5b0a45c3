//! Operator commands: `status`, `drain`, `undrain`, `history`, and the local cloud's
//! `resolve` view. They read and act through the same adapters the functions use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use comfy_table::Table;
use meridian::adapters::{read_history, HealthDeps};
use meridian::aws::ClientFactory;
use meridian::failover::{Action, Input, RegionHealth};
use meridian::fleet::Fleet;
use meridian::health::{apply, FailoverEvent, HealthStore, Trigger};
use meridian::routing::{resolve, RecordHealth, Resolution};
use serde::Serialize;

/// Where a command finds the fleet and AWS.
#[derive(Args, Clone)]
pub struct Target {
    /// The fleet file.
    #[arg(long, env = "MERIDIAN_FLEET", default_value = "fleet.example.toml")]
    pub fleet: PathBuf,
    /// Talk to the running local cloud (`meridian local up`) instead of the AWS endpoint
    /// the environment configures.
    #[arg(long)]
    pub local: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl Target {
    pub fn load(&self) -> Result<(Fleet, ClientFactory)> {
        let fleet = Fleet::load(&self.fleet)
            .with_context(|| format!("reading {}", self.fleet.display()))?;
        let clients = if self.local {
            ClientFactory::for_endpoint(crate::local::running_endpoint()?)
        } else {
            ClientFactory::from_env()
        };
        Ok((fleet, clients))
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%H:%M:%S%.3f").to_string())
}

/// One region as `meridian status` shows it.
#[derive(Debug, Serialize)]
pub struct RegionStatus {
    pub region: String,
    pub health: RegionHealth,
    /// False when no failover record exists yet (the region never had an incident).
    pub recorded: bool,
    pub health_check_inverted: bool,
    pub serving: String,
}

/// The endpoint configuration a region serves, or `-` when it cannot be read.
pub async fn serving_config(
    clients: &ClientFactory,
    region: &meridian::fleet::RegionSpec,
) -> String {
    aws_sdk_sagemaker::Client::new(&clients.config(&region.name).await)
        .describe_endpoint()
        .endpoint_name(&region.endpoint)
        .send()
        .await
        .ok()
        .and_then(|e| e.endpoint_config_name().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// Every region's health, DNS state and serving endpoint configuration.
pub async fn region_statuses(fleet: &Fleet, clients: &ClientFactory) -> Result<Vec<RegionStatus>> {
    let mut statuses = Vec::new();
    for region in &fleet.regions {
        let deps = HealthDeps::new(clients, fleet, &region.name).await;
        let stored = deps.store.load(&region.name).await?;
        let recorded = stored.is_some();
        let health =
            stored.map_or_else(|| RegionHealth::new(&region.name, Utc::now()), |v| v.value);
        let inverted = deps.dns.is_inverted(&region.name).await?;
        let serving = serving_config(clients, region).await;
        statuses.push(RegionStatus {
            region: region.name.clone(),
            health,
            recorded,
            health_check_inverted: inverted,
            serving,
        });
    }
    Ok(statuses)
}

pub async fn status(target: Target) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let statuses = region_statuses(&fleet, &clients).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", status_table(&statuses));
    Ok(ExitCode::SUCCESS)
}

pub fn status_table(statuses: &[RegionStatus]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "region",
        "health",
        "since",
        "why",
        "health check",
        "serving",
    ]);
    for status in statuses {
        table.add_row([
            status.region.clone(),
            serde_json::to_value(status.health.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            status
                .health
                .since
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            status.health.reason.clone(),
            if status.health_check_inverted {
                "inverted (drained)".into()
            } else {
                "normal".into()
            },
            status.serving.clone(),
        ]);
    }
    table
}

/// `drain` and `undrain`.
pub async fn manual(target: Target, region: &str, input: Input) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let deps = HealthDeps::new(&clients, &fleet, region).await;
    let trigger = Trigger {
        id: format!("manual#{}", uuid::Uuid::new_v4()),
        input,
        alarm_time: None,
        received: Utc::now(),
    };
    let applied = apply(
        &fleet,
        region,
        &trigger,
        &deps.store,
        &deps.dns,
        &deps.scaler,
        Utc::now,
    )
    .await?;
    if target.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "action": format!("{:?}", applied.action), "health": applied.health, "event": applied.event })
            )?
        );
    }
    match applied.action {
        Action::Suppressed { reason } => {
            eprintln!("refused: {reason}");
            Ok(ExitCode::FAILURE)
        }
        action => {
            if !target.json {
                let state = serde_json::to_value(applied.health.state)?;
                println!(
                    "{region}: {} ({}; {})",
                    state.as_str().unwrap_or_default(),
                    applied.health.reason,
                    match action {
                        Action::Drain => "health check inverted",
                        Action::Restore => "health check restored",
                        _ => "nothing to change",
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// All regions' failover events, oldest first.
pub async fn all_history(fleet: &Fleet, clients: &ClientFactory) -> Result<Vec<FailoverEvent>> {
    let mut events = Vec::new();
    for region in &fleet.regions {
        let dynamodb = aws_sdk_dynamodb::Client::new(&clients.config(&region.name).await);
        events.extend(read_history(&dynamodb, &fleet.registry_table, &region.name).await?);
    }
    events.sort_by_key(|e| e.decided);
    Ok(events)
}

pub async fn history(target: Target) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let events = all_history(&fleet, &clients).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", history_table(&events));
    Ok(ExitCode::SUCCESS)
}

pub fn history_table(events: &[FailoverEvent]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "decided (UTC)",
        "region",
        "what",
        "alarm",
        "alarm changed",
        "received",
        "flipped",
        "alarm→flip",
        "reason",
    ]);
    for event in events {
        table.add_row([
            event.decided.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            event.region.clone(),
            format!("{} ({} → {})", event.kind, event.from_state, event.to_state),
            event.alarm.clone().unwrap_or_else(|| "-".into()),
            time(event.alarm_time),
            time(Some(event.received)),
            time(event.flipped),
            event
                .reaction_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
            event.reason.clone(),
        ]);
    }
    table
}

/// Client locations `resolve` answers for: the fleet's regions and a few others.
const CLIENT_LOCATIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "sa-east-1",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
];

/// Which region each client location is routed to right now.
pub async fn resolutions(fleet: &Fleet, clients: &ClientFactory) -> Result<Vec<Resolution>> {
    let route53 = aws_sdk_route53::Client::new(&clients.config("us-east-1").await);
    let dns = meridian::adapters::Route53Switch::new(route53.clone(), fleet.name.clone());
    let mut records = Vec::new();
    for region in &fleet.regions {
        let id = dns.health_check_id(&region.name).await?;
        let check = route53
            .get_health_check()
            .health_check_id(id)
            .send()
            .await?;
        let config = check.health_check().and_then(|c| c.health_check_config());
        let endpoint_healthy = aws_sdk_sagemaker::Client::new(&clients.config(&region.name).await)
            .describe_endpoint()
            .endpoint_name(&region.endpoint)
            .send()
            .await
            .ok()
            .and_then(|e| e.endpoint_status().map(|s| s.as_str() == "InService"))
            .unwrap_or(false);
        records.push(RecordHealth {
            region: region.name.clone(),
            endpoint_healthy,
            inverted: config.and_then(|c| c.inverted()).unwrap_or(false),
            disabled: config.and_then(|c| c.disabled()).unwrap_or(false),
        });
    }
    let mut locations: Vec<&str> = fleet.region_names();
    locations.extend(
        CLIENT_LOCATIONS
            .iter()
            .filter(|l| !fleet.region_names().contains(l)),
    );
    Ok(locations
        .into_iter()
        .map(|client| resolve(client, &records))
        .collect())
}

pub fn resolution_table(resolutions: &[Resolution]) -> Table {
    let mut table = Table::new();
    table.set_header(["client in", "routed to"]);
    for resolution in resolutions {
        let to = resolution.region.clone().unwrap_or_else(|| "-".into());
        table.add_row([
            resolution.client.clone(),
            if resolution.failed_open {
                format!("{to} (fail-open: no healthy record)")
            } else {
                to
            },
        ]);
    }
    table
}
