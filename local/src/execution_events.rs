//! Step Functions' "Execution Status Change" events, which moto 5.2.5 does not emit: a
//! watcher lists the rollout state machine's executions in moto and, for each one it sees
//! end (any status but `RUNNING`), puts the event Step Functions would send on the
//! primary region's default bus, where the rollout rule (provisioned from the template's
//! pattern) routes it. See `EMULATIONS.md`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::ctx::{Ctx, LOCAL_ACCOUNT};

/// How often the watcher lists executions: events arrive this much later than on AWS
/// (where delivery is best effort, usually within a second).
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The event Step Functions sends when `execution` (a `DescribeExecution` reply) changes
/// status: the documented envelope and detail fields.
pub fn status_change_event(execution: &Value, region: &str) -> Value {
    let millis = |field: &str| {
        execution[field]
            .as_f64()
            .map(|seconds| json!((seconds * 1000.0) as i64))
            .unwrap_or(Value::Null)
    };
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": LOCAL_ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [execution["executionArn"]],
        "detail": {
            "executionArn": execution["executionArn"],
            "stateMachineArn": execution["stateMachineArn"],
            "name": execution["name"],
            "status": execution["status"],
            "startDate": millis("startDate"),
            "stopDate": millis("stopDate"),
            "input": execution["input"],
            "output": execution.get("output").cloned().unwrap_or(Value::Null),
            "error": execution.get("error").cloned().unwrap_or(Value::Null),
            "cause": execution.get("cause").cloned().unwrap_or(Value::Null),
        },
    })
}

/// Watches `state_machine_arn` in `region` until the local cloud stops. Executions that
/// had already ended when the watcher started are not announced again.
pub fn start(ctx: &Arc<Ctx>, region: String, state_machine_arn: String) {
    let task_ctx = ctx.clone();
    ctx.spawn(async move {
        let mut announced: Option<HashSet<String>> = None;
        loop {
            if let Err(error) =
                watch_once(&task_ctx, &region, &state_machine_arn, &mut announced).await
            {
                tracing::debug!(%error, "listing rollout executions");
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    });
}

async fn watch_once(
    ctx: &Ctx,
    region: &str,
    state_machine_arn: &str,
    announced: &mut Option<HashSet<String>>,
) -> anyhow::Result<()> {
    let mut ended = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({ "stateMachineArn": state_machine_arn, "maxResults": 1000 });
        if let Some(token) = &token {
            request["nextToken"] = json!(token);
        }
        let reply = ctx
            .moto_json(region, "states", "AWSStepFunctions.ListExecutions", "1.0", &request)
            .await?;
        for execution in reply.body["executions"].as_array().into_iter().flatten() {
            if execution["status"] != "RUNNING" {
                if let Some(arn) = execution["executionArn"].as_str() {
                    ended.push(arn.to_owned());
                }
            }
        }
        token = reply.body["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let Some(seen) = announced.as_mut() else {
        *announced = Some(ended.into_iter().collect());
        return Ok(());
    };
    for arn in ended {
        if seen.contains(&arn) {
            continue;
        }
        let described = ctx
            .moto_json(
                region,
                "states",
                "AWSStepFunctions.DescribeExecution",
                "1.0",
                &json!({ "executionArn": arn }),
            )
            .await?;
        if !described.status.is_success() {
            continue;
        }
        let event = status_change_event(&described.body, region);
        let entry = json!({
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": event["detail"].to_string(),
            "Resources": event["resources"],
        });
        let put = ctx
            .moto_json(
                region,
                "events",
                "AWSEvents.PutEvents",
                "1.1",
                &json!({ "Entries": [entry] }),
            )
            .await?;
        if put.status.is_success() && put.body["FailedEntryCount"].as_u64() == Some(0) {
            tracing::info!(execution = %arn, status = %described.body["status"], "execution status change emitted");
            seen.insert(arn);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_has_step_functions_shape() {
        let described = json!({
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:f-rollout:e1",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:f-rollout",
            "name": "e1",
            "status": "ABORTED",
            "startDate": 1_800_000_000.5,
            "stopDate": 1_800_000_100.25,
            "input": "{}",
        });
        let event = status_change_event(&described, "us-east-1");
        assert_eq!(event["detail-type"], "Step Functions Execution Status Change");
        assert_eq!(event["source"], "aws.states");
        assert_eq!(event["detail"]["status"], "ABORTED");
        assert_eq!(event["detail"]["startDate"], 1_800_000_000_500i64);
        assert_eq!(event["detail"]["stopDate"], 1_800_000_100_250i64);
        assert_eq!(event["detail"]["error"], Value::Null);
        assert_eq!(event["resources"][0], described["executionArn"]);
    }
}
