//! Drift (split brain): whether a region's endpoint serves what the registry says is the
//! fleet's active version — its endpoint configuration, its model data location and its
//! container image — as the rollout deployed it. Pure: the failback tick of each region
//! reads the facts (SageMaker in that region, the registry in that region's own table
//! replica) and these functions judge them, keep the region's drift record and name the
//! history entries.
//!
//! Not every difference is drift. While a rollout holds a model's lock, endpoints differ
//! on purpose (deploying, or rolling back); while an endpoint is mid-change (`Updating`,
//! `RollingBack`, ...) it is judged on the next tick; before the first commit there is
//! nothing to compare with. Those verdicts change nothing, so a drift recorded before
//! stays recorded until a judged tick finds the endpoint in sync.

use chrono::{DateTime, Utc};

pub use crate::failover::{Difference, Drift};
use crate::fleet::RegionSpec;
use crate::health::FailoverEvent;
use crate::manifest::version_prefix;
pub use crate::registry::RegistryView;
use crate::registry::VersionRecord;
use crate::rollout::deployment_name;

/// What a region's endpoint should serve: the active version as the rollout deployed it
/// in that region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `model/version` of the active version.
    pub version: String,
    pub config: String,
    /// The fleet's `variant_name`: the one variant the configuration may have.
    pub variant: String,
    /// The S3 prefix of the version in the region's own bucket.
    pub model_data: String,
    pub image: String,
}

/// One production variant of the endpoint's configuration, with its model as SageMaker
/// describes it; `None` where the model cannot be read (deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub model: String,
    pub model_data: Option<String>,
    pub image: Option<String>,
}

/// The region's endpoint as SageMaker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// No endpoint of the fleet's name in the region.
    Missing,
    /// In service (or stopped: `Failed`, `OutOfService`, ...) on `config`.
    Serving {
        status: String,
        config: String,
        variants: Vec<Variant>,
    },
}

/// Endpoint statuses in which the endpoint is mid-change: judged on a later tick.
pub const CHANGING: [&str; 5] = [
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "Deleting",
];

/// What the registry, read in the region's own replica, says the endpoint should serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// No model has an active version yet: nothing to compare with.
    NothingActive,
    /// A rollout holds a model's lock: endpoints may differ on purpose until it ends.
    RollingOut {
        model: String,
        version: String,
    },
    Active(Expected),
}

/// What `region` should serve given the registry: the active version's record (read for
/// the model [`RegistryView::latest_active`] names) as the rollout deployed it there, in
/// the fleet's `variant` (its `variant_name`).
pub fn registered(
    view: &RegistryView,
    active: Option<&VersionRecord>,
    region: &RegionSpec,
    variant: &str,
) -> Registered {
    if let Some((model, version)) = view.rolling_out() {
        return Registered::RollingOut {
            model: model.to_owned(),
            version: version.to_owned(),
        };
    }
    let Some(record) = active else {
        return Registered::NothingActive;
    };
    let config = record
        .regions
        .get(&region.name)
        .and_then(|progress| progress.config.clone())
        .unwrap_or_else(|| deployment_name(&record.model, &record.version, &record.digest));
    Registered::Active(Expected {
        version: format!("{}/{}", record.model, record.version),
        config,
        variant: variant.to_owned(),
        model_data: format!(
            "s3://{}/{}",
            region.bucket,
            version_prefix(&record.model, &record.version)
        ),
        image: expected_image(&record.manifest.serving, &region.name),
    })
}

/// The image the rollout gave this region's model (each region runs its own region's copy);
/// the manifest's image as written if it cannot be resolved, as the rollout would have
/// refused it.
fn expected_image(serving: &crate::manifest::Serving, region: &str) -> String {
    crate::images::image_for_region(&serving.image, &serving.images, region)
        .map(|resolved| resolved.image.to_string())
        .unwrap_or_else(|_| serving.image.clone())
}

/// The judgement of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    InSync,
    Drifted {
        /// `model/version` the endpoint should serve.
        expected: String,
        differences: Vec<Difference>,
    },
    /// Nothing to judge now (and why); the next tick looks again.
    NotJudged(String),
}

/// Compares the endpoint with what the registry says it should serve. The endpoint is
/// looked at only when a version is active and no rollout runs.
pub fn compare(registered: &Registered, endpoint: &Endpoint) -> Verdict {
    let expected = match registered {
        Registered::NothingActive => return Verdict::NotJudged("no active version yet".into()),
        Registered::RollingOut { model, version } => {
            return Verdict::NotJudged(format!("rollout of {model}/{version} in progress"))
        }
        Registered::Active(expected) => expected,
    };
    let differences = match endpoint {
        Endpoint::Missing => vec![Difference {
            field: "endpoint".into(),
            expected: format!("serving {}", expected.config),
            actual: "missing".into(),
        }],
        Endpoint::Serving { status, .. } if CHANGING.contains(&status.as_str()) => {
            return Verdict::NotJudged(format!("endpoint is {status}"));
        }
        Endpoint::Serving {
            config, variants, ..
        } => served_differences(expected, config, variants),
    };
    if differences.is_empty() {
        Verdict::InSync
    } else {
        Verdict::Drifted {
            expected: expected.version.clone(),
            differences,
        }
    }
}

fn served_differences(expected: &Expected, config: &str, variants: &[Variant]) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut differ = |field: &str, expected: &str, actual: String| {
        differences.push(Difference {
            field: field.into(),
            expected: expected.into(),
            actual,
        });
    };
    if config != expected.config {
        differ("config", &expected.config, config.to_owned());
    }
    if variants.len() != 1 {
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        differ(
            "variants",
            "1",
            format!("{} ({})", variants.len(), names.join(", ")),
        );
    }
    let mut other_names: Vec<&str> = variants
        .iter()
        .map(|v| v.name.as_str())
        .filter(|name| *name != expected.variant)
        .collect();
    other_names.sort_unstable();
    other_names.dedup();
    if !other_names.is_empty() {
        differ("variant", &expected.variant, other_names.join(", "));
    }
    let actual = |pick: fn(&Variant) -> &Option<String>, wanted: &str| {
        let mut found: Vec<String> = variants
            .iter()
            .filter(|v| pick(v).as_deref() != Some(wanted))
            .map(|v| {
                pick(v)
                    .clone()
                    .unwrap_or_else(|| format!("unreadable (model {})", v.model))
            })
            .collect();
        found.sort();
        found.dedup();
        found.join(", ")
    };
    let model_data = actual(|v| &v.model_data, &expected.model_data);
    if !model_data.is_empty() {
        differ("model_data", &expected.model_data, model_data);
    }
    let image = actual(|v| &v.image, &expected.image);
    if !image.is_empty() {
        differ("image", &expected.image, image);
    }
    differences
}

/// How a check changes the region's drift record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing to write.
    None,
    /// The endpoint drifted: record it.
    Started(Drift),
    /// Still drifted, differently: record the new differences, same `since`.
    Changed(Drift),
    /// In sync again: clear the record.
    Ended { was: Drift, at: DateTime<Utc> },
}

impl Change {
    /// The record's drift after the change, given the one before.
    pub fn apply(&self, current: Option<Drift>) -> Option<Drift> {
        match self {
            Change::None => current,
            Change::Started(drift) | Change::Changed(drift) => Some(drift.clone()),
            Change::Ended { .. } => None,
        }
    }
}

/// The change a verdict makes to the region's drift record. A verdict that matches the
/// record changes nothing, so a duplicate or late tick writes nothing.
pub fn track(current: Option<&Drift>, verdict: &Verdict, now: DateTime<Utc>) -> Change {
    match (current, verdict) {
        (_, Verdict::NotJudged(_)) | (None, Verdict::InSync) => Change::None,
        (Some(was), Verdict::InSync) => Change::Ended {
            was: was.clone(),
            at: now,
        },
        (
            None,
            Verdict::Drifted {
                expected,
                differences,
            },
        ) => Change::Started(Drift {
            since: now,
            expected: expected.clone(),
            differences: differences.clone(),
        }),
        (
            Some(was),
            Verdict::Drifted {
                expected,
                differences,
            },
        ) => {
            if was.expected == *expected && was.differences == *differences {
                Change::None
            } else {
                Change::Changed(Drift {
                    since: was.since,
                    expected: expected.clone(),
                    differences: differences.clone(),
                })
            }
        }
    }
}

/// The history entry of a drift starting or ending in `region`; its id is derived from
/// when the drift started, so writing it again is a no-op.
pub fn history_event(region: &str, change: &Change, now: DateTime<Utc>) -> Option<FailoverEvent> {
    let (kind, drift, from, to, reason) = match change {
        Change::None | Change::Changed(_) => return None,
        Change::Started(drift) => (
            "drift",
            drift,
            "in sync",
            "drifted",
            format!(
                "endpoint differs from the registry's active version {}: {}",
                drift.expected,
                drift.describe()
            ),
        ),
        Change::Ended { was, at } => (
            "drift-healed",
            was,
            "drifted",
            "in sync",
            format!(
                "endpoint serves the active version again after {} s (it differed: {})",
                (*at - was.since).num_seconds(),
                was.describe()
            ),
        ),
    };
    Some(FailoverEvent::observed(
        format!("{kind}@{}", drift.since.timestamp_millis()),
        region,
        kind,
        (from, to),
        reason,
        now,
    ))
}
