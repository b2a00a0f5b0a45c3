//! `template.yaml` held against the code: each function's IAM role allows exactly the
//! actions its calls need; each function's event source delivers the event type its
//! handler parses (AWS's documented sample events, through the rule's pattern); the
//! runtime and architecture are the ones the build produces. cfn-lint and
//! `sam validate --lint` (run by `scripts/lint-template`) check the rest of the template.

use std::collections::BTreeSet;
use std::path::Path;

use meridian::fleet::{Fleet, RegionSpec};
use meridian::names::{self, FunctionRole};
use meridian_tests::event_pattern::matches;
use meridian_tests::template::{tagged, to_json, FunctionResource, Template};
use meridian_tests::{example_fleet, iam, workspace_root};
use serde_json::{json, Value};

fn role_of(function: &FunctionResource) -> FunctionRole {
    FunctionRole::ALL
        .into_iter()
        .find(|role| role.binary() == function.binary)
        .unwrap_or_else(|| {
            panic!(
                "{}: no function is built as {}",
                function.logical_id, function.binary
            )
        })
}

fn set(actions: &BTreeSet<String>) -> String {
    actions.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[test]
fn each_function_role_allows_exactly_the_actions_its_calls_need() {
    let template = Template::load();
    let functions = template.functions();
    assert_eq!(
        functions.len(),
        FunctionRole::ALL.len(),
        "one template function per role"
    );
    let mut problems = Vec::new();
    for function in &functions {
        let role = role_of(function);
        let allowed = template.allowed_actions(&function.role);
        let required = iam::required_actions(role);
        let missing: BTreeSet<String> = required.difference(&allowed).cloned().collect();
        let extra: BTreeSet<String> = allowed.difference(&required).cloned().collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} ({}) lacks {}",
                function.logical_id,
                function.role,
                set(&missing)
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{} ({}) allows {} that no call of its code needs",
                function.logical_id,
                function.role,
                set(&extra)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Actions that IAM cannot limit to a resource: the only ones a `Resource: "*"` may allow.
const NO_RESOURCE_LEVEL_PERMISSIONS: &[&str] = &[
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScheduledActions",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    // The state machine's log delivery (Step Functions developer guide: these CloudWatch
    // Logs actions support no resource types).
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
];

#[test]
fn no_role_allows_a_wildcard_action_or_any_resource_where_iam_can_scope_it() {
    let template = Template::load();
    let roles: Vec<String> = template
        .resources()
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(|t| t.as_str()) == Some("AWS::IAM::Role"))
        .filter_map(|(id, _)| id.as_str().map(str::to_owned))
        .collect();
    assert!(
        roles.len() >= 8,
        "expected every role of the template, found {roles:?}"
    );
    let mut problems = Vec::new();
    for role in &roles {
        for statement in template.allow_statements(role) {
            for action in &statement.actions {
                if action.contains('*') {
                    problems.push(format!(
                        "{role}/{}: wildcard action {action}",
                        statement.sid
                    ));
                }
            }
            if statement.resource.as_str() == Some("*") {
                for action in &statement.actions {
                    if !NO_RESOURCE_LEVEL_PERMISSIONS.contains(&action.as_str()) {
                        problems.push(format!(
                            "{role}/{}: {action} on every resource, but IAM can scope it",
                            statement.sid
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What Step Functions needs to deliver a state machine's logs to CloudWatch Logs.
const LOG_DELIVERY: [&str; 8] = [
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
];

#[test]
fn the_state_machine_may_invoke_the_rollout_function_and_deliver_its_logs_and_nothing_else() {
    let template = Template::load();
    let statements = template.allow_statements("RolloutStateMachineRole");
    let actions = template.allowed_actions("RolloutStateMachineRole");
    let mut expected: Vec<&str> = LOG_DELIVERY.to_vec();
    expected.push("lambda:InvokeFunction");
    expected.sort_unstable();
    assert_eq!(set(&actions), expected.join(", "));
    for statement in statements {
        if statement.actions.iter().any(|a| a.starts_with("logs:")) {
            continue;
        }
        let resource = serde_yaml_ng::to_string(&statement.resource).unwrap_or_default();
        assert!(
            resource.contains("RolloutFunction"),
            "{}: invokes {resource}, not the rollout function",
            statement.sid
        );
    }
}

#[test]
fn the_state_machine_logs_its_errors_with_their_data() {
    let template = Template::load();
    let logging = &template.resource("RolloutStateMachine")["Properties"]["Logging"];
    assert_eq!(logging["Level"].as_str(), Some("ERROR"), "{logging:?}");
    assert_eq!(logging["IncludeExecutionData"].as_bool(), Some(true));
    let destination = serde_yaml_ng::to_string(&logging["Destinations"]).unwrap_or_default();
    assert!(
        destination.contains("RolloutStateMachineLogGroup"),
        "logs go to {destination}"
    );
}

/// `.get_item()` for `GetItem`: the SDK's method name of an operation.
fn method_of(operation: &str) -> String {
    let mut method = String::from(".");
    for (i, c) in operation.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            method.push('_');
        }
        method.push(c.to_ascii_lowercase());
    }
    method + "()"
}

/// Every `.rs` file under `dir`, submodules' folders included.
fn sources(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.is_dir() {
            text += &sources(&path);
        } else if path.extension().is_some_and(|e| e == "rs") {
            text += &std::fs::read_to_string(&path).unwrap_or_default();
        }
    }
    text
}

/// The `meridian-<function>` crates a function crate's Cargo.toml depends on.
fn function_crate_dependencies(role: FunctionRole) -> Vec<&'static str> {
    let manifest = workspace_root()
        .join("functions")
        .join(role.binary())
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    FunctionRole::ALL
        .into_iter()
        .map(FunctionRole::binary)
        .filter(|binary| {
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("meridian-{binary}")))
        })
        .collect()
}

/// Functions share code through `shared/` only: a function crate that imported another
/// would link, and be tested against, code that is not its own.
#[test]
fn no_function_crate_imports_another() {
    for role in FunctionRole::ALL {
        assert_eq!(
            function_crate_dependencies(role),
            Vec::<&str>::new(),
            "functions/{}/Cargo.toml",
            role.binary()
        );
    }
}

#[test]
fn every_listed_call_is_made_somewhere_in_the_functions_code() {
    let root = workspace_root();
    let shared = sources(&root.join("shared/src"));
    let mut stale = Vec::new();
    for role in FunctionRole::ALL {
        let own = sources(&root.join("functions").join(role.binary()).join("src"));
        for (service, operation) in iam::calls(role) {
            let method = method_of(operation);
            if !own.contains(&method) && !shared.contains(&method) {
                stale.push(format!(
                    "{}: {service} {operation} ({method})",
                    role.binary()
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "listed in tests/src/iam.rs but never called:\n{}",
        stale.join("\n")
    );
}

#[test]
fn every_function_runs_on_provided_al2023_arm64_built_by_cargo_lambda() {
    let template = Template::load();
    let globals = template.function_globals();
    assert_eq!(
        globals.get("Runtime").and_then(|v| v.as_str()),
        Some("provided.al2023")
    );
    let architectures = to_json(
        globals.get("Architectures").unwrap_or(&Default::default()),
        &|_| Value::Null,
    );
    assert_eq!(architectures, json!(["arm64"]));
    for function in template.functions() {
        for overridden in ["Runtime", "Architectures", "PackageType"] {
            assert!(
                function.properties.get(overridden).is_none(),
                "{} overrides {overridden}",
                function.logical_id
            );
        }
        assert_eq!(
            function.properties.get("Handler").and_then(|v| v.as_str()),
            Some("bootstrap"),
            "{}: a provided runtime runs `bootstrap`",
            function.logical_id
        );
        let method = template
            .resource(&function.logical_id)
            .get("Metadata")
            .and_then(|m| m.get("BuildMethod"))
            .and_then(|v| v.as_str());
        assert_eq!(method, Some("rust-cargolambda"), "{}", function.logical_id);
    }
}

/// The example fleet's value of each template parameter a rule pattern refers to.
fn parameter(fleet: &Fleet, region: &RegionSpec, name: &str) -> Value {
    match name {
        "RegionalBucket" => json!(region.bucket),
        "PrimaryBucket" => json!(fleet.primary_bucket),
        "AlarmNames" => json!(region.alarms),
        "EndpointName" => json!(region.endpoint),
        "RolloutStateMachine" => json!(meridian_local::hosted::state_machine_arn(fleet)),
        other => panic!("a rule pattern refers to {other}, which this test cannot evaluate"),
    }
}

/// `!Sub "${FleetName}-..."` with the fleet's name.
fn name_of(value: Option<&serde_yaml_ng::Value>, fleet: &Fleet) -> String {
    value
        .and_then(|v| tagged(v, "Sub"))
        .and_then(|v| v.as_str())
        .map(|s| s.replace("${FleetName}", &fleet.name))
        .unwrap_or_default()
}

/// A documented sample event (tests/fixtures/events), renamed to the example fleet.
fn sample(file: &str) -> Value {
    let path = workspace_root().join("tests/fixtures/events").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn object_created(bucket: &str, key: &str, region: &str) -> Value {
    let mut event = sample("s3-object-created.json");
    event["region"] = json!(region);
    event["resources"] = json!([format!("arn:aws:s3:::{bucket}")]);
    event["detail"]["bucket"]["name"] = json!(bucket);
    event["detail"]["object"]["key"] = json!(key);
    event
}

fn alarm_state_change(alarm: &str, region: &str) -> Value {
    let mut event = sample("cloudwatch-alarm-state-change.json");
    event["region"] = json!(region);
    event["resources"] = json!([format!(
        "arn:aws:cloudwatch:{region}:123456789012:alarm:{alarm}"
    )]);
    event["detail"]["alarmName"] = json!(alarm);
    event
}

/// The events that must reach a function and the near misses that must not.
fn samples(fleet: &Fleet, region: &RegionSpec, role: FunctionRole) -> (Vec<Value>, Vec<Value>) {
    let key = "models/llama/2026-11-24.1/manifest.json";
    match role {
        FunctionRole::Upload => {
            let primary = &fleet.primary_bucket;
            let mut deleted = object_created(primary, key, &region.name);
            deleted["detail-type"] = json!("Object Deleted");
            (
                vec![object_created(primary, key, &region.name)],
                vec![
                    object_created(&region.bucket, key, &region.name),
                    object_created(primary, "logs/today.txt", &region.name),
                    object_created(
                        primary,
                        "models/llama/2026-11-24.1/shards/part-00001.bin",
                        &region.name,
                    ),
                    deleted,
                ],
            )
        }
        FunctionRole::Replica => (
            vec![
                object_created(&region.bucket, key, &region.name),
                object_created(
                    &region.bucket,
                    "models/llama/2026-11-24.1/weights/0.bin",
                    &region.name,
                ),
            ],
            vec![object_created(&fleet.primary_bucket, key, &region.name)],
        ),
        FunctionRole::Failover => (
            region
                .alarms
                .iter()
                .map(|a| alarm_state_change(a, &region.name))
                .collect(),
            vec![alarm_state_change("someone-elses-alarm", &region.name)],
        ),
        FunctionRole::DeployWatch => {
            let endpoint_event = |file: &str, endpoint: &str| {
                let mut event = sample(file);
                event["region"] = json!(region.name);
                event["detail"]["EndpointName"] = json!(endpoint);
                event
            };
            let files = [
                "sagemaker-endpoint-state-change.json",
                "sagemaker-endpoint-deployment-state-change.json",
            ];
            (
                files
                    .iter()
                    .map(|f| endpoint_event(f, &region.endpoint))
                    .collect(),
                files
                    .iter()
                    .map(|f| endpoint_event(f, "someone-elses-endpoint"))
                    .collect(),
            )
        }
        FunctionRole::Rollout => {
            let arn = meridian_local::hosted::state_machine_arn(fleet);
            let ended = |status: &str, state_machine: &str| {
                let mut event = sample("stepfunctions-execution-status-change.json");
                event["region"] = json!(fleet.primary_region);
                event["detail"]["status"] = json!(status);
                event["detail"]["stateMachineArn"] = json!(state_machine);
                event
            };
            (
                ["ABORTED", "TIMED_OUT", "FAILED"]
                    .iter()
                    .map(|s| ended(s, &arn))
                    .collect(),
                vec![
                    ended("SUCCEEDED", &arn),
                    ended("RUNNING", &arn),
                    ended("ABORTED", &format!("{arn}-someone-elses")),
                ],
            )
        }
        FunctionRole::Failback | FunctionRole::FrontDoor | FunctionRole::Drill => {
            (Vec::new(), Vec::new())
        }
    }
}

/// Parses `event` as the type the function's handler parses.
fn parse_as_handler_type(role: FunctionRole, event: &Value) -> Result<(), String> {
    let parsed = match role {
        FunctionRole::Upload => {
            serde_json::from_value::<meridian_upload::Event>(event.clone()).map(drop)
        }
        FunctionRole::Replica => {
            serde_json::from_value::<meridian_replica::Event>(event.clone()).map(drop)
        }
        FunctionRole::Failover => {
            serde_json::from_value::<meridian_failover::AlarmEvent>(event.clone()).map(drop)
        }
        FunctionRole::Failback => {
            serde_json::from_value::<meridian_failback::TickEvent>(event.clone()).map(drop)
        }
        FunctionRole::DeployWatch => {
            serde_json::from_value::<meridian::endpoint_events::EndpointEvent>(event.clone())
                .map(drop)
        }
        FunctionRole::Rollout => {
            serde_json::from_value::<meridian_rollout::execution_end::RolloutEvent>(event.clone())
                .map(drop)
        }
        FunctionRole::Drill => return Err("the drill function takes no events".into()),
        FunctionRole::FrontDoor => {
            return Err("the front door takes HTTP requests from its API, not events".into())
        }
    };
    parsed.map_err(|e| e.to_string())
}

#[test]
fn each_event_source_delivers_the_event_type_its_handler_parses() {
    let template = Template::load();
    let fleet = example_fleet();
    let region = fleet
        .region("eu-west-1")
        .cloned()
        .unwrap_or_else(|| panic!("the example fleet has eu-west-1"));
    for function in template.functions() {
        let role = role_of(&function);
        let events: Vec<(String, serde_yaml_ng::Value)> = function
            .properties
            .get("Events")
            .and_then(|e| e.as_mapping())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if role == FunctionRole::Drill {
            assert!(
                events.is_empty(),
                "{}: the function is its state machine's alone",
                function.logical_id
            );
            continue;
        }
        if role == FunctionRole::FrontDoor {
            assert!(
                events.is_empty(),
                "the front door is its REST API's alone (the_front_door_is_a_streaming_rest_api)"
            );
            continue;
        }
        assert!(
            !events.is_empty(),
            "{}: no event source",
            function.logical_id
        );
        let kinds: BTreeSet<&str> = events
            .iter()
            .map(|(_, e)| e.get("Type").and_then(|t| t.as_str()).unwrap_or_default())
            .collect();
        assert_eq!(
            kinds.len(),
            events.len(),
            "{}: at most one event source of each type (their names derive from the function)",
            function.logical_id
        );
        for (name, event) in &events {
            check_event_source(&fleet, &region, role, &function.logical_id, name, event);
        }
    }
}

/// One event source of a function: its rule or schedule named as the local cloud names it,
/// routing as the local cloud routes, and delivering what the handler parses.
fn check_event_source(
    fleet: &Fleet,
    region: &RegionSpec,
    role: FunctionRole,
    logical_id: &str,
    name: &str,
    event: &serde_yaml_ng::Value,
) {
    let kind = event
        .get("Type")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let properties = event.get("Properties").cloned().unwrap_or_default();
    let context = format!("{logical_id}.Events.{name}");
    match kind {
        "EventBridgeRule" => {
            assert_eq!(
                name_of(properties.get("RuleName"), fleet),
                names::event_rule_name(&fleet.name, role),
                "{context}: RuleName"
            );
            let pattern = to_json(
                properties
                    .get("Pattern")
                    .unwrap_or_else(|| panic!("{context}: no Pattern")),
                &|name| parameter(fleet, region, name),
            );
            let local = meridian_local::provision::event_pattern(fleet, region, role);
            assert_eq!(
                pattern, local,
                "{context}: the local cloud must route as AWS does"
            );
            let (delivered, missed) = samples(fleet, region, role);
            assert!(!delivered.is_empty(), "{context}: no sample events");
            for event in &delivered {
                assert!(
                    matches(&pattern, event),
                    "{context}: pattern {pattern} misses {event}"
                );
                if let Err(error) = parse_as_handler_type(role, event) {
                    panic!(
                        "{context}: the handler cannot parse a matching event: {error}\n{event}"
                    );
                }
            }
            for event in &missed {
                assert!(
                    !matches(&pattern, event),
                    "{context}: pattern {pattern} matches {event}"
                );
            }
        }
        "Schedule" => {
            let schedule = match role {
                FunctionRole::Failback => names::FAILBACK_SCHEDULE,
                FunctionRole::Rollout => names::ROLLOUT_RECONCILE_SCHEDULE,
                FunctionRole::Replica => names::REPLICA_RECONCILE_SCHEDULE,
                other => panic!("{context}: {other:?} is not scheduled"),
            };
            assert_eq!(
                name_of(properties.get("Name"), fleet),
                names::schedule_rule_name(&fleet.name, role),
                "{context}: Name"
            );
            let expression = properties
                .get("Schedule")
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            assert_eq!(expression, schedule, "{context}: as in the local cloud");
            if let Err(error) = meridian_local::schedules::parse_schedule(expression) {
                panic!("{context}: {expression:?} is not a schedule expression: {error}");
            }
            let tick = sample("scheduled-event.json");
            if let Err(error) = parse_as_handler_type(role, &tick) {
                panic!("{context}: the handler cannot parse a scheduled event: {error}");
            }
        }
        other => panic!("{context}: event source type {other} is not tested"),
    }
}

#[test]
fn a_handler_type_refuses_the_other_functions_events() {
    let fleet = example_fleet();
    let region = &fleet.regions[0];
    let object = object_created(&region.bucket, "models/m/1/manifest.json", &region.name);
    let alarm = alarm_state_change(&region.alarms[0], &region.name);
    assert!(parse_as_handler_type(FunctionRole::Failover, &object).is_err());
    assert!(parse_as_handler_type(FunctionRole::Replica, &alarm).is_err());
    assert!(parse_as_handler_type(FunctionRole::Upload, &alarm).is_err());
}

/// An alarm event the failover function fails to handle after Lambda's retries is kept,
/// not dropped: it goes to a queue, an alarm watches the queue, and the role may send to it.
#[test]
fn the_failover_function_keeps_events_it_failed_to_handle() {
    let template = Template::load();
    let failover = template
        .functions()
        .into_iter()
        .find(|f| f.binary == "failover")
        .expect("the failover function");
    let on_failure = failover
        .properties
        .get("EventInvokeConfig")
        .and_then(|c| c.get("DestinationConfig"))
        .and_then(|c| c.get("OnFailure"))
        .expect("an on-failure destination");
    assert_eq!(on_failure.get("Type").and_then(|t| t.as_str()), Some("SQS"));
    let queue = on_failure
        .get("Destination")
        .and_then(|d| tagged(d, "GetAtt"))
        .and_then(|d| d.as_str())
        .and_then(|d| d.strip_suffix(".Arn"))
        .expect("Destination: !GetAtt <queue>.Arn");
    assert_eq!(
        template
            .resource(queue)
            .get("Type")
            .and_then(|t| t.as_str()),
        Some("AWS::SQS::Queue")
    );
    let watched = template.resources().values().any(|resource| {
        resource.get("Type").and_then(|t| t.as_str()) == Some("AWS::CloudWatch::Alarm")
            && resource
                .get("Properties")
                .and_then(|p| p.get("Dimensions"))
                .and_then(|d| d.as_sequence())
                .into_iter()
                .flatten()
                .filter_map(|d| d.get("Value").and_then(|v| tagged(v, "GetAtt")))
                .any(|v| v.as_str() == Some(&format!("{queue}.QueueName")))
    });
    assert!(watched, "an alarm on {queue}");
    let sends = template
        .allow_statements(&failover.role)
        .into_iter()
        .any(|s| {
            s.actions.iter().any(|a| a == "sqs:SendMessage")
                && tagged(&s.resource, "GetAtt").and_then(|r| r.as_str())
                    == Some(&format!("{queue}.Arn"))
        });
    assert!(sends, "{} may send to {queue}", failover.role);
}

/// Route 53's control plane lives in us-east-1 only; a drain that needed it would fail in
/// the incident it exists for. Every Route 53 IAM action is a control-plane action (the
/// data plane, DNS answers and health checks, needs no IAM), so no role may hold any: a
/// drain is a write of the region's record in its own replica, and Route 53's checkers
/// follow the front door's /health.
#[test]
fn no_role_holds_a_route53_action_and_no_function_calls_route53() {
    let template = Template::load();
    let mut problems = Vec::new();
    for (id, resource) in template.resources() {
        if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::IAM::Role") {
            continue;
        }
        let role = id.as_str().unwrap_or_default();
        for statement in template.allow_statements(role) {
            for action in &statement.actions {
                if action.to_ascii_lowercase().starts_with("route53") {
                    problems.push(format!("{role}/{}: {action}", statement.sid));
                }
            }
        }
    }
    for role in FunctionRole::ALL {
        for (service, operation) in iam::calls(role) {
            if service.starts_with("route53") {
                problems.push(format!("{} calls {service} {operation}", role.binary()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "Route 53 control-plane access:\n{}",
        problems.join("\n")
    );
}

/// `!Sub "${FleetName}-..."`-style text with the example fleet's name and `region`.
fn substituted(value: Option<&serde_yaml_ng::Value>, fleet: &Fleet, region: &str) -> String {
    value
        .and_then(|v| tagged(v, "Sub"))
        .and_then(|v| v.as_str())
        .map(|s| {
            s.replace("${FleetName}", &fleet.name)
                .replace("${AWS::Region}", region)
        })
        .unwrap_or_default()
}

fn properties<'t>(template: &'t Template, id: &str) -> &'t serde_yaml_ng::Value {
    let resource = template.resource(id);
    assert_eq!(
        resource.get("Condition").and_then(|c| c.as_str()),
        Some("IsRegional"),
        "{id} belongs to every region's stack"
    );
    resource
        .get("Properties")
        .unwrap_or_else(|| panic!("{id} has no Properties"))
}

fn ref_of(value: Option<&serde_yaml_ng::Value>) -> Option<&str> {
    value
        .and_then(|v| tagged(v, "Ref"))
        .and_then(|v| v.as_str())
}

/// No health check is made by hand any more: each regional stack creates the HTTPS health
/// check of its own front door's /health, with the fleet file's interval and threshold,
/// and its region's record behind it; the control stack has no DNS resource.
#[test]
fn each_regional_stack_creates_its_health_check_and_record() {
    let template = Template::load();
    let fleet = example_fleet();

    let check = properties(&template, "FrontDoorHealthCheck");
    let config = check.get("HealthCheckConfig").cloned().unwrap_or_default();
    assert_eq!(config.get("Type").and_then(|t| t.as_str()), Some("HTTPS"));
    assert_eq!(
        substituted(config.get("FullyQualifiedDomainName"), &fleet, "eu-west-1"),
        "${FrontDoorApi}.execute-api.eu-west-1.${AWS::URLSuffix}",
        "the check probes this region's own API, not the fleet's name"
    );
    assert_eq!(
        substituted(config.get("ResourcePath"), &fleet, "eu-west-1"),
        "/${FrontDoorStage}/health"
    );
    assert_eq!(
        ref_of(config.get("RequestInterval")),
        Some("HealthCheckInterval")
    );
    assert_eq!(
        ref_of(config.get("FailureThreshold")),
        Some("HealthCheckFailureThreshold")
    );
    let name = check
        .get("HealthCheckTags")
        .and_then(|t| t.as_sequence())
        .into_iter()
        .flatten()
        .find(|t| t.get("Key").and_then(|k| k.as_str()) == Some("Name"))
        .map(|t| substituted(t.get("Value"), &fleet, "eu-west-1"));
    assert_eq!(
        name,
        Some(names::health_check_reference(&fleet.name, "eu-west-1"))
    );

    let record = properties(&template, "RegionRecord");
    assert_eq!(
        ref_of(record.get("HealthCheckId")),
        Some("FrontDoorHealthCheck")
    );
    assert_eq!(ref_of(record.get("SetIdentifier")), Some("AWS::Region"));
    assert_eq!(ref_of(record.get("Name")), Some("RecordName"));
    assert_eq!(ref_of(record.get("TTL")), Some("RecordTtl"));
    let target = record
        .get("ResourceRecords")
        .and_then(|r| r.as_sequence())
        .and_then(|r| r.first())
        .and_then(|r| tagged(r, "GetAtt"))
        .and_then(|r| r.as_str());
    assert_eq!(target, Some("FrontDoorDomain.RegionalDomainName"));
    let domain = properties(&template, "FrontDoorDomain");
    assert_eq!(ref_of(domain.get("DomainName")), Some("RecordName"));
    assert_eq!(
        ref_of(domain.get("RegionalCertificateArn")),
        Some("CertificateArn")
    );

    for (id, resource) in template.resources() {
        let kind = resource
            .get("Type")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        if kind.starts_with("AWS::Route53::") {
            assert_eq!(
                resource.get("Condition").and_then(|c| c.as_str()),
                Some("IsRegional"),
                "{id:?} ({kind}): DNS is each region's own"
            );
        }
    }
    let parameters = template.root.get("Parameters").cloned().unwrap_or_default();
    for gone in ["HealthCheckId", "HealthCheckIds", "RecordTargets"] {
        assert!(parameters.get(gone).is_none(), "parameter {gone} is gone");
    }
}

/// The template's DNS defaults are the fleet file's, so a stack deployed with them keeps
/// the recovery time docs/deploy.md computes.
#[test]
fn the_dns_parameters_default_to_the_fleet_files_defaults() {
    let template = Template::load();
    let parameters = template.root.get("Parameters").cloned().unwrap_or_default();
    let default = |name: &str| {
        parameters
            .get(name)
            .and_then(|p| p.get("Default"))
            .and_then(|d| d.as_u64())
            .unwrap_or_else(|| panic!("{name}: no numeric Default"))
    };
    assert_eq!(
        default("RecordTtl"),
        u64::from(meridian::fleet::DEFAULT_TTL_SECONDS)
    );
    assert_eq!(
        default("HealthCheckInterval"),
        u64::from(meridian::fleet::DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS)
    );
    assert_eq!(
        default("HealthCheckFailureThreshold"),
        u64::from(meridian::fleet::DEFAULT_FAILURE_THRESHOLD)
    );
    let intervals = to_json(
        parameters
            .get("HealthCheckInterval")
            .and_then(|p| p.get("AllowedValues"))
            .unwrap_or(&Default::default()),
        &|_| Value::Null,
    );
    assert_eq!(intervals, json!(meridian::fleet::HEALTH_CHECK_INTERVALS));
    let threshold = parameters
        .get("HealthCheckFailureThreshold")
        .cloned()
        .unwrap_or_default();
    let bound = |key: &str| threshold.get(key).and_then(|v| v.as_u64());
    assert_eq!(
        (bound("MinValue"), bound("MaxValue")),
        (
            Some(u64::from(*meridian::fleet::FAILURE_THRESHOLDS.start())),
            Some(u64::from(*meridian::fleet::FAILURE_THRESHOLDS.end()))
        )
    );
}

/// The front door sits behind a regional REST API whose Lambda proxy integration streams
/// (InvokeWithResponseStream): only REST APIs stream, and a long answer must reach the
/// caller as it is generated. The failback function knows the front door's URL.
#[test]
fn the_front_door_is_a_streaming_rest_api() {
    let template = Template::load();
    let api = properties(&template, "FrontDoorApi");
    let types = to_json(
        api.get("EndpointConfiguration")
            .and_then(|e| e.get("Types"))
            .unwrap_or(&Default::default()),
        &|_| Value::Null,
    );
    assert_eq!(types, json!(["REGIONAL"]));

    let method = properties(&template, "FrontDoorProxyMethod");
    let integration = method.get("Integration").cloned().unwrap_or_default();
    let field = |key: &str| integration.get(key).and_then(|v| v.as_str());
    assert_eq!(field("Type"), Some("AWS_PROXY"));
    assert_eq!(field("ResponseTransferMode"), Some("STREAM"));
    let uri = integration
        .get("Uri")
        .and_then(|u| tagged(u, "Sub"))
        .and_then(|u| u.as_str())
        .unwrap_or_default();
    assert!(
        uri.contains(
            "/2021-11-15/functions/${FrontDoorFunction.Arn}/response-streaming-invocations"
        ),
        "{uri}"
    );

    let front_door = template
        .functions()
        .into_iter()
        .find(|f| f.binary == FunctionRole::FrontDoor.binary())
        .expect("the front door function");
    assert_eq!(front_door.logical_id, "FrontDoorFunction");
    let permission = properties(&template, "FrontDoorInvokePermission");
    assert_eq!(
        permission.get("Principal").and_then(|p| p.as_str()),
        Some("apigateway.amazonaws.com")
    );

    let failback = template
        .functions()
        .into_iter()
        .find(|f| f.binary == FunctionRole::Failback.binary())
        .expect("the failback function");
    let url = failback
        .properties
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(|v| v.get("FRONT_DOOR_URL"))
        .and_then(|u| tagged(u, "Sub"))
        .and_then(|u| u.as_str())
        .unwrap_or_default();
    assert_eq!(
        url,
        "https://${FrontDoorApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${FrontDoorStage}"
    );
}
