//! Step Functions' "Execution Status Change" events, which moto 5.2.5 does not emit: a
//! watcher lists the rollout state machine's executions in moto and, for each one it sees
//! end (any status but `RUNNING`), puts the event Step Functions would send on the
//! primary region's default bus, where the rollout rule (provisioned from the template's
//! pattern) routes it. moto reports an execution stopped by `StopExecution` as `FAILED`
//! (`States.Runtime`); Step Functions reports it `ABORTED` with the stop's error and
//! cause, so the gateway remembers the executions it stopped ([`StoppedExecutions`]) and
//! the event says `ABORTED`. See `EMULATIONS.md`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::ctx::{Ctx, LOCAL_ACCOUNT};

/// How often the watcher lists executions: events arrive this much later than on AWS
/// (where delivery is best effort, usually within a second).
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Executions stopped through the gateway (`StopExecution`), with the stop's error and
/// cause.
#[derive(Default)]
pub struct StoppedExecutions {
    by_arn: Mutex<HashMap<String, (Value, Value)>>,
}

impl StoppedExecutions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Value, Value)>> {
        self.by_arn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a `StopExecution` request that moto accepted.
    pub fn record(&self, request: &Value) {
        if let Some(arn) = request["executionArn"].as_str() {
            self.lock().insert(
                arn.to_owned(),
                (request["error"].clone(), request["cause"].clone()),
            );
        }
    }

    /// `described` (a `DescribeExecution` reply) as Step Functions would report it.
    pub fn as_aws_reports(&self, mut described: Value) -> Value {
        let arn = described["executionArn"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some((error, cause)) = self.lock().get(&arn).cloned() {
            described["status"] = json!("ABORTED");
            described["error"] = error;
            described["cause"] = cause;
        }
        described
    }
}

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
pub fn start(
    ctx: &Arc<Ctx>,
    stopped: &Arc<StoppedExecutions>,
    region: String,
    state_machine_arn: String,
) {
    let (task_ctx, stopped) = (ctx.clone(), stopped.clone());
    ctx.spawn(async move {
        let mut announced: Option<HashSet<String>> = None;
        loop {
            let watched = watch_once(
                &task_ctx,
                &stopped,
                &region,
                &state_machine_arn,
                &mut announced,
            )
            .await;
            if let Err(error) = watched {
                tracing::debug!(%error, "listing rollout executions");
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    });
}

async fn watch_once(
    ctx: &Ctx,
    stopped: &StoppedExecutions,
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
            .moto_json(
                region,
                "states",
                "AWSStepFunctions.ListExecutions",
                "1.0",
                &request,
            )
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
        let event = status_change_event(&stopped.as_aws_reports(described.body), region);
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
            tracing::info!(execution = %arn, status = %event["detail"]["status"], "execution status change emitted");
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
        assert_eq!(
            event["detail-type"],
            "Step Functions Execution Status Change"
        );
        assert_eq!(event["source"], "aws.states");
        assert_eq!(event["detail"]["status"], "ABORTED");
        assert_eq!(event["detail"]["startDate"], 1_800_000_000_500i64);
        assert_eq!(event["detail"]["stopDate"], 1_800_000_100_250i64);
        assert_eq!(event["detail"]["error"], Value::Null);
        assert_eq!(event["resources"][0], described["executionArn"]);
    }

    #[test]
    fn an_execution_stopped_through_the_gateway_is_reported_aborted() {
        let stopped = StoppedExecutions::default();
        let arn = "arn:aws:states:us-east-1:123456789012:execution:f-rollout:e1";
        stopped.record(&json!({ "executionArn": arn, "error": "Ops", "cause": "by hand" }));
        let moto_says =
            json!({ "executionArn": arn, "status": "FAILED", "error": "States.Runtime" });
        let reported = stopped.as_aws_reports(moto_says);
        assert_eq!(reported["status"], "ABORTED");
        assert_eq!(reported["error"], "Ops");
        assert_eq!(reported["cause"], "by hand");
        let other = json!({ "executionArn": "x", "status": "FAILED" });
        assert_eq!(stopped.as_aws_reports(other.clone()), other);
    }
}
