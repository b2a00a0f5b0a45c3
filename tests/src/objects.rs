//! Objects as standard clients write and read them: multipart uploads with CRC32 part
//! checksums (what boto3's `upload_file` sends by default, giving a composite `-N`
//! checksum), and reads with checksum validation on, by the Rust SDK and by boto3.

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};

/// S3's (and moto's) smallest part but the last.
pub const MIN_PART: usize = 5 * 1024 * 1024;

/// Uploads `body` in parts of `part` bytes, each with its CRC32.
pub async fn put_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    part: usize,
) {
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .expect("create multipart upload");
    let upload_id = upload.upload_id().expect("an upload id");
    let mut parts = Vec::new();
    for (index, chunk) in body.chunks(part).enumerate() {
        let number = i32::try_from(index + 1).expect("at most 10,000 parts");
        let uploaded = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .set_checksum_crc32(uploaded.checksum_crc32().map(str::to_owned))
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete multipart upload");
}

/// Uploads `body` as `meridian upload` does: a multipart upload of checksum type
/// `FULL_OBJECT` in parts of `part` bytes, each with its CRC64NVME, completed with the whole
/// body's CRC64NVME.
pub async fn put_full_object_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &[u8],
    part: usize,
) {
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .checksum_type(ChecksumType::FullObject)
        .send()
        .await
        .expect("create multipart upload");
    let upload_id = upload.upload_id().expect("an upload id");
    let mut parts = Vec::new();
    for (index, chunk) in body.chunks(part).enumerate() {
        let number = i32::try_from(index + 1).expect("at most 10,000 parts");
        let uploaded = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .set_checksum_crc64_nvme(uploaded.checksum_crc64_nvme().map(str::to_owned))
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .checksum_type(ChecksumType::FullObject)
        .checksum_crc64_nvme(meridian::checksum::crc64nvme(body))
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete multipart upload");
}

/// The object's body read by the Rust SDK with `ChecksumMode::Enabled` (the body is
/// checked against the object's full-object checksum); the SDK's error otherwise.
pub async fn read_validated(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
    Ok(body.into_bytes().to_vec())
}

/// Reads `bucket/key` in `region` through the gateway at `endpoint` with boto3 from the
/// local cloud's moto virtualenv (boto3 comes with moto), with its default response
/// checksum validation: the body's SHA-256 in hex, or boto3's error (e.g. "Expected
/// checksum ... did not match calculated checksum").
pub fn boto3_sha256(
    endpoint: &str,
    region: &str,
    bucket: &str,
    key: &str,
) -> Result<String, String> {
    let python = crate::test_config().venv.join("bin").join("python");
    let script = r#"
import hashlib, sys
import boto3
from botocore.config import Config
endpoint, region, bucket, key = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                  aws_access_key_id="testing", aws_secret_access_key="testing",
                  config=Config(s3={"addressing_style": "path"}))
body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
print(hashlib.sha256(body).hexdigest())
"#;
    let output = Command::new(&python)
        .args(["-c", script, endpoint, region, bucket, key])
        .output()
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
