//! DynamoDB global tables emulation (moto ignores replicas). See `EMULATIONS.md`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::ctx::Ctx;
use crate::http::{forward, GatewayRequest, GatewayResponse};

const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// Global tables known to the gateway, and the write clock used for last-writer-wins.
#[derive(Default)]
pub struct GlobalTables {
    inner: Mutex<Inner>,
    /// Held while a write request is in moto, making conditional writes atomic.
    writes: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Inner {
    tables: HashMap<String, GlobalTable>,
    /// Time of the newest write applied per (table, key, region).
    last_write: HashMap<(String, String, String), u128>,
    clock: u128,
}

#[derive(Debug, Clone)]
struct GlobalTable {
    regions: BTreeSet<String>,
    key_names: Vec<String>,
}

impl GlobalTables {
    fn table(&self, name: &str) -> Option<GlobalTable> {
        self.lock().tables.get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A strictly increasing timestamp (nanoseconds), so two writes never tie.
    fn tick(&self) -> u128 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut inner = self.lock();
        inner.clock = now.max(inner.clock + 1);
        inner.clock
    }

    /// Records a write at `time`; false if a newer write already landed there (so the
    /// older one must not be applied: last writer wins).
    fn claim(&self, table: &str, key: &str, region: &str, time: u128) -> bool {
        let mut inner = self.lock();
        let slot = inner
            .last_write
            .entry((table.to_owned(), key.to_owned(), region.to_owned()))
            .or_insert(0);
        if *slot > time {
            return false;
        }
        *slot = time;
        true
    }
}

/// Handles a DynamoDB request arriving at the gateway for `region`.
pub async fn handle(
    ctx: &Arc<Ctx>,
    tables: &Arc<GlobalTables>,
    region: &str,
    request: GatewayRequest,
) -> Result<GatewayResponse> {
    let operation = request
        .target()
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_owned();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    match operation.as_str() {
        "UpdateTable" if body.get("ReplicaUpdates").is_some() => {
            update_replicas(ctx, tables, region, &request, body).await
        }
        "DescribeTable" => {
            let mut response = forward(ctx, &request).await?;
            if let Some(table) = body["TableName"]
                .as_str()
                .and_then(|t| tables.table(t))
                .filter(|_| response.is_success())
            {
                if let Ok(mut description) = serde_json::from_slice::<Value>(&response.body) {
                    description["Table"]["Replicas"] = replicas_json(&table.regions);
                    response.body = description.to_string().into();
                }
            }
            Ok(response)
        }
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
            // moto evaluates a condition and applies the write without a lock, so two
            // concurrent conditional writes can both pass; DynamoDB makes each one atomic.
            // Writes through the gateway are serialized to keep that guarantee.
            let response = {
                let _atomic = tables.writes.lock().await;
                forward(ctx, &request).await?
            };
            if response.is_success() {
                for (table, key) in written_keys(&operation, &body) {
                    if let Some(global) = tables.table(&table) {
                        replicate_write(ctx, tables, region, &table, &global, key).await;
                    }
                }
            }
            Ok(response)
        }
        _ => forward(ctx, &request).await,
    }
}

fn replicas_json(regions: &BTreeSet<String>) -> Value {
    Value::Array(
        regions
            .iter()
            .map(|r| json!({ "RegionName": r, "ReplicaStatus": "ACTIVE" }))
            .collect(),
    )
}

/// `UpdateTable` with `ReplicaUpdates` (global tables version 2019.11.21): creates the
/// replica tables with the source table's schema and registers the table as global.
async fn update_replicas(
    ctx: &Ctx,
    tables: &GlobalTables,
    region: &str,
    request: &GatewayRequest,
    mut body: Value,
) -> Result<GatewayResponse> {
    let Some(table) = body["TableName"].as_str().map(str::to_owned) else {
        return Ok(GatewayResponse::aws_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "TableName is required",
        ));
    };
    let source = ctx
        .moto_json(
            region,
            "dynamodb",
            "DynamoDB_20120810.DescribeTable",
            "1.0",
            &json!({ "TableName": table }),
        )
        .await?;
    if !source.status.is_success() {
        return Ok(GatewayResponse::json(source.status, &source.body));
    }
    let description = &source.body["Table"];
    let mut regions: BTreeSet<String> = tables
        .table(&table)
        .map(|t| t.regions)
        .unwrap_or_else(|| BTreeSet::from([region.to_owned()]));
    let updates = body["ReplicaUpdates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for update in &updates {
        if let Some(replica) = update["Create"]["RegionName"].as_str() {
            create_replica(ctx, replica, description).await?;
            regions.insert(replica.to_owned());
        }
        if let Some(replica) = update["Delete"]["RegionName"].as_str() {
            regions.remove(replica);
        }
    }
    let key_names = description["KeySchema"]
        .as_array()
        .map(|schema| {
            schema
                .iter()
                .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    tables.lock().tables.insert(
        table.clone(),
        GlobalTable {
            regions: regions.clone(),
            key_names,
        },
    );
    tracing::info!(%table, ?regions, "global table replicas updated");
    if let Some(object) = body.as_object_mut() {
        object.remove("ReplicaUpdates");
        if object.len() > 1 {
            let mut rest = GatewayRequest {
                method: request.method.clone(),
                path_and_query: request.path_and_query.clone(),
                headers: request.headers.clone(),
                body: body.to_string().into(),
            };
            rest.headers.remove(http::header::CONTENT_LENGTH);
            forward(ctx, &rest).await?;
        }
    }
    let mut table_description = description.clone();
    table_description["Replicas"] = replicas_json(&regions);
    Ok(GatewayResponse::json(
        StatusCode::OK,
        &json!({ "TableDescription": table_description }),
    ))
}

async fn create_replica(ctx: &Ctx, region: &str, source: &Value) -> Result<()> {
    let mut create = Map::new();
    for field in [
        "TableName",
        "AttributeDefinitions",
        "KeySchema",
        "StreamSpecification",
    ] {
        if !source[field].is_null() {
            create.insert(field.into(), source[field].clone());
        }
    }
    create.insert("BillingMode".into(), json!("PAY_PER_REQUEST"));
    if let Some(indexes) = source["GlobalSecondaryIndexes"]
        .as_array()
        .filter(|i| !i.is_empty())
    {
        let indexes: Vec<Value> = indexes
            .iter()
            .map(|i| json!({ "IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"] }))
            .collect();
        create.insert("GlobalSecondaryIndexes".into(), Value::Array(indexes));
    }
    let reply = ctx
        .moto_json(
            region,
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            "1.0",
            &Value::Object(create),
        )
        .await?;
    let already_there = reply.body["__type"]
        .as_str()
        .is_some_and(|t| t.ends_with("ResourceInUseException"));
    if !reply.status.is_success() && !already_there {
        bail!("creating the replica in {region}: {}", reply.body);
    }
    Ok(())
}

/// The (table, key) pairs a successful write request touched.
pub fn written_keys(operation: &str, body: &Value) -> Vec<(String, Value)> {
    let table = || body["TableName"].as_str().unwrap_or("").to_owned();
    let mut keys = Vec::new();
    match operation {
        "PutItem" => keys.push((table(), body["Item"].clone())),
        "UpdateItem" | "DeleteItem" => keys.push((table(), body["Key"].clone())),
        "BatchWriteItem" => {
            if let Some(tables) = body["RequestItems"].as_object() {
                for (table, requests) in tables {
                    for request in requests.as_array().into_iter().flatten() {
                        if !request["PutRequest"]["Item"].is_null() {
                            keys.push((table.clone(), request["PutRequest"]["Item"].clone()));
                        } else if !request["DeleteRequest"]["Key"].is_null() {
                            keys.push((table.clone(), request["DeleteRequest"]["Key"].clone()));
                        }
                    }
                }
            }
        }
        "TransactWriteItems" => {
            for item in body["TransactItems"].as_array().into_iter().flatten() {
                if let Some(put) = item.get("Put") {
                    keys.push((
                        put["TableName"].as_str().unwrap_or("").to_owned(),
                        put["Item"].clone(),
                    ));
                }
                for kind in ["Update", "Delete"] {
                    if let Some(op) = item.get(kind) {
                        keys.push((
                            op["TableName"].as_str().unwrap_or("").to_owned(),
                            op["Key"].clone(),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    keys
}

/// Only the key attributes of an item.
fn project_key(item: &Value, key_names: &[String]) -> Value {
    let mut key = Map::new();
    for name in key_names {
        if let Some(value) = item.get(name) {
            key.insert(name.clone(), value.clone());
        }
    }
    Value::Object(key)
}

/// Replicates a write to every other region of the table after `global_table_lag`. A
/// region that is down receives nothing until it is back, nor does anything written in it
/// leave it; then the write is applied unless a newer one landed meanwhile (last writer
/// wins), as a global table catches up after an outage.
async fn replicate_write(
    ctx: &Arc<Ctx>,
    tables: &Arc<GlobalTables>,
    region: &str,
    table: &str,
    global: &GlobalTable,
    item_or_key: Value,
) {
    let key = project_key(&item_or_key, &global.key_names);
    let key_text = key.to_string();
    let time = tables.tick();
    tables.claim(table, &key_text, region, time);
    let read = ctx
        .moto_json(
            region,
            "dynamodb",
            "DynamoDB_20120810.GetItem",
            "1.0",
            &json!({ "TableName": table, "Key": key, "ConsistentRead": true }),
        )
        .await;
    let image = match read {
        Ok(reply) if reply.status.is_success() => reply.body.get("Item").cloned(),
        Ok(reply) => {
            tracing::warn!(%table, body = %reply.body, "global table: reading the written item failed");
            return;
        }
        Err(error) => {
            tracing::warn!(%table, %error, "global table: reading the written item failed");
            return;
        }
    };
    let (operation, body) = match &image {
        Some(item) => (
            "DynamoDB_20120810.PutItem",
            json!({ "TableName": table, "Item": item }),
        ),
        None => (
            "DynamoDB_20120810.DeleteItem",
            json!({ "TableName": table, "Key": key }),
        ),
    };
    for target in global.regions.iter().filter(|r| *r != region) {
        let write = Replicated {
            table: table.to_owned(),
            key: key_text.clone(),
            source: region.to_owned(),
            target: target.clone(),
            time,
            operation,
            body: body.clone(),
        };
        let (task_ctx, tables) = (ctx.clone(), tables.clone());
        ctx.spawn(async move {
            tokio::time::sleep(task_ctx.config.global_table_lag).await;
            write.apply(&task_ctx, &tables).await;
        });
    }
}

/// One write on its way to one other region.
struct Replicated {
    table: String,
    key: String,
    source: String,
    target: String,
    time: u128,
    operation: &'static str,
    body: Value,
}

impl Replicated {
    async fn apply(self, ctx: &Ctx, tables: &GlobalTables) {
        let Self {
            table,
            key,
            source,
            target,
            time,
            operation,
            body,
        } = self;
        ctx.faults.wait_until_up(&[&source, &target]).await;
        if !tables.claim(&table, &key, &target, time) {
            tracing::debug!(%table, %target, "global table: a newer write won");
            return;
        }
        match ctx
            .moto_json(&target, "dynamodb", operation, "1.0", &body)
            .await
        {
            Ok(reply) if reply.status.is_success() => {}
            Ok(reply) => {
                tracing::warn!(%table, %target, body = %reply.body, "global table: replicated write failed")
            }
            Err(error) => {
                tracing::warn!(%table, %target, %error, "global table: replicated write failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_keys_cover_every_write_operation() {
        let item = json!({ "pk": { "S": "a" }, "v": { "N": "1" } });
        let key = json!({ "pk": { "S": "b" } });
        assert_eq!(
            written_keys("PutItem", &json!({ "TableName": "t", "Item": item })),
            vec![("t".into(), item.clone())]
        );
        assert_eq!(
            written_keys("UpdateItem", &json!({ "TableName": "t", "Key": key })),
            vec![("t".into(), key.clone())]
        );
        let batch = json!({ "RequestItems": { "t": [ { "PutRequest": { "Item": item } }, { "DeleteRequest": { "Key": key } } ] } });
        assert_eq!(written_keys("BatchWriteItem", &batch).len(), 2);
        let transact = json!({ "TransactItems": [
            { "Put": { "TableName": "t", "Item": item } },
            { "Update": { "TableName": "u", "Key": key } },
            { "ConditionCheck": { "TableName": "t", "Key": key } }
        ] });
        let keys = written_keys("TransactWriteItems", &transact);
        assert_eq!(
            keys.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["t", "u"]
        );
    }

    #[test]
    fn an_older_write_never_overwrites_a_newer_one() {
        let tables = GlobalTables::default();
        let (early, late) = (tables.tick(), tables.tick());
        assert!(late > early);
        assert!(tables.claim("t", "k", "eu-west-1", late));
        assert!(!tables.claim("t", "k", "eu-west-1", early));
        assert!(tables.claim("t", "k", "ap-southeast-1", early));
    }

    #[test]
    fn keys_are_projected_from_items() {
        let item = json!({ "pk": { "S": "a" }, "sk": { "S": "b" }, "v": { "N": "1" } });
        assert_eq!(
            project_key(&item, &["pk".into(), "sk".into()]),
            json!({ "pk": { "S": "a" }, "sk": { "S": "b" } })
        );
    }
}
