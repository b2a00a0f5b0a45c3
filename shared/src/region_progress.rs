//! How far a rollout (or a drift repair) got in one region: kept in the version's record
//! by the registry, and in a repair's own record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Per-region progress of a rollout, as the control region records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionProgress {
    pub replicated: Option<DateTime<Utc>>,
    pub fast_copied: Option<DateTime<Utc>>,
    pub deploy_started: Option<DateTime<Utc>>,
    pub deployed: Option<DateTime<Utc>>,
    pub verified: Option<DateTime<Utc>>,
    pub rolled_back: Option<DateTime<Utc>>,
    /// The endpoint configuration the region served before this rollout.
    pub previous_config: Option<String>,
    pub config: Option<String>,
}
