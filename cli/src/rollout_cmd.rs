//! `meridian rollout status`: where a model's versions stand, per region, with the fleet's
//! rollout lock (holder, execution, age) and queue, and the operators' commands; and
//! `meridian rollout pause|resume|promote|abort` ([`crate::operator_cmd`]).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use comfy_table::Table;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian::operator::{OperatorAction, OperatorControl};
use meridian::registry::{Registry, VersionRecord};
use meridian::rollout::deployment_name;
use serde::Serialize;

use crate::operator_cmd::{self, OperatorArgs};
use crate::target::Target;

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
    /// Hold the model's running rollout before its next phase (and through the bake).
    Pause(OperatorArgs),
    /// Let a paused rollout go on.
    Resume(OperatorArgs),
    /// Skip the rest of Meridian's bake (commit_bake_seconds): commit now.
    Promote(OperatorArgs),
    /// Roll every region back now and fail the version.
    Abort(OperatorArgs),
}

/// The fleet's rollout lock as `rollout status` shows it.
#[derive(Debug, Serialize)]
pub struct LockReport {
    /// `model/version` holding the lock.
    pub holder: Option<String>,
    /// The region, when the holder is a drift repair of that region (README, "Drift
    /// repair") rather than a rollout.
    pub repair: Option<String>,
    pub execution: Option<String>,
    /// The execution's status in Step Functions (`RUNNING`, `ABORTED`, ...), if read.
    pub execution_status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    /// `model/version`, oldest first.
    pub queue: Vec<String>,
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
    /// Operators' commands to this version's rollout, and where they leave it.
    pub operator: OperatorControl,
    /// The fleet's rollout lock (shared by every model).
    pub lock: LockReport,
}

pub async fn run(command: RolloutCommand) -> Result<ExitCode> {
    let (model, version, target) = match command {
        RolloutCommand::Status {
            model,
            version,
            target,
        } => (model, version, target),
        RolloutCommand::Pause(args) => return operator_cmd::run(OperatorAction::Pause, args).await,
        RolloutCommand::Resume(args) => {
            return operator_cmd::run(OperatorAction::Resume, args).await
        }
        RolloutCommand::Promote(args) => {
            return operator_cmd::run(OperatorAction::Promote, args).await
        }
        RolloutCommand::Abort(args) => return operator_cmd::run(OperatorAction::Abort, args).await,
    };
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
        print_lock(&lock_report(&fleet, &clients, &control).await?);
    }
    if let Some(first) = reports.first() {
        print_lock(&first.lock);
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
    let operator = control
        .operator_control(&record.model, &record.version)
        .await?;
    Ok(RolloutReport {
        operator,
        lock: lock_report(fleet, clients, &control).await?,
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

/// The fleet's lock, with its holder's execution status from Step Functions (best effort:
/// an execution that ended without releasing the lock shows here until the next upload or
/// the execution-ended event releases it).
async fn lock_report(
    fleet: &Fleet,
    clients: &ClientFactory,
    control: &Registry,
) -> Result<LockReport> {
    let (lock, _) = control.lock().await?;
    let holder = lock.holder.as_ref();
    let execution = holder.and_then(|h| h.execution.clone());
    let execution_status = match &execution {
        Some(name) => execution_status(fleet, clients, name).await,
        None => None,
    };
    Ok(LockReport {
        holder: holder.map(|h| format!("{}/{}", h.model, h.version)),
        repair: holder.and_then(|h| h.repair.clone()),
        execution,
        execution_status,
        since: holder.map(|h| h.since),
        age_seconds: holder.map(|h| (Utc::now() - h.since).num_seconds()),
        queue: lock
            .queue
            .iter()
            .map(|q| format!("{}/{}", q.model, q.version))
            .collect(),
    })
}

/// The Step Functions status of a rollout execution (the state machine's ARN built from
/// the caller's account), or `None` when it cannot be read.
async fn execution_status(fleet: &Fleet, clients: &ClientFactory, name: &str) -> Option<String> {
    let config = clients.config(&fleet.primary_region).await;
    let identity = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .ok()?;
    let state_machine = format!(
        "arn:aws:states:{}:{}:stateMachine:{}",
        fleet.primary_region,
        identity.account()?,
        meridian::names::rollout_state_machine_name(&fleet.name)
    );
    aws_sdk_sfn::Client::new(&config)
        .describe_execution()
        .execution_arn(meridian::rollout_end::execution_arn(&state_machine, name))
        .send()
        .await
        .ok()
        .map(|d| d.status().as_str().to_owned())
}

fn print_lock(lock: &LockReport) {
    match &lock.holder {
        Some(holder) => println!(
            "rollout lock: held by {holder}{} for {} s (execution {} {})",
            lock.repair
                .as_ref()
                .map_or_else(String::new, |region| format!(" (drift repair of {region})")),
            lock.age_seconds.unwrap_or_default(),
            lock.execution.as_deref().unwrap_or("not started yet"),
            lock.execution_status.as_deref().unwrap_or("")
        ),
        None => println!("rollout lock: free"),
    }
    if !lock.queue.is_empty() {
        println!("queued: {}", lock.queue.join(", "));
    }
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
    let operator = &report.operator;
    if operator.paused || operator.promoted || operator.aborted {
        let flags: Vec<&str> = [
            (operator.paused, "paused"),
            (operator.promoted, "promoted"),
            (operator.aborted, "aborted"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        println!("operator: {}", flags.join(", "));
    }
    for command in &operator.history {
        println!(
            "  {} {} by {}{}",
            time(Some(command.at)),
            command.action.as_str(),
            command.who,
            command
                .why
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        );
    }
    println!("{}", region_table(report));
}
