//! `meridian drill start|status|abort` and the drills in `meridian history`, as a user runs
//! them against the local cloud.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn meridian(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .current_dir(workspace_root())
        .env("MERIDIAN_HOME", home)
        .env(
            "MERIDIAN_VENV",
            workspace_root().join(".meridian").join("venv"),
        )
        .env_remove("MERIDIAN_FLEET")
        .output()
        .expect("the meridian binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_drill_starts_reports_its_steps_shows_in_history_and_is_refused_while_a_region_is_drained() {
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

    let invalid = meridian(
        home.path(),
        &[
            "drill",
            "start",
            "--from",
            "us-east-1",
            "--to",
            "us-east-1",
            "--local",
        ],
    );
    assert!(!invalid.status.success());
    assert!(
        text(&invalid).contains("both us-east-1"),
        "{}",
        text(&invalid)
    );

    let start = meridian(
        home.path(),
        &[
            "drill",
            "start",
            "--from",
            "us-east-1",
            "--to",
            "eu-west-1",
            "--steps",
            "50,100",
            "--bake",
            "1",
            "--local",
        ],
    );
    assert!(start.status.success(), "{}", text(&start));
    assert!(text(&start).contains("started"), "{}", text(&start));

    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let status = meridian(home.path(), &["drill", "status", "--local", "--json"]);
        assert!(status.status.success(), "{}", text(&status));
        let record: serde_json::Value =
            serde_json::from_slice(&status.stdout).expect("drill status JSON");
        if record["status"] != "running" || Instant::now() > deadline {
            break record;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(
        record["steps"].as_array().map(Vec::len),
        Some(2),
        "{record}"
    );

    let history = meridian(home.path(), &["history", "--local"]);
    assert!(history.status.success(), "{}", text(&history));
    assert!(text(&history).contains("Drills"), "{}", text(&history));
    assert!(text(&history).contains("completed"), "{}", text(&history));

    let idle_abort = meridian(home.path(), &["drill", "abort", "--local"]);
    assert!(!idle_abort.status.success());
    assert!(
        text(&idle_abort).contains("no drill is running"),
        "{}",
        text(&idle_abort)
    );

    let drain = meridian(
        home.path(),
        &["drain", "eu-west-1", "--reason", "maintenance", "--local"],
    );
    assert!(drain.status.success(), "{}", text(&drain));
    // The drill reads the regions' records in the primary's replica: wait for the drain,
    // written in eu-west-1's, to replicate there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = meridian(
            home.path(),
            &["status", "--local", "--json", "--replica", "us-east-1"],
        );
        let regions: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        let drained = regions
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["region"] == "eu-west-1" && r["health"]["state"] == "drained_by_hand");
        if drained {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drain never replicated: {regions}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = meridian(
        home.path(),
        &[
            "drill",
            "start",
            "--from",
            "us-east-1",
            "--to",
            "ap-southeast-1",
            "--bake",
            "1",
            "--local",
        ],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("eu-west-1 is drained"),
        "{}",
        text(&refused)
    );

    let down = meridian(home.path(), &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
}
