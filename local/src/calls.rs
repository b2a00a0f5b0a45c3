//! The local cloud's call log: which caller made which AWS API call, as CloudTrail records
//! it (`userAgent`'s `app/...`, `eventSource`, `eventName`). Meridian's functions name
//! themselves in their user agent (`meridian::names::sdk_app_name`), so tests can hold
//! every call a function makes against that function's IAM policy in `template.yaml`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http::Method;

use crate::functions::lambda_invoke_target;
use crate::http::{CredentialScope, GatewayRequest};

/// One distinct API call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiCall {
    /// The `app/<name>` of the caller's user agent; `None` for callers that set none
    /// (the CLI, tests, the local cloud's own provisioning).
    pub caller: Option<String>,
    pub region: String,
    /// The SigV4 signing name (`s3`, `dynamodb`, `states`, `monitoring`, ...).
    pub service: String,
    /// The API operation (`GetObject`, `UpdateItem`, ...); `unknown: METHOD /path` when
    /// the gateway cannot tell, so a check against a policy fails instead of passing.
    pub operation: String,
    /// Refused by an injected fault (a region down, Route 53's control plane down): the
    /// caller made the call, but no service answered it.
    pub refused: bool,
}

/// The distinct calls seen so far, each with how often it was made (bounded by the
/// distinct calls, so a long-running local cloud stays bounded).
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<BTreeMap<ApiCall, u64>>,
}

impl CallLog {
    /// Records `request` if it is a signed AWS API call; `refused` if a fault refused it.
    pub fn record(&self, request: &GatewayRequest, scope: Option<&CredentialScope>, refused: bool) {
        let Some(scope) = scope else { return };
        let call = ApiCall {
            caller: caller(request),
            region: scope.region.clone(),
            service: scope.service.clone(),
            operation: operation(request, &scope.service),
            refused,
        };
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(call)
            .or_default() += 1;
    }

    /// Every distinct call so far.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every distinct call so far with how many times it was made: a test compares two
    /// snapshots to tell whether a step made a call.
    pub fn counts(&self) -> BTreeMap<ApiCall, u64> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times `call` was made so far.
    pub fn count(&self, call: &ApiCall) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(call)
            .copied()
            .unwrap_or(0)
    }
}

/// The `app/<name>` token of the SDK's user agent.
fn caller(request: &GatewayRequest) -> Option<String> {
    ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|name| request.headers.get(*name)?.to_str().ok())
        .flat_map(str::split_whitespace)
        .find_map(|token| token.strip_prefix("app/"))
        .map(str::to_owned)
}

fn operation(request: &GatewayRequest, service: &str) -> String {
    if let Some(target) = request.target() {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if let Some((_, operation)) = crate::cbor::rpc_v2_target(request.path()) {
        return operation.to_owned();
    }
    if lambda_invoke_target(request.path()).is_some() {
        return "Invoke".to_owned();
    }
    // The SDK names most S3 operations itself in an `x-id` query parameter.
    if let Some(id) = (service == "s3")
        .then(|| {
            request
                .query()
                .split('&')
                .find_map(|pair| pair.strip_prefix("x-id="))
        })
        .flatten()
    {
        return id.to_owned();
    }
    let known = match service {
        "s3" => s3_operation(request),
        "route53" => route53_operation(&request.method, request.path()),
        "sagemaker" => (request.method == Method::POST
            && request.path().starts_with("/endpoints/")
            && request.path().ends_with("/invocations"))
        .then_some("InvokeEndpoint"),
        _ => None,
    };
    match known {
        Some(operation) => operation.to_owned(),
        None => query_action(request)
            .unwrap_or_else(|| format!("unknown: {} {}", request.method, request.path())),
    }
}

/// The query protocol's `Action=...` (in the query string or the form body).
fn query_action(request: &GatewayRequest) -> Option<String> {
    let body = std::str::from_utf8(&request.body).unwrap_or_default();
    [request.query(), body]
        .into_iter()
        .flat_map(|params| params.split('&'))
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_owned)
}

/// S3's REST operations, path style (`/bucket/key`), as the SDK sends them.
fn s3_operation(request: &GatewayRequest) -> Option<&'static str> {
    let has = |name: &str| {
        request
            .query()
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    let is_object = request
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let copies = request.headers.contains_key("x-amz-copy-source");
    let operation = match (&request.method, is_object) {
        (&Method::GET, true) if has("tagging") => "GetObjectTagging",
        (&Method::GET, true) if has("uploadId") => "ListParts",
        (&Method::GET, true) => "GetObject",
        (&Method::HEAD, true) => "HeadObject",
        (&Method::PUT, true) if has("partNumber") && copies => "UploadPartCopy",
        (&Method::PUT, true) if has("partNumber") => "UploadPart",
        (&Method::PUT, true) if has("tagging") => "PutObjectTagging",
        (&Method::PUT, true) if copies => "CopyObject",
        (&Method::PUT, true) => "PutObject",
        (&Method::POST, true) if has("uploads") => "CreateMultipartUpload",
        (&Method::POST, true) if has("uploadId") => "CompleteMultipartUpload",
        (&Method::DELETE, true) if has("uploadId") => "AbortMultipartUpload",
        (&Method::DELETE, true) => "DeleteObject",
        (&Method::GET, false) if has("list-type") => "ListObjectsV2",
        (&Method::GET, false) if has("uploads") => "ListMultipartUploads",
        (&Method::GET, false) if has("versioning") => "GetBucketVersioning",
        (&Method::GET, false) => "ListObjects",
        (&Method::HEAD, false) => "HeadBucket",
        _ => return None,
    };
    Some(operation)
}

/// Route 53's REST operations on health checks and record sets.
fn route53_operation(method: &Method, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let operation = match (method, segments.as_slice()) {
        (&Method::GET, [_, "healthcheck"]) => "ListHealthChecks",
        (&Method::POST, [_, "healthcheck"]) => "CreateHealthCheck",
        (&Method::GET, [_, "healthcheck", _]) => "GetHealthCheck",
        (&Method::POST, [_, "healthcheck", _]) => "UpdateHealthCheck",
        (&Method::DELETE, [_, "healthcheck", _]) => "DeleteHealthCheck",
        (&Method::GET, [_, "healthcheck", _, "status"]) => "GetHealthCheckStatus",
        (&Method::GET, [_, "hostedzone"]) => "ListHostedZones",
        (&Method::POST, [_, "hostedzone"]) => "CreateHostedZone",
        (&Method::GET, [_, "hostedzonesbyname"]) => "ListHostedZonesByName",
        (&Method::GET, [_, "hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        (&Method::POST, [_, "hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        _ => return None,
    };
    Some(operation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    fn request(
        method: Method,
        path_and_query: &str,
        headers: &[(&'static str, &str)],
    ) -> GatewayRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        GatewayRequest {
            method,
            path_and_query: path_and_query.to_owned(),
            headers: map,
            body: Bytes::new(),
        }
    }

    fn s3(method: Method, path_and_query: &str, headers: &[(&'static str, &str)]) -> String {
        operation(&request(method, path_and_query, headers), "s3")
    }

    #[test]
    fn s3_operations_are_told_apart_by_method_query_and_headers() {
        let copy = [("x-amz-copy-source", "src/models/m/1/a")];
        assert_eq!(s3(Method::GET, "/b/models/m/1/a", &[]), "GetObject");
        assert_eq!(
            s3(Method::GET, "/b/k?attributes&x-id=GetObjectAttributes", &[]),
            "GetObjectAttributes"
        );
        assert_eq!(s3(Method::HEAD, "/b/models/m/1/a", &[]), "HeadObject");
        assert_eq!(s3(Method::PUT, "/b/k", &[]), "PutObject");
        assert_eq!(s3(Method::PUT, "/b/k", &copy), "CopyObject");
        assert_eq!(
            s3(Method::PUT, "/b/k?partNumber=2&uploadId=u", &copy),
            "UploadPartCopy"
        );
        assert_eq!(
            s3(Method::PUT, "/b/k?partNumber=2&uploadId=u", &[]),
            "UploadPart"
        );
        assert_eq!(
            s3(Method::POST, "/b/k?uploads", &[]),
            "CreateMultipartUpload"
        );
        assert_eq!(
            s3(Method::POST, "/b/k?uploadId=u", &[]),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            s3(Method::DELETE, "/b/k?uploadId=u", &[]),
            "AbortMultipartUpload"
        );
        assert_eq!(s3(Method::GET, "/b/k?uploadId=u", &[]), "ListParts");
        assert_eq!(
            s3(Method::GET, "/b?list-type=2&prefix=models/", &[]),
            "ListObjectsV2"
        );
        assert_eq!(
            s3(Method::GET, "/b/?versioning", &[]),
            "GetBucketVersioning"
        );
        assert!(s3(Method::PATCH, "/b/k", &[]).starts_with("unknown: PATCH"));
    }

    #[test]
    fn json_cbor_rest_and_query_protocols_name_their_operation() {
        let json = request(
            Method::POST,
            "/",
            &[("x-amz-target", "DynamoDB_20120810.UpdateItem")],
        );
        assert_eq!(operation(&json, "dynamodb"), "UpdateItem");
        let cbor = request(
            Method::POST,
            "/service/GraniteServiceVersion20100801/operation/DescribeAlarms",
            &[],
        );
        assert_eq!(operation(&cbor, "monitoring"), "DescribeAlarms");
        let route53 = request(Method::POST, "/2013-04-01/healthcheck/abc", &[]);
        assert_eq!(operation(&route53, "route53"), "UpdateHealthCheck");
        let invoke = request(Method::POST, "/endpoints/llm/invocations", &[]);
        assert_eq!(operation(&invoke, "sagemaker"), "InvokeEndpoint");
        let query = request(
            Method::GET,
            "/?Action=GetCallerIdentity&Version=2011-06-15",
            &[],
        );
        assert_eq!(operation(&query, "sts"), "GetCallerIdentity");
    }

    #[test]
    fn refused_calls_are_logged_apart_from_answered_ones() {
        let log = CallLog::default();
        let scope = CredentialScope {
            region: "eu-west-1".into(),
            service: "dynamodb".into(),
        };
        let call = request(
            Method::POST,
            "/",
            &[("x-amz-target", "DynamoDB_20120810.GetItem")],
        );
        log.record(&call, Some(&scope), true);
        log.record(&call, None, false);
        let calls = log.calls();
        assert_eq!(
            calls.len(),
            1,
            "unsigned requests are not AWS calls: {calls:?}"
        );
        assert!(calls[0].refused);
        assert_eq!(calls[0].operation, "GetItem");
        log.record(&call, Some(&scope), false);
        assert_eq!(log.calls().len(), 2);
    }

    #[test]
    fn the_caller_is_the_user_agents_app_name() {
        let named = request(
            Method::GET,
            "/b/k",
            &[(
                "x-amz-user-agent",
                "aws-sdk-rust/1.3 ua/2.1 api/s3#1.1 app/meridian-replica md/x",
            )],
        );
        assert_eq!(caller(&named).as_deref(), Some("meridian-replica"));
        let anonymous = request(
            Method::GET,
            "/b/k",
            &[("user-agent", "aws-sdk-rust/1.3 os/linux")],
        );
        assert_eq!(caller(&anonymous), None);
    }
}
