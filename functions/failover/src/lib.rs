//! The failover handler: a "CloudWatch Alarm State Change" event for one of the region's
//! alarms goes through the failover policy; a drain is a write of the region's record in
//! its own table replica (its front door's `/health` then answers 503, and Route 53's
//! checkers take it out of DNS). It calls nothing outside its region.

use aws_lambda_events::cloudwatch_alarms::{
    CloudWatchAlarmData, CloudWatchAlarmStateValue, CloudWatchMetricAlarmConfiguration,
};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Utc;
use meridian::failover::{Action, AlarmState, Input};
use meridian::fleet::Fleet;
use meridian::function::{Handler, Outcome};
use meridian::health::{apply, Clock, HealthError, HealthStore, Trigger};
use meridian::metrics::{FAILBACK_REACTION_TIME, FAILOVER_REACTION_TIME};
use serde_json::{json, Value};

/// The EventBridge event CloudWatch sends when a metric alarm changes state.
pub type AlarmEvent = EventBridgeEvent<CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration>>;

/// The failover function of one region: its dependencies.
pub struct Failover<S, K> {
    pub fleet: Fleet,
    /// The region this function runs in.
    pub region: String,
    pub store: S,
    pub clock: K,
}

impl<S: HealthStore, K: Clock> Handler for Failover<S, K> {
    type Event = AlarmEvent;
    type Error = HealthError;
    const EVENT: &'static str = "a CloudWatch Alarm State Change event";

    async fn handle(&self, event: AlarmEvent) -> Outcome<HealthError> {
        handle(self, event).await.into()
    }
}

/// Handles one alarm event for the function's region.
async fn handle<S: HealthStore, K: Clock>(
    function: &Failover<S, K>,
    event: AlarmEvent,
) -> Result<(Value, Vec<String>), HealthError> {
    let Failover {
        fleet,
        region,
        store,
        clock,
    } = function;
    let region = region.as_str();
    let received = clock.now();
    if event.detail_type != "CloudWatch Alarm State Change" || event.source != "aws.cloudwatch" {
        return Err(HealthError::Invalid(format!(
            "unexpected event {} from {}",
            event.detail_type, event.source
        )));
    }
    if let Some(event_region) = event.region.as_deref().filter(|r| *r != region) {
        return Err(HealthError::Invalid(format!(
            "an alarm event of {event_region} reached the function of {region}"
        )));
    }
    let state = event
        .detail
        .state
        .as_ref()
        .ok_or_else(|| HealthError::Invalid("the alarm event has no state".into()))?;
    let alarm = event.detail.alarm_name.clone();
    let trigger = Trigger {
        id: event
            .id
            .clone()
            .unwrap_or_else(|| format!("{alarm}@{}", state.timestamp.to_rfc3339())),
        input: Input::Alarm {
            alarm: alarm.clone(),
            state: alarm_state(&state.value),
            at: state.timestamp,
        },
        alarm_time: Some(state.timestamp),
        received,
    };
    let applied = apply(fleet, region, &trigger, store, clock).await?;
    let mut metrics = Vec::new();
    if let Some(reaction) = applied.event.as_ref().and_then(|e| e.reaction_ms) {
        let metric = match applied.action {
            Action::Drain => FAILOVER_REACTION_TIME,
            _ => FAILBACK_REACTION_TIME,
        };
        metrics.push(metric.line(reaction as f64, [region], Utc::now()));
    }
    tracing::info!(%region, %alarm, action = ?applied.action, state = ?applied.health.state, "alarm event applied");
    Ok((
        json!({
            "region": region,
            "alarm": alarm,
            "action": format!("{:?}", applied.action),
            "health": applied.health,
            "event": applied.event,
        }),
        metrics,
    ))
}

fn alarm_state(value: &CloudWatchAlarmStateValue) -> AlarmState {
    match value {
        CloudWatchAlarmStateValue::Alarm => AlarmState::Alarm,
        CloudWatchAlarmStateValue::Ok => AlarmState::Ok,
        _ => AlarmState::InsufficientData,
    }
}
