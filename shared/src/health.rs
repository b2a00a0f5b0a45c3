//! Applying the failover policy to the world: read a region's health record and its
//! peers' from the region's own table replica, decide (pure, in [`crate::failover`], with
//! the fleet counted by [`crate::peers`]), and write the region's record — the write *is*
//! the drain: the region's front door answers `/health` from that record and Route 53's
//! health checkers follow. The I/O sits behind small traits; the DynamoDB, Application
//! Auto Scaling and CloudWatch adapters are in [`crate::adapters`].

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failover::{decide, Action, AlarmState, Input, RegionHealth};
use crate::fleet::Fleet;
use crate::peers::{describe_out, fleet_view, intent_is_live, unreachable, PeerProbes, PeerView};

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

impl From<crate::table::TableError> for HealthError {
    fn from(error: crate::table::TableError) -> Self {
        match error {
            crate::table::TableError::Unavailable(_) => HealthError::Retryable(error.to_string()),
            crate::table::TableError::Rejected(_) | crate::table::TableError::Corrupt(_) => {
                HealthError::Invalid(error.to_string())
            }
        }
    }
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

/// Region health records, the peers' probes and the failover event log, all in the table
/// replica of the region the code runs for: nothing on the path of a drain reads or
/// writes another region.
pub trait HealthStore: Send + Sync {
    /// A region's record as this region's replica has it (strongly consistent for this
    /// region's own record, which only this region writes; a peer's as replicated so far).
    fn load(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Option<Versioned<RegionHealth>>, HealthError>> + Send;
    /// Writes this region's record if it is still at `expected` (None: must not exist).
    fn save(
        &self,
        health: &RegionHealth,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Write, HealthError>> + Send;
    /// What `observer`'s tick saw of its peers, as this region's replica has it.
    fn load_probes(
        &self,
        observer: &str,
    ) -> impl Future<Output = Result<Option<PeerProbes>, HealthError>> + Send;
    /// Writes this region's probes of its peers.
    fn save_probes(
        &self,
        probes: &PeerProbes,
    ) -> impl Future<Output = Result<(), HealthError>> + Send;
    /// Appends an event to a region's log; a second write of the same id is a no-op.
    fn record(&self, event: &FailoverEvent)
        -> impl Future<Output = Result<(), HealthError>> + Send;
}

/// Time, for decisions and for the settle wait; a trait so tests can run the protocol
/// with simulated time and replication lag.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Raises a standby region's own capacity when it sees the primary out of service
/// (active-passive): the standby's tick does it, in the standby's region.
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

/// What a peer's front door answered to `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// An HTTP answer (200 in service, 503 drained, anything else).
    Answered { status: u16, body: String },
    /// No answer: connection refused, timeout, TLS or DNS failure.
    NoAnswer(String),
}

impl ProbeAnswer {
    /// Whether the front door answered at all, as Route 53's checkers see it: a region
    /// whose front door says 503 is drained, not dark.
    pub fn reachable(&self) -> bool {
        matches!(self, ProbeAnswer::Answered { status, .. } if *status < 500 || *status == 503)
    }

    /// One line for the probe record and the history.
    pub fn describe(&self) -> String {
        match self {
            ProbeAnswer::Answered { status, body } => {
                let body: String = body.chars().take(200).collect();
                format!("{status} {body}")
            }
            ProbeAnswer::NoAnswer(why) => why.clone(),
        }
    }
}

/// Probes a peer's front door `/health` over HTTPS, the way Route 53's checkers do; a
/// plain request to the peer's public endpoint, no AWS API.
pub trait FrontDoorProbe: Send + Sync {
    fn probe(&self, base_url: &str) -> impl Future<Output = ProbeAnswer> + Send;
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
    /// drain, restore, suppressed (decisions of the region itself); unreachable,
    /// reachable (a peer's probes of the region's front door); standby (an
    /// active-passive standby raised its own capacity); drift, drift-healed (the region's
    /// endpoint left or rejoined the registry's active version, [`crate::drift`]).
    pub kind: String,
    pub from_state: String,
    pub to_state: String,
    pub reason: String,
    pub alarm: Option<String>,
    pub alarm_time: Option<DateTime<Utc>>,
    pub received: DateTime<Utc>,
    pub decided: DateTime<Utc>,
    /// When the region's record changed (drain and restore only): from then its front
    /// door's `/health` answers accordingly (within its cache time), and Route 53's
    /// checkers follow within their interval × failure threshold.
    #[serde(alias = "flipped")]
    pub recorded: Option<DateTime<Utc>>,
    /// Alarm state change to record written, the failover reaction time.
    pub reaction_ms: Option<i64>,
}

impl FailoverEvent {
    /// An entry for what a tick observed (a peer's front door, the endpoint's drift), not
    /// decided on an alarm: received, decided and recorded at `now`.
    pub fn observed(
        id: String,
        region: &str,
        kind: &str,
        (from, to): (&str, &str),
        reason: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            region: region.to_owned(),
            kind: kind.to_owned(),
            from_state: from.to_owned(),
            to_state: to.to_owned(),
            reason,
            alarm: None,
            alarm_time: None,
            received: now,
            decided: now,
            recorded: Some(now),
            reaction_ms: None,
        }
    }
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

/// Every peer of `region` as `store` (this region's replica) shows it.
pub async fn peer_views<S: HealthStore>(
    fleet: &Fleet,
    region: &str,
    store: &S,
    now: DateTime<Utc>,
) -> Result<Vec<PeerView>, HealthError> {
    let mut probes = Vec::new();
    for observer in fleet.region_names() {
        if let Some(seen) = store.load_probes(observer).await? {
            probes.push(seen);
        }
    }
    let mut peers = Vec::new();
    for peer in fleet.region_names().into_iter().filter(|r| *r != region) {
        peers.push(PeerView {
            region: peer.to_owned(),
            record: store.load(peer).await?.map(|stored| stored.value),
            unreachable: unreachable(peer, &probes, now),
        });
    }
    Ok(peers)
}

/// Applies one input to one region, end to end, reading and writing only that region's
/// table replica. A drain goes in two steps (intent, settle, decide again: the rule in
/// [`crate::peers`]). Idempotent: the same trigger applied again finds nothing to change.
pub async fn apply<S: HealthStore, K: Clock>(
    fleet: &Fleet,
    region: &str,
    trigger: &Trigger,
    store: &S,
    clock: &K,
) -> Result<Applied, HealthError> {
    let spec = fleet.region(region).ok_or_else(|| {
        HealthError::Invalid(format!("region {region:?} is not in fleet {}", fleet.name))
    })?;
    let settings = &fleet.failover;
    let regions = fleet.regions.len();
    for _ in 0..MAX_ATTEMPTS {
        let stored = store.load(region).await?;
        let mut version = stored.as_ref().map(|s| s.version);
        let mut current =
            stored.map_or_else(|| RegionHealth::new(region, clock.now()), |s| s.value);
        let now = clock.now();
        let theirs = current.drain_intent_by.as_deref() != Some(trigger.id.as_str());
        if theirs
            && current
                .drain_intent
                .is_some_and(|intent| intent_is_live(intent, settings.settle, now))
        {
            // Another invocation for this region is between intent and decision: let it
            // finish, then decide on what it wrote (overwriting its intent would make the
            // two invalidate each other for ever).
            tracing::debug!(%region, trigger = %trigger.id, by = ?current.drain_intent_by,
                "waiting for another invocation's intent to drain");
            clock.sleep(settings.settle).await;
            continue;
        }
        // This trigger's own live intent (its earlier attempt lost a race after writing it)
        // keeps its place in the order; one left by an attempt that died belongs to nobody.
        let own_intent = current
            .drain_intent
            .filter(|intent| !theirs && intent_is_live(*intent, settings.settle, now));
        current.drain_intent = None;
        current.drain_intent_by = None;
        let peers = peer_views(fleet, region, store, now).await?;
        let view = fleet_view(regions, region, own_intent, &peers, settings.settle, now);
        let mut decided = clock.now();
        let mut decision = decide(
            &current,
            &trigger.input,
            &spec.alarms,
            view,
            settings,
            decided,
        );
        let mut out_reason = describe_out(region, own_intent, &peers, settings.settle, now);
        // Nothing to change, unless this trigger's own intent is still stored: it is
        // cleared, so that no other invocation waits on it.
        if decision.action == Action::None && decision.next == current && own_intent.is_none() {
            return Ok(Applied {
                action: Action::None,
                health: current,
                event: None,
            });
        }
        if decision.action == Action::Drain {
            let intent = own_intent.unwrap_or_else(|| clock.now());
            let mut marked = current.clone();
            marked.drain_intent = Some(intent);
            marked.drain_intent_by = Some(trigger.id.clone());
            if store.save(&marked, version).await? == Write::Conflict {
                tracing::debug!(%region, trigger = %trigger.id, "a concurrent write beat the intent");
                continue;
            }
            version = Some(version.map_or(1, |v| v + 1));
            let waited = (clock.now() - intent).to_std().unwrap_or_default();
            clock.sleep(settings.settle.saturating_sub(waited)).await;
            let now = clock.now();
            let peers = peer_views(fleet, region, store, now).await?;
            let view = fleet_view(regions, region, Some(intent), &peers, settings.settle, now);
            decided = clock.now();
            decision = decide(
                &current,
                &trigger.input,
                &spec.alarms,
                view,
                settings,
                decided,
            );
            out_reason = describe_out(region, Some(intent), &peers, settings.settle, now);
        }
        decision.next.drain_intent = None;
        decision.next.drain_intent_by = None;
        if store.save(&decision.next, version).await? == Write::Conflict {
            tracing::debug!(%region, trigger = %trigger.id, action = ?decision.action,
                "a concurrent write beat the decision");
            continue;
        }
        let recorded =
            matches!(decision.action, Action::Drain | Action::Restore).then(|| clock.now());
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
                Action::Suppressed { reason } if out_reason.is_empty() => reason.clone(),
                Action::Suppressed { reason } => format!("{reason} (out: {out_reason})"),
                _ => decision.next.reason.clone(),
            },
            alarm: match &trigger.input {
                Input::Alarm { alarm, .. } => Some(alarm.clone()),
                _ => None,
            },
            alarm_time: trigger.alarm_time,
            received: trigger.received,
            decided,
            recorded,
            reaction_ms: trigger
                .alarm_time
                .zip(recorded)
                .map(|(alarm, written)| (written - alarm).num_milliseconds()),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// One region's replica in memory, with a clock that moves only when slept on.
    #[derive(Default)]
    struct Replica {
        records: Mutex<HashMap<String, Versioned<RegionHealth>>>,
        events: Mutex<Vec<FailoverEvent>>,
        slept: Mutex<Duration>,
    }

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid time")
    }

    impl HealthStore for Replica {
        async fn load(&self, region: &str) -> Result<Option<Versioned<RegionHealth>>, HealthError> {
            Ok(self.records.lock().expect("lock").get(region).cloned())
        }
        async fn save(
            &self,
            health: &RegionHealth,
            expected: Option<u64>,
        ) -> Result<Write, HealthError> {
            let mut records = self.records.lock().expect("lock");
            let current = records.get(&health.region).map(|v| v.version);
            if current != expected {
                return Ok(Write::Conflict);
            }
            let version = expected.map_or(1, |v| v + 1);
            records.insert(
                health.region.clone(),
                Versioned {
                    value: health.clone(),
                    version,
                },
            );
            Ok(Write::Done)
        }
        async fn load_probes(&self, _observer: &str) -> Result<Option<PeerProbes>, HealthError> {
            Ok(None)
        }
        async fn save_probes(&self, _probes: &PeerProbes) -> Result<(), HealthError> {
            Ok(())
        }
        async fn record(&self, event: &FailoverEvent) -> Result<(), HealthError> {
            self.events.lock().expect("lock").push(event.clone());
            Ok(())
        }
    }

    impl Clock for Replica {
        fn now(&self) -> DateTime<Utc> {
            let slept = *self.slept.lock().expect("lock");
            start() + chrono::Duration::from_std(slept).unwrap_or_default()
        }
        async fn sleep(&self, duration: Duration) {
            *self.slept.lock().expect("lock") += duration;
        }
    }

    fn fleet() -> Fleet {
        Fleet::from_toml_str(include_str!("../../fleet.example.toml")).expect("example is valid")
    }

    /// eu-west-1's record with an intent written at `start` by trigger `by`.
    fn with_intent(replica: &Replica, by: &str) {
        let mut record = RegionHealth::new("eu-west-1", start());
        record.drain_intent = Some(start());
        record.drain_intent_by = Some(by.into());
        replica.records.lock().expect("lock").insert(
            "eu-west-1".into(),
            Versioned {
                value: record,
                version: 3,
            },
        );
    }

    fn alarm(id: &str) -> Trigger {
        Trigger {
            id: id.into(),
            input: Input::Alarm {
                alarm: "meridian-demo-llm-5xx".into(),
                state: AlarmState::Alarm,
                at: start(),
            },
            alarm_time: Some(start()),
            received: start(),
        }
    }

    #[tokio::test]
    async fn a_triggers_retry_takes_over_its_own_intent_without_waiting_it_out() {
        let replica = Replica::default();
        with_intent(&replica, "evt-1");
        let applied = apply(&fleet(), "eu-west-1", &alarm("evt-1"), &replica, &replica)
            .await
            .expect("applies");
        assert_eq!(applied.action, Action::Drain);
        let slept = *replica.slept.lock().expect("lock");
        assert_eq!(
            slept,
            fleet().failover.settle,
            "the rest of the settle time, once"
        );
        let stored = replica.records.lock().expect("lock")["eu-west-1"].clone();
        assert_eq!(
            (stored.value.drain_intent, stored.value.drain_intent_by),
            (None, None)
        );
    }

    #[tokio::test]
    async fn another_triggers_live_intent_is_waited_for_then_the_attempts_run_out() {
        let replica = Replica::default();
        with_intent(&replica, "evt-other");
        let settle = fleet().failover.settle;
        // Five settle times are within the intent's life (settle + grace).
        let error = apply(&fleet(), "eu-west-1", &alarm("evt-1"), &replica, &replica)
            .await
            .expect_err("the other invocation still holds the region");
        assert!(matches!(error, HealthError::Retryable(_)), "{error}");
        assert_eq!(
            *replica.slept.lock().expect("lock"),
            settle * MAX_ATTEMPTS as u32
        );
        assert!(replica.events.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn an_own_intent_is_cleared_even_when_nothing_else_changes() {
        let replica = Replica::default();
        with_intent(&replica, "evt-1");
        let tick = Trigger {
            id: "evt-1".into(),
            input: Input::Tick,
            alarm_time: None,
            received: start(),
        };
        let applied = apply(&fleet(), "eu-west-1", &tick, &replica, &replica)
            .await
            .expect("applies");
        assert_eq!(applied.action, Action::None);
        let stored = replica.records.lock().expect("lock")["eu-west-1"].clone();
        assert_eq!(
            stored.value.drain_intent, None,
            "no one waits on it any more"
        );
        assert_eq!(stored.version, 4);
    }
}
