//! The drill's AWS adapters: the registry's rollout locks and the regions' records from
//! the primary region's table replica, and each region's alarms from CloudWatch in that
//! region.

use meridian::adapters::{CloudWatchAlarms, DynamoHealthStore};
use meridian::aws::ClientFactory;
use meridian::drill::{DrillRecord, StepCounts};
use meridian::drill_store::DrillStore;
use meridian::failover::AlarmState;
use meridian::fleet::Fleet;
use meridian::health::{AlarmStates, HealthStore};
use meridian::registry::Registry;

use meridian::table::TableError;
use meridian::traffic::DrillShift;

use crate::{Drill, DrillError, DrillItems, FleetReads};

/// The AWS-backed drill function.
pub type DrillDeps = Drill<DrillStore, AwsFleetReads>;

impl DrillItems for DrillStore {
    async fn record(
        &self,
        drill_id: &str,
    ) -> Result<Option<(DrillRecord, Option<String>)>, TableError> {
        DrillStore::record(self, drill_id).await
    }

    async fn save_record(&self, record: &DrillRecord) -> Result<(), TableError> {
        DrillStore::save_record(self, record).await
    }

    async fn lock_holder(&self) -> Result<Option<String>, TableError> {
        DrillStore::lock_holder(self).await
    }

    async fn take_lock(&self, drill_id: &str) -> Result<Result<(), String>, TableError> {
        DrillStore::take_lock(self, drill_id).await
    }

    async fn release_lock(&self, drill_id: &str) -> Result<(), TableError> {
        DrillStore::release_lock(self, drill_id).await
    }

    async fn put_shift(&self, shift: &DrillShift) -> Result<(), TableError> {
        DrillStore::put_shift(self, shift).await
    }

    async fn clear_shift(&self, region: &str, drill_id: &str) -> Result<(), TableError> {
        DrillStore::clear_shift(self, region, drill_id).await
    }

    async fn step_counts(&self, drill_id: &str, step: usize) -> Result<StepCounts, TableError> {
        DrillStore::step_counts(self, drill_id, step).await
    }
}

impl DrillDeps {
    /// The drill tasks with the primary region's table replica and each region's
    /// CloudWatch.
    pub async fn new(clients: &ClientFactory, fleet: Fleet) -> Self {
        let client = aws_sdk_dynamodb::Client::new(&clients.config(&fleet.primary_region).await);
        let mut alarms = Vec::new();
        for region in &fleet.regions {
            alarms.push((
                region.name.clone(),
                region.alarms.clone(),
                CloudWatchAlarms::new(clients, &region.name).await,
            ));
        }
        Drill {
            store: DrillStore {
                client: client.clone(),
                table: fleet.registry_table.clone(),
            },
            reads: AwsFleetReads {
                registry: Registry {
                    client: client.clone(),
                    table: fleet.registry_table.clone(),
                },
                health: DynamoHealthStore {
                    local: client,
                    table: fleet.registry_table.clone(),
                },
                regions: fleet
                    .region_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                alarms,
            },
            fleet,
        }
    }
}

/// The fleet-wide reads, through AWS.
pub struct AwsFleetReads {
    registry: Registry,
    health: DynamoHealthStore,
    regions: Vec<String>,
    /// Each region's counted alarms and its CloudWatch.
    alarms: Vec<(String, Vec<String>, CloudWatchAlarms)>,
}

impl FleetReads for AwsFleetReads {
    async fn rollout_holder(&self) -> Result<Option<String>, DrillError> {
        let (lock, _) = self
            .registry
            .lock()
            .await
            .map_err(|e| DrillError::Retryable(e.to_string()))?;
        Ok(lock
            .holder
            .map(|holder| format!("{}/{}", holder.model, holder.version)))
    }

    async fn drained(&self) -> Result<Vec<(String, String)>, DrillError> {
        let mut drained = Vec::new();
        for region in &self.regions {
            let record = self
                .health
                .load(region)
                .await
                .map_err(|e| DrillError::Retryable(e.to_string()))?;
            if let Some(record) = record.map(|r| r.value).filter(|r| !r.state.in_service()) {
                drained.push((
                    region.clone(),
                    format!("{:?}: {}", record.state, record.reason),
                ));
            }
        }
        Ok(drained)
    }

    async fn alarms_firing(&self) -> Result<Vec<String>, DrillError> {
        let mut firing = Vec::new();
        for (region, names, cloudwatch) in &self.alarms {
            let readings = cloudwatch
                .current(names)
                .await
                .map_err(|e| DrillError::Retryable(format!("{region}: {e}")))?;
            firing.extend(
                readings
                    .into_iter()
                    .filter(|r| r.state == AlarmState::Alarm)
                    .map(|r| format!("{region}/{}", r.alarm)),
            );
        }
        Ok(firing)
    }
}
