//! The fleet file's `[cost]` section: hours in the month and prices per instance-hour, the
//! source guide's by default ("Cost Optimization": ml.g5.2xlarge on demand). What a fleet
//! costs at them is [`crate::cost`]'s job.

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;

/// Hours in the month the estimate is for: 30 days, the guide's "24/7" month (720 h).
pub const DEFAULT_HOURS_PER_MONTH: f64 = 720.0;

/// The guide's on-demand prices for `ml.g5.2xlarge`, USD per instance-hour.
pub const GUIDE_PRICES: [(&str, &str, f64); 5] = [
    ("us-east-1", "ml.g5.2xlarge", 1.50),
    ("us-west-2", "ml.g5.2xlarge", 1.50),
    ("eu-west-1", "ml.g5.2xlarge", 1.62),
    ("ap-southeast-1", "ml.g5.2xlarge", 1.80),
    ("ap-northeast-1", "ml.g5.2xlarge", 1.92),
];

/// One price: an instance type in a region, USD per instance-hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub region: String,
    pub instance_type: String,
    pub usd_per_hour: f64,
}

/// The `[cost]` section: the month's length and prices that replace or add to the guide's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostSettings {
    pub hours_per_month: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<Price>,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            hours_per_month: DEFAULT_HOURS_PER_MONTH,
            prices: Vec::new(),
        }
    }
}

impl CostSettings {
    /// The price of `instance_type` in `region`: the file's, else the guide's.
    pub fn price(&self, region: &str, instance_type: &str) -> Option<f64> {
        self.prices
            .iter()
            .find(|p| p.region == region && p.instance_type == instance_type)
            .map(|p| p.usd_per_hour)
            .or_else(|| {
                GUIDE_PRICES
                    .iter()
                    .find(|(r, t, _)| *r == region && *t == instance_type)
                    .map(|(_, _, usd)| *usd)
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCost {
    hours_per_month: Option<f64>,
    #[serde(default)]
    prices: Vec<RawPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    region: Option<String>,
    instance_type: Option<String>,
    usd_per_hour: Option<f64>,
}

/// Validates `[cost]`; the defaults when it is absent.
pub(crate) fn validate(raw: Option<RawCost>, problems: &mut Vec<FieldError>) -> CostSettings {
    let Some(raw) = raw else {
        return CostSettings::default();
    };
    let mut add = |field: String, problem: String| problems.push(FieldError { field, problem });
    let hours_per_month = raw.hours_per_month.unwrap_or(DEFAULT_HOURS_PER_MONTH);
    if !(1.0..=744.0).contains(&hours_per_month) {
        add(
            "cost.hours_per_month".into(),
            format!("must be between 1 and 744 (31 days), not {hours_per_month}"),
        );
    }
    let mut prices = Vec::new();
    for (i, price) in raw.prices.into_iter().enumerate() {
        let at = |field: &str| format!("cost.prices[{i}].{field}");
        let usd = price.usd_per_hour.filter(|p| p.is_finite() && *p >= 0.0);
        if usd.is_none() {
            add(
                at("usd_per_hour"),
                "missing or not a price (USD per instance-hour, at least 0)".into(),
            );
        }
        if price.region.is_none() {
            add(at("region"), "missing".into());
        }
        if price.instance_type.is_none() {
            add(at("instance_type"), "missing".into());
        }
        if let (Some(region), Some(instance_type), Some(usd_per_hour)) =
            (price.region, price.instance_type, usd)
        {
            prices.push(Price {
                region,
                instance_type,
                usd_per_hour,
            });
        }
    }
    CostSettings {
        hours_per_month,
        prices,
    }
}
