//! A bridge from the Smithy RPC v2 CBOR protocol, which current AWS SDKs use for
//! CloudWatch, to the AWS JSON 1.0 protocol moto 5.2.5 serves for the same operations.
//! See `EMULATIONS.md`.

use base64::Engine;
use ciborium::Value as Cbor;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Number, Value as Json};

use crate::http::{GatewayRequest, GatewayResponse};

/// CBOR tag for epoch-seconds timestamps.
const EPOCH_TAG: u64 = 1;

/// `(service, operation)` of an RPC v2 CBOR request: `/service/{service}/operation/{op}`.
pub fn rpc_v2_target(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/service/")?;
    let (service, operation) = rest.split_once("/operation/")?;
    (!service.is_empty() && !operation.is_empty() && !operation.contains('/'))
        .then_some((service, operation))
}

/// The same call as an AWS JSON 1.0 request.
pub fn to_json_request(
    request: &GatewayRequest,
    service: &str,
    operation: &str,
) -> Result<GatewayRequest, String> {
    let body = if request.body.is_empty() {
        Json::Object(Map::new())
    } else {
        let value: Cbor = ciborium::from_reader(request.body.as_ref())
            .map_err(|e| format!("invalid CBOR body: {e}"))?;
        cbor_to_json(value)
    };
    let mut headers = HeaderMap::new();
    if let Some(auth) = request.headers.get(http::header::AUTHORIZATION) {
        headers.insert(http::header::AUTHORIZATION, auth.clone());
    }
    let target =
        HeaderValue::from_str(&format!("{service}.{operation}")).map_err(|e| e.to_string())?;
    headers.insert("x-amz-target", target);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    Ok(GatewayRequest {
        method: Method::POST,
        path_and_query: "/".into(),
        headers,
        body: body.to_string().into(),
    })
}

/// moto's JSON reply as an RPC v2 CBOR reply.
pub fn to_cbor_response(response: GatewayResponse) -> GatewayResponse {
    let json: Json = if response.body.is_empty() {
        Json::Object(Map::new())
    } else {
        serde_json::from_slice(&response.body).unwrap_or_else(|_| {
            serde_json::json!({
                "__type": "InternalFailure",
                "message": String::from_utf8_lossy(&response.body),
            })
        })
    };
    let mut body = Vec::new();
    let encoded = ciborium::into_writer(&json_to_cbor(json, false), &mut body);
    let mut headers = HeaderMap::new();
    headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/cbor"),
    );
    if let Some(id) = response.headers.get("x-amzn-requestid") {
        headers.insert("x-amzn-requestid", id.clone());
    }
    match encoded {
        Ok(()) => GatewayResponse {
            status: response.status,
            headers,
            body: body.into(),
        },
        Err(error) => GatewayResponse::json(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "message": format!("encoding CBOR: {error}") }),
        ),
    }
}

/// Converts a decoded CBOR value to JSON: timestamps become epoch seconds, blobs base64.
pub fn cbor_to_json(value: Cbor) -> Json {
    match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            i64::try_from(i)
                .map(Json::from)
                .or_else(|_| u64::try_from(i).map(Json::from))
                .unwrap_or(Json::Null)
        }
        Cbor::Float(f) => Number::from_f64(f).map_or(Json::Null, Json::Number),
        Cbor::Text(s) => Json::String(s),
        Cbor::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Array(items) => Json::Array(items.into_iter().map(cbor_to_json).collect()),
        Cbor::Map(entries) => Json::Object(
            entries
                .into_iter()
                .filter_map(|(k, v)| match k {
                    Cbor::Text(key) => Some((key, cbor_to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        Cbor::Tag(_, inner) => cbor_to_json(*inner),
        _ => Json::Null,
    }
}

/// Whether a member holds timestamps (moto's JSON gives epoch seconds; CBOR needs tag 1).
fn is_timestamp_member(name: &str) -> bool {
    name.ends_with("Timestamp")
        || name.ends_with("Timestamps")
        || matches!(name, "StartDate" | "EndDate" | "StartTime" | "EndTime")
}

/// Converts JSON to CBOR, tagging numbers under timestamp members as epoch timestamps.
pub fn json_to_cbor(value: Json, timestamp: bool) -> Cbor {
    match value {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(b),
        Json::Number(n) => {
            let plain = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if !timestamp => Cbor::Integer(i.into()),
                (_, Some(u)) if !timestamp => Cbor::Integer(u.into()),
                _ => Cbor::Float(n.as_f64().unwrap_or(0.0)),
            };
            if timestamp {
                Cbor::Tag(EPOCH_TAG, Box::new(plain))
            } else {
                plain
            }
        }
        Json::String(s) => Cbor::Text(s),
        Json::Array(items) => Cbor::Array(
            items
                .into_iter()
                .map(|v| json_to_cbor(v, timestamp))
                .collect(),
        ),
        Json::Object(entries) => Cbor::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let tagged = is_timestamp_member(&k);
                    (Cbor::Text(k), json_to_cbor(v, tagged))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rpc_v2_paths_name_service_and_operation() {
        assert_eq!(
            rpc_v2_target("/service/GraniteServiceVersion20100801/operation/SetAlarmState"),
            Some(("GraniteServiceVersion20100801", "SetAlarmState"))
        );
        assert_eq!(rpc_v2_target("/"), None);
        assert_eq!(rpc_v2_target("/service/X/operation/"), None);
    }

    #[test]
    fn json_round_trips_through_cbor_and_timestamps_are_tagged() {
        let original = json!({ "AlarmName": "a", "Period": 60, "Threshold": 5.5, "Enabled": true, "StateUpdatedTimestamp": 1795551744.195, "Items": [1, "x"] });
        let cbor = json_to_cbor(original.clone(), false);
        let Cbor::Map(entries) = &cbor else {
            panic!("a map")
        };
        let stamp = entries
            .iter()
            .find(|(k, _)| k == &Cbor::Text("StateUpdatedTimestamp".into()))
            .map(|(_, v)| v);
        assert!(matches!(stamp, Some(Cbor::Tag(EPOCH_TAG, _))));
        assert_eq!(cbor_to_json(cbor), original);
    }

    #[test]
    fn blobs_become_base64() {
        assert_eq!(cbor_to_json(Cbor::Bytes(b"hi".to_vec())), json!("aGk="));
    }
}
