//! CloudWatch alarm state-change events (moto changes alarm state only through
//! `SetAlarmState` and emits no events). See `EMULATIONS.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ctx::{Ctx, LOCAL_ACCOUNT};

/// The CloudWatch JSON 1.0 target prefix moto serves.
const CLOUDWATCH_TARGET: &str = "GraniteServiceVersion20100801";

/// Alarm states seen so far per (region, alarm), with their history, so that endpoint
/// updates can ask whether an alarm was in `ALARM` during a window.
#[derive(Default)]
pub struct AlarmWatcher {
    tracks: Mutex<HashMap<(String, String), AlarmTrack>>,
    scanning: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Observed {
    value: String,
    reason: String,
    reason_data: Option<String>,
    timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct AlarmTrack {
    current: Observed,
    history: Vec<(DateTime<Utc>, String)>,
}

impl AlarmWatcher {
    fn tracks(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), AlarmTrack>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the alarm was in `ALARM` at any moment of `[from, to]`.
    pub fn was_in_alarm(
        &self,
        region: &str,
        alarm: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> bool {
        let tracks = self.tracks();
        let Some(track) = tracks.get(&(region.to_owned(), alarm.to_owned())) else {
            return false;
        };
        in_alarm_during(&track.history, from, to)
    }
}

/// Pure form of [`AlarmWatcher::was_in_alarm`] over a time-ordered state history.
pub fn in_alarm_during(
    history: &[(DateTime<Utc>, String)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> bool {
    let state_at_start = history.iter().rev().find(|(t, _)| *t <= from);
    let alarm_at_start = state_at_start.is_some_and(|(_, v)| v == "ALARM");
    alarm_at_start
        || history
            .iter()
            .any(|(t, v)| *t > from && *t <= to && v == "ALARM")
}

/// Polls every fleet region's alarms in the background, catching changes made to moto
/// behind the gateway's back.
pub fn start(ctx: &Arc<Ctx>, watcher: &Arc<AlarmWatcher>) {
    let (task_ctx, watcher) = (ctx.clone(), watcher.clone());
    ctx.spawn(async move {
        loop {
            for region in task_ctx.fleet.region_names() {
                scan_region(&task_ctx, &watcher, region).await;
            }
            tokio::time::sleep(task_ctx.config.poll_interval).await;
        }
    });
}

/// Compares a region's alarms with what was seen before and emits an EventBridge
/// "CloudWatch Alarm State Change" event for each change. The gateway calls this after
/// every CloudWatch request, before answering it, so no change is missed between polls.
/// A region that is down emits nothing; a change made meanwhile is seen once it is back.
pub async fn scan_region(ctx: &Ctx, watcher: &AlarmWatcher, region: &str) {
    if ctx.faults.region_is_down(region) {
        return;
    }
    if let Err(error) = try_scan_region(ctx, watcher, region).await {
        tracing::warn!(%region, error = %format!("{error:#}"), "alarm scan failed");
    }
}

/// Every metric alarm of a region, read from moto directly (not through the gateway, so
/// a scan never triggers another scan).
async fn describe_alarms(ctx: &Ctx, region: &str) -> Result<Vec<Value>> {
    let mut alarms = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let mut request = json!({});
        if let Some(token) = &next_token {
            request["NextToken"] = json!(token);
        }
        let target = format!("{CLOUDWATCH_TARGET}.DescribeAlarms");
        let reply = ctx
            .moto_json(region, "monitoring", &target, "1.0", &request)
            .await?;
        if !reply.status.is_success() {
            anyhow::bail!("DescribeAlarms failed: {}", reply.body);
        }
        alarms.extend(
            reply.body["MetricAlarms"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        next_token = reply.body["NextToken"].as_str().map(str::to_owned);
        if next_token.is_none() {
            return Ok(alarms);
        }
    }
}

async fn try_scan_region(ctx: &Ctx, watcher: &AlarmWatcher, region: &str) -> Result<()> {
    let _one_scan_at_a_time = watcher.scanning.lock().await;
    for alarm in describe_alarms(ctx, region).await? {
        let Some(name) = alarm["AlarmName"].as_str() else {
            continue;
        };
        let observed = Observed {
            value: alarm["StateValue"]
                .as_str()
                .unwrap_or("INSUFFICIENT_DATA")
                .to_owned(),
            reason: alarm["StateReason"].as_str().unwrap_or("").to_owned(),
            reason_data: alarm["StateReasonData"].as_str().map(str::to_owned),
            timestamp: alarm["StateUpdatedTimestamp"]
                .as_f64()
                .and_then(|seconds| {
                    DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64)
                })
                .unwrap_or_else(Utc::now),
        };
        let key = (region.to_owned(), name.to_owned());
        let previous = {
            let mut tracks = watcher.tracks();
            match tracks.get_mut(&key) {
                None => {
                    tracks.insert(
                        key,
                        AlarmTrack {
                            history: vec![(observed.timestamp, observed.value.clone())],
                            current: observed,
                        },
                    );
                    continue;
                }
                Some(track) if track.current.value == observed.value => continue,
                Some(track) => {
                    let previous = std::mem::replace(&mut track.current, observed.clone());
                    track
                        .history
                        .push((observed.timestamp, observed.value.clone()));
                    previous
                }
            }
        };
        let detail = state_change_detail(&alarm, &previous, &observed);
        tracing::info!(%region, alarm = %name, from = %previous.value, to = %observed.value, "alarm state changed");
        if ctx.faults.alarm_events_dropped_in(region) {
            tracing::warn!(%region, alarm = %name, "fault: alarm state-change event dropped");
            continue;
        }
        publish(ctx, region, &alarm, &observed, detail).await?;
    }
    Ok(())
}

/// CloudWatch's event timestamp format, e.g. `2019-10-02T17:04:40.985+0000`.
fn event_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

fn state_json(state: &Observed) -> Value {
    let mut value = json!({
        "value": state.value,
        "reason": state.reason,
        "timestamp": event_time(state.timestamp),
    });
    if let Some(data) = &state.reason_data {
        value["reasonData"] = json!(data);
    }
    value
}

/// The `detail` of a "CloudWatch Alarm State Change" event for a metric alarm, from
/// the alarm as DescribeAlarms returns it.
fn state_change_detail(alarm: &Value, previous: &Observed, current: &Observed) -> Value {
    let dimensions: serde_json::Map<String, Value> = alarm["Dimensions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d["Name"].as_str()?.to_owned(), d["Value"].clone())))
        .collect();
    let mut metric_stat = json!({
        "metric": {
            "namespace": alarm["Namespace"].as_str().unwrap_or(""),
            "name": alarm["MetricName"].as_str().unwrap_or(""),
            "dimensions": dimensions,
        },
        "period": alarm["Period"].as_u64().unwrap_or(60),
    });
    if let Some(stat) = alarm["Statistic"]
        .as_str()
        .or_else(|| alarm["ExtendedStatistic"].as_str())
    {
        metric_stat["stat"] = json!(stat);
    }
    let mut configuration = json!({
        "metrics": [{ "id": "m1", "metricStat": metric_stat, "returnData": true }],
    });
    if let Some(description) = alarm["AlarmDescription"].as_str() {
        configuration["description"] = json!(description);
    }
    json!({
        "alarmName": alarm["AlarmName"],
        "state": state_json(current),
        "previousState": state_json(previous),
        "configuration": configuration,
    })
}

async fn publish(
    ctx: &Ctx,
    region: &str,
    alarm: &Value,
    state: &Observed,
    detail: Value,
) -> Result<()> {
    let name = alarm["AlarmName"].as_str().unwrap_or("");
    let arn = alarm["AlarmArn"].as_str().map_or_else(
        || format!("arn:aws:cloudwatch:{region}:{LOCAL_ACCOUNT}:alarm:{name}"),
        str::to_owned,
    );
    let entry = json!({
        "Source": "aws.cloudwatch",
        "DetailType": "CloudWatch Alarm State Change",
        "Resources": [arn],
        "Detail": detail.to_string(),
        "Time": state.timestamp.timestamp(),
    });
    let reply = ctx
        .moto_json(
            region,
            "events",
            "AWSEvents.PutEvents",
            "1.1",
            &json!({ "Entries": [entry] }),
        )
        .await?;
    if !reply.status.is_success() || reply.body["FailedEntryCount"].as_u64().unwrap_or(0) > 0 {
        anyhow::bail!("PutEvents refused the alarm event: {}", reply.body);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap_or_default()
    }

    #[test]
    fn alarm_windows_see_states_at_start_and_within() {
        let history = vec![
            (at(0), "OK".to_owned()),
            (at(10), "ALARM".to_owned()),
            (at(20), "OK".to_owned()),
        ];
        assert!(!in_alarm_during(&history, at(1), at(9)));
        assert!(in_alarm_during(&history, at(5), at(15)));
        assert!(in_alarm_during(&history, at(12), at(14)));
        assert!(!in_alarm_during(&history, at(21), at(30)));
        assert!(!in_alarm_during(&[], at(0), at(100)));
    }

    #[test]
    fn event_times_use_cloudwatch_format() {
        assert_eq!(
            event_time(at(1_570_035_880)),
            "2019-10-02T17:04:40.000+0000"
        );
    }

    #[test]
    fn the_detail_follows_the_documented_shape() {
        let alarm = json!({
            "AlarmName": "llm-5xx", "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
            "Dimensions": [{ "Name": "EndpointName", "Value": "llm" }], "Period": 60, "Statistic": "Sum",
            "AlarmDescription": "errors"
        });
        let state = |value: &str, seconds| Observed {
            value: value.into(),
            reason: "r".into(),
            reason_data: None,
            timestamp: at(seconds),
        };
        let detail = state_change_detail(&alarm, &state("OK", 1), &state("ALARM", 2));
        assert_eq!(detail["alarmName"], "llm-5xx");
        assert_eq!(detail["state"]["value"], "ALARM");
        assert_eq!(detail["previousState"]["value"], "OK");
        assert_eq!(detail["configuration"]["description"], "errors");
        let metric = &detail["configuration"]["metrics"][0]["metricStat"];
        assert_eq!(metric["metric"]["dimensions"]["EndpointName"], "llm");
        assert_eq!(metric["stat"], "Sum");
    }
}
