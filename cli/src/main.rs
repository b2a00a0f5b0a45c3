//! `meridian`: the operator CLI. Runs the local cloud, checks fleet files, and (as the
//! control plane grows) uploads models and shows rollouts and failovers.

mod capacity_cmd;
mod cost_cmd;
mod demo;
mod drill_cmd;
mod fleet_cmd;
mod local;
mod operator_cmd;
mod ops;
mod rollout_cmd;
mod target;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Roll LLM model versions out to SageMaker in several regions, and fail regions over and back."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole story on a throw-away local cloud: provision the fleet, verify it,
    /// upload a sample object and watch it reach every region.
    Demo {
        /// The fleet file.
        #[arg(long, env = "MERIDIAN_FLEET", default_value = "fleet.example.toml")]
        fleet: PathBuf,
    },
    /// Check a fleet file and summarise it.
    Fleet {
        #[command(subcommand)]
        command: fleet_cmd::FleetCommand,
    },
    /// Model rollouts.
    Rollout {
        #[command(subcommand)]
        command: rollout_cmd::RolloutCommand,
    },
    /// Each region's health, since when and why, its DNS state and what it serves.
    Status(target::Target),
    /// Take a region out of DNS by hand; it stays out until `undrain`, whatever alarms say.
    Drain {
        region: String,
        /// Why (recorded in the history).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: target::Target,
    },
    /// Return a region drained by hand to alarm control (back into DNS if no alarm fires).
    Undrain {
        region: String,
        #[command(flatten)]
        target: target::Target,
    },
    /// Failover events with their timings, oldest first, then the drills.
    History(target::Target),
    /// Failover drills: shift a share of one region's traffic to another step by step.
    Drill {
        #[command(subcommand)]
        command: drill_cmd::DrillCommand,
    },
    /// Per region: the capacity the fleet file declares, what Application Auto Scaling
    /// has in force (read in that region), and the next scheduled change, local and UTC.
    Capacity(target::Target),
    /// Monthly cost from the declared capacity and windows, per region and in total, as
    /// active-active, active-passive and single-region, with the arithmetic shown.
    Cost(cost_cmd::CostArgs),
    /// Print the manifest of a local model version folder (files, sizes, SHA-256, serving),
    /// for uploads with other tools: copy the files first, then this as manifest.json.
    Manifest(upload::ManifestArgs),
    /// Upload a model version folder to the fleet's primary bucket, manifest.json last.
    Upload(upload::UploadArgs),
    /// Start, stop and inspect the local cloud (moto plus Meridian's gateway).
    Local {
        #[command(subcommand)]
        command: local::LocalCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(
        &cli.command,
        Command::Local {
            command: local::LocalCommand::Serve(_)
        }
    );
    if !serving {
        // The demo narrates what its functions log as warnings (a peer unreachable, a
        // missed alarm healed); it shows errors only, unless RUST_LOG says otherwise.
        let default_level = if matches!(cli.command, Command::Demo { .. }) {
            "error"
        } else {
            "warn"
        };
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| default_level.into()),
            )
            .init();
    }
    let result = match cli.command {
        Command::Demo { fleet } => demo::run(&fleet).await,
        Command::Fleet { command } => fleet_cmd::run(command),
        Command::Local { command } => local::run(command).await,
        Command::Status(target) => ops::status(target).await,
        Command::Rollout { command } => rollout_cmd::run(command).await,
        Command::Drain {
            region,
            reason,
            target,
        } => {
            ops::manual(
                target,
                &region,
                meridian::failover::Input::ManualDrain { reason },
            )
            .await
        }
        Command::Undrain { region, target } => {
            ops::manual(target, &region, meridian::failover::Input::ManualUndrain).await
        }
        Command::History(target) => ops::history(target).await,
        Command::Drill { command } => drill_cmd::run(command).await,
        Command::Capacity(target) => capacity_cmd::run(target).await,
        Command::Cost(args) => cost_cmd::run(args),
        Command::Manifest(args) => upload::manifest(args).await,
        Command::Upload(args) => upload::upload(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
