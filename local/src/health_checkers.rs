//! Route 53's health checkers (moto stores health checks but never probes them): every
//! HTTP, HTTPS and TCP health check is probed at its request interval, and its status
//! follows Route 53's rule for consecutive results. See `EMULATIONS.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_route53::types::{HealthCheck, HealthCheckType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

use crate::ctx::Ctx;

/// Route 53 gives an endpoint four seconds to accept the connection...
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// ...and two seconds after that to answer with a status.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Scaled timeouts never go below this: a loaded test machine answers slower than a
/// front door on AWS, and a timeout there would be a false outage.
const TIMEOUT_FLOOR: Duration = Duration::from_millis(500);
/// Route 53 searches this much of the body for a `*_STR_MATCH` check's string.
const SEARCHED_BYTES: usize = 5120;

/// How a health check's endpoint is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Http,
    Https,
    Tcp,
}

/// What a checker probes, read from a health check's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: ProbeKind,
    /// `IPAddress`, else `FullyQualifiedDomainName`.
    pub host: String,
    /// The `Host` header: the domain name when an IP address is probed.
    pub host_header: Option<String>,
    pub port: u16,
    pub path: String,
    pub search_string: Option<String>,
    /// `RequestInterval` as configured (on AWS time).
    pub interval: Duration,
    pub failure_threshold: u32,
    pub disabled: bool,
}

impl Target {
    /// The probed endpoint of an HTTP(S)/TCP health check; `None` for the kinds no checker
    /// probes (calculated, CloudWatch metric, recovery control) or without a host.
    pub fn of(check: &HealthCheck) -> Option<Self> {
        let config = check.health_check_config()?;
        let (kind, matches) = match config.r#type() {
            HealthCheckType::Http => (ProbeKind::Http, false),
            HealthCheckType::HttpStrMatch => (ProbeKind::Http, true),
            HealthCheckType::Https => (ProbeKind::Https, false),
            HealthCheckType::HttpsStrMatch => (ProbeKind::Https, true),
            HealthCheckType::Tcp => (ProbeKind::Tcp, false),
            _ => return None,
        };
        let domain = config.fully_qualified_domain_name().map(str::to_owned);
        let (host, host_header) = match (config.ip_address(), domain) {
            (Some(ip), domain) => (ip.to_owned(), domain),
            (None, Some(domain)) => (domain, None),
            (None, None) => return None,
        };
        let default_port = if kind == ProbeKind::Https { 443 } else { 80 };
        Some(Self {
            kind,
            host,
            host_header,
            port: config
                .port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(default_port),
            path: config.resource_path().unwrap_or("/").to_owned(),
            search_string: matches
                .then(|| config.search_string().map(str::to_owned))
                .flatten(),
            interval: Duration::from_secs(
                config
                    .request_interval()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(30),
            ),
            failure_threshold: config
                .failure_threshold()
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(3),
            disabled: config.disabled().unwrap_or(false),
        })
    }

    /// What is probed, as a URL.
    pub fn url(&self) -> String {
        let scheme = match self.kind {
            ProbeKind::Http => "http",
            ProbeKind::Https => "https",
            ProbeKind::Tcp => "tcp",
        };
        let path = if self.kind == ProbeKind::Tcp {
            ""
        } else {
            &self.path
        };
        format!("{scheme}://{}:{}{path}", self.host, self.port)
    }
}

/// One checker's view of a health check. Route 53's rule: an endpoint becomes unhealthy
/// after `FailureThreshold` consecutive failed probes and healthy again after as many
/// consecutive successful ones; a new health check starts healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            healthy: true,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }
}

impl Tally {
    /// Counts one probe; true when the status changed.
    pub fn record(&mut self, success: bool, failure_threshold: u32) -> bool {
        let threshold = failure_threshold.max(1);
        if success {
            self.consecutive_successes += 1;
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
            self.consecutive_successes = 0;
        }
        let healthy = match self.healthy {
            true => self.consecutive_failures < threshold,
            false => self.consecutive_successes >= threshold,
        };
        let changed = healthy != self.healthy;
        self.healthy = healthy;
        changed
    }
}

/// The outcome of one probe, worded as Route 53's `StatusReport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub time: DateTime<Utc>,
    pub success: bool,
    pub report: String,
}

/// A health check's status as the checker sees it (`GET /_meridian/health-checks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckerStatus {
    pub health_check_id: String,
    pub caller_reference: String,
    pub url: String,
    pub healthy: bool,
    /// When the status last changed (or the checker first saw the health check).
    pub since: DateTime<Utc>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_probe: Option<Probe>,
}

struct Checked {
    caller_reference: String,
    target: Target,
    tally: Tally,
    since: DateTime<Utc>,
    last_probe: Option<Probe>,
    prober: AbortHandle,
}

impl Checked {
    fn status(&self, id: &str) -> CheckerStatus {
        CheckerStatus {
            health_check_id: id.to_owned(),
            caller_reference: self.caller_reference.clone(),
            url: self.target.url(),
            healthy: self.tally.healthy,
            since: self.since,
            consecutive_failures: self.tally.consecutive_failures,
            consecutive_successes: self.tally.consecutive_successes,
            last_probe: self.last_probe.clone(),
        }
    }
}

/// The checkers' statuses, by health check ID.
#[derive(Default)]
pub struct HealthCheckers {
    checks: Mutex<HashMap<String, Checked>>,
}

impl HealthCheckers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Checked>> {
        self.checks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self, id: &str) -> Option<CheckerStatus> {
        self.lock().get(id).map(|checked| checked.status(id))
    }

    /// Every probed health check's status, by ID.
    pub fn statuses(&self) -> Vec<CheckerStatus> {
        let mut statuses: Vec<CheckerStatus> = self
            .lock()
            .iter()
            .map(|(id, checked)| checked.status(id))
            .collect();
        statuses.sort_by(|a, b| a.caller_reference.cmp(&b.caller_reference));
        statuses
    }

    fn target(&self, id: &str) -> Option<Target> {
        self.lock().get(id).map(|checked| checked.target.clone())
    }

    fn record(&self, id: &str, probe: Probe) {
        let mut checks = self.lock();
        let Some(checked) = checks.get_mut(id) else {
            return;
        };
        if checked
            .tally
            .record(probe.success, checked.target.failure_threshold)
        {
            checked.since = probe.time;
            tracing::info!(
                health_check = %id, reference = %checked.caller_reference,
                healthy = checked.tally.healthy, report = %probe.report,
                "health check status changed"
            );
        }
        checked.last_probe = Some(probe);
    }
}

/// Keeps a checker on every probed health check in moto: new ones are probed from the next
/// poll on, changed ones with their new settings, deleted ones no more.
pub fn start(ctx: &Arc<Ctx>, checkers: &Arc<HealthCheckers>) {
    let (task_ctx, checkers) = (ctx.clone(), checkers.clone());
    ctx.spawn(async move {
        let client = match prober_client(&task_ctx) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "no health checkers: the probe client failed");
                return;
            }
        };
        loop {
            if let Err(error) = refresh(&task_ctx, &checkers, &client).await {
                tracing::warn!(error = %format!("{error:#}"), "reading the health checks failed");
            }
            tokio::time::sleep(task_ctx.config.poll_interval).await;
        }
    });
}

/// Every probe opens a new connection (as each of Route 53's checkers does) and follows no
/// redirect (a 3xx is a success).
fn prober_client(ctx: &Ctx) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(scaled_timeout(ctx, CONNECT_TIMEOUT))
        .build()?)
}

fn scaled_timeout(ctx: &Ctx, aws: Duration) -> Duration {
    ctx.config.scaled(aws).max(TIMEOUT_FLOOR)
}

/// Every health check Route 53 (moto) holds, by id, all pages.
pub async fn health_checks(
    route53: &aws_sdk_route53::Client,
) -> Result<HashMap<String, HealthCheck>> {
    let mut checks = HashMap::new();
    let mut marker = None;
    loop {
        let page = route53
            .list_health_checks()
            .set_marker(marker)
            .send()
            .await
            .context("ListHealthChecks")?;
        for check in page.health_checks() {
            checks.insert(check.id().to_owned(), check.clone());
        }
        marker = page
            .is_truncated()
            .then(|| page.next_marker().map(str::to_owned))
            .flatten();
        if marker.is_none() {
            return Ok(checks);
        }
    }
}

async fn refresh(
    ctx: &Arc<Ctx>,
    checkers: &Arc<HealthCheckers>,
    client: &reqwest::Client,
) -> Result<()> {
    let route53 = aws_sdk_route53::Client::new(&ctx.moto.config("us-east-1").await);
    let mut seen = HashMap::new();
    for (id, check) in health_checks(&route53).await? {
        if let Some(target) = Target::of(&check) {
            seen.insert(id, (check.caller_reference().to_owned(), target));
        }
    }
    let mut checks = checkers.lock();
    checks.retain(|id, checked| {
        let kept = seen.contains_key(id);
        if !kept {
            checked.prober.abort();
        }
        kept
    });
    for (id, (caller_reference, target)) in seen {
        match checks.get_mut(&id) {
            Some(checked) => checked.target = target,
            None => {
                let prober = spawn_prober(ctx, checkers, client, &id, target.interval);
                checks.insert(
                    id,
                    Checked {
                        caller_reference,
                        target,
                        tally: Tally::default(),
                        since: Utc::now(),
                        last_probe: None,
                        prober,
                    },
                );
            }
        }
    }
    Ok(())
}

/// Probes health check `id` every (scaled) `interval` until it is deleted or the local
/// cloud stops. A disabled health check is not probed; Route 53 counts it healthy.
fn spawn_prober(
    ctx: &Arc<Ctx>,
    checkers: &Arc<HealthCheckers>,
    client: &reqwest::Client,
    id: &str,
    interval: Duration,
) -> AbortHandle {
    let (task_ctx, checkers, client, id) =
        (ctx.clone(), checkers.clone(), client.clone(), id.to_owned());
    ctx.spawn(async move {
        let mut ticks = tokio::time::interval(task_ctx.config.scaled(interval));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(target) = checkers.target(&id) else {
                return;
            };
            if target.disabled {
                continue;
            }
            let probe = probe(&task_ctx, &client, &target).await;
            checkers.record(&id, probe);
        }
    })
}

async fn probe(ctx: &Ctx, client: &reqwest::Client, target: &Target) -> Probe {
    let outcome = match target.kind {
        ProbeKind::Tcp => probe_tcp(ctx, target).await,
        ProbeKind::Http | ProbeKind::Https => probe_http(ctx, client, target).await,
    };
    let (success, report) = match outcome {
        Ok(report) => (true, format!("Success: {report}")),
        Err(report) => (false, format!("Failure: {report}")),
    };
    Probe {
        time: Utc::now(),
        success,
        report,
    }
}

async fn probe_tcp(ctx: &Ctx, target: &Target) -> Result<String, String> {
    let connect = tokio::net::TcpStream::connect((target.host.as_str(), target.port));
    match tokio::time::timeout(scaled_timeout(ctx, CONNECT_TIMEOUT), connect).await {
        Ok(Ok(_)) => Ok("TCP connection established".into()),
        Ok(Err(error)) => Err(format!("Could not connect: {error}")),
        Err(_) => Err("Connection timed out".into()),
    }
}

async fn probe_http(
    ctx: &Ctx,
    client: &reqwest::Client,
    target: &Target,
) -> Result<String, String> {
    let mut request = client
        .get(target.url())
        .timeout(scaled_timeout(ctx, CONNECT_TIMEOUT) + scaled_timeout(ctx, RESPONSE_TIMEOUT));
    if let Some(host) = &target.host_header {
        request = request.header(http::header::HOST, host);
    }
    let response = request.send().await.map_err(|error| {
        if error.is_timeout() {
            "The endpoint did not respond in time".to_owned()
        } else {
            format!("Could not connect or read the response: {error}")
        }
    })?;
    let status = response.status();
    let reason = status.canonical_reason().unwrap_or("");
    let code = format!("HTTP Status Code {}, {reason}", status.as_u16());
    if !(status.is_success() || status.is_redirection()) {
        return Err(code);
    }
    let Some(search) = &target.search_string else {
        return Ok(code);
    };
    let body = response
        .bytes()
        .await
        .map_err(|error| format!("Could not read the response body: {error}"))?;
    let searched = String::from_utf8_lossy(&body[..body.len().min(SEARCHED_BYTES)]);
    if searched.contains(search.as_str()) {
        Ok(code)
    } else {
        Err(format!("{code}; the search string was not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_route53::types::HealthCheckConfig;

    #[test]
    fn a_threshold_of_consecutive_results_changes_the_status() {
        let mut tally = Tally::default();
        assert!(tally.healthy, "a new health check starts healthy");
        assert!(!tally.record(false, 2));
        assert!(!tally.record(true, 2), "a success resets the failures");
        assert!(!tally.record(false, 2));
        assert!(tally.record(false, 2), "two failures in a row");
        assert!(!tally.healthy);
        assert!(!tally.record(true, 2));
        assert!(!tally.record(false, 2));
        assert!(!tally.record(true, 2));
        assert!(tally.record(true, 2), "two successes in a row");
        assert!(tally.healthy);
        let mut once = Tally::default();
        assert!(
            once.record(false, 1),
            "a threshold of 1 turns at the first failure"
        );
    }

    fn check(config: HealthCheckConfig) -> HealthCheck {
        HealthCheck::builder()
            .id("hc-1")
            .caller_reference("fleet-eu-west-1")
            .health_check_config(config)
            .health_check_version(1)
            .build()
            .expect("a complete health check")
    }

    #[test]
    fn http_checks_are_probed_at_their_address_port_and_path() {
        let config = HealthCheckConfig::builder()
            .r#type(HealthCheckType::Http)
            .ip_address("127.0.0.1")
            .fully_qualified_domain_name("front.example")
            .port(9001)
            .resource_path("/live/health")
            .request_interval(10)
            .failure_threshold(2)
            .build()
            .expect("a complete config");
        let target = Target::of(&check(config)).expect("a probed health check");
        assert_eq!(target.url(), "http://127.0.0.1:9001/live/health");
        assert_eq!(target.host_header.as_deref(), Some("front.example"));
        assert_eq!(target.interval, Duration::from_secs(10));
        assert_eq!(target.failure_threshold, 2);
        assert_eq!(target.search_string, None);
    }

    #[test]
    fn calculated_checks_are_not_probed() {
        let config = HealthCheckConfig::builder()
            .r#type(HealthCheckType::Calculated)
            .build()
            .expect("a complete config");
        assert_eq!(Target::of(&check(config)), None);
    }
}
