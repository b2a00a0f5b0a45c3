//! The local cloud: pinned moto behind a gateway of ours, which hosts Meridian's Lambda
//! handlers in-process and emulates, in one documented place (`EMULATIONS.md`), what moto
//! lacks: S3 replication, DynamoDB global tables, the SageMaker endpoint update lifecycle,
//! CloudWatch alarm events, scheduled rules and Lambda invocation.

pub mod alarms;
pub mod calls;
pub mod cbor;
pub mod cloud;
pub mod delivery;
pub mod events;
pub mod faults;
pub mod functions;
pub mod gateway;
pub mod global_tables;
pub mod hosted;
pub mod moto;
pub mod provision;
pub mod replication;
pub mod sagemaker;
pub mod schedules;

pub use cloud::{LocalCloud, LocalCloudConfig};
pub use functions::{FunctionError, Functions, Invocation};
