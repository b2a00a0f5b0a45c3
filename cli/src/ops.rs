//! Operator commands: `status`, `drain`, `undrain`, `history`, and the local cloud's
//! `resolve` view. They read and act through the same adapters the functions use.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use comfy_table::Table;
use meridian::adapters::{read_history, HealthDeps, HttpFrontDoorProbe};
use meridian::aws::ClientFactory;
use meridian::drift::Drift;
use meridian::failover::{Action, Input, RegionHealth};
use meridian::fleet::Fleet;
use meridian::health::{apply, FailoverEvent, FrontDoorProbe, HealthStore, SystemClock, Trigger};
use meridian::registry::Registry;
use meridian::repair::Repair;
use meridian::routing::Resolution;
use serde::Serialize;

use crate::target::Target;

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
    /// The region whose table replica the record was read from.
    pub record_from: String,
    /// What the region's front door answers to `GET /health` now (what Route 53's
    /// checkers see), or why it did not answer; `-` while its URL is not published yet.
    pub front_door_health: String,
    pub serving: String,
    /// What the region's endpoint serves that the registry's active version does not, as
    /// its drift check recorded it (also in `health`); `null` when in sync or not checked.
    pub drift: Option<Drift>,
    /// The region's latest drift repair (README, "Drift repair"): running, succeeded or
    /// failed, with why; `null` when none was ever started or the records could not be read.
    pub repair: Option<Repair>,
}

/// The regions whose replicas a read may use, the requested one first.
fn replica_order<'a>(fleet: &'a Fleet, requested: Option<&'a str>) -> Vec<&'a str> {
    match requested {
        Some(region) => vec![region],
        None => fleet.region_names(),
    }
}

/// The first replica (in [`replica_order`]) that answers a read, with its store: reads of
/// every region's records go there, so one dark region cannot hide the others.
pub async fn reachable_replica(
    fleet: &Fleet,
    clients: &ClientFactory,
    requested: Option<&str>,
) -> Result<(String, HealthDeps)> {
    let mut failures = Vec::new();
    for region in replica_order(fleet, requested) {
        let deps = HealthDeps::new(clients, fleet, region).await;
        match deps.store.load(region).await {
            Ok(_) => return Ok((region.to_owned(), deps)),
            Err(error) => failures.push(format!("{region}: {error}")),
        }
    }
    anyhow::bail!("no table replica answered: {}", failures.join("; "))
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

/// Every region's health, what its front door answers, and its serving endpoint
/// configuration. Each record is read in the region's own replica (where it is written);
/// when that replica does not answer (the region is dark), in the first one that does, as
/// replicated there.
pub async fn region_statuses(
    fleet: &Fleet,
    clients: &ClientFactory,
    replica: Option<&str>,
) -> Result<Vec<RegionStatus>> {
    let probe = HttpFrontDoorProbe::default();
    let mut repairs = latest_repairs(fleet, clients, replica).await;
    let mut fallback = None;
    let mut statuses = Vec::new();
    for region in &fleet.regions {
        let own = HealthDeps::new(clients, fleet, &region.name).await;
        let (stored, record_from) = match (replica, own.store.load(&region.name).await) {
            (None, Ok(stored)) => (stored, region.name.clone()),
            _ => {
                if fallback.is_none() {
                    fallback = Some(reachable_replica(fleet, clients, replica).await?);
                }
                let (from, deps) = fallback.as_ref().context("a replica answered")?;
                (deps.store.load(&region.name).await?, from.clone())
            }
        };
        let recorded = stored.is_some();
        let health =
            stored.map_or_else(|| RegionHealth::new(&region.name, Utc::now()), |v| v.value);
        let front_door_health = match &health.front_door {
            Some(url) => probe.probe(url).await.describe(),
            None => "-".into(),
        };
        let serving = serving_config(clients, region).await;
        let drift = health.drift.clone();
        let repair = repairs.remove(&region.name);
        statuses.push(RegionStatus {
            region: region.name.clone(),
            health,
            recorded,
            record_from,
            front_door_health,
            serving,
            drift,
            repair,
        });
    }
    Ok(statuses)
}

/// Every region's latest drift repair, read in the requested replica or the primary's
/// (where they are written). Best effort: status still shows the regions' health when
/// they cannot be read.
async fn latest_repairs(
    fleet: &Fleet,
    clients: &ClientFactory,
    replica: Option<&str>,
) -> BTreeMap<String, Repair> {
    let region = replica.unwrap_or(&fleet.primary_region);
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(&clients.config(region).await),
        table: fleet.registry_table.clone(),
    };
    match registry.repairs().await {
        Ok(repairs) => repairs.into_iter().map(|r| (r.region.clone(), r)).collect(),
        Err(error) => {
            eprintln!("drift repairs not shown: {error}");
            BTreeMap::new()
        }
    }
}

/// A repair as the status table shows it.
fn describe_repair(repair: &Repair) -> String {
    let status = serde_json::to_value(repair.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut text = format!(
        "{status} ({}/{}, {})",
        repair.model, repair.version, repair.execution
    );
    if repair.status == meridian::repair::RepairStatus::Failed {
        text += &format!(
            ": {}",
            repair.reason.as_deref().unwrap_or("no reason recorded")
        );
    }
    text
}

pub async fn status(target: Target) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let statuses = region_statuses(&fleet, &clients, target.replica.as_deref()).await?;
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
        "front door /health",
        "serving",
        "drift",
        "repair",
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
            status
                .front_door_health
                .chars()
                .take(60)
                .collect::<String>(),
            status.serving.clone(),
            status.drift.as_ref().map_or_else(
                || "-".into(),
                |drift| {
                    format!(
                        "since {}: {}",
                        drift.since.format("%Y-%m-%d %H:%M:%S UTC"),
                        drift.describe()
                    )
                },
            ),
            status
                .repair
                .as_ref()
                .map_or_else(|| "-".into(), describe_repair),
        ]);
    }
    table
}

/// `drain` and `undrain`: a write of the region's record in that region's own replica
/// (after the settle time, for a drain), so they work while any other region, us-east-1
/// and the primary included, is down. Route 53's checkers follow the front door.
pub async fn manual(target: Target, region: &str, input: Input) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    if fleet.region(region).is_none() {
        anyhow::bail!(
            "{region} is not a region of fleet {} (its regions: {})",
            fleet.name,
            fleet.region_names().join(", ")
        );
    }
    let deps = HealthDeps::new(&clients, &fleet, region).await;
    let trigger = Trigger {
        id: format!("manual#{}", uuid::Uuid::new_v4()),
        input,
        alarm_time: None,
        received: Utc::now(),
    };
    if matches!(trigger.input, Input::ManualDrain { .. }) && !target.json {
        eprintln!(
            "{region}: writing the intent to drain, then waiting {} s for the other regions' \
             intents to replicate (failover.settle_seconds)",
            fleet.failover.settle.as_secs()
        );
    }
    let applied = apply(&fleet, region, &trigger, &deps.store, &SystemClock).await?;
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
                        Action::Drain => "recorded; its front door's /health now answers 503",
                        Action::Restore => "recorded; its front door's /health now answers 200",
                        _ => "nothing to change",
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// All regions' failover events, oldest first: from `replica` alone when given, else from
/// every replica that answers, merged (each region writes its own decisions in its own
/// replica, and its peers write what their probes saw of it in theirs; a replica that is
/// dark, or behind, does not hide what the others hold).
pub async fn all_history(
    fleet: &Fleet,
    clients: &ClientFactory,
    replica: Option<&str>,
) -> Result<Vec<FailoverEvent>> {
    let mut events: BTreeMap<(String, String), FailoverEvent> = BTreeMap::new();
    let mut failures = Vec::new();
    for source in replica_order(fleet, replica) {
        let dynamodb = aws_sdk_dynamodb::Client::new(&clients.config(source).await);
        for region in &fleet.regions {
            match read_history(&dynamodb, &fleet.registry_table, &region.name).await {
                Ok(read) => events.extend(
                    read.into_iter()
                        .map(|e| ((e.region.clone(), e.id.clone()), e)),
                ),
                Err(error) => {
                    failures.push(format!("{source}: {error}"));
                    break;
                }
            }
        }
    }
    if failures.len() == replica_order(fleet, replica).len() {
        anyhow::bail!("no table replica answered: {}", failures.join("; "));
    }
    let mut events: Vec<FailoverEvent> = events.into_values().collect();
    events.sort_by_key(|e| e.decided);
    Ok(events)
}

pub async fn history(target: Target) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let events = all_history(&fleet, &clients, target.replica.as_deref()).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", history_table(&events));
    if let Some(drills) = crate::drill_cmd::drills_table(&fleet, &clients).await? {
        println!("\nDrills\n{drills}");
    }
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
        "recorded",
        "alarm→record",
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
            time(event.recorded),
            event
                .reaction_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
            event.reason.clone(),
        ]);
    }
    table
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
