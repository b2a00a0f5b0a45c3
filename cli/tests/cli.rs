//! The `meridian` binary as a user runs it.

use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use meridian_tests::cli::{free_port, text, with_home};
use meridian_tests::workspace_root;

fn meridian(home: &Path, args: &[&str]) -> Output {
    with_home(env!("CARGO_BIN_EXE_meridian"), home, args)
        .output()
        .expect("the meridian binary runs")
}

#[test]
fn fleet_check_accepts_the_example_and_names_the_fields_of_a_bad_file() {
    let home = tempfile::tempdir().expect("temp dir");
    let ok = meridian(home.path(), &["fleet", "check", "fleet.example.toml"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("primary us-east-1, 3 regions"),
        "{}",
        text(&ok)
    );

    let example =
        std::fs::read_to_string(workspace_root().join("fleet.example.toml")).expect("example");
    let broken = example
        .replacen("name = \"eu-west-1\"", "name = \"eu-wst-1\"", 1)
        .replacen(
            "time_zone = \"Asia/Singapore\"",
            "time_zone = \"Mars/Olympus\"",
            1,
        );
    let path = home.path().join("broken.toml");
    std::fs::write(&path, broken).expect("write");
    let bad = meridian(
        home.path(),
        &["fleet", "check", path.to_str().expect("utf-8 path")],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let message = text(&bad);
    assert!(message.contains("regions[1].name"), "{message}");
    assert!(message.contains("regions[2].time_zone"), "{message}");
}

#[test]
fn local_up_is_idempotent_and_down_leaves_no_process_behind() {
    let home = tempfile::tempdir().expect("temp dir");
    let (gateway, moto) = (free_port(), free_port());
    let ports = [
        "--gateway-port".to_owned(),
        gateway.to_string(),
        "--moto-port".to_owned(),
        moto.to_string(),
    ];
    let up_args: Vec<&str> = ["local", "up"]
        .into_iter()
        .chain(ports.iter().map(String::as_str))
        .collect();

    let up = meridian(home.path(), &up_args);
    assert!(up.status.success(), "{}", text(&up));
    assert!(
        text(&up).contains(&format!("http://127.0.0.1:{gateway}")),
        "{}",
        text(&up)
    );
    let again = meridian(home.path(), &up_args);
    assert!(
        again.status.success() && text(&again).contains("already running"),
        "{}",
        text(&again)
    );

    let status = meridian(home.path(), &["local", "status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(report["running"], true);
    let regions = report["regions"].as_array().expect("regions");
    assert_eq!(regions.len(), 3);
    assert!(
        regions
            .iter()
            .all(|r| r["endpoint_status"] == "InService" && r["bucket_versioning"] == "Enabled"),
        "{report}"
    );
    let pid = report["pid"].as_u64().expect("pid");

    let down = meridian(home.path(), &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the local cloud process is gone"
    );
    for port in [gateway, moto] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens on {port} any more"
        );
    }
    let down_again = meridian(home.path(), &["local", "down"]);
    assert!(down_again.status.success(), "{}", text(&down_again));
    let stopped = meridian(home.path(), &["local", "status"]);
    assert_eq!(stopped.status.code(), Some(3), "{}", text(&stopped));
}

#[test]
fn drain_status_history_and_undrain_work_against_the_local_cloud() {
    let home = tempfile::tempdir().expect("temp dir");
    let (gateway, moto) = (free_port(), free_port());
    let up = meridian(
        home.path(),
        &[
            "local",
            "up",
            "--gateway-port",
            &gateway.to_string(),
            "--moto-port",
            &moto.to_string(),
        ],
    );
    assert!(up.status.success(), "{}", text(&up));

    let drain = meridian(
        home.path(),
        &["drain", "eu-west-1", "--reason", "maintenance", "--local"],
    );
    assert!(drain.status.success(), "{}", text(&drain));
    let status = meridian(home.path(), &["status", "--local", "--json"]);
    let regions: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let eu = regions
        .as_array()
        .and_then(|r| r.iter().find(|r| r["region"] == "eu-west-1"))
        .cloned()
        .expect("eu-west-1");
    assert_eq!(eu["health"]["state"], "drained_by_hand", "{eu}");

    let last = meridian(
        home.path(),
        &["drain", "us-east-1", "--reason", "x", "--local"],
    );
    let also = meridian(
        home.path(),
        &["drain", "ap-southeast-1", "--reason", "x", "--local"],
    );
    assert!(last.status.success(), "{}", text(&last));
    assert!(
        !also.status.success(),
        "the last region in service cannot be drained"
    );
    assert!(text(&also).contains("min_healthy"), "{}", text(&also));

    let history = meridian(home.path(), &["history", "--local", "--json"]);
    let events: serde_json::Value = serde_json::from_slice(&history.stdout).expect("history JSON");
    let kinds: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["drain", "drain", "suppressed"],
        "the refusal is recorded too: {events}"
    );

    let undrain = meridian(home.path(), &["undrain", "eu-west-1", "--local"]);
    assert!(undrain.status.success(), "{}", text(&undrain));
    let status = meridian(home.path(), &["status", "--local", "--json"]);
    let regions: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let eu = regions
        .as_array()
        .and_then(|r| r.iter().find(|r| r["region"] == "eu-west-1"))
        .cloned()
        .expect("eu-west-1");
    assert_eq!(eu["health"]["state"], "healthy");

    let down = meridian(home.path(), &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
}
