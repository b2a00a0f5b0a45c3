//! Thin AWS adapters for [`crate::health`]: DynamoDB for records, probes and event logs,
//! Application Auto Scaling for standby capacity, CloudWatch for the alarms' current
//! states. None of them is Route 53: a drain is a write of the region's own record.

use chrono::Utc;

use crate::failover::{AlarmState, RegionHealth};
use crate::health::{
    AlarmReading, AlarmStates, FailoverEvent, FrontDoorProbe, HealthError, HealthStore,
    ProbeAnswer, StandbyScaler, Versioned, Write,
};
use crate::peers::PeerProbes;
use crate::table::{
    dynamodb_error, is_condition_failure, json_attr, json_field, n, number_field, s,
};

/// Partition key of a region's health record.
pub fn health_key(region: &str) -> String {
    format!("health#{region}")
}

/// Partition key of a region's failover event log.
pub fn events_key(region: &str) -> String {
    format!("events#{region}")
}

/// Partition key of what a region's tick saw of its peers' front doors.
pub fn probes_key(observer: &str) -> String {
    format!("probes#{observer}")
}

const HEALTH_SK: &str = "state";

fn retryable(context: &str, error: impl std::fmt::Display) -> HealthError {
    HealthError::Retryable(format!("{context}: {error}"))
}

/// Health records, probes and event logs in the registry table, all read and written in
/// the replica of the region the code runs for: each region writes only its own items,
/// and reads its peers' as replicated.
pub struct DynamoHealthStore {
    /// The table replica of the region this code runs for.
    pub local: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl HealthStore for DynamoHealthStore {
    async fn load(&self, region: &str) -> Result<Option<Versioned<RegionHealth>>, HealthError> {
        let item = self
            .local
            .get_item()
            .table_name(&self.table)
            .key("pk", s(health_key(region)))
            .key("sk", s(HEALTH_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the health record", e))?
            .item;
        let Some(item) = item else { return Ok(None) };
        let what = format!("health record of {region}");
        let value = json_field(&item, "record", &what)?
            .ok_or_else(|| HealthError::Invalid(format!("{what} has no record attribute")))?;
        let version = number_field(&item, "version").map_or(0, |v| v as u64);
        Ok(Some(Versioned { value, version }))
    }

    async fn save(
        &self,
        health: &RegionHealth,
        expected: Option<u64>,
    ) -> Result<Write, HealthError> {
        let record = json_attr(health)?;
        let state = serde_json::to_value(health.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut put = self
            .local
            .put_item()
            .table_name(&self.table)
            .item("pk", s(health_key(&health.region)))
            .item("sk", s(HEALTH_SK))
            .item("record", record)
            .item("state", s(state))
            .item("updated", s(Utc::now().to_rfc3339()))
            .item("version", n(expected.map_or(1, |v| v + 1)));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(version) => put
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(version)),
        };
        match put.send().await {
            Ok(_) => Ok(Write::Done),
            Err(error) if is_condition_failure(&error) => Ok(Write::Conflict),
            Err(error) => Err(dynamodb_error("writing the health record", error).into()),
        }
    }

    async fn load_probes(&self, observer: &str) -> Result<Option<PeerProbes>, HealthError> {
        let item = self
            .local
            .get_item()
            .table_name(&self.table)
            .key("pk", s(probes_key(observer)))
            .key("sk", s(HEALTH_SK))
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the peers' probes", e))?
            .item;
        let Some(item) = item else { return Ok(None) };
        Ok(json_field(
            &item,
            "probes",
            &format!("probes of {observer}"),
        )?)
    }

    async fn save_probes(&self, probes: &PeerProbes) -> Result<(), HealthError> {
        let body = json_attr(probes)?;
        self.local
            .put_item()
            .table_name(&self.table)
            .item("pk", s(probes_key(&probes.observer)))
            .item("sk", s(HEALTH_SK))
            .item("probes", body)
            .item("updated", s(Utc::now().to_rfc3339()))
            .send()
            .await
            .map_err(|e| dynamodb_error("writing the peers' probes", e))?;
        Ok(())
    }

    async fn record(&self, event: &FailoverEvent) -> Result<(), HealthError> {
        let body = json_attr(event)?;
        let result = self
            .local
            .put_item()
            .table_name(&self.table)
            .item("pk", s(events_key(&event.region)))
            .item("sk", s(format!("event#{}", event.id)))
            .item("event", body)
            .item("decided", s(event.decided.to_rfc3339()))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failure(&error) => Ok(()),
            Err(error) => Err(dynamodb_error("recording the failover event", error).into()),
        }
    }
}

/// Reads every region's failover events (newest last) from one table replica.
pub async fn read_history(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    region: &str,
) -> Result<Vec<FailoverEvent>, HealthError> {
    let pages = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(events_key(region)))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| dynamodb_error("reading the failover history", e))?;
    let mut events: Vec<FailoverEvent> = pages
        .iter()
        .filter_map(|item| json_field(item, "event", "a failover event").ok().flatten())
        .collect();
    events.sort_by_key(|e| e.decided);
    Ok(events)
}

/// Standby capacity through Application Auto Scaling: raising the variant's minimum
/// capacity makes SageMaker scale it out, and autoscaling keeps working above it.
pub struct AutoScalingStandby {
    pub clients: crate::aws::ClientFactory,
    /// The fleet's `variant_name`.
    pub variant: String,
}

impl StandbyScaler for AutoScalingStandby {
    async fn ensure_capacity(
        &self,
        region: &str,
        endpoint: &str,
        instances: u32,
    ) -> Result<(), HealthError> {
        use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
        let client =
            aws_sdk_applicationautoscaling::Client::new(&self.clients.config(region).await);
        let resource = crate::variant::scalable_target_resource_id(endpoint, &self.variant);
        let existing = client
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_ids(&resource)
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .send()
            .await
            .map_err(|e| {
                retryable(
                    "reading the standby's scalable target",
                    aws_sdk_applicationautoscaling::error::DisplayErrorContext(e),
                )
            })?;
        let current_max = existing
            .scalable_targets()
            .first()
            .map_or(0, |t| t.max_capacity());
        let wanted = i32::try_from(instances).unwrap_or(i32::MAX);
        client
            .register_scalable_target()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&resource)
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .min_capacity(wanted)
            .max_capacity(current_max.max(wanted))
            .send()
            .await
            .map_err(|e| {
                retryable(
                    "raising the standby's capacity",
                    aws_sdk_applicationautoscaling::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }
}

/// Probes a peer's front door over HTTPS with the timeouts Route 53's checkers use (a
/// connection within 4 s, the answer within 2 s more). The client is built on the first
/// probe, not at start-up: a cold start does no TLS work.
#[derive(Default)]
pub struct HttpFrontDoorProbe {
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl FrontDoorProbe for HttpFrontDoorProbe {
    async fn probe(&self, base_url: &str) -> ProbeAnswer {
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(4))
                .timeout(std::time::Duration::from_secs(6))
                .build()
                .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))
        });
        let client = match client {
            Ok(client) => client,
            Err(why) => return ProbeAnswer::NoAnswer(why.clone()),
        };
        let url = format!("{}/health", base_url.trim_end_matches('/'));
        match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                ProbeAnswer::Answered { status, body }
            }
            Err(error) => ProbeAnswer::NoAnswer(error_chain(&error)),
        }
    }
}

/// An error with its causes, for a probe's "why no answer".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A region's alarms through CloudWatch's `DescribeAlarms` in that region: a regional
/// data read, so it works while any other region (us-east-1 included) is down.
pub struct CloudWatchAlarms {
    pub client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchAlarms {
    /// Reads the alarms of `region`, in `region`.
    pub async fn new(clients: &crate::aws::ClientFactory, region: &str) -> Self {
        Self {
            client: aws_sdk_cloudwatch::Client::new(&clients.config(region).await),
        }
    }
}

impl AlarmStates for CloudWatchAlarms {
    async fn current(&self, alarms: &[String]) -> Result<Vec<AlarmReading>, HealthError> {
        use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
        if alarms.is_empty() {
            return Ok(Vec::new());
        }
        // At most 100 names per call; a region counts a handful.
        let mut readings = Vec::new();
        for names in alarms.chunks(100) {
            let reply = self
                .client
                .describe_alarms()
                .set_alarm_names(Some(names.to_vec()))
                .alarm_types(AlarmType::MetricAlarm)
                .send()
                .await
                .map_err(|e| {
                    retryable(
                        "reading the alarms' states",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(e),
                    )
                })?;
            for alarm in reply.metric_alarms() {
                let (Some(name), Some(state), Some(since)) = (
                    alarm.alarm_name(),
                    alarm.state_value(),
                    alarm.state_updated_timestamp(),
                ) else {
                    continue;
                };
                let Some(since) =
                    chrono::DateTime::from_timestamp_millis(since.to_millis().unwrap_or_default())
                else {
                    continue;
                };
                readings.push(AlarmReading {
                    alarm: name.to_owned(),
                    state: match state {
                        StateValue::Alarm => AlarmState::Alarm,
                        StateValue::Ok => AlarmState::Ok,
                        _ => AlarmState::InsufficientData,
                    },
                    since,
                });
            }
        }
        Ok(readings)
    }
}

/// The AWS-backed dependencies of [`crate::health::apply`] for one region: what the
/// failover and failback functions, and the CLI's drain/undrain, all use. Every client
/// is the region's own.
pub struct HealthDeps {
    pub store: DynamoHealthStore,
    pub scaler: AutoScalingStandby,
}

impl HealthDeps {
    /// Wires the adapters for `region` of `fleet`.
    pub async fn new(
        clients: &crate::aws::ClientFactory,
        fleet: &crate::fleet::Fleet,
        region: &str,
    ) -> Self {
        let local = aws_sdk_dynamodb::Client::new(&clients.config(region).await);
        Self {
            store: DynamoHealthStore {
                local,
                table: fleet.registry_table.clone(),
            },
            scaler: AutoScalingStandby {
                clients: clients.clone(),
                variant: fleet.variant_name.clone(),
            },
        }
    }
}
