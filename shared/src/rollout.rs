//! Rollout decisions: guardrail settings, deployment names, and how an endpoint's state
//! reads for a rollout (done, still going, silently rolled back, failed). Pure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How SageMaker shifts traffic to the new fleet during `UpdateEndpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficStrategy {
    /// One step of `traffic_percent`, bake, then the rest.
    Canary,
    /// Steps of `traffic_percent` each, baking between them.
    Linear,
    /// All traffic at once, then bake.
    AllAtOnce,
}

/// Rollout settings, from the fleet file's `[rollout]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSettings {
    pub strategy: TrafficStrategy,
    /// Canary size or linear step, percent of capacity (canary ≤ 50, linear 10–50).
    pub traffic_percent: u32,
    /// Bake time between traffic steps and before SageMaker ends the update (0–3600 s).
    #[serde(with = "seconds")]
    pub bake: Duration,
    /// How long to wait for a region's replicas before the fast-copy fallback.
    #[serde(with = "seconds")]
    pub replica_timeout: Duration,
    /// How long one region's endpoint update may take before the rollout fails.
    #[serde(with = "seconds")]
    pub deploy_timeout: Duration,
    /// Meridian's own bake: how long every region serves the new version before the
    /// commit, while operators may pause, promote (skip the rest) or abort (0–21,600 s).
    #[serde(with = "seconds", default)]
    pub commit_bake: Duration,
    /// The fast copy's part size and per-invocation budget.
    #[serde(default)]
    pub copy: crate::copy_plan::CopySettings,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            strategy: TrafficStrategy::Canary,
            traffic_percent: 10,
            bake: Duration::from_secs(300),
            replica_timeout: Duration::from_secs(1800),
            deploy_timeout: Duration::from_secs(3600),
            commit_bake: Duration::ZERO,
            copy: crate::copy_plan::CopySettings::default(),
        }
    }
}

/// SageMaker's bounds on one blue/green deployment's `MaximumExecutionTimeoutInSeconds`.
pub const SAGEMAKER_DEPLOYMENT_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 600..=28_800;

impl RolloutSettings {
    /// How many bake periods SageMaker waits in one deployment: one per traffic step, plus
    /// the final bake before the old fleet is terminated.
    pub fn bake_periods(&self) -> u64 {
        match self.strategy {
            TrafficStrategy::AllAtOnce => 1,
            TrafficStrategy::Canary => 2,
            TrafficStrategy::Linear => {
                u64::from(100u32.div_ceil(self.traffic_percent.clamp(1, 100))) + 1
            }
        }
    }

    /// Total baking in one region's deployment; the deploy timeout must exceed it.
    pub fn total_bake(&self) -> Duration {
        self.bake
            .saturating_mul(u32::try_from(self.bake_periods()).unwrap_or(u32::MAX))
    }

    /// `MaximumExecutionTimeoutInSeconds` for `UpdateEndpoint`: the deploy timeout, within
    /// SageMaker's range, so SageMaker gives up no later than Meridian's own deadline (or
    /// at its 600 s minimum).
    pub fn sagemaker_deployment_timeout(&self) -> u64 {
        let range = SAGEMAKER_DEPLOYMENT_TIMEOUT_SECONDS;
        self.deploy_timeout
            .as_secs()
            .clamp(*range.start(), *range.end())
    }

    /// Why SageMaker would refuse this traffic shift on a fleet of `instances`, in words an
    /// operator can act on; `None` when it is valid. SageMaker shifts whole instances: a
    /// step is `traffic_percent` of the fleet rounded up to at least one instance, a canary
    /// may be at most half of the fleet and a linear step 10–50% of it.
    pub fn traffic_shift_refusal(&self, region: &str, instances: u32) -> Option<String> {
        let (what, lowest) = match self.strategy {
            TrafficStrategy::AllAtOnce => return None,
            TrafficStrategy::Canary => ("a canary", 0),
            TrafficStrategy::Linear => ("a linear step", 10),
        };
        let step = (u64::from(self.traffic_percent) * u64::from(instances))
            .div_ceil(100)
            .max(1);
        let fleet = u64::from(instances);
        let share = step * 100 / fleet.max(1);
        if fleet == 0 || step * 2 > fleet || step * 100 < lowest * fleet {
            let bounds = if lowest == 0 {
                "at most 50%".to_owned()
            } else {
                format!("{lowest}% to 50%")
            };
            Some(format!(
                "{what} of {}% on {instances} instance(s) in {region} is {step} instance(s), \
                 {share}% of the fleet; SageMaker allows {bounds} of the fleet per step: give \
                 {region} more instances, change rollout.traffic_percent, or use \
                 strategy = \"all-at-once\"",
                self.traffic_percent
            ))
        } else {
            None
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(deserializer)?))
    }
}

/// A SageMaker resource name for a model version: `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`,
/// unique per (model, version, manifest digest) so a different manifest never reuses one.
pub fn deployment_name(model: &str, version: &str, digest: &str) -> String {
    let sanitized: String = format!("{model}-{version}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut collapsed = String::new();
    for c in sanitized.chars() {
        if !(c == '-' && collapsed.ends_with('-')) {
            collapsed.push(c);
        }
    }
    let stem: String = collapsed.trim_matches('-').chars().take(54).collect();
    let suffix: String = digest
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect();
    format!("{}-{suffix}", stem.trim_end_matches('-'))
}

/// A Step Functions execution name for a rollout (≤ 80 of `[A-Za-z0-9-_]`), the same for
/// every delivery of the same manifest, so duplicate events start nothing twice.
pub fn execution_name(model: &str, version: &str, digest: &str) -> String {
    deployment_name(model, version, digest)
        .chars()
        .take(80)
        .collect()
}

/// How an endpoint stands for a rollout that deployed `ours`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployState {
    /// Still updating (or rolling back): ask again later.
    InProgress,
    /// In service on our configuration.
    Done,
    /// In service on another configuration: SageMaker rolled back (silently).
    RolledBack { serving: String },
    /// The update failed.
    Failed { reason: String },
}

/// Reads `DescribeEndpoint`'s status and configuration for a rollout.
pub fn deploy_state(
    status: &str,
    serving_config: &str,
    ours: &str,
    failure_reason: Option<&str>,
) -> DeployState {
    match status {
        "InService" if serving_config == ours => DeployState::Done,
        "InService" => DeployState::RolledBack {
            serving: serving_config.to_owned(),
        },
        "Failed" | "UpdateRollbackFailed" | "OutOfService" | "Deleting" => DeployState::Failed {
            reason: format!(
                "endpoint is {status}: {}",
                failure_reason.unwrap_or("no reason given")
            ),
        },
        _ => DeployState::InProgress,
    }
}

/// Why a rollout step failed. The error name is what Step Functions `Retry`/`Catch`
/// match on: only `Meridian.Retryable` is retried.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A dependency failed transiently (throttling, a network error, a lagging replica).
    #[error("{0}")]
    Retryable(String),
    /// The input can never succeed as given.
    #[error("{0}")]
    Invalid(String),
    /// An AWS service refused a request as given (SageMaker's or DynamoDB's validation
    /// error, a missing resource, a quota): retrying cannot help, the message says why.
    #[error("{0}")]
    Rejected(String),
    /// A region's replicas do not match the manifest.
    #[error("{0}")]
    ReplicaFailed(String),
    /// The endpoint update failed or timed out.
    #[error("{0}")]
    DeployFailed(String),
    /// The endpoint is in service on a configuration that is not ours: SageMaker rolled back.
    #[error("{0}")]
    SilentRollback(String),
    /// An operator aborted the rollout (`meridian rollout abort`).
    #[error("{0}")]
    Aborted(String),
}

impl From<crate::function::InvalidEvent> for RolloutError {
    fn from(crate::function::InvalidEvent(message): crate::function::InvalidEvent) -> Self {
        RolloutError::Invalid(message)
    }
}

impl crate::NamedError for RolloutError {
    fn error_name(&self) -> &'static str {
        match self {
            RolloutError::Retryable(_) => "Meridian.Retryable",
            RolloutError::Invalid(_) => "Meridian.Invalid",
            RolloutError::Rejected(_) => "Meridian.Rejected",
            RolloutError::ReplicaFailed(_) => "Meridian.ReplicaFailed",
            RolloutError::DeployFailed(_) => "Meridian.DeployFailed",
            RolloutError::SilentRollback(_) => "Meridian.SilentRollback",
            RolloutError::Aborted(_) => "Meridian.Aborted",
        }
    }
}

impl From<crate::registry::RegistryError> for RolloutError {
    fn from(error: crate::registry::RegistryError) -> Self {
        match error {
            crate::registry::RegistryError::Unavailable(m) => RolloutError::Retryable(m),
            crate::registry::RegistryError::Corrupt(m) => RolloutError::Invalid(m),
            crate::registry::RegistryError::Rejected(m) => RolloutError::Rejected(m),
        }
    }
}

/// Wraps an error as retryable, with its context.
pub fn retryable(context: &str, error: impl std::fmt::Display) -> RolloutError {
    RolloutError::Retryable(format!("{context}: {error}"))
}

/// An AWS SDK error (any service), with its context, named by whether retrying can help:
/// `Meridian.Rejected` for a request the service refused as given, with the service's
/// message; `Meridian.Retryable` for throttling, server errors and timeouts.
pub fn aws_error<E>(
    context: &str,
    error: aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> RolloutError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    use crate::aws_errors::{class_of, describe, ErrorClass};
    let message = describe(context, &error);
    match class_of(&error) {
        ErrorClass::Retryable => RolloutError::Retryable(message),
        ErrorClass::Rejected => RolloutError::Rejected(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_names_are_valid_sagemaker_names_and_unique_per_digest() {
        let name = deployment_name("llama", "2026.11_24", "abcdef0123456789");
        assert_eq!(name, "llama-2026-11-24-abcdef01");
        let long = deployment_name(&"m".repeat(63), &"v".repeat(64), "ffffffffffff");
        assert!(long.len() <= 63, "{}", long.len());
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(!long.contains("--"));
        assert_ne!(
            deployment_name("m", "1", "aaaaaaaa"),
            deployment_name("m", "1", "bbbbbbbb")
        );
        assert!(execution_name("m", "1", "aaaaaaaa").len() <= 80);
    }

    fn settings(strategy: TrafficStrategy, traffic_percent: u32) -> RolloutSettings {
        RolloutSettings {
            strategy,
            traffic_percent,
            ..RolloutSettings::default()
        }
    }

    #[test]
    fn a_canary_is_at_most_half_the_fleet_in_whole_instances() {
        let canary = |percent, instances| {
            settings(TrafficStrategy::Canary, percent).traffic_shift_refusal("r", instances)
        };
        let refusal = canary(10, 1).expect("one instance cannot hold a canary");
        assert!(
            refusal.contains("a canary of 10% on 1 instance(s) in r is 1 instance(s), 100%"),
            "{refusal}"
        );
        assert!(refusal.contains("at most 50%"), "{refusal}");
        assert_eq!(canary(10, 2), None);
        assert_eq!(canary(50, 2), None);
        assert!(canary(50, 3).is_some(), "2 of 3 instances is over half");
        assert_eq!(canary(1, 100), None);
        assert!(canary(10, 0).is_some());
    }

    #[test]
    fn a_linear_step_is_ten_to_fifty_percent_of_the_fleet_in_whole_instances() {
        let linear = |percent, instances| {
            settings(TrafficStrategy::Linear, percent).traffic_shift_refusal("r", instances)
        };
        assert!(linear(10, 1).is_some());
        assert_eq!(linear(10, 2), None);
        assert_eq!(linear(10, 3), None);
        assert_eq!(linear(10, 10), None);
        assert_eq!(linear(25, 20), None);
        let refusal = linear(50, 3).expect("2 of 3 instances is over half");
        assert!(refusal.contains("10% to 50%"), "{refusal}");
    }

    #[test]
    fn the_refusal_holds_exactly_when_the_step_is_outside_sagemakers_share() {
        for strategy in [TrafficStrategy::Canary, TrafficStrategy::Linear] {
            for percent in 1..=50 {
                for instances in 0..=40u32 {
                    let step = (percent * instances).div_ceil(100).max(1);
                    let lowest = if strategy == TrafficStrategy::Linear {
                        10
                    } else {
                        0
                    };
                    let valid =
                        instances > 0 && step * 2 <= instances && step * 100 >= lowest * instances;
                    assert_eq!(
                        settings(strategy, percent)
                            .traffic_shift_refusal("r", instances)
                            .is_none(),
                        valid,
                        "{strategy:?} {percent}% of {instances}"
                    );
                }
            }
        }
        assert_eq!(
            settings(TrafficStrategy::AllAtOnce, 100).traffic_shift_refusal("r", 1),
            None
        );
    }

    #[test]
    fn sagemaker_waits_one_bake_per_step_and_a_final_one_within_its_timeout_range() {
        let mut linear = settings(TrafficStrategy::Linear, 10);
        linear.bake = Duration::from_secs(100);
        assert_eq!(linear.bake_periods(), 11);
        assert_eq!(linear.total_bake(), Duration::from_secs(1_100));
        assert_eq!(settings(TrafficStrategy::Linear, 30).bake_periods(), 5);
        assert_eq!(settings(TrafficStrategy::Canary, 10).bake_periods(), 2);
        assert_eq!(settings(TrafficStrategy::AllAtOnce, 100).bake_periods(), 1);

        let mut timeout = |seconds| {
            linear.deploy_timeout = Duration::from_secs(seconds);
            linear.sagemaker_deployment_timeout()
        };
        assert_eq!(timeout(1), 600);
        assert_eq!(timeout(3_600), 3_600);
        assert_eq!(timeout(86_400), 28_800);
    }

    #[test]
    fn endpoint_states_read_for_the_rollout() {
        assert_eq!(
            deploy_state("Updating", "old", "new", None),
            DeployState::InProgress
        );
        assert_eq!(
            deploy_state("RollingBack", "old", "new", None),
            DeployState::InProgress
        );
        assert_eq!(
            deploy_state("InService", "new", "new", None),
            DeployState::Done
        );
        assert_eq!(
            deploy_state("InService", "old", "new", None),
            DeployState::RolledBack {
                serving: "old".into()
            }
        );
        assert!(
            matches!(deploy_state("Failed", "old", "new", Some("boom")), DeployState::Failed { reason } if reason.contains("boom"))
        );
    }
}
