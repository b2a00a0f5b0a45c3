//! Every ASL definition is well formed once its `DefinitionSubstitutions` are applied:
//! valid JSON, every transition names an existing state, every state is reachable, every
//! task calls the rollout function with a task it implements, and every `${...}` has a value.

use std::collections::{BTreeSet, HashSet};

use meridian_local::provision::{substitute, DRILL_ASL, ROLLOUT_ASL};
use serde_json::Value;

const TASKS: &[&str] = &[
    "await_replicas",
    "fast_copy",
    "copy_files",
    "fast_copy_done",
    "prepare",
    "deploy",
    "await_update",
    "status",
    "smoke_test",
    "commit",
    "rollback",
    "mark_failed",
    "gate",
];

fn rendered() -> Value {
    let text = substitute(
        ROLLOUT_ASL,
        &[
            (
                "RolloutFunctionArn",
                "arn:aws:lambda:us-east-1:123456789012:function:meridian-demo-rollout".into(),
            ),
            ("ReplicaTimeoutSeconds", "1800".into()),
            ("StatusPollSeconds", "30".into()),
            ("DeployBackstopSeconds", "900".into()),
        ],
    );
    assert!(
        !text.contains("${"),
        "a substitution has no value: {}",
        text.lines().find(|l| l.contains("${")).unwrap_or_default()
    );
    serde_json::from_str(&text).expect("valid JSON after substitution")
}

/// Checks one `States` block (and nested Map iterators); returns the task names used.
/// The transient errors of the `lambda:invoke` integration that AWS recommends every task
/// retries ("Handle transient Lambda service exceptions", Step Functions developer guide).
const LAMBDA_INVOKE_ERRORS: [&str; 5] = [
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

fn check_block(block: &Value, path: &str, function: &str, tasks: &mut BTreeSet<String>) {
    let states = block["States"]
        .as_object()
        .unwrap_or_else(|| panic!("{path}: no States"));
    let start = block["StartAt"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no StartAt"));
    assert!(
        states.contains_key(start),
        "{path}: StartAt {start} is not a state"
    );
    let mut targets: HashSet<String> = HashSet::from([start.to_owned()]);
    for (name, state) in states {
        let here = format!("{path}.{name}");
        let kind = state["Type"]
            .as_str()
            .unwrap_or_else(|| panic!("{here}: no Type"));
        let mut nexts: Vec<&str> = Vec::new();
        nexts.extend(state["Next"].as_str());
        nexts.extend(state["Default"].as_str());
        for list in ["Catch", "Choices"] {
            for entry in state[list].as_array().into_iter().flatten() {
                nexts.extend(entry["Next"].as_str());
            }
        }
        for next in &nexts {
            assert!(
                states.contains_key(*next),
                "{here}: transition to unknown state {next}"
            );
            targets.insert((*next).to_owned());
        }
        let terminal = matches!(kind, "Succeed" | "Fail") || state["End"] == true;
        assert!(
            terminal || state["Next"].is_string() || kind == "Choice",
            "{here}: neither Next nor End"
        );
        if kind == "Task" {
            assert!(
                state["Resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("arn:aws:states:::lambda:invoke")),
                "{here}: unexpected resource"
            );
            assert!(
                state["Parameters"]["FunctionName"]
                    .as_str()
                    .is_some_and(|f| f.ends_with(&format!("-{function}"))),
                "{here}: not the {function} function"
            );
            let task = state["Parameters"]["Payload"]["task"]
                .as_str()
                .unwrap_or_else(|| panic!("{here}: no task"));
            tasks.insert(task.to_owned());
            let retries: Vec<&str> = state["Retry"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| {
                    r["ErrorEquals"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                })
                .collect();
            assert!(
                retries.contains(&"Meridian.Retryable"),
                "{here}: retryable errors are not retried"
            );
            for error in LAMBDA_INVOKE_ERRORS {
                assert!(
                    retries.contains(&error),
                    "{here}: {error} is not retried (AWS's retry set for lambda:invoke)"
                );
            }
            if state["Resource"]
                .as_str()
                .is_some_and(|r| r.ends_with("waitForTaskToken"))
            {
                assert!(
                    state["TimeoutSeconds"].is_number() || state["HeartbeatSeconds"].is_number(),
                    "{here}: a wait without a timeout"
                );
            }
        }
        if kind == "Map" {
            check_block(&state["Iterator"], &here, function, tasks);
        }
    }
    for name in states.keys() {
        assert!(targets.contains(name), "{path}.{name} is unreachable");
    }
}

#[test]
fn the_rollout_definition_is_well_formed_and_uses_only_implemented_tasks() {
    let definition = rendered();
    let mut tasks = BTreeSet::new();
    check_block(&definition, "rollout", "rollout", &mut tasks);
    let implemented: BTreeSet<String> = TASKS.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        tasks, implemented,
        "every task is used, and only implemented ones"
    );
}

/// The `${Name}` placeholders of an ASL text.
fn placeholders(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

fn template() -> String {
    std::fs::read_to_string(meridian_tests::workspace_root().join("template.yaml"))
        .expect("template.yaml")
}

#[test]
fn the_template_builds_exactly_the_function_crates() {
    let template = template();
    let binaries: BTreeSet<String> = template
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("Binary:")
                .map(|b| b.trim().to_owned())
        })
        .collect();
    let crates: BTreeSet<String> =
        std::fs::read_dir(meridian_tests::workspace_root().join("functions"))
            .expect("functions/")
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("Cargo.toml").exists())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(
        binaries, crates,
        "template functions and crates under functions/ match one to one"
    );
    assert_eq!(
        template.matches("BuildMethod: rust-cargolambda").count(),
        crates.len(),
        "every function is built with cargo-lambda"
    );
}

#[test]
fn the_template_substitutes_exactly_the_placeholders_of_the_definition() {
    let template = template();
    let start = template
        .find("DefinitionSubstitutions:")
        .expect("DefinitionSubstitutions");
    let substituted: BTreeSet<String> = template[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("        "))
        .filter_map(|line| line.trim().split_once(':').map(|(name, _)| name.to_owned()))
        .collect();
    assert_eq!(substituted, placeholders(ROLLOUT_ASL));
}

/// Whether an `ErrorEquals` list of a `Retry` or `Catch` matches `error`.
fn matches_error(entries: &Value, error: &str) -> bool {
    entries.as_array().into_iter().flatten().any(|entry| {
        entry["ErrorEquals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|name| name == error || name == "States.ALL")
    })
}

/// The tasks of a block (and nested Map iterators) that let `error` end the execution:
/// neither their own `Catch` nor an enclosing Map's matches it. Panics on a `Retry` that
/// matches it.
fn uncaught_tasks(block: &Value, error: &str, enclosing_catches: bool, uncaught: &mut Vec<String>) {
    for (name, state) in block["States"].as_object().into_iter().flatten() {
        let caught = enclosing_catches || matches_error(&state["Catch"], error);
        match state["Type"].as_str() {
            Some("Task") => {
                assert!(
                    !matches_error(&state["Retry"], error),
                    "{name} retries {error}"
                );
                if !caught {
                    uncaught.push(name.clone());
                }
            }
            Some("Map") => uncaught_tasks(&state["Iterator"], error, caught, uncaught),
            _ => {}
        }
    }
}

/// Every task state of a block and its nested Map iterators.
fn task_states<'a>(block: &'a Value, path: &str, tasks: &mut Vec<(String, &'a Value)>) {
    for (name, state) in block["States"].as_object().into_iter().flatten() {
        let here = format!("{path}.{name}");
        if state["Type"] == "Task" {
            tasks.push((here.clone(), state));
        }
        if state["Type"] == "Map" {
            task_states(&state["Iterator"], &here, tasks);
        }
    }
}

/// A task's `Payload` as the function receives it: each `key.$` path replaced by a value
/// of the shape the execution's state holds there.
fn sample_payload(payload: &Value) -> Value {
    let sample = |path: &str| match path {
        "$.model" => Value::from("llama"),
        "$.version" => Value::from("2"),
        "$.region" => Value::from("eu-west-1"),
        "$$.Task.Token" => Value::from("AQCEAAAAKgAAAA"),
        "$.boundary" => Value::from("deployed"),
        "$.repair" => Value::Null,
        "$.lane" => serde_json::json!({ "index": 0, "count": 1, "next": 0 }),
        "$.error" => serde_json::json!({ "Error": "Meridian.Rejected", "Cause": "refused" }),
        other => panic!("no sample for the path {other}: add one"),
    };
    let fields = payload
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| match key.strip_suffix(".$") {
            Some(key) => (key.to_owned(), sample(value.as_str().unwrap_or_default())),
            None => (key.clone(), value.clone()),
        })
        .collect();
    Value::Object(fields)
}

/// What each task state sends is what the rollout function's typed task input takes:
/// a task name it knows, with the fields that task needs.
#[test]
fn every_rollout_task_payload_parses_as_the_functions_task_input() {
    let definition = rendered();
    let mut tasks = Vec::new();
    task_states(&definition, "rollout", &mut tasks);
    assert!(!tasks.is_empty());
    for (name, state) in tasks {
        let payload = sample_payload(&state["Parameters"]["Payload"]);
        if let Err(error) = serde_json::from_value::<meridian_rollout::TaskInput>(payload.clone()) {
            panic!("{name}: the function cannot parse {payload}: {error}");
        }
    }
}

/// The Maps of a block (and nested Map iterators) whose iterations call `task`.
fn maps_calling<'a>(block: &'a Value, task: &str, maps: &mut Vec<(String, &'a Value)>) {
    for (name, state) in block["States"].as_object().into_iter().flatten() {
        if state["Type"] == "Map" {
            let iterator = &state["Iterator"];
            let calls = iterator["States"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, inner)| inner["Parameters"]["Payload"]["task"] == task);
            if calls {
                maps.push((name.clone(), iterator));
            }
            maps_calling(iterator, task, maps);
        }
    }
}

/// Step Functions stops a failed Map's other iterations but not the Lambda invocations they
/// started, so a Map whose iterations call `UpdateEndpoint` (`deploy`) must never fail
/// while one is in flight: every task of its iterations catches every error itself, and
/// the Map ends only once each region's call has returned.
#[test]
fn no_region_is_rolled_back_while_another_regions_deploy_call_is_in_flight() {
    let definition = rendered();
    let mut maps = Vec::new();
    maps_calling(&definition, "deploy", &mut maps);
    assert!(!maps.is_empty(), "some Map deploys");
    for (map, iterator) in maps {
        for (name, state) in iterator["States"].as_object().into_iter().flatten() {
            assert_ne!(state["Type"], "Fail", "{map}.{name} fails the Map");
            if state["Type"] == "Task" {
                assert!(
                    matches_error(&state["Catch"], "States.ALL"),
                    "{map}.{name} lets an error fail the Map while other regions' deploy calls may be in flight"
                );
            }
        }
    }
}

/// The copy tasks (`functions/rollout/src/copy.rs`).
const COPY_TASKS: [&str; 3] = ["fast_copy", "copy_files", "fast_copy_done"];

/// How a Lambda invocation that ran out of time fails its task: `Sandbox.Timedout` (or
/// `Lambda.Unknown` from older runtimes) when the function hits its own timeout,
/// `States.Timeout` when the task's `TimeoutSeconds` passes first.
const TIMEOUT_ERRORS: [&str; 3] = ["Lambda.Unknown", "Sandbox.Timedout", "States.Timeout"];

/// The copy tasks of a block (and nested Map iterators), each with whether an enclosing
/// Map (or the task itself) catches every error.
fn copy_tasks<'a>(block: &'a Value, caught: bool, found: &mut Vec<(String, &'a Value, bool)>) {
    for (name, state) in block["States"].as_object().into_iter().flatten() {
        let caught = caught || matches_error(&state["Catch"], "States.ALL");
        match state["Type"].as_str() {
            Some("Task")
                if COPY_TASKS.contains(
                    &state["Parameters"]["Payload"]["task"]
                        .as_str()
                        .unwrap_or_default(),
                ) =>
            {
                found.push((name.clone(), state, caught));
            }
            Some("Map") => copy_tasks(&state["Iterator"], caught, found),
            _ => {}
        }
    }
}

/// The copy tasks are idempotent and resumable, so an invocation that ran out of time is
/// retried like a transient error (a bounded number of times), every task has a timeout
/// (a lost invocation cannot hold the rollout), and whatever outlasts the retries is
/// caught: the version is marked failed, never left with an execution failed uncaught.
#[test]
fn every_error_of_the_copy_tasks_is_retried_or_caught() {
    let definition = rendered();
    let mut found = Vec::new();
    copy_tasks(&definition, false, &mut found);
    let names: BTreeSet<&str> = found
        .iter()
        .filter_map(|(_, state, _)| state["Parameters"]["Payload"]["task"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(COPY_TASKS),
        "every copy task is in the definition"
    );
    for (name, state, caught) in found {
        for error in TIMEOUT_ERRORS {
            assert!(
                state["Retry"].as_array().into_iter().flatten().any(|r| {
                    r["ErrorEquals"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| e == error)
                        && r["MaxAttempts"]
                            .as_u64()
                            .is_some_and(|n| (1..=10).contains(&n))
                }),
                "{name} does not retry {error} (a bounded number of times)"
            );
        }
        assert!(
            state["TimeoutSeconds"].as_u64().is_some_and(|t| t > 900),
            "{name}: no TimeoutSeconds beyond Lambda's 900 s"
        );
        assert!(
            caught,
            "{name}: an error that outlasts the retries is not caught"
        );
    }
}

/// A request an AWS service refused as given (`Meridian.Rejected`: SageMaker's validation
/// error, say) is never retried, and every task but the last resort hands it to the path
/// that rolls every region back and marks the version failed with the message.
#[test]
fn a_rejected_request_is_never_retried_and_every_task_but_mark_failed_catches_it() {
    let mut uncaught = Vec::new();
    uncaught_tasks(&rendered(), "Meridian.Rejected", false, &mut uncaught);
    assert_eq!(
        uncaught,
        ["MarkFailed"],
        "MarkFailed is the last resort: when it fails, the execution fails"
    );
}

/// The drill function's tasks (`meridian_drill::Task`).
const DRILL_TASKS: &[&str] = &["start", "shift", "check", "restore"];

fn rendered_drill() -> Value {
    let text = substitute(
        DRILL_ASL,
        &[
            (
                "DrillFunctionArn",
                "arn:aws:lambda:us-east-1:123456789012:function:meridian-demo-drill".into(),
            ),
            ("DrillPollSeconds", "10".into()),
        ],
    );
    assert!(!text.contains("${"), "a substitution has no value");
    serde_json::from_str(&text).expect("valid JSON after substitution")
}

#[test]
fn the_drill_definition_is_well_formed_and_uses_only_implemented_tasks() {
    let mut tasks = BTreeSet::new();
    check_block(&rendered_drill(), "drill", "drill", &mut tasks);
    let implemented: BTreeSet<String> = DRILL_TASKS.iter().map(|t| t.to_string()).collect();
    assert_eq!(tasks, implemented);
    for task in DRILL_TASKS {
        let input = serde_json::json!({ "task": task, "drill_id": "d", "step": 0,
            "request": { "from": "a", "to": "b", "steps": [10], "bake": 1 } });
        assert!(
            serde_json::from_value::<meridian_drill::Task>(input).is_ok(),
            "the drill function parses task {task}"
        );
    }
}

/// Whatever fails once traffic may be shifted, the drill restores: every task after
/// `Start` catches every error into a restore, and `Start` (nothing shifted yet) ends the
/// execution as refused. The restores themselves are the last resort.
#[test]
fn every_drill_task_after_start_restores_on_any_failure() {
    let definition = rendered_drill();
    let mut uncaught = Vec::new();
    uncaught_tasks(&definition, "States.TaskFailed", false, &mut uncaught);
    uncaught.sort();
    assert_eq!(uncaught, ["Abort", "Restore", "RestoreAfterFailure"]);
    let states = &definition["States"];
    for (name, state) in states.as_object().into_iter().flatten() {
        for catch in state["Catch"].as_array().into_iter().flatten() {
            let next = catch["Next"].as_str().unwrap_or_default();
            let expected = if name == "Start" {
                "Refused"
            } else {
                "RestoreAfterFailure"
            };
            assert_eq!(next, expected, "{name}'s Catch");
        }
    }
}

#[test]
fn the_template_substitutes_exactly_the_drills_placeholders() {
    let template = template();
    let machine = template
        .find("  DrillStateMachine:")
        .expect("DrillStateMachine");
    let start = machine
        + template[machine..]
            .find("DefinitionSubstitutions:")
            .expect("DefinitionSubstitutions");
    let substituted: BTreeSet<String> = template[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("        "))
        .filter_map(|line| line.trim().split_once(':').map(|(name, _)| name.to_owned()))
        .collect();
    assert_eq!(substituted, placeholders(DRILL_ASL));
}

/// A new definition in `statemachines/` gets these checks too: each is listed here.
#[test]
fn every_definition_in_statemachines_is_checked() {
    let checked: BTreeSet<String> = ["rollout.asl.json", "drill.asl.json"]
        .iter()
        .map(|f| f.to_string())
        .collect();
    let found: BTreeSet<String> =
        std::fs::read_dir(meridian_tests::workspace_root().join("statemachines"))
            .expect("statemachines/")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".asl.json"))
            .collect();
    assert_eq!(found, checked);
}
