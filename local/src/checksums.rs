//! S3's full-object CRC64NVME on `HeadObject` and `GetObject` (with `ChecksumMode`
//! enabled), which moto 5.2.5 does not give: without the optional `awscrt` package it
//! stores a CRC32 under `CRC64NVME`, it never adds the CRC64NVME S3 computes for an object
//! uploaded without a checksum, and its `HeadObject` leaves out `x-amz-checksum-type`. See
//! `EMULATIONS.md`.

use anyhow::{Context, Result};
use http::{HeaderValue, Method};
use meridian::checksum::Crc64Nvme;

use crate::ctx::Ctx;
use crate::http::{GatewayRequest, GatewayResponse};

const CRC64NVME: &str = "x-amz-checksum-crc64nvme";
const CHECKSUM_TYPE: &str = "x-amz-checksum-type";
/// The checksum headers of the other algorithms (moto also echoes a multipart upload's
/// `x-amz-checksum-algorithm` and `x-amz-checksum-type`, which name none).
const OTHER_ALGORITHMS: &[&str] = &[
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];
/// Query parameters of a whole-object read (any other names a part or a sub-resource).
const OBJECT_READ_PARAMS: &[&str] = &["versionId", "x-id"];

/// The (bucket, key, version) of a whole-object `HeadObject`/`GetObject` that asks for
/// checksums, or `None` for any other request.
fn whole_object_read(request: &GatewayRequest) -> Option<(String, String, Option<String>)> {
    if !matches!(request.method, Method::GET | Method::HEAD)
        || request
            .headers
            .get("x-amz-checksum-mode")
            .map(|v| v.as_bytes())
            != Some(b"ENABLED")
        || request.headers.contains_key(http::header::RANGE)
    {
        return None;
    }
    let mut version = None;
    for param in request.query().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if !OBJECT_READ_PARAMS.contains(&name) {
            return None;
        }
        if name == "versionId" {
            version = Some(decode(value));
        }
    }
    let (bucket, key) = request.path().strip_prefix('/')?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (decode(bucket), decode(key), version))
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Gives a successful whole-object read the object's true full-object CRC64NVME, as S3
/// does for an object stored with CRC64NVME or with no checksum (S3's default); an object
/// stored with another algorithm keeps moto's answer.
pub async fn overlay(ctx: &Ctx, request: &GatewayRequest, response: &mut GatewayResponse) {
    let Some((bucket, key, version)) = whole_object_read(request) else {
        return;
    };
    let other_algorithm = OTHER_ALGORITHMS
        .iter()
        .any(|name| response.headers.contains_key(*name));
    if response.status != http::StatusCode::OK || other_algorithm {
        return;
    }
    let etag = response
        .headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let id = (bucket, key, etag);
    let value = match ctx.crc64nvme.get(&id) {
        Some(value) => value,
        None => {
            let computed = if request.method == Method::GET {
                Ok(meridian::checksum::crc64nvme(&response.body))
            } else {
                stored_crc64nvme(ctx, &id.0, &id.1, version).await
            };
            match computed {
                Ok(value) => {
                    ctx.crc64nvme.put(id, value.clone());
                    value
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "CRC64NVME emulation failed");
                    return;
                }
            }
        }
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers.insert(CRC64NVME, value);
        response
            .headers
            .insert(CHECKSUM_TYPE, HeaderValue::from_static("FULL_OBJECT"));
    }
}

/// Records the CRC64NVME of an object a successful `PutObject` stored, from the bytes it
/// sent, as S3 computes it on upload: the reads that ask for it later need not fetch the
/// object again.
pub fn remember_put(ctx: &Ctx, request: &GatewayRequest, response: &GatewayResponse) {
    if let Some((id, value)) = put_checksum(request, response) {
        ctx.crc64nvme.put(id, value);
    }
}

/// The (bucket, key, ETag) a successful `PutObject` stored and its content's CRC64NVME;
/// `None` for any other request, and for a body sent `aws-chunked` (its bytes framed, not
/// the object's), which is left to the reads.
fn put_checksum(
    request: &GatewayRequest,
    response: &GatewayResponse,
) -> Option<((String, String, String), String)> {
    if request.method != Method::PUT
        || !response.is_success()
        || request.headers.contains_key("x-amz-copy-source")
        || request.headers.contains_key("x-amz-decoded-content-length")
        || request
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().windows(11).any(|w| w == b"aws-chunked"))
        || !request
            .query()
            .split('&')
            .all(|p| p.is_empty() || p.starts_with("x-id="))
    {
        return None;
    }
    let (bucket, key) = request
        .path()
        .strip_prefix('/')?
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())?;
    let etag = response
        .headers
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())?;
    Some((
        (decode(bucket), decode(key), etag.to_owned()),
        meridian::checksum::crc64nvme(&request.body),
    ))
}

/// Gives a replica the CRC64NVME known for its source: a copy holds the same bytes under
/// the same ETag.
pub fn remember_copy(ctx: &Ctx, source_bucket: &str, key: &str, etag: &str, destination: &str) {
    let source = (source_bucket.to_owned(), key.to_owned(), etag.to_owned());
    if let Some(value) = ctx.crc64nvme.get(&source) {
        ctx.crc64nvme.put(
            (destination.to_owned(), key.to_owned(), etag.to_owned()),
            value,
        );
    }
}

/// The CRC64NVME of an object as moto stores it, read from moto directly (S3's own work,
/// not a call of the caller's).
async fn stored_crc64nvme(
    ctx: &Ctx,
    bucket: &str,
    key: &str,
    version: Option<String>,
) -> Result<String> {
    let object = ctx
        .moto
        .s3(&ctx.fleet.primary_region)
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version)
        .customize()
        .config_override(
            // moto's own (wrong) CRC64NVME would fail the SDK's validation of the body.
            aws_sdk_s3::config::Builder::default().response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            ),
        )
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    let mut body = object.body;
    let mut crc = Crc64Nvme::default();
    while let Some(chunk) = body.try_next().await? {
        crc.update(&chunk);
    }
    Ok(crc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path_and_query: &str, mode: bool) -> GatewayRequest {
        let mut headers = http::HeaderMap::new();
        if mode {
            headers.insert("x-amz-checksum-mode", HeaderValue::from_static("ENABLED"));
        }
        GatewayRequest {
            method,
            path_and_query: path_and_query.into(),
            headers,
            body: Default::default(),
        }
    }

    #[test]
    fn a_put_objects_checksum_is_its_bodys_and_nothing_else_is_recorded() {
        let put = |path: &str, headers: &[(&'static str, &'static str)]| {
            let mut request = request(Method::PUT, path, false);
            request.body = b"weights".to_vec().into();
            for (name, value) in headers {
                request
                    .headers
                    .insert(*name, HeaderValue::from_static(value));
            }
            request
        };
        let mut stored = GatewayResponse::empty(http::StatusCode::OK);
        stored
            .headers
            .insert(http::header::ETAG, HeaderValue::from_static("\"e1\""));
        assert_eq!(
            put_checksum(&put("/b/models/a%20b.bin?x-id=PutObject", &[]), &stored),
            Some((
                ("b".into(), "models/a b.bin".into(), "\"e1\"".into()),
                meridian::checksum::crc64nvme(b"weights")
            ))
        );
        for (path, headers) in [
            ("/b/k", &[("x-amz-copy-source", "b/other")][..]),
            ("/b/k", &[("content-encoding", "aws-chunked")][..]),
            ("/b/k", &[("x-amz-decoded-content-length", "7")][..]),
            ("/b/k?partNumber=1&uploadId=u", &[][..]),
            ("/b/k?tagging", &[][..]),
            ("/b", &[][..]),
        ] {
            assert_eq!(
                put_checksum(&put(path, headers), &stored),
                None,
                "{path} {headers:?}"
            );
        }
        let refused = GatewayResponse::empty(http::StatusCode::FORBIDDEN);
        assert_eq!(put_checksum(&put("/b/k", &[]), &refused), None);
        let without_etag = GatewayResponse::empty(http::StatusCode::OK);
        assert_eq!(put_checksum(&put("/b/k", &[]), &without_etag), None);
    }

    #[test]
    fn only_whole_object_reads_asking_for_checksums_are_overlaid() {
        assert_eq!(
            whole_object_read(&request(Method::HEAD, "/b/models/a%20b.bin", true)),
            Some(("b".into(), "models/a b.bin".into(), None))
        );
        assert_eq!(
            whole_object_read(&request(
                Method::GET,
                "/b/k?x-id=GetObject&versionId=v1",
                true
            )),
            Some(("b".into(), "k".into(), Some("v1".into())))
        );
        for (method, path, mode) in [
            (Method::HEAD, "/b/k", false),
            (Method::HEAD, "/b/k?partNumber=1", true),
            (Method::GET, "/b/k?attributes", true),
            (Method::PUT, "/b/k", true),
            (Method::GET, "/b", true),
            (Method::GET, "/b/", true),
        ] {
            assert_eq!(
                whole_object_read(&request(method.clone(), path, mode)),
                None,
                "{method} {path} {mode}"
            );
        }
        let mut ranged = request(Method::GET, "/b/k", true);
        ranged
            .headers
            .insert(http::header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert_eq!(whole_object_read(&ranged), None);
    }
}
