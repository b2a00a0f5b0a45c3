//! The gateway: the one AWS endpoint of the local cloud. It serves the Lambda Invoke API
//! for in-process functions, runs the emulations of `EMULATIONS.md` around the calls that
//! need them, refuses the calls an injected fault refuses, and forwards everything else to
//! moto unchanged.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;

use crate::alarms::AlarmWatcher;
use crate::calls::CallLog;
use crate::ctx::Ctx;
use crate::events::ScheduleTargets;
use crate::execution_events::StoppedExecutions;
use crate::faults::Refusal;
use crate::functions::{arn_region, lambda_invoke_target};
use crate::global_tables::GlobalTables;
use crate::health_checkers::HealthCheckers;
use crate::http::{credential_scope, forward, CredentialScope, GatewayRequest, GatewayResponse};
use crate::sagemaker::Endpoints;
use crate::server::{serve, Dropped};
use crate::{
    alarms, cbor, checksums, control, events, global_tables, lambda_api, replication, route53,
    sagemaker,
};

/// The shared context and every emulation's state: what a request may need.
pub struct Gateway {
    pub ctx: Arc<Ctx>,
    /// Who called which API (CloudTrail's view), for least-privilege checks.
    pub calls: Arc<CallLog>,
    pub endpoints: Arc<Endpoints>,
    pub global_tables: Arc<GlobalTables>,
    pub alarms: Arc<AlarmWatcher>,
    pub schedule_targets: Arc<ScheduleTargets>,
    pub checkers: Arc<HealthCheckers>,
    /// Executions stopped through the gateway, reported `ABORTED` as on AWS.
    pub stopped_executions: Arc<StoppedExecutions>,
}

/// Serves the gateway on `listener` until the local cloud stops.
pub fn start(gateway: Arc<Gateway>, listener: TcpListener) {
    let ctx = gateway.ctx.clone();
    ctx.spawn(async move {
        serve(
            listener,
            || true,
            move |request: http::Request<hyper::body::Incoming>| {
                let gateway = gateway.clone();
                async move { gateway.handle(request.map(Body::new)).await }
            },
        )
        .await;
    });
}

impl Gateway {
    /// Answers one request, or refuses it (by a fault) by closing its connection.
    pub async fn handle(&self, request: http::Request<Body>) -> Result<Response, Dropped> {
        let request = match GatewayRequest::read(request).await {
            Ok(request) => request,
            Err(response) => return Ok(response.into_response()),
        };
        if let Some(path) = request.path().strip_prefix("/_meridian/") {
            return Ok(control::handle(&self.ctx, &self.checkers, path, &request)
                .await
                .into_response());
        }
        let scope = credential_scope(&request.headers);
        let invoked = lambda_invoke_target(request.path());
        let function_region = invoked.as_deref().and_then(arn_region);
        let regions = scope
            .iter()
            .map(|s| s.region.as_str())
            .chain(function_region);
        let service = scope.as_ref().map_or("lambda", |s| s.service.as_str());
        let refusal = self.ctx.faults.snapshot().refusal(regions, service);
        self.calls
            .record(&request, scope.as_ref(), refusal.is_some());
        match refusal {
            Some(Refusal::RegionDown(region)) => {
                return Err(Dropped(format!("{region} is down")));
            }
            Some(Refusal::Route53ControlPlaneDown) => {
                return Ok(route53::control_plane_down().into_response());
            }
            None => {}
        }
        let routed = match invoked {
            Some(identifier) => {
                Ok(lambda_api::invoke(&self.ctx, &identifier, scope.as_ref(), &request).await)
            }
            None => self.route(scope, request).await,
        };
        Ok(routed
            .unwrap_or_else(|error| {
                tracing::error!(error = %format!("{error:#}"), "gateway request failed");
                GatewayResponse::json(
                    StatusCode::BAD_GATEWAY,
                    &json!({ "message": format!("meridian local gateway: {error:#}") }),
                )
            })
            .into_response())
    }

    async fn route(
        &self,
        scope: Option<CredentialScope>,
        request: GatewayRequest,
    ) -> anyhow::Result<GatewayResponse> {
        let ctx = &self.ctx;
        if let Some((service, operation)) = cbor::rpc_v2_target(request.path()) {
            let json_request = match cbor::to_json_request(&request, service, operation) {
                Ok(json_request) => json_request,
                Err(problem) => {
                    return Ok(GatewayResponse::json(
                        StatusCode::BAD_REQUEST,
                        &json!({ "__type": "SerializationException", "message": problem }),
                    ))
                }
            };
            let response = cbor::to_cbor_response(forward(ctx, &json_request).await?);
            if let Some(scope) = scope.filter(|s| s.service == "monitoring") {
                alarms::scan_region(ctx, &self.alarms, &scope.region).await;
            }
            return Ok(response);
        }
        let Some(scope) = scope else {
            return forward(ctx, &request).await;
        };
        let region = scope.region.as_str();
        match scope.service.as_str() {
            "sagemaker" => {
                sagemaker::handle(ctx, &self.endpoints, &self.alarms, region, request).await
            }
            "dynamodb" => global_tables::handle(ctx, &self.global_tables, region, request).await,
            "events" => events::handle(ctx, &self.schedule_targets, region, request).await,
            "route53" => route53::handle(ctx, &self.checkers, &request).await,
            "s3" => {
                let mut response = forward(ctx, &request).await?;
                correct_s3_roots(&request, &mut response);
                checksums::overlay(ctx, &request, &mut response).await;
                checksums::remember_put(ctx, &request, &response);
                if response.is_success() {
                    replication::after_s3_write(ctx, &request, &response);
                }
                Ok(response)
            }
            "monitoring" => {
                let response = forward(ctx, &request).await?;
                alarms::scan_region(ctx, &self.alarms, region).await;
                Ok(response)
            }
            "states" if request.target() == Some("AWSStepFunctions.StopExecution") => {
                let response = forward(ctx, &request).await?;
                if response.is_success() {
                    if let Ok(body) = serde_json::from_slice(&request.body) {
                        self.stopped_executions.record(&body);
                    }
                }
                Ok(response)
            }
            _ => forward(ctx, &request).await,
        }
    }
}

/// moto 5.2.5 names the root element of two S3 replies after the operation, where S3 (and
/// the Rust SDK's parser) use `GetBucketVersioning`'s `VersioningConfiguration` and
/// `ListParts`'s `ListPartsResult`: the gateway renames it.
fn correct_s3_roots(request: &GatewayRequest, response: &mut GatewayResponse) {
    if request.method != http::Method::GET || !response.is_success() {
        return;
    }
    let has = |name: &str| {
        request
            .query()
            .split('&')
            .any(|p| p == name || p.starts_with(&format!("{name}=")))
    };
    let (wrong, right) = if has("versioning") {
        ("GetBucketVersioningResponse", "VersioningConfiguration")
    } else if has("uploadId") {
        ("ListPartsResponse", "ListPartsResult")
    } else {
        return;
    };
    let body = String::from_utf8_lossy(&response.body);
    if body.contains(&format!("<{wrong}")) {
        let corrected = body
            .replace(&format!("<{wrong}"), &format!("<{right}"))
            .replace(&format!("</{wrong}>"), &format!("</{right}>"));
        response.body = corrected.into_bytes().into();
    }
}
