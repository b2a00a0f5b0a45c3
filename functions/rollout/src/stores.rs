//! What the rollout tasks keep their state in: the registry, through each region's table
//! replica (the readiness and deploy-wait protocols run in the region's own), and the
//! rollout state machine's executions. [`AwsStores`] is DynamoDB and Step Functions; the
//! handler tests use the in-memory registry and executions of `meridian`.

use std::future::Future;

use meridian::aws::ClientFactory;
use meridian::registry::Registry;
use meridian::registry_store::RolloutRegistry;
use meridian::rollout_executions::{RolloutExecutions, SfnExecutions};

/// The registry's replicas and the rollout executions.
pub trait RolloutStores: Send + Sync {
    type Registry: RolloutRegistry;
    type Executions: RolloutExecutions;
    /// The registry through `region`'s table replica.
    fn registry(&self, region: &str) -> impl Future<Output = Self::Registry> + Send;
    /// The rollout state machine's executions, in the control region.
    fn executions(&self) -> impl Future<Output = Self::Executions> + Send;
}

/// DynamoDB and Step Functions, with clients built on demand per region.
pub struct AwsStores {
    pub clients: ClientFactory,
    /// The fleet's registry table.
    pub table: String,
    /// The control region, where the state machine runs.
    pub primary_region: String,
    pub state_machine_arn: String,
}

impl RolloutStores for AwsStores {
    type Registry = Registry;
    type Executions = SfnExecutions;

    async fn registry(&self, region: &str) -> Registry {
        Registry {
            client: aws_sdk_dynamodb::Client::new(&self.clients.config(region).await),
            table: self.table.clone(),
        }
    }

    async fn executions(&self) -> SfnExecutions {
        SfnExecutions {
            sfn: aws_sdk_sfn::Client::new(&self.clients.config(&self.primary_region).await),
            state_machine_arn: self.state_machine_arn.clone(),
        }
    }
}
