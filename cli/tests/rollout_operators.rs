//! `meridian rollout pause|resume|promote|abort` and the lock in `rollout status`, as an
//! operator runs them: refused when no rollout of the model runs or the command does not
//! apply, recorded with the caller's identity (STS) and reason otherwise. The state
//! machine's obedience runs end to end in `tests/tests/rollout_operators.rs`; here the
//! lock is taken directly, and the built binary reads and writes the registry through
//! the standard AWS environment.

use std::path::{Path, PathBuf};
use std::process::Output;

use meridian::fleet::Fleet;
use meridian::operator::OperatorAction;
use meridian::registry::Registry;
use meridian_local::{Functions, LocalCloud, LocalCloudConfig};
use tokio::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `meridian ARGS` against `endpoint`, the way any AWS SDK user points it at an endpoint.
async fn meridian(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .current_dir(workspace_root())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env_remove("MERIDIAN_FLEET")
        .output()
        .await
        .expect("the meridian binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_refuse_what_does_not_apply_and_record_who_and_why() {
    let fleet = Fleet::load(&workspace_root().join("fleet.example.toml")).expect("the example");
    let config = LocalCloudConfig::for_tests(workspace_root().join(".meridian"));
    let cloud = LocalCloud::start(config, fleet.clone(), Functions::new())
        .await
        .expect("the local cloud starts");
    cloud.provision().await.expect("provisioned");
    let endpoint = cloud.endpoint_url();

    let idle = meridian(&endpoint, &["rollout", "pause", "llama"]).await;
    assert!(!idle.status.success(), "{}", text(&idle));
    assert!(
        text(&idle).contains("no rollout of llama is running (nothing holds the fleet's lock)"),
        "{}",
        text(&idle)
    );

    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(&cloud.clients().config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    };
    let now = chrono::Utc::now();
    registry
        .acquire_or_queue("mistral", "7", now)
        .await
        .expect("lock");
    registry
        .acquire_or_queue("llama", "2", now)
        .await
        .expect("queue");
    let status = meridian(&endpoint, &["rollout", "status"]).await;
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("rollout lock: held by mistral/7 for ")
            && text(&status).contains("(execution not started yet")
            && text(&status).contains("queued: llama/2"),
        "{}",
        text(&status)
    );
    let other = meridian(&endpoint, &["rollout", "abort", "llama"]).await;
    assert!(!other.status.success(), "{}", text(&other));
    assert!(
        text(&other).contains("held by mistral/7; llama/2 is queued behind it (position 1)"),
        "{}",
        text(&other)
    );

    let paused = meridian(
        &endpoint,
        &[
            "rollout",
            "pause",
            "mistral",
            "--reason",
            "checking latency",
        ],
    )
    .await;
    assert!(paused.status.success(), "{}", text(&paused));
    assert!(
        text(&paused).contains("pause mistral/7 recorded"),
        "{}",
        text(&paused)
    );
    let again = meridian(&endpoint, &["rollout", "pause", "mistral"]).await;
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        text(&again)
            .contains("cannot pause the rollout of mistral/7: the rollout is already paused"),
        "{}",
        text(&again)
    );
    let resumed = meridian(&endpoint, &["rollout", "resume", "mistral"]).await;
    assert!(resumed.status.success(), "{}", text(&resumed));
    let not_paused = meridian(&endpoint, &["rollout", "resume", "mistral"]).await;
    assert!(
        text(&not_paused).contains("the rollout is not paused; nothing to resume"),
        "{}",
        text(&not_paused)
    );

    let control = registry
        .operator_control("mistral", "7")
        .await
        .expect("control");
    let recorded: Vec<(OperatorAction, Option<&str>)> = control
        .history
        .iter()
        .map(|r| (r.action, r.why.as_deref()))
        .collect();
    assert_eq!(
        recorded,
        [
            (OperatorAction::Pause, Some("checking latency")),
            (OperatorAction::Resume, None)
        ]
    );
    assert!(
        control
            .history
            .iter()
            .all(|r| r.who.starts_with("arn:aws:") && !r.who.contains("unverified")),
        "who is the caller's ARN from STS: {:?}",
        control.history
    );
    cloud.shutdown().await.expect("shutdown");
}
