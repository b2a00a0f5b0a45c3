//! The Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`), served by the
//! in-process functions. See `EMULATIONS.md`.

use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::functions::{arn_region, function_name_from_identifier, Invocation, InvokeError};
use crate::http::{CredentialScope, GatewayRequest, GatewayResponse};

/// Invokes the function `identifier` names, as Lambda's Invoke API does.
pub async fn invoke(
    ctx: &Ctx,
    identifier: &str,
    scope: Option<&CredentialScope>,
    request: &GatewayRequest,
) -> GatewayResponse {
    let region = arn_region(identifier)
        .map(str::to_owned)
        .or_else(|| scope.map(|s| s.region.clone()))
        .unwrap_or_else(|| ctx.fleet.primary_region.clone());
    let payload = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(payload) => payload,
            Err(error) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &format!("Could not parse request body into json: {error}"),
                )
            }
        }
    };
    let invocation = Invocation {
        function_name: function_name_from_identifier(identifier).to_owned(),
        region,
        payload,
    };
    let invocation_type = request
        .headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "DryRun" => return GatewayResponse::empty(StatusCode::NO_CONTENT),
        "Event" => {
            let functions = ctx.functions.clone();
            let name = invocation.function_name.clone();
            if !functions.names().contains(&name) {
                return function_not_found(&name);
            }
            tokio::spawn(async move {
                if let Err(error) = functions.invoke(invocation).await {
                    tracing::warn!(function = %name, %error, "asynchronous invocation failed");
                }
            });
            return GatewayResponse::empty(StatusCode::ACCEPTED);
        }
        _ => {}
    }
    let name = invocation.function_name.clone();
    let mut response = match ctx.functions.invoke(invocation).await {
        Ok(result) => GatewayResponse::json(StatusCode::OK, &result),
        Err(InvokeError::NotFound(name)) => return function_not_found(&name),
        Err(InvokeError::Failed(error)) => {
            tracing::info!(function = %name, %error, "function returned an error");
            let mut response = GatewayResponse::json(
                StatusCode::OK,
                &serde_json::to_value(&error).unwrap_or(Value::Null),
            );
            response.headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            response
        }
    };
    response.headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    response
}

fn function_not_found(name: &str) -> GatewayResponse {
    lambda_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("Function not found: {name}"),
    )
}

fn lambda_error(status: StatusCode, code: &str, message: &str) -> GatewayResponse {
    let mut response =
        GatewayResponse::json(status, &json!({ "Type": "User", "message": message }));
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers.insert("x-amzn-errortype", value);
    }
    response
}
