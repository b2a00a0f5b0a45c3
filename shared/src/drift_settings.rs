//! The fleet file's `[drift]` section: whether the drift check may repair a drifted region
//! by itself ([`crate::repair`]). Off unless the file says so: a repair overwrites a change
//! someone made to a live endpoint, which may have been a deliberate hotfix, so putting
//! the registry's version back is the fleet owner's decision to make once, in the file.

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;

/// The fleet file's `[drift]` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DriftSettings {
    /// Whether a drifted region is put back on the registry's active version by a repair
    /// rollout of that region alone (default false: drift is only reported).
    pub repair: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrift {
    repair: Option<toml::Value>,
}

/// Validates `[drift]`; the defaults when it is absent.
pub(crate) fn validate(raw: Option<RawDrift>, problems: &mut Vec<FieldError>) -> DriftSettings {
    let Some(raw) = raw else {
        return DriftSettings::default();
    };
    let repair = match raw.repair {
        None => false,
        Some(toml::Value::Boolean(repair)) => repair,
        Some(other) => {
            problems.push(FieldError {
                field: "drift.repair".into(),
                problem: format!("{other} is not true or false"),
            });
            false
        }
    };
    DriftSettings { repair }
}
