//! Issue #9's acceptance, end to end on the local cloud over real HTTP: the fleet's front
//! doors, Route 53's checkers and the failover functions together, with a region gone
//! dark, us-east-1 impaired and Route 53's control plane down.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::StateValue;
use chrono::Utc;
use meridian::adapters::{read_history, HealthDeps};
use meridian::failover::{Action, FailoverSettings, HealthState, Input, RegionHealth};
use meridian::fleet::Fleet;
use meridian::health::{apply, FailoverEvent, HealthStore, SystemClock, Trigger};
use meridian::names::{sdk_app_name, FunctionRole};
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{
    calls_since, eventually, example_fleet, start_cloud_for, test_config, TestCloud,
};

const ALARM: &str = "meridian-demo-llm-5xx";
const WITHIN: Duration = Duration::from_secs(30);

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.failover = FailoverSettings {
        min_healthy: 1,
        cooldown: Duration::ZERO,
        failback_after: Duration::from_secs(3_600),
        // The least the fleet file allows; the local cloud's replication lag is 200 ms.
        settle: Duration::from_secs(1),
    };
    fleet
}

async fn start() -> TestCloud {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    every_front_door_published_and_healthy(&cloud).await;
    cloud
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

/// Route 53's detection bound for the fleet's health checks, scaled as the local cloud
/// runs them: `failure_threshold` intervals plus one for the probe under way.
fn detection_bound(fleet: &Fleet) -> Duration {
    let dns = &fleet.dns;
    Duration::from_secs(dns.health_check_interval_seconds.into()) * (dns.failure_threshold + 1)
        / test_config().schedule_speedup
}

/// A region's record as `replica`'s table has it.
async fn record_in(cloud: &LocalCloud, replica: &str, region: &str) -> RegionHealth {
    HealthDeps::new(&cloud.clients(), cloud.fleet(), replica)
        .await
        .store
        .load(region)
        .await
        .expect("read the record")
        .map_or_else(|| RegionHealth::new(region, Utc::now()), |v| v.value)
}

/// Waits until every region's tick has published its front door URL (seen from every
/// replica) and Route 53's checkers find every front door healthy.
async fn every_front_door_published_and_healthy(cloud: &LocalCloud) {
    let regions = cloud.fleet().region_names();
    eventually("every front door published and healthy", WITHIN, || async {
        for replica in &regions {
            for region in &regions {
                record_in(cloud, replica, region).await.front_door?;
            }
        }
        let view = cloud.routing().await.ok()?;
        view.records.iter().all(|r| r.healthy()).then_some(())
    })
    .await;
}

/// The client locations the routing view sends to `region`.
async fn routed_to(cloud: &LocalCloud, region: &str) -> Vec<String> {
    let view = cloud.routing().await.expect("routing view");
    view.resolutions
        .into_iter()
        .filter(|r| r.region.as_deref() == Some(region))
        .map(|r| r.client)
        .collect()
}

/// Waits until no client location resolves to `region`; returns how long that took.
async fn until_nobody_routed_to(cloud: &LocalCloud, region: &str, since: Instant) -> Duration {
    eventually(&format!("no client routed to {region}"), WITHIN, || async {
        routed_to(cloud, region)
            .await
            .is_empty()
            .then(|| since.elapsed())
    })
    .await
}

async fn front_door_health(cloud: &LocalCloud, region: &str) -> (u16, serde_json::Value) {
    let url = cloud.front_door_url(region).expect("front door URL");
    let response = http()
        .get(format!("{url}/health"))
        .send()
        .await
        .expect("the front door answers");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or_default())
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

/// `meridian drain/undrain REGION` as the CLI runs it: in that region's replica.
async fn manual(cloud: &LocalCloud, region: &str, input: Input) -> Action {
    let deps = HealthDeps::new(&cloud.clients(), cloud.fleet(), region).await;
    let trigger = Trigger {
        id: format!("manual#{}", uuid::Uuid::new_v4()),
        input,
        alarm_time: None,
        received: Utc::now(),
    };
    apply(cloud.fleet(), region, &trigger, &deps.store, &SystemClock)
        .await
        .expect("the manual action applies")
        .action
}

async fn history_in(cloud: &LocalCloud, replica: &str, region: &str) -> Vec<FailoverEvent> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&cloud.clients().config(replica).await);
    read_history(&dynamodb, &cloud.fleet().registry_table, region)
        .await
        .expect("read history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_region_leaves_dns_by_route53s_checkers_alone_and_its_peers_record_the_outage() {
    let cloud = start().await;
    let bound = detection_bound(cloud.fleet());
    assert!(!routed_to(&cloud, "eu-west-1").await.is_empty());
    let calls_before = cloud.api_call_counts();

    let dark_at = Instant::now();
    let mut faults = cloud.faults().snapshot();
    faults.regions_down.insert("eu-west-1".into());
    cloud.faults().replace(faults);
    let took = until_nobody_routed_to(&cloud, "eu-west-1", dark_at).await;
    // Polling the routing view adds a few milliseconds on top of the checkers' bound.
    assert!(
        took <= bound + Duration::from_millis(250),
        "out of DNS after {took:?}, bound {bound:?}"
    );
    let clients_of_eu: Vec<String> = cloud
        .routing()
        .await
        .expect("routing view")
        .resolutions
        .into_iter()
        .filter(|r| r.client.starts_with("eu-"))
        .filter_map(|r| r.region)
        .collect();
    assert!(
        clients_of_eu.iter().all(|r| r == "us-east-1"),
        "European clients are served across the Atlantic: {clients_of_eu:?}"
    );

    // The peers' ticks record the outage in eu-west-1's history, in their own replicas.
    let outage = eventually(
        "the outage in the history read in us-east-1",
        WITHIN,
        || async {
            history_in(&cloud, "us-east-1", "eu-west-1")
                .await
                .into_iter()
                .find(|e| e.kind == "unreachable")
        },
    )
    .await;
    assert!(outage.reason.contains("did not answer"), "{outage:?}");
    let detected = outage.decided;
    assert!(detected <= Utc::now());

    // The regional functions call their own region only (their roles say so), so their
    // calls to eu-west-1 are eu-west-1's own (a tick already running when it went dark):
    // what must not happen is anyone else depending on the dark region.
    let own = |c: &meridian_local::calls::ApiCall| {
        [
            FunctionRole::Failover,
            FunctionRole::Failback,
            FunctionRole::FrontDoor,
            FunctionRole::Replica,
        ]
        .iter()
        .any(|role| c.caller.as_deref() == Some(sdk_app_name(*role).as_str()))
    };
    let to_dark_or_route53: Vec<_> = calls_since(&cloud, &calls_before)
        .into_iter()
        .filter(|c| c.caller.is_some() && !(c.region == "eu-west-1" && own(c)))
        .filter(|c| c.region == "eu-west-1" || c.service == "route53")
        .collect();
    assert!(
        to_dark_or_route53.is_empty(),
        "no function called eu-west-1 or the Route 53 API: {to_dark_or_route53:?}"
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_us_east_1_dark_and_route53s_api_down_drains_still_work_where_the_rules_permit() {
    let cloud = start().await;
    let bound = detection_bound(cloud.fleet());
    let mut faults = cloud.faults().snapshot();
    faults.regions_down.insert("us-east-1".into());
    faults.route53_control_plane_down = true;
    cloud.faults().replace(faults);
    // The peers' probes see us-east-1 go: from then on it counts as out of service.
    for observer in ["eu-west-1", "ap-southeast-1"] {
        eventually("us-east-1 seen unreachable", WITHIN, || async {
            history_in(&cloud, observer, "us-east-1")
                .await
                .into_iter()
                .find(|e| e.kind == "unreachable" && e.reason.contains(observer))
        })
        .await;
    }

    // An alarm in ap-southeast-1 drains it: 1 of 3 left in service is min_healthy.
    let alarm_at = Instant::now();
    set_alarm(&cloud, "ap-southeast-1", StateValue::Alarm).await;
    let took = until_nobody_routed_to(&cloud, "ap-southeast-1", alarm_at).await;
    let settle = cloud.fleet().failover.settle;
    assert!(
        took <= settle + bound + Duration::from_secs(1),
        "ap-southeast-1 out of DNS after {took:?} (settle {settle:?} + checkers {bound:?})"
    );
    let (status, body) = front_door_health(&cloud, "ap-southeast-1").await;
    assert_eq!(status, 503, "{body}");

    // Draining eu-west-1 now would leave no region serving: refused, with the reasons.
    let refused = manual(
        &cloud,
        "eu-west-1",
        Input::ManualDrain {
            reason: "test".into(),
        },
    )
    .await;
    let Action::Suppressed { reason } = refused else {
        panic!("drain of the last region serving: {refused:?}");
    };
    assert!(
        reason.contains("min_healthy") || reason.contains("in service"),
        "{reason}"
    );
    let events = history_in(&cloud, "eu-west-1", "eu-west-1").await;
    let suppressed = events
        .iter()
        .find(|e| e.kind == "suppressed")
        .expect("the refusal is recorded");
    assert!(
        suppressed.reason.contains("us-east-1 unreachable")
            && suppressed
                .reason
                .contains("ap-southeast-1 drained_by_alarm"),
        "{suppressed:?}"
    );

    // Once ap-southeast-1 is back by hand, the operator's drain of eu-west-1 goes through,
    // written in eu-west-1's own replica, and Route 53's checkers follow.
    set_alarm(&cloud, "ap-southeast-1", StateValue::Ok).await;
    eventually("ap-southeast-1 OK", WITHIN, || async {
        (record_in(&cloud, "ap-southeast-1", "ap-southeast-1")
            .await
            .all_alarms_ok())
        .then_some(())
    })
    .await;
    manual(
        &cloud,
        "ap-southeast-1",
        Input::ManualDrain { reason: "x".into() },
    )
    .await;
    assert_eq!(
        manual(&cloud, "ap-southeast-1", Input::ManualUndrain).await,
        Action::Restore
    );
    // eu-west-1 decides from its own replica: it must have seen ap-southeast-1 return.
    eventually(
        "eu-west-1's replica to see ap-southeast-1 back",
        WITHIN,
        || async {
            (record_in(&cloud, "eu-west-1", "ap-southeast-1").await.state == HealthState::Healthy)
                .then_some(())
        },
    )
    .await;
    let drain_at = Instant::now();
    let drained = manual(
        &cloud,
        "eu-west-1",
        Input::ManualDrain {
            reason: "maintenance".into(),
        },
    )
    .await;
    assert_eq!(drained, Action::Drain);
    assert_eq!(
        record_in(&cloud, "eu-west-1", "eu-west-1").await.state,
        HealthState::DrainedByHand
    );
    let took = until_nobody_routed_to(&cloud, "eu-west-1", drain_at).await;
    assert!(
        took <= settle + bound + Duration::from_secs(1),
        "eu-west-1 out of DNS after {took:?}"
    );
    let route53_calls: Vec<_> = cloud
        .api_calls()
        .into_iter()
        .filter(|c| c.caller.is_some() && c.service == "route53")
        .collect();
    assert!(route53_calls.is_empty(), "{route53_calls:?}");
    cloud.shutdown().await.expect("shutdown");
}

/// Since when us-east-1's last probe of eu-west-1, as `replica` has it, found it unreachable.
async fn us_east_1s_word_on_eu_west_1(replica: &impl HealthStore) -> Option<chrono::DateTime<Utc>> {
    replica
        .load_probes("us-east-1")
        .await
        .ok()??
        .peers
        .get("eu-west-1")?
        .unreachable_since
}

/// The demo's race, made certain: us-east-1 finds eu-west-1 unreachable and goes dark
/// before its next tick, so its last word on eu-west-1 stays "unreachable". Once
/// ap-southeast-1's newer probe finds eu-west-1 answering, eu-west-1 counts as in service
/// again and an alarm in ap-southeast-1 drains it (1 of 3 left is min_healthy). Under the
/// earlier rule (any fresh "unreachable" counts) the drain was suppressed for
/// `PROBE_FRESHNESS`, five minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dark_observers_stale_unreachable_does_not_outweigh_a_newer_answer() {
    let cloud = start().await;
    let mut faults = cloud.faults().snapshot();
    faults.regions_down.insert("eu-west-1".into());
    cloud.faults().replace(faults.clone());
    for observer in ["us-east-1", "ap-southeast-1"] {
        eventually("eu-west-1 seen unreachable", WITHIN, || async {
            history_in(&cloud, observer, "eu-west-1")
                .await
                .into_iter()
                .find(|e| e.kind == "unreachable" && e.reason.contains(observer))
        })
        .await;
    }
    // us-east-1's probe has reached ap-southeast-1's replica before us-east-1 goes dark
    // (writes in a dark region stay there).
    let ap_southeast_1 = HealthDeps::new(&cloud.clients(), cloud.fleet(), "ap-southeast-1")
        .await
        .store;
    eventually(
        "us-east-1's probe of eu-west-1 in ap-southeast-1's replica",
        WITHIN,
        || us_east_1s_word_on_eu_west_1(&ap_southeast_1),
    )
    .await;
    faults.regions_down.insert("us-east-1".into());
    faults.route53_control_plane_down = true;
    cloud.faults().replace(faults.clone());
    faults.regions_down.remove("eu-west-1");
    cloud.faults().replace(faults);
    eventually(
        "ap-southeast-1 to find eu-west-1 back and us-east-1 gone",
        WITHIN,
        || async {
            let events = history_in(&cloud, "ap-southeast-1", "eu-west-1").await;
            events
                .iter()
                .find(|e| e.kind == "reachable" && e.reason.contains("ap-southeast-1"))?;
            history_in(&cloud, "ap-southeast-1", "us-east-1")
                .await
                .into_iter()
                .find(|e| e.kind == "unreachable" && e.reason.contains("ap-southeast-1"))
        },
    )
    .await;

    let stale = us_east_1s_word_on_eu_west_1(&ap_southeast_1).await;
    assert!(
        stale.is_some(),
        "the scenario needs us-east-1's stale probe"
    );
    let alarm_at = Instant::now();
    set_alarm(&cloud, "ap-southeast-1", StateValue::Alarm).await;
    let took = until_nobody_routed_to(&cloud, "ap-southeast-1", alarm_at).await;
    let record = record_in(&cloud, "ap-southeast-1", "ap-southeast-1").await;
    assert_eq!(
        record.state,
        HealthState::DrainedByAlarm,
        "after {took:?}: {record:?}"
    );
    cloud.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_serves_inference_and_answers_health_with_the_reason() {
    let cloud = start().await;
    let eu_clients = routed_to(&cloud, "eu-west-1").await;
    assert!(
        eu_clients.iter().any(|c| c == "eu-west-1"),
        "the fleet's name resolves to eu-west-1 for its own clients: {eu_clients:?}"
    );
    let url = cloud
        .front_door_url("eu-west-1")
        .expect("front door")
        .to_owned();
    let infer = || async {
        http()
            .post(format!("{url}/invocations"))
            .header("content-type", "application/json")
            .body(r#"{"inputs":"hello"}"#)
            .send()
            .await
            .expect("the front door answers")
    };
    let answer = infer().await;
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().contains_key("x-request-id"));
    // The local endpoint's reply names the region whose endpoint answered.
    let reply = answer.text().await.unwrap_or_default();
    assert!(reply.contains("in eu-west-1"), "{reply}");

    let (status, body) = front_door_health(&cloud, "eu-west-1").await;
    assert_eq!(status, 200, "{body}");
    manual(
        &cloud,
        "eu-west-1",
        Input::ManualDrain {
            reason: "maintenance".into(),
        },
    )
    .await;
    let (status, body) = eventually("/health to say 503", WITHIN, || async {
        let (status, body) = front_door_health(&cloud, "eu-west-1").await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert!(
        body.to_string().contains("maintenance"),
        "the reason is in the body: {body}"
    );
    // Stale DNS caches still send clients here: they are served, not failed.
    assert_eq!(infer().await.status(), 200);
    cloud.shutdown().await.expect("shutdown");
}
