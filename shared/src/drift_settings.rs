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

#[cfg(test)]
mod tests {
    use crate::fleet::{Fleet, FleetError};

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    /// The example's `[drift]` section, comments and all.
    fn section() -> &'static str {
        let start = EXAMPLE.find("[drift]\n").unwrap_or_default();
        let end = start
            + EXAMPLE[start..]
                .find("repair = false\n")
                .unwrap_or_default();
        &EXAMPLE[start..end + "repair = false\n".len()]
    }

    fn with_drift(replacement: &str) -> Result<Fleet, FleetError> {
        Fleet::from_toml_str(&EXAMPLE.replace(section(), replacement))
    }

    #[test]
    fn repair_is_off_unless_the_file_turns_it_on() {
        assert!(section().starts_with("[drift]") && section().ends_with("repair = false\n"));
        assert_eq!(
            Fleet::from_toml_str(EXAMPLE).map(|f| f.drift.repair).ok(),
            Some(false)
        );
        for (section, repair) in [
            ("", false),
            ("[drift]\n", false),
            ("[drift]\nrepair = false\n", false),
            ("[drift]\nrepair = true\n", true),
        ] {
            let fleet = with_drift(section).unwrap_or_else(|e| panic!("{section:?}: {e}"));
            assert_eq!(fleet.drift.repair, repair, "{section:?}");
        }
    }

    #[test]
    fn a_repair_that_is_not_a_boolean_is_reported_by_its_field_with_the_others() {
        let text = EXAMPLE
            .replace(section(), "[drift]\nrepair = \"yes\"\n")
            .replace("name = \"meridian-demo\"", "name = \"X\"");
        let Err(FleetError::Invalid(problems)) = Fleet::from_toml_str(&text) else {
            panic!("accepted");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"drift.repair"), "{problems:?}");
        assert!(fields.contains(&"name"), "{problems:?}");
        let unknown = with_drift("[drift]\nrepare = true\n");
        assert!(unknown.is_err(), "an unknown key is refused");
    }

    #[test]
    fn a_fleet_written_back_out_keeps_its_repair_setting() {
        let fleet = with_drift("[drift]\nrepair = true\n").expect("valid");
        let text = toml::to_string(&fleet).expect("serializable");
        assert_eq!(Fleet::from_toml_str(&text).expect("parses back"), fleet);
    }
}
