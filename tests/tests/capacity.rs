//! Declared capacity end to end on the local cloud: the failback tick's reconcile against
//! Application Auto Scaling over real HTTP (moto behind the gateway), held against the
//! gateway's call log.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use chrono::Utc;
use meridian::adapters::{CloudWatchAlarms, HealthDeps, HttpFrontDoorProbe};
use meridian::failover::{FailoverSettings, HealthState};
use meridian::fleet::{Fleet, Pattern};
use meridian::function::invoke;
use meridian::health::{HealthStore, SystemClock};
use meridian::names::{sdk_app_name, FunctionRole};
use meridian::scaling::{desired, AutoScaling, ScalingState};
use meridian::scaling_aws::AasAutoScaling;
use meridian_failback::drift::aws::AwsDriftSources;
use meridian_failback::repair::aws::AwsRepairControl;
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);
const REGION: &str = "ap-southeast-1";

/// Runs one failback tick for `region` of `fleet` against the local cloud, wired as the
/// Lambda's `main` wires it (the failback function's user agent, so the call log knows it).
async fn tick(cloud: &LocalCloud, fleet: &Fleet, region: &str) -> Value {
    let clients = cloud.clients().for_function(FunctionRole::Failback);
    let deps = HealthDeps::new(&clients, fleet, region).await;
    let handler = meridian_failback::Failback {
        fleet: fleet.clone(),
        region: region.to_owned(),
        front_door: None,
        store: deps.store,
        scaler: deps.scaler,
        alarms: CloudWatchAlarms::new(&clients, region).await,
        probe: HttpFrontDoorProbe::default(),
        clock: SystemClock,
        drift: AwsDriftSources::new(&clients, fleet, region).await,
        autoscaling: AasAutoScaling::new(&clients, region, &fleet.variant_name).await,
        repair: AwsRepairControl::new(&clients, fleet, region, None).await,
    };
    let event = meridian_local::schedules::scheduled_event(
        region,
        &format!("arn:aws:events:{region}:123456789012:rule/capacity-test"),
        Utc::now(),
    );
    match invoke(&handler, event).await.result {
        Ok(output) => output,
        Err(error) => panic!("the tick failed: {error}"),
    }
}

/// What Application Auto Scaling holds for `region`'s endpoint, read over HTTP.
async fn in_force(cloud: &LocalCloud, fleet: &Fleet, region: &str) -> ScalingState {
    let spec = fleet.region(region).expect("in the fleet");
    AasAutoScaling::new(&cloud.clients(), region, &fleet.variant_name)
        .await
        .read(&spec.endpoint)
        .await
        .expect("read AAS")
}

/// How many Application Auto Scaling writes the failback function has made in `region`.
fn writes(cloud: &LocalCloud, region: &str) -> BTreeMap<String, u64> {
    let caller = sdk_app_name(FunctionRole::Failback);
    cloud
        .api_call_counts()
        .into_iter()
        .filter(|(call, _)| {
            call.caller.as_deref() == Some(caller.as_str())
                && call.region == region
                && call.service == "application-autoscaling"
                && !call.operation.starts_with("Describe")
        })
        .map(|(call, count)| (call.operation, count))
        .collect()
}

fn action_names(state: &ScalingState) -> Vec<String> {
    let mut names: Vec<String> = state.actions.iter().map(|a| a.name.clone()).collect();
    names.sort();
    names
}

fn with_windows(windows: &str) -> Fleet {
    let text = std::fs::read_to_string(meridian_tests::workspace_root().join("fleet.example.toml"))
        .expect("example fleet");
    let start = 1 + text
        .find("\n[[regions.windows]]")
        .expect("the example has a window");
    let end = start + text[start..].find("\n\n").expect("the window ends");
    Fleet::from_toml_str(&format!("{}{windows}{}", &text[..start], &text[end..]))
        .expect("valid fleet")
}

/// Without the hosted functions, so that only this test's ticks reconcile.
async fn start(fleet: Fleet) -> meridian_tests::TestCloud {
    start_cloud_for(fleet, Functions::new(), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_reconcile_writes_nothing_and_the_windows_follow_the_file() {
    let fleet = example_fleet();
    let cloud = start(fleet.clone()).await;

    let first = tick(&cloud, &fleet, REGION).await;
    // The policy and the window's two actions (the target too, unless provisioning
    // registered it with the bounds in force already).
    let changes = first["capacity"]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!((3..=4).contains(&changes.len()), "{first}");
    let state = in_force(&cloud, &fleet, REGION).await;
    let spec = fleet.region(REGION).expect("in the fleet");
    let want = desired(&fleet, spec, Utc::now());
    assert_eq!(state.target, want.target);
    assert_eq!(state.policies, want.policies);
    assert_eq!(state.actions, want.actions, "timezone and cron as sent");
    let after_first = writes(&cloud, REGION);
    assert_eq!(after_first.get("PutScalingPolicy"), Some(&1));
    assert_eq!(after_first.get("PutScheduledAction"), Some(&2));

    // The second run reads, finds nothing to change, and makes no write call.
    let second = tick(&cloud, &fleet, REGION).await;
    assert_eq!(
        second["capacity"]["changes"],
        serde_json::json!([]),
        "{second}"
    );
    assert_eq!(writes(&cloud, REGION), after_first);

    // A window changed: its start action follows, nothing else is written.
    let changed = with_windows(
        "[[regions.windows]]\nname = \"night\"\nstart = \"01:30\"\nend = \"06:00\"\n\
         min_instances = 1\nmax_instances = 1",
    );
    tick(&cloud, &changed, REGION).await;
    let state = in_force(&cloud, &changed, REGION).await;
    let start = state
        .actions
        .iter()
        .find(|a| a.name == "meridian-demo.night.start")
        .expect("the start action");
    assert_eq!(start.schedule, "cron(30 1 * * ? *)");
    assert_eq!(start.timezone.as_deref(), Some("Asia/Singapore"));
    let mut expected = after_first.clone();
    *expected.entry("PutScheduledAction".into()).or_default() += 1;
    assert_eq!(writes(&cloud, REGION), expected);

    // A window added: two more actions.
    let added = with_windows(
        "[[regions.windows]]\nname = \"night\"\nstart = \"01:30\"\nend = \"06:00\"\n\
         min_instances = 1\nmax_instances = 1\n\n[[regions.windows]]\nname = \"weekend\"\n\
         start = \"12:00\"\nend = \"18:00\"\ndays = [\"sat\", \"sun\"]\nmin_instances = 2\n\
         max_instances = 2",
    );
    tick(&cloud, &added, REGION).await;
    let state = in_force(&cloud, &added, REGION).await;
    assert_eq!(
        action_names(&state),
        [
            "meridian-demo.night.end",
            "meridian-demo.night.start",
            "meridian-demo.weekend.end",
            "meridian-demo.weekend.start"
        ]
    );
    let weekend = state
        .actions
        .iter()
        .find(|a| a.name == "meridian-demo.weekend.start")
        .expect("added");
    assert_eq!(weekend.schedule, "cron(0 12 ? * SAT,SUN *)");
    assert_eq!((weekend.min, weekend.max), (Some(2), Some(2)));

    // Every window removed: their actions are deleted; the target and policy stay.
    let removed = with_windows("");
    tick(&cloud, &removed, REGION).await;
    let state = in_force(&cloud, &removed, REGION).await;
    assert!(state.actions.is_empty(), "{:?}", state.actions);
    assert!(state.target.is_some() && state.policies.len() == 1);
    assert_eq!(
        writes(&cloud, REGION).get("DeleteScheduledAction"),
        Some(&4)
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_raised_for_a_failover_is_not_lowered_by_the_reconcile() {
    let mut fleet = example_fleet();
    fleet.pattern = Pattern::ActivePassive;
    fleet.failover = FailoverSettings {
        min_healthy: 1,
        cooldown: Duration::ZERO,
        failback_after: Duration::from_secs(300),
        settle: Duration::from_secs(1),
    };
    // The standby declares one instance; the primary's two are what it is raised to.
    let standby = fleet
        .regions
        .iter_mut()
        .find(|r| r.name == REGION)
        .expect("in the fleet");
    standby.instance_count = 1;
    standby.min_instances = 1;
    standby.max_instances = 1;
    let primary_count = fleet.primary().instance_count;
    assert!(primary_count > 1);
    let cloud = start_cloud_for(fleet.clone(), Functions::new(), true).await;

    // Before the failover the standby's ticks hold it at its own declaration.
    eventually("the standby's declared capacity", WITHIN, || async {
        let target = in_force(&cloud, &fleet, REGION).await.target?;
        (target.max == 1 && !target.suspended.scheduled).then_some(())
    })
    .await;

    aws_sdk_cloudwatch::Client::new(&cloud.clients().config("us-east-1").await)
        .set_alarm_state()
        .alarm_name("meridian-demo-llm-5xx")
        .state_value(StateValue::Alarm)
        .state_reason("test: the primary fails")
        .send()
        .await
        .expect("set alarm state");
    let raised = eventually("the standby to be raised", WITHIN, || async {
        let target = in_force(&cloud, &fleet, REGION).await.target?;
        (target.min == primary_count).then_some(target)
    })
    .await;
    assert!(raised.max >= primary_count);
    // Several ticks later (one a second here) it is still raised, its schedules held.
    let primary = HealthDeps::new(&cloud.clients(), &fleet, "us-east-1").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let state = primary.store.load("us-east-1").await.expect("read");
        assert_eq!(
            state.map(|s| s.value.state),
            Some(HealthState::DrainedByAlarm)
        );
        let target = in_force(&cloud, &fleet, REGION)
            .await
            .target
            .expect("registered");
        assert_eq!((target.min, target.max), (raised.min, raised.max));
        assert!(target.suspended.scheduled, "{target:?}");
    }
    cloud.shutdown().await.expect("shutdown");
}
