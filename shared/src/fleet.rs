//! The fleet description: which regions serve the model, where versions are uploaded and
//! replicated, the registry table and the DNS name, parsed from TOML and validated once.
//!
//! Everything else in Meridian takes a [`Fleet`], so it can rely on the invariants checked
//! here (known regions, no duplicates, non-zero and consistent capacity, valid bucket
//! names, the primary among the regions, the DNS record inside its zone, failover rules
//! and rollout settings within bounds) instead of re-checking them. Every problem is reported at once, each named by its TOML path, so
//! a broken file is fixed in one pass. See `fleet.example.toml` at the workspace root.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::failover::FailoverSettings;
use crate::rollout::{RolloutSettings, TrafficStrategy, SAGEMAKER_DEPLOYMENT_TIMEOUT_SECONDS};

pub use crate::regions::AWS_REGIONS;

/// A validated fleet description. Obtain one from [`Fleet::from_toml_str`] or
/// [`Fleet::load`] (or by deserializing, which runs the same validation), so its
/// invariants hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// Deployment name, the prefix of resource names: 3..=40 of `[a-z0-9-]`.
    pub name: String,
    /// The region that leads every rollout; always one of [`Fleet::regions`].
    pub primary_region: String,
    /// How traffic is spread across the regions.
    pub pattern: Pattern,
    /// S3 bucket model owners upload to; replicated into every regional bucket.
    pub primary_bucket: String,
    /// The DynamoDB global table holding the registry.
    pub registry_table: String,
    /// The name clients call.
    pub dns: Dns,
    /// The production variant name of every region's endpoint (`variant_name`, default
    /// [`crate::variant::DEFAULT_VARIANT_NAME`]); a valid SageMaker variant name. The one
    /// source of the name: see [`crate::variant`].
    pub variant_name: String,
    /// The serving regions, in file order; never empty, names unique.
    pub regions: Vec<RegionSpec>,
    /// The failover safety rules, from the optional `[failover]` section (defaults when
    /// absent); `min_healthy` is always within `1..=regions.len()`.
    #[serde(serialize_with = "serialize_failover")]
    pub failover: FailoverSettings,
    /// How model versions are rolled out, from the optional `[rollout]` section (defaults
    /// when absent); `traffic_percent` suits the strategy and every duration is within
    /// bounds.
    #[serde(serialize_with = "serialize_rollout")]
    pub rollout: RolloutSettings,
    /// The `[cost]` section: prices for `meridian cost` (the guide's when absent).
    pub cost: crate::prices::CostSettings,
    /// The `[traffic]` section: warm traffic to standbys and the drills' abort rule
    /// (defaults when absent).
    pub traffic: crate::traffic_settings::TrafficSettings,
    /// The `[drift]` section: whether drift is repaired as well as reported (default off).
    pub drift: crate::drift_settings::DriftSettings,
}

/// Bounds of the `[failover]` durations, in seconds.
const MAX_COOLDOWN_SECONDS: u64 = 86_400;
const MAX_FAILBACK_AFTER_SECONDS: u64 = 604_800;
/// Bounds of `[failover]`'s `settle_seconds`: at least a second (the table's replication
/// lag is rarely below that, and 0 would void the safety argument), at most a minute.
const MIN_SETTLE_SECONDS: u64 = 1;
const MAX_SETTLE_SECONDS: u64 = 60;

/// Bounds of `[rollout]`'s `traffic_percent`, by strategy.
const MAX_CANARY_PERCENT: u32 = 50;
const MIN_LINEAR_PERCENT: u32 = 10;
const MAX_LINEAR_PERCENT: u32 = 50;
/// Bounds of the `[rollout]` durations, in seconds. The bake time is SageMaker's
/// `WaitIntervalInSeconds`, which allows 0..=3600.
const MAX_BAKE_SECONDS: u64 = 3_600;
const MAX_ROLLOUT_TIMEOUT_SECONDS: u64 = 86_400;
/// Meridian's own bake polls the operator's control every `StatusPollSeconds` (9 history
/// events a look): 6 hours at the default 30 s cost 6,480 of an execution's 25,000.
const MAX_COMMIT_BAKE_SECONDS: u64 = 21_600;
/// The largest fast-copy budget of one invocation, in MiB (1 TiB).
const MAX_COPY_INVOCATION_MIB: u64 = 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// Multi-region traffic pattern; decides how DNS and rollouts treat non-primary regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Every region serves traffic.
    ActiveActive,
    /// The primary serves; the other regions stand by for failover.
    ActivePassive,
    /// Clients are routed to the region nearest to them.
    Geo,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::ActiveActive => "active-active",
            Pattern::ActivePassive => "active-passive",
            Pattern::Geo => "geo",
        })
    }
}

/// The DNS name clients call, so routing can be changed without touching clients, and
/// how fast Route 53 takes a region that stops answering out of it: each region's record
/// sits behind a Route 53 HTTPS health check of that region's front door `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dns {
    /// Route 53 hosted zone name.
    pub zone: String,
    /// Record name; inside `zone` (or its apex), compared case-insensitively.
    pub record: String,
    /// TTL of each region's record: how long a resolver may keep sending clients to a
    /// region after Route 53 stopped answering with it; within `0..=MAX_TTL_SECONDS`.
    pub ttl_seconds: u32,
    /// Seconds between two probes of one Route 53 health checker: 10 or 30, the only
    /// values Route 53 offers.
    pub health_check_interval_seconds: u32,
    /// Consecutive failed (or passed) probes before Route 53 changes a region's health
    /// check status; `1..=10`.
    pub failure_threshold: u32,
}

/// `[dns] ttl_seconds` when absent: small enough that the worst case of
/// [`Dns::worst_case_failover`] for the default settings stays under a minute.
pub const DEFAULT_TTL_SECONDS: u32 = 15;
/// `[dns] health_check_interval_seconds` when absent: Route 53's fast interval.
pub const DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS: u32 = 10;
/// `[dns] failure_threshold` when absent.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 2;
/// The request intervals Route 53 health checks accept.
pub const HEALTH_CHECK_INTERVALS: [u32; 2] = [10, 30];
/// The failure thresholds Route 53 health checks accept.
pub const FAILURE_THRESHOLDS: std::ops::RangeInclusive<u32> = 1..=10;
/// The longest TTL `[dns] ttl_seconds` may give (one day): longer would make a drained
/// region's clients wait longer than any failover is worth.
pub const MAX_TTL_SECONDS: u32 = 86_400;
/// How long a Route 53 HTTPS health checker waits for a connection: a region that went
/// dark fails each probe only after this.
pub const HEALTH_CHECK_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// What the worst case budgets for a health check's new status to reach Route 53's DNS
/// servers. AWS publishes no figure for it (record changes, a control-plane path, reach
/// every server within 60 s); this is the budget docs/deploy.md argues for.
pub const HEALTH_STATUS_PROPAGATION: Duration = Duration::from_secs(10);

impl Dns {
    /// The modelled worst case from a region going dark to the last client resolving to
    /// it: every checker's `failure_threshold` probes fail, the last one after the
    /// checker's connect timeout (detection), the new status reaches the DNS servers
    /// ([`HEALTH_STATUS_PROPAGATION`]), and a resolver that cached the old answer just
    /// before keeps it for the record's TTL. 15 + 20 + 4 + 10 = 49 s for the defaults.
    pub fn worst_case_failover(&self) -> Duration {
        let detection = Duration::from_secs(u64::from(
            self.health_check_interval_seconds * self.failure_threshold,
        )) + HEALTH_CHECK_CONNECT_TIMEOUT;
        detection + HEALTH_STATUS_PROPAGATION + Duration::from_secs(u64::from(self.ttl_seconds))
    }
}

/// One serving region: where its model replica lives and how its endpoint is sized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionSpec {
    /// AWS region code, one of [`AWS_REGIONS`].
    pub name: String,
    /// Regional S3 bucket, the replica of the primary bucket; unique across the fleet.
    pub bucket: String,
    /// SageMaker endpoint name in this region.
    pub endpoint: String,
    /// SageMaker instance type, e.g. `ml.g5.2xlarge`.
    pub instance_type: String,
    /// Desired instance count; within `min_instances..=max_instances`.
    pub instance_count: u32,
    /// Autoscaling floor; at least 1, so a region never scales to zero.
    pub min_instances: u32,
    /// Autoscaling ceiling; at least `min_instances`.
    pub max_instances: u32,
    /// The region's local time zone (for business-hours decisions), from its IANA name.
    #[serde(serialize_with = "serialize_tz")]
    pub time_zone: Tz,
    /// CloudWatch alarm names (in this region) that count for this region.
    pub alarms: Vec<String>,
    /// Target tracking on SageMaker's `SageMakerVariantInvocationsPerInstance`; none
    /// when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_invocations_per_instance: Option<u32>,
    /// Local-time windows with their own floor and ceiling ([`crate::capacity`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<crate::windows::Window>,
}

/// Why a fleet description could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The fleet file could not be read.
    #[error("cannot read fleet file {}: {source}", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape (syntax error, wrong type, unknown
    /// field). toml's message names the line and the key.
    #[error("invalid fleet TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// The TOML has the right shape but breaks one or more rules; all are listed.
    #[error("invalid fleet description:{}", display_problems(.0))]
    Invalid(Vec<FieldError>),
}

impl FleetError {
    /// The individual validation problems (empty for read and parse errors).
    pub fn problems(&self) -> &[FieldError] {
        match self {
            FleetError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

fn display_problems(problems: &[FieldError]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

pub use crate::field_error::FieldError;

impl Fleet {
    /// Parses and validates a fleet description from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Fleet, FleetError> {
        let raw: RawFleet = toml::from_str(text)?;
        raw.validate()
    }

    /// Reads, parses and validates the fleet file at `path`.
    pub fn load(path: &Path) -> Result<Fleet, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Fleet::from_toml_str(&text)
    }

    /// The region called `name`, if the fleet serves from it.
    pub fn region(&self, name: &str) -> Option<&RegionSpec> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The primary region's spec.
    ///
    /// # Panics
    ///
    /// Only if the fleet was assembled by hand with a `primary_region` not among its
    /// regions; a fleet from [`Fleet::from_toml_str`], [`Fleet::load`] or deserialization
    /// always has it.
    pub fn primary(&self) -> &RegionSpec {
        match self.region(&self.primary_region) {
            Some(region) => region,
            None => panic!(
                "fleet {:?}: primary region {:?} is not among its regions",
                self.name, self.primary_region
            ),
        }
    }

    /// The region names, in file order.
    pub fn region_names(&self) -> Vec<&str> {
        self.regions.iter().map(|r| r.name.as_str()).collect()
    }
}

/// Deserializing a `Fleet` validates it exactly like [`Fleet::from_toml_str`], so a
/// `Fleet` embedded in another document is just as trustworthy.
impl<'de> Deserialize<'de> for Fleet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawFleet::deserialize(deserializer)?
            .validate()
            .map_err(serde::de::Error::custom)
    }
}

fn serialize_tz<S: Serializer>(tz: &Tz, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(tz.name())
}

/// Writes the failover rules in the fleet file's shape (`cooldown_seconds`, ...), so a
/// serialized fleet parses back. Durations are whole seconds, as the file has them.
fn serialize_failover<S: Serializer>(
    settings: &FailoverSettings,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct FileShape {
        min_healthy: usize,
        cooldown_seconds: u64,
        failback_after_seconds: u64,
        settle_seconds: u64,
    }
    FileShape {
        min_healthy: settings.min_healthy,
        cooldown_seconds: settings.cooldown.as_secs(),
        failback_after_seconds: settings.failback_after.as_secs(),
        settle_seconds: settings.settle.as_secs(),
    }
    .serialize(serializer)
}

/// Writes the rollout settings in the fleet file's shape (`bake_seconds`, ...), so a
/// serialized fleet parses back. Durations are whole seconds, as the file has them.
fn serialize_rollout<S: Serializer>(
    settings: &RolloutSettings,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct FileShape {
        strategy: TrafficStrategy,
        traffic_percent: u32,
        bake_seconds: u64,
        replica_timeout_seconds: u64,
        deploy_timeout_seconds: u64,
        commit_bake_seconds: u64,
        copy_part_mib: u64,
        copy_invocation_mib: u64,
    }
    FileShape {
        strategy: settings.strategy,
        traffic_percent: settings.traffic_percent,
        bake_seconds: settings.bake.as_secs(),
        replica_timeout_seconds: settings.replica_timeout.as_secs(),
        deploy_timeout_seconds: settings.deploy_timeout.as_secs(),
        commit_bake_seconds: settings.commit_bake.as_secs(),
        copy_part_mib: settings.copy.part_bytes / MIB,
        copy_invocation_mib: settings.copy.invocation_bytes / MIB,
    }
    .serialize(serializer)
}

// ---------------------------------------------------------------------------------------
// Raw (unvalidated) shape. Every field is optional so that a missing one is reported,
// with its path, alongside every other problem rather than stopping parsing.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    name: Option<String>,
    primary_region: Option<String>,
    pattern: Option<Pattern>,
    primary_bucket: Option<String>,
    registry_table: Option<String>,
    dns: Option<RawDns>,
    variant_name: Option<String>,
    regions: Option<Vec<RawRegion>>,
    failover: Option<RawFailover>,
    rollout: Option<RawRollout>,
    cost: Option<crate::prices::RawCost>,
    traffic: Option<crate::traffic_settings::RawTraffic>,
    drift: Option<crate::drift_settings::RawDrift>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    zone: Option<String>,
    record: Option<String>,
    ttl_seconds: Option<i64>,
    health_check_interval_seconds: Option<i64>,
    failure_threshold: Option<i64>,
}

/// `[failover]`; every key optional, defaulting to [`FailoverSettings::default`]. Read as
/// `i64` (any TOML integer) so that a negative value gets a bounds message naming the
/// field rather than a type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    min_healthy: Option<i64>,
    cooldown_seconds: Option<i64>,
    failback_after_seconds: Option<i64>,
    settle_seconds: Option<i64>,
}

/// `[rollout]`; every key optional, defaulting to [`RolloutSettings::default`]. Numbers
/// are read as `i64` for the same reason as in [`RawFailover`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    strategy: Option<TrafficStrategy>,
    traffic_percent: Option<i64>,
    bake_seconds: Option<i64>,
    replica_timeout_seconds: Option<i64>,
    deploy_timeout_seconds: Option<i64>,
    commit_bake_seconds: Option<i64>,
    copy_part_mib: Option<i64>,
    copy_invocation_mib: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: Option<String>,
    bucket: Option<String>,
    endpoint: Option<String>,
    instance_type: Option<String>,
    instance_count: Option<u32>,
    min_instances: Option<u32>,
    max_instances: Option<u32>,
    time_zone: Option<String>,
    #[serde(default)]
    alarms: Vec<String>,
    target_invocations_per_instance: Option<i64>,
    #[serde(default)]
    windows: Vec<crate::windows::RawWindow>,
}

/// Accumulates problems so all of them are reported together.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// The value of a required field, or `None` after recording it as missing.
    fn required<T>(&mut self, field: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.add(field, "missing");
        }
        value
    }

    /// Records `check`'s complaint, if any, against `field`.
    fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(problem) = result {
            self.add(field, problem);
        }
    }
}

impl RawFleet {
    fn validate(self) -> Result<Fleet, FleetError> {
        let mut p = Problems::default();

        let name = p.required("name", self.name);
        if let Some(name) = &name {
            p.check("name", check_fleet_name(name));
        }
        let primary_region = p.required("primary_region", self.primary_region);
        let pattern = if self.pattern.is_none() {
            p.add(
                "pattern",
                "missing (one of active-active, active-passive, geo)",
            );
            None
        } else {
            self.pattern
        };
        let variant_name = self
            .variant_name
            .unwrap_or_else(|| crate::variant::DEFAULT_VARIANT_NAME.to_owned());
        p.check(
            "variant_name",
            crate::variant::check_variant_name(&variant_name),
        );
        let primary_bucket = p.required("primary_bucket", self.primary_bucket);
        if let Some(bucket) = &primary_bucket {
            p.check("primary_bucket", check_bucket(bucket));
        }
        let registry_table = p.required("registry_table", self.registry_table);
        if let Some(table) = &registry_table {
            p.check("registry_table", check_table(table));
        }
        let dns = p
            .required("dns", self.dns)
            .and_then(|dns| validate_dns(dns, &mut p));

        let raw_regions = match self.regions {
            None => {
                p.add("regions", "missing (at least one [[regions]] table)");
                Vec::new()
            }
            Some(regions) if regions.is_empty() => {
                p.add("regions", "must list at least one region");
                regions
            }
            Some(regions) => regions,
        };

        // Fleet-wide uniqueness, checked on the raw values so it is reported even when
        // a region has other problems.
        let mut seen_names: HashMap<&str, usize> = HashMap::new();
        let mut seen_buckets: HashMap<&str, usize> = HashMap::new();
        for (i, region) in raw_regions.iter().enumerate() {
            if let Some(name) = region.name.as_deref() {
                if AWS_REGIONS.contains(&name) {
                    if let Some(first) = seen_names.get(name) {
                        p.add(
                            format!("regions[{i}].name"),
                            format!("duplicate region {name:?} (also regions[{first}])"),
                        );
                    } else {
                        seen_names.insert(name, i);
                    }
                }
            }
            if let Some(bucket) = region.bucket.as_deref() {
                if let Some(first) = seen_buckets.get(bucket) {
                    p.add(
                        format!("regions[{i}].bucket"),
                        format!(
                            "bucket {bucket:?} is also regions[{first}].bucket; \
                             each region needs its own replica bucket"
                        ),
                    );
                } else {
                    seen_buckets.insert(bucket, i);
                }
            }
        }
        if let Some(primary_bucket) = primary_bucket.as_deref() {
            if let Some(i) = seen_buckets.get(primary_bucket) {
                p.add(
                    "primary_bucket",
                    format!(
                        "{primary_bucket:?} is also regions[{i}].bucket; the upload bucket \
                         is replicated into the regional buckets, so it must differ from them"
                    ),
                );
            }
        }
        if let Some(primary) = primary_region.as_deref() {
            let names: Vec<&str> = raw_regions
                .iter()
                .filter_map(|r| r.name.as_deref())
                .collect();
            if !names.is_empty() && !names.contains(&primary) {
                p.add(
                    "primary_region",
                    format!(
                        "{primary:?} is not one of the fleet's regions ({})",
                        names.join(", ")
                    ),
                );
            }
        }

        let region_count = raw_regions.len();
        let regions: Option<Vec<RegionSpec>> = raw_regions
            .into_iter()
            .enumerate()
            .map(|(i, region)| validate_region(i, region, &mut p))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let failover = validate_failover(self.failover, region_count, &mut p);
        let rollout = validate_rollout(self.rollout, &mut p);
        let cost = crate::prices::validate(self.cost, &mut p.0);
        let traffic = crate::traffic_settings::validate(self.traffic, &mut p.0);
        let drift = crate::drift_settings::validate(self.drift, &mut p.0);

        match (
            name,
            primary_region,
            pattern,
            primary_bucket,
            registry_table,
            dns,
            regions,
            failover,
            rollout,
        ) {
            (
                Some(name),
                Some(primary_region),
                Some(pattern),
                Some(primary_bucket),
                Some(registry_table),
                Some(dns),
                Some(regions),
                Some(failover),
                Some(rollout),
            ) if p.0.is_empty() => Ok(Fleet {
                name,
                primary_region,
                pattern,
                primary_bucket,
                registry_table,
                dns,
                variant_name,
                regions,
                failover,
                rollout,
                cost,
                traffic,
                drift,
            }),
            _ => Err(FleetError::Invalid(p.0)),
        }
    }
}

/// Validates `[dns]`: the names, and the health check and TTL settings (defaults when
/// absent). Numbers are read as `i64`, as in [`RawFailover`], so a negative value gets a
/// bounds message naming the field.
fn validate_dns(raw: RawDns, p: &mut Problems) -> Option<Dns> {
    let zone = p.required("dns.zone", raw.zone);
    let record = p.required("dns.record", raw.record);
    let mut bounded =
        |field: &str, value: Option<i64>, default: u32, ok: &dyn Fn(u32) -> bool, what: &str| {
            let Some(value) = value else {
                return Some(default);
            };
            let valid = u32::try_from(value).ok().filter(|v| ok(*v));
            if valid.is_none() {
                p.add(format!("dns.{field}"), format!("{what}, not {value}"));
            }
            valid
        };
    let ttl_seconds = bounded(
        "ttl_seconds",
        raw.ttl_seconds,
        DEFAULT_TTL_SECONDS,
        &|ttl| ttl <= MAX_TTL_SECONDS,
        &format!("must be between 0 and {MAX_TTL_SECONDS} (one day)"),
    );
    let health_check_interval_seconds = bounded(
        "health_check_interval_seconds",
        raw.health_check_interval_seconds,
        DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS,
        &|interval| HEALTH_CHECK_INTERVALS.contains(&interval),
        "must be 10 or 30 (the request intervals Route 53 health checks offer)",
    );
    let failure_threshold = bounded(
        "failure_threshold",
        raw.failure_threshold,
        DEFAULT_FAILURE_THRESHOLD,
        &|threshold| FAILURE_THRESHOLDS.contains(&threshold),
        "must be between 1 and 10 (Route 53's failure thresholds)",
    );
    let (zone, record) = (zone?, record?);
    let zone_ok = check_domain(&zone);
    let record_ok = check_domain(&record);
    let both_ok = zone_ok.is_ok() && record_ok.is_ok();
    p.check("dns.zone", zone_ok);
    p.check("dns.record", record_ok);
    if both_ok {
        let z = normalize_domain(&zone);
        let r = normalize_domain(&record);
        if r != z && !r.ends_with(&format!(".{z}")) {
            p.add(
                "dns.record",
                format!("{record:?} is not inside the zone {zone:?}"),
            );
        }
    }
    Some(Dns {
        zone,
        record,
        ttl_seconds: ttl_seconds?,
        health_check_interval_seconds: health_check_interval_seconds?,
        failure_threshold: failure_threshold?,
    })
}

/// Validates `[failover]` against the fleet's `regions` (the number of `[[regions]]`
/// tables; 0 when that list is missing or empty, which is reported elsewhere, and then
/// `min_healthy` is only checked to be at least 1). `None` if any value is out of bounds.
fn validate_failover(
    raw: Option<RawFailover>,
    regions: usize,
    p: &mut Problems,
) -> Option<FailoverSettings> {
    let defaults = FailoverSettings::default();
    let Some(raw) = raw else {
        return Some(defaults);
    };

    let min_healthy = match raw.min_healthy {
        None => Some(defaults.min_healthy),
        Some(value) => {
            let valid = usize::try_from(value)
                .ok()
                .filter(|&n| n >= 1 && (regions == 0 || n <= regions));
            if valid.is_none() {
                let bounds = if regions == 0 {
                    "must be at least 1".to_string()
                } else {
                    format!("must be between 1 and {regions} (the number of regions)")
                };
                p.add("failover.min_healthy", format!("{bounds}, not {value}"));
            }
            valid
        }
    };
    let mut seconds =
        |field: &str, value: Option<i64>, default: Duration, min: u64, max: u64, what| {
            let Some(value) = value else {
                return Some(default);
            };
            let valid = u64::try_from(value)
                .ok()
                .filter(|&s| (min..=max).contains(&s));
            if valid.is_none() {
                p.add(
                    format!("failover.{field}"),
                    format!("must be between {min} and {max} ({what}), not {value}"),
                );
            }
            valid.map(Duration::from_secs)
        };
    let cooldown = seconds(
        "cooldown_seconds",
        raw.cooldown_seconds,
        defaults.cooldown,
        0,
        MAX_COOLDOWN_SECONDS,
        "one day",
    );
    let failback_after = seconds(
        "failback_after_seconds",
        raw.failback_after_seconds,
        defaults.failback_after,
        0,
        MAX_FAILBACK_AFTER_SECONDS,
        "one week",
    );
    let settle = seconds(
        "settle_seconds",
        raw.settle_seconds,
        defaults.settle,
        MIN_SETTLE_SECONDS,
        MAX_SETTLE_SECONDS,
        "above the table's replication lag, at most a minute",
    );

    Some(FailoverSettings {
        min_healthy: min_healthy?,
        cooldown: cooldown?,
        failback_after: failback_after?,
        settle: settle?,
    })
}

/// Validates `[rollout]`: `traffic_percent` against the strategy (given or default) and
/// each duration against its bounds. `None` if any value is out of bounds.
fn validate_rollout(raw: Option<RawRollout>, p: &mut Problems) -> Option<RolloutSettings> {
    let defaults = RolloutSettings::default();
    let Some(raw) = raw else {
        return Some(defaults);
    };

    let strategy = raw.strategy.unwrap_or(defaults.strategy);
    let traffic_percent = match raw.traffic_percent {
        None => Some(defaults.traffic_percent),
        Some(value) => {
            let (min, max) = match strategy {
                TrafficStrategy::Canary => (1, MAX_CANARY_PERCENT),
                TrafficStrategy::Linear => (MIN_LINEAR_PERCENT, MAX_LINEAR_PERCENT),
                TrafficStrategy::AllAtOnce => (1, 100),
            };
            let valid = u32::try_from(value)
                .ok()
                .filter(|percent| (min..=max).contains(percent));
            if valid.is_none() {
                let bound = if i64::from(min) > value {
                    format!("at least {min}%")
                } else {
                    format!("at most {max}%")
                };
                let problem = match strategy {
                    TrafficStrategy::Canary => {
                        format!("a canary is {bound} of capacity, not {value}")
                    }
                    TrafficStrategy::Linear => {
                        format!("a linear step is {bound} of capacity, not {value}")
                    }
                    TrafficStrategy::AllAtOnce => format!(
                        "must be between 1 and 100 (a percentage; all-at-once ignores it), \
                         not {value}"
                    ),
                };
                p.add("rollout.traffic_percent", problem);
            }
            valid
        }
    };
    let mut seconds =
        |field: &str, value: Option<i64>, default: Duration, min: u64, max: u64, what| {
            let Some(value) = value else {
                return Some(default);
            };
            let valid = u64::try_from(value)
                .ok()
                .filter(|s| (min..=max).contains(s));
            if valid.is_none() {
                p.add(
                    format!("rollout.{field}"),
                    format!("must be between {min} and {max} ({what}), not {value}"),
                );
            }
            valid.map(Duration::from_secs)
        };
    let bake = seconds(
        "bake_seconds",
        raw.bake_seconds,
        defaults.bake,
        0,
        MAX_BAKE_SECONDS,
        "SageMaker's WaitIntervalInSeconds range",
    );
    let replica_timeout = seconds(
        "replica_timeout_seconds",
        raw.replica_timeout_seconds,
        defaults.replica_timeout,
        1,
        MAX_ROLLOUT_TIMEOUT_SECONDS,
        "one day",
    );
    let deploy_timeout = seconds(
        "deploy_timeout_seconds",
        raw.deploy_timeout_seconds,
        defaults.deploy_timeout,
        1,
        *SAGEMAKER_DEPLOYMENT_TIMEOUT_SECONDS.end(),
        "SageMaker's cap on one endpoint deployment",
    );
    let commit_bake = seconds(
        "commit_bake_seconds",
        raw.commit_bake_seconds,
        defaults.commit_bake,
        0,
        MAX_COMMIT_BAKE_SECONDS,
        "six hours, to bound the execution's history",
    );

    let mut mib = |field: &str, value: Option<i64>, default: u64, min: u64, max: u64, what| {
        let Some(value) = value else {
            return Some(default);
        };
        let valid = u64::try_from(value)
            .ok()
            .filter(|m| (min..=max).contains(m));
        if valid.is_none() {
            p.add(
                format!("rollout.{field}"),
                format!("must be between {min} and {max} ({what}), not {value}"),
            );
        }
        valid.map(|m| m * MIB)
    };
    let copy_part = mib(
        "copy_part_mib",
        raw.copy_part_mib,
        defaults.copy.part_bytes,
        crate::copy_plan::MIN_PART_BYTES / MIB,
        crate::copy_plan::MAX_PART_BYTES / MIB,
        "S3's part sizes",
    );
    let copy_invocation = mib(
        "copy_invocation_mib",
        raw.copy_invocation_mib,
        defaults.copy.invocation_bytes,
        1,
        MAX_COPY_INVOCATION_MIB,
        "1 TiB",
    );

    let settings = RolloutSettings {
        strategy,
        traffic_percent: traffic_percent?,
        bake: bake?,
        replica_timeout: replica_timeout?,
        deploy_timeout: deploy_timeout?,
        commit_bake: commit_bake?,
        copy: crate::copy_plan::CopySettings {
            part_bytes: copy_part?,
            invocation_bytes: copy_invocation?,
        },
    };
    if settings.deploy_timeout <= settings.total_bake() {
        p.add(
            "rollout.deploy_timeout_seconds",
            format!(
                "{} s does not outlast the deployment's bake periods ({} x {} s = {} s); \
                 raise it, or shorten bake_seconds",
                settings.deploy_timeout.as_secs(),
                settings.bake_periods(),
                settings.bake.as_secs(),
                settings.total_bake().as_secs()
            ),
        );
        return None;
    }
    Some(settings)
}

/// Validates one region's own fields; `None` if any is missing or invalid.
fn validate_region(i: usize, raw: RawRegion, p: &mut Problems) -> Option<RegionSpec> {
    let at = |field: &str| format!("regions[{i}].{field}");
    let before = p.0.len();

    let name = p.required(&at("name"), raw.name);
    if let Some(name) = &name {
        if !AWS_REGIONS.contains(&name.as_str()) {
            p.add(at("name"), format!("unknown AWS region {name:?}"));
        }
    }
    let bucket = p.required(&at("bucket"), raw.bucket);
    if let Some(bucket) = &bucket {
        p.check(&at("bucket"), check_bucket(bucket));
    }
    let endpoint = p.required(&at("endpoint"), raw.endpoint);
    if let Some(endpoint) = &endpoint {
        p.check(&at("endpoint"), check_endpoint(endpoint));
    }
    let instance_type = p.required(&at("instance_type"), raw.instance_type);
    if let Some(instance_type) = &instance_type {
        p.check(&at("instance_type"), check_instance_type(instance_type));
    }

    let count = p.required(&at("instance_count"), raw.instance_count);
    let min = p.required(&at("min_instances"), raw.min_instances);
    let max = p.required(&at("max_instances"), raw.max_instances);
    if count == Some(0) {
        p.add(at("instance_count"), "must be at least 1 (zero capacity)");
    }
    if min == Some(0) {
        p.add(
            at("min_instances"),
            "must be at least 1 (autoscaling could scale the endpoint to zero)",
        );
    }
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            p.add(
                at("max_instances"),
                format!("{max} is less than min_instances {min}"),
            );
        } else if let Some(count) = count.filter(|&c| c > 0) {
            if count < min || count > max {
                p.add(
                    at("instance_count"),
                    format!("{count} is outside [min_instances {min}, max_instances {max}]"),
                );
            }
        }
    }

    let time_zone =
        p.required(&at("time_zone"), raw.time_zone)
            .and_then(|tz| match tz.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    p.add(at("time_zone"), format!("unknown time zone {tz:?}"));
                    None
                }
            });

    let mut seen_alarms: HashMap<&str, usize> = HashMap::new();
    for (j, alarm) in raw.alarms.iter().enumerate() {
        let field = format!("regions[{i}].alarms[{j}]");
        if alarm.trim().is_empty() {
            p.add(field, "alarm name is empty");
        } else if alarm.chars().count() > 255 {
            p.add(field, "alarm name is longer than 255 characters");
        } else if let Some(first) = seen_alarms.get(alarm.as_str()) {
            p.add(
                field,
                format!("duplicate alarm {alarm:?} (also alarms[{first}])"),
            );
        } else {
            seen_alarms.insert(alarm, j);
        }
    }

    let target_invocations_per_instance =
        crate::windows::validate_target(i, raw.target_invocations_per_instance, &mut p.0);
    let windows = crate::windows::validate_windows(i, raw.windows, &mut p.0);

    if p.0.len() != before {
        return None;
    }
    Some(RegionSpec {
        name: name?,
        bucket: bucket?,
        endpoint: endpoint?,
        instance_type: instance_type?,
        instance_count: count?,
        min_instances: min?,
        max_instances: max?,
        time_zone: time_zone?,
        alarms: raw.alarms,
        target_invocations_per_instance,
        windows,
    })
}

// ---------------------------------------------------------------------------------------
// Name rules. Each returns the problem text, without the field path.

/// Deployment names prefix resource names (buckets, tables, stacks), so they are kept
/// short and within every service's character set.
fn check_fleet_name(name: &str) -> Result<(), String> {
    if !(3..=40).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{name:?} must be 3 to 40 characters of lowercase letters, digits and '-'"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("{name:?} must start with a lowercase letter"));
    }
    if name.ends_with('-') {
        return Err(format!("{name:?} must not end with '-'"));
    }
    Ok(())
}

/// S3 general-purpose bucket naming rules.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = bucket.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err(format!(
            "{bucket:?} is not a valid S3 bucket name (must be 3 to 63 characters)"
        ));
    }
    if !bytes.iter().all(|&b| alnum(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "{bucket:?} is not a valid S3 bucket name \
             (only lowercase letters, digits, '.' and '-')"
        ));
    }
    if !bytes.first().copied().is_some_and(alnum) || !bytes.last().copied().is_some_and(alnum) {
        return Err(format!(
            "{bucket:?} is not a valid S3 bucket name \
             (must start and end with a letter or digit)"
        ));
    }
    if bucket.contains("..") {
        return Err(format!(
            "{bucket:?} is not a valid S3 bucket name (adjacent periods)"
        ));
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "{bucket:?} is not a valid S3 bucket name (formatted as an IP address)"
        ));
    }
    if ["xn--", "sthree-"].iter().any(|p| bucket.starts_with(p))
        || ["-s3alias", "--ol-s3"].iter().any(|s| bucket.ends_with(s))
    {
        return Err(format!(
            "{bucket:?} is not a valid S3 bucket name (reserved prefix or suffix)"
        ));
    }
    Ok(())
}

/// DynamoDB table naming rules.
fn check_table(table: &str) -> Result<(), String> {
    if !(3..=255).contains(&table.len())
        || !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "{table:?} is not a valid DynamoDB table name \
             (3 to 255 characters of letters, digits, '_', '-' and '.')"
        ));
    }
    Ok(())
}

/// SageMaker endpoint naming rules: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bytes = endpoint.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{endpoint:?} is not a valid SageMaker endpoint name (1 to 63 letters, digits \
             and '-', starting and ending with a letter or digit)"
        ))
    }
}

fn check_instance_type(instance_type: &str) -> Result<(), String> {
    match instance_type.strip_prefix("ml.") {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!(
            "{instance_type:?} is not a SageMaker instance type (expected e.g. \"ml.g5.2xlarge\")"
        )),
    }
}

/// A DNS name: dot-separated labels of 1..=63 letters, digits, '-' or '_', at most 253
/// characters; one trailing dot is allowed.
fn check_domain(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if trimmed.is_empty() || trimmed.len() > 253 || !trimmed.split('.').all(label_ok) {
        return Err(format!("{name:?} is not a valid DNS name"));
    }
    Ok(())
}

fn normalize_domain(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    /// A compact valid fleet the error cases below mutate with string replacement.
    const VALID: &str = r#"
name = "meridian-test"
primary_region = "us-east-1"
pattern = "active-active"
primary_bucket = "meridian-test-models"
registry_table = "meridian-test-registry"

[dns]
zone = "llm.example.internal"
record = "api.llm.example.internal"

[[regions]]
name = "us-east-1"
bucket = "meridian-test-models-us-east-1"
endpoint = "meridian-test-llm"
instance_type = "ml.g5.2xlarge"
instance_count = 2
min_instances = 1
max_instances = 4
time_zone = "America/New_York"
alarms = ["meridian-test-llm-5xx"]

[[regions]]
name = "eu-west-1"
bucket = "meridian-test-models-eu-west-1"
endpoint = "meridian-test-llm"
instance_type = "ml.g5.2xlarge"
instance_count = 2
min_instances = 1
max_instances = 4
time_zone = "Europe/Dublin"

[[regions]]
name = "ap-southeast-1"
bucket = "meridian-test-models-ap-southeast-1"
endpoint = "meridian-test-llm"
instance_type = "ml.g5.2xlarge"
instance_count = 1
min_instances = 1
max_instances = 2
time_zone = "Asia/Singapore"
"#;

    /// `VALID` with each `(from, to)` replaced once (the first occurrence).
    fn edit(edits: &[(&str, &str)]) -> String {
        let mut text = VALID.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "test edit {from:?} does not apply");
            text = text.replacen(from, to, 1);
        }
        text
    }

    fn err(text: &str) -> String {
        match Fleet::from_toml_str(text) {
            Ok(fleet) => panic!("expected an error, got {fleet:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn example_file_parses() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        assert_eq!(fleet.name, "meridian-demo");
        assert_eq!(fleet.pattern, Pattern::ActiveActive);
        assert_eq!(
            fleet.region_names(),
            ["us-east-1", "eu-west-1", "ap-southeast-1"]
        );
        assert_eq!(fleet.primary().name, "us-east-1");
        assert_eq!(fleet.primary().time_zone, chrono_tz::America::New_York);
        let tz = |name| fleet.region(name).map(|r| r.time_zone);
        assert_eq!(tz("eu-west-1"), Some(chrono_tz::Europe::Dublin));
        assert_eq!(tz("ap-southeast-1"), Some(chrono_tz::Asia::Singapore));
        assert_eq!(fleet.primary_bucket, "meridian-demo-models");
        assert_eq!(fleet.registry_table, "meridian-demo-registry");
        assert_eq!(fleet.dns.record, "api.llm.example.internal");
        assert_eq!(fleet.primary().alarms.len(), 2);
    }

    #[test]
    fn valid_fixture_parses_and_alarms_default_to_empty() {
        let fleet = Fleet::from_toml_str(VALID).expect("fixture is valid");
        assert_eq!(fleet.regions.len(), 3);
        assert_eq!(fleet.primary().alarms, ["meridian-test-llm-5xx"]);
        assert!(fleet
            .region("eu-west-1")
            .is_some_and(|r| r.alarms.is_empty()));
        assert!(fleet.region("us-west-2").is_none());
    }

    #[test]
    fn the_fleet_names_the_variant_primary_unless_it_says_otherwise() {
        let fleet = Fleet::from_toml_str(VALID).expect("fixture is valid");
        assert_eq!(fleet.variant_name, "primary");
        let named = edit(&[(
            "registry_table = \"meridian-test-registry\"\n",
            "registry_table = \"meridian-test-registry\"\nvariant_name = \"blue-1\"\n",
        )]);
        let fleet = Fleet::from_toml_str(&named).expect("a valid variant name");
        assert_eq!(fleet.variant_name, "blue-1");
        let bad = edit(&[(
            "registry_table = \"meridian-test-registry\"\n",
            "registry_table = \"meridian-test-registry\"\nvariant_name = \"blue_1\"\n",
        )]);
        let message = err(&bad);
        assert!(
            message.contains("variant_name: \"blue_1\" is not a valid SageMaker variant name"),
            "{message}"
        );
    }

    #[test]
    fn patterns_parse_kebab_case() {
        for (text, pattern) in [
            ("active-active", Pattern::ActiveActive),
            ("active-passive", Pattern::ActivePassive),
            ("geo", Pattern::Geo),
        ] {
            let toml = edit(&[("\"active-active\"", &format!("{text:?}"))]);
            let fleet = Fleet::from_toml_str(&toml).expect("valid pattern");
            assert_eq!(fleet.pattern, pattern);
            assert_eq!(pattern.to_string(), text);
        }
        let message = err(&edit(&[("\"active-active\"", "\"active\"")]));
        assert!(message.contains("unknown variant `active`"), "{message}");
    }

    #[test]
    fn each_error_names_its_field() {
        // (what, edits to VALID, expected substring of the error message)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "unknown region",
                &[("name = \"eu-west-1\"", "name = \"eu-wst-1\"")],
                "regions[1].name: unknown AWS region \"eu-wst-1\"",
            ),
            (
                "duplicate region",
                &[("name = \"ap-southeast-1\"", "name = \"eu-west-1\"")],
                "regions[2].name: duplicate region \"eu-west-1\" (also regions[1])",
            ),
            (
                "missing primary",
                &[("primary_region = \"us-east-1\"\n", "")],
                "primary_region: missing",
            ),
            (
                "primary not in regions",
                &[(
                    "primary_region = \"us-east-1\"",
                    "primary_region = \"us-west-2\"",
                )],
                "primary_region: \"us-west-2\" is not one of the fleet's regions \
                 (us-east-1, eu-west-1, ap-southeast-1)",
            ),
            (
                "zero capacity",
                &[("instance_count = 2", "instance_count = 0")],
                "regions[0].instance_count: must be at least 1 (zero capacity)",
            ),
            (
                "zero minimum",
                &[("min_instances = 1", "min_instances = 0")],
                "regions[0].min_instances: must be at least 1",
            ),
            (
                "bad time zone",
                &[("\"America/New_York\"", "\"Mars/Olympus\"")],
                "regions[0].time_zone: unknown time zone \"Mars/Olympus\"",
            ),
            (
                "min greater than max",
                &[
                    ("min_instances = 1", "min_instances = 3"),
                    ("max_instances = 4", "max_instances = 2"),
                ],
                "regions[0].max_instances: 2 is less than min_instances 3",
            ),
            (
                "count above max",
                &[("instance_count = 2", "instance_count = 5")],
                "regions[0].instance_count: 5 is outside [min_instances 1, max_instances 4]",
            ),
            (
                "count below min",
                &[(
                    "min_instances = 1\nmax_instances = 2",
                    "min_instances = 2\nmax_instances = 2",
                )],
                "regions[2].instance_count: 1 is outside [min_instances 2, max_instances 2]",
            ),
            (
                "bucket with uppercase",
                &[("meridian-test-models-eu-west-1", "Meridian-Models")],
                "regions[1].bucket: \"Meridian-Models\" is not a valid S3 bucket name",
            ),
            (
                "bucket too short",
                &[("\"meridian-test-models-eu-west-1\"", "\"ab\"")],
                "regions[1].bucket: \"ab\" is not a valid S3 bucket name",
            ),
            (
                "bucket ends with hyphen",
                &[("\"meridian-test-models\"", "\"meridian-test-models-\"")],
                "primary_bucket: \"meridian-test-models-\" is not a valid S3 bucket name",
            ),
            (
                "shared bucket",
                &[(
                    "meridian-test-models-eu-west-1",
                    "meridian-test-models-us-east-1",
                )],
                "regions[1].bucket: bucket \"meridian-test-models-us-east-1\" is also \
                 regions[0].bucket",
            ),
            (
                "primary bucket equals a regional bucket",
                &[(
                    "meridian-test-models-ap-southeast-1",
                    "meridian-test-models",
                )],
                "primary_bucket: \"meridian-test-models\" is also regions[2].bucket",
            ),
            (
                "record outside zone",
                &[("api.llm.example.internal", "api.example.com")],
                "dns.record: \"api.example.com\" is not inside the zone \"llm.example.internal\"",
            ),
            (
                "record sharing only a suffix with the zone",
                &[("api.llm.example.internal", "xllm.example.internal")],
                "dns.record: \"xllm.example.internal\" is not inside the zone",
            ),
            (
                "bad deployment name",
                &[("name = \"meridian-test\"", "name = \"Meridian_Test\"")],
                "name: \"Meridian_Test\" must be 3 to 40 characters",
            ),
            (
                "deployment name too long",
                &[(
                    "name = \"meridian-test\"",
                    &format!("name = \"{}\"", "m".repeat(41)),
                )],
                "name: ",
            ),
            (
                "bad registry table",
                &[("meridian-test-registry", "registry table")],
                "registry_table: \"registry table\" is not a valid DynamoDB table name",
            ),
            (
                "bad endpoint",
                &[("endpoint = \"meridian-test-llm\"", "endpoint = \"-llm\"")],
                "regions[0].endpoint: \"-llm\" is not a valid SageMaker endpoint name",
            ),
            (
                "bad instance type",
                &[("ml.g5.2xlarge", "g5.2xlarge")],
                "regions[0].instance_type: \"g5.2xlarge\" is not a SageMaker instance type",
            ),
            (
                "empty alarm name",
                &[(
                    "[\"meridian-test-llm-5xx\"]",
                    "[\"meridian-test-llm-5xx\", \"\"]",
                )],
                "regions[0].alarms[1]: alarm name is empty",
            ),
            (
                "missing regional field",
                &[("endpoint = \"meridian-test-llm\"\n", "")],
                "regions[0].endpoint: missing",
            ),
            (
                "missing dns zone",
                &[("zone = \"llm.example.internal\"\n", "")],
                "dns.zone: missing",
            ),
            (
                "unknown top-level field",
                &[("pattern =", "colour = \"blue\"\npattern =")],
                "colour",
            ),
            (
                "unknown region field",
                &[(
                    "instance_count = 2",
                    "instance_count = 2\ninstance_cuont = 2",
                )],
                "instance_cuont",
            ),
            ("unknown dns field", &[("[dns]", "[dns]\nttl = 60")], "ttl"),
            (
                "wrong type",
                &[("instance_count = 2", "instance_count = \"two\"")],
                "instance_count",
            ),
        ];
        for (what, edits, expected) in cases {
            let message = err(&edit(edits));
            assert!(
                message.contains(expected),
                "{what}: expected {expected:?} in:\n{message}"
            );
        }
    }

    #[test]
    fn empty_or_missing_regions_is_an_error() {
        let head = VALID.split("[[regions]]").next().unwrap_or_default();
        let message = err(&head.replacen("[dns]", "regions = []\n\n[dns]", 1));
        assert!(
            message.contains("regions: must list at least one region"),
            "{message}"
        );

        let message = err(head);
        assert!(message.contains("regions: missing"), "{message}");
        // With no region list to compare with, the primary is not blamed as well.
        assert!(!message.contains("primary_region"), "{message}");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let text = edit(&[
            ("primary_region = \"us-east-1\"\n", ""),
            ("name = \"eu-west-1\"", "name = \"eu-wst-1\""),
            ("\"America/New_York\"", "\"Mars/Olympus\""),
            ("instance_count = 1", "instance_count = 0"),
        ]);
        let error = Fleet::from_toml_str(&text).expect_err("invalid");
        let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "primary_region",
                "regions[0].time_zone",
                "regions[1].name",
                "regions[2].instance_count"
            ]
        );
        let message = error.to_string();
        assert_eq!(message.lines().count(), 5, "{message}");
        assert!(message.starts_with("invalid fleet description:\n  primary_region: missing"));
    }

    #[test]
    fn deserializing_validates_and_serializing_round_trips() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let text = toml::to_string(&fleet).expect("serializes");
        assert!(text.contains("time_zone = \"Asia/Singapore\""), "{text}");
        assert_eq!(Fleet::from_toml_str(&text).expect("re-parses"), fleet);
        assert_eq!(toml::from_str::<Fleet>(&text).expect("deserializes"), fleet);

        let bad = edit(&[("\"America/New_York\"", "\"Mars/Olympus\"")]);
        let message = toml::from_str::<Fleet>(&bad)
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("regions[0].time_zone"), "{message}");
    }

    #[test]
    fn dns_health_check_settings_default_to_a_failover_under_a_minute() {
        let fleet = Fleet::from_toml_str(VALID).expect("valid");
        assert_eq!(fleet.dns.ttl_seconds, DEFAULT_TTL_SECONDS);
        assert_eq!(fleet.dns.health_check_interval_seconds, 10);
        assert_eq!(fleet.dns.failure_threshold, 2);
        // 10 s x 2 probes, the last one's 4 s connect timeout, 10 s for the status to
        // reach the DNS servers, then 15 s of cached answers.
        assert_eq!(fleet.dns.worst_case_failover(), Duration::from_secs(49));
        assert!(fleet.dns.worst_case_failover() < Duration::from_secs(60));
    }

    #[test]
    fn dns_health_check_settings_are_read_and_round_trip() {
        let text = edit(&[(
            "record = \"api.llm.example.internal\"\n",
            "record = \"api.llm.example.internal\"\nttl_seconds = 60\n\
             health_check_interval_seconds = 30\nfailure_threshold = 3\n",
        )]);
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        assert_eq!(
            (
                fleet.dns.ttl_seconds,
                fleet.dns.health_check_interval_seconds,
                fleet.dns.failure_threshold
            ),
            (60, 30, 3)
        );
        assert_eq!(fleet.dns.worst_case_failover(), Duration::from_secs(164));
        let written = toml::to_string(&fleet).expect("serializes");
        assert!(
            written.contains("health_check_interval_seconds = 30"),
            "{written}"
        );
        assert_eq!(Fleet::from_toml_str(&written).expect("re-parses"), fleet);
    }

    #[test]
    fn dns_health_check_settings_out_of_route53_bounds_are_named() {
        let text = edit(&[(
            "record = \"api.llm.example.internal\"\n",
            "record = \"api.llm.example.internal\"\nttl_seconds = -1\n\
             health_check_interval_seconds = 20\nfailure_threshold = 11\n",
        )]);
        let error = Fleet::from_toml_str(&text).expect_err("invalid");
        let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "dns.ttl_seconds",
                "dns.health_check_interval_seconds",
                "dns.failure_threshold"
            ]
        );
        let message = error.to_string();
        assert!(
            message.contains("dns.health_check_interval_seconds: must be 10 or 30"),
            "{message}"
        );
        assert!(message.contains("not 11"), "{message}");
        for threshold in [0, 1, 10] {
            let text = edit(&[(
                "record = \"api.llm.example.internal\"\n",
                &format!(
                    "record = \"api.llm.example.internal\"\nfailure_threshold = {threshold}\n"
                ),
            )]);
            assert_eq!(
                Fleet::from_toml_str(&text).is_ok(),
                threshold != 0,
                "{threshold}"
            );
        }
    }

    #[test]
    fn load_reads_files_and_names_the_path_on_failure() {
        let dir = std::env::temp_dir().join(format!("meridian-fleet-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("fleet.toml");
        std::fs::write(&path, VALID).expect("write fixture");
        let loaded = Fleet::load(&path);
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(loaded.expect("loads").regions.len(), 3);

        let missing = dir.join("no-such-fleet.toml");
        let error = Fleet::load(&missing).expect_err("missing file");
        assert!(matches!(error, FleetError::Read { .. }));
        assert!(
            error.to_string().contains(&missing.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn region_list_is_complete_and_unique() {
        let mut sorted = AWS_REGIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), AWS_REGIONS.len());
        for code in [
            "us-east-1",
            "ap-southeast-7",
            "mx-central-1",
            "us-gov-west-1",
            "cn-northwest-1",
        ] {
            assert!(AWS_REGIONS.contains(&code), "{code}");
        }
    }

    #[test]
    fn name_rules() {
        assert!(check_bucket("my.bucket-1").is_ok());
        for bad in ["192.168.0.1", "a..b", "xn--abc", "bucket-s3alias", "a_b"] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_fleet_name("abc").is_ok());
        for bad in ["ab", "1abc", "abc-", "ab c"] {
            assert!(check_fleet_name(bad).is_err(), "{bad}");
        }
        assert!(check_domain("api.example.com.").is_ok());
        for bad in ["", ".", "a..b", "-a.com", "a b.com"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failover_defaults_when_the_section_is_absent() {
        let fleet = Fleet::from_toml_str(VALID).expect("fixture is valid");
        assert_eq!(fleet.failover, FailoverSettings::default());
        assert_eq!(fleet.failover.min_healthy, 1);
        assert_eq!(fleet.failover.cooldown, Duration::from_secs(60));
        assert_eq!(fleet.failover.failback_after, Duration::from_secs(300));

        // An empty section, or one giving only some keys, defaults the rest.
        let empty = Fleet::from_toml_str(&format!("{VALID}\n[failover]\n")).expect("valid");
        assert_eq!(empty.failover, FailoverSettings::default());
        let partial = Fleet::from_toml_str(&format!("{VALID}\n[failover]\ncooldown_seconds = 5\n"))
            .expect("valid");
        assert_eq!(
            partial.failover,
            FailoverSettings {
                cooldown: Duration::from_secs(5),
                ..FailoverSettings::default()
            }
        );
    }

    #[test]
    fn failover_section_parses() {
        let example = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        assert_eq!(example.failover, FailoverSettings::default());

        let text = format!(
            "{VALID}\n[failover]\nmin_healthy = 3\ncooldown_seconds = 0\nfailback_after_seconds = 604800\nsettle_seconds = 60\n"
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        assert_eq!(
            fleet.failover,
            FailoverSettings {
                min_healthy: 3,
                cooldown: Duration::ZERO,
                failback_after: Duration::from_secs(604_800),
                settle: Duration::from_secs(60),
            }
        );

        // The section may also come before the regions.
        let before = VALID.replacen(
            "[[regions]]",
            "[failover]\nmin_healthy = 2\ncooldown_seconds = 86400\n\n[[regions]]",
            1,
        );
        let fleet = Fleet::from_toml_str(&before).expect("valid");
        assert_eq!(fleet.failover.min_healthy, 2);
        assert_eq!(fleet.failover.cooldown, Duration::from_secs(86_400));
        assert_eq!(fleet.failover.failback_after, Duration::from_secs(300));
    }

    #[test]
    fn failover_bounds_name_their_field() {
        let with = |section: &str| format!("{VALID}\n[failover]\n{section}\n");
        let cases = [
            (
                "min_healthy = 0",
                "failover.min_healthy: must be between 1 and 3 (the number of regions), not 0",
            ),
            (
                "min_healthy = 4",
                "failover.min_healthy: must be between 1 and 3 (the number of regions), not 4",
            ),
            (
                "min_healthy = -1",
                "failover.min_healthy: must be between 1 and 3 (the number of regions), not -1",
            ),
            (
                "cooldown_seconds = -1",
                "failover.cooldown_seconds: must be between 0 and 86400 (one day), not -1",
            ),
            (
                "cooldown_seconds = 86401",
                "failover.cooldown_seconds: must be between 0 and 86400 (one day), not 86401",
            ),
            (
                "failback_after_seconds = -1",
                "failover.failback_after_seconds: must be between 0 and 604800 (one week), not -1",
            ),
            (
                "failback_after_seconds = 604801",
                "failover.failback_after_seconds: must be between 0 and 604800 (one week), \
                 not 604801",
            ),
            (
                "settle_seconds = 0",
                "failover.settle_seconds: must be between 1 and 60 (above the table's \
                 replication lag, at most a minute), not 0",
            ),
            (
                "settle_seconds = 61",
                "failover.settle_seconds: must be between 1 and 60",
            ),
            ("min_healthy = \"two\"", "min_healthy"),
            ("cooldown_seconds = 1.5", "cooldown_seconds"),
            ("cooldown = 60", "cooldown"),
        ];
        for (section, expected) in cases {
            let message = err(&with(section));
            assert!(
                message.contains(expected),
                "{section}: expected {expected:?} in:\n{message}"
            );
        }

        // Every bound is reported at once, after the other problems, in file order.
        let text = with("min_healthy = 9\ncooldown_seconds = 86401\nfailback_after_seconds = -5");
        let text = text.replacen("instance_count = 1", "instance_count = 0", 1);
        let error = Fleet::from_toml_str(&text).expect_err("invalid");
        let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "regions[2].instance_count",
                "failover.min_healthy",
                "failover.cooldown_seconds",
                "failover.failback_after_seconds"
            ]
        );

        // Without a region list there is no upper bound to compare with.
        let head = VALID.split("[[regions]]").next().unwrap_or_default();
        let message = err(&format!("{head}\n[failover]\nmin_healthy = 0\n"));
        assert!(
            message.contains("failover.min_healthy: must be at least 1, not 0"),
            "{message}"
        );
        let message = err(&format!("{head}\n[failover]\nmin_healthy = 7\n"));
        assert!(!message.contains("failover"), "{message}");
    }

    #[test]
    fn failover_settings_round_trip_through_serialization() {
        let text = format!(
            "{VALID}\n[failover]\nmin_healthy = 2\ncooldown_seconds = 15\nfailback_after_seconds = 45\n"
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        let written = toml::to_string(&fleet).expect("serializes");
        assert!(written.contains("cooldown_seconds = 15"), "{written}");
        assert_eq!(Fleet::from_toml_str(&written).expect("re-parses"), fleet);
        let json = serde_json::to_value(&fleet).expect("serializes");
        assert_eq!(
            json["failover"],
            serde_json::json!({
                "min_healthy": 2,
                "cooldown_seconds": 15,
                "failback_after_seconds": 45,
                "settle_seconds": 5
            })
        );
    }

    #[test]
    fn rollout_defaults_when_the_section_is_absent() {
        let fleet = Fleet::from_toml_str(VALID).expect("fixture is valid");
        assert_eq!(fleet.rollout, RolloutSettings::default());
        assert_eq!(fleet.rollout.strategy, TrafficStrategy::Canary);
        assert_eq!(fleet.rollout.traffic_percent, 10);
        assert_eq!(fleet.rollout.bake, Duration::from_secs(300));
        assert_eq!(fleet.rollout.replica_timeout, Duration::from_secs(1800));
        assert_eq!(fleet.rollout.deploy_timeout, Duration::from_secs(3600));

        // An empty section, or one giving only some keys, defaults the rest.
        let empty = Fleet::from_toml_str(&format!("{VALID}\n[rollout]\n")).expect("valid");
        assert_eq!(empty.rollout, RolloutSettings::default());
        let partial = Fleet::from_toml_str(&format!("{VALID}\n[rollout]\nstrategy = \"linear\"\n"))
            .expect("the default percentage is a valid linear step");
        assert_eq!(
            partial.rollout,
            RolloutSettings {
                strategy: TrafficStrategy::Linear,
                ..RolloutSettings::default()
            }
        );
    }

    #[test]
    fn rollout_section_parses() {
        let example = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        assert_eq!(example.rollout, RolloutSettings::default());

        let text = format!(
            "{VALID}\n[rollout]\nstrategy = \"linear\"\ntraffic_percent = 25\nbake_seconds = 0\n\
             replica_timeout_seconds = 86400\ndeploy_timeout_seconds = 1\ncommit_bake_seconds = 21600\n\
             copy_part_mib = 5\ncopy_invocation_mib = 20\n"
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        assert_eq!(
            fleet.rollout,
            RolloutSettings {
                strategy: TrafficStrategy::Linear,
                traffic_percent: 25,
                bake: Duration::ZERO,
                replica_timeout: Duration::from_secs(86_400),
                deploy_timeout: Duration::from_secs(1),
                commit_bake: Duration::from_secs(21_600),
                copy: crate::copy_plan::CopySettings {
                    part_bytes: 5 * MIB,
                    invocation_bytes: 20 * MIB,
                },
            }
        );

        // Each strategy, at the edges of its percentage range.
        for (strategy, percent, expected) in [
            ("canary", 1, TrafficStrategy::Canary),
            ("canary", 50, TrafficStrategy::Canary),
            ("linear", 10, TrafficStrategy::Linear),
            ("linear", 50, TrafficStrategy::Linear),
            ("all-at-once", 1, TrafficStrategy::AllAtOnce),
            ("all-at-once", 100, TrafficStrategy::AllAtOnce),
        ] {
            let text = format!(
                "{VALID}\n[rollout]\nstrategy = \"{strategy}\"\ntraffic_percent = {percent}\n\
                 bake_seconds = 2600\ndeploy_timeout_seconds = 28800\n"
            );
            let fleet =
                Fleet::from_toml_str(&text).unwrap_or_else(|e| panic!("{strategy} {percent}: {e}"));
            assert_eq!(fleet.rollout.strategy, expected);
            assert_eq!(fleet.rollout.traffic_percent, percent);
            assert_eq!(fleet.rollout.bake, Duration::from_secs(2600));
            assert_eq!(fleet.rollout.deploy_timeout, Duration::from_secs(28_800));
        }

        // The section may also come before the regions, and next to [failover].
        let before = VALID.replacen(
            "[[regions]]",
            "[rollout]\nbake_seconds = 60\n\n[failover]\nmin_healthy = 2\n\n[[regions]]",
            1,
        );
        let fleet = Fleet::from_toml_str(&before).expect("valid");
        assert_eq!(fleet.rollout.bake, Duration::from_secs(60));
        assert_eq!(fleet.rollout.strategy, TrafficStrategy::Canary);
        assert_eq!(fleet.failover.min_healthy, 2);
    }

    #[test]
    fn rollout_bounds_name_their_field() {
        let with = |section: &str| format!("{VALID}\n[rollout]\n{section}\n");
        let cases = [
            (
                "traffic_percent = 60",
                "rollout.traffic_percent: a canary is at most 50% of capacity, not 60",
            ),
            (
                "strategy = \"canary\"\ntraffic_percent = 51",
                "rollout.traffic_percent: a canary is at most 50% of capacity, not 51",
            ),
            (
                "traffic_percent = 0",
                "rollout.traffic_percent: a canary is at least 1% of capacity, not 0",
            ),
            (
                "traffic_percent = -5",
                "rollout.traffic_percent: a canary is at least 1% of capacity, not -5",
            ),
            (
                "strategy = \"linear\"\ntraffic_percent = 9",
                "rollout.traffic_percent: a linear step is at least 10% of capacity, not 9",
            ),
            (
                "traffic_percent = 51\nstrategy = \"linear\"",
                "rollout.traffic_percent: a linear step is at most 50% of capacity, not 51",
            ),
            (
                "strategy = \"all-at-once\"\ntraffic_percent = 0",
                "rollout.traffic_percent: must be between 1 and 100 (a percentage; \
                 all-at-once ignores it), not 0",
            ),
            (
                "strategy = \"all-at-once\"\ntraffic_percent = 101",
                "rollout.traffic_percent: must be between 1 and 100",
            ),
            (
                "traffic_percent = 4294967306",
                "rollout.traffic_percent: a canary is at most 50% of capacity, not 4294967306",
            ),
            (
                "bake_seconds = -1",
                "rollout.bake_seconds: must be between 0 and 3600 \
                 (SageMaker's WaitIntervalInSeconds range), not -1",
            ),
            (
                "bake_seconds = 3601",
                "rollout.bake_seconds: must be between 0 and 3600 \
                 (SageMaker's WaitIntervalInSeconds range), not 3601",
            ),
            (
                "replica_timeout_seconds = 0",
                "rollout.replica_timeout_seconds: must be between 1 and 86400 (one day), not 0",
            ),
            (
                "replica_timeout_seconds = 86401",
                "rollout.replica_timeout_seconds: must be between 1 and 86400 (one day), \
                 not 86401",
            ),
            (
                "deploy_timeout_seconds = 0",
                "rollout.deploy_timeout_seconds: must be between 1 and 28800 \
                 (SageMaker's cap on one endpoint deployment), not 0",
            ),
            (
                "deploy_timeout_seconds = -3600",
                "rollout.deploy_timeout_seconds: must be between 1 and 28800 \
                 (SageMaker's cap on one endpoint deployment), not -3600",
            ),
            (
                "deploy_timeout_seconds = 28801",
                "rollout.deploy_timeout_seconds: must be between 1 and 28800 \
                 (SageMaker's cap on one endpoint deployment), not 28801",
            ),
            (
                "bake_seconds = 1800",
                "rollout.deploy_timeout_seconds: 3600 s does not outlast the deployment's \
                 bake periods (2 x 1800 s = 3600 s); raise it, or shorten bake_seconds",
            ),
            (
                "strategy = \"linear\"\nbake_seconds = 3600\ndeploy_timeout_seconds = 28800",
                "rollout.deploy_timeout_seconds: 28800 s does not outlast the deployment's \
                 bake periods (11 x 3600 s = 39600 s)",
            ),
            ("strategy = \"blue-green\"", "unknown variant `blue-green`"),
            (
                "strategy = \"all_at_once\"",
                "unknown variant `all_at_once`",
            ),
            ("traffic_percent = \"10%\"", "traffic_percent"),
            ("bake_seconds = 1.5", "bake_seconds"),
            ("bake = 300", "bake"),
            ("canary_percent = 10", "canary_percent"),
        ];
        for (section, expected) in cases {
            let message = err(&with(section));
            assert!(
                message.contains(expected),
                "{section}: expected {expected:?} in:\n{message}"
            );
        }

        // All-at-once ignores the percentage, so any percentage is accepted.
        let text = with("strategy = \"all-at-once\"\ntraffic_percent = 60");
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        assert_eq!(fleet.rollout.traffic_percent, 60);

        // Every bound is reported at once, after the other problems, in file order.
        let text = with(
            "traffic_percent = 80\nbake_seconds = 4000\nreplica_timeout_seconds = 0\n\
             deploy_timeout_seconds = 90000",
        );
        let text = text.replacen("instance_count = 1", "instance_count = 0", 1);
        let text = format!("{text}\n[failover]\ncooldown_seconds = -1\n");
        let error = Fleet::from_toml_str(&text).expect_err("invalid");
        let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "regions[2].instance_count",
                "failover.cooldown_seconds",
                "rollout.traffic_percent",
                "rollout.bake_seconds",
                "rollout.replica_timeout_seconds",
                "rollout.deploy_timeout_seconds"
            ]
        );
    }

    #[test]
    fn rollout_settings_round_trip_through_serialization() {
        let text = format!(
            "{VALID}\n[rollout]\nstrategy = \"all-at-once\"\ntraffic_percent = 100\n\
             bake_seconds = 45\nreplica_timeout_seconds = 600\ndeploy_timeout_seconds = 7200\n"
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        let written = toml::to_string(&fleet).expect("serializes");
        assert!(written.contains("strategy = \"all-at-once\""), "{written}");
        assert!(written.contains("bake_seconds = 45"), "{written}");
        assert_eq!(Fleet::from_toml_str(&written).expect("re-parses"), fleet);
        assert_eq!(
            toml::from_str::<Fleet>(&written).expect("deserializes"),
            fleet
        );
        let json = serde_json::to_value(&fleet).expect("serializes");
        assert_eq!(
            json["rollout"],
            serde_json::json!({
                "strategy": "all-at-once",
                "traffic_percent": 100,
                "bake_seconds": 45,
                "replica_timeout_seconds": 600,
                "deploy_timeout_seconds": 7200,
                "commit_bake_seconds": 0,
                "copy_part_mib": 64,
                "copy_invocation_mib": 16384
            })
        );

        // Defaults are written out too, and read back the same.
        let defaults = Fleet::from_toml_str(VALID).expect("fixture is valid");
        let written = toml::to_string(&defaults).expect("serializes");
        assert!(written.contains("[rollout]"), "{written}");
        assert_eq!(Fleet::from_toml_str(&written).expect("re-parses"), defaults);
    }

    #[test]
    fn record_may_be_zone_apex_and_case_differs() {
        let text = edit(&[("api.llm.example.internal", "LLM.Example.Internal.")]);
        let fleet = Fleet::from_toml_str(&text).expect("apex record is inside its zone");
        assert_eq!(fleet.dns.record, "LLM.Example.Internal.");
    }
}
