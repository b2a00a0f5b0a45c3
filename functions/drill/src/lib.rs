//! The drill state machine's tasks (`statemachines/drill.asl.json`), one handler
//! dispatched on `task`: `start` (refuse or take the one-drill lock and record the
//! drill), `shift` (write the step's shift of the source region's traffic, which its
//! front door reads), `check` (alarms, drains, the step's shifted-traffic counts, an
//! operator's abort: bake on, next step, restore or abort) and `restore` (remove the
//! shift, end the record, release the lock). Each is idempotent: Step Functions retries.
//! The decisions are [`meridian::drill`]'s; the drills' items sit behind [`DrillItems`]
//! and the fleet-wide reads behind [`FleetReads`].

pub mod aws;
#[cfg(test)]
mod tests;

use std::future::Future;

use chrono::{DateTime, Utc};
use meridian::drill::{
    self, after_check, next, shift_for, Action, DrillRecord, DrillRequest, DrillStatus,
    FleetActivity, Next, Observation, Refusal, StepCounts, StepResult,
};
use meridian::fleet::Fleet;
use meridian::function::{Handler, InvalidEvent, Outcome};
use meridian::table::TableError;
use meridian::traffic::DrillShift;
use serde::Deserialize;
use serde_json::{json, Value};

/// Why a task failed, by the name Step Functions matches.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A dependency failed transiently; the same task may be retried.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The drill may not start now (a rollout, another drill, a drained region).
    #[error("{0}")]
    Refused(String),
    /// The input is wrong and never will be right.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl meridian::NamedError for DrillError {
    fn error_name(&self) -> &'static str {
        match self {
            DrillError::Retryable(_) => "Meridian.Retryable",
            DrillError::Refused(_) => "Meridian.Rejected",
            DrillError::Invalid(_) => "Meridian.Invalid",
        }
    }
}

impl From<InvalidEvent> for DrillError {
    fn from(InvalidEvent(message): InvalidEvent) -> Self {
        DrillError::Invalid(message)
    }
}

impl From<TableError> for DrillError {
    fn from(error: TableError) -> Self {
        match error {
            TableError::Unavailable(_) => DrillError::Retryable(error.to_string()),
            TableError::Rejected(_) | TableError::Corrupt(_) => {
                DrillError::Invalid(error.to_string())
            }
        }
    }
}

impl From<Refusal> for DrillError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(why) => DrillError::Invalid(why),
            Refusal::Refused(why) => DrillError::Refused(format!("drill refused: {why}")),
        }
    }
}

/// The drills' items in the primary region's table replica
/// ([`meridian::drill_store::DrillStore`] on AWS).
pub trait DrillItems: Send + Sync {
    /// A drill's record and the operator's abort request, if any.
    fn record(
        &self,
        drill_id: &str,
    ) -> impl Future<Output = Result<Option<(DrillRecord, Option<String>)>, TableError>> + Send;
    fn save_record(
        &self,
        record: &DrillRecord,
    ) -> impl Future<Output = Result<(), TableError>> + Send;
    /// The drill holding the one-drill lock, if any.
    fn lock_holder(&self) -> impl Future<Output = Result<Option<String>, TableError>> + Send;
    /// Takes the lock for `drill_id` (done if it holds it); `Ok(Err(holder))` when another
    /// drill holds it.
    fn take_lock(
        &self,
        drill_id: &str,
    ) -> impl Future<Output = Result<Result<(), String>, TableError>> + Send;
    /// Releases the lock if `drill_id` holds it.
    fn release_lock(&self, drill_id: &str) -> impl Future<Output = Result<(), TableError>> + Send;
    /// Writes (or renews) a drill's shift of its source region's traffic.
    fn put_shift(&self, shift: &DrillShift) -> impl Future<Output = Result<(), TableError>> + Send;
    /// Removes `drill_id`'s shift of `region` (another drill's is left alone).
    fn clear_shift(
        &self,
        region: &str,
        drill_id: &str,
    ) -> impl Future<Output = Result<(), TableError>> + Send;
    /// A step's counts of the shifted requests.
    fn step_counts(
        &self,
        drill_id: &str,
        step: usize,
    ) -> impl Future<Output = Result<StepCounts, TableError>> + Send;
}

/// What a drill reads of the rest of the fleet, each where it lives.
pub trait FleetReads: Send + Sync {
    /// The rollout holding a model's registry lock, as `model/version`, if any.
    fn rollout_holder(&self) -> impl Future<Output = Result<Option<String>, DrillError>> + Send;
    /// Regions whose records (in the primary's replica) say they are out of service,
    /// with their state and reason.
    fn drained(&self) -> impl Future<Output = Result<Vec<(String, String)>, DrillError>> + Send;
    /// Every fleet alarm in `ALARM`, as `region/alarm`, read in its region.
    fn alarms_firing(&self) -> impl Future<Output = Result<Vec<String>, DrillError>> + Send;
}

/// The tasks' dependencies: the fleet, the drills' items in the primary's replica, and
/// the fleet-wide reads.
pub struct Drill<S, F> {
    pub fleet: Fleet,
    pub store: S,
    pub reads: F,
}

/// A task, as the state machine sends it.
#[derive(Debug, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    Start {
        drill_id: String,
        request: DrillRequest,
    },
    Shift {
        drill_id: String,
        step: usize,
    },
    Check {
        drill_id: String,
        step: usize,
    },
    Restore {
        drill_id: String,
        /// What a failed task reported (the state machine's `Catch`).
        #[serde(default)]
        error: Option<Value>,
        /// Why the check aborted.
        #[serde(default)]
        reason: Option<String>,
    },
}

impl<S: DrillItems, F: FleetReads> Handler for Drill<S, F> {
    type Event = Task;
    type Error = DrillError;
    const EVENT: &'static str = "a drill task input";

    async fn handle(&self, task: Task) -> Outcome<DrillError> {
        let now = Utc::now();
        let result = match task {
            Task::Start { drill_id, request } => self.start(&drill_id, request, now).await,
            Task::Shift { drill_id, step } => self.shift(&drill_id, step, now).await,
            Task::Check { drill_id, step } => self.check(&drill_id, step, now).await,
            Task::Restore {
                drill_id,
                error,
                reason,
            } => {
                let why = reason.or_else(|| error.map(|e| format!("a task failed: {e}")));
                self.restore(&drill_id, why, now).await
            }
        };
        result.into()
    }
}

impl<S: DrillItems, F: FleetReads> Drill<S, F> {
    async fn record(&self, drill_id: &str) -> Result<(DrillRecord, Option<String>), DrillError> {
        self.store
            .record(drill_id)
            .await?
            .ok_or_else(|| DrillError::Invalid(format!("no drill {drill_id}")))
    }

    async fn start(
        &self,
        drill_id: &str,
        request: DrillRequest,
        now: DateTime<Utc>,
    ) -> Result<Value, DrillError> {
        drill::validate(&self.fleet, &request)?;
        let holder = self.store.lock_holder().await?;
        if holder.as_deref() != Some(drill_id) {
            let activity = FleetActivity {
                rollout: self.reads.rollout_holder().await?,
                drill: holder,
                drained: self.reads.drained().await?,
            };
            drill::may_start(&activity)?;
            if let Err(holder) = self.store.take_lock(drill_id).await? {
                return Err(DrillError::Refused(format!(
                    "drill refused: drill {holder} is running"
                )));
            }
        }
        if self.store.record(drill_id).await?.is_none() {
            let record = DrillRecord {
                id: drill_id.to_owned(),
                request,
                started: now,
                status: DrillStatus::Running,
                reason: None,
                ended: None,
                steps: Vec::new(),
            };
            self.store.save_record(&record).await?;
        }
        tracing::info!(drill_id, "drill started");
        Ok(json!({ "drill_id": drill_id, "step": 0 }))
    }

    async fn shift(
        &self,
        drill_id: &str,
        step: usize,
        now: DateTime<Utc>,
    ) -> Result<Value, DrillError> {
        let (mut record, _) = self.record(drill_id).await?;
        let shift = shift_for(drill_id, &record.request, step, now)
            .ok_or_else(|| DrillError::Invalid(format!("drill {drill_id} has no step {step}")))?;
        if record.steps.len() == step {
            if let Some(previous) = record.steps.last_mut() {
                previous.ended.get_or_insert(now);
            }
            record.steps.push(StepResult {
                percent: shift.percent,
                started: now,
                ended: None,
                counts: Default::default(),
            });
            self.store.save_record(&record).await?;
        }
        self.store.put_shift(&shift).await?;
        tracing::info!(drill_id, step, percent = shift.percent, "shifted");
        Ok(json!({ "drill_id": drill_id, "step": step, "percent": shift.percent }))
    }

    async fn check(
        &self,
        drill_id: &str,
        step: usize,
        now: DateTime<Utc>,
    ) -> Result<Value, DrillError> {
        let (mut record, abort_requested) = self.record(drill_id).await?;
        let counts = self.store.step_counts(drill_id, step).await?;
        let observation = Observation {
            alarms_firing: self.reads.alarms_firing().await?,
            drained: self.reads.drained().await?,
            counts,
        };
        let mut verdict = drill::verdict(&observation, self.fleet.traffic.drill_max_error_percent);
        if let Some(why) = abort_requested {
            verdict = drill::Verdict::Abort(format!("aborted by an operator: {why}"));
        }
        let started = record.steps.get(step).map_or(now, |s| s.started);
        let bake = chrono::Duration::from_std(record.request.bake).unwrap_or_default();
        let baked = now >= started + bake;
        let action = after_check(&verdict, baked, next(&record.request, step));
        if let Some(result) = record.steps.get_mut(step) {
            result.counts = counts;
        }
        self.store.save_record(&record).await?;
        let next_step = match next(&record.request, step) {
            Next::Step(i) if action == Action::Next => i,
            _ => step,
        };
        let reason = match &verdict {
            drill::Verdict::Abort(why) => Some(why.clone()),
            drill::Verdict::Continue => None,
        };
        if let Some(why) = &reason {
            tracing::warn!(drill_id, step, reason = %why, "drill aborting");
        }
        Ok(json!({ "action": action, "step": next_step, "reason": reason }))
    }

    async fn restore(
        &self,
        drill_id: &str,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Value, DrillError> {
        // The traffic first: whatever else fails, the source region serves its own.
        self.store
            .clear_shift(&self.fleet_source(drill_id).await?, drill_id)
            .await?;
        let (mut record, _) = self.record(drill_id).await?;
        if let Some(last) = record.steps.len().checked_sub(1) {
            let counts = self.store.step_counts(drill_id, last).await?;
            if let Some(step) = record.steps.get_mut(last) {
                step.counts = counts;
            }
        }
        record.end(reason, now);
        self.store.save_record(&record).await?;
        self.store.release_lock(drill_id).await?;
        tracing::info!(drill_id, status = ?record.status, "drill restored");
        Ok(json!({ "drill_id": drill_id, "status": record.status, "reason": record.reason }))
    }

    async fn fleet_source(&self, drill_id: &str) -> Result<String, DrillError> {
        Ok(self.record(drill_id).await?.0.request.from)
    }
}
