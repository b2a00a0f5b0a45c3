//! The registry as the rollout side's handlers see it: small traits over the calls they
//! make, implemented by the DynamoDB [`Registry`] and, for handler tests, by
//! [`crate::registry_memory::MemoryRegistry`]. [`LockRegistry`] is what ending a rollout
//! needs ([`crate::rollout_end`]: the version, the fleet's lock, a drift repair);
//! [`UploadRegistry`] adds the upload's registration, [`RolloutRegistry`] the rollout
//! tasks' commit, operator control and per-region readiness.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::manifest::Manifest;
use crate::operator::OperatorControl;
use crate::registry::{
    ActivePointer, Readiness, RegisteredManifest, Registration, Registry, RegistryError,
    VersionRecord, VersionStatus,
};
use crate::repair::{Repair, RepairTask};
use crate::replica_record::RegionChecks;
use crate::rollout_lock::RolloutLock;

/// A version's record, the fleet's rollout lock and a region's drift repair.
pub trait LockRegistry: Send + Sync {
    /// The version's record, if registered.
    fn version(
        &self,
        model: &str,
        version: &str,
    ) -> impl Future<Output = Result<Option<VersionRecord>, RegistryError>> + Send;
    /// Applies `change` to a registered version atomically; the record as written.
    fn update_version(
        &self,
        model: &str,
        version: &str,
        change: impl Fn(&mut VersionRecord) + Send + Sync,
    ) -> impl Future<Output = Result<VersionRecord, RegistryError>> + Send;
    /// The fleet's rollout lock and queue (free when never written).
    fn lock(&self) -> impl Future<Output = Result<RolloutLock, RegistryError>> + Send;
    /// Records the holder's execution name; nothing if `model`/`version` does not hold it.
    fn record_lock_execution(
        &self,
        model: &str,
        version: &str,
        execution: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// Releases the lock held by `model`/`version`, handing it to the oldest queued
    /// version (returned); nothing if it does not hold it.
    fn release(
        &self,
        model: &str,
        version: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, RegistryError>> + Send;
    /// A region's latest drift repair.
    fn repair(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<Option<Repair>, RegistryError>> + Send;
    /// Applies `change` to the repair of `task`'s region and drift; `None` when the
    /// region's latest repair is another.
    fn update_repair(
        &self,
        task: &RepairTask,
        change: impl Fn(&mut Repair) + Send + Sync,
    ) -> impl Future<Output = Result<Option<Repair>, RegistryError>> + Send;
}

/// What the upload function adds: registering a version (immutable), recording a refused
/// manifest, and queuing for the lock.
pub trait UploadRegistry: LockRegistry {
    /// Registers a version once; the same manifest again is [`Registration::Same`], another
    /// one [`Registration::Conflict`] (nothing written).
    fn register(
        &self,
        manifest: &Manifest,
        registered: RegisteredManifest,
        digest: &str,
        status: VersionStatus,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Registration, RegistryError>> + Send;
    /// Records a refused manifest for the operator.
    fn record_rejection(
        &self,
        manifest: &Manifest,
        digest: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// Takes the fleet's lock for `model`/`version` or queues it (once); the lock as it
    /// now stands.
    fn acquire_or_queue(
        &self,
        model: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<RolloutLock, RegistryError>> + Send;
}

/// What the rollout tasks add: the active pointer, the operator's control, and the
/// per-region items of the readiness and deploy-wait protocols.
pub trait RolloutRegistry: LockRegistry {
    fn active(
        &self,
        model: &str,
    ) -> impl Future<Output = Result<Option<ActivePointer>, RegistryError>> + Send;
    /// Moves the active pointer to `version` only if it still names `expected_previous`;
    /// true if moved (or already there).
    fn commit(
        &self,
        model: &str,
        version: &str,
        digest: &str,
        expected_previous: Option<&str>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send;
    /// The operator's control of a version's rollout (the default when none was given).
    fn operator_control(
        &self,
        model: &str,
        version: &str,
    ) -> impl Future<Output = Result<OperatorControl, RegistryError>> + Send;
    /// A region's replica verdict, as the replica function recorded it.
    fn readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> impl Future<Output = Result<Option<Readiness>, RegistryError>> + Send;
    /// The replica checks recorded in `region` for the rollout (`model`, `version`), as
    /// the replica function recorded them.
    fn region_checks(
        &self,
        rollout: (&str, &str),
        region: &str,
    ) -> impl Future<Output = Result<RegionChecks, RegistryError>> + Send;
    /// Clears a region's verdict so that a fast copy is verified afresh.
    fn reset_readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// Stores the task token waiting for a region's replicas (each wait replaces the last).
    fn store_token(
        &self,
        model: &str,
        version: &str,
        region: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// Stores the task token waiting for `endpoint`'s update in `region`.
    fn store_deploy_wait(
        &self,
        endpoint: &str,
        region: &str,
        token: &str,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
}

impl LockRegistry for Registry {
    async fn version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<VersionRecord>, RegistryError> {
        Registry::version(self, model, version).await
    }

    async fn update_version(
        &self,
        model: &str,
        version: &str,
        change: impl Fn(&mut VersionRecord) + Send + Sync,
    ) -> Result<VersionRecord, RegistryError> {
        Registry::update_version(self, model, version, change).await
    }

    async fn lock(&self) -> Result<RolloutLock, RegistryError> {
        Ok(Registry::lock(self).await?.0)
    }

    async fn record_lock_execution(
        &self,
        model: &str,
        version: &str,
        execution: &str,
    ) -> Result<(), RegistryError> {
        Registry::record_lock_execution(self, model, version, execution).await
    }

    async fn release(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(String, String)>, RegistryError> {
        Registry::release(self, model, version).await
    }

    async fn repair(&self, region: &str) -> Result<Option<Repair>, RegistryError> {
        Registry::repair(self, region).await
    }

    async fn update_repair(
        &self,
        task: &RepairTask,
        change: impl Fn(&mut Repair) + Send + Sync,
    ) -> Result<Option<Repair>, RegistryError> {
        Registry::update_repair(self, task, change).await
    }
}

impl UploadRegistry for Registry {
    async fn register(
        &self,
        manifest: &Manifest,
        registered: RegisteredManifest,
        digest: &str,
        status: VersionStatus,
        now: DateTime<Utc>,
    ) -> Result<Registration, RegistryError> {
        Registry::register(self, manifest, registered, digest, status, now).await
    }

    async fn record_rejection(
        &self,
        manifest: &Manifest,
        digest: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RegistryError> {
        Registry::record_rejection(self, manifest, digest, reason, now).await
    }

    async fn acquire_or_queue(
        &self,
        model: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<RolloutLock, RegistryError> {
        Registry::acquire_or_queue(self, model, version, now).await
    }
}

impl RolloutRegistry for Registry {
    async fn active(&self, model: &str) -> Result<Option<ActivePointer>, RegistryError> {
        Registry::active(self, model).await
    }

    async fn commit(
        &self,
        model: &str,
        version: &str,
        digest: &str,
        expected_previous: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, RegistryError> {
        Registry::commit(self, model, version, digest, expected_previous, now).await
    }

    async fn operator_control(
        &self,
        model: &str,
        version: &str,
    ) -> Result<OperatorControl, RegistryError> {
        Registry::operator_control(self, model, version).await
    }

    async fn readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<Option<Readiness>, RegistryError> {
        Registry::readiness(self, model, version, region).await
    }

    async fn region_checks(
        &self,
        rollout: (&str, &str),
        region: &str,
    ) -> Result<RegionChecks, RegistryError> {
        Registry::region_checks(self, rollout, region).await
    }

    async fn reset_readiness(
        &self,
        model: &str,
        version: &str,
        region: &str,
    ) -> Result<(), RegistryError> {
        Registry::reset_readiness(self, model, version, region).await
    }

    async fn store_token(
        &self,
        model: &str,
        version: &str,
        region: &str,
        token: &str,
    ) -> Result<(), RegistryError> {
        Registry::store_token(self, model, version, region, token).await
    }

    async fn store_deploy_wait(
        &self,
        endpoint: &str,
        region: &str,
        token: &str,
    ) -> Result<(), RegistryError> {
        Registry::store_deploy_wait(self, endpoint, region, token).await
    }
}
