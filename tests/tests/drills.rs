//! Failover drills end to end on the local cloud: the drill state machine (moto's
//! interpreter) runs the drill function's tasks, the source region's front door shifts
//! each step's share to the target's front door over real HTTP, and the drill restores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::StateValue;
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::Utc;
use meridian::adapters::HealthDeps;
use meridian::drill::{DrillRecord, DrillStatus};
use meridian::drill_store::DrillStore;
use meridian::failover::{FailoverSettings, Input, RegionHealth};
use meridian::fleet::Fleet;
use meridian::health::{apply, HealthStore, SystemClock, Trigger};
use meridian::names;
use meridian::registry::Registry;
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for, TestCloud};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(60);
const FROM: &str = "us-east-1";
const TO: &str = "eu-west-1";
const ALARM: &str = "meridian-demo-llm-5xx";

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.failover = FailoverSettings {
        min_healthy: 1,
        cooldown: Duration::ZERO,
        failback_after: Duration::from_secs(3_600),
        settle: Duration::from_secs(1),
    };
    fleet
}

async fn record_in(cloud: &LocalCloud, replica: &str, region: &str) -> RegionHealth {
    HealthDeps::new(&cloud.clients(), cloud.fleet(), replica)
        .await
        .store
        .load(region)
        .await
        .expect("read the record")
        .map_or_else(|| RegionHealth::new(region, Utc::now()), |v| v.value)
}

/// A cloud whose source region's replica knows the target's front door.
async fn start() -> TestCloud {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    eventually("the target's front door published", WITHIN, || async {
        record_in(&cloud, FROM, TO).await.front_door.map(drop)
    })
    .await;
    cloud
}

async fn store(cloud: &LocalCloud) -> DrillStore {
    let fleet = cloud.fleet();
    DrillStore {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    }
}

async fn sfn(cloud: &LocalCloud) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(&cloud.clients().config(&cloud.fleet().primary_region).await)
}

/// Starts a drill's execution; returns its ARN.
async fn start_drill(cloud: &LocalCloud, drill_id: &str, steps: &[u32], bake_s: u64) -> String {
    let fleet = cloud.fleet();
    let arn = format!(
        "arn:aws:states:{}:123456789012:stateMachine:{}",
        fleet.primary_region,
        names::drill_state_machine_name(&fleet.name)
    );
    let input = json!({
        "drill_id": drill_id,
        "request": { "from": FROM, "to": TO, "steps": steps, "bake": bake_s },
    });
    sfn(cloud)
        .await
        .start_execution()
        .state_machine_arn(arn)
        .name(drill_id)
        .input(input.to_string())
        .send()
        .await
        .expect("start the drill")
        .execution_arn
}

async fn finished(cloud: &LocalCloud, execution: &str) -> ExecutionStatus {
    let sfn = sfn(cloud).await;
    eventually("the drill's execution to end", WITHIN, || async {
        let described = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .ok()?;
        (described.status != ExecutionStatus::Running).then_some(described.status)
    })
    .await
}

async fn drill_record(cloud: &LocalCloud, drill_id: &str) -> Option<DrillRecord> {
    store(cloud)
        .await
        .record(drill_id)
        .await
        .expect("read the drill")
        .map(|(record, _)| record)
}

/// Inference sent to the source's front door until stopped; the regions that served it.
fn traffic(cloud: &LocalCloud, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    let url = cloud.front_door_url(FROM).expect("front door").to_owned();
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let mut served = Vec::new();
        let deadline = Instant::now() + WITHIN;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Ok(answer) = http
                .post(format!("{url}/invocations"))
                .body(r#"{"inputs":"hello"}"#)
                .send()
                .await
            {
                let by = answer
                    .headers()
                    .get("x-meridian-served-by")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                served.push(by);
            }
        }
        served
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_runs_every_step_and_restores() {
    let cloud = start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = traffic(&cloud, stop.clone());
    let execution = start_drill(&cloud, "drill-every-step", &[25, 100], 3).await;
    assert_eq!(
        finished(&cloud, &execution).await,
        ExecutionStatus::Succeeded
    );
    stop.store(true, Ordering::SeqCst);
    let served = sent.await.expect("traffic");
    let record = drill_record(&cloud, "drill-every-step")
        .await
        .expect("the drill is recorded");
    assert_eq!(record.status, DrillStatus::Completed, "{record:?}");
    assert_eq!(record.reason, None);
    assert_eq!(record.steps.len(), 2, "{record:?}");
    for (step, percent) in record.steps.iter().zip([25, 100]) {
        assert_eq!(step.percent, percent);
        assert!(step.counts.requests > 0, "{record:?}");
        assert_eq!(step.counts.errors, 0, "{record:?}");
        assert!(step.counts.mean_latency_ms().is_some());
        let ended = step.ended.expect("each step ended");
        assert!(
            ended - step.started >= chrono::Duration::seconds(3),
            "baked"
        );
    }
    assert!(served.iter().any(|r| r == TO), "some traffic shifted");
    assert_eq!(
        store(&cloud)
            .await
            .shift(FROM)
            .await
            .expect("read the shift"),
        None,
        "restored: no shift left"
    );
    assert_eq!(store(&cloud).await.lock_holder().await.expect("lock"), None);
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_mid_drill_aborts_and_restores_within_one_step() {
    let cloud = start().await;
    let bake = 30;
    let execution = start_drill(&cloud, "drill-alarmed", &[10, 50, 100], bake).await;
    eventually("the first step shifted", WITHIN, || async {
        let record = drill_record(&cloud, "drill-alarmed").await?;
        (!record.steps.is_empty()).then_some(())
    })
    .await;
    let alarmed = Instant::now();
    aws_sdk_cloudwatch::Client::new(&cloud.clients().config(TO).await)
        .set_alarm_state()
        .alarm_name(ALARM)
        .state_value(StateValue::Alarm)
        .state_reason("test: mid-drill")
        .send()
        .await
        .expect("set the alarm");
    assert_eq!(
        finished(&cloud, &execution).await,
        ExecutionStatus::Succeeded
    );
    let took = alarmed.elapsed();
    let record = drill_record(&cloud, "drill-alarmed")
        .await
        .expect("recorded");
    assert_eq!(record.status, DrillStatus::Aborted, "{record:?}");
    assert_eq!(
        record.steps.len(),
        1,
        "aborted in the step it was in: {record:?}"
    );
    assert!(
        took < Duration::from_secs(bake),
        "restored within the step ({took:?})"
    );
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains(ALARM) || reason.contains("drained"),
        "{reason}"
    );
    assert_eq!(store(&cloud).await.shift(FROM).await.expect("shift"), None);
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_is_refused_during_a_rollout_and_while_a_region_is_drained() {
    let cloud = start().await;
    let fleet = cloud.fleet().clone();
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    };
    registry
        .acquire_or_queue("llama", "2026-12-01.1", chrono::Utc::now())
        .await
        .expect("a rollout holds the lock");
    let during_rollout = start_drill(&cloud, "drill-during-rollout", &[10], 1).await;
    assert_eq!(
        finished(&cloud, &during_rollout).await,
        ExecutionStatus::Failed
    );
    assert!(drill_record(&cloud, "drill-during-rollout").await.is_none());
    registry
        .release("llama", "2026-12-01.1")
        .await
        .expect("the rollout ends");

    let deps = HealthDeps::new(&cloud.clients(), &fleet, TO).await;
    let trigger = Trigger {
        id: "manual#drain-for-drill-test".into(),
        input: Input::ManualDrain {
            reason: "maintenance".into(),
        },
        alarm_time: None,
        received: Utc::now(),
    };
    apply(&fleet, TO, &trigger, &deps.store, &SystemClock)
        .await
        .expect("drained");
    eventually("the drain replicated to the primary", WITHIN, || async {
        (!record_in(&cloud, &fleet.primary_region, TO)
            .await
            .state
            .in_service())
        .then_some(())
    })
    .await;
    let while_drained = start_drill(&cloud, "drill-while-drained", &[10], 1).await;
    assert_eq!(
        finished(&cloud, &while_drained).await,
        ExecutionStatus::Failed
    );
    assert!(drill_record(&cloud, "drill-while-drained").await.is_none());
    assert_eq!(store(&cloud).await.lock_holder().await.expect("lock"), None);
    cloud.shutdown().await.expect("shutdown");
}

/// `meridian drill abort` asks the running drill to stop: its next check restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_abort_restores_at_the_next_check() {
    let cloud = start().await;
    let bake = 30;
    let execution = start_drill(&cloud, "drill-operator", &[10, 100], bake).await;
    eventually("the first step shifted", WITHIN, || async {
        let record = drill_record(&cloud, "drill-operator").await?;
        (!record.steps.is_empty()).then_some(())
    })
    .await;
    let store = store(&cloud).await;
    assert_eq!(
        store.lock_holder().await.expect("lock").as_deref(),
        Some("drill-operator")
    );
    let asked = Instant::now();
    store
        .request_abort("drill-operator", "enough")
        .await
        .expect("abort requested");
    assert_eq!(
        finished(&cloud, &execution).await,
        ExecutionStatus::Succeeded
    );
    assert!(
        asked.elapsed() < Duration::from_secs(bake),
        "within the step"
    );
    let record = drill_record(&cloud, "drill-operator")
        .await
        .expect("recorded");
    assert_eq!(record.status, DrillStatus::Aborted);
    assert!(
        record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("enough")),
        "{record:?}"
    );
    assert_eq!(store.shift(FROM).await.expect("shift"), None);
    assert_eq!(store.lock_holder().await.expect("lock"), None);
    cloud.shutdown().await.expect("shutdown");
}
