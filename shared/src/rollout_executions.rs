//! The rollout state machine's executions as ending a rollout and queuing a version see
//! them ([`crate::rollout_end`]): start a version's rollout, and ask whether the lock
//! holder's execution has ended. [`SfnExecutions`] is Step Functions; [`MemoryExecutions`]
//! serves handler tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::fleet::Fleet;
use crate::rollout::{execution_name, RolloutError};

/// The `detail` of Step Functions' "Step Functions Execution Status Change" EventBridge
/// event (fields Meridian reads; `input`/`output` may be left out by Step Functions when
/// large, so they are not relied on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatusChange {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED` (or `PENDING_REDRIVE`).
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

/// Step Functions statuses of an execution that has ended without success.
pub const ENDED_WITHOUT_SUCCESS: [&str; 3] = ["FAILED", "TIMED_OUT", "ABORTED"];

/// The holder's execution status if it has ended (Step Functions' `DescribeExecution`):
/// how a version queuing behind it finds a lock whose status event was lost.
pub async fn ended_status(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    execution: &str,
) -> Result<Option<ExecutionStatusChange>, RolloutError> {
    let arn = execution_arn(state_machine_arn, execution);
    let described = sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .map_err(|e| {
            crate::rollout::retryable(
                "reading the holder's execution",
                aws_sdk_sfn::error::DisplayErrorContext(e),
            )
        })?;
    let status = described.status().as_str().to_owned();
    if !ENDED_WITHOUT_SUCCESS.contains(&status.as_str()) && status != "SUCCEEDED" {
        return Ok(None);
    }
    Ok(Some(ExecutionStatusChange {
        execution_arn: arn,
        state_machine_arn: state_machine_arn.to_owned(),
        name: execution.to_owned(),
        status,
        error: described.error().map(str::to_owned),
        cause: described.cause().map(str::to_owned),
    }))
}

/// An execution's ARN from its state machine's ARN and its name
/// (`arn:aws:states:<region>:<account>:execution:<state machine>:<name>`).
pub fn execution_arn(state_machine_arn: &str, execution: &str) -> String {
    format!(
        "{}:{execution}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// Starting and reading rollout executions.
pub trait RolloutExecutions: Send + Sync {
    /// Starts (idempotently: the name is derived from what it runs) the rollout of
    /// `model`/`version` over `fleet`'s regions; the execution's name.
    fn start_rollout(
        &self,
        fleet: &Fleet,
        model: &str,
        version: &str,
        digest: &str,
    ) -> impl Future<Output = Result<String, RolloutError>> + Send;
    /// The execution's end, if it has ended (with success or not); `None` while it runs.
    fn ended(
        &self,
        execution: &str,
    ) -> impl Future<Output = Result<Option<ExecutionStatusChange>, RolloutError>> + Send;
}

/// The rollout state machine in Step Functions (the control region's client).
pub struct SfnExecutions {
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
}

impl RolloutExecutions for SfnExecutions {
    async fn start_rollout(
        &self,
        fleet: &Fleet,
        model: &str,
        version: &str,
        digest: &str,
    ) -> Result<String, RolloutError> {
        crate::executions::start_rollout(
            &self.sfn,
            &self.state_machine_arn,
            fleet,
            model,
            version,
            digest,
        )
        .await
    }

    async fn ended(&self, execution: &str) -> Result<Option<ExecutionStatusChange>, RolloutError> {
        ended_status(&self.sfn, &self.state_machine_arn, execution).await
    }
}

#[derive(Default)]
struct Started {
    /// Execution names in the order first started (a repeated start is the same one, as
    /// Step Functions' `ExecutionAlreadyExists` makes it).
    names: Vec<String>,
    ended: BTreeMap<String, ExecutionStatusChange>,
    failing: Option<fn(String) -> RolloutError>,
}

/// Executions in memory: every start recorded once, and the ends a test declares.
#[derive(Clone)]
pub struct MemoryExecutions {
    state_machine_arn: String,
    state: Arc<Mutex<Started>>,
}

impl MemoryExecutions {
    /// Executions of the state machine `state_machine_arn`.
    pub fn new(state_machine_arn: &str) -> Self {
        Self {
            state_machine_arn: state_machine_arn.to_owned(),
            state: Arc::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, Started> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The executions started, in order.
    pub fn started(&self) -> Vec<String> {
        self.state().names.clone()
    }

    /// Declares that `execution` ended with `status` (`FAILED`, `ABORTED`, ...).
    pub fn end(&self, execution: &str, status: &str) {
        let ended = ExecutionStatusChange {
            execution_arn: execution_arn(&self.state_machine_arn, execution),
            state_machine_arn: self.state_machine_arn.clone(),
            name: execution.to_owned(),
            status: status.to_owned(),
            error: None,
            cause: None,
        };
        self.state().ended.insert(execution.to_owned(), ended);
    }

    /// Makes every call fail with `error` from now on (`None`: none).
    pub fn fail(&self, error: Option<fn(String) -> RolloutError>) {
        self.state().failing = error;
    }

    fn check(&self, operation: &str) -> Result<(), RolloutError> {
        match self.state().failing {
            Some(error) => Err(error(format!("{operation}: injected"))),
            None => Ok(()),
        }
    }
}

impl RolloutExecutions for MemoryExecutions {
    async fn start_rollout(
        &self,
        _fleet: &Fleet,
        model: &str,
        version: &str,
        digest: &str,
    ) -> Result<String, RolloutError> {
        self.check("starting the rollout")?;
        let name = execution_name(model, version, digest);
        let mut state = self.state();
        if !state.names.contains(&name) {
            state.names.push(name.clone());
        }
        Ok(name)
    }

    async fn ended(&self, execution: &str) -> Result<Option<ExecutionStatusChange>, RolloutError> {
        self.check("reading the holder's execution")?;
        Ok(self.state().ended.get(execution).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_follow_the_state_machines() {
        assert_eq!(
            execution_arn("arn:aws:states:us-east-1:1:stateMachine:f-rollout", "x"),
            "arn:aws:states:us-east-1:1:execution:f-rollout:x"
        );
    }
}
