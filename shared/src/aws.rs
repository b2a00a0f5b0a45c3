//! The one place AWS SDK configuration is built, per region.
//!
//! Every function, the CLI and the tests go through [`ClientFactory`], so pointing all of
//! Meridian at real AWS or at the local cloud is a matter of configuration, never code:
//! the standard `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` variables (and the
//! matching shared-config keys) are honoured by the SDK loader used here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

use crate::names::{sdk_app_name, FunctionRole};

/// Builds per-region SDK configuration and clients.
#[derive(Debug, Clone, Default)]
pub struct ClientFactory {
    endpoint_url: Option<String>,
    credentials: Option<Credentials>,
    app_name: Option<AppName>,
    /// Each region's configuration, loaded once and shared by clones: clients built from
    /// it share one connection pool and one credentials cache, so a warm Lambda does not
    /// resolve credentials or open new TLS connections on every invocation.
    loaded: Arc<Mutex<HashMap<String, SdkConfig>>>,
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

    /// SDK configuration for one region, loaded on first use.
    pub async fn config(&self, region: &str) -> SdkConfig {
        if let Some(config) = self.cached(region) {
            return config;
        }
        let config = self.load(region).await;
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(region.to_owned())
            .or_insert(config)
            .clone()
    }

    fn cached(&self, region: &str) -> Option<SdkConfig> {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(region)
            .cloned()
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
        loader.load().await
    }

    /// An S3 client for one region. Path-style addressing is forced whenever an endpoint
    /// override is in effect, because custom endpoints (the local cloud, proxies) seldom
    /// resolve `bucket.host` names.
    pub async fn s3(&self, region: &str) -> aws_sdk_s3::Client {
        s3_client(&self.config(region).await)
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
    async fn a_regions_configuration_is_loaded_once_and_shared_by_clones() {
        let factory = ClientFactory::for_endpoint("http://127.0.0.1:4566");
        factory.config("eu-west-1").await;
        // A clone loads into the same map: loaded once, shared.
        factory.clone().config("eu-west-1").await;
        assert_eq!(factory.loaded.lock().map(|l| l.len()).unwrap_or(0), 1);
        factory.config("us-east-1").await;
        assert_eq!(factory.loaded.lock().map(|l| l.len()).unwrap_or(0), 2);
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
