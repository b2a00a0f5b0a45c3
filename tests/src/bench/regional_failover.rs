//! Benchmark of failover through the front doors, in one run:
//!
//! 1. **alarm → `/health` 503**: an alarm's state is set to ALARM in a region; the time
//!    until that region's front door answers 503 (the failover function's intent, settle
//!    time and write, then the front door's cache), over `ALARMS` alarms, alternating
//!    regions. Baseline: one `SetAlarmState` round trip through the gateway.
//! 2. **region down → no client resolved there**: a region is taken down; the time until
//!    no client location resolves to it, over `OUTAGES` outages, next to Route 53's
//!    modeled figure for the fleet's `[dns]` settings on AWS and the local cloud's scaled
//!    bound (its checkers run `schedule_speedup` times faster).
//! 3. **front-door overhead**: `POST /invocations` through a front door against a direct
//!    `InvokeEndpoint` on the same local cloud, `REQUESTS` each, alternating.
//! 4. **cold start**: the front door's release binary against hello world's, process spawn
//!    → first `GET /runtime/invocation/next` against a stub Runtime API, `COLD_RUNS` each,
//!    alternating (the same measurement as the `cold-start` benchmark).
//!
//! Run: `./scripts/bench regional-failover [ALARMS] [OUTAGES] [REQUESTS] [COLD_RUNS]` (defaults 20, 10, 200, 20). The settle time is set to 1 s, the
//! least the fleet file allows; the fleet file's default is 5 s.

use std::time::{Duration, Instant};

use crate::lambda_bench::{build, certificate_bundle, cold_start, subjects, target_dir};
use crate::{example_fleet, start_cloud_for, test_config};
use aws_sdk_cloudwatch::types::StateValue;
use meridian::adapters::HealthDeps;
use meridian::failover::{FailoverSettings, HealthState};
use meridian::health::HealthStore;
use meridian_local::{Functions, LocalCloud};

const ALARM: &str = "meridian-demo-llm-5xx";
const REGIONS: [&str; 2] = ["eu-west-1", "ap-southeast-1"];

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn p50_p99(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (percentile(&sorted, 50.0), percentile(&sorted, 99.0))
}

fn row(name: &str, values: &[f64], baseline: f64) {
    let (p50, p99) = p50_p99(values);
    println!(
        "  {name:<46} n={:<4} p50 {p50:>9.1} ms ({:>6.2}× baseline)   p99 {p99:>9.1} ms ({:>6.2}× baseline)",
        values.len(),
        p50 / baseline,
        p99 / baseline
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

async fn health_status(client: &reqwest::Client, url: &str) -> anyhow::Result<u16> {
    Ok(client
        .get(format!("{url}/health"))
        .send()
        .await?
        .status()
        .as_u16())
}

async fn poll_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await? {
        anyhow::ensure!(Instant::now() < deadline, "no {what} within 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn routed_to(cloud: &LocalCloud, region: &str) -> anyhow::Result<bool> {
    Ok(cloud
        .routing()
        .await?
        .resolutions
        .iter()
        .any(|r| r.region.as_deref() == Some(region)))
}

/// (baseline SetAlarmState round trips, alarm → /health 503), in ms.
async fn alarms_to_503(cloud: &LocalCloud, alarms: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let client = http()?;
    let (mut baseline, mut to_503) = (Vec::new(), Vec::new());
    for i in 0..alarms {
        let region = REGIONS[i % REGIONS.len()];
        let url = cloud
            .front_door_url(region)
            .ok_or_else(|| anyhow::anyhow!("{region} has no front door"))?
            .to_owned();
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&cloud.clients().config(region).await);
        let set = |state: StateValue| {
            cloudwatch
                .set_alarm_state()
                .alarm_name(ALARM)
                .state_value(state)
                .state_reason("bench")
                .send()
        };
        let started = Instant::now();
        set(StateValue::Alarm).await?;
        baseline.push(ms(started.elapsed()));
        poll_until("503", || async {
            Ok(health_status(&client, &url).await? == 503)
        })
        .await?;
        to_503.push(ms(started.elapsed()));

        set(StateValue::Ok).await?;
        let deps = HealthDeps::new(&cloud.clients(), cloud.fleet(), region).await;
        poll_until("failback", || async {
            Ok(deps
                .store
                .load(region)
                .await?
                .is_some_and(|h| h.value.state == HealthState::Healthy))
        })
        .await?;
        poll_until("200", || async {
            Ok(health_status(&client, &url).await? == 200)
        })
        .await?;
        poll_until("back in DNS", || routed_to(cloud, region)).await?;
    }
    Ok((baseline, to_503))
}

/// Region down → no client location resolved to it, in ms.
async fn outages(cloud: &LocalCloud, outages: usize) -> anyhow::Result<Vec<f64>> {
    let mut took = Vec::new();
    for i in 0..outages {
        let region = REGIONS[i % REGIONS.len()];
        let started = Instant::now();
        cloud.faults().take_region_down(region);
        poll_until("region out of DNS", || async {
            Ok(!routed_to(cloud, region).await?)
        })
        .await?;
        took.push(ms(started.elapsed()));
        cloud.faults().bring_region_up(region);
        poll_until("region back in DNS", || routed_to(cloud, region)).await?;
    }
    Ok(took)
}

/// (direct InvokeEndpoint, through the front door), in ms, alternating.
async fn overhead(cloud: &LocalCloud, requests: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let region = "eu-west-1";
    let endpoint = cloud
        .fleet()
        .region(region)
        .map(|r| r.endpoint.clone())
        .unwrap_or_default();
    let url = cloud
        .front_door_url(region)
        .ok_or_else(|| anyhow::anyhow!("{region} has no front door"))?
        .to_owned();
    let runtime = aws_sdk_sagemakerruntime::Client::new(&cloud.clients().config(region).await);
    let client = http()?;
    let body = r#"{"inputs":"What is Meridian?"}"#;
    let (mut direct, mut front_door) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        let started = Instant::now();
        runtime
            .invoke_endpoint()
            .endpoint_name(&endpoint)
            .content_type("application/json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await?;
        direct.push(ms(started.elapsed()));
        let started = Instant::now();
        let response = client
            .post(format!("{url}/invocations"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "front door: {}",
            response.status()
        );
        response.bytes().await?;
        front_door.push(ms(started.elapsed()));
    }
    Ok((direct, front_door))
}

/// `./scripts/bench regional-failover [ARGS...]`.
pub async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut args = args.into_iter();
    let mut next = |default: usize| -> anyhow::Result<usize> {
        Ok(args
            .next()
            .map(|n| n.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (alarms, outage_count, requests, cold_runs) = (next(20)?, next(10)?, next(200)?, next(20)?);

    let cold_subjects: Vec<_> = subjects()
        .into_iter()
        .filter(|s| matches!(s.binary, "hello-lambda" | "front-door"))
        .collect();
    build(&cold_subjects)?;

    let mut fleet = example_fleet();
    fleet.failover = FailoverSettings {
        min_healthy: 1,
        cooldown: Duration::ZERO,
        failback_after: Duration::ZERO,
        settle: Duration::from_secs(1),
    };
    let cloud = start_cloud_for(fleet.clone(), Functions::new(), true).await;
    poll_until("every front door healthy", || async {
        Ok(cloud.routing().await?.records.iter().all(|r| r.healthy()))
    })
    .await?;

    println!("\n1. alarm state change → the region's front door answers /health 503 (settle 1 s)");
    let (baseline, to_503) = alarms_to_503(&cloud, alarms).await?;
    let (base, _) = p50_p99(&baseline);
    row("baseline: SetAlarmState round trip", &baseline, base);
    row("alarm set → /health 503", &to_503, base);

    println!("\n2. region down → no client location resolved to it");
    let took = outages(&cloud, outage_count).await?;
    let dns = &fleet.dns;
    let speedup = test_config().schedule_speedup;
    let local_bound = Duration::from_secs(dns.health_check_interval_seconds.into())
        * (dns.failure_threshold + 1)
        / speedup;
    row("region down → out of every answer", &took, ms(local_bound));
    println!(
        "  (baseline here: the local bound, (threshold + 1) × interval / {speedup} = {:.0} ms)",
        ms(local_bound)
    );
    println!(
        "  modeled on AWS for [dns] interval {} s, threshold {}, TTL {} s: detection {} s, at most {} s until every resolver has stopped sending clients there",
        dns.health_check_interval_seconds,
        dns.failure_threshold,
        dns.ttl_seconds,
        dns.health_check_interval_seconds * dns.failure_threshold,
        dns.worst_case_failover().as_secs()
    );

    println!("\n3. front-door overhead per request (eu-west-1, alternating)");
    let (direct, through) = overhead(&cloud, requests).await?;
    let (direct_p50, _) = p50_p99(&direct);
    row("direct InvokeEndpoint (baseline)", &direct, direct_p50);
    row(
        "POST /invocations through the front door",
        &through,
        direct_p50,
    );
    cloud.shutdown().await?;

    println!(
        "\n4. cold start: spawn → first GET /runtime/invocation/next, {cold_runs} runs each, alternating (certificates: {})",
        certificate_bundle()
    );
    let release = target_dir().join("release");
    let logs = tempfile::tempdir()?;
    let mut cold: Vec<Vec<f64>> = vec![Vec::new(); cold_subjects.len()];
    for round in 0..cold_runs {
        for offset in 0..cold_subjects.len() {
            let index = (round + offset) % cold_subjects.len();
            let subject = &cold_subjects[index];
            let log = logs.path().join(format!("{}.log", subject.binary));
            cold[index].push(cold_start(&release.join(subject.binary), subject, &log).await?);
        }
    }
    let hello = cold_subjects
        .iter()
        .position(|s| s.binary == "hello-lambda")
        .map_or(f64::NAN, |i| p50_p99(&cold[i]).0);
    for (subject, values) in cold_subjects.iter().zip(&cold) {
        row(subject.binary, values, hello);
    }
    Ok(())
}
