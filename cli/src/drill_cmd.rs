//! `meridian drill start|status|abort`: failover drills, run by the drill state machine
//! in the primary region ([`meridian::drill`] decides, the drill function acts).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::Table;
use meridian::aws::ClientFactory;
use meridian::drill::{self, DrillRecord, DrillRequest, DEFAULT_BAKE, DEFAULT_STEPS};
use meridian::drill_store::DrillStore;
use meridian::fleet::Fleet;
use meridian::names;
use serde_json::json;

use crate::target::Target;

#[derive(Subcommand)]
pub enum DrillCommand {
    /// Shift a share of FROM's inference to TO through FROM's front door, step by step,
    /// baking each step; abort and restore on any fleet alarm, a drained region or the
    /// shifted traffic's errors; restore at the end.
    Start {
        /// The region whose traffic is shifted.
        #[arg(long)]
        from: String,
        /// The region that takes it.
        #[arg(long)]
        to: String,
        /// The shares, percent of FROM's inference, rising.
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_STEPS)]
        steps: Vec<u32>,
        /// Seconds each step bakes.
        #[arg(long, default_value_t = DEFAULT_BAKE.as_secs())]
        bake: u64,
        #[command(flatten)]
        target: Target,
    },
    /// A drill's steps with their request and error counts, latency and times
    /// [default: the latest drill].
    Status {
        drill_id: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Abort the running drill: its next check restores the traffic.
    Abort {
        /// Why (recorded with the drill).
        #[arg(long, default_value = "operator")]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(command: DrillCommand) -> Result<ExitCode> {
    match command {
        DrillCommand::Start {
            from,
            to,
            steps,
            bake,
            target,
        } => {
            let request = DrillRequest {
                from,
                to,
                steps,
                bake: Duration::from_secs(bake),
            };
            start(target, request).await
        }
        DrillCommand::Status { drill_id, target } => status(target, drill_id).await,
        DrillCommand::Abort { reason, target } => abort(target, &reason).await,
    }
}

async fn store(fleet: &Fleet, clients: &ClientFactory) -> DrillStore {
    DrillStore {
        client: aws_sdk_dynamodb::Client::new(&clients.config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    }
}

async fn start(target: Target, request: DrillRequest) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    drill::validate(&fleet, &request)?;
    let drill_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let sfn = aws_sdk_sfn::Client::new(&clients.config(&fleet.primary_region).await);
    let name = names::drill_state_machine_name(&fleet.name);
    let machine = sfn
        .list_state_machines()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .context("listing the state machines")?
        .into_iter()
        .find(|m| m.name == name)
        .with_context(|| format!("no state machine {name} in {}", fleet.primary_region))?;
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn)
        .name(&drill_id)
        .input(json!({ "drill_id": drill_id, "request": request }).to_string())
        .send()
        .await
        .context("starting the drill")?
        .execution_arn;
    // The Start task refuses (a rollout, another drill, a drained region) or records the
    // drill: wait for either, so the operator learns which.
    let store = store(&fleet, &clients).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if store.record(&drill_id).await.ok().flatten().is_some() {
            println!("drill {drill_id} started ({execution})");
            return Ok(ExitCode::SUCCESS);
        }
        let described = sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .context("reading the drill's execution")?;
        if described.status != aws_sdk_sfn::types::ExecutionStatus::Running {
            let history = sfn
                .get_execution_history()
                .execution_arn(&execution)
                .reverse_order(true)
                .send()
                .await
                .context("reading why the drill did not start")?;
            let cause = history
                .events
                .iter()
                .find_map(|e| e.lambda_function_failed_event_details()?.cause.clone())
                .or_else(|| {
                    history
                        .events
                        .iter()
                        .find_map(|e| e.task_failed_event_details()?.cause.clone())
                })
                .unwrap_or_else(|| format!("{:?}", described.status));
            bail!("drill {drill_id} did not start: {cause}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("drill {drill_id} neither started nor failed within a minute ({execution})")
}

async fn status(target: Target, drill_id: Option<String>) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let records = store(&fleet, &clients).await.records().await?;
    let record = match drill_id {
        Some(id) => records.into_iter().find(|r| r.id == id),
        None => records.into_iter().last(),
    };
    let Some(record) = record else {
        bail!("no drill recorded");
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!(
            "drill {} {} -> {}: {:?}{}",
            record.id,
            record.request.from,
            record.request.to,
            record.status,
            record
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        println!("{}", steps_table(&record));
    }
    Ok(ExitCode::SUCCESS)
}

async fn abort(target: Target, reason: &str) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let store = store(&fleet, &clients).await;
    let Some(drill_id) = store.lock_holder().await? else {
        bail!("no drill is running");
    };
    store.request_abort(&drill_id, reason).await?;
    println!("drill {drill_id}: abort requested; its next check restores the traffic");
    Ok(ExitCode::SUCCESS)
}

/// A drill's steps as `drill status` shows them.
pub fn steps_table(record: &DrillRecord) -> Table {
    let mut table = Table::new();
    table.set_header([
        "step",
        "share",
        "started",
        "ended",
        "requests",
        "errors",
        "mean latency",
    ]);
    for (i, step) in record.steps.iter().enumerate() {
        table.add_row([
            (i + 1).to_string(),
            format!("{}%", step.percent),
            step.started.format("%H:%M:%S").to_string(),
            step.ended
                .map_or_else(|| "-".into(), |t| t.format("%H:%M:%S").to_string()),
            step.counts.requests.to_string(),
            step.counts.errors.to_string(),
            step.counts
                .mean_latency_ms()
                .map_or_else(|| "-".into(), |ms| format!("{ms:.0} ms")),
        ]);
    }
    table
}

/// Every drill, for `meridian history`.
pub async fn drills_table(fleet: &Fleet, clients: &ClientFactory) -> Result<Option<Table>> {
    let records = store(fleet, clients).await.records().await?;
    if records.is_empty() {
        return Ok(None);
    }
    let mut table = Table::new();
    table.set_header([
        "drill started (UTC)",
        "drill",
        "from → to",
        "steps",
        "status",
        "shifted requests (errors)",
        "reason",
    ]);
    for record in records {
        let (requests, errors) = record.steps.iter().fold((0, 0), |(r, e), s| {
            (r + s.counts.requests, e + s.counts.errors)
        });
        table.add_row([
            record.started.format("%Y-%m-%d %H:%M:%S").to_string(),
            record.id.clone(),
            format!("{} → {}", record.request.from, record.request.to),
            format!("{}/{}", record.steps.len(), record.request.steps.len()),
            format!("{:?}", record.status).to_lowercase(),
            format!("{requests} ({errors})"),
            record.reason.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    Ok(Some(table))
}
