//! A monthly cost estimate from declared capacity: each region's instance-hours (its
//! desired count, within each window's bounds while the window is in force) times its
//! price per instance-hour, and the same fleet priced as active-active, active-passive
//! (standbys at their floor) and single-region (every instance in the primary region).
//! The arithmetic is kept in the result so the CLI can show it.
//!
//! Default prices are the source guide's ("Cost Optimization": ml.g5.2xlarge on demand,
//! per hour); the fleet file's `[cost]` section overrides or adds them.

use serde::Serialize;

use crate::fleet::{Fleet, RegionSpec};
use crate::prices::CostSettings;
use crate::windows::Window;

const HOURS_PER_WEEK: f64 = 168.0;

/// The instances a region runs while `window` is in force: its desired count within the
/// window's bounds.
fn window_instances(region: &RegionSpec, window: &Window) -> u32 {
    region
        .instance_count
        .clamp(window.min_instances, window.max_instances)
}

/// One part of a region's week: how many hours at how many instances.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// The window's name, or `None` outside every window.
    pub window: Option<String>,
    pub hours_per_week: f64,
    pub instances: u32,
}

/// A region's month at one pattern.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionCost {
    pub region: String,
    pub instance_type: String,
    pub usd_per_hour: f64,
    pub spans: Vec<Span>,
    pub instance_hours_per_month: f64,
    pub usd_per_month: f64,
}

/// A pattern's month for the whole fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatternCost {
    pub pattern: String,
    /// How the pattern sizes each region, in words.
    pub rule: String,
    pub regions: Vec<RegionCost>,
    pub usd_per_month: f64,
}

/// Why an estimate cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("no price for {instance_type} in {region}: add it to the fleet file's [cost] prices")]
pub struct NoPrice {
    pub region: String,
    pub instance_type: String,
}

/// A region's weekly spans at its declared capacity: each window at its instances for its
/// wall-clock length on each of its days, the rest of the week at the desired count.
fn declared_spans(region: &RegionSpec) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut windowed = 0.0;
    for window in &region.windows {
        let hours = f64::from(minutes(window)) / 60.0 * window.start_days().len() as f64;
        windowed += hours;
        spans.push(Span {
            window: Some(window.name.clone()),
            hours_per_week: hours,
            instances: window_instances(region, window),
        });
    }
    spans.insert(
        0,
        Span {
            window: None,
            hours_per_week: HOURS_PER_WEEK - windowed,
            instances: region.instance_count,
        },
    );
    spans
}

fn minutes(window: &Window) -> u32 {
    use chrono::Timelike;
    let at = |t: chrono::NaiveTime| t.hour() * 60 + t.minute();
    (at(window.end) + 24 * 60 - at(window.start)) % (24 * 60)
}

fn priced(
    settings: &CostSettings,
    name: &str,
    instance_type: &str,
    spans: Vec<Span>,
) -> Result<RegionCost, NoPrice> {
    let usd_per_hour = settings.price(name, instance_type).ok_or_else(|| NoPrice {
        region: name.to_owned(),
        instance_type: instance_type.to_owned(),
    })?;
    let weekly: f64 = spans
        .iter()
        .map(|s| s.hours_per_week * f64::from(s.instances))
        .sum();
    let instance_hours_per_month = weekly * settings.hours_per_month / HOURS_PER_WEEK;
    Ok(RegionCost {
        region: name.to_owned(),
        instance_type: instance_type.to_owned(),
        usd_per_hour,
        spans,
        instance_hours_per_month,
        usd_per_month: instance_hours_per_month * usd_per_hour,
    })
}

fn pattern(pattern: &str, rule: &str, regions: Vec<RegionCost>) -> PatternCost {
    PatternCost {
        pattern: pattern.to_owned(),
        rule: rule.to_owned(),
        usd_per_month: regions.iter().map(|r| r.usd_per_month).sum(),
        regions,
    }
}

/// The fleet priced three ways: active-active (every region at its declared capacity),
/// active-passive (the primary at its own, each standby at its floor all month), and
/// single-region (every region's declared instance-hours in the primary region, at its
/// price).
pub fn estimate(fleet: &Fleet, settings: &CostSettings) -> Result<Vec<PatternCost>, NoPrice> {
    let primary = fleet.primary();
    let active_active = fleet
        .regions
        .iter()
        .map(|r| priced(settings, &r.name, &r.instance_type, declared_spans(r)))
        .collect::<Result<Vec<_>, _>>()?;
    let active_passive = fleet
        .regions
        .iter()
        .map(|r| {
            let spans = if r.name == primary.name {
                declared_spans(r)
            } else {
                vec![Span {
                    window: None,
                    hours_per_week: HOURS_PER_WEEK,
                    instances: r.min_instances,
                }]
            };
            priced(settings, &r.name, &r.instance_type, spans)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let all_spans: Vec<Span> = fleet.regions.iter().flat_map(declared_spans).collect();
    let single = priced(settings, &primary.name, &primary.instance_type, all_spans)?;
    Ok(vec![
        pattern(
            "active-active",
            "every region at its declared capacity",
            active_active,
        ),
        pattern(
            "active-passive",
            "the primary at its declared capacity, each standby at its floor (min_instances)",
            active_passive,
        ),
        pattern(
            "single-region",
            "every region's declared instance-hours in the primary region",
            vec![single],
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    /// The example fleet by hand (720 h months = 720/168 of a week):
    /// - us-east-1: 2 instances all week, $1.50 → 2 × 720 × 1.50 = 2,160.00
    /// - eu-west-1: 2 instances all week, $1.62 → 2 × 720 × 1.62 = 2,332.80
    /// - ap-southeast-1: desired 2 for 126 h a week and 2 (desired within the night
    ///   window's 1..2) for 6 h × 7 = 42 h, so 168 h × 2 × 720/168 × $1.80 = 2,592.00
    ///
    /// active-active 7,084.80; active-passive: us-east-1 2,160.00 + eu-west-1 at its floor
    /// 1 × 720 × 1.62 = 1,166.40 + ap-southeast-1 at its floor 2 × 720 × 1.80 = 2,592.00 =
    /// 5,918.40; single-region: (2 + 2 + 2) × 720 × 1.50 = 6,480.00.
    #[test]
    fn the_example_by_hand() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let patterns = estimate(&fleet, &fleet.cost).expect("priced");
        let totals: Vec<(&str, f64)> = patterns
            .iter()
            .map(|p| (p.pattern.as_str(), p.usd_per_month))
            .collect();
        assert_eq!(totals.len(), 3);
        for ((name, total), (want_name, want)) in totals.iter().zip([
            ("active-active", 7_084.80),
            ("active-passive", 5_918.40),
            ("single-region", 6_480.00),
        ]) {
            assert_eq!(*name, want_name);
            assert!(close(*total, want), "{name}: {total} != {want}");
        }
        let apac = &patterns[0].regions[2];
        assert_eq!(apac.spans.len(), 2);
        assert!(close(apac.spans[0].hours_per_week, 126.0));
        assert!(close(apac.spans[1].hours_per_week, 42.0));
    }

    #[test]
    fn a_window_below_the_desired_count_saves_its_hours() {
        // us-east-1 down to 1 instance 22:00–06:00 on weekdays: 8 h × 5 = 40 h a week at
        // 1 instead of 2 → 720 × 2 − 40 × 720/168 = 1,440 − 171.43 instance-hours.
        let text = EXAMPLE.replacen(
            "target_invocations_per_instance = 100\n",
            "target_invocations_per_instance = 100\n\n[[regions.windows]]\nname = \"quiet\"\n\
             start = \"22:00\"\nend = \"06:00\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \
             \"fri\"]\nmin_instances = 1\nmax_instances = 1\n",
            1,
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        let patterns = estimate(&fleet, &fleet.cost).expect("priced");
        let us = &patterns[0].regions[0];
        let hours = 1_440.0 - 40.0 * 720.0 / 168.0;
        assert!(close(us.instance_hours_per_month, hours), "{us:?}");
        assert!(close(us.usd_per_month, hours * 1.50));
    }

    #[test]
    fn the_file_overrides_prices_and_unknown_ones_are_named() {
        let text = format!(
            "{EXAMPLE}\n[cost]\nhours_per_month = 730\n[[cost.prices]]\nregion = \"us-east-1\"\n\
             instance_type = \"ml.g5.2xlarge\"\nusd_per_hour = 1.212\n"
        );
        let fleet = Fleet::from_toml_str(&text).expect("valid");
        let patterns = estimate(&fleet, &fleet.cost).expect("priced");
        assert!(close(
            patterns[0].regions[0].usd_per_month,
            2.0 * 730.0 * 1.212
        ));
        assert!(close(
            patterns[0].regions[1].usd_per_month,
            2.0 * 730.0 * 1.62
        ));

        let other = EXAMPLE.replacen("ml.g5.2xlarge", "ml.p4d.24xlarge", 1);
        let fleet = Fleet::from_toml_str(&other).expect("valid");
        assert_eq!(
            estimate(&fleet, &fleet.cost),
            Err(NoPrice {
                region: "us-east-1".into(),
                instance_type: "ml.p4d.24xlarge".into()
            })
        );

        let bad = format!(
            "{EXAMPLE}\n[cost]\nhours_per_month = 0\n[[cost.prices]]\nregion = \"us-east-1\"\n\
             usd_per_hour = -1.0\n"
        );
        let error = Fleet::from_toml_str(&bad).expect_err("invalid");
        let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "cost.hours_per_month",
                "cost.prices[0].usd_per_hour",
                "cost.prices[0].instance_type"
            ]
        );
    }
}
