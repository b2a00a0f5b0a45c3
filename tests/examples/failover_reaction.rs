//! Benchmark: failover reaction time on the local cloud, from an alarm's state change to
//! its region's health check flipped and the change recorded, over many events.
//!
//! Run: `cargo run -p meridian-tests --example failover_reaction -- [EVENTS]` (default 100).
//! Reported against a baseline measured in the same run: one CloudWatch `SetAlarmState`
//! call through the gateway (the operator's own API round trip).

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::StateValue;
use chrono::Utc;
use meridian::adapters::{read_history, HealthDeps};
use meridian::failover::{FailoverSettings, HealthState};
use meridian::health::HealthStore;
use meridian::names::{function_name, FunctionRole};
use meridian_local::{Functions, Invocation};
use meridian_tests::{example_fleet, start_cloud_for};

const ALARM: &str = "meridian-demo-llm-5xx";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>, baseline: f64) {
    values.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&values, 50.0), percentile(&values, 99.0));
    println!(
        "{name:<44} n={:<4} p50 {p50:>8.1} ms ({:>5.1}× baseline)   p99 {p99:>8.1} ms ({:>5.1}× baseline)",
        values.len(),
        p50 / baseline,
        p99 / baseline
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100);
    let mut fleet = example_fleet();
    fleet.failover = FailoverSettings {
        min_healthy: 1,
        cooldown: Duration::ZERO,
        failback_after: Duration::ZERO,
        // The least the fleet file allows; the local cloud's replication lag is 200 ms.
        settle: Duration::from_secs(1),
    };
    let cloud = start_cloud_for(fleet.clone(), Functions::new(), true).await;
    let regions = ["eu-west-1", "ap-southeast-1"];
    let mut baseline = Vec::new();
    let mut reaction = Vec::new();
    let mut observed = Vec::new();
    for i in 0..events {
        let region = regions[i % regions.len()];
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&cloud.clients().config(region).await);
        let dynamodb = aws_sdk_dynamodb::Client::new(&cloud.clients().config(region).await);
        let before = read_history(&dynamodb, &fleet.registry_table, region)
            .await?
            .len();
        let started = Instant::now();
        cloudwatch
            .set_alarm_state()
            .alarm_name(ALARM)
            .state_value(StateValue::Alarm)
            .state_reason("bench")
            .send()
            .await?;
        baseline.push(started.elapsed().as_secs_f64() * 1000.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let event = loop {
            let history = read_history(&dynamodb, &fleet.registry_table, region).await?;
            if history.len() > before {
                break history
                    .into_iter()
                    .max_by_key(|e| e.decided)
                    .ok_or_else(|| anyhow::anyhow!("empty history"))?;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "event {i} was not recorded within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        observed.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(event.kind == "drain", "event {i} was {}", event.kind);
        reaction.push(event.reaction_ms.unwrap_or_default() as f64);

        cloudwatch
            .set_alarm_state()
            .alarm_name(ALARM)
            .state_value(StateValue::Ok)
            .state_reason("bench")
            .send()
            .await?;
        let deps = HealthDeps::new(&cloud.clients(), &fleet, region).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            cloud
                .functions()
                .invoke(Invocation {
                    function_name: function_name(&fleet.name, FunctionRole::Failback),
                    region: region.into(),
                    payload: meridian_local::schedules::scheduled_event(
                        region,
                        "arn:aws:events:local:123456789012:rule/bench",
                        Utc::now(),
                    ),
                })
                .await?;
            if deps
                .store
                .load(region)
                .await?
                .is_some_and(|h| h.value.state == HealthState::Healthy)
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "region {region} did not fail back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    cloud.shutdown().await?;
    let mut sorted = baseline.clone();
    sorted.sort_by(f64::total_cmp);
    let base = percentile(&sorted, 50.0);
    println!(
        "failover reaction on the local cloud, {events} alarm events (regions {})",
        regions.join(", ")
    );
    summary("baseline: SetAlarmState round trip", baseline, base);
    summary("alarm state change → health check flipped", reaction, base);
    summary(
        "SetAlarmState sent → change recorded (seen)",
        observed,
        base,
    );
    Ok(())
}
