//! Alarm-driven failover and failback end to end on the local cloud: alarms changed
//! through the CloudWatch API reach the hosted failover function in their region, which
//! flips Route 53 health checks and records every change with its timings.

use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use chrono::{DateTime, Utc};
use meridian::adapters::{read_history, HealthDeps};
use meridian::failover::{FailoverSettings, HealthState, Input, RegionHealth};
use meridian::fleet::{Fleet, Pattern};
use meridian::health::{apply, FailoverEvent, HealthStore, SystemClock, Trigger};
use meridian::names::{function_name, FunctionRole};
use meridian_local::{Functions, Invocation, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for, TestCloud};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);
const ALARM: &str = "meridian-demo-llm-5xx";

fn fleet(cooldown_s: u64, failback_s: u64) -> Fleet {
    let mut fleet = example_fleet();
    fleet.failover = FailoverSettings {
        min_healthy: 1,
        cooldown: Duration::from_secs(cooldown_s),
        failback_after: Duration::from_secs(failback_s),
        // The least the fleet file allows; the local cloud's replication lag is 200 ms.
        settle: Duration::from_secs(1),
    };
    fleet
}

async fn start(fleet: Fleet) -> TestCloud {
    start_cloud_for(fleet, Functions::new(), true).await
}

async fn set_alarm(cloud: &LocalCloud, region: &str, state: StateValue) {
    aws_sdk_cloudwatch::Client::new(&cloud.clients().config(region).await)
        .set_alarm_state()
        .alarm_name(ALARM)
        .state_value(state.clone())
        .state_reason(format!("test: {}", state.as_str()))
        .send()
        .await
        .expect("set alarm state");
}

async fn health(cloud: &LocalCloud, region: &str) -> RegionHealth {
    let deps = HealthDeps::new(&cloud.clients(), cloud.fleet(), region).await;
    deps.store
        .load(region)
        .await
        .expect("read health")
        .map_or_else(|| RegionHealth::new(region, Utc::now()), |v| v.value)
}

async fn out_of_service(cloud: &LocalCloud, region: &str) -> bool {
    !health(cloud, region).await.state.in_service()
}

async fn history(cloud: &LocalCloud, region: &str) -> Vec<FailoverEvent> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&cloud.clients().config(region).await);
    read_history(&dynamodb, &cloud.fleet().registry_table, region)
        .await
        .expect("read history")
}

async fn wait_state(cloud: &LocalCloud, region: &str, state: HealthState) -> RegionHealth {
    eventually(&format!("{region} to be {state:?}"), WITHIN, || async {
        let health = health(cloud, region).await;
        (health.state == state).then_some(health)
    })
    .await
}

/// A "CloudWatch Alarm State Change" event as EventBridge delivers it.
fn alarm_event(id: &str, region: &str, state: &str, at: DateTime<Utc>) -> Value {
    let stamp = at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    json!({
        "version": "0", "id": id, "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "account": "123456789012", "time": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(), "region": region,
        "resources": [format!("arn:aws:cloudwatch:{region}:123456789012:alarm:{ALARM}")],
        "detail": {
            "alarmName": ALARM,
            "state": { "value": state, "reason": "test", "timestamp": stamp },
            "previousState": { "value": if state == "OK" { "ALARM" } else { "OK" }, "reason": "test", "timestamp": stamp },
            "configuration": { "metrics": [] }
        }
    })
}

/// A failback schedule tick, as EventBridge delivers it.
fn tick_event(region: &str) -> Value {
    meridian_local::schedules::scheduled_event(
        region,
        &format!("arn:aws:events:{region}:123456789012:rule/meridian-demo-failback-schedule"),
        Utc::now(),
    )
}

async fn invoke(cloud: &LocalCloud, role: FunctionRole, region: &str, payload: Value) -> Value {
    cloud
        .functions()
        .invoke(Invocation {
            function_name: function_name(&cloud.fleet().name, role),
            region: region.into(),
            payload,
        })
        .await
        .expect("the function succeeds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_drains_its_region_and_the_event_records_every_timestamp() {
    let cloud = start(fleet(60, 300)).await;
    set_alarm(&cloud, "eu-west-1", StateValue::Alarm).await;
    let drained = wait_state(&cloud, "eu-west-1", HealthState::DrainedByAlarm).await;
    assert!(drained.reason.contains(ALARM), "{}", drained.reason);
    assert!(out_of_service(&cloud, "eu-west-1").await, "out of service");
    assert!(
        !out_of_service(&cloud, "us-east-1").await
            && !out_of_service(&cloud, "ap-southeast-1").await
    );

    let events = eventually("the drain to be recorded", WITHIN, || async {
        let events = history(&cloud, "eu-west-1").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        (
            event.kind.as_str(),
            event.from_state.as_str(),
            event.to_state.as_str()
        ),
        ("drain", "healthy", "drained_by_alarm")
    );
    assert_eq!(event.alarm.as_deref(), Some(ALARM));
    let alarm_time = event.alarm_time.expect("alarm time");
    let recorded = event.recorded.expect("record time");
    assert!(
        alarm_time <= event.received
            && event.received <= event.decided
            && event.decided <= recorded,
        "{event:?}"
    );
    assert!(
        event.decided - event.received
            >= chrono::Duration::from_std(cloud.fleet().failover.settle).expect("settle"),
        "a drain decides after the settle time: {event:?}"
    );
    assert_eq!(
        event.reaction_ms,
        Some((recorded - alarm_time).num_milliseconds())
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_alarm_event_twice_and_ok_before_alarm_fail_over_at_most_once() {
    let cloud = start(fleet(0, 300)).await;
    let t0 = Utc::now();
    let event = alarm_event("duplicate-1", "eu-west-1", "ALARM", t0);
    let first = invoke(&cloud, FunctionRole::Failover, "eu-west-1", event.clone()).await;
    let second = invoke(&cloud, FunctionRole::Failover, "eu-west-1", event).await;
    assert_eq!(first["action"], "Drain");
    assert_eq!(second["action"], "None", "the duplicate changes nothing");
    assert_eq!(history(&cloud, "eu-west-1").await.len(), 1);

    // ap-southeast-1: the OK (newer) arrives before the ALARM (older) it supersedes.
    let ok = alarm_event(
        "late-ok",
        "ap-southeast-1",
        "OK",
        t0 + chrono::Duration::seconds(5),
    );
    let alarm = alarm_event("early-alarm", "ap-southeast-1", "ALARM", t0);
    invoke(&cloud, FunctionRole::Failover, "ap-southeast-1", ok).await;
    let stale = invoke(&cloud, FunctionRole::Failover, "ap-southeast-1", alarm).await;
    assert_eq!(stale["action"], "None");
    assert_eq!(
        health(&cloud, "ap-southeast-1").await.state,
        HealthState::Healthy
    );
    assert!(!out_of_service(&cloud, "ap-southeast-1").await);
    assert!(history(&cloud, "ap-southeast-1").await.is_empty());
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_ok_alarm_inside_the_cooldown_does_not_flap() {
    let cloud = start(fleet(60, 0)).await;
    let t0 = Utc::now();
    let region = "eu-west-1";
    invoke(
        &cloud,
        FunctionRole::Failover,
        region,
        alarm_event("a1", region, "ALARM", t0),
    )
    .await;
    invoke(
        &cloud,
        FunctionRole::Failover,
        region,
        alarm_event("o1", region, "OK", t0 + chrono::Duration::seconds(1)),
    )
    .await;
    let tick = invoke(&cloud, FunctionRole::Failback, region, tick_event(region)).await;
    assert_eq!(
        tick["action"], "None",
        "no failback inside the cooldown: {tick}"
    );
    invoke(
        &cloud,
        FunctionRole::Failover,
        region,
        alarm_event("a2", region, "ALARM", t0 + chrono::Duration::seconds(2)),
    )
    .await;
    assert_eq!(
        health(&cloud, region).await.state,
        HealthState::DrainedByAlarm
    );
    assert!(out_of_service(&cloud, region).await);
    let kinds: Vec<String> = history(&cloud, region)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["drain"], "one change only");
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_region_alarms_the_last_healthy_region_stays_in() {
    let cloud = start(fleet(0, 300)).await;
    let regions = ["us-east-1", "eu-west-1", "ap-southeast-1"];
    futures_join(&cloud, &regions).await;
    let events = eventually("three decisions", WITHIN, || async {
        let mut events = Vec::new();
        for region in regions {
            events.extend(history(&cloud, region).await);
        }
        (events.len() >= 3).then_some(events)
    })
    .await;
    let drains = events.iter().filter(|e| e.kind == "drain").count();
    let suppressed: Vec<&FailoverEvent> =
        events.iter().filter(|e| e.kind == "suppressed").collect();
    assert_eq!((drains, suppressed.len()), (2, 1), "{events:?}");
    assert!(
        suppressed[0].reason.contains("min_healthy"),
        "{}",
        suppressed[0].reason
    );
    let mut in_service = Vec::new();
    for region in regions {
        if !out_of_service(&cloud, region).await {
            in_service.push(region);
        }
    }
    assert_eq!(
        in_service,
        [suppressed[0].region.as_str()],
        "the suppressed region keeps serving"
    );
    cloud.shutdown().await.expect("shutdown");
}

async fn futures_join(cloud: &LocalCloud, regions: &[&str]) {
    let mut tasks = Vec::new();
    for region in regions {
        let (clients, region) = (cloud.clients(), region.to_string());
        tasks.push(tokio::spawn(async move {
            aws_sdk_cloudwatch::Client::new(&clients.config(&region).await)
                .set_alarm_state()
                .alarm_name(ALARM)
                .state_value(StateValue::Alarm)
                .state_reason("test: every region")
                .send()
                .await
                .expect("set alarm state");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_passive_standby_raises_its_own_capacity_when_the_primary_drains() {
    let mut fleet = fleet(0, 300);
    fleet.pattern = Pattern::ActivePassive;
    let cloud = start(fleet.clone()).await;
    set_alarm(&cloud, "us-east-1", StateValue::Alarm).await;
    wait_state(&cloud, "us-east-1", HealthState::DrainedByAlarm).await;
    for standby in ["eu-west-1", "ap-southeast-1"] {
        let event = eventually(
            "the standby's tick to raise its capacity",
            WITHIN,
            || async {
                history(&cloud, standby)
                    .await
                    .into_iter()
                    .find(|e| e.kind == "standby")
            },
        )
        .await;
        assert!(event.reason.contains("us-east-1"), "{event:?}");
    }
    let primary_count = fleet.primary().instance_count;
    for standby in fleet.regions.iter().filter(|r| r.name != "us-east-1") {
        let targets = aws_sdk_applicationautoscaling::Client::new(
            &cloud.clients().config(&standby.name).await,
        )
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Sagemaker)
        .send()
        .await
        .expect("scalable targets");
        let min = targets.scalable_targets().first().map(|t| t.min_capacity());
        assert_eq!(
            min,
            Some(i32::try_from(primary_count).unwrap_or(0)),
            "{}",
            standby.name
        );
    }
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_drain_survives_ok_alarms_until_undrained() {
    let cloud = start(fleet(0, 0)).await;
    let region = "eu-west-1";
    let deps = HealthDeps::new(&cloud.clients(), cloud.fleet(), region).await;
    let manual = |input: Input| Trigger {
        id: format!("manual-{}", Utc::now().timestamp_nanos_opt().unwrap_or(0)),
        input,
        alarm_time: None,
        received: Utc::now(),
    };
    apply(
        cloud.fleet(),
        region,
        &manual(Input::ManualDrain {
            reason: "maintenance".into(),
        }),
        &deps.store,
        &SystemClock,
    )
    .await
    .expect("drain");
    set_alarm(&cloud, region, StateValue::Alarm).await;
    set_alarm(&cloud, region, StateValue::Ok).await;
    eventually("the OK alarm to be seen", WITHIN, || async {
        let health = health(&cloud, region).await;
        (health.alarms.get(ALARM).map(|a| a.state) == Some(meridian::failover::AlarmState::Ok))
            .then_some(())
    })
    .await;
    invoke(&cloud, FunctionRole::Failback, region, tick_event(region)).await;
    assert_eq!(
        health(&cloud, region).await.state,
        HealthState::DrainedByHand
    );
    assert!(out_of_service(&cloud, region).await);

    apply(
        cloud.fleet(),
        region,
        &manual(Input::ManualUndrain),
        &deps.store,
        &SystemClock,
    )
    .await
    .expect("undrain");
    assert_eq!(health(&cloud, region).await.state, HealthState::Healthy);
    assert!(!out_of_service(&cloud, region).await);
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_happens_on_schedule_only_after_the_hysteresis() {
    let cloud = start(fleet(0, 3)).await;
    let region = "ap-southeast-1";
    set_alarm(&cloud, region, StateValue::Alarm).await;
    wait_state(&cloud, region, HealthState::DrainedByAlarm).await;
    set_alarm(&cloud, region, StateValue::Ok).await;
    let recovering = wait_state(&cloud, region, HealthState::Recovering).await;
    assert!(
        out_of_service(&cloud, region).await,
        "still drained while recovering"
    );
    let ok_since = recovering.ok_since.expect("ok since");

    let restored = wait_state(&cloud, region, HealthState::Healthy).await;
    assert!(!out_of_service(&cloud, region).await);
    let restore = history(&cloud, region)
        .await
        .into_iter()
        .find(|e| e.kind == "restore")
        .expect("restore recorded");
    assert!(
        restore.decided - ok_since >= chrono::Duration::seconds(3),
        "restored {} after OK",
        restore.decided - ok_since
    );
    assert!(
        restored.reason.contains("failed back"),
        "{}",
        restored.reason
    );
    cloud.shutdown().await.expect("shutdown");
}

/// Unknown is not OK: a drained region whose alarm goes to INSUFFICIENT_DATA (its metrics
/// stopped, as a dark region's do) stays drained, and no failback clock runs, however
/// often the failback schedule ticks; OK again starts the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_data_after_an_alarm_keeps_the_region_drained() {
    let cloud = start(fleet(0, 0)).await;
    let region = "eu-west-1";
    set_alarm(&cloud, region, StateValue::Alarm).await;
    wait_state(&cloud, region, HealthState::DrainedByAlarm).await;
    set_alarm(&cloud, region, StateValue::InsufficientData).await;
    let unknown = eventually(
        "the record to say the alarm has no data",
        WITHIN,
        || async {
            let health = health(&cloud, region).await;
            health.reason.contains("without data").then_some(health)
        },
    )
    .await;
    assert_eq!(unknown.state, HealthState::DrainedByAlarm);
    assert_eq!(unknown.ok_since, None, "no failback clock: {unknown:?}");

    // With a zero hysteresis, any running clock would fail the region back at this tick.
    invoke(&cloud, FunctionRole::Failback, region, tick_event(region)).await;
    let after_tick = health(&cloud, region).await;
    assert_eq!(
        after_tick.state,
        HealthState::DrainedByAlarm,
        "{after_tick:?}"
    );
    assert!(out_of_service(&cloud, region).await, "still out of DNS");
    assert!(
        !history(&cloud, region)
            .await
            .iter()
            .any(|e| e.kind == "restore"),
        "no restore while the alarm has no data"
    );

    set_alarm(&cloud, region, StateValue::Ok).await;
    wait_state(&cloud, region, HealthState::Healthy).await;
    cloud.shutdown().await.expect("shutdown");
}

/// Level-triggered: an alarm event lost before delivery (fault) leaves the region in
/// service until the failback schedule's next tick (once a second here: the test cloud
/// runs schedules 60 times faster), which reads the alarm's state in CloudWatch and drains
/// the region, recording the drain once, under the alarm change's own id and time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_alarm_event_is_healed_by_the_next_tick() {
    let cloud = start(fleet(0, 300)).await;
    let region = "eu-west-1";
    cloud.faults().drop_alarm_events_in(region);
    set_alarm(&cloud, region, StateValue::Alarm).await;
    let drained = wait_state(&cloud, region, HealthState::DrainedByAlarm).await;
    assert!(
        out_of_service(&cloud, region).await,
        "out of DNS: {drained:?}"
    );
    let drains = |events: Vec<FailoverEvent>| -> Vec<FailoverEvent> {
        events.into_iter().filter(|e| e.kind == "drain").collect()
    };
    let first = drains(history(&cloud, region).await);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].id.starts_with("alarm-state#"),
        "drained by the tick's reading, not by an event: {first:?}"
    );
    assert!(first[0].alarm_time.is_some(), "{first:?}");

    // Another tick finds nothing missed, and records nothing more.
    let again = invoke(&cloud, FunctionRole::Failback, region, tick_event(region)).await;
    assert_eq!(again["healed"], json!([]), "{again}");
    assert_eq!(drains(history(&cloud, region).await), first);
    cloud.shutdown().await.expect("shutdown");
}
