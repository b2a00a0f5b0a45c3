//! SageMaker's rule for a variant that is an Application Auto Scaling target: an
//! `UpdateEndpoint` that would change its instance type (or remove it) fails (SageMaker
//! developer guide, "Update endpoints that use auto scaling"; changing only its model, or
//! its instance count, is allowed). AWS's documented way through is to deregister the
//! variant as a scalable target (which deletes its scaling policies and scheduled
//! actions), update the endpoint, then register it again.
//!
//! Meridian does exactly that, split where it already has the parts: the rollout's
//! endpoint updates (the deploy, and the rollback to the previous configuration) call
//! [`clear_for_update`] just before `UpdateEndpoint`, and the failback function's capacity
//! reconcile registers the target, its policy and its windows again from the fleet file on
//! its next one-minute tick (as it does for any target that went missing). Refusing the
//! version instead would make an instance-type change in the fleet file impossible
//! without hand work in every region, for a rule AWS documents how to satisfy.

use std::future::Future;

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use meridian::rollout::{aws_error, RolloutError};
use meridian::variant::scalable_target_resource_id;

/// What [`clear_for_update`] reads and changes in one region.
pub trait UpdateGuard {
    /// The instance type of `variant` in endpoint configuration `config`; `None` when the
    /// configuration has no such variant.
    fn instance_type(
        &self,
        config: &str,
        variant: &str,
    ) -> impl Future<Output = Result<Option<String>, RolloutError>> + Send;
    /// Whether the endpoint's variant is registered as a scalable target.
    fn target_registered(
        &self,
        endpoint: &str,
        variant: &str,
    ) -> impl Future<Output = Result<bool, RolloutError>> + Send;
    /// `DeregisterScalableTarget` of the endpoint's variant; a target already gone is fine.
    fn deregister_target(
        &self,
        endpoint: &str,
        variant: &str,
    ) -> impl Future<Output = Result<(), RolloutError>> + Send;
}

/// Whether SageMaker refuses an update from a variant of `current` instance type to one of
/// `next` while the variant is a scalable target: the type changes, or the variant goes.
pub fn update_needs_no_target(current: Option<&str>, next: Option<&str>) -> bool {
    match (current, next) {
        (Some(current), Some(next)) => current != next,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// What [`clear_for_update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// The update keeps the variant's instance type: SageMaker allows it as it is.
    NotNeeded,
    /// The instance type changes, and the variant was no scalable target.
    NoTarget,
    /// The instance type changes: the scalable target was deregistered (the capacity
    /// reconcile registers it again).
    Deregistered { from: String, to: String },
}

/// Makes the update of `endpoint` from configuration `from` to `to` one SageMaker accepts
/// for an autoscaled variant: deregisters the variant's scalable target when the update
/// changes its instance type. Idempotent (a retried task finds the target gone).
pub async fn clear_for_update<G: UpdateGuard>(
    guard: &G,
    endpoint: &str,
    variant: &str,
    from: &str,
    to: &str,
) -> Result<Cleared, RolloutError> {
    if from.is_empty() || from == to {
        return Ok(Cleared::NotNeeded);
    }
    let current = guard.instance_type(from, variant).await?;
    let next = guard.instance_type(to, variant).await?;
    if !update_needs_no_target(current.as_deref(), next.as_deref()) {
        return Ok(Cleared::NotNeeded);
    }
    if !guard.target_registered(endpoint, variant).await? {
        return Ok(Cleared::NoTarget);
    }
    guard.deregister_target(endpoint, variant).await?;
    let (from, to) = (
        current.unwrap_or_default(),
        next.unwrap_or_else(|| "no such variant".into()),
    );
    tracing::info!(%endpoint, %variant, %from, %to, "instance type changes: scalable target deregistered for the update; the capacity reconcile registers it again");
    Ok(Cleared::Deregistered { from, to })
}

/// What an `UpdateEndpoint` refusal means after [`clear_for_update`] found the instance type
/// changing: if the variant is a scalable target again, the capacity reconcile registered it
/// between the deregistration and the update, and a retry (which deregisters it again) can
/// succeed; any other refusal stands.
pub async fn after_refusal<G: UpdateGuard>(
    guard: &G,
    endpoint: &str,
    variant: &str,
    cleared: &Cleared,
    error: RolloutError,
) -> RolloutError {
    if !matches!(error, RolloutError::Rejected(_)) || *cleared == Cleared::NotNeeded {
        return error;
    }
    match guard.target_registered(endpoint, variant).await {
        Ok(true) => RolloutError::Retryable(format!(
            "{error} (the variant's scalable target was registered again before the update; \
             deregistering it again)"
        )),
        _ => error,
    }
}

/// [`UpdateGuard`] on SageMaker and Application Auto Scaling in one region.
pub struct AwsUpdateGuard {
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub autoscaling: aws_sdk_applicationautoscaling::Client,
}

impl AwsUpdateGuard {
    /// The guard for `region`, through the shared client builder.
    pub async fn new(clients: &meridian::aws::ClientFactory, region: &str) -> Self {
        let config = clients.config(region).await;
        Self {
            sagemaker: aws_sdk_sagemaker::Client::new(&config),
            autoscaling: aws_sdk_applicationautoscaling::Client::new(&config),
        }
    }
}

impl UpdateGuard for AwsUpdateGuard {
    async fn instance_type(
        &self,
        config: &str,
        variant: &str,
    ) -> Result<Option<String>, RolloutError> {
        let described = self
            .sagemaker
            .describe_endpoint_config()
            .endpoint_config_name(config)
            .send()
            .await
            .map_err(|e| aws_error("reading an endpoint configuration", e))?;
        Ok(described
            .production_variants()
            .iter()
            .find(|v| v.variant_name() == Some(variant))
            .and_then(|v| v.instance_type())
            .map(|t| t.as_str().to_owned()))
    }

    async fn target_registered(&self, endpoint: &str, variant: &str) -> Result<bool, RolloutError> {
        let targets = self
            .autoscaling
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_ids(scalable_target_resource_id(endpoint, variant))
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .send()
            .await
            .map_err(|e| aws_error("reading the variant's scalable target", e))?;
        Ok(!targets.scalable_targets().is_empty())
    }

    async fn deregister_target(&self, endpoint: &str, variant: &str) -> Result<(), RolloutError> {
        let deregistered = self
            .autoscaling
            .deregister_scalable_target()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(scalable_target_resource_id(endpoint, variant))
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .send()
            .await;
        match deregistered {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_object_not_found_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(aws_error(
                "deregistering the variant's scalable target",
                error,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use super::*;

    /// Endpoint configurations and scalable targets in memory, with every deregistration
    /// recorded.
    #[derive(Default)]
    struct MemoryGuard {
        configs: BTreeMap<(String, String), String>,
        targets: Mutex<BTreeSet<String>>,
        deregistered: Mutex<Vec<String>>,
        fail_reads: bool,
    }

    impl MemoryGuard {
        fn with(configs: &[(&str, &str, &str)], targets: &[&str]) -> Self {
            Self {
                configs: configs
                    .iter()
                    .map(|(c, v, t)| (((*c).to_owned(), (*v).to_owned()), (*t).to_owned()))
                    .collect(),
                targets: Mutex::new(targets.iter().map(|t| (*t).to_owned()).collect()),
                ..Self::default()
            }
        }
    }

    impl UpdateGuard for MemoryGuard {
        async fn instance_type(
            &self,
            config: &str,
            variant: &str,
        ) -> Result<Option<String>, RolloutError> {
            if self.fail_reads {
                return Err(RolloutError::Retryable("throttled".into()));
            }
            Ok(self
                .configs
                .get(&(config.to_owned(), variant.to_owned()))
                .cloned())
        }

        async fn target_registered(
            &self,
            endpoint: &str,
            variant: &str,
        ) -> Result<bool, RolloutError> {
            let id = scalable_target_resource_id(endpoint, variant);
            Ok(self.targets.lock().expect("lock").contains(&id))
        }

        async fn deregister_target(
            &self,
            endpoint: &str,
            variant: &str,
        ) -> Result<(), RolloutError> {
            let id = scalable_target_resource_id(endpoint, variant);
            self.targets.lock().expect("lock").remove(&id);
            self.deregistered.lock().expect("lock").push(id);
            Ok(())
        }
    }

    const TARGET: &str = "endpoint/llm/variant/primary";

    #[test]
    fn only_a_changed_or_removed_instance_type_needs_the_target_gone() {
        assert!(!update_needs_no_target(
            Some("ml.g5.2xlarge"),
            Some("ml.g5.2xlarge")
        ));
        assert!(update_needs_no_target(
            Some("ml.g5.2xlarge"),
            Some("ml.g5.4xlarge")
        ));
        assert!(update_needs_no_target(Some("ml.g5.2xlarge"), None));
        assert!(!update_needs_no_target(None, Some("ml.g5.4xlarge")));
        assert!(!update_needs_no_target(None, None));
    }

    #[tokio::test]
    async fn an_instance_type_change_deregisters_the_target_once() {
        let guard = MemoryGuard::with(
            &[
                ("v1", "primary", "ml.g5.2xlarge"),
                ("v2", "primary", "ml.g5.4xlarge"),
            ],
            &[TARGET],
        );
        let cleared = clear_for_update(&guard, "llm", "primary", "v1", "v2").await;
        assert_eq!(
            cleared.expect("cleared"),
            Cleared::Deregistered {
                from: "ml.g5.2xlarge".into(),
                to: "ml.g5.4xlarge".into()
            }
        );
        // A retried deploy finds the target gone and deregisters nothing more.
        let again = clear_for_update(&guard, "llm", "primary", "v1", "v2").await;
        assert_eq!(again.expect("cleared"), Cleared::NoTarget);
        assert_eq!(*guard.deregistered.lock().expect("lock"), [TARGET]);
    }

    #[tokio::test]
    async fn a_model_only_update_keeps_the_target() {
        let guard = MemoryGuard::with(
            &[
                ("v1", "primary", "ml.g5.2xlarge"),
                ("v2", "primary", "ml.g5.2xlarge"),
            ],
            &[TARGET],
        );
        for (from, to) in [("v1", "v2"), ("v2", "v2"), ("", "v2")] {
            let cleared = clear_for_update(&guard, "llm", "primary", from, to).await;
            assert_eq!(
                cleared.expect("allowed"),
                Cleared::NotNeeded,
                "{from} -> {to}"
            );
        }
        assert!(guard.deregistered.lock().expect("lock").is_empty());
        assert!(guard.targets.lock().expect("lock").contains(TARGET));
    }

    #[tokio::test]
    async fn a_rollback_to_the_old_type_clears_a_target_registered_meanwhile() {
        // The reconcile registered the target again while the new type served; rolling
        // back to the old type is an instance-type change too.
        let guard = MemoryGuard::with(
            &[
                ("v1", "primary", "ml.g5.2xlarge"),
                ("v2", "primary", "ml.g5.4xlarge"),
            ],
            &[TARGET],
        );
        let cleared = clear_for_update(&guard, "llm", "primary", "v2", "v1").await;
        assert!(
            matches!(cleared, Ok(Cleared::Deregistered { .. })),
            "{cleared:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_retried_only_when_the_target_came_back() {
        let guard = MemoryGuard::with(&[], &[TARGET]);
        let changed = Cleared::NoTarget;
        let refused = || RolloutError::Rejected("ValidationException: autoscaled".into());
        let error = after_refusal(&guard, "llm", "primary", &changed, refused()).await;
        assert!(matches!(error, RolloutError::Retryable(_)), "{error:?}");
        let same_type = after_refusal(&guard, "llm", "primary", &Cleared::NotNeeded, refused());
        assert!(matches!(same_type.await, RolloutError::Rejected(_)));
        let gone = MemoryGuard::with(&[], &[]);
        let error = after_refusal(&gone, "llm", "primary", &changed, refused()).await;
        assert!(matches!(error, RolloutError::Rejected(_)), "{error:?}");
        let throttled = RolloutError::Retryable("throttled".into());
        let error = after_refusal(&guard, "llm", "primary", &changed, throttled).await;
        assert_eq!(error.to_string(), "throttled");
    }

    #[tokio::test]
    async fn a_variant_without_a_target_is_updated_as_it_is() {
        let guard = MemoryGuard::with(
            &[
                ("v1", "primary", "ml.g5.2xlarge"),
                ("v2", "primary", "ml.g5.4xlarge"),
            ],
            &[],
        );
        let cleared = clear_for_update(&guard, "llm", "primary", "v1", "v2").await;
        assert_eq!(cleared.expect("cleared"), Cleared::NoTarget);
        assert!(guard.deregistered.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_changes_nothing() {
        let guard = MemoryGuard {
            fail_reads: true,
            ..MemoryGuard::with(&[], &[TARGET])
        };
        let cleared = clear_for_update(&guard, "llm", "primary", "v1", "v2").await;
        assert!(
            matches!(cleared, Err(RolloutError::Retryable(_))),
            "{cleared:?}"
        );
        assert!(guard.targets.lock().expect("lock").contains(TARGET));
    }
}
