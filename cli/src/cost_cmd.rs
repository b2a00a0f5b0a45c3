//! `meridian cost`: the fleet's monthly cost from its declared capacity and windows, per
//! region and in total, as active-active, active-passive and single-region, with the
//! arithmetic shown. Reads the fleet file only; calls no AWS API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use comfy_table::Table;
use meridian::cost::{estimate, PatternCost, RegionCost};
use meridian::fleet::Fleet;

#[derive(Args)]
pub struct CostArgs {
    /// The fleet file.
    #[arg(long, env = "MERIDIAN_FLEET", default_value = "fleet.example.toml")]
    pub fleet: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn usd(value: f64) -> String {
    let cents = (value * 100.0).round() as i64;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{:02}", cents % 100)
}

fn hours(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    format!("{rounded}")
}

/// `(126 h × 2 + 42 h × 2 night)/week × 720/168 = 1440 h × $1.80`
fn arithmetic(region: &RegionCost, hours_per_month: f64) -> String {
    let spans: Vec<String> = region
        .spans
        .iter()
        .map(|s| {
            let name = s
                .window
                .as_deref()
                .map_or(String::new(), |w| format!(" {w}"));
            format!("{} h × {}{name}", hours(s.hours_per_week), s.instances)
        })
        .collect();
    format!(
        "({})/week × {}/168 = {} instance-h × {}/h",
        spans.join(" + "),
        hours(hours_per_month),
        hours(region.instance_hours_per_month),
        usd(region.usd_per_hour)
    )
}

/// The table `meridian cost` prints: one block of rows per pattern, then its total.
pub fn table(fleet: &Fleet, patterns: &[PatternCost]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "pattern",
        "region",
        "instance type",
        "arithmetic",
        "per month",
    ]);
    for pattern in patterns {
        let marker = if pattern.pattern == fleet.pattern.to_string() {
            " (this fleet)"
        } else {
            ""
        };
        for (i, region) in pattern.regions.iter().enumerate() {
            let name = if i == 0 {
                format!("{}{marker}\n{}", pattern.pattern, pattern.rule)
            } else {
                String::new()
            };
            table.add_row([
                name,
                region.region.clone(),
                region.instance_type.clone(),
                arithmetic(region, fleet.cost.hours_per_month),
                usd(region.usd_per_month),
            ]);
        }
        table.add_row([
            String::new(),
            "total".into(),
            String::new(),
            String::new(),
            usd(pattern.usd_per_month),
        ]);
    }
    table
}

pub fn run(args: CostArgs) -> Result<ExitCode> {
    let fleet =
        Fleet::load(&args.fleet).with_context(|| format!("reading {}", args.fleet.display()))?;
    let patterns = estimate(&fleet, &fleet.cost)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "hours_per_month": fleet.cost.hours_per_month,
                "patterns": patterns,
            }))?
        );
    } else {
        println!("{}", table(&fleet, &patterns));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    #[test]
    fn shows_the_arithmetic_and_the_totals() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let patterns = estimate(&fleet, &fleet.cost).expect("priced");
        let text = table(&fleet, &patterns).to_string();
        for want in [
            "active-active (this fleet)",
            "(168 h × 2)/week × 720/168 = 1440 instance-h × $1.50/h",
            "$2,160.00",
            "(126 h × 2 + 42 h × 2 night)/week × 720/168 = 1440 instance-h × $1.80/h",
            "$7,084.80",
            "$5,918.40",
            "$6,480.00",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert_eq!(usd(1_234_567.891), "$1,234,567.89");
        assert_eq!(usd(0.5), "$0.50");
    }
}
