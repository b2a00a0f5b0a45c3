//! The failback handler: on its schedule, re-evaluates the region it runs in. It first
//! reads the region's alarms where they live (CloudWatch in this region) and applies any
//! state the failover function has not seen — an alarm event lost on the way, or one whose
//! handling failed every retry, is healed within one tick — then restores the region once
//! it has been OK for the hysteresis (and applies drains held back earlier).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Utc;
use meridian::failover::{Action, AlarmView, Input};
use meridian::fleet::Fleet;
use meridian::function::{Handler, Outcome};
use meridian::health::{
    apply, AlarmStates, DnsSwitch, HealthError, HealthStore, StandbyScaler, Trigger,
};
use meridian::metrics::FAILBACK_AFTER_OK;
use serde_json::{json, Value};

/// The event the failback schedule delivers: EventBridge's `Scheduled Event`.
pub type TickEvent = EventBridgeEvent<Value>;

/// The failback function of one region: its dependencies.
pub struct Failback<S, D, A, C> {
    pub fleet: Fleet,
    /// The region this function runs in.
    pub region: String,
    pub store: S,
    pub dns: D,
    pub scaler: A,
    pub alarms: C,
}

impl<S: HealthStore, D: DnsSwitch, A: StandbyScaler, C: AlarmStates> Handler
    for Failback<S, D, A, C>
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
async fn handle<S: HealthStore, D: DnsSwitch, A: StandbyScaler, C: AlarmStates>(
    function: &Failback<S, D, A, C>,
    event: TickEvent,
) -> Result<(Value, Vec<String>), HealthError> {
    let Failback {
        fleet,
        region,
        store,
        dns,
        scaler,
        alarms,
    } = function;
    let region = region.as_str();
    let received = Utc::now();
    if event.detail_type != "Scheduled Event" || event.source != "aws.events" {
        return Err(HealthError::Invalid(format!(
            "unexpected event {} from {}",
            event.detail_type, event.source
        )));
    }
    let spec = fleet.region(region).ok_or_else(|| {
        HealthError::Invalid(format!("region {region:?} is not in fleet {}", fleet.name))
    })?;
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
                let applied = apply(fleet, region, &trigger, store, dns, scaler, Utc::now).await?;
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
    let applied = apply(fleet, region, &trigger, store, dns, scaler, Utc::now).await?;
    let mut metrics = Vec::new();
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
        }),
        metrics,
    ))
}
