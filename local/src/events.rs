//! Targets of scheduled EventBridge rules, kept by the gateway. moto 5.2.5 treats a rule
//! without an event pattern as matching every `PutEvents` event, and fails the whole
//! `PutEvents` call on a Lambda target; scheduled rules never match events on AWS. So the
//! targets of scheduled rules stay here (the scheduler fires them), and event-pattern
//! rules accept SQS targets only. See `EMULATIONS.md`.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Result;
use http::StatusCode;
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::http::{forward, GatewayRequest, GatewayResponse};

const TARGET_PREFIX: &str = "AWSEvents.";

/// Targets of scheduled rules per (region, rule name), by target id.
#[derive(Default)]
pub struct ScheduleTargets {
    by_rule: Mutex<HashMap<(String, String), Vec<Value>>>,
}

impl ScheduleTargets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<Value>>> {
        self.by_rule.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The targets of a scheduled rule (`Id`, `Arn`, optional `Input`).
    pub fn targets(&self, region: &str, rule: &str) -> Vec<Value> {
        self.lock()
            .get(&(region.to_owned(), rule.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Handles an EventBridge request arriving at the gateway for `region`.
pub async fn handle(
    ctx: &Ctx,
    schedule_targets: &ScheduleTargets,
    region: &str,
    request: GatewayRequest,
) -> Result<GatewayResponse> {
    let operation = request
        .target()
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_owned();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let rule = body["Rule"]
        .as_str()
        .or_else(|| body["Name"].as_str())
        .unwrap_or("")
        .to_owned();
    let key = (region.to_owned(), rule.clone());
    match operation.as_str() {
        "PutTargets" => {
            let targets = body["Targets"].as_array().cloned().unwrap_or_default();
            if is_scheduled(ctx, region, &body).await? {
                let mut stored = schedule_targets.lock();
                let entry = stored.entry(key).or_default();
                for target in targets {
                    entry.retain(|t| t["Id"] != target["Id"]);
                    entry.push(target);
                }
                return Ok(accepted());
            }
            if targets.iter().any(|t| {
                t["Arn"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("arn:aws:lambda:"))
            }) {
                return Ok(GatewayResponse::aws_json_error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "the local cloud delivers event-pattern rules to SQS targets only (moto cannot invoke Lambda); see local/EMULATIONS.md",
                ));
            }
            forward(ctx, &request).await
        }
        "ListTargetsByRule" if schedule_targets.lock().contains_key(&key) => {
            Ok(GatewayResponse::json(
                StatusCode::OK,
                &json!({ "Targets": schedule_targets.targets(region, &rule) }),
            ))
        }
        "RemoveTargets" if schedule_targets.lock().contains_key(&key) => {
            let ids: Vec<Value> = body["Ids"].as_array().cloned().unwrap_or_default();
            if let Some(targets) = schedule_targets.lock().get_mut(&key) {
                targets.retain(|t| !ids.contains(&t["Id"]));
            }
            Ok(accepted())
        }
        "DeleteRule" => {
            let response = forward(ctx, &request).await?;
            if response.is_success() {
                schedule_targets.lock().remove(&key);
            }
            Ok(response)
        }
        _ => forward(ctx, &request).await,
    }
}

fn accepted() -> GatewayResponse {
    GatewayResponse::json(
        StatusCode::OK,
        &json!({ "FailedEntryCount": 0, "FailedEntries": [] }),
    )
}

async fn is_scheduled(ctx: &Ctx, region: &str, body: &Value) -> Result<bool> {
    let mut describe = json!({ "Name": body["Rule"] });
    if let Some(bus) = body.get("EventBusName") {
        describe["EventBusName"] = bus.clone();
    }
    let reply = ctx
        .moto_json(region, "events", "AWSEvents.DescribeRule", "1.1", &describe)
        .await?;
    Ok(reply.status.is_success()
        && reply.body["ScheduleExpression"]
            .as_str()
            .is_some_and(|s| !s.is_empty()))
}
