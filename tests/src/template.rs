//! `template.yaml` read as data, CloudFormation's short-form tags (`!Ref`, `!Sub`, `!If`,
//! ...) kept as tagged values, so tests can hold the template against the code.

use std::collections::BTreeSet;

use serde_yaml_ng::{Mapping, Value};

use crate::workspace_root;

/// The parsed template.
pub struct Template {
    pub root: Value,
}

/// One `AWS::Serverless::Function` of the template.
#[derive(Debug, Clone)]
pub struct FunctionResource {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the cargo binary it runs.
    pub binary: String,
    /// The logical id of its `AWS::IAM::Role` (`Role: !GetAtt <Role>.Arn`).
    pub role: String,
    pub properties: Value,
}

/// One `Allow` statement of a role's inline policies.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: String,
    pub actions: Vec<String>,
    pub resource: Value,
}

impl Template {
    /// Reads and parses `template.yaml` at the repository root.
    pub fn load() -> Self {
        let path = workspace_root().join("template.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let root = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        Self { root }
    }

    /// `Resources`, by logical id.
    pub fn resources(&self) -> &Mapping {
        self.root
            .get("Resources")
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("template.yaml has no Resources"))
    }

    /// One resource; panics naming it when it is missing.
    pub fn resource(&self, logical_id: &str) -> &Value {
        self.resources()
            .get(logical_id)
            .unwrap_or_else(|| panic!("template.yaml has no resource {logical_id}"))
    }

    /// `Globals.Function`.
    pub fn function_globals(&self) -> &Value {
        self.root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .unwrap_or(&Value::Null)
    }

    /// Every serverless function, with its binary and role.
    pub fn functions(&self) -> Vec<FunctionResource> {
        self.resources()
            .iter()
            .filter(|(_, r)| {
                r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function")
            })
            .map(|(id, resource)| {
                let id = id.as_str().unwrap_or_default().to_owned();
                let binary = resource
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{id}: no Metadata.BuildProperties.Binary"))
                    .to_owned();
                let properties = resource.get("Properties").cloned().unwrap_or(Value::Null);
                let role = properties
                    .get("Role")
                    .and_then(|r| tagged(r, "GetAtt"))
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_suffix(".Arn"))
                    .unwrap_or_else(|| panic!("{id}: Role is not `!GetAtt <Role>.Arn`"))
                    .to_owned();
                FunctionResource {
                    logical_id: id,
                    binary,
                    role,
                    properties,
                }
            })
            .collect()
    }

    /// The `Allow` statements of a role's inline policies; a policy under `!If` counts
    /// (it is granted in the stacks where its condition holds).
    pub fn allow_statements(&self, role: &str) -> Vec<Statement> {
        let policies = self
            .resource(role)
            .get("Properties")
            .and_then(|p| p.get("Policies"))
            .and_then(Value::as_sequence)
            .unwrap_or_else(|| panic!("{role}: no Policies"));
        let mut statements = Vec::new();
        for policy in policies.iter().flat_map(conditional_branches) {
            let listed = policy
                .get("PolicyDocument")
                .and_then(|d| d.get("Statement"))
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{role}: a policy without statements"));
            for statement in listed {
                if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
                    continue;
                }
                let sid = statement
                    .get("Sid")
                    .and_then(Value::as_str)
                    .unwrap_or("(no Sid)")
                    .to_owned();
                let actions = match statement.get("Action") {
                    Some(Value::String(action)) => vec![action.clone()],
                    Some(Value::Sequence(actions)) => actions
                        .iter()
                        .map(|a| {
                            a.as_str()
                                .unwrap_or_else(|| {
                                    panic!("{role}/{sid}: an action is not a string")
                                })
                                .to_owned()
                        })
                        .collect(),
                    _ => panic!("{role}/{sid}: Action is missing or not a list of names"),
                };
                statements.push(Statement {
                    sid,
                    actions,
                    resource: statement.get("Resource").cloned().unwrap_or(Value::Null),
                });
            }
        }
        statements
    }

    /// Every action a role allows.
    pub fn allowed_actions(&self, role: &str) -> BTreeSet<String> {
        self.allow_statements(role)
            .into_iter()
            .flat_map(|s| s.actions)
            .collect()
    }
}

/// The value of a short-form tag (`!GetAtt X.Arn` -> `X.Arn`) or of its long form
/// (`Fn::GetAtt` / `Ref`).
pub fn tagged<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == name => Some(&tagged.value),
        Value::Mapping(map) if map.len() == 1 => {
            let long = if name == "Ref" {
                name.to_owned()
            } else {
                format!("Fn::{name}")
            };
            map.get(long.as_str())
        }
        _ => None,
    }
}

/// The values a list item may take: both branches of an `!If` (minus `AWS::NoValue`),
/// or the item itself.
pub fn conditional_branches(value: &Value) -> Vec<&Value> {
    match tagged(value, "If").and_then(Value::as_sequence) {
        Some(parts) if parts.len() == 3 => parts[1..]
            .iter()
            .filter(|branch| tagged(branch, "Ref").and_then(Value::as_str) != Some("AWS::NoValue"))
            .collect(),
        _ => vec![value],
    }
}

/// `value` as JSON, each `!Ref` replaced by `refs(name)`; any other intrinsic panics.
pub fn to_json(value: &Value, refs: &dyn Fn(&str) -> serde_json::Value) -> serde_json::Value {
    if let Some(name) = tagged(value, "Ref").and_then(Value::as_str) {
        return refs(name);
    }
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => serde_json::from_str(&n.to_string()).unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => items.iter().map(|i| to_json(i, refs)).collect(),
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v, refs)))
            .collect(),
        Value::Tagged(tagged) => panic!("cannot evaluate !{} here", tagged.tag),
    }
}
