//! Least privilege, checked both ways. [`calls`] lists, per function, the AWS API calls
//! its code makes; [`required_actions`] turns them into IAM actions (the Service
//! Authorization Reference's mapping, plus each call's dependent actions, each with why).
//! Tests then hold that list against two things:
//! - `template.yaml`: each function's role allows exactly the required actions, no more
//!   (`tests/tests/template.rs`);
//! - the code: every call a function makes in any end-to-end test is in its list
//!   ([`assert_calls_declared`], run by [`crate::TestCloud`] when a test ends), and
//!   every listed call appears in the function's source (no stale entries).

use std::collections::{BTreeMap, BTreeSet};

use meridian::names::FunctionRole;
use meridian_local::calls::ApiCall;

/// The AWS API calls a function's code makes: (SigV4 signing name, operation).
pub fn calls(role: FunctionRole) -> &'static [(&'static str, &'static str)] {
    match role {
        FunctionRole::Upload => &[
            ("s3", "GetObject"),  // the manifest
            ("s3", "HeadObject"), // every file is there, with its size
            ("dynamodb", "GetItem"),
            ("dynamodb", "PutItem"),
            ("states", "StartExecution"),
            ("states", "DescribeExecution"), // the lock holder's, when a version queues
        ],
        FunctionRole::Replica => &[
            ("s3", "GetObject"),
            ("s3", "HeadObject"), // verification by S3's checksum (s3:GetObject)
            ("dynamodb", "GetItem"),
            ("dynamodb", "PutItem"),
            ("dynamodb", "UpdateItem"), // the sets of verified files
            ("dynamodb", "DeleteItem"), // the end of a reconcile sweep's claim
            ("dynamodb", "Query"),
            ("states", "SendTaskSuccess"),
            ("states", "SendTaskFailure"),
        ],
        FunctionRole::DeployWatch => &[
            ("dynamodb", "GetItem"), // the waiting task's token, in this region's replica
            ("states", "SendTaskSuccess"),
        ],
        FunctionRole::Rollout => &[
            ("dynamodb", "GetItem"),
            ("dynamodb", "PutItem"),
            ("dynamodb", "DeleteItem"),
            ("dynamodb", "Query"),
            // the fast copy (functions/rollout/src/copy.rs): the registered manifest read
            // from the primary bucket, a copy already there found by its metadata, files by
            // server-side copy, a multipart copy resumed from its upload's parts (an upload
            // of another part size aborted), the manifest written last
            ("s3", "GetObject"),
            ("s3", "HeadObject"),
            ("s3", "CopyObject"),
            ("s3", "CreateMultipartUpload"),
            ("s3", "ListMultipartUploads"),
            ("s3", "ListParts"),
            ("s3", "UploadPartCopy"),
            ("s3", "CompleteMultipartUpload"),
            ("s3", "AbortMultipartUpload"),
            ("s3", "PutObject"),
            // the image check: the fleet account's image exists in the region's registry
            ("ecr", "DescribeImages"),
            ("sagemaker", "CreateModel"),
            ("sagemaker", "CreateEndpointConfig"),
            ("sagemaker", "UpdateEndpoint"),
            ("sagemaker", "DescribeEndpoint"),
            // an update that changes an autoscaled variant's instance type: the variant's
            // instance type in both configurations, then its scalable target deregistered
            // (functions/rollout/src/autoscaled.rs)
            ("sagemaker", "DescribeEndpointConfig"),
            ("application-autoscaling", "DescribeScalableTargets"),
            ("application-autoscaling", "DeregisterScalableTarget"),
            ("sagemaker", "InvokeEndpoint"), // the smoke test (SageMaker Runtime)
            ("states", "StartExecution"),    // the next queued version
            ("states", "DescribeExecution"), // the lock holder's, on the schedule
            ("states", "SendTaskSuccess"),
            ("states", "SendTaskFailure"),
        ],
        FunctionRole::Failover => &HEALTH_CALLS[..2],
        // The failover function's calls; a standby's tick raises its own capacity, every
        // tick reads the alarms' current states, and checks for drift.
        FunctionRole::Failback => &FAILBACK_CALLS,
        FunctionRole::FrontDoor => &[
            ("dynamodb", "GetItem"),    // the region's health record, its own replica
            ("dynamodb", "UpdateItem"), // a drill's per-step counts of its shifted requests
            ("sagemaker", "DescribeEndpoint"), // is the endpoint InService
            ("sagemaker", "InvokeEndpoint"), // POST /invocations (SageMaker Runtime)
            ("sagemaker", "InvokeEndpointWithResponseStream"), // POST /invocations-stream
        ],
        FunctionRole::Drill => &[
            ("dynamodb", "GetItem"), // the drill's record and lock, the regions' records
            ("dynamodb", "PutItem"), // the lock, the shift
            ("dynamodb", "UpdateItem"), // the drill's record
            ("dynamodb", "DeleteItem"), // the shift removed, the lock released
            ("dynamodb", "Scan"),    // the registry's rollout locks
            ("monitoring", "DescribeAlarms"), // every region's alarms, in that region
        ],
    }
}

/// The failover function's calls (the first two); the failback function makes them all.
/// A drain or a restore is a write of the region's record in its own replica: no Route 53
/// call, and no call to another region (an active-passive standby raises its own capacity,
/// and every region reconciles its own Application Auto Scaling, from its own tick).
const HEALTH_CALLS: [(&str, &str); 11] = [
    ("dynamodb", "GetItem"),
    ("dynamodb", "PutItem"),
    ("application-autoscaling", "DescribeScalableTargets"),
    ("application-autoscaling", "RegisterScalableTarget"),
    ("monitoring", "DescribeAlarms"),
    // the capacity reconcile: what is in force, then only what differs
    ("application-autoscaling", "DescribeScalingPolicies"),
    ("application-autoscaling", "DescribeScheduledActions"),
    ("application-autoscaling", "PutScalingPolicy"),
    ("application-autoscaling", "DeleteScalingPolicy"),
    ("application-autoscaling", "PutScheduledAction"),
    ("application-autoscaling", "DeleteScheduledAction"),
];

/// The failback function's calls: [`HEALTH_CALLS`], then the drift check's reads, all in
/// its own region (the registry's active pointers and locks in one scan of its replica,
/// the endpoint, its configuration and each variant's model), then the primary's drift
/// repair (the regions' repair records, a query of its replica, and the repair's
/// execution started in its own region, where the rollout state machine is).
const FAILBACK_CALLS: [(&str, &str); 17] = [
    HEALTH_CALLS[0],
    HEALTH_CALLS[1],
    HEALTH_CALLS[2],
    HEALTH_CALLS[3],
    HEALTH_CALLS[4],
    HEALTH_CALLS[5],
    HEALTH_CALLS[6],
    HEALTH_CALLS[7],
    HEALTH_CALLS[8],
    HEALTH_CALLS[9],
    HEALTH_CALLS[10],
    ("dynamodb", "Scan"),
    ("sagemaker", "DescribeEndpoint"),
    ("sagemaker", "DescribeEndpointConfig"),
    ("sagemaker", "DescribeModel"),
    ("dynamodb", "Query"),
    ("states", "StartExecution"),
];

/// The IAM actions one call needs from the caller's role.
fn call_actions(service: &str, operation: &str) -> Vec<String> {
    let s3 = |actions: &[&str]| actions.iter().map(|a| format!("s3:{a}")).collect();
    match (service, operation) {
        ("s3", "GetObject" | "HeadObject") => s3(&["GetObject"]),
        (
            "s3",
            "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload",
        ) => s3(&["PutObject"]),
        // A copy reads its source and writes its destination.
        ("s3", "CopyObject" | "UploadPartCopy") => s3(&["GetObject", "PutObject"]),
        ("s3", "ListObjectsV2") => s3(&["ListBucket"]),
        ("s3", "ListMultipartUploads") => s3(&["ListBucketMultipartUploads"]),
        ("s3", "ListParts") => s3(&["ListMultipartUploadParts"]),
        ("s3", other) => s3(&[other]),
        ("monitoring", operation) => vec![format!("cloudwatch:{operation}")],
        // "your IAM permissions must allow the sagemaker:InvokeEndpoint action" (the
        // SageMaker Runtime API reference): the streaming call has no action of its own.
        ("sagemaker", "InvokeEndpointWithResponseStream") => {
            vec!["sagemaker:InvokeEndpoint".to_owned()]
        }
        (service, operation) => vec![format!("{service}:{operation}")],
    }
}

/// Actions a call needs besides its own (the reference's "dependent actions" and the
/// services' documented prerequisites), with why.
fn dependent_actions(
    role: FunctionRole,
    service: &str,
    operation: &str,
) -> &'static [&'static str] {
    match (role, service, operation) {
        // Without s3:ListBucket a missing object is a 403, not the 404 that tells the
        // upload check "missing" and the replica check "not arrived yet".
        (FunctionRole::Upload | FunctionRole::Replica, "s3", "GetObject" | "HeadObject") => {
            &["s3:ListBucket"]
        }
        // The fast copy reads the registered manifest at its recorded S3 version.
        (FunctionRole::Rollout, "s3", "GetObject") => &["s3:GetObjectVersion"],
        // The fast copy's look for a copy already there: a missing one is a 404 only with
        // s3:ListBucket.
        (FunctionRole::Rollout, "s3", "HeadObject") => &["s3:ListBucket"],
        // CopyObject copies the source's tags by default: reading and writing them.
        (_, "s3", "CopyObject") => &["s3:GetObjectTagging", "s3:PutObjectTagging"],
        // CreateModel passes the SageMaker execution role.
        (_, "sagemaker", "CreateModel") => &["iam:PassRole"],
        // Deployment guardrails read the auto-rollback alarms ("ensure that your IAM
        // execution role has permission to perform cloudwatch:DescribeAlarms").
        (_, "sagemaker", "UpdateEndpoint") => &["cloudwatch:DescribeAlarms"],
        // RegisterScalableTarget checks the caller may scale the variant, and creates
        // Application Auto Scaling's SageMaker service-linked role on first use.
        (_, "application-autoscaling", "RegisterScalableTarget") => &[
            "sagemaker:DescribeEndpoint",
            "sagemaker:DescribeEndpointConfig",
            "sagemaker:UpdateEndpointWeightsAndCapacities",
            "iam:CreateServiceLinkedRole",
        ],
        _ => &[],
    }
}

/// What the Lambda service itself needs of every function's role: its log stream.
pub const LAMBDA_LOGGING: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

/// What the Lambda service needs of a function's role besides logging: sending an event
/// that failed every retry to the function's on-failure destination (an SQS queue).
fn lambda_service_actions(role: FunctionRole) -> &'static [&'static str] {
    match role {
        FunctionRole::Failover => &["sqs:SendMessage"],
        _ => &[],
    }
}

/// Every IAM action a function's role needs: its calls, their dependent actions, logging
/// and what Lambda does with the role on its behalf.
pub fn required_actions(role: FunctionRole) -> BTreeSet<String> {
    let mut actions: BTreeSet<String> = LAMBDA_LOGGING
        .iter()
        .chain(lambda_service_actions(role))
        .map(|a| (*a).to_owned())
        .collect();
    for (service, operation) in calls(role) {
        actions.extend(call_actions(service, operation));
        actions.extend(
            dependent_actions(role, service, operation)
                .iter()
                .map(|a| (*a).to_owned()),
        );
    }
    actions
}

/// The function whose SDK clients carry `app_name` (`meridian::names::sdk_app_name`).
pub fn role_of_caller(app_name: &str) -> Option<FunctionRole> {
    FunctionRole::ALL
        .into_iter()
        .find(|role| meridian::names::sdk_app_name(*role) == app_name)
}

/// The calls each function made, from a local cloud's call log.
pub fn calls_by_function(log: &[ApiCall]) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut by_function: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for call in log {
        if let Some(caller) = call
            .caller
            .as_deref()
            .filter(|c| c.starts_with("meridian-"))
        {
            by_function
                .entry(caller.to_owned())
                .or_default()
                .insert((call.service.clone(), call.operation.clone()));
        }
    }
    by_function
}

/// Panics listing every call a Meridian function made that its list does not declare
/// (and so its role in `template.yaml` does not allow).
pub fn assert_calls_declared(log: &[ApiCall]) {
    let mut undeclared = Vec::new();
    for (caller, made) in calls_by_function(log) {
        let Some(role) = role_of_caller(&caller) else {
            undeclared.push(format!("{caller}: not a Meridian function"));
            continue;
        };
        for (service, operation) in made {
            if !calls(role).contains(&(service.as_str(), operation.as_str())) {
                undeclared.push(format!("{caller} called {service} {operation}"));
            }
        }
    }
    assert!(
        undeclared.is_empty(),
        "calls missing from tests/src/iam.rs (and so from the function's IAM role):\n  {}",
        undeclared.join("\n  ")
    );
}
