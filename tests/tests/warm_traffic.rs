//! Continuous warm traffic end to end on the local cloud over real HTTP: an
//! active-passive primary's front door forwards its configured share of inference to
//! each standby's front door, which serves it from its own endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use meridian::adapters::HealthDeps;
use meridian::failover::RegionHealth;
use meridian::fleet::{Fleet, Pattern};
use meridian::health::HealthStore;
use meridian::traffic::TrafficSettings;
use meridian_local::{Functions, LocalCloud};
use meridian_tests::{eventually, example_fleet, start_cloud_for};

const WITHIN: Duration = Duration::from_secs(30);

/// Requests sent to the primary's front door.
const N: usize = 600;
/// Each standby's share, percent.
const WARM_PERCENT: f64 = 10.0;

fn fleet() -> Fleet {
    let mut fleet = example_fleet();
    fleet.pattern = Pattern::ActivePassive;
    fleet.traffic = TrafficSettings {
        warm_percent: WARM_PERCENT,
        ..TrafficSettings::default()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_sends_each_standby_its_warm_share() {
    let cloud = start_cloud_for(fleet(), Functions::new(), true).await;
    let primary = cloud.fleet().primary_region.clone();
    let standbys: Vec<String> = cloud
        .fleet()
        .region_names()
        .into_iter()
        .filter(|r| *r != primary)
        .map(str::to_owned)
        .collect();
    // The primary forwards to a standby once its replica holds the standby's published
    // front door (the standby's tick writes it).
    eventually("the standbys' front doors published", WITHIN, || async {
        for standby in &standbys {
            record_in(&cloud, &primary, standby).await.front_door?;
        }
        Some(())
    })
    .await;
    let url = cloud
        .front_door_url(&primary)
        .expect("front door")
        .to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    // The front door reads the split once a second: wait until its read has the
    // standbys (some request is served by one) before counting.
    eventually("the primary forwarding", WITHIN, || async {
        let answer = http
            .post(format!("{url}/invocations"))
            .body("{}")
            .send()
            .await
            .ok()?;
        let by = answer
            .headers()
            .get("x-meridian-served-by")?
            .to_str()
            .ok()?;
        (by != primary).then_some(())
    })
    .await;
    let served_by: Vec<String> = futures::stream::iter(0..N)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let answer = http
                    .post(format!("{url}/invocations"))
                    .header("content-type", "application/json")
                    .body(r#"{"inputs":"hello"}"#)
                    .send()
                    .await
                    .expect("the front door answers");
                assert_eq!(answer.status(), 200);
                let by = answer
                    .headers()
                    .get("x-meridian-served-by")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let reply = answer.text().await.unwrap_or_default();
                assert!(reply.contains(&format!("in {by}")), "{by}: {reply}");
                by
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for region in served_by {
        *counts.entry(region).or_default() += 1;
    }
    // Each standby's count is binomial(N, p): with N = 600 and p = 0.10 its mean is 60
    // and its standard deviation sqrt(600 * 0.1 * 0.9) ≈ 7.3; the tolerance is 4 of
    // them (±30), which a correct split misses about once in 16,000 runs.
    let expected = N as f64 * WARM_PERCENT / 100.0;
    let tolerance = 4.0 * (N as f64 * 0.1 * 0.9).sqrt();
    for standby in &standbys {
        let got = counts.get(standby).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() <= tolerance,
            "{standby} served {got} of {N}, expected {expected} ± {tolerance:.0}: {counts:?}"
        );
    }
    let at_home = counts.get(&primary).copied().unwrap_or(0);
    assert_eq!(
        at_home + standbys.iter().filter_map(|s| counts.get(s)).sum::<usize>(),
        N,
        "every answer names a fleet region: {counts:?}"
    );
    cloud.shutdown().await.expect("shutdown");
}
