//! `meridian capacity`: per region, the capacity the fleet file declares, what Application
//! Auto Scaling has in force (read in that region), and the next scheduled change in local
//! and UTC time.

use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use comfy_table::Table;
use meridian::capacity::{self, Change, InForce, Window};
use meridian::fleet::{Fleet, RegionSpec};
use meridian::scaling::{managed_prefix, AutoScaling, ScalingState};
use meridian::scaling_aws::AasAutoScaling;
use serde::Serialize;

use crate::target::Target;

/// One region as `meridian capacity` shows it.
#[derive(Debug, Serialize)]
pub struct RegionCapacity {
    pub region: String,
    pub time_zone: String,
    pub instance_type: String,
    /// The desired count a rollout deploys with.
    pub desired: u32,
    /// Floor and ceiling outside every window.
    pub base: capacity::Bounds,
    pub target_invocations_per_instance: Option<u32>,
    pub windows: Vec<Window>,
    /// What the file puts in force now.
    pub declared_now: InForce,
    /// What AAS has, or why it could not be read.
    pub in_force: std::result::Result<ScalingState, String>,
    pub next_change: Option<Change>,
}

/// The view of one region from the file, what AAS holds and the time.
pub fn region_capacity(
    region: &RegionSpec,
    in_force: std::result::Result<ScalingState, String>,
    now: DateTime<Utc>,
) -> RegionCapacity {
    RegionCapacity {
        region: region.name.clone(),
        time_zone: region.time_zone.name().to_owned(),
        instance_type: region.instance_type.clone(),
        desired: region.instance_count,
        base: capacity::base_bounds(region),
        target_invocations_per_instance: region.target_invocations_per_instance,
        windows: region.windows.clone(),
        declared_now: capacity::in_force(region, now),
        in_force,
        next_change: capacity::next_change(region, now),
    }
}

fn window_text(window: &Window) -> String {
    let days = if window.days.is_empty() {
        "daily".to_owned()
    } else {
        window
            .days
            .iter()
            .map(|d| capacity::day_name(*d))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{} {}–{} {days}: {}..{}",
        window.name,
        window.start.format("%H:%M"),
        window.end.format("%H:%M"),
        window.min_instances,
        window.max_instances
    )
}

fn declared_text(view: &RegionCapacity) -> String {
    let mut lines = vec![format!(
        "{} x{} ({}..{})",
        view.instance_type, view.desired, view.base.min, view.base.max
    )];
    if let Some(target) = view.target_invocations_per_instance {
        lines.push(format!("target {target} invocations/instance"));
    }
    lines.extend(view.windows.iter().map(window_text));
    let now = &view.declared_now;
    lines.push(format!(
        "now {}..{}{}",
        now.bounds.min,
        now.bounds.max,
        now.window
            .as_deref()
            .map_or(String::new(), |w| format!(" ({w})"))
    ));
    lines.join("\n")
}

fn in_force_text(state: &std::result::Result<ScalingState, String>, prefix: &str) -> String {
    let state = match state {
        Ok(state) => state,
        Err(error) => return format!("unreadable: {error}"),
    };
    let mut lines = Vec::new();
    match state.target {
        None => lines.push("no scalable target".to_owned()),
        Some(t) => lines.push(format!(
            "{}..{}{}",
            t.min,
            t.max,
            if t.suspended.scheduled {
                " (schedules suspended)"
            } else {
                ""
            }
        )),
    }
    for policy in &state.policies {
        lines.push(format!("{} {}", policy.name, policy.target_value));
    }
    for action in &state.actions {
        let mark = if action.name.starts_with(prefix) {
            ""
        } else {
            " (not Meridian's)"
        };
        lines.push(format!(
            "{} {} {}{mark}",
            action.name,
            action.schedule,
            action.timezone.as_deref().unwrap_or("UTC")
        ));
    }
    lines.join("\n")
}

fn next_text(change: Option<&Change>) -> String {
    match change {
        None => "-".into(),
        Some(change) => format!(
            "{} {} → {}..{}\n{}\n{}",
            change.window,
            change.edge,
            change.bounds.min,
            change.bounds.max,
            change.local.format("%a %Y-%m-%d %H:%M %Z"),
            change.at.format("%Y-%m-%d %H:%M UTC"),
        ),
    }
}

/// The table `meridian capacity` prints.
pub fn table(fleet: &Fleet, views: &[RegionCapacity]) -> Table {
    let prefix = managed_prefix(fleet);
    let mut table = Table::new();
    table.set_header(["region", "declared", "in force (AAS)", "next change"]);
    for view in views {
        table.add_row([
            format!("{}\n{}", view.region, view.time_zone),
            declared_text(view),
            in_force_text(&view.in_force, &prefix),
            next_text(view.next_change.as_ref()),
        ]);
    }
    table
}

pub async fn run(target: Target) -> Result<ExitCode> {
    let (fleet, clients) = target.load()?;
    let now = Utc::now();
    let mut views = Vec::new();
    for region in &fleet.regions {
        let autoscaling = AasAutoScaling::new(&clients, &region.name, &fleet.variant_name).await;
        let in_force = autoscaling
            .read(&region.endpoint)
            .await
            .map_err(|e| e.to_string());
        views.push(region_capacity(region, in_force, now));
    }
    if target.json {
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        println!("{}", table(&fleet, &views));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian::scaling::{desired, ScheduledAction};

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    #[test]
    fn shows_the_declaration_what_is_in_force_and_the_next_change() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        // Tuesday 2026-03-03, 12:00 in Singapore.
        let now = DateTime::parse_from_rfc3339("2026-03-03T04:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let mut state = desired(&fleet, apac, now);
        state.actions.push(ScheduledAction {
            name: "by-hand".into(),
            schedule: "cron(0 9 * * ? *)".into(),
            timezone: None,
            min: Some(2),
            max: Some(2),
        });
        let view = region_capacity(apac, Ok(state), now);
        let text = table(&fleet, &[view]).to_string();
        for want in [
            "ap-southeast-1",
            "Asia/Singapore",
            "ml.g5.2xlarge x2 (2..4)",
            "target 100 invocations/instance",
            "night 00:00–06:00 daily: 1..2",
            "now 2..4",
            "meridian-demo.night.start cron(0 0 * * ? *) Asia/Singapore",
            "by-hand cron(0 9 * * ? *) UTC (not Meridian's)",
            "night start → 1..2",
            "Wed 2026-03-04 00:00 +08",
            "2026-03-03 16:00 UTC",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let unreadable = region_capacity(apac, Err("region down".into()), now);
        let text = table(&fleet, &[unreadable]).to_string();
        assert!(text.contains("unreadable: region down"), "{text}");
    }
}
