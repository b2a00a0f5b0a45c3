//! EventBridge scheduled rules (moto stores them but never fires them). See `EMULATIONS.md`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ctx::{Ctx, LOCAL_ACCOUNT};
use crate::events::ScheduleTargets;
use crate::functions::{function_name_from_identifier, Invocation};

/// A parsed `ScheduleExpression`.
#[derive(Debug, Clone)]
pub enum Schedule {
    Rate(Duration),
    Cron(Box<cron::Schedule>),
}

/// Parses `rate(value unit)` and six-field `cron(...)` expressions with EventBridge's
/// rules (singular unit for 1, plural otherwise).
pub fn parse_schedule(expression: &str) -> Result<Schedule, String> {
    let expression = expression.trim();
    if let Some(inner) = expression
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (value, unit) = inner
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{expression}: expected rate(value unit)"))?;
        let value: u64 = value
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{expression}: the value must be a positive integer"))?;
        let seconds = match (value, unit.trim()) {
            (1, "minute") | (2.., "minutes") => 60,
            (1, "hour") | (2.., "hours") => 3600,
            (1, "day") | (2.., "days") => 86_400,
            _ => {
                return Err(format!(
                "{expression}: the unit must be minute(s), hour(s) or day(s), singular only for 1"
            ))
            }
        };
        return Ok(Schedule::Rate(Duration::from_secs(value * seconds)));
    }
    if let Some(inner) = expression
        .strip_prefix("cron(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!("{expression}: cron needs six fields (minutes hours day-of-month month day-of-week year)"));
        }
        let with_seconds = format!("0 {}", fields.join(" ").replace('?', "*"));
        let schedule =
            cron::Schedule::from_str(&with_seconds).map_err(|e| format!("{expression}: {e}"))?;
        return Ok(Schedule::Cron(Box::new(schedule)));
    }
    Err(format!("{expression}: expected rate(...) or cron(...)"))
}

impl Schedule {
    /// The first firing strictly after `after`; rates are divided by `speedup`.
    pub fn next_after(&self, after: DateTime<Utc>, speedup: u32) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Rate(period) => {
                let scaled = *period / speedup.max(1);
                Some(after + chrono::Duration::from_std(scaled).ok()?)
            }
            Schedule::Cron(schedule) => schedule.after(&after).next(),
        }
    }
}

/// Fires every enabled scheduled rule of the fleet's regions on time. A region that is down
/// fires nothing; a firing missed meanwhile happens once when it is back.
pub fn start(ctx: &Arc<Ctx>, targets: &Arc<ScheduleTargets>) {
    let (task_ctx, targets) = (ctx.clone(), targets.clone());
    ctx.spawn(async move {
        let mut next_fire: HashMap<(String, String, String), DateTime<Utc>> = HashMap::new();
        loop {
            for region in task_ctx.fleet.region_names() {
                if task_ctx.faults.region_is_down(region) {
                    continue;
                }
                if let Err(error) = tick(&task_ctx, &targets, region, &mut next_fire).await {
                    tracing::warn!(%region, error = %format!("{error:#}"), "schedule check failed");
                }
            }
            tokio::time::sleep(task_ctx.config.poll_interval).await;
        }
    });
}

async fn tick(
    ctx: &Ctx,
    targets: &ScheduleTargets,
    region: &str,
    next_fire: &mut HashMap<(String, String, String), DateTime<Utc>>,
) -> Result<()> {
    let events = aws_sdk_eventbridge::Client::new(&ctx.moto.config(region).await);
    let rules = events.list_rules().send().await.context("ListRules")?;
    let now = Utc::now();
    for rule in rules.rules() {
        let (Some(name), Some(expression)) = (rule.name(), rule.schedule_expression()) else {
            continue;
        };
        if rule.state() != Some(&aws_sdk_eventbridge::types::RuleState::Enabled) {
            continue;
        }
        let schedule = match parse_schedule(expression) {
            Ok(schedule) => schedule,
            Err(problem) => {
                tracing::warn!(%region, rule = %name, %problem, "schedule not understood; the rule will not fire");
                continue;
            }
        };
        let key = (region.to_owned(), name.to_owned(), expression.to_owned());
        let Some(due) = next_fire.get(&key).copied() else {
            if let Some(first) = schedule.next_after(now, ctx.config.schedule_speedup) {
                next_fire.insert(key, first);
            }
            continue;
        };
        if now < due {
            continue;
        }
        if let Some(next) = schedule.next_after(now, ctx.config.schedule_speedup) {
            next_fire.insert(key, next);
        }
        let arn = rule.arn().unwrap_or_default().to_owned();
        fire(ctx, targets, region, name, &arn, due).await?;
    }
    Ok(())
}

/// The event EventBridge sends for a scheduled rule.
pub fn scheduled_event(region: &str, rule_arn: &str, time: DateTime<Utc>) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    })
}

async fn fire(
    ctx: &Ctx,
    schedule_targets: &ScheduleTargets,
    region: &str,
    rule: &str,
    rule_arn: &str,
    time: DateTime<Utc>,
) -> Result<()> {
    let targets = schedule_targets.targets(region, rule);
    tracing::debug!(%region, %rule, targets = targets.len(), "scheduled rule fired");
    for target in targets {
        let event = match target["Input"].as_str() {
            Some(input) => {
                serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.to_owned()))
            }
            None => scheduled_event(region, rule_arn, time),
        };
        let arn = target["Arn"].as_str().unwrap_or_default();
        if arn.starts_with("arn:aws:sqs:") {
            let queue = arn.rsplit(':').next().unwrap_or_default();
            let sqs = aws_sdk_sqs::Client::new(&ctx.moto.config(region).await);
            let url = sqs
                .get_queue_url()
                .queue_name(queue)
                .send()
                .await
                .context("GetQueueUrl")?;
            sqs.send_message()
                .queue_url(url.queue_url().unwrap_or_default())
                .message_body(event.to_string())
                .send()
                .await
                .context("SendMessage")?;
        } else if arn.starts_with("arn:aws:lambda:") {
            let invocation = Invocation {
                function_name: function_name_from_identifier(arn).to_owned(),
                region: region.to_owned(),
                payload: event,
            };
            let functions = ctx.functions.clone();
            tokio::spawn(async move {
                if let Err(error) = functions.invoke(invocation).await {
                    tracing::warn!(%error, "scheduled invocation failed");
                }
            });
        } else {
            tracing::warn!(%region, %rule, target = %arn, "scheduled target kind not emulated");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_eventbridge_grammar() {
        assert!(
            matches!(parse_schedule("rate(1 minute)"), Ok(Schedule::Rate(d)) if d == Duration::from_secs(60))
        );
        assert!(
            matches!(parse_schedule("rate(5 minutes)"), Ok(Schedule::Rate(d)) if d == Duration::from_secs(300))
        );
        assert!(
            matches!(parse_schedule("rate(2 hours)"), Ok(Schedule::Rate(d)) if d == Duration::from_secs(7200))
        );
        for bad in [
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(0 minutes)",
            "rate(5 seconds)",
            "every 5 minutes",
            "cron(* * * *)",
        ] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_expressions_fire_at_the_stated_minutes() {
        let schedule = parse_schedule("cron(0/15 * * * ? *)").expect("valid cron");
        let start = DateTime::parse_from_rfc3339("2026-11-24T10:07:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let next = schedule.next_after(start, 1).expect("a next firing");
        assert_eq!(next.to_rfc3339(), "2026-11-24T10:15:00+00:00");
    }

    #[test]
    fn speedup_shortens_rates() {
        let schedule = parse_schedule("rate(1 minute)").expect("valid rate");
        let start = Utc::now();
        assert_eq!(
            schedule.next_after(start, 60),
            Some(start + chrono::Duration::seconds(1))
        );
    }
}
