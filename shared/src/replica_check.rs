//! How a replica is verified, decided without I/O: by S3's own full-object CRC64NVME when
//! the manifest records one and `HeadObject` reports one (no byte of the object is read),
//! else by reading and hashing (SHA-256), which is split so that no invocation hashes more
//! than a bounded number of bytes. The trust chain is in `docs/manifest.md`.

use crate::manifest::FileEntry;

/// Most bytes one replica-function invocation reads and hashes when checking the files the
/// manifest's arrival calls for (at least one file, whatever its size). At the ~100-200
/// MB/s one Lambda reads S3 and hashes, 8 GiB takes about one to two minutes of Lambda's
/// fifteen.
pub const DEFAULT_HASH_BUDGET_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// What `HeadObject` (with `ChecksumMode::Enabled`) reports of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaHead {
    /// `Content-Length`.
    pub size: i64,
    /// `ChecksumCRC64NVME`, only when `ChecksumType` is `FULL_OBJECT` (a composite checksum
    /// of parts does not describe the content).
    pub full_object_crc64nvme: Option<String>,
}

/// The verdict on a replica from its metadata alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByMetadata {
    /// Size and S3's full-object CRC64NVME match the manifest.
    Verified(String),
    /// The replica is not the file the manifest lists.
    Refused(String),
    /// Its metadata cannot tell: its content must be read and hashed.
    NeedsHash,
}

/// Judges a replica by its metadata.
pub fn by_metadata(file: &FileEntry, head: &ReplicaHead) -> ByMetadata {
    if head.size != file.size as i64 {
        return ByMetadata::Refused(format!("size {}, manifest says {}", head.size, file.size));
    }
    match (&file.crc64nvme, &head.full_object_crc64nvme) {
        (Some(expected), Some(actual)) if expected == actual => ByMetadata::Verified(
            "size and CRC64NVME match (S3's full-object checksum; not read)".into(),
        ),
        (Some(expected), Some(actual)) => ByMetadata::Refused(format!(
            "CRC64NVME {actual} (S3's full-object checksum of the replica), manifest says \
             {expected}"
        )),
        _ => ByMetadata::NeedsHash,
    }
}

/// Which of the files waiting to be hashed (their sizes, in order) this invocation hashes:
/// the longest prefix within `budget` bytes, and at least the first file. The rest wait
/// for the next invocation.
pub fn hash_now(sizes: &[u64], budget: u64) -> usize {
    let mut total = 0u64;
    let mut count = 0;
    for &size in sizes {
        total = total.saturating_add(size);
        if count > 0 && total > budget {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(crc: Option<&str>) -> FileEntry {
        FileEntry {
            path: "weights/a.bin".into(),
            size: 10,
            sha256: "a".repeat(64),
            crc64nvme: crc.map(str::to_owned),
        }
    }

    fn head(size: i64, crc: Option<&str>) -> ReplicaHead {
        ReplicaHead {
            size,
            full_object_crc64nvme: crc.map(str::to_owned),
        }
    }

    #[test]
    fn metadata_decides_when_both_sides_have_a_full_object_checksum() {
        let crc = Some("AAAAAAAAAAE=");
        assert!(matches!(
            by_metadata(&file(crc), &head(10, crc)),
            ByMetadata::Verified(_)
        ));
        let ByMetadata::Refused(why) = by_metadata(&file(crc), &head(10, Some("AAAAAAAAAAI=")))
        else {
            panic!("a different checksum is refused")
        };
        assert_eq!(
            why,
            "CRC64NVME AAAAAAAAAAI= (S3's full-object checksum of the replica), manifest says \
             AAAAAAAAAAE="
        );
        assert_eq!(
            by_metadata(&file(crc), &head(11, crc)),
            ByMetadata::Refused("size 11, manifest says 10".into())
        );
        // An older manifest, or a replica without a full-object CRC64NVME (a composite
        // checksum, another algorithm): read and hash.
        assert_eq!(
            by_metadata(&file(None), &head(10, crc)),
            ByMetadata::NeedsHash
        );
        assert_eq!(
            by_metadata(&file(crc), &head(10, None)),
            ByMetadata::NeedsHash
        );
        // The size is checked first either way.
        assert!(matches!(
            by_metadata(&file(None), &head(9, None)),
            ByMetadata::Refused(_)
        ));
    }

    #[test]
    fn hashing_is_split_by_the_budget() {
        assert_eq!(hash_now(&[], 10), 0);
        assert_eq!(hash_now(&[4, 4, 4], 10), 2);
        assert_eq!(hash_now(&[4, 6, 4], 10), 2);
        assert_eq!(hash_now(&[50, 1], 10), 1, "one file larger than the budget");
        assert_eq!(hash_now(&[1, 50], 10), 1);
        assert_eq!(hash_now(&[u64::MAX, u64::MAX], 10), 1);
    }

    proptest! {
        #[test]
        fn every_invocation_progresses_within_its_budget(
            sizes in proptest::collection::vec(1u64..1_000, 0..50),
            budget in 1u64..3_000,
        ) {
            let mut rest = &sizes[..];
            let mut invocations = 0;
            while !rest.is_empty() {
                let now = hash_now(rest, budget);
                prop_assert!(now >= 1, "no progress");
                let hashed: u64 = rest[..now].iter().sum();
                prop_assert!(now == 1 || hashed <= budget, "{hashed} over {budget}");
                rest = &rest[now..];
                invocations += 1;
            }
            prop_assert!(invocations <= sizes.len());
        }
    }
}
