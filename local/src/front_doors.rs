//! Each region's front door, hosted in-process: the handler API Gateway (REST, Lambda proxy
//! integration, response streaming) calls with the request a `lambda_http` function
//! receives. Registered per region; `api_gateway.rs` serves them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use bytes::Bytes;
use futures::future::BoxFuture;

/// What a front door receives: the request `lambda_http` builds from API Gateway's event.
pub type Request = lambda_http::Request;

/// What a front door answers; the body is streamed back to the client.
pub type Response = http::Response<Body>;

/// A front door's handler.
pub type Handler = Arc<dyn Fn(Request) -> BoxFuture<'static, Response> + Send + Sync>;

/// Front-door handlers by region. Cloning shares the registry, so a front door can be
/// registered after the local cloud has started.
#[derive(Clone, Default)]
pub struct FrontDoors {
    by_region: Arc<RwLock<HashMap<String, Handler>>>,
}

impl FrontDoors {
    /// Registers (or replaces) the front door of `region`. Any body type a `lambda_http`
    /// streaming handler may return will do.
    pub fn register<F, Fut, B>(&self, region: impl Into<String>, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<B>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let handler: Handler = Arc::new(move |request| {
            let response = handler(request);
            Box::pin(async move { response.await.map(Body::new) })
        });
        self.by_region
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region.into(), handler);
    }

    /// The front door of `region`, if one is registered.
    pub fn handler(&self, region: &str) -> Option<Handler> {
        self.by_region
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(region)
            .cloned()
    }
}
