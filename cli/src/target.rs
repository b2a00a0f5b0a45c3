//! Where every command finds the fleet file and AWS (or the local cloud): the options
//! they share.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use meridian::aws::ClientFactory;
use meridian::fleet::Fleet;

/// Where a command finds the fleet and AWS.
#[derive(Args, Clone)]
pub struct Target {
    /// The fleet file.
    #[arg(long, env = "MERIDIAN_FLEET", default_value = "fleet.example.toml")]
    pub fleet: PathBuf,
    /// Talk to the running local cloud (`meridian local up`) instead of the AWS endpoint
    /// the environment configures.
    #[arg(long)]
    pub local: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// The region whose table replica to read records and history from (default: for
    /// `status`, each region's own replica, else the first of the fleet that answers; for
    /// `history`, the first that answers: a dark region or an impaired us-east-1 does not
    /// stop either command).
    #[arg(long)]
    pub replica: Option<String>,
}

impl Target {
    pub fn load(&self) -> Result<(Fleet, ClientFactory)> {
        let fleet = Fleet::load(&self.fleet)
            .with_context(|| format!("reading {}", self.fleet.display()))?;
        let clients = if self.local {
            ClientFactory::for_endpoint(crate::local::running_endpoint()?)
        } else {
            ClientFactory::from_env()
        };
        Ok((fleet, clients))
    }
}
