//! The failback handler: on its schedule, re-evaluates the region it runs in, restoring
//! it once it has been OK for the hysteresis (and applying drains held back earlier).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Utc;
use meridian::failover::{Action, Input};
use meridian::fleet::Fleet;
use meridian::health::{apply, DnsSwitch, HealthError, HealthStore, StandbyScaler, Trigger};
use meridian::metrics::FAILBACK_AFTER_OK;
use serde_json::{json, Value};

/// The event the failback schedule delivers: EventBridge's `Scheduled Event`.
pub type TickEvent = EventBridgeEvent<Value>;

/// Handles one scheduled event for `region`. Every tick evaluates the same thing, so a
/// duplicate or late tick is harmless.
pub async fn handle<S: HealthStore, D: DnsSwitch, A: StandbyScaler>(
    fleet: &Fleet,
    region: &str,
    store: &S,
    dns: &D,
    scaler: &A,
    payload: &Value,
) -> Result<(Value, Vec<String>), HealthError> {
    let received = Utc::now();
    let event: TickEvent = serde_json::from_value(payload.clone())
        .map_err(|e| HealthError::Invalid(format!("not an EventBridge scheduled event: {e}")))?;
    if event.detail_type != "Scheduled Event" || event.source != "aws.events" {
        return Err(HealthError::Invalid(format!(
            "unexpected event {} from {}",
            event.detail_type, event.source
        )));
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
        json!({ "region": region, "action": format!("{:?}", applied.action), "health": applied.health }),
        metrics,
    ))
}
