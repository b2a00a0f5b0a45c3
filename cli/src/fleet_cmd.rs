//! `meridian fleet`: fleet file checks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use comfy_table::Table;
use meridian::fleet::Fleet;

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Validate a fleet file; every problem is reported with its field.
    Check {
        /// The fleet file.
        #[arg(env = "MERIDIAN_FLEET", default_value = "fleet.example.toml")]
        file: PathBuf,
        /// Print the parsed fleet as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Exit code for an invalid fleet file (distinct from other failures).
const INVALID: u8 = 2;

pub fn run(command: FleetCommand) -> Result<ExitCode> {
    let FleetCommand::Check { file, json } = command;
    let fleet = match Fleet::load(&file) {
        Ok(fleet) => fleet,
        Err(error) => {
            eprintln!("{}: {error}", file.display());
            return Ok(ExitCode::from(INVALID));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&fleet)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: fleet {} ({}), primary {}, {} regions",
        file.display(),
        fleet.name,
        fleet.pattern,
        fleet.primary_region,
        fleet.regions.len()
    );
    let mut table = Table::new();
    table.set_header(["region", "bucket", "endpoint", "instances", "time zone"]);
    for region in &fleet.regions {
        table.add_row([
            region.name.clone(),
            region.bucket.clone(),
            region.endpoint.clone(),
            format!(
                "{} × {} ({}–{})",
                region.instance_count,
                region.instance_type,
                region.min_instances,
                region.max_instances
            ),
            region.time_zone.to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
