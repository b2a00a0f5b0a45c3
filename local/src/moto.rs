//! The pinned moto server: installed into a project-local virtualenv and run as a child
//! process whose Step Functions interpreter calls back into the gateway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

/// The moto release every machine runs; the emulations in `EMULATIONS.md` were measured on it.
pub const MOTO_VERSION: &str = "5.2.5";

/// moto extras the local cloud needs (server mode, the Step Functions interpreter,
/// DynamoDB expressions, S3 checksums, EventBridge patterns).
const MOTO_EXTRAS: &str = "server,stepfunctions,dynamodb,s3,events";

/// Where the project keeps its virtualenv and local-cloud state: `$MERIDIAN_HOME`, or
/// `.meridian` under the current directory.
pub fn meridian_home() -> PathBuf {
    std::env::var_os("MERIDIAN_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".meridian"))
}

/// The virtualenv moto lives in: `$MERIDIAN_VENV`, or `venv` under [`meridian_home`].
pub fn default_venv() -> PathBuf {
    std::env::var_os("MERIDIAN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| meridian_home().join("venv"))
}

/// The `moto_server` executable inside a virtualenv.
pub fn moto_server_path(venv: &Path) -> PathBuf {
    venv.join("bin").join("moto_server")
}

/// Creates the virtualenv and installs the pinned moto unless it is already there.
/// Idempotent: a marker file records the installed version.
pub async fn ensure_installed(venv: &Path) -> Result<PathBuf> {
    let marker = venv.join(".meridian-moto-version");
    let server = moto_server_path(venv);
    let wanted = format!("{MOTO_VERSION} [{MOTO_EXTRAS}]");
    if server.exists() && tokio::fs::read_to_string(&marker).await.ok().as_deref() == Some(&wanted)
    {
        return Ok(server);
    }
    if !venv.join("bin").join("python").exists() {
        let python = std::env::var("MERIDIAN_PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&python).arg("-m").arg("venv").arg(venv))
            .await
            .with_context(|| format!("creating the virtualenv {} with {python}", venv.display()))?;
    }
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("moto[{MOTO_EXTRAS}]=={MOTO_VERSION}")))
    .await
    .with_context(|| format!("installing moto {MOTO_VERSION} into {}", venv.display()))?;
    tokio::fs::write(&marker, wanted).await?;
    Ok(server)
}

async fn run(command: &mut Command) -> Result<()> {
    let output = command.stdin(Stdio::null()).output().await?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command.as_std(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// moto's server entry point with the local cloud's fixes to moto's speed
/// (`moto_server.py`), run by the virtualenv's Python in place of `moto_server`.
const PATCHED_SERVER: &str = include_str!("moto_server.py");

/// A running moto server; killed when dropped.
pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    /// Starts moto (`server`, the virtualenv's `moto_server`, run through the Python beside
    /// it with [`PATCHED_SERVER`]) on `port` with `MOTO_PORT=callback_port`, so its Step
    /// Functions interpreter sends `lambda:invoke` (and every other service call) to the
    /// gateway, then enables state-machine execution.
    pub async fn start(server: &Path, port: u16, callback_port: u16, log: &Path) -> Result<Self> {
        let python = server.with_file_name("python");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new(&python)
            .args([
                "-c",
                PATCHED_SERVER,
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_PORT", callback_port.to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting moto with {}", python.display()))?;
        let mut moto = Self { child, port };
        moto.wait_ready(Duration::from_secs(60)).await?;
        let http = reqwest::Client::new();
        let response = http
            .post(format!("http://127.0.0.1:{port}/moto-api/config"))
            .header("content-type", "application/json")
            .body(r#"{"stepfunctions":{"execute_state_machine":true}}"#)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "moto refused the Step Functions configuration: {}",
                response.status()
            );
        }
        Ok(moto)
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/moto-api/data.json", self.port);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto exited during start-up ({status}); see its log");
            }
            if let Ok(response) = http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "moto did not answer on port {} within {within:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops moto and waits for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
