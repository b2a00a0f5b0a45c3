//! Meridian's core library: the fleet description, the one way to build AWS clients,
//! and (as the control plane grows) the pure decisions every function shares.

pub mod adapters;
pub mod aws;
pub mod aws_errors;
pub mod bounded;
pub mod capacity;
pub mod checksum;
pub mod copy_plan;
pub mod cost;
pub mod drift;
pub mod drift_settings;
pub mod drill;
pub mod drill_store;
pub mod endpoint_events;
pub mod events;
pub mod executions;
pub mod failover;
pub mod field_error;
pub mod fleet;
pub mod function;
pub mod health;
pub mod images;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod manifest;
pub mod manifest_store;
pub mod metrics;
pub mod names;
pub mod operator;
pub mod peers;
pub mod prices;
pub mod region_progress;
pub mod regions;
pub mod registry;
pub mod registry_memory;
pub mod registry_store;
pub mod repair;
pub mod replica_check;
pub mod replica_record;
pub mod rollout;
pub mod rollout_end;
pub mod rollout_executions;
pub mod rollout_lock;
pub mod routing;
pub mod s3_copy;
pub mod scaling;
pub mod scaling_aws;
pub mod smoke;
pub mod table;
pub mod traffic;
pub mod traffic_settings;
pub mod variant;
pub mod windows;

/// An error that Step Functions' `Retry`/`Catch` match by name: the Lambda `errorType` a
/// function reports for it, in AWS and in the local cloud alike.
pub trait NamedError: std::fmt::Display {
    fn error_name(&self) -> &'static str;
}
