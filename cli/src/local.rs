//! `meridian local`: the local cloud as a background service of this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use comfy_table::Table;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;
use meridian_local::health_checkers::CheckerStatus;
use meridian_local::moto::{self, MOTO_VERSION};
use meridian_local::provision::{verify, RegionCheck};
use meridian_local::{Functions, LocalCloud, LocalCloudConfig};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Install the pinned moto into the project's virtualenv (done by `up` when needed).
    Install,
    /// Start the local cloud in the background and provision the fleet. Idempotent.
    Up(UpArgs),
    /// Stop the local cloud; no process is left behind. Idempotent.
    Down,
    /// Show whether the local cloud runs and each region's resources.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the local cloud in the foreground (what `up` starts in the background).
    Serve(UpArgs),
    /// Which region Route 53 latency routing sends each client location to, given what
    /// the local health checkers see of each front door (Inverted swaps, Disabled counts as
    /// healthy, fail-open).
    Resolve {
        /// Machine-readable output: the resolutions.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
pub struct UpArgs {
    /// The fleet file to provision.
    #[arg(long, env = "MERIDIAN_FLEET", default_value = "fleet.example.toml")]
    fleet: PathBuf,
    /// Port of the gateway, the AWS endpoint of the local cloud.
    #[arg(long, env = "MERIDIAN_GATEWAY_PORT", default_value_t = 4566)]
    gateway_port: u16,
    /// Port of moto behind the gateway.
    #[arg(long, env = "MERIDIAN_MOTO_PORT", default_value_t = 4567)]
    moto_port: u16,
    /// Port of the first region's front door, the other regions' on the ports after it;
    /// 0 picks free ports (`local status` lists them).
    #[arg(long, env = "MERIDIAN_FRONT_DOOR_PORT", default_value_t = 0)]
    front_door_port: u16,
}

/// What `up` records so that `status` and `down` find the running cloud.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    pid: u32,
    endpoint: String,
    gateway_port: u16,
    moto_port: u16,
    fleet: PathBuf,
    log: PathBuf,
}

fn state_dir() -> PathBuf {
    let dir = moto::meridian_home().join("local");
    std::path::absolute(&dir).unwrap_or(dir)
}

fn state_file() -> PathBuf {
    state_dir().join("state.json")
}

fn log_file() -> PathBuf {
    state_dir().join("local-cloud.log")
}

fn read_state() -> Result<Option<State>> {
    match std::fs::read_to_string(state_file()) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("reading {}", state_file().display())
            })?))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", state_file().display())),
    }
}

/// The endpoint of the running local cloud, for `--local`.
pub fn running_endpoint() -> Result<String> {
    match read_state()? {
        Some(state) if is_alive(state.pid) => Ok(state.endpoint),
        _ => bail!("the local cloud is not running (start it with `meridian local up`)"),
    }
}

fn is_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok())
}

pub async fn run(command: LocalCommand) -> Result<ExitCode> {
    match command {
        LocalCommand::Install => {
            let venv = moto::default_venv();
            eprintln!(
                "installing moto {MOTO_VERSION} into {} (skipped when already there)…",
                venv.display()
            );
            let server = moto::ensure_installed(&venv).await?;
            println!("{}", server.display());
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Up(args) => up(args).await,
        LocalCommand::Down => down().await,
        LocalCommand::Status { json } => status(json).await,
        LocalCommand::Serve(args) => serve(args).await,
        LocalCommand::Resolve { json } => resolve(json).await,
    }
}

/// Reads `GET /_meridian/{path}` of the running local cloud's gateway.
async fn control_get(endpoint: &str, path: &str) -> Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{endpoint}/_meridian/{path}"))
        .send()
        .await
        .with_context(|| format!("asking the local cloud at {endpoint} for {path}"))?;
    let status = response.status();
    let body: Value = serde_json::from_slice(&response.bytes().await?)
        .with_context(|| format!("the local cloud's {path} answer is not JSON"))?;
    if !status.is_success() {
        bail!("the local cloud answered {status} for {path}: {body}");
    }
    Ok(body)
}

/// The routing view the local cloud computes from its health checkers (DNS, Route 53's data
/// plane: it answers whatever faults the control plane has).
async fn resolve(json: bool) -> Result<ExitCode> {
    let view = control_get(&running_endpoint()?, "resolve").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view["resolutions"])?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut records = Table::new();
    records.set_header(["record", "health check", "inverted", "disabled", "routable"]);
    for record in view["records"].as_array().into_iter().flatten() {
        let flag = |name: &str| record[name].as_bool().unwrap_or(false);
        let yes_no = |value: bool| if value { "yes" } else { "no" }.to_owned();
        let routable = (flag("disabled") || flag("endpoint_healthy")) != flag("inverted");
        records.add_row([
            text(&record["region"]),
            if flag("endpoint_healthy") {
                "healthy"
            } else {
                "unhealthy"
            }
            .to_owned(),
            yes_no(flag("inverted")),
            yes_no(flag("disabled")),
            yes_no(routable),
        ]);
    }
    let mut resolutions = Table::new();
    resolutions.set_header(["client in", "routed to"]);
    for resolution in view["resolutions"].as_array().into_iter().flatten() {
        let to = resolution["region"].as_str().unwrap_or("-").to_owned();
        resolutions.add_row([
            text(&resolution["client"]),
            if resolution["failed_open"].as_bool().unwrap_or(false) {
                format!("{to} (fail-open: no healthy record)")
            } else {
                to
            },
        ]);
    }
    println!("{records}\n{resolutions}");
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    Fleet::load(&args.fleet).with_context(|| format!("checking {}", args.fleet.display()))?;
    if let Some(state) = read_state()? {
        if is_alive(state.pid) {
            println!(
                "the local cloud is already running at {} (pid {}, log {})",
                state.endpoint,
                state.pid,
                state.log.display()
            );
            print_exports(&state.endpoint);
            return Ok(ExitCode::SUCCESS);
        }
        std::fs::remove_file(state_file())?;
    }
    let venv = moto::default_venv();
    if !moto::moto_server_path(&venv).exists() {
        eprintln!(
            "installing moto {MOTO_VERSION} into {} (first run only)…",
            venv.display()
        );
    }
    moto::ensure_installed(&venv).await?;
    std::fs::create_dir_all(state_dir())?;
    let log = log_file();
    let log_handle = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(["local", "serve", "--fleet"])
        .arg(&args.fleet)
        .args([
            "--gateway-port",
            &args.gateway_port.to_string(),
            "--moto-port",
            &args.moto_port.to_string(),
            "--front-door-port",
            &args.front_door_port.to_string(),
        ])
        .env("MERIDIAN_VENV", &venv)
        .stdin(Stdio::null())
        .stdout(log_handle.try_clone()?)
        .stderr(log_handle);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("starting the local cloud")?;
    let endpoint = format!("http://127.0.0.1:{}", args.gateway_port);
    eprintln!(
        "starting the local cloud at {endpoint} (log: {})…",
        log.display()
    );
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the local cloud exited during start-up ({status}); last log lines:\n{}",
                tail(&log, 20)
            );
        }
        if let Ok(response) = http
            .get(format!("{endpoint}/_meridian/health"))
            .send()
            .await
        {
            if let Ok(health) = serde_json::from_slice::<serde_json::Value>(
                &response.bytes().await.unwrap_or_default(),
            ) {
                if health["status"] == "ready" {
                    break;
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            let _ = killpg(Pid::from_raw(i32::try_from(child.id())?), Signal::SIGTERM);
            bail!(
                "the local cloud was not ready within 120 s; last log lines:\n{}",
                tail(&log, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = State {
        pid: child.id(),
        endpoint: endpoint.clone(),
        gateway_port: args.gateway_port,
        moto_port: args.moto_port,
        fleet: std::fs::canonicalize(&args.fleet)?,
        log,
    };
    std::fs::write(state_file(), serde_json::to_string_pretty(&state)?)?;
    println!("the local cloud is up at {endpoint} (pid {})", state.pid);
    print_exports(&endpoint);
    for (region, url) in front_doors(&endpoint).await? {
        println!("front door {region} {url}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Each region's front-door base URL, from the running gateway.
async fn front_doors(endpoint: &str) -> Result<BTreeMap<String, String>> {
    Ok(serde_json::from_value(
        control_get(endpoint, "front-doors").await?,
    )?)
}

fn print_exports(endpoint: &str) {
    println!("point any AWS SDK or CLI at it with:");
    println!("  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1");
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn down() -> Result<ExitCode> {
    let Some(state) = read_state()? else {
        println!("the local cloud is not running");
        return Ok(ExitCode::SUCCESS);
    };
    let group = Pid::from_raw(i32::try_from(state.pid)?);
    if is_alive(state.pid) {
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while is_alive(state.pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Whatever is left of the process group (moto included) goes now.
        let _ = killpg(group, Signal::SIGKILL);
    }
    std::fs::remove_file(state_file())?;
    println!(
        "the local cloud is stopped (log kept at {})",
        state.log.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct StatusReport {
    running: bool,
    endpoint: Option<String>,
    pid: Option<u32>,
    log: Option<PathBuf>,
    regions: Vec<RegionCheck>,
    /// Each region's front-door base URL.
    front_doors: BTreeMap<String, String>,
    /// What the local Route 53 health checkers see of each probed health check.
    health_checks: Vec<CheckerStatus>,
}

async fn status(json: bool) -> Result<ExitCode> {
    let state = read_state()?.filter(|s| is_alive(s.pid));
    let Some(state) = state else {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&StatusReport {
                    running: false,
                    endpoint: None,
                    pid: None,
                    log: None,
                    regions: vec![],
                    front_doors: BTreeMap::new(),
                    health_checks: Vec::new(),
                })?
            );
        } else {
            println!("the local cloud is not running (start it with `meridian local up`)");
        }
        return Ok(ExitCode::from(3));
    };
    let fleet = Fleet::load(&state.fleet)?;
    let regions = verify(&ClientFactory::for_endpoint(state.endpoint.clone()), &fleet).await?;
    let front_doors = front_doors(&state.endpoint).await?;
    let health_checks: Vec<CheckerStatus> =
        serde_json::from_value(control_get(&state.endpoint, "health-checks").await?)?;
    if json {
        let report = StatusReport {
            running: true,
            endpoint: Some(state.endpoint),
            pid: Some(state.pid),
            log: Some(state.log),
            regions,
            front_doors,
            health_checks,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "the local cloud runs at {} (pid {}, fleet {}, log {})",
        state.endpoint,
        state.pid,
        state.fleet.display(),
        state.log.display()
    );
    println!("{}", region_table(&regions));
    for (region, url) in &front_doors {
        let reference = meridian::names::health_check_reference(&fleet.name, region);
        let seen = health_checks
            .iter()
            .find(|check| check.caller_reference == reference)
            .map_or_else(
                || "health check not probed yet".to_owned(),
                |check| {
                    let status = if check.healthy {
                        "healthy"
                    } else {
                        "unhealthy"
                    };
                    format!(
                        "health check {status} since {}",
                        check.since.format("%H:%M:%S%.3f")
                    )
                },
            );
        println!("front door {region} {url} ({seen})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The per-region provisioning table shared by `status` and `demo`.
pub fn region_table(regions: &[RegionCheck]) -> Table {
    let mut table = Table::new();
    table.set_header([
        "region",
        "bucket versioning",
        "registry",
        "endpoint",
        "config",
        "health check",
        "ready",
    ]);
    for region in regions {
        let name = if region.primary {
            format!("{} (primary)", region.region)
        } else {
            region.region.clone()
        };
        table.add_row([
            name,
            region.bucket_versioning.clone(),
            if region.registry_replica {
                "replica".into()
            } else {
                "missing".into()
            },
            region.endpoint_status.clone(),
            region.endpoint_config.clone(),
            format!(
                "{}{}",
                region.health_check,
                if region.health_check_inverted {
                    " (inverted)"
                } else {
                    ""
                }
            ),
            if region.is_ready() {
                "yes".into()
            } else {
                "NO".into()
            },
        ]);
    }
    table
}

async fn serve(args: UpArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let fleet = Fleet::load(&args.fleet)?;
    let config = LocalCloudConfig {
        gateway_port: args.gateway_port,
        moto_port: args.moto_port,
        front_door_port: args.front_door_port,
        ..LocalCloudConfig::default()
    };
    let cloud = LocalCloud::start(config, fleet, Functions::new()).await?;
    cloud.host_meridian_functions();
    cloud.provision().await?;
    tracing::info!(endpoint = %cloud.endpoint_url(), "local cloud ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
    cloud.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}
