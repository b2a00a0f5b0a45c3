//! The fast copy's plan, decided without I/O: how a file is split into `UploadPartCopy`
//! ranges so that any file S3 can hold (5 TiB) fits in its 10,000 parts, which parts one
//! invocation copies (a byte budget, so no invocation nears Lambda's 15 minutes), and how
//! a version's files are shared among the copy lanes that run side by side.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (every part but the last).
pub const MIN_PART_BYTES: u64 = 5 * MIB;
/// S3's largest part, and the largest object one `CopyObject` may copy.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * MIB;
/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object (5 TiB).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * MIB;
/// How many copy lanes (Lambda invocations) run side by side in one region.
pub const MAX_LANES: usize = 8;

/// The fast copy's settings, from the fleet file's `[rollout]` section
/// (`copy_part_mib`, `copy_invocation_mib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySettings {
    /// The preferred part size in bytes (5 MiB–5 GiB); a larger one is chosen for a file
    /// that would otherwise need more than 10,000 parts.
    pub part_bytes: u64,
    /// How many bytes one invocation starts copying before it hands over to the next.
    pub invocation_bytes: u64,
}

impl Default for CopySettings {
    /// 64 MiB parts (a 5 GiB shard is 80 parts), 16 GiB per invocation (about a minute
    /// at S3's server-side copy rates, far below Lambda's 15 minutes).
    fn default() -> Self {
        Self {
            part_bytes: 64 * MIB,
            invocation_bytes: 16 * 1024 * MIB,
        }
    }
}

/// A file too large for S3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a file of {0} bytes is larger than S3's largest object ({MAX_OBJECT_BYTES} bytes)")]
pub struct TooLarge(pub u64);

/// How one file is copied: in one `CopyObject`, or in parts of `part_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    Single,
    Multipart { part_bytes: u64, parts: u32 },
}

/// One `UploadPartCopy`: its part number (from 1) and inclusive byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    pub number: u32,
    pub first: u64,
    pub last: u64,
}

impl PartRange {
    pub fn bytes(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// The part size for a file: the preferred one (held within S3's 5 MiB–5 GiB), or the
/// smallest whole number of MiB that fits the file in 10,000 parts when that is larger.
pub fn part_bytes(file_bytes: u64, preferred: u64) -> Result<u64, TooLarge> {
    if file_bytes > MAX_OBJECT_BYTES {
        return Err(TooLarge(file_bytes));
    }
    let fitting = file_bytes.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    Ok(preferred
        .clamp(MIN_PART_BYTES, MAX_PART_BYTES)
        .max(fitting)
        .min(MAX_PART_BYTES))
}

/// How a file is copied: one `CopyObject` when it fits in one part, parts otherwise.
pub fn copy_method(file_bytes: u64, preferred_part: u64) -> Result<CopyMethod, TooLarge> {
    let part_bytes = part_bytes(file_bytes, preferred_part)?;
    if file_bytes <= part_bytes {
        return Ok(CopyMethod::Single);
    }
    let parts = u32::try_from(file_bytes.div_ceil(part_bytes)).map_err(|_| TooLarge(file_bytes))?;
    Ok(CopyMethod::Multipart { part_bytes, parts })
}

/// Every part of a file split in parts of `part_bytes`, in order.
pub fn part_ranges(file_bytes: u64, part_bytes: u64) -> impl Iterator<Item = PartRange> {
    let parts = if part_bytes == 0 {
        0
    } else {
        file_bytes.div_ceil(part_bytes)
    };
    (0..parts).map(move |i| PartRange {
        number: u32::try_from(i + 1).unwrap_or(u32::MAX),
        first: i * part_bytes,
        last: ((i + 1) * part_bytes).min(file_bytes) - 1,
    })
}

/// The parts one invocation copies: those not yet `done`, in order, until `budget` bytes
/// are started (always at least one, so every invocation makes progress).
pub fn next_parts(
    file_bytes: u64,
    part_bytes: u64,
    done: &BTreeSet<u32>,
    budget: u64,
) -> Vec<PartRange> {
    let mut started = 0u64;
    let mut chosen = Vec::new();
    for part in part_ranges(file_bytes, part_bytes).filter(|p| !done.contains(&p.number)) {
        if !chosen.is_empty() && started >= budget {
            break;
        }
        started += part.bytes();
        chosen.push(part);
    }
    chosen
}

/// Whether parts already uploaded (number, size) belong to this plan: every part but the
/// last of the file has `part_bytes`, the last has the rest. An upload started with another
/// part size (the setting changed) cannot be completed by this plan.
pub fn parts_fit(file_bytes: u64, part_bytes: u64, uploaded: &[(u32, u64)]) -> bool {
    let planned: Vec<PartRange> = part_ranges(file_bytes, part_bytes).collect();
    uploaded.iter().all(|&(number, size)| {
        usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| planned.get(i))
            .is_some_and(|p| p.bytes() == size)
    })
}

/// How many lanes copy a version of `files` files.
pub fn lane_count(files: usize) -> usize {
    files.clamp(1, MAX_LANES)
}

/// The files (indexes into `sizes`) each of `lanes` lanes copies: largest first, each to
/// the lane with the fewest bytes so far (ties to the lowest index), so the lanes end at
/// about the same time; each lane's files in manifest order. The same sizes always give
/// the same lanes, so every invocation of a lane agrees on its files.
pub fn lanes(sizes: &[u64], lanes: usize) -> Vec<Vec<usize>> {
    let lanes = lanes.max(1);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; lanes];
    let mut assigned = vec![Vec::new(); lanes];
    for file in order {
        let lane = (0..lanes).min_by_key(|&l| (load[l], l)).unwrap_or_default();
        load[lane] += sizes[file];
        assigned[lane].push(file);
    }
    for files in &mut assigned {
        files.sort_unstable();
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn part_sizes_at_the_edges() {
        let preferred = 64 * MIB;
        // Small files keep the preferred size; a file too large for it gets the smallest
        // whole MiB that fits 10,000 parts.
        assert_eq!(part_bytes(0, preferred), Ok(preferred));
        assert_eq!(part_bytes(640_000 * MIB, preferred), Ok(preferred));
        assert_eq!(part_bytes(640_000 * MIB + 1, preferred), Ok(65 * MIB));
        // 5 TiB: 10,000 parts of 525 MiB hold it (524 MiB would not).
        assert_eq!(part_bytes(MAX_OBJECT_BYTES, preferred), Ok(525 * MIB));
        const { assert!(10_000 * 524 * MIB < MAX_OBJECT_BYTES) };
        assert_eq!(
            part_bytes(MAX_OBJECT_BYTES + 1, preferred),
            Err(TooLarge(MAX_OBJECT_BYTES + 1))
        );
        // The preferred size is held within S3's bounds.
        assert_eq!(part_bytes(1, 1), Ok(MIN_PART_BYTES));
        assert_eq!(part_bytes(1, u64::MAX), Ok(MAX_PART_BYTES));
    }

    #[test]
    fn copy_methods_at_part_boundaries() {
        let part = 5 * MIB;
        assert_eq!(copy_method(0, part), Ok(CopyMethod::Single));
        assert_eq!(copy_method(part, part), Ok(CopyMethod::Single));
        assert_eq!(
            copy_method(part + 1, part),
            Ok(CopyMethod::Multipart {
                part_bytes: part,
                parts: 2
            })
        );
        assert_eq!(
            copy_method(2 * part, part),
            Ok(CopyMethod::Multipart {
                part_bytes: part,
                parts: 2
            })
        );
        assert_eq!(
            copy_method(2 * part + 1, part),
            Ok(CopyMethod::Multipart {
                part_bytes: part,
                parts: 3
            })
        );
        assert_eq!(
            copy_method(MAX_OBJECT_BYTES, 64 * MIB),
            Ok(CopyMethod::Multipart {
                part_bytes: 525 * MIB,
                parts: 9_987
            })
        );
    }

    #[test]
    fn ranges_cover_a_file_just_over_a_part_boundary() {
        let ranges: Vec<PartRange> = part_ranges(10 * MIB + 1, 5 * MIB).collect();
        assert_eq!(
            ranges,
            [
                PartRange {
                    number: 1,
                    first: 0,
                    last: 5 * MIB - 1
                },
                PartRange {
                    number: 2,
                    first: 5 * MIB,
                    last: 10 * MIB - 1
                },
                PartRange {
                    number: 3,
                    first: 10 * MIB,
                    last: 10 * MIB
                },
            ]
        );
        assert_eq!(part_ranges(0, 5 * MIB).count(), 0);
    }

    #[test]
    fn an_invocation_copies_missing_parts_within_its_budget() {
        let (size, part) = (10 * 5 * MIB, 5 * MIB);
        let first = next_parts(size, part, &BTreeSet::new(), 12 * MIB);
        assert_eq!(
            first.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let done: BTreeSet<u32> = [1, 2, 3, 5].into();
        let second = next_parts(size, part, &done, 12 * MIB);
        assert_eq!(
            second.iter().map(|p| p.number).collect::<Vec<_>>(),
            [4, 6, 7]
        );
        // A budget below one part still copies one.
        assert_eq!(next_parts(size, part, &done, 0).len(), 1);
        let all: BTreeSet<u32> = (1..=10).collect();
        assert!(next_parts(size, part, &all, GIB).is_empty());
    }

    #[test]
    fn uploaded_parts_of_another_part_size_do_not_fit() {
        let (size, part) = (12 * MIB, 5 * MIB);
        assert!(parts_fit(size, part, &[]));
        assert!(parts_fit(size, part, &[(1, 5 * MIB), (3, 2 * MIB)]));
        assert!(!parts_fit(size, part, &[(1, 6 * MIB)]));
        assert!(!parts_fit(size, part, &[(4, 1)]));
        assert!(!parts_fit(size, part, &[(0, 5 * MIB)]));
    }

    #[test]
    fn lanes_balance_bytes() {
        assert_eq!(lane_count(0), 1);
        assert_eq!(lane_count(3), 3);
        assert_eq!(lane_count(100), MAX_LANES);
        // Largest first to the lightest lane: 10 | 7+1 | 5+3.
        assert_eq!(
            lanes(&[5, 10, 3, 7, 1], 3),
            [vec![1], vec![3, 4], vec![0, 2]]
        );
        assert_eq!(lanes(&[], 2), [Vec::<usize>::new(), Vec::new()]);
    }

    proptest! {
        #[test]
        fn parts_fit_s3s_limits_and_cover_the_file(
            size in prop_oneof![0..=64 * MIB, 0..=MAX_OBJECT_BYTES],
            preferred in prop_oneof![Just(5 * MIB), Just(64 * MIB), 0..=2 * MAX_PART_BYTES],
        ) {
            let part = part_bytes(size, preferred).expect("fits");
            let ranges: Vec<PartRange> = part_ranges(size, part).collect();
            prop_assert!(ranges.len() as u64 <= MAX_PARTS);
            let mut next = 0;
            for (i, range) in ranges.iter().enumerate() {
                prop_assert_eq!(range.number as usize, i + 1);
                prop_assert_eq!(range.first, next);
                prop_assert!(range.bytes() <= MAX_PART_BYTES);
                if i + 1 < ranges.len() {
                    prop_assert!((MIN_PART_BYTES..=MAX_PART_BYTES).contains(&range.bytes()));
                }
                next = range.last + 1;
            }
            prop_assert_eq!(next, size);
            match copy_method(size, preferred).expect("fits") {
                CopyMethod::Single => prop_assert!(ranges.len() <= 1),
                CopyMethod::Multipart { part_bytes, parts } => {
                    prop_assert_eq!(part_bytes, part);
                    prop_assert_eq!(parts as usize, ranges.len());
                }
            }
        }

        #[test]
        fn invocations_copy_every_part_once(parts in 1u64..200, budget in 0..64 * MIB) {
            let (part, size) = (5 * MIB, parts * 5 * MIB - 1);
            let mut done = BTreeSet::new();
            let mut invocations = 0;
            loop {
                let next = next_parts(size, part, &done, budget);
                if next.is_empty() {
                    break;
                }
                invocations += 1;
                for range in next {
                    prop_assert!(done.insert(range.number), "part {} copied twice", range.number);
                }
            }
            prop_assert_eq!(done.len() as u64, parts);
            prop_assert!(invocations <= parts);
        }

        #[test]
        fn every_file_is_in_exactly_one_lane(sizes in proptest::collection::vec(0u64..1 << 40, 0..50), count in 1usize..=MAX_LANES) {
            let assigned = lanes(&sizes, count);
            prop_assert_eq!(assigned.len(), count);
            let mut all: Vec<usize> = assigned.concat();
            all.sort_unstable();
            prop_assert_eq!(all, (0..sizes.len()).collect::<Vec<_>>());
            // No lane carries more than an even share plus its largest file.
            let total: u64 = sizes.iter().sum();
            for files in &assigned {
                let bytes: u64 = files.iter().map(|&f| sizes[f]).sum();
                let largest = files.iter().map(|&f| sizes[f]).max().unwrap_or(0);
                prop_assert!(bytes <= total / count as u64 + largest);
            }
            prop_assert_eq!(lanes(&sizes, count), assigned);
        }
    }
}
