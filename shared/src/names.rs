//! Names of the resources one Meridian deployment creates, derived from the fleet's
//! `name`, so the template, the local cloud and the CLI agree on them.

/// The Lambda functions of Meridian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionRole {
    /// Validates an uploaded manifest and starts the rollout (primary region).
    Upload,
    /// Verifies replicas arriving in a regional bucket (every region).
    Replica,
    /// Reacts to endpoint alarms (every region).
    Failover,
    /// Restores recovered regions on a schedule (every region).
    Failback,
    /// The rollout state machine's tasks (primary region).
    Rollout,
    /// Serves inference and `/health` behind the region's API (every region).
    FrontDoor,
    /// The drill state machine's tasks (primary region).
    Drill,
    /// Resumes the rollout's wait for an endpoint update on SageMaker's events (every
    /// region).
    DeployWatch,
}

impl FunctionRole {
    pub const ALL: [FunctionRole; 8] = [
        Self::Upload,
        Self::Replica,
        Self::Failover,
        Self::Failback,
        Self::Rollout,
        Self::FrontDoor,
        Self::Drill,
        Self::DeployWatch,
    ];

    /// The function's binary (`BuildProperties: Binary` in the template) and the suffix
    /// of its deployed name.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Replica => "replica",
            Self::Failover => "failover",
            Self::Failback => "failback",
            Self::Rollout => "rollout",
            Self::FrontDoor => "front-door",
            Self::Drill => "drill",
            Self::DeployWatch => "deploy-watch",
        }
    }
}

/// The deployed name of a function, e.g. `meridian-demo-replica`.
pub fn function_name(fleet_name: &str, role: FunctionRole) -> String {
    format!("{fleet_name}-{}", role.binary())
}

/// The user-agent app name of a function's SDK clients (`app/meridian-replica`): tells
/// in CloudTrail, and in the local cloud's call log, which function made a call.
pub fn sdk_app_name(role: FunctionRole) -> String {
    format!("meridian-{}", role.binary())
}

/// The SQS queue that carries a function's events in the local cloud.
pub fn event_queue_name(fleet_name: &str, role: FunctionRole) -> String {
    format!("{fleet_name}-{}-events", role.binary())
}

/// The EventBridge rule that routes a function's events.
pub fn event_rule_name(fleet_name: &str, role: FunctionRole) -> String {
    format!("{fleet_name}-{}-rule", role.binary())
}

/// The rollout state machine of a fleet.
pub fn rollout_state_machine_name(fleet_name: &str) -> String {
    format!("{fleet_name}-rollout")
}

/// The drill state machine, in the primary region.
pub fn drill_state_machine_name(fleet_name: &str) -> String {
    format!("{fleet_name}-drill")
}

/// The EventBridge schedule that runs a function (failback evaluation).
pub fn schedule_rule_name(fleet_name: &str, role: FunctionRole) -> String {
    format!("{fleet_name}-{}-schedule", role.binary())
}

/// How often failback is evaluated.
pub const FAILBACK_SCHEDULE: &str = "rate(1 minute)";

/// How often the rollout function looks for a lock whose execution ended without
/// releasing it (a lost "Execution Status Change" event): the longest a lost event can hold
/// every later rollout back.
pub const ROLLOUT_RECONCILE_SCHEDULE: &str = "rate(5 minutes)";

/// How often each region's replica function sweeps for a rollout waiting on it (a lost or
/// dropped `Object Created` event): the longest a lost event can hold a region's verdict
/// back, instead of the rollout's replica timeout.
pub const REPLICA_RECONCILE_SCHEDULE: &str = "rate(5 minutes)";

/// The health check caller reference for a region: stable, so provisioning is idempotent.
pub fn health_check_reference(fleet_name: &str, region: &str) -> String {
    format!("{fleet_name}-{region}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_by_the_fleet_and_distinct() {
        let names: std::collections::HashSet<String> = FunctionRole::ALL
            .iter()
            .map(|role| function_name("demo", *role))
            .collect();
        assert_eq!(names.len(), FunctionRole::ALL.len());
        assert!(names.iter().all(|n| n.starts_with("demo-")));
        assert_eq!(function_name("demo", FunctionRole::Replica), "demo-replica");
    }
}
