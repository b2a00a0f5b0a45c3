//! Applying the failover policy to the world: read a region's health record and the
//! fleet's out-of-service ledger, decide (pure, in [`crate::failover`]), act on DNS (and
//! on standby capacity first, in active-passive), then record the change with its
//! timings. The I/O sits behind small traits; the DynamoDB, Route 53 and Application
//! Auto Scaling adapters are in [`crate::adapters`].

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failover::{decide, Action, AlarmState, FleetView, Input, RegionHealth};
use crate::fleet::{Fleet, Pattern};

/// Why a health operation failed. The variant names are the error names Step Functions
/// and retry policies see.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A transient failure of a dependency; retrying the same event is safe.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The request can never succeed as given (unknown region, bad event).
    #[error("invalid: {0}")]
    Invalid(String),
}

impl From<crate::function::InvalidEvent> for HealthError {
    fn from(crate::function::InvalidEvent(message): crate::function::InvalidEvent) -> Self {
        HealthError::Invalid(message)
    }
}

impl crate::NamedError for HealthError {
    fn error_name(&self) -> &'static str {
        match self {
            HealthError::Retryable(_) => "Meridian.Retryable",
            HealthError::Invalid(_) => "Meridian.Invalid",
        }
    }
}

/// A record with the version it was read at, for optimistic concurrency.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// Outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// Someone else wrote first; re-read and decide again.
    Conflict,
}

/// Region health records, the out-of-service ledger and the failover event log.
pub trait HealthStore: Send + Sync {
    /// A region's record, read strongly consistently in that region.
    fn load(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Option<Versioned<RegionHealth>>, HealthError>> + Send;
    /// Writes a region's record if it is still at `expected` (None: must not exist).
    fn save(
        &self,
        health: &RegionHealth,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Write, HealthError>> + Send;
    /// The regions currently out of service, from the ledger (one item, written in the
    /// primary region only, so its conditional writes are fleet-wide consistent).
    fn out_of_service(&self) -> impl Future<Output = Result<Vec<String>, HealthError>> + Send;
    /// Adds `region` to the ledger unless that would put more than `limit` regions out of
    /// service; true if the region is (now or already) in the ledger.
    fn claim_out_of_service(
        &self,
        region: &str,
        limit: usize,
    ) -> impl Future<Output = Result<bool, HealthError>> + Send;
    /// Removes `region` from the ledger.
    fn release_out_of_service(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<(), HealthError>> + Send;
    /// Appends an event to the region's log; a second write of the same id is a no-op.
    fn record(&self, event: &FailoverEvent)
        -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// Takes a region out of DNS or puts it back (Route 53 health check `Inverted`).
pub trait DnsSwitch: Send + Sync {
    fn set_in_service(
        &self,
        region: &str,
        in_service: bool,
    ) -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// Raises a standby region's capacity before the primary is drained (active-passive).
pub trait StandbyScaler: Send + Sync {
    fn ensure_capacity(
        &self,
        region: &str,
        endpoint: &str,
        instances: u32,
    ) -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// One alarm's current state as CloudWatch reports it, with when it entered that state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmReading {
    pub alarm: String,
    pub state: AlarmState,
    pub since: DateTime<Utc>,
}

/// Reads a region's alarms where they live: CloudWatch in that region. The scheduled tick
/// applies what it reads, so an alarm event that was lost (or whose handling failed every
/// retry) is healed within one tick: level-triggered, not only edge-triggered.
pub trait AlarmStates: Send + Sync {
    fn current(
        &self,
        alarms: &[String],
    ) -> impl Future<Output = Result<Vec<AlarmReading>, HealthError>> + Send;
}

/// Where an input came from, with the times that the event log reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Stable id: the EventBridge event id, or a generated one for manual actions; the
    /// event log is keyed on it so a redelivered event is recorded once.
    pub id: String,
    pub input: Input,
    /// When CloudWatch changed the alarm's state (alarm inputs only).
    pub alarm_time: Option<DateTime<Utc>>,
    /// When the handler received the input.
    pub received: DateTime<Utc>,
}

/// One entry of the failover history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverEvent {
    pub id: String,
    pub region: String,
    /// drain, restore, suppressed.
    pub kind: String,
    pub from_state: String,
    pub to_state: String,
    pub reason: String,
    pub alarm: Option<String>,
    pub alarm_time: Option<DateTime<Utc>>,
    pub received: DateTime<Utc>,
    pub decided: DateTime<Utc>,
    /// When the DNS flip was confirmed (drain and restore only).
    pub flipped: Option<DateTime<Utc>>,
    /// When standby capacity was raised first (active-passive drains of the primary).
    pub standby_scaled: Option<DateTime<Utc>>,
    /// Alarm state change to DNS flipped, the failover reaction time.
    pub reaction_ms: Option<i64>,
}

/// What one application of an input did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub action: Action,
    pub health: RegionHealth,
    pub event: Option<FailoverEvent>,
}

/// Attempts before giving up on concurrent writers (each re-reads and decides again).
const MAX_ATTEMPTS: usize = 5;

/// Applies one input to one region, end to end. Idempotent: the same trigger applied
/// again finds nothing to change. `now` supplies decision and action times.
pub async fn apply<S: HealthStore, D: DnsSwitch, A: StandbyScaler>(
    fleet: &Fleet,
    region: &str,
    trigger: &Trigger,
    store: &S,
    dns: &D,
    scaler: &A,
    now: impl Fn() -> DateTime<Utc> + Send + Sync,
) -> Result<Applied, HealthError> {
    let spec = fleet.region(region).ok_or_else(|| {
        HealthError::Invalid(format!("region {region:?} is not in fleet {}", fleet.name))
    })?;
    for _ in 0..MAX_ATTEMPTS {
        let stored = store.load(region).await?;
        let current = stored
            .as_ref()
            .map_or_else(|| RegionHealth::new(region, now()), |s| s.value.clone());
        let out = store.out_of_service().await?;
        let others_out = out.iter().filter(|r| r.as_str() != region).count();
        let view = FleetView {
            regions: fleet.regions.len(),
            others_in_service: fleet.regions.len().saturating_sub(1 + others_out),
        };
        let decided = now();
        let decision = decide(
            &current,
            &trigger.input,
            &spec.alarms,
            view,
            &fleet.failover,
            decided,
        );
        if decision.action == Action::None && decision.next == current {
            return Ok(Applied {
                action: Action::None,
                health: current,
                event: None,
            });
        }
        let mut standby_scaled = None;
        let mut flipped = None;
        match &decision.action {
            Action::Drain => {
                let limit = fleet
                    .regions
                    .len()
                    .saturating_sub(fleet.failover.min_healthy);
                if !store.claim_out_of_service(region, limit).await? {
                    continue;
                }
                if fleet.pattern == Pattern::ActivePassive && region == fleet.primary_region {
                    for standby in fleet.regions.iter().filter(|r| r.name != region) {
                        scaler
                            .ensure_capacity(&standby.name, &standby.endpoint, spec.instance_count)
                            .await?;
                    }
                    standby_scaled = Some(now());
                }
                dns.set_in_service(region, false).await?;
                flipped = Some(now());
            }
            Action::Restore => {
                dns.set_in_service(region, true).await?;
                flipped = Some(now());
                store.release_out_of_service(region).await?;
            }
            Action::Suppressed { .. } | Action::None => {}
        }
        match store
            .save(&decision.next, stored.as_ref().map(|s| s.version))
            .await?
        {
            Write::Conflict => continue,
            Write::Done => {}
        }
        let kind = match &decision.action {
            Action::Drain => Some("drain"),
            Action::Restore => Some("restore"),
            Action::Suppressed { .. } if calls_for_drain(&trigger.input) => Some("suppressed"),
            _ => None,
        };
        let event = kind.map(|kind| FailoverEvent {
            id: trigger.id.clone(),
            region: region.to_owned(),
            kind: kind.to_owned(),
            from_state: state_name(&current),
            to_state: state_name(&decision.next),
            reason: match &decision.action {
                Action::Suppressed { reason } => reason.clone(),
                _ => decision.next.reason.clone(),
            },
            alarm: match &trigger.input {
                Input::Alarm { alarm, .. } => Some(alarm.clone()),
                _ => None,
            },
            alarm_time: trigger.alarm_time,
            received: trigger.received,
            decided,
            flipped,
            standby_scaled,
            reaction_ms: trigger
                .alarm_time
                .zip(flipped)
                .map(|(alarm, flip)| (flip - alarm).num_milliseconds()),
        });
        if let Some(event) = &event {
            store.record(event).await?;
        }
        return Ok(Applied {
            action: decision.action,
            health: decision.next,
            event,
        });
    }
    Err(HealthError::Retryable(format!(
        "region {region}: {MAX_ATTEMPTS} attempts lost to concurrent writers"
    )))
}

/// Whether an input calls for a drain: an alarm entering ALARM, or an operator. Only then
/// is a suppressed drain recorded; a re-evaluation that reaches the same suppression (a
/// tick, another alarm's change, the tick's reading of an alarm's state) adds nothing to
/// the history.
fn calls_for_drain(input: &Input) -> bool {
    matches!(
        input,
        Input::Alarm {
            state: AlarmState::Alarm,
            ..
        } | Input::ManualDrain { .. }
    )
}

fn state_name(health: &RegionHealth) -> String {
    serde_json::to_value(health.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
