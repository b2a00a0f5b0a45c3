//! The rollout state machine's executions as ending a rollout and queuing a version see
//! them ([`crate::rollout_end`]): start a version's rollout, and ask whether the lock
//! holder's execution has ended. [`SfnExecutions`] is Step Functions; [`MemoryExecutions`]
//! serves handler tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fleet::Fleet;
use crate::rollout::{execution_name, RolloutError};
use crate::rollout_end::ExecutionStatusChange;

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
        crate::rollout_end::ended_status(&self.sfn, &self.state_machine_arn, execution).await
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
            execution_arn: crate::rollout_end::execution_arn(&self.state_machine_arn, execution),
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
