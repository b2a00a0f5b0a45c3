//! SageMaker endpoint lifecycle emulation (moto has no `UpdateEndpoint` and makes every
//! endpoint `InService` at once), with SageMaker's endpoint events on EventBridge. See
//! `EMULATIONS.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::{json, Value};

use crate::alarms::{self, AlarmWatcher};
use crate::ctx::{Ctx, LOCAL_ACCOUNT};
use crate::http::{forward, GatewayRequest, GatewayResponse};

const TARGET_PREFIX: &str = "SageMaker.";

/// What the SageMaker emulation works with: the shared context, its own state, and the
/// alarm watcher that tells whether a rollback alarm fired during an update.
struct Emulation<'a> {
    ctx: &'a Ctx,
    endpoints: &'a Endpoints,
    alarms: &'a AlarmWatcher,
}

/// What the emulation knows about endpoints that have been updated through the gateway.
#[derive(Default)]
pub struct Endpoints {
    by_name: Mutex<HashMap<(String, String), EndpointState>>,
    /// Real instance types of endpoint configs stored in moto with a placeholder type,
    /// per (region, config name): variant name to instance type.
    instance_types: Mutex<HashMap<(String, String), HashMap<String, String>>>,
}

/// An instance type moto 5.2.5 accepts, stored in place of current types it does not
/// know (its list predates ml.g5, ml.g6, ml.p4d, ml.p5, ml.inf2, ...).
const PLACEHOLDER_INSTANCE_TYPE: &str = "ml.m5.large";

#[derive(Debug, Clone, Default)]
struct EndpointState {
    status: Option<String>,
    config: Option<String>,
    failure_reason: Option<String>,
    deployment_config: Option<Value>,
    modified: Option<DateTime<Utc>>,
    update: Option<Update>,
}

#[derive(Debug, Clone)]
struct Update {
    from: String,
    to: String,
    started: DateTime<Utc>,
    finishes: DateTime<Utc>,
    rollback_alarms: Vec<String>,
    fails: bool,
}

/// How an update stands at a moment, given whether a rollback alarm fired.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdatePhase {
    Updating,
    RollingBack,
    Updated,
    RolledBack,
    Failed,
}

/// The pure rule: an update is in progress until it finishes; an alarm in `ALARM` during
/// it rolls it back (silently ending on the old config); an injected fault fails it.
pub fn update_phase(finished: bool, alarm_fired: bool, fails: bool) -> UpdatePhase {
    match (finished, alarm_fired, fails) {
        (false, true, _) => UpdatePhase::RollingBack,
        (false, false, _) => UpdatePhase::Updating,
        (true, _, true) => UpdatePhase::Failed,
        (true, true, false) => UpdatePhase::RolledBack,
        (true, false, false) => UpdatePhase::Updated,
    }
}

/// Handles a SageMaker request arriving at the gateway for `region`.
pub async fn handle(
    ctx: &Ctx,
    endpoints: &Endpoints,
    alarms: &AlarmWatcher,
    region: &str,
    request: GatewayRequest,
) -> Result<GatewayResponse> {
    let emulation = Emulation {
        ctx,
        endpoints,
        alarms,
    };
    if let Some(endpoint) = invocation_target(request.path()) {
        return invoke_endpoint(&emulation, region, &endpoint, &request.body).await;
    }
    let operation = request
        .target()
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_owned();
    if let Some(delay) = ctx.faults.sagemaker_delay(region, &operation) {
        tracing::warn!(%region, %operation, ?delay, "injected fault: the request reaches SageMaker late");
        tokio::time::sleep(delay).await;
    }
    if let Some(message) = ctx.faults.sagemaker_rejection(region, &operation) {
        tracing::warn!(%region, %operation, %message, "injected fault: SageMaker refuses the request");
        return Ok(validation_error(&message));
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let name = body["EndpointName"].as_str().unwrap_or("").to_owned();
    match operation.as_str() {
        "UpdateEndpoint" => update_endpoint(&emulation, region, &body).await,
        "DescribeEndpoint" => {
            let mut response = forward(ctx, &request).await?;
            if response.is_success() {
                if let Ok(mut description) = serde_json::from_slice::<Value>(&response.body) {
                    let state = resolve(&emulation, region, &name).await;
                    overlay(&mut description, &state);
                    response.body = description.to_string().into();
                }
            }
            Ok(response)
        }
        "CreateEndpointConfig" => create_endpoint_config(&emulation, region, &request, body).await,
        "DescribeEndpointConfig" => {
            let mut response = forward(ctx, &request).await?;
            let config = body["EndpointConfigName"].as_str().unwrap_or("").to_owned();
            let real = endpoints
                .instance_types
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(region.to_owned(), config))
                .cloned();
            if let (true, Some(real)) = (response.is_success(), real) {
                if let Ok(mut description) = serde_json::from_slice::<Value>(&response.body) {
                    restore_instance_types(&mut description, &real);
                    response.body = description.to_string().into();
                }
            }
            Ok(response)
        }
        "DeleteEndpoint" => {
            let response = forward(ctx, &request).await?;
            if response.is_success() {
                endpoints.lock().remove(&(region.to_owned(), name));
            }
            Ok(response)
        }
        _ => forward(ctx, &request).await,
    }
}

impl Endpoints {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), EndpointState>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn overlay(description: &mut Value, state: &EndpointState) {
    if let Some(status) = &state.status {
        description["EndpointStatus"] = json!(status);
    }
    if let Some(config) = &state.config {
        description["EndpointConfigName"] = json!(config);
    }
    if let Some(reason) = &state.failure_reason {
        description["FailureReason"] = json!(reason);
    }
    if let Some(deployment) = &state.deployment_config {
        description["LastDeploymentConfig"] = deployment.clone();
    }
    if let Some(modified) = state.modified {
        description["LastModifiedTime"] = json!(modified.timestamp_millis() as f64 / 1000.0);
    }
}

/// Brings an endpoint's emulated state up to now and returns it.
async fn resolve(emulation: &Emulation<'_>, region: &str, name: &str) -> EndpointState {
    let Emulation {
        ctx,
        endpoints,
        alarms,
    } = emulation;
    let key = (region.to_owned(), name.to_owned());
    let Some(update) = endpoints.lock().get(&key).and_then(|s| s.update.clone()) else {
        return endpoints.lock().get(&key).cloned().unwrap_or_default();
    };
    alarms::scan_region(ctx, alarms, region).await;
    let now = Utc::now();
    let finished = now >= update.finishes;
    let window_end = if finished { update.finishes } else { now };
    let alarm_fired = update
        .rollback_alarms
        .iter()
        .any(|alarm| alarms.was_in_alarm(region, alarm, update.started, window_end));
    let phase = update_phase(finished, alarm_fired, update.fails);
    let (resolved, ended) = {
        let mut endpoints = endpoints.lock();
        let state = endpoints.entry(key).or_default();
        apply_phase(state, &phase, &update, name);
        // Only the resolution that ends the update (one of several concurrent ones) says so.
        let ended = finished && state.update.take().is_some();
        if finished {
            state.modified = Some(update.finishes);
        }
        (state.clone(), ended)
    };
    if ended {
        tracing::info!(%region, endpoint = %name, ?phase, "endpoint update finished");
        let status = if phase == UpdatePhase::Failed {
            "FAILED"
        } else {
            "IN_SERVICE"
        };
        let config = resolved.config.clone().unwrap_or_default();
        publish_endpoint_events(ctx, region, name, status, &config, None).await;
    }
    resolved
}

/// The endpoint's status and configuration in `phase` of `update`.
fn apply_phase(state: &mut EndpointState, phase: &UpdatePhase, update: &Update, name: &str) {
    match phase {
        UpdatePhase::Updating => {
            state.status = Some("Updating".into());
            state.config = Some(update.from.clone());
        }
        UpdatePhase::RollingBack => {
            state.status = Some("RollingBack".into());
            state.config = Some(update.from.clone());
        }
        UpdatePhase::Updated => {
            state.status = Some("InService".into());
            state.config = Some(update.to.clone());
            state.failure_reason = None;
        }
        UpdatePhase::RolledBack => {
            state.status = Some("InService".into());
            state.config = Some(update.from.clone());
        }
        UpdatePhase::Failed => {
            state.status = Some("Failed".into());
            state.config = Some(update.from.clone());
            state.failure_reason = Some(format!(
                "Injected fault: the update of endpoint {name} to {} failed",
                update.to
            ));
        }
    }
}

/// Brings every endpoint with an update in progress up to now, every `poll_interval`, so
/// that an update's end is noticed (and its events sent) without anyone describing it.
pub fn start(ctx: &Arc<Ctx>, endpoints: &Arc<Endpoints>, alarms: &Arc<AlarmWatcher>) {
    let (task_ctx, endpoints, alarms) = (ctx.clone(), endpoints.clone(), alarms.clone());
    ctx.spawn(async move {
        let mut tick = tokio::time::interval(task_ctx.config.poll_interval);
        loop {
            tick.tick().await;
            let updating: Vec<(String, String)> = endpoints
                .lock()
                .iter()
                .filter(|(_, state)| state.update.is_some())
                .map(|(key, _)| key.clone())
                .collect();
            let emulation = Emulation {
                ctx: &task_ctx,
                endpoints: &endpoints,
                alarms: &alarms,
            };
            for (region, name) in updating {
                resolve(&emulation, &region, &name).await;
            }
        }
    });
}

/// SageMaker's two endpoint events for a status change, to the region's default event bus
/// ("SageMaker Endpoint State Change" and "SageMaker Endpoint Deployment State Change",
/// shaped as the SageMaker developer guide's examples; `pending` is the configuration being
/// deployed). Best effort, as on AWS: a failure to publish is logged.
async fn publish_endpoint_events(
    ctx: &Ctx,
    region: &str,
    endpoint: &str,
    status: &str,
    config: &str,
    pending: Option<(&str, DateTime<Utc>)>,
) {
    if ctx.faults.endpoint_events_dropped_in(region) {
        tracing::warn!(%region, %endpoint, %status, "fault: endpoint events dropped");
        return;
    }
    let arn = format!("arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:endpoint/{endpoint}");
    let now = Utc::now();
    let mut detail = json!({
        "EndpointName": endpoint,
        "EndpointArn": arn,
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "LastModifiedTime": now.timestamp_millis(),
        "Tags": {},
    });
    let state_change = detail.clone();
    if let Some((pending, started)) = pending {
        detail["PendingDeploymentSummary"] = json!({
            "EndpointConfigName": pending,
            "StartTime": started.timestamp_millis(),
        });
    }
    let entries: Vec<Value> = [
        (
            meridian::endpoint_events::ENDPOINT_STATE_CHANGE,
            state_change,
        ),
        (meridian::endpoint_events::DEPLOYMENT_STATE_CHANGE, detail),
    ]
    .into_iter()
    .map(|(detail_type, detail)| {
        json!({
            "Source": meridian::endpoint_events::SOURCE,
            "DetailType": detail_type,
            "Resources": [arn],
            "Detail": detail.to_string(),
            "Time": now.timestamp(),
        })
    })
    .collect();
    let reply = ctx
        .moto_json(
            region,
            "events",
            "AWSEvents.PutEvents",
            "1.1",
            &json!({ "Entries": entries }),
        )
        .await;
    match reply {
        Ok(reply) if reply.status.is_success() => {}
        Ok(reply) => {
            tracing::warn!(%region, %endpoint, body = %reply.body, "PutEvents refused the endpoint events")
        }
        Err(error) => tracing::warn!(%region, %endpoint, %error, "endpoint events not sent"),
    }
}

async fn update_endpoint(
    emulation: &Emulation<'_>,
    region: &str,
    body: &Value,
) -> Result<GatewayResponse> {
    let ctx = emulation.ctx;
    let (Some(name), Some(config)) = (
        body["EndpointName"].as_str(),
        body["EndpointConfigName"].as_str(),
    ) else {
        return Ok(validation_error(
            "EndpointName and EndpointConfigName are required",
        ));
    };
    let endpoint = ctx
        .moto_json(
            region,
            "sagemaker",
            "SageMaker.DescribeEndpoint",
            "1.1",
            &json!({ "EndpointName": name }),
        )
        .await?;
    if !endpoint.status.is_success() {
        return Ok(validation_error(&format!(
            "Could not find endpoint \"arn:aws:sagemaker:{region}:{}:endpoint/{name}\".",
            LOCAL_ACCOUNT
        )));
    }
    let endpoint_config = ctx
        .moto_json(
            region,
            "sagemaker",
            "SageMaker.DescribeEndpointConfig",
            "1.1",
            &json!({ "EndpointConfigName": config }),
        )
        .await?;
    if !endpoint_config.status.is_success() {
        return Ok(validation_error(&format!(
            "Could not find endpoint configuration \"arn:aws:sagemaker:{region}:{}:endpoint-config/{config}\".",
            LOCAL_ACCOUNT
        )));
    }
    let current = resolve(emulation, region, name).await;
    if matches!(current.status.as_deref(), Some("Updating" | "RollingBack")) {
        return Ok(validation_error(&format!(
            "Cannot update in-progress endpoint \"arn:aws:sagemaker:{region}:{}:endpoint/{name}\".",
            LOCAL_ACCOUNT
        )));
    }
    let from = current
        .config
        .clone()
        .or_else(|| {
            endpoint.body["EndpointConfigName"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if let Some(refusal) = autoscaled_refusal(emulation, region, name, &from, config).await? {
        return Ok(validation_error(&refusal));
    }
    let deployment = body.get("DeploymentConfig").cloned();
    let rollback_alarms: Vec<String> = deployment
        .as_ref()
        .and_then(|d| d["AutoRollbackConfiguration"]["Alarms"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["AlarmName"].as_str().map(str::to_owned))
        .collect();
    if rollback_alarms.len() > 10 {
        return Ok(validation_error(
            "AutoRollbackConfiguration accepts at most 10 alarms",
        ));
    }
    let started = Utc::now();
    let duration =
        chrono::Duration::from_std(ctx.config.endpoint_update_duration).unwrap_or_default();
    let update = Update {
        from,
        to: config.to_owned(),
        started,
        finishes: started + duration,
        rollback_alarms,
        fails: ctx.faults.take_endpoint_update_failure(region),
    };
    tracing::info!(%region, endpoint = %name, from = %update.from, to = %update.to, "endpoint update started");
    let (from_config, to_config) = (update.from.clone(), update.to.clone());
    {
        let mut endpoints = emulation.endpoints.lock();
        let state = endpoints
            .entry((region.to_owned(), name.to_owned()))
            .or_default();
        state.status = Some("Updating".into());
        state.config = Some(update.from.clone());
        state.failure_reason = None;
        state.modified = Some(started);
        if deployment.is_some() {
            state.deployment_config = deployment;
        }
        state.update = Some(update);
    }
    publish_endpoint_events(
        ctx,
        region,
        name,
        "UPDATING",
        &from_config,
        Some((&to_config, started)),
    )
    .await;
    Ok(GatewayResponse::json(
        StatusCode::OK,
        &json!({ "EndpointArn": endpoint.body["EndpointArn"] }),
    ))
}

/// SageMaker's rule for autoscaled variants ("Update endpoints that use auto scaling"): an
/// update that changes the instance type of a variant registered as an Application Auto
/// Scaling target, or removes it, fails. The refusal's message, if the update breaks it.
async fn autoscaled_refusal(
    emulation: &Emulation<'_>,
    region: &str,
    endpoint: &str,
    from: &str,
    to: &str,
) -> Result<Option<String>> {
    if from.is_empty() || from == to {
        return Ok(None);
    }
    let current = variant_instance_types(emulation, region, from).await?;
    let next = variant_instance_types(emulation, region, to).await?;
    let targets = emulation
        .ctx
        .moto_json(
            region,
            "application-autoscaling",
            "AnyScaleFrontendService.DescribeScalableTargets",
            "1.1",
            &json!({ "ServiceNamespace": "sagemaker" }),
        )
        .await?;
    let registered: Vec<String> = targets.body["ScalableTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["ResourceId"].as_str().map(str::to_owned))
        .collect();
    let blocked = autoscaled_variants_changed(endpoint, &current, &next, &registered);
    Ok((!blocked.is_empty()).then(|| {
        format!(
            "The update changes the instance type of variant(s) {} of endpoint \
             \"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:endpoint/{endpoint}\", which are \
             registered as Application Auto Scaling targets; deregister them first.",
            blocked.join(", ")
        )
    }))
}

/// Variant name to instance type of an endpoint configuration (the real types where moto
/// stores a placeholder); empty when it cannot be read.
async fn variant_instance_types(
    emulation: &Emulation<'_>,
    region: &str,
    config: &str,
) -> Result<HashMap<String, String>> {
    let described = emulation
        .ctx
        .moto_json(
            region,
            "sagemaker",
            "SageMaker.DescribeEndpointConfig",
            "1.1",
            &json!({ "EndpointConfigName": config }),
        )
        .await?;
    let mut description = described.body;
    if let Some(real) = emulation
        .endpoints
        .instance_types
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(region.to_owned(), config.to_owned()))
    {
        restore_instance_types(&mut description, real);
    }
    Ok(description["ProductionVariants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["VariantName"].as_str()?.to_owned(),
                v["InstanceType"].as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// The pure rule: the variants of `current` that are registered scalable targets of the
/// endpoint and whose instance type `next` changes or drops, sorted.
pub fn autoscaled_variants_changed(
    endpoint: &str,
    current: &HashMap<String, String>,
    next: &HashMap<String, String>,
    registered: &[String],
) -> Vec<String> {
    let mut blocked: Vec<String> = current
        .iter()
        .filter(|(variant, instance_type)| {
            next.get(*variant) != Some(*instance_type)
                && registered.contains(&meridian::variant::scalable_target_resource_id(
                    endpoint, variant,
                ))
        })
        .map(|(variant, _)| variant.clone())
        .collect();
    blocked.sort();
    blocked
}

/// Forwards `CreateEndpointConfig`; when moto rejects an instance type that SageMaker
/// itself accepts, stores the config with a placeholder type and remembers the real one.
async fn create_endpoint_config(
    emulation: &Emulation<'_>,
    region: &str,
    request: &GatewayRequest,
    mut body: Value,
) -> Result<GatewayResponse> {
    let ctx = emulation.ctx;
    let response = forward(ctx, request).await?;
    let rejected_type = !response.is_success()
        && String::from_utf8_lossy(&response.body)
            .contains("at 'instanceType' failed to satisfy constraint");
    if !rejected_type {
        return Ok(response);
    }
    let known = aws_sdk_sagemaker::types::ProductionVariantInstanceType::values();
    let mut real = HashMap::new();
    for variant in body["ProductionVariants"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(instance_type)) = (
            variant["VariantName"].as_str(),
            variant["InstanceType"].as_str(),
        ) else {
            continue;
        };
        if !known.contains(&instance_type) {
            return Ok(response);
        }
        real.insert(name.to_owned(), instance_type.to_owned());
        variant["InstanceType"] = json!(PLACEHOLDER_INSTANCE_TYPE);
    }
    let mut retry = GatewayRequest {
        method: request.method.clone(),
        path_and_query: request.path_and_query.clone(),
        headers: request.headers.clone(),
        body: body.to_string().into(),
    };
    retry.headers.remove(http::header::CONTENT_LENGTH);
    let response = forward(ctx, &retry).await?;
    if response.is_success() {
        let config = body["EndpointConfigName"].as_str().unwrap_or("").to_owned();
        emulation
            .endpoints
            .instance_types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((region.to_owned(), config), real);
    }
    Ok(response)
}

fn restore_instance_types(description: &mut Value, real: &HashMap<String, String>) {
    for variant in description["ProductionVariants"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if let Some(instance_type) = variant["VariantName"].as_str().and_then(|n| real.get(n)) {
            variant["InstanceType"] = json!(instance_type);
        }
    }
}

/// The endpoint of a SageMaker runtime `InvokeEndpoint` path, `/endpoints/{name}/invocations`.
pub fn invocation_target(path: &str) -> Option<String> {
    let name = path
        .strip_prefix("/endpoints/")?
        .strip_suffix("/invocations")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
}

/// What SageMaker runtime answers: the model's reply when the endpoint is in service. The
/// local cloud runs no model, so the reply is a fixed text naming the configuration that
/// answered, in the shape of the container the request is written for (an OpenAI-style
/// chat completion for a `messages` request, as vLLM and LMI answer; TGI's
/// `generated_text` otherwise); `invocations_fail_in` makes it a model error (HTTP 424).
async fn invoke_endpoint(
    emulation: &Emulation<'_>,
    region: &str,
    endpoint: &str,
    request: &[u8],
) -> Result<GatewayResponse> {
    let ctx = emulation.ctx;
    let described = ctx
        .moto_json(
            region,
            "sagemaker",
            "SageMaker.DescribeEndpoint",
            "1.1",
            &json!({ "EndpointName": endpoint }),
        )
        .await?;
    if !described.status.is_success() {
        return Ok(runtime_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            &format!(
                "Endpoint {endpoint} of account {} not found.",
                LOCAL_ACCOUNT
            ),
        ));
    }
    let state = resolve(emulation, region, endpoint).await;
    let status = state.status.clone().unwrap_or_else(|| "InService".into());
    if !matches!(status.as_str(), "InService" | "Updating" | "RollingBack") {
        return Ok(runtime_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            &format!("Endpoint {endpoint} is {status}; it cannot be invoked."),
        ));
    }
    if ctx.faults.invocations_fail_in(region) {
        return Ok(runtime_error(
            StatusCode::FAILED_DEPENDENCY,
            "ModelError",
            "Received server error (500) from primary with message \"injected fault: the model failed\".",
        ));
    }
    let config = state
        .config
        .or_else(|| {
            described.body["EndpointConfigName"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let text = format!("meridian local cloud: {endpoint} in {region} on {config}");
    let chat = serde_json::from_slice::<Value>(request)
        .is_ok_and(|request| request.get("messages").is_some());
    let reply = if chat {
        json!({ "object": "chat.completion", "choices": [{ "index": 0, "message": { "role": "assistant", "content": text } }] })
    } else {
        json!({ "generated_text": text })
    };
    let mut response = GatewayResponse::json(StatusCode::OK, &reply);
    response.headers.insert(
        "x-amzn-invoked-production-variant",
        http::HeaderValue::from_static("primary"),
    );
    Ok(response)
}

fn runtime_error(status: StatusCode, code: &str, message: &str) -> GatewayResponse {
    let mut response =
        GatewayResponse::json(status, &json!({ "message": message, "Message": message }));
    if let Ok(value) = http::HeaderValue::from_str(code) {
        response.headers.insert("x-amzn-errortype", value);
    }
    response
}

fn validation_error(message: &str) -> GatewayResponse {
    GatewayResponse::aws_json_error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_phases_follow_time_alarms_and_faults() {
        use UpdatePhase::*;
        assert_eq!(update_phase(false, false, false), Updating);
        assert_eq!(update_phase(false, false, true), Updating);
        assert_eq!(update_phase(false, true, false), RollingBack);
        assert_eq!(update_phase(true, false, false), Updated);
        assert_eq!(update_phase(true, true, false), RolledBack);
        assert_eq!(update_phase(true, false, true), Failed);
        assert_eq!(update_phase(true, true, true), Failed);
    }

    #[test]
    fn only_autoscaled_variants_changing_instance_type_block_an_update() {
        let types = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(v, t)| ((*v).to_owned(), (*t).to_owned()))
                .collect()
        };
        let current = types(&[("primary", "ml.g5.2xlarge"), ("shadow", "ml.m5.large")]);
        let registered = vec!["endpoint/llm/variant/primary".to_owned()];
        let same = types(&[("primary", "ml.g5.2xlarge")]);
        assert!(autoscaled_variants_changed("llm", &current, &same, &registered).is_empty());
        let bigger = types(&[("primary", "ml.g5.4xlarge")]);
        assert_eq!(
            autoscaled_variants_changed("llm", &current, &bigger, &registered),
            ["primary"]
        );
        let renamed = types(&[("blue", "ml.g5.2xlarge")]);
        assert_eq!(
            autoscaled_variants_changed("llm", &current, &renamed, &registered),
            ["primary"]
        );
        assert!(autoscaled_variants_changed("other", &current, &bigger, &registered).is_empty());
        assert!(autoscaled_variants_changed("llm", &current, &bigger, &[]).is_empty());
    }

    #[test]
    fn runtime_invocation_paths_name_the_endpoint() {
        assert_eq!(
            invocation_target("/endpoints/llm/invocations").as_deref(),
            Some("llm")
        );
        assert_eq!(invocation_target("/endpoints//invocations"), None);
        assert_eq!(invocation_target("/"), None);
    }

    #[test]
    fn real_instance_types_replace_placeholders_by_variant() {
        let mut description = json!({ "ProductionVariants": [
            { "VariantName": "primary", "InstanceType": PLACEHOLDER_INSTANCE_TYPE },
            { "VariantName": "shadow", "InstanceType": "ml.m5.xlarge" }
        ] });
        let real = HashMap::from([("primary".to_owned(), "ml.g5.2xlarge".to_owned())]);
        restore_instance_types(&mut description, &real);
        assert_eq!(
            description["ProductionVariants"][0]["InstanceType"],
            "ml.g5.2xlarge"
        );
        assert_eq!(
            description["ProductionVariants"][1]["InstanceType"],
            "ml.m5.xlarge"
        );
    }
}
