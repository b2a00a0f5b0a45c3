//! The one place AWS SDK configuration is built, per region.
//!
//! Every function, the CLI and the tests go through [`ClientFactory`], so pointing all of
//! Meridian at real AWS or at the local cloud is a matter of configuration, never code:
//! the standard `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables (and the
//! matching shared-config keys) are honoured by the SDK loader used here.
//!
//! It is also where a function's cold start is decided: building configuration and
//! clients here does no TLS work and loads the configuration once
//! (`./scripts/bench cold-start` measures it).

use std::sync::Arc;

use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{tls, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tokio::sync::OnceCell;

use crate::names::{sdk_app_name, FunctionRole};

/// Builds per-region SDK configuration and clients.
#[derive(Debug, Clone, Default)]
pub struct ClientFactory {
    endpoint_url: Option<String>,
    credentials: Option<Credentials>,
    app_name: Option<AppName>,
    /// The configuration, loaded once (on first use) and shared by clones and by every
    /// region: each region's configuration is this one with its region swapped in. One load
    /// reads the shared config files once; one HTTP client means one TLS connector (built by
    /// the first request), one connection pool and one credentials cache, so neither a cold
    /// start nor a warm invocation pays for them per region.
    loaded: Arc<OnceCell<SdkConfig>>,
}

impl ClientFactory {
    /// Everything from the standard environment: credentials chain, `AWS_ENDPOINT_URL*`,
    /// profiles. This is what Lambda functions and the CLI against real AWS use.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// A factory for an explicit endpoint with static placeholder credentials: the local
    /// cloud, which ignores signatures. Used by tests so they need no process-wide
    /// environment changes.
    pub fn for_endpoint(endpoint_url: impl Into<String>) -> Self {
        Self {
            endpoint_url: Some(endpoint_url.into()),
            credentials: Some(Credentials::new(
                "meridian-local",
                "meridian-local-secret",
                None,
                None,
                "meridian-local",
            )),
            app_name: None,
            loaded: Arc::default(),
        }
    }

    /// The same factory for the clients of one Meridian function. Every request then
    /// carries `app/meridian-<function>` in its user agent, so CloudTrail (and the local
    /// cloud's call log) tells which function made each call: what least-privilege IAM is
    /// checked against.
    pub fn for_function(mut self, role: FunctionRole) -> Self {
        self.app_name = AppName::new(sdk_app_name(role)).ok();
        self.loaded = Arc::default();
        self
    }

    /// The endpoint override, if this factory sets one explicitly.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// SDK configuration for one region: the shared configuration (loaded on first use,
    /// with this region as its own) with `region` in place of its region.
    pub async fn config(&self, region: &str) -> SdkConfig {
        let loaded = self.loaded.get_or_init(|| self.load(region)).await;
        if loaded.region().is_some_and(|r| r.as_ref() == region) {
            return loaded.clone();
        }
        loaded
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build()
    }

    async fn load(&self, region: &str) -> SdkConfig {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        if let Some(app_name) = &self.app_name {
            loader = loader.app_name(app_name.clone());
        }
        loader
            .http_client(ConnectOnFirstRequest(default_https_client()))
            .load()
            .await
    }

    /// An S3 client for one region. Path-style addressing is forced whenever an endpoint
    /// override is in effect, because custom endpoints (the local cloud, proxies) seldom
    /// resolve `bucket.host` names.
    pub async fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        s3_client(&self.config(region).await)
    }
}

/// The HTTP client the SDK builds by default (`aws-smithy-runtime`'s `default_https_client`
/// for the latest behavior version: hyper 1 with rustls on aws-lc, proxies from the
/// environment), built here so that it can be wrapped in [`ConnectOnFirstRequest`] before
/// the loader hands it to anything.
fn default_https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The SDK's default HTTP client without its eager TLS set-up. Building an SDK client
/// calls its HTTP client's `validate_base_client_config`, which in the default client
/// builds a connector and throws it away, so that the trusted root certificates are loaded
/// at start-up: a full TLS set-up (the system's root certificates read, every one parsed)
/// per client built, including the STS client that the default credentials chain builds
/// and a Lambda function never uses (its credentials are in its environment). The
/// connector that serves is built, and cached, by the first request either way; deferring
/// to it takes those throwaway set-ups off every cold start and every client built later.
#[derive(Debug)]
struct ConnectOnFirstRequest(SharedHttpClient);

impl HttpClient for ConnectOnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// An S3 client from an existing configuration, with the same path-style rule as
/// [`ClientFactory::s3`].
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden =
        config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn explicit_endpoint_and_region_reach_the_config() {
        let factory = ClientFactory::for_endpoint("http://127.0.0.1:4566");
        let config = factory.config("eu-west-1").await;
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(config.credentials_provider().is_some());
    }

    #[tokio::test]
    async fn one_configuration_is_loaded_and_shared_by_clones_and_regions() {
        let factory = ClientFactory::for_endpoint("http://127.0.0.1:4566");
        let ireland = factory.config("eu-west-1").await;
        let virginia = factory.clone().config("us-east-1").await;
        assert_eq!(virginia.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(virginia.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert_eq!(ireland.region().map(|r| r.as_ref()), Some("eu-west-1"));
        // One load, by the first request: the clone and the other region derive from it.
        assert_eq!(
            factory
                .loaded
                .get()
                .and_then(|c| c.region())
                .map(|r| r.as_ref()),
            Some("eu-west-1")
        );
        let named = factory.clone().for_function(FunctionRole::Upload);
        assert!(named.config("eu-west-1").await.app_name().is_some());
        assert_eq!(factory.config("eu-west-1").await.app_name(), None);
    }

    #[tokio::test]
    async fn a_functions_clients_name_the_function_in_their_user_agent() {
        let factory = ClientFactory::for_endpoint("http://127.0.0.1:4566");
        assert_eq!(factory.config("eu-west-1").await.app_name(), None);
        let config = factory
            .for_function(FunctionRole::Replica)
            .config("eu-west-1")
            .await;
        assert_eq!(
            config.app_name().map(|name| name.to_string()),
            Some("meridian-replica".to_owned())
        );
    }
}
