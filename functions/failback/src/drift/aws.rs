//! The drift check's AWS adapter: SageMaker's `DescribeEndpoint`, `DescribeEndpointConfig`
//! and `DescribeModel` in this region, and one scan of the registry in this region's own
//! table replica. Read-only.

use aws_sdk_sagemaker::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use meridian::aws::ClientFactory;
use meridian::drift::{Endpoint, RegistryView, Variant};
use meridian::fleet::Fleet;
use meridian::health::HealthError;
use meridian::registry::{Registry, VersionRecord};

use super::DriftSources;

/// SageMaker and the registry, both in the region the function runs in.
pub struct AwsDriftSources {
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub registry: Registry,
    /// The fleet's endpoint name in this region.
    pub endpoint: String,
}

impl AwsDriftSources {
    /// Wires the region's clients. A region outside the fleet gets no endpoint name: the
    /// handler refuses such a region before any check.
    pub async fn new(clients: &ClientFactory, fleet: &Fleet, region: &str) -> Self {
        let config = clients.config(region).await;
        Self {
            sagemaker: aws_sdk_sagemaker::Client::new(&config),
            registry: Registry {
                client: aws_sdk_dynamodb::Client::new(&config),
                table: fleet.registry_table.clone(),
            },
            endpoint: fleet
                .region(region)
                .map(|r| r.endpoint.clone())
                .unwrap_or_default(),
        }
    }
}

/// SageMaker answers a name that does not exist with a `ValidationException` "Could not
/// find ...": a finding for the check, not a failure.
fn not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.as_service_error().is_some_and(|e| {
        e.code() == Some("ValidationException")
            && e.message().is_some_and(|m| m.contains("Could not find"))
    })
}

/// Any other validation error can never succeed as asked; the rest is transient.
fn sagemaker_error<E, R>(context: &str, error: SdkError<E, R>) -> HealthError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let validation = error
        .as_service_error()
        .is_some_and(|e| e.code() == Some("ValidationException"));
    let message = format!("{context}: {}", DisplayErrorContext(error));
    if validation {
        HealthError::Invalid(message)
    } else {
        HealthError::Retryable(message)
    }
}

impl AwsDriftSources {
    /// One variant's model: where its data is and which image serves it (`None` for a
    /// model that no longer exists).
    async fn variant(&self, name: &str, model: &str) -> Result<Variant, HealthError> {
        let described = self
            .sagemaker
            .describe_model()
            .model_name(model)
            .send()
            .await;
        let (model_data, image) = match described {
            Ok(described) => {
                let container = described
                    .primary_container()
                    .or_else(|| described.containers().first());
                let model_data = container.and_then(|c| {
                    c.model_data_source()
                        .and_then(|s| s.s3_data_source())
                        .and_then(|s| s.s3_uri())
                        .or_else(|| c.model_data_url())
                        .map(str::to_owned)
                });
                (
                    model_data,
                    container.and_then(|c| c.image().map(str::to_owned)),
                )
            }
            Err(error) if not_found(&error) => (None, None),
            Err(error) => return Err(sagemaker_error("describing the model", error)),
        };
        Ok(Variant {
            name: name.to_owned(),
            model: model.to_owned(),
            model_data,
            image,
        })
    }
}

impl DriftSources for AwsDriftSources {
    async fn registry(&self) -> Result<(RegistryView, Option<VersionRecord>), HealthError> {
        let view = self.registry.heads().await?;
        let active = match view.latest_active() {
            Some((model, pointer)) => self.registry.version(model, &pointer.version).await?,
            None => None,
        };
        Ok((view, active))
    }

    async fn endpoint(&self) -> Result<Endpoint, HealthError> {
        let endpoint = match self
            .sagemaker
            .describe_endpoint()
            .endpoint_name(&self.endpoint)
            .send()
            .await
        {
            Ok(endpoint) => endpoint,
            Err(error) if not_found(&error) => return Ok(Endpoint::Missing),
            Err(error) => return Err(sagemaker_error("describing the endpoint", error)),
        };
        let status = endpoint
            .endpoint_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let config = endpoint
            .endpoint_config_name()
            .unwrap_or_default()
            .to_owned();
        let described = self
            .sagemaker
            .describe_endpoint_config()
            .endpoint_config_name(&config)
            .send()
            .await;
        let mut variants = Vec::new();
        match described {
            Ok(described) => {
                for variant in described.production_variants() {
                    let name = variant.variant_name().unwrap_or_default();
                    let model = variant.model_name().unwrap_or_default();
                    variants.push(self.variant(name, model).await?);
                }
            }
            // A configuration deleted under the running endpoint: what it serves is unknown.
            Err(error) if not_found(&error) => variants.push(Variant {
                name: "-".into(),
                model: "-".into(),
                model_data: None,
                image: None,
            }),
            Err(error) => {
                return Err(sagemaker_error(
                    "describing the endpoint configuration",
                    error,
                ))
            }
        }
        Ok(Endpoint::Serving {
            status,
            config,
            variants,
        })
    }
}
