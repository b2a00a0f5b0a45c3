//! Thin AWS adapters for [`crate::health`]: DynamoDB for records, ledger and event log,
//! Route 53 health checks for DNS, Application Auto Scaling for standby capacity,
//! CloudWatch for the alarms' current states.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use crate::failover::{AlarmState, RegionHealth};
use crate::health::{
    AlarmReading, AlarmStates, DnsSwitch, FailoverEvent, HealthError, HealthStore, StandbyScaler,
    Versioned, Write,
};
use crate::names;

/// Partition key of a region's health record.
pub fn health_key(region: &str) -> String {
    format!("health#{region}")
}

/// Partition key of a region's failover event log.
pub fn events_key(region: &str) -> String {
    format!("events#{region}")
}

const LEDGER_PK: &str = "failover";
const LEDGER_SK: &str = "out-of-service";
const HEALTH_SK: &str = "state";

fn retryable(context: &str, error: impl std::fmt::Display) -> HealthError {
    HealthError::Retryable(format!("{context}: {error}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// Health records in the registry table. Each region's record is read and written in
/// that region's replica (its only writer); the ledger in the primary region's replica.
pub struct DynamoHealthStore {
    /// The table replica of the region this code runs for.
    pub local: aws_sdk_dynamodb::Client,
    /// The table replica of the primary region (the ledger's home).
    pub primary: aws_sdk_dynamodb::Client,
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
            .map_err(|e| {
                retryable(
                    "reading the health record",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?
            .item;
        let Some(item) = item else { return Ok(None) };
        let record = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| {
                HealthError::Invalid(format!("health record of {region} has no record attribute"))
            })?;
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let value = serde_json::from_str(record)
            .map_err(|e| HealthError::Invalid(format!("health record of {region}: {e}")))?;
        Ok(Some(Versioned { value, version }))
    }

    async fn save(
        &self,
        health: &RegionHealth,
        expected: Option<u64>,
    ) -> Result<Write, HealthError> {
        let record =
            serde_json::to_string(health).map_err(|e| HealthError::Invalid(e.to_string()))?;
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
            .item("record", s(record))
            .item("state", s(state))
            .item("updated", s(Utc::now().to_rfc3339()))
            .item(
                "version",
                AttributeValue::N(expected.map_or(1, |v| v + 1).to_string()),
            );
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(version) => put
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(Write::Done),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(Write::Conflict)
            }
            Err(error) => Err(retryable(
                "writing the health record",
                aws_sdk_dynamodb::error::DisplayErrorContext(error),
            )),
        }
    }

    async fn out_of_service(&self) -> Result<Vec<String>, HealthError> {
        let item = self
            .primary
            .get_item()
            .table_name(&self.table)
            .key("pk", s(LEDGER_PK))
            .key("sk", s(LEDGER_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                retryable(
                    "reading the out-of-service ledger",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?
            .item;
        let mut regions: Vec<String> = item
            .and_then(|i| i.get("regions").and_then(|v| v.as_ss().ok()).cloned())
            .unwrap_or_default();
        regions.sort();
        Ok(regions)
    }

    async fn claim_out_of_service(&self, region: &str, limit: usize) -> Result<bool, HealthError> {
        let result = self
            .primary
            .update_item()
            .table_name(&self.table)
            .key("pk", s(LEDGER_PK))
            .key("sk", s(LEDGER_SK))
            .update_expression("ADD regions :region")
            .condition_expression("attribute_not_exists(regions) OR contains(regions, :name) OR size(regions) < :limit")
            .expression_attribute_values(":region", AttributeValue::Ss(vec![region.to_owned()]))
            .expression_attribute_values(":name", s(region))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(limit > 0),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(retryable(
                "claiming a place in the out-of-service ledger",
                aws_sdk_dynamodb::error::DisplayErrorContext(error),
            )),
        }
    }

    async fn release_out_of_service(&self, region: &str) -> Result<(), HealthError> {
        self.primary
            .update_item()
            .table_name(&self.table)
            .key("pk", s(LEDGER_PK))
            .key("sk", s(LEDGER_SK))
            .update_expression("DELETE regions :region")
            .expression_attribute_values(":region", AttributeValue::Ss(vec![region.to_owned()]))
            .send()
            .await
            .map_err(|e| {
                retryable(
                    "releasing the out-of-service ledger",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }

    async fn record(&self, event: &FailoverEvent) -> Result<(), HealthError> {
        let body = serde_json::to_string(event).map_err(|e| HealthError::Invalid(e.to_string()))?;
        let result = self
            .local
            .put_item()
            .table_name(&self.table)
            .item("pk", s(events_key(&event.region)))
            .item("sk", s(format!("event#{}", event.id)))
            .item("event", s(body))
            .item("decided", s(event.decided.to_rfc3339()))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(retryable(
                "recording the failover event",
                aws_sdk_dynamodb::error::DisplayErrorContext(error),
            )),
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
        .map_err(|e| {
            retryable(
                "reading the failover history",
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )
        })?;
    let mut events: Vec<FailoverEvent> = pages
        .iter()
        .filter_map(|item| item.get("event")?.as_s().ok())
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect();
    events.sort_by_key(|e| e.decided);
    Ok(events)
}

/// DNS via Route 53 health checks: `Inverted=true` makes a healthy endpoint look
/// unhealthy, so latency/failover routing sends its traffic elsewhere.
pub struct Route53Switch {
    pub client: aws_sdk_route53::Client,
    pub fleet_name: String,
    ids: Mutex<HashMap<String, String>>,
}

impl Route53Switch {
    pub fn new(client: aws_sdk_route53::Client, fleet_name: impl Into<String>) -> Self {
        Self {
            client,
            fleet_name: fleet_name.into(),
            ids: Mutex::new(HashMap::new()),
        }
    }

    /// The region's health check id, found by its caller reference.
    pub async fn health_check_id(&self, region: &str) -> Result<String, HealthError> {
        if let Some(id) = self
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(region)
        {
            return Ok(id.clone());
        }
        let reference = names::health_check_reference(&self.fleet_name, region);
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_health_checks()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| {
                    retryable(
                        "listing health checks",
                        aws_sdk_route53::error::DisplayErrorContext(e),
                    )
                })?;
            if let Some(check) = page
                .health_checks()
                .iter()
                .find(|c| c.caller_reference() == reference)
            {
                let id = check.id().to_owned();
                self.ids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(region.to_owned(), id.clone());
                return Ok(id);
            }
            if !page.is_truncated() {
                return Err(HealthError::Invalid(format!(
                    "no health check with caller reference {reference}"
                )));
            }
            marker = page.next_marker().map(str::to_owned);
        }
    }

    /// Whether the region's health check is inverted (region drained from DNS).
    pub async fn is_inverted(&self, region: &str) -> Result<bool, HealthError> {
        let id = self.health_check_id(region).await?;
        let check = self
            .client
            .get_health_check()
            .health_check_id(id)
            .send()
            .await
            .map_err(|e| {
                retryable(
                    "reading the health check",
                    aws_sdk_route53::error::DisplayErrorContext(e),
                )
            })?;
        Ok(check
            .health_check()
            .and_then(|c| c.health_check_config())
            .and_then(|c| c.inverted())
            .unwrap_or(false))
    }
}

impl DnsSwitch for Route53Switch {
    async fn set_in_service(&self, region: &str, in_service: bool) -> Result<(), HealthError> {
        let id = self.health_check_id(region).await?;
        self.client
            .update_health_check()
            .health_check_id(id)
            .inverted(!in_service)
            .send()
            .await
            .map_err(|e| {
                retryable(
                    "updating the health check",
                    aws_sdk_route53::error::DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }
}

/// Standby capacity through Application Auto Scaling: raising the variant's minimum
/// capacity makes SageMaker scale it out, and autoscaling keeps working above it.
pub struct AutoScalingStandby {
    pub clients: crate::aws::ClientFactory,
}

/// The Application Auto Scaling resource id of an endpoint's variant.
pub fn variant_resource_id(endpoint: &str) -> String {
    format!("endpoint/{endpoint}/variant/{}", names::VARIANT_NAME)
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
        let resource = variant_resource_id(endpoint);
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
/// failover and failback functions, and the CLI's drain/undrain, all use.
pub struct HealthDeps {
    pub store: DynamoHealthStore,
    pub dns: Route53Switch,
    pub scaler: AutoScalingStandby,
}

impl HealthDeps {
    /// Wires the adapters for `region` of `fleet`. Route 53's API lives in us-east-1.
    pub async fn new(
        clients: &crate::aws::ClientFactory,
        fleet: &crate::fleet::Fleet,
        region: &str,
    ) -> Self {
        let local = aws_sdk_dynamodb::Client::new(&clients.config(region).await);
        let primary = aws_sdk_dynamodb::Client::new(&clients.config(&fleet.primary_region).await);
        let route53 = aws_sdk_route53::Client::new(&clients.config("us-east-1").await);
        Self {
            store: DynamoHealthStore {
                local,
                primary,
                table: fleet.registry_table.clone(),
            },
            dns: Route53Switch::new(route53, fleet.name.clone()),
            scaler: AutoScalingStandby {
                clients: clients.clone(),
            },
        }
    }
}
