//! The drills' items in the registry table, through DynamoDB: the shift a drill puts on
//! a region's traffic (`traffic#<region>` / `drill`, written by the drill function and
//! read by the region's front door from its replica), and each step's counts of the
//! shifted requests (`drillcounts#<drill>` / `step#<n>`, added to by the source region's
//! front door in its replica, one atomic `ADD` per forwarded request).

use crate::drill::{DrillRecord, StepCounts};
use crate::table::{
    dynamodb_error, is_condition_failure, json_attr, json_field, n, number_field, s, string_field,
    TableError,
};
use crate::traffic::DrillShift;

/// Partition key of the drill's shift of `region`'s traffic.
pub fn shift_key(region: &str) -> String {
    format!("traffic#{region}")
}

/// Partition key of a drill's per-step counts.
pub fn counts_key(drill_id: &str) -> String {
    format!("drillcounts#{drill_id}")
}

/// Sort key of a step's counts.
pub fn step_key(step: usize) -> String {
    format!("step#{step}")
}

const SHIFT_SK: &str = "drill";
/// Partition key of the drills' records and of the one-drill-at-a-time lock.
pub const DRILLS_PK: &str = "drills";
const LOCK_SK: &str = "lock";

/// Sort key of a drill's record (ids start with their start time, so records sort by it).
pub fn record_key(drill_id: &str) -> String {
    format!("drill#{drill_id}")
}

/// One request a drill shifted, as its step's counts take it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillCount {
    pub drill_id: String,
    pub step: usize,
    pub failed: bool,
    pub latency_ms: f64,
}

/// The drills' items in one region's table replica.
#[derive(Clone)]
pub struct DrillStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl DrillStore {
    /// The drill's shift of `region`'s traffic, if one is written.
    pub async fn shift(&self, region: &str) -> Result<Option<DrillShift>, TableError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(shift_key(region)))
            .key("sk", s(SHIFT_SK))
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the drill's shift", e))?
            .item;
        let Some(item) = item else { return Ok(None) };
        json_field(&item, "shift", &format!("the drill's shift of {region}"))
    }

    /// Writes (or renews) a drill's shift of its source region.
    pub async fn put_shift(&self, shift: &DrillShift) -> Result<(), TableError> {
        let body = json_attr(shift)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(shift_key(&shift.from)))
            .item("sk", s(SHIFT_SK))
            .item("shift", body)
            .item("drill_id", s(&shift.drill_id))
            .send()
            .await
            .map_err(|e| dynamodb_error("writing the drill's shift", e))?;
        Ok(())
    }

    /// Removes `drill_id`'s shift of `region` (another drill's is left alone); removing
    /// one that is gone is done.
    pub async fn clear_shift(&self, region: &str, drill_id: &str) -> Result<(), TableError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(shift_key(region)))
            .key("sk", s(SHIFT_SK))
            .condition_expression("attribute_not_exists(pk) OR drill_id = :drill")
            .expression_attribute_values(":drill", s(drill_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(dynamodb_error("removing the drill's shift", e)),
        }
    }

    /// Adds one shifted request to its step's counts.
    pub async fn count(&self, count: &DrillCount) -> Result<(), TableError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(counts_key(&count.drill_id)))
            .key("sk", s(step_key(count.step)))
            .update_expression("ADD requests :one, errors :failed, latency_ms_total :latency")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":failed", n(u8::from(count.failed)))
            .expression_attribute_values(":latency", n(format!("{:.3}", count.latency_ms)))
            .send()
            .await
            .map_err(|e| dynamodb_error("counting the drill's request", e))?;
        Ok(())
    }

    /// A step's counts as this replica has them.
    pub async fn step_counts(&self, drill_id: &str, step: usize) -> Result<StepCounts, TableError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(counts_key(drill_id)))
            .key("sk", s(step_key(step)))
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the drill's counts", e))?
            .item
            .unwrap_or_default();
        let number = |name: &str| number_field(&item, name).unwrap_or(0.0);
        Ok(StepCounts {
            requests: number("requests") as u64,
            errors: number("errors") as u64,
            latency_ms_total: number("latency_ms_total"),
        })
    }

    /// Takes the one-drill lock for `drill_id`; `Err(holder)`'s `Ok` side names the
    /// drill holding it. Taking it again for the same drill is done (a retried start).
    pub async fn take_lock(&self, drill_id: &str) -> Result<Result<(), String>, TableError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(DRILLS_PK))
            .item("sk", s(LOCK_SK))
            .item("drill_id", s(drill_id))
            .condition_expression("attribute_not_exists(pk) OR drill_id = :drill")
            .expression_attribute_values(":drill", s(drill_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) if is_condition_failure(&e) => {
                Ok(Err(self.lock_holder().await?.unwrap_or_default()))
            }
            Err(e) => Err(dynamodb_error("taking the drill lock", e)),
        }
    }

    /// The drill holding the lock, if any.
    pub async fn lock_holder(&self) -> Result<Option<String>, TableError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(DRILLS_PK))
            .key("sk", s(LOCK_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the drill lock", e))?
            .item;
        Ok(item.and_then(|i| string_field(&i, "drill_id").map(str::to_owned)))
    }

    /// Releases the lock if `drill_id` holds it.
    pub async fn release_lock(&self, drill_id: &str) -> Result<(), TableError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(DRILLS_PK))
            .key("sk", s(LOCK_SK))
            .condition_expression("attribute_not_exists(pk) OR drill_id = :drill")
            .expression_attribute_values(":drill", s(drill_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(dynamodb_error("releasing the drill lock", e)),
        }
    }

    /// Writes a drill's record (its own attribute: an operator's abort request, written
    /// beside it, is kept).
    pub async fn save_record(&self, record: &DrillRecord) -> Result<(), TableError> {
        let body = json_attr(record)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(DRILLS_PK))
            .key("sk", s(record_key(&record.id)))
            .update_expression("SET #record = :record")
            .expression_attribute_names("#record", "record")
            .expression_attribute_values(":record", body)
            .send()
            .await
            .map_err(|e| dynamodb_error("writing the drill's record", e))?;
        Ok(())
    }

    /// A drill's record and the operator's abort request, if any.
    pub async fn record(
        &self,
        drill_id: &str,
    ) -> Result<Option<(DrillRecord, Option<String>)>, TableError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(DRILLS_PK))
            .key("sk", s(record_key(drill_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamodb_error("reading the drill's record", e))?
            .item;
        let Some(item) = item else { return Ok(None) };
        let Some(record) = json_field(&item, "record", &format!("drill {drill_id}"))? else {
            return Ok(None);
        };
        let abort = string_field(&item, "abort_requested").map(str::to_owned);
        Ok(Some((record, abort)))
    }

    /// Asks a running drill to abort: its next check restores.
    pub async fn request_abort(&self, drill_id: &str, why: &str) -> Result<(), TableError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(DRILLS_PK))
            .key("sk", s(record_key(drill_id)))
            .update_expression("SET abort_requested = :why")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":why", s(why))
            .send()
            .await
            .map_err(|e| dynamodb_error("asking the drill to abort", e))?;
        Ok(())
    }

    /// Every drill's record, oldest first.
    pub async fn records(&self) -> Result<Vec<DrillRecord>, TableError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :drill)")
            .expression_attribute_values(":pk", s(DRILLS_PK))
            .expression_attribute_values(":drill", s("drill#"))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| dynamodb_error("reading the drills", e))?;
        let mut records: Vec<DrillRecord> = items
            .iter()
            .filter_map(|i| json_field(i, "record", "a drill").ok().flatten())
            .collect();
        records.sort_by_key(|r| r.started);
        Ok(records)
    }
}
