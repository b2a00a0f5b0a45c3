//! The fleet file's `[traffic]` section: how much warm traffic each active-passive standby
//! gets and when a drill's shifted traffic fails too often. Apart from the forwarding
//! itself ([`crate::traffic`]), which reads the fleet, so the fleet file can hold it.

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;

/// Default share of the primary's traffic each standby gets (active-passive), percent.
pub const DEFAULT_WARM_PERCENT: f64 = 5.0;
/// Default error rate of a drill's shifted traffic above which it aborts, percent.
pub const DEFAULT_DRILL_MAX_ERROR_PERCENT: f64 = 5.0;
/// Most warm traffic a standby may get: a standby is not a second primary.
const MAX_WARM_PERCENT: f64 = 50.0;

/// The fleet file's `[traffic]` section.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrafficSettings {
    /// Percent of the primary's inference forwarded to each standby (active-passive
    /// only; 0 turns warm traffic off).
    pub warm_percent: f64,
    /// A drill aborts when more than this percent of a step's shifted requests fail.
    pub drill_max_error_percent: f64,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        Self {
            warm_percent: DEFAULT_WARM_PERCENT,
            drill_max_error_percent: DEFAULT_DRILL_MAX_ERROR_PERCENT,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTraffic {
    warm_percent: Option<f64>,
    drill_max_error_percent: Option<f64>,
}

/// Validates `[traffic]`; the defaults when it is absent.
pub(crate) fn validate(raw: Option<RawTraffic>, problems: &mut Vec<FieldError>) -> TrafficSettings {
    let defaults = TrafficSettings::default();
    let Some(raw) = raw else { return defaults };
    let mut within = |field: &str, value: Option<f64>, default: f64, max: f64| match value {
        None => default,
        Some(v) if (0.0..=max).contains(&v) => v,
        Some(v) => {
            problems.push(FieldError {
                field: format!("traffic.{field}"),
                problem: format!("{v} is not within 0 to {max}"),
            });
            default
        }
    };
    TrafficSettings {
        warm_percent: within(
            "warm_percent",
            raw.warm_percent,
            defaults.warm_percent,
            MAX_WARM_PERCENT,
        ),
        drill_max_error_percent: within(
            "drill_max_error_percent",
            raw.drill_max_error_percent,
            defaults.drill_max_error_percent,
            100.0,
        ),
    }
}
