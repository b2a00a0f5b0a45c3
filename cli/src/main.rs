//! `meridian`: the operator CLI. Runs the local cloud, checks fleet files, and (as the
//! control plane grows) uploads models and shows rollouts and failovers.

mod demo;
mod fleet_cmd;
mod local;

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
    /// Start, stop and inspect the local cloud (moto plus Meridian's gateway).
    Local {
        #[command(subcommand)]
        command: local::LocalCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { fleet } => demo::run(&fleet).await,
        Command::Fleet { command } => fleet_cmd::run(command),
        Command::Local { command } => local::run(command).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
