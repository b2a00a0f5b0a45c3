//! What a region's replica function records of its checks in the registry table: the
//! files of a version verified in the region, as number sets of file indices (positions
//! in the manifest's file list) in items of [`CHUNK_FILES`] files each, and each failed
//! check in an item of its own.
//!
//! Sets make the record idempotent: an `Object Created` event delivered twice, or a file
//! verified by its own event and by the manifest's sweep at the same time, adds the same
//! index twice and changes nothing, so there is no count to drift. A 10,000-file version
//! costs one write per file checked by its own event, one per [`CHUNK_FILES`] files
//! checked by the manifest's sweep, and knowing whether a region is complete reads at
//! most 100 small items instead of 10,000.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};

use crate::registry::{rollout_key, FileCheck, Registry, RegistryError, MAX_ITEM_BYTES};
use crate::table::{
    dynamodb_error, from_item, is_condition_failure, json_attr, number_field, s, Item,
};

/// Files per verified-set item: a full item is a few hundred bytes, and the sweep of a
/// 10,000-file version writes 100 of them.
pub const CHUNK_FILES: usize = 100;

/// How a replica was verified: the trust chain of `docs/manifest.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Size and S3's full-object CRC64NVME of the replica match the manifest (not read).
    Checksum,
    /// Size and the SHA-256 of the replica's bytes, read and hashed, match the manifest.
    Hash,
}

impl Verification {
    fn attribute(self) -> &'static str {
        match self {
            Self::Checksum => "by_checksum",
            Self::Hash => "by_hash",
        }
    }
}

/// A region's recorded checks of one version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionChecks {
    pub by_checksum: BTreeSet<usize>,
    pub by_hash: BTreeSet<usize>,
    /// The last failed check of each file that failed one.
    pub failed: BTreeMap<usize, FileCheck>,
}

impl RegionChecks {
    pub fn is_verified(&self, index: usize) -> bool {
        self.by_checksum.contains(&index) || self.by_hash.contains(&index)
    }

    /// Files verified, by either method.
    pub fn verified(&self) -> BTreeSet<usize> {
        self.by_checksum.union(&self.by_hash).copied().collect()
    }

    /// Whether every one of the version's `total` files is verified.
    pub fn complete(&self, total: usize) -> bool {
        (0..total).all(|index| self.is_verified(index))
    }

    /// Failed checks of files not verified since (a fast copy replaces a damaged replica,
    /// and its pass supersedes the failure).
    pub fn failures(&self) -> Vec<&FileCheck> {
        self.failed
            .iter()
            .filter(|(index, _)| !self.is_verified(**index))
            .map(|(_, check)| check)
            .collect()
    }
}

/// The chunk a file index is recorded in.
pub fn chunk_of(index: usize) -> usize {
    index / CHUNK_FILES
}

/// The number of files in chunk `chunk` of a version of `total` files.
pub fn chunk_len(chunk: usize, total: usize) -> usize {
    total.saturating_sub(chunk * CHUNK_FILES).min(CHUNK_FILES)
}

/// `indices` grouped by chunk.
pub fn by_chunk(indices: &[usize]) -> BTreeMap<usize, Vec<usize>> {
    let mut chunks: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &index in indices {
        chunks.entry(chunk_of(index)).or_default().push(index);
    }
    chunks
}

fn verified_sk(region: &str, chunk: usize) -> String {
    format!("verified#{region}#{chunk:05}")
}

fn failed_sk(region: &str, path: &str) -> String {
    format!("file#{region}#{path}")
}

fn sweep_sk(region: &str) -> String {
    format!("sweep#{region}")
}

fn number_set(indices: &[usize]) -> AttributeValue {
    AttributeValue::Ns(indices.iter().map(usize::to_string).collect())
}

fn indices_in(item: &Item, attribute: &str) -> Result<BTreeSet<usize>, RegistryError> {
    let Some(value) = item.get(attribute) else {
        return Ok(BTreeSet::new());
    };
    let numbers = value
        .as_ns()
        .map_err(|_| RegistryError::Corrupt(format!("{attribute}: not a number set")))?;
    numbers
        .iter()
        .map(|n| {
            n.parse()
                .map_err(|_| RegistryError::Corrupt(format!("{attribute}: {n} is not an index")))
        })
        .collect()
}

impl Registry {
    /// Records the files at `indices` (of a version of `total` files) verified in
    /// `region`, one write per chunk. True when a chunk written is now full: only then
    /// can the region have become complete, and [`Registry::region_checks`] tells.
    pub async fn record_verified(
        &self,
        rollout: (&str, &str),
        region: &str,
        indices: &[usize],
        how: Verification,
        total: usize,
    ) -> Result<bool, RegistryError> {
        let pk = rollout_key(rollout.0, rollout.1);
        let mut filled = false;
        for (chunk, indices) in by_chunk(indices) {
            let written = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk.clone()))
                .key("sk", s(verified_sk(region, chunk)))
                .update_expression("ADD #how :files")
                .expression_attribute_names("#how", how.attribute())
                .expression_attribute_values(":files", number_set(&indices))
                .return_values(ReturnValue::AllNew)
                .send()
                .await
                .map_err(|e| dynamodb_error("recording verified replicas", e))?;
            let item = written.attributes.unwrap_or_default();
            let held = indices_in(&item, Verification::Checksum.attribute())?
                .union(&indices_in(&item, Verification::Hash.attribute())?)
                .count();
            filled |= held >= chunk_len(chunk, total);
        }
        Ok(filled)
    }

    /// Records a failed check of the file at `index` in `region`: the file is no longer
    /// verified there (its replica changed since a pass), and the failure is kept with
    /// its detail.
    pub async fn record_failed(
        &self,
        rollout: (&str, &str),
        region: &str,
        index: usize,
        check: &FileCheck,
    ) -> Result<(), RegistryError> {
        let pk = rollout_key(rollout.0, rollout.1);
        let (sk, body) = (failed_sk(region, &check.path), json_attr(check)?);
        let size = pk.len() + sk.len() + body.as_s().map_or(0, String::len) + 16;
        if size > MAX_ITEM_BYTES {
            return Err(RegistryError::Rejected(format!(
                "the check of {} is over DynamoDB's item limit",
                check.path
            )));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(verified_sk(region, chunk_of(index))))
            .update_expression("DELETE by_checksum :file, by_hash :file")
            .expression_attribute_values(":file", number_set(&[index]))
            .send()
            .await
            .map_err(|e| dynamodb_error("unrecording a replica", e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("body", body)
            .item("index", AttributeValue::N(index.to_string()))
            .send()
            .await
            .map_err(|e| dynamodb_error("recording a failed replica check", e))?;
        Ok(())
    }

    /// The checks recorded in `region`, strongly consistent in that region's replica.
    pub async fn region_checks(
        &self,
        rollout: (&str, &str),
        region: &str,
    ) -> Result<RegionChecks, RegistryError> {
        let mut checks = RegionChecks::default();
        for item in self.items(rollout, &format!("verified#{region}#")).await? {
            checks
                .by_checksum
                .extend(indices_in(&item, Verification::Checksum.attribute())?);
            checks
                .by_hash
                .extend(indices_in(&item, Verification::Hash.attribute())?);
        }
        for item in self.items(rollout, &format!("file#{region}#")).await? {
            let index = number_field(&item, "index")
                .ok_or_else(|| RegistryError::Corrupt("failed replica check: no index".into()))?;
            checks
                .failed
                .insert(index as usize, from_item(&item, "failed replica check")?);
        }
        Ok(checks)
    }

    /// Claims `region`'s sweep of a version for `lease` (the replica function's longest
    /// run), so two sweeps never look at (and hash) the same files side by side:
    /// false while another sweep holds an unexpired claim.
    pub async fn claim_sweep(
        &self,
        rollout: (&str, &str),
        region: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, RegistryError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(rollout_key(rollout.0, rollout.1)))
            .item("sk", s(sweep_sk(region)))
            .item("until", AttributeValue::N(until.timestamp().to_string()))
            .condition_expression("attribute_not_exists(pk) OR #until < :now")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp().to_string()))
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(error) if is_condition_failure(&error) => Ok(false),
            Err(error) => Err(dynamodb_error("claiming a replica sweep", error)),
        }
    }

    /// Ends a claim [`Registry::claim_sweep`] took.
    pub async fn release_sweep(
        &self,
        rollout: (&str, &str),
        region: &str,
    ) -> Result<(), RegistryError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(rollout_key(rollout.0, rollout.1)))
            .key("sk", s(sweep_sk(region)))
            .send()
            .await
            .map_err(|e| dynamodb_error("releasing a replica sweep", e))?;
        Ok(())
    }

    async fn items(&self, rollout: (&str, &str), prefix: &str) -> Result<Vec<Item>, RegistryError> {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(rollout_key(rollout.0, rollout.1)))
            .expression_attribute_values(":prefix", s(prefix))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| dynamodb_error("reading replica checks", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn failed(path: &str) -> FileCheck {
        FileCheck {
            path: path.into(),
            ok: false,
            detail: "size 2, manifest says 1".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn chunks_cover_a_version_exactly() {
        assert_eq!(chunk_len(0, 250), 100);
        assert_eq!(chunk_len(2, 250), 50);
        assert_eq!(chunk_len(3, 250), 0);
        assert_eq!(chunk_len(0, 0), 0);
        assert_eq!(chunk_of(99), 0);
        assert_eq!(chunk_of(100), 1);
    }

    #[test]
    fn a_pass_after_a_failure_supersedes_it() {
        let mut checks = RegionChecks::default();
        checks.failed.insert(1, failed("b"));
        checks.failed.insert(2, failed("c"));
        checks.by_hash.insert(1);
        let failures: Vec<&str> = checks.failures().iter().map(|c| c.path.as_str()).collect();
        assert_eq!(failures, ["c"]);
    }

    #[test]
    fn complete_means_every_index_verified_by_either_method() {
        let mut checks = RegionChecks::default();
        checks.by_checksum.extend([0, 2]);
        assert!(!checks.complete(3));
        checks.by_hash.insert(1);
        assert!(checks.complete(3));
        assert!(!checks.complete(4));
        assert!(RegionChecks::default().complete(0));
    }

    proptest! {
        #[test]
        fn grouping_by_chunk_keeps_every_index_once_in_its_chunk(
            indices in proptest::collection::btree_set(0usize..10_000, 0..500)
        ) {
            let indices: Vec<usize> = indices.into_iter().collect();
            let chunks = by_chunk(&indices);
            let regrouped: Vec<usize> = chunks.values().flatten().copied().collect();
            prop_assert_eq!(&regrouped, &indices);
            for (chunk, members) in &chunks {
                prop_assert!(members.iter().all(|i| chunk_of(*i) == *chunk));
                prop_assert!(members.len() <= chunk_len(*chunk, 10_000));
            }
        }
    }
}
