//! The gateway's control API under `/_meridian/`: the local cloud's own state (health,
//! front doors, health checkers, the routing view) and failure injection. Never refused by
//! a fault: it is the local cloud's, not AWS's. See `EMULATIONS.md`.

use http::StatusCode;
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::faults::FaultSet;
use crate::health_checkers::HealthCheckers;
use crate::http::{GatewayRequest, GatewayResponse};
use crate::routing_view;

/// Answers `METHOD /_meridian/{path}`.
pub async fn handle(
    ctx: &Ctx,
    checkers: &HealthCheckers,
    path: &str,
    request: &GatewayRequest,
) -> GatewayResponse {
    match (request.method.as_str(), path) {
        ("GET", "health") => GatewayResponse::json(
            StatusCode::OK,
            &json!({
                "status": if ctx.is_provisioned() { "ready" } else { "starting" },
                "fleet": ctx.fleet.name,
                "regions": ctx.fleet.region_names(),
                "functions": ctx.functions.names(),
                "front_doors": ctx.front_door_urls,
                "moto": ctx.moto_url,
            }),
        ),
        ("GET", "front-doors") => {
            GatewayResponse::json(StatusCode::OK, &json!(ctx.front_door_urls))
        }
        ("GET", "health-checks") => {
            GatewayResponse::json(StatusCode::OK, &json!(checkers.statuses()))
        }
        ("GET", "resolve") => match routing_view::view(ctx, checkers).await {
            Ok(view) => GatewayResponse::json(StatusCode::OK, &json!(view)),
            Err(error) => GatewayResponse::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "message": format!("reading the routing state failed: {error:#}") }),
            ),
        },
        ("GET", "faults") => GatewayResponse::json(
            StatusCode::OK,
            &serde_json::to_value(ctx.faults.snapshot()).unwrap_or(Value::Null),
        ),
        ("PUT", "faults") => match serde_json::from_slice::<FaultSet>(&request.body) {
            Ok(faults) => {
                ctx.faults.replace(faults.clone());
                tracing::info!(?faults, "faults replaced");
                GatewayResponse::json(
                    StatusCode::OK,
                    &serde_json::to_value(faults).unwrap_or(Value::Null),
                )
            }
            Err(error) => GatewayResponse::json(
                StatusCode::BAD_REQUEST,
                &json!({ "message": format!("invalid fault set: {error}") }),
            ),
        },
        _ => GatewayResponse::json(
            StatusCode::NOT_FOUND,
            &json!({ "message": format!("no control endpoint {} /_meridian/{path}", request.method) }),
        ),
    }
}
