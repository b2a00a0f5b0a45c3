//! `meridian rollout status`: where a model's versions stand, per region.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use comfy_table::Table;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::registry::{Registry, VersionRecord};
use meridian::rollout::deployment_name;
use serde::Serialize;

use crate::ops::Target;

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// Per region: replicated, deployed, verified and the version served, with times.
    Status {
        /// The model [default: every model in the registry].
        model: Option<String>,
        /// A version [default: the model's latest].
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// One region's row of `rollout status`.
#[derive(Debug, Serialize)]
pub struct RegionRow {
    pub region: String,
    pub replicated: Option<DateTime<Utc>>,
    pub replica_problem: Option<String>,
    pub fast_copied: Option<DateTime<Utc>>,
    pub deployed: Option<DateTime<Utc>>,
    pub verified: Option<DateTime<Utc>>,
    pub rolled_back: Option<DateTime<Utc>>,
    pub serving: String,
}

/// A version's rollout as `rollout status` reports it.
#[derive(Debug, Serialize)]
pub struct RolloutReport {
    pub model: String,
    pub version: String,
    pub status: String,
    pub reason: Option<String>,
    pub active: Option<String>,
    pub phases: BTreeMap<String, DateTime<Utc>>,
    pub regions: Vec<RegionRow>,
}

pub async fn run(command: RolloutCommand) -> Result<ExitCode> {
    let RolloutCommand::Status {
        model,
        version,
        target,
    } = command;
    let (fleet, clients) = target.load()?;
    let control = registry(&fleet, &clients, &fleet.primary_region).await;
    let models = match model {
        Some(model) => vec![model],
        None => control.models().await?,
    };
    let mut reports = Vec::new();
    for model in models {
        let record = match &version {
            Some(version) => control.version(&model, version).await?,
            None => control.latest_version(&model).await?,
        };
        let record =
            record.with_context(|| format!("no version of model {model} is registered"))?;
        reports.push(report(&fleet, &clients, &record).await?);
    }
    if target.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    if reports.is_empty() {
        println!("no model is registered yet");
    }
    for report in &reports {
        print_report(report);
    }
    Ok(ExitCode::SUCCESS)
}

async fn registry(fleet: &Fleet, clients: &ClientFactory, region: &str) -> Registry {
    Registry {
        client: aws_sdk_dynamodb::Client::new(&clients.config(region).await),
        table: fleet.registry_table.clone(),
    }
}

/// Gathers a version's rollout from the registry (each region's verdict from that
/// region's replica) and the endpoints.
pub async fn report(
    fleet: &Fleet,
    clients: &ClientFactory,
    record: &VersionRecord,
) -> Result<RolloutReport> {
    let control = registry(fleet, clients, &fleet.primary_region).await;
    let active = control.active(&record.model).await?;
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    names.insert(
        deployment_name(&record.model, &record.version, &record.digest),
        record.version.clone(),
    );
    if let Some(active) = &active {
        names.insert(
            deployment_name(&record.model, &active.version, &active.digest),
            active.version.clone(),
        );
    }
    for previous in record
        .regions
        .values()
        .filter_map(|p| p.previous_config.clone())
    {
        names.entry(previous.clone()).or_insert(previous);
    }
    let mut regions = Vec::new();
    for region in &fleet.regions {
        let readiness = registry(fleet, clients, &region.name)
            .await
            .readiness(&record.model, &record.version, &region.name)
            .await?;
        let progress = record
            .regions
            .get(&region.name)
            .cloned()
            .unwrap_or_default();
        let config = crate::ops::serving_config(clients, region).await;
        regions.push(RegionRow {
            region: region.name.clone(),
            replicated: readiness.as_ref().filter(|r| r.ready).map(|r| r.at),
            replica_problem: readiness.filter(|r| !r.ready).map(|r| r.reason),
            fast_copied: progress.fast_copied,
            deployed: progress.deployed,
            verified: progress.verified,
            rolled_back: progress.rolled_back,
            serving: names.get(&config).cloned().unwrap_or(config),
        });
    }
    Ok(RolloutReport {
        model: record.model.clone(),
        version: record.version.clone(),
        status: serde_json::to_value(record.status)?
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        reason: record.reason.clone(),
        active: active.map(|a| a.version),
        phases: record.phases.clone(),
        regions,
    })
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%H:%M:%S%.3f").to_string())
}

pub fn region_table(report: &RolloutReport) -> Table {
    let mut table = Table::new();
    table.set_header([
        "region",
        "replicated",
        "deployed",
        "verified",
        "serving",
        "note",
    ]);
    for row in &report.regions {
        let note = row
            .replica_problem
            .clone()
            .or_else(|| {
                row.rolled_back
                    .map(|t| format!("rolled back at {}", time(Some(t))))
            })
            .or_else(|| {
                row.fast_copied
                    .map(|t| format!("fast-copied at {}", time(Some(t))))
            })
            .unwrap_or_default();
        table.add_row([
            row.region.clone(),
            time(row.replicated),
            time(row.deployed),
            time(row.verified),
            row.serving.clone(),
            note,
        ]);
    }
    table
}

pub fn print_report(report: &RolloutReport) {
    println!(
        "{} {}: {}{} (active: {})",
        report.model,
        report.version,
        report.status,
        report
            .reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default(),
        report.active.as_deref().unwrap_or("none")
    );
    println!("{}", region_table(report));
}
