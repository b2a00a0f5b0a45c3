//! [`AutoScaling`] on Application Auto Scaling in one region: the endpoint variant's
//! scalable target, its scaling policies and its scheduled actions. A regional API, called
//! in the region the code runs for only.

use aws_sdk_applicationautoscaling::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_applicationautoscaling::types::{
    MetricType, PolicyType, PredefinedMetricSpecification, ScalableDimension, ScalableTargetAction,
    ServiceNamespace, SuspendedState, TargetTrackingScalingPolicyConfiguration,
};
use aws_sdk_applicationautoscaling::Client;

use crate::health::HealthError;
use crate::scaling::{
    AutoScaling, Policy, ScalingChange, ScalingState, ScheduledAction, Suspended, Target,
};
use crate::variant::scalable_target_resource_id;

const DIMENSION: ScalableDimension = ScalableDimension::SageMakerVariantDesiredInstanceCount;

/// Application Auto Scaling of one region, for endpoint variants named `variant` (the
/// fleet's `variant_name`).
pub struct AasAutoScaling {
    pub client: Client,
    pub variant: String,
}

impl AasAutoScaling {
    /// AAS in `region`, through the shared client builder.
    pub async fn new(clients: &crate::aws::ClientFactory, region: &str, variant: &str) -> Self {
        Self {
            client: Client::new(&clients.config(region).await),
            variant: variant.to_owned(),
        }
    }
}

/// A validation error can never succeed as sent; anything else (throttling, a
/// concurrent update, an internal error, the network) may on a retry.
fn error<
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
>(
    context: &str,
    e: aws_sdk_applicationautoscaling::error::SdkError<E, R>,
) -> HealthError {
    let invalid = e
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code == "ValidationException");
    let message = format!("{context}: {}", DisplayErrorContext(e));
    if invalid {
        HealthError::Invalid(message)
    } else {
        HealthError::Retryable(message)
    }
}

fn is_not_found<E: ProvideErrorMetadata, R>(
    e: &aws_sdk_applicationautoscaling::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| code == "ObjectNotFoundException")
}

fn count(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn uncount(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

impl AutoScaling for AasAutoScaling {
    async fn read(&self, endpoint: &str) -> Result<ScalingState, HealthError> {
        let resource = scalable_target_resource_id(endpoint, &self.variant);
        let targets = self
            .client
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_ids(&resource)
            .scalable_dimension(DIMENSION)
            .send()
            .await
            .map_err(|e| error("reading the scalable target", e))?;
        let target = targets.scalable_targets().first().map(|t| {
            let s = t.suspended_state();
            Target {
                min: uncount(t.min_capacity()),
                max: uncount(t.max_capacity()),
                suspended: Suspended {
                    dynamic_in: s.and_then(|s| s.dynamic_scaling_in_suspended()) == Some(true),
                    dynamic_out: s.and_then(|s| s.dynamic_scaling_out_suspended()) == Some(true),
                    scheduled: s.and_then(|s| s.scheduled_scaling_suspended()) == Some(true),
                },
            }
        });

        let policies = self
            .client
            .describe_scaling_policies()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&resource)
            .scalable_dimension(DIMENSION)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| error("reading the scaling policies", e))?
            .iter()
            .map(|p| {
                let tracking = p.target_tracking_scaling_policy_configuration();
                Policy {
                    name: p.policy_name().to_owned(),
                    policy_type: p.policy_type().as_str().to_owned(),
                    metric: tracking
                        .and_then(|t| t.predefined_metric_specification())
                        .map(|m| m.predefined_metric_type().as_str().to_owned())
                        .unwrap_or_default(),
                    target_value: tracking.map_or(0.0, |t| t.target_value()),
                    scale_in_cooldown: tracking.and_then(|t| t.scale_in_cooldown()),
                    scale_out_cooldown: tracking.and_then(|t| t.scale_out_cooldown()),
                }
            })
            .collect();

        let actions = self
            .client
            .describe_scheduled_actions()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&resource)
            .scalable_dimension(DIMENSION)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| error("reading the scheduled actions", e))?
            .iter()
            .map(|a| {
                let action = a.scalable_target_action();
                ScheduledAction {
                    name: a.scheduled_action_name().to_owned(),
                    schedule: a.schedule().to_owned(),
                    timezone: a.timezone().map(str::to_owned),
                    min: action.and_then(|t| t.min_capacity()).map(uncount),
                    max: action.and_then(|t| t.max_capacity()).map(uncount),
                }
            })
            .collect();
        Ok(ScalingState {
            target,
            policies,
            actions,
        })
    }

    async fn write(&self, endpoint: &str, change: &ScalingChange) -> Result<(), HealthError> {
        let resource = scalable_target_resource_id(endpoint, &self.variant);
        match change {
            ScalingChange::RegisterTarget(target) => {
                self.client
                    .register_scalable_target()
                    .service_namespace(ServiceNamespace::Sagemaker)
                    .resource_id(&resource)
                    .scalable_dimension(DIMENSION)
                    .min_capacity(count(target.min))
                    .max_capacity(count(target.max))
                    .suspended_state(
                        SuspendedState::builder()
                            .dynamic_scaling_in_suspended(target.suspended.dynamic_in)
                            .dynamic_scaling_out_suspended(target.suspended.dynamic_out)
                            .scheduled_scaling_suspended(target.suspended.scheduled)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| error("registering the scalable target", e))?;
            }
            ScalingChange::PutPolicy(policy) => {
                let metric = PredefinedMetricSpecification::builder()
                    .predefined_metric_type(MetricType::from(policy.metric.as_str()))
                    .build()
                    .map_err(|e| HealthError::Invalid(format!("the policy's metric: {e}")))?;
                let tracking = TargetTrackingScalingPolicyConfiguration::builder()
                    .target_value(policy.target_value)
                    .predefined_metric_specification(metric)
                    .set_scale_in_cooldown(policy.scale_in_cooldown)
                    .set_scale_out_cooldown(policy.scale_out_cooldown)
                    .build()
                    .map_err(|e| HealthError::Invalid(format!("the policy: {e}")))?;
                self.client
                    .put_scaling_policy()
                    .policy_name(&policy.name)
                    .service_namespace(ServiceNamespace::Sagemaker)
                    .resource_id(&resource)
                    .scalable_dimension(DIMENSION)
                    .policy_type(PolicyType::TargetTrackingScaling)
                    .target_tracking_scaling_policy_configuration(tracking)
                    .send()
                    .await
                    .map_err(|e| error("putting the scaling policy", e))?;
            }
            ScalingChange::DeletePolicy { name } => {
                let deleted = self
                    .client
                    .delete_scaling_policy()
                    .policy_name(name)
                    .service_namespace(ServiceNamespace::Sagemaker)
                    .resource_id(&resource)
                    .scalable_dimension(DIMENSION)
                    .send()
                    .await;
                // Already gone (a retried delete): done.
                if let Err(e) = deleted {
                    if !is_not_found(&e) {
                        return Err(error("deleting the scaling policy", e));
                    }
                }
            }
            ScalingChange::PutAction(action) => {
                self.client
                    .put_scheduled_action()
                    .service_namespace(ServiceNamespace::Sagemaker)
                    .scheduled_action_name(&action.name)
                    .resource_id(&resource)
                    .scalable_dimension(DIMENSION)
                    .schedule(&action.schedule)
                    .set_timezone(action.timezone.clone())
                    .scalable_target_action(
                        ScalableTargetAction::builder()
                            .set_min_capacity(action.min.map(count))
                            .set_max_capacity(action.max.map(count))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| error("putting the scheduled action", e))?;
            }
            ScalingChange::DeleteAction { name } => {
                let deleted = self
                    .client
                    .delete_scheduled_action()
                    .service_namespace(ServiceNamespace::Sagemaker)
                    .scheduled_action_name(name)
                    .resource_id(&resource)
                    .scalable_dimension(DIMENSION)
                    .send()
                    .await;
                if let Err(e) = deleted {
                    if !is_not_found(&e) {
                        return Err(error("deleting the scheduled action", e));
                    }
                }
            }
        }
        Ok(())
    }
}
