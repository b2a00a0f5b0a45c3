//! The tick's capacity reconcile: makes Application Auto Scaling in this region match the
//! region's declared capacity (scalable target, target-tracking policy, scheduled actions
//! of its windows), writing only what differs, so a second tick with nothing changed
//! makes no write call. A drained region or a raised standby is held, never lowered
//! (`meridian::scaling::held_target`). Runs last in the tick, and its failure fails
//! nothing else: the next tick tries again.

use chrono::{DateTime, Utc};
use meridian::failover::RegionHealth;
use meridian::fleet::{Fleet, RegionSpec};
use meridian::health::HealthError;
use meridian::scaling::{desired, diff, held_target, hold, managed_prefix, AutoScaling};
use serde_json::{json, Value};

/// Reconciles `region`'s capacity; `standby_raised` when this tick raised it for its
/// primary. What it did (or why it could not) for the tick's outcome.
pub async fn reconcile<Z: AutoScaling>(
    fleet: &Fleet,
    region: &RegionSpec,
    health: &RegionHealth,
    standby_raised: bool,
    autoscaling: &Z,
    now: DateTime<Utc>,
) -> Value {
    let hold = hold(Some(health), standby_raised);
    match apply(fleet, region, hold, autoscaling, now).await {
        Ok(changes) => json!({ "hold": hold, "changes": changes }),
        Err(error) => {
            tracing::warn!(region = %region.name, %error, "could not reconcile the capacity");
            json!({ "hold": hold, "error": error.to_string() })
        }
    }
}

async fn apply<Z: AutoScaling>(
    fleet: &Fleet,
    region: &RegionSpec,
    hold: Option<meridian::scaling::Hold>,
    autoscaling: &Z,
    now: DateTime<Utc>,
) -> Result<Vec<String>, HealthError> {
    let in_force = autoscaling.read(&region.endpoint).await?;
    let mut want = desired(fleet, region, now);
    want.target = want
        .target
        .map(|target| held_target(target, in_force.target.as_ref(), hold));
    let mut done = Vec::new();
    for change in diff(&want, &in_force, &managed_prefix(fleet)) {
        autoscaling.write(&region.endpoint, &change).await?;
        let line = change.describe();
        tracing::info!(region = %region.name, change = %line, ?hold, "capacity changed");
        done.push(line);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian::failover::HealthState;
    use meridian::scaling::{MemoryAutoScaling, ScalingChange, Suspended, Target};

    const EXAMPLE: &str = include_str!("../../../fleet.example.toml");

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn writes(aas: &MemoryAutoScaling) -> Vec<ScalingChange> {
        std::mem::take(&mut *aas.writes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    #[tokio::test]
    async fn a_second_run_writes_nothing_and_windows_follow_the_file() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        let health = RegionHealth::new(&apac.name, at("2026-04-01T00:00:00Z"));
        let aas = MemoryAutoScaling::default();
        let now = at("2026-04-01T02:00:00Z");
        let first = reconcile(&fleet, apac, &health, false, &aas, now).await;
        assert_eq!(
            first["changes"].as_array().map(Vec::len),
            Some(4),
            "{first}"
        );
        assert_eq!(writes(&aas).len(), 4);
        let second = reconcile(&fleet, apac, &health, false, &aas, now).await;
        assert_eq!(second["changes"], json!([]), "{second}");
        assert!(writes(&aas).is_empty());

        // The window moved: its start action is updated, nothing else.
        let moved = EXAMPLE.replace("start = \"00:00\"", "start = \"01:00\"");
        let fleet = Fleet::from_toml_str(&moved).expect("valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        reconcile(&fleet, apac, &health, false, &aas, now).await;
        let changed = writes(&aas);
        assert!(
            matches!(&changed[..], [ScalingChange::PutAction(a)] if a.name == "meridian-demo.night.start"
                && a.schedule == "cron(0 1 * * ? *)"),
            "{changed:?}"
        );

        // The window removed: both actions deleted.
        let removed = EXAMPLE.replace(
            "[[regions.windows]]\nname = \"night\"\nstart = \"00:00\"\nend = \"06:00\"\n\
             min_instances = 1\nmax_instances = 2\n",
            "",
        );
        let fleet = Fleet::from_toml_str(&removed).expect("valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        assert!(apac.windows.is_empty());
        reconcile(&fleet, apac, &health, false, &aas, now).await;
        let mut deleted: Vec<String> = writes(&aas)
            .into_iter()
            .map(|change| match change {
                ScalingChange::DeleteAction { name } => name,
                other => panic!("only deletions expected, not {other:?}"),
            })
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            ["meridian-demo.night.end", "meridian-demo.night.start"]
        );
    }

    #[tokio::test]
    async fn a_held_region_is_not_lowered() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        let mut health = RegionHealth::new(&apac.name, at("2026-04-01T00:00:00Z"));
        let aas = MemoryAutoScaling::default();
        let raised = Target {
            min: 3,
            max: 4,
            suspended: Suspended::default(),
        };
        aas.write(&apac.endpoint, &ScalingChange::RegisterTarget(raised))
            .await
            .expect("in memory");
        writes(&aas);
        // 03:00 in Singapore, the night window (1..2) in force: held at 3..4.
        let night = at("2026-04-01T19:00:00Z");
        reconcile(&fleet, apac, &health, true, &aas, night).await;
        let state = aas.read(&apac.endpoint).await.expect("in memory");
        let target = state.target.expect("registered");
        assert_eq!((target.min, target.max), (3, 4));
        assert!(target.suspended.scheduled);
        // Drained, the same.
        health.state = HealthState::DrainedByAlarm;
        reconcile(&fleet, apac, &health, false, &aas, night).await;
        let target = aas.read(&apac.endpoint).await.expect("in memory").target;
        assert_eq!(target.map(|t| (t.min, t.max)), Some((3, 4)));
        // Back in service and no longer raised: the night's bounds, schedules resumed.
        health.state = HealthState::Healthy;
        reconcile(&fleet, apac, &health, false, &aas, night).await;
        let target = aas.read(&apac.endpoint).await.expect("in memory").target;
        assert_eq!(
            target,
            Some(Target {
                min: 1,
                max: 2,
                suspended: Suspended::default()
            })
        );
    }
}
