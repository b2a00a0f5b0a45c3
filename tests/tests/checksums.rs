//! Replicas of multipart objects read back with checksum validation on, by the Rust SDK
//! (`ChecksumMode::Enabled`) and by boto3 with its defaults, as on AWS, where replication
//! keeps the source's parts and checksums.

use std::time::Duration;

use meridian_local::Functions;
use meridian_tests::objects::{boto3_sha256, put_multipart, read_validated, MIN_PART};
use meridian_tests::{eventually, start_cloud};
use sha2::{Digest, Sha256};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_object_replicated_to_every_region_reads_back_with_checksum_validation() {
    let cloud = start_cloud(Functions::new()).await;
    let fleet = cloud.fleet().clone();
    let key = "models/llama/1/weights/shard-00001.safetensors";
    let body: Vec<u8> = (0..MIN_PART * 2 + 12_345)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add((i >> 13) as u8))
        .collect();
    let digest = hex::encode(Sha256::digest(&body));
    let primary = cloud.clients().s3(&fleet.primary_region).await;
    put_multipart(&primary, &fleet.primary_bucket, key, &body, MIN_PART).await;
    let source = primary
        .head_object()
        .bucket(&fleet.primary_bucket)
        .key(key)
        .part_number(1)
        .send()
        .await
        .expect("head source");
    assert_eq!(source.parts_count(), Some(3), "the source is multipart");

    for region in &fleet.regions {
        let s3 = cloud.clients().s3(&region.name).await;
        let replica = eventually(&format!("the replica in {}", region.name), WITHIN, || {
            let s3 = s3.clone();
            async move {
                s3.head_object()
                    .bucket(&region.bucket)
                    .key(key)
                    .part_number(1)
                    .send()
                    .await
                    .ok()
            }
        })
        .await;
        assert_eq!(
            (replica.parts_count(), replica.e_tag()),
            (source.parts_count(), source.e_tag()),
            "the replica in {} keeps the source's parts",
            region.name
        );
        assert_eq!(
            read_validated(&s3, &region.bucket, key)
                .await
                .map(|b| hex::encode(Sha256::digest(b))),
            Ok(digest.clone()),
            "the Rust SDK reads the replica in {} with checksum validation",
            region.name
        );
        assert_eq!(
            boto3_sha256(&cloud.endpoint_url(), &region.name, &region.bucket, key),
            Ok(digest.clone()),
            "boto3 reads the replica in {} with its default checksum validation",
            region.name
        );
    }
    cloud.shutdown().await.expect("shutdown");
}
