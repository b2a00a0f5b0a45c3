//! The failback handler: on its schedule, re-evaluates the region it runs in. It first
//! publishes its front door URL and probes its peers' front doors ([`probes`]), then reads
//! the region's alarms where they live (CloudWatch in this region) and applies any state
//! the failover function has not seen — an alarm event lost on the way, or one whose
//! handling failed every retry, is healed within one tick — then restores the region once
//! it has been OK for the hysteresis (and applies drains held back earlier). In
//! active-passive, a standby raises its own capacity while it sees the primary out. Last,
//! it checks that the region's endpoint serves the registry's active version ([`drift`]),
//! in the primary region starts a drift repair where the fleet file allows it
//! ([`repair`]), and reconciles the region's Application Auto Scaling with its declared capacity
//! ([`capacity`]).

mod capacity;
pub mod drift;
mod probes;
pub mod repair;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Utc;
use meridian::failover::{Action, AlarmView, Input};
use meridian::fleet::{Fleet, Pattern};
use meridian::function::{Handler, Outcome};
use meridian::health::{
    apply, AlarmStates, Clock, FailoverEvent, FrontDoorProbe, HealthError, HealthStore,
    StandbyScaler, Trigger,
};
use meridian::metrics::FAILBACK_AFTER_OK;
use meridian::peers::{out_of_service, Out, PeerProbes, PeerView};
use meridian::scaling::AutoScaling;
use serde_json::{json, Value};

/// The event the failback schedule delivers: EventBridge's `Scheduled Event`.
pub type TickEvent = EventBridgeEvent<Value>;

/// The failback function of one region: its dependencies.
pub struct Failback<S, A, C, P, K, D, Z, R> {
    pub fleet: Fleet,
    /// The region this function runs in.
    pub region: String,
    /// This region's front door base URL (`FRONT_DOOR_URL`), published for the peers.
    pub front_door: Option<String>,
    pub store: S,
    pub scaler: A,
    pub alarms: C,
    pub probe: P,
    pub clock: K,
    /// What the drift check reads (SageMaker and the registry, in this region).
    pub drift: D,
    /// This region's Application Auto Scaling, for the capacity reconcile.
    pub autoscaling: Z,
    /// The registry and Step Functions as the drift repair uses them (primary only).
    pub repair: R,
}

impl<S, A, C, P, K, D, Z, R> Handler for Failback<S, A, C, P, K, D, Z, R>
where
    S: HealthStore,
    A: StandbyScaler,
    C: AlarmStates,
    P: FrontDoorProbe,
    K: Clock,
    D: drift::DriftSources,
    Z: AutoScaling,
    R: repair::RepairControl,
{
    type Event = TickEvent;
    type Error = HealthError;
    const EVENT: &'static str = "an EventBridge scheduled event";

    async fn handle(&self, event: TickEvent) -> Outcome<HealthError> {
        handle(self, event).await.into()
    }
}

/// Handles one scheduled event for the function's region. Every tick evaluates the same
/// thing, so a duplicate or late tick is harmless.
async fn handle<S, A, C, P, K, D, Z, R>(
    function: &Failback<S, A, C, P, K, D, Z, R>,
    event: TickEvent,
) -> Result<(Value, Vec<String>), HealthError>
where
    S: HealthStore,
    A: StandbyScaler,
    C: AlarmStates,
    P: FrontDoorProbe,
    K: Clock,
    D: drift::DriftSources,
    Z: AutoScaling,
    R: repair::RepairControl,
{
    let Failback {
        fleet,
        region,
        front_door,
        store,
        scaler,
        alarms,
        probe,
        clock,
        drift: drift_sources,
        autoscaling,
        repair: repair_control,
    } = function;
    let region = region.as_str();
    let received = clock.now();
    if event.detail_type != "Scheduled Event" || event.source != "aws.events" {
        return Err(HealthError::Invalid(format!(
            "unexpected event {} from {}",
            event.detail_type, event.source
        )));
    }
    let spec = fleet.region(region).ok_or_else(|| {
        HealthError::Invalid(format!("region {region:?} is not in fleet {}", fleet.name))
    })?;
    if let Some(url) = front_door {
        probes::publish_front_door(region, url, store, clock).await?;
    }
    let seen = probes::probe_peers(fleet, region, store, probe, clock).await?;
    // Level-triggered: the alarms' current states, applied as the events would have been.
    // The policy ignores a state it has already seen (same change time), so this acts only
    // on what was missed; each change gets one id, so a heal is recorded once.
    let mut healed = Vec::new();
    let mut alarms_unread = None;
    match alarms.current(&spec.alarms).await {
        Ok(readings) => {
            // What the region's record already knows needs no round trip through `apply`.
            let known = store.load(region).await?.map(|stored| stored.value.alarms);
            let missed = readings.into_iter().filter(|reading| {
                known.as_ref().and_then(|alarms| alarms.get(&reading.alarm))
                    != Some(&AlarmView {
                        state: reading.state,
                        at: reading.since,
                    })
            });
            for reading in missed {
                let trigger = Trigger {
                    id: format!(
                        "alarm-state#{}@{}",
                        reading.alarm,
                        reading.since.timestamp_millis()
                    ),
                    input: Input::Alarm {
                        alarm: reading.alarm.clone(),
                        state: reading.state,
                        at: reading.since,
                    },
                    alarm_time: Some(reading.since),
                    received,
                };
                let applied = apply(fleet, region, &trigger, store, clock).await?;
                if applied.action != Action::None {
                    tracing::warn!(%region, alarm = %reading.alarm, action = ?applied.action,
                        "applied an alarm state the failover function missed");
                    healed.push(json!({
                        "alarm": reading.alarm,
                        "action": format!("{:?}", applied.action),
                    }));
                }
            }
        }
        // The failback evaluation below still runs; the next tick reads again.
        Err(error) => {
            tracing::warn!(%region, %error, "could not read the alarms' states");
            alarms_unread = Some(error.to_string());
        }
    }
    let id = event.id.map_or_else(
        || format!("tick@{}", received.to_rfc3339()),
        |id| format!("tick#{id}"),
    );
    let trigger = Trigger {
        id,
        input: Input::Tick,
        alarm_time: None,
        received,
    };
    let applied = apply(fleet, region, &trigger, store, clock).await?;
    let standby = raise_standby(fleet, region, store, scaler, &seen, clock).await?;
    let capacity = capacity::reconcile(
        fleet,
        spec,
        &applied.health,
        standby.is_some(),
        autoscaling,
        clock.now(),
    )
    .await;
    let (drift, drift_metric) =
        drift::check(spec, &fleet.variant_name, drift_sources, store, clock).await;
    let mut metrics: Vec<String> = drift_metric.into_iter().collect();
    let (repair, repair_metrics) = repair::run(fleet, region, store, repair_control, clock).await;
    metrics.extend(repair_metrics);
    if applied.action == Action::Restore {
        let recovered_for = applied
            .event
            .as_ref()
            .and_then(|e| Some((e.decided - applied.health.ok_since?).num_milliseconds()))
            .unwrap_or(0);
        metrics.push(FAILBACK_AFTER_OK.line(recovered_for as f64, [region], Utc::now()));
        tracing::info!(%region, "region failed back");
    }
    Ok((
        json!({
            "region": region,
            "action": format!("{:?}", applied.action),
            "health": applied.health,
            "healed": healed,
            "alarms_unread": alarms_unread,
            "peers": seen.peers,
            "standby": standby,
            "drift": drift,
            "repair": repair,
            "capacity": capacity,
        }),
        metrics,
    ))
}

/// In active-passive, a standby that sees the primary out of service (drained, or its
/// front door unreachable from here) raises its own capacity to the primary's: in its own
/// region, so the primary's drain never waits on another region. Returns the primary's
/// region when it did.
async fn raise_standby<S: HealthStore, A: StandbyScaler, K: Clock>(
    fleet: &Fleet,
    region: &str,
    store: &S,
    scaler: &A,
    seen: &PeerProbes,
    clock: &K,
) -> Result<Option<String>, HealthError> {
    let primary = fleet.primary_region.as_str();
    if fleet.pattern != Pattern::ActivePassive || region == primary {
        return Ok(None);
    }
    let (Some(spec), Some(primary_spec)) = (fleet.region(region), fleet.region(primary)) else {
        return Ok(None);
    };
    let record = store.load(primary).await?.map(|stored| stored.value);
    let drained_since = record.as_ref().map(|r| r.since);
    let view = PeerView {
        region: primary.to_owned(),
        record,
        unreachable: seen
            .peers
            .get(primary)
            .and_then(|p| Some((p.unreachable_since?, region.to_owned()))),
    };
    let now = clock.now();
    let Some(out) = out_of_service(region, None, &view, fleet.failover.settle, now) else {
        return Ok(None);
    };
    if matches!(out, Out::Draining { .. }) {
        return Ok(None);
    }
    scaler
        .ensure_capacity(region, &spec.endpoint, primary_spec.instance_count)
        .await?;
    let out_since = view
        .unreachable
        .as_ref()
        .map(|(since, _)| *since)
        .or(drained_since);
    let event = FailoverEvent {
        id: format!(
            "standby#{primary}@{}",
            out_since.map_or(0, |t| t.timestamp_millis())
        ),
        region: region.to_owned(),
        kind: "standby".into(),
        from_state: "standing by".into(),
        to_state: "serving for the primary".into(),
        reason: format!(
            "primary {primary} out of service ({out:?}); capacity raised to {} instances",
            primary_spec.instance_count
        ),
        alarm: None,
        alarm_time: None,
        received: now,
        decided: now,
        recorded: Some(clock.now()),
        reaction_ms: None,
    };
    store.record(&event).await?;
    Ok(Some(primary.to_owned()))
}
