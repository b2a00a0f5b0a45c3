//! The local cloud: pinned moto behind a gateway of ours, which hosts Meridian's Lambda
//! handlers and each region's front door in-process and emulates, in one documented place
//! (`EMULATIONS.md`), what moto lacks: S3 replication, DynamoDB global tables, the
//! SageMaker endpoint update lifecycle, CloudWatch alarm events, scheduled rules, Lambda
//! invocation, API Gateway in front of the front doors and Route 53's health checkers.

pub mod alarms;
pub mod api_gateway;
pub mod bucket_cache;
pub mod calls;
pub mod cbor;
pub mod checksums;
pub mod cloud;
pub mod config;
pub mod control;
pub mod crc64_cache;
pub mod ctx;
pub mod delivery;
pub mod events;
pub mod execution_events;
pub mod faults;
pub mod front_doors;
pub mod functions;
pub mod gateway;
pub mod global_tables;
pub mod health_checkers;
pub mod hosted;
pub mod http;
pub mod lambda_api;
pub mod moto;
pub mod provision;
pub mod replication;
pub mod route53;
pub mod routing_view;
pub mod sagemaker;
pub mod schedules;
pub mod server;

pub use cloud::LocalCloud;
pub use config::LocalCloudConfig;
pub use front_doors::FrontDoors;
pub use functions::{FunctionError, Functions, Invocation};
