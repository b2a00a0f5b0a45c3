//! The repair pass's AWS adapter, in the primary region: the registry and the drill lock
//! in its own table replica (`Scan`, `GetItem`, `Query`, `PutItem`), and `StartExecution`
//! of the rollout state machine, which lives in this region.

use meridian::aws::ClientFactory;
use meridian::drill_store::DrillStore;
use meridian::fleet::Fleet;
use meridian::health::HealthError;
use meridian::registry::Registry;
use meridian::repair::{ActiveVersion, Repair};
use meridian::rollout::RolloutError;
use meridian::rollout_lock::RolloutLock;

use super::{ControlFacts, RepairControl};

/// This region's registry and drill items, and Step Functions.
pub struct AwsRepairControl {
    pub registry: Registry,
    pub drills: DrillStore,
    pub sfn: aws_sdk_sfn::Client,
    /// The rollout state machine (`STATE_MACHINE_ARN`); `None` where the function is not
    /// given it, and then a repair is reported as impossible, not attempted.
    pub state_machine_arn: Option<String>,
}

impl AwsRepairControl {
    pub async fn new(
        clients: &ClientFactory,
        fleet: &Fleet,
        region: &str,
        state_machine_arn: Option<String>,
    ) -> Self {
        let config = clients.config(region).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        Self {
            registry: Registry {
                client: dynamodb.clone(),
                table: fleet.registry_table.clone(),
            },
            drills: DrillStore {
                client: dynamodb,
                table: fleet.registry_table.clone(),
            },
            sfn: aws_sdk_sfn::Client::new(&config),
            state_machine_arn,
        }
    }
}

fn rollout_error(error: RolloutError) -> HealthError {
    match error {
        RolloutError::Retryable(m) => HealthError::Retryable(m),
        other => HealthError::Invalid(other.to_string()),
    }
}

impl RepairControl for AwsRepairControl {
    async fn facts(&self) -> Result<ControlFacts, HealthError> {
        let view = self.registry.heads().await?;
        let active = view.latest_active().map(|(model, pointer)| ActiveVersion {
            model: model.to_owned(),
            version: pointer.version.clone(),
            digest: pointer.digest.clone(),
        });
        let repairs = self
            .registry
            .repairs()
            .await?
            .into_iter()
            .map(|r| (r.region.clone(), r))
            .collect();
        let drill = self.drills.lock_holder().await?;
        Ok(ControlFacts {
            active,
            lock: view.lock,
            repairs,
            drill,
        })
    }

    async fn acquire(&self, repair: &Repair) -> Result<RolloutLock, HealthError> {
        self.registry
            .acquire_for_repair(repair, chrono::Utc::now())
            .await
            .map_err(HealthError::from)
    }

    async fn begin(&self, repair: &Repair) -> Result<(), HealthError> {
        self.registry
            .begin_repair(repair)
            .await
            .map(drop)
            .map_err(HealthError::from)
    }

    async fn start(&self, repair: &Repair) -> Result<(), HealthError> {
        let arn = self.state_machine_arn.as_deref().ok_or_else(|| {
            HealthError::Invalid("STATE_MACHINE_ARN is not set: no repair can start".into())
        })?;
        meridian::executions::start_repair(&self.sfn, arn, repair)
            .await
            .map_err(rollout_error)
    }
}
