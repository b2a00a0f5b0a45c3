//! Running the `meridian` binary as a user does, for the CLI's integration tests. They pass
//! the binary's path (`env!("CARGO_BIN_EXE_meridian")`): only they know it.

use std::path::Path;
use std::process::{Command, Output};

use crate::workspace_root;

/// `meridian ARGS` with its own home (where `meridian local up` keeps its state) and the
/// project's moto virtualenv, from the workspace root, ignoring the caller's fleet file.
pub fn with_home(binary: &str, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(workspace_root())
        .env("MERIDIAN_HOME", home)
        .env(
            "MERIDIAN_VENV",
            workspace_root().join(".meridian").join("venv"),
        )
        .env_remove("MERIDIAN_FLEET");
    command
}

/// `meridian ARGS` against `endpoint`, the way any AWS SDK user points it at one.
pub fn against(binary: &str, endpoint: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(workspace_root())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env_remove("MERIDIAN_FLEET");
    command
}

/// What a command printed, standard output then standard error.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
