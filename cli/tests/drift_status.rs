//! `meridian status` shows each region's drift, as its record holds it, and its latest
//! drift repair: columns in the table and `drift` / `repair` fields in the JSON (null for
//! a region in sync, never repaired). The check that
//! records drift runs end to end in `tests/tests/drift.rs`; here the record is written
//! directly, and the built binary reads it through the standard AWS environment.

use std::process::Output;

use chrono::{DateTime, Utc};
use meridian::adapters::HealthDeps;
use meridian::drift::{Difference, Drift};
use meridian::failover::RegionHealth;
use meridian::fleet::Fleet;
use meridian::health::{HealthStore, Write};
use meridian::registry::Registry;
use meridian::repair::{Repair, RepairStatus};
use meridian_local::{Functions, LocalCloud, LocalCloudConfig};
use tokio::process::Command;

use meridian_tests::cli::{against, text};
use meridian_tests::workspace_root;

/// `meridian ARGS` against `endpoint`, the way any AWS SDK user points it at an endpoint.
async fn meridian(endpoint: &str, args: &[&str]) -> Output {
    Command::from(against(env!("CARGO_BIN_EXE_meridian"), endpoint, args))
        .output()
        .await
        .expect("the meridian binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_regions_drift_in_the_table_and_the_json() {
    let fleet = Fleet::load(&workspace_root().join("fleet.example.toml")).expect("the example");
    let config = LocalCloudConfig::for_tests(workspace_root().join(".meridian"));
    let cloud = LocalCloud::start(config, fleet.clone(), Functions::new())
        .await
        .expect("the local cloud starts");
    cloud.provision().await.expect("provisioned");
    let since: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().expect("a time");
    let drift = Drift {
        since,
        expected: "llama/1".into(),
        differences: vec![Difference {
            field: "config".into(),
            expected: "llama-1-abcdef01".into(),
            actual: "hand-made".into(),
        }],
    };
    let store = HealthDeps::new(&cloud.clients(), &fleet, "eu-west-1")
        .await
        .store;
    let mut record = RegionHealth::new("eu-west-1", since);
    record.drift = Some(drift.clone());
    assert_eq!(store.save(&record, None).await.expect("write"), Write::Done);
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    };
    let repair = Repair {
        region: "eu-west-1".into(),
        drift_since: since,
        model: "llama".into(),
        version: "1".into(),
        digest: "abcdef01".into(),
        execution: meridian::repair::execution_name("eu-west-1", since),
        status: RepairStatus::Running,
        started: since,
        ended: None,
        reason: None,
        progress: Default::default(),
    };
    registry.begin_repair(&repair).await.expect("write repair");
    registry
        .update_repair(&repair.task(), |r| {
            r.status = RepairStatus::Failed;
            r.reason = Some("Meridian.SmokeTestFailed: no answer".into());
        })
        .await
        .expect("fail repair");

    let endpoint = cloud.endpoint_url();
    let json = meridian(&endpoint, &["status", "--json"]).await;
    assert!(json.status.success(), "{}", text(&json));
    let regions: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    let by_region = |name: &str| {
        regions
            .as_array()
            .and_then(|all| all.iter().find(|r| r["region"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {regions}"))
    };
    assert_eq!(
        by_region("eu-west-1")["drift"],
        serde_json::to_value(&drift).expect("json")
    );
    assert_eq!(by_region("us-east-1")["drift"], serde_json::Value::Null);
    assert_eq!(by_region("eu-west-1")["repair"]["status"], "failed");
    assert_eq!(by_region("us-east-1")["repair"], serde_json::Value::Null);

    let table = meridian(&endpoint, &["status"]).await;
    assert!(table.status.success(), "{}", text(&table));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("drift"), "{table}");
    let eu_row = table
        .lines()
        .find(|l| l.contains("eu-west-1"))
        .unwrap_or_else(|| panic!("an eu-west-1 row in {table}"));
    assert!(
        eu_row.contains("since 2026-12-01 10:00:00 UTC: config: expected"),
        "{table}"
    );
    assert!(
        eu_row.contains("failed (llama/1, repair-eu-west-1-") && eu_row.contains("no answer"),
        "{table}"
    );
    cloud.shutdown().await.expect("shutdown");
}
