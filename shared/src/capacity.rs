//! Declared capacity: each region's floor, ceiling and desired count (in
//! [`crate::fleet::RegionSpec`]), its target-tracking goal and its time windows, and the
//! window arithmetic in the region's own time zone: which bounds are in force at an
//! instant and when the next scheduled change happens.
//!
//! A window sets the region's floor and ceiling from its `start` to its `end`, local
//! time, on the given days (every day when none are given); outside every window the
//! region's own `min_instances`/`max_instances` apply. Application Auto Scaling runs the
//! windows as scheduled actions with a cron schedule *in local time* and the zone's name
//! (its `Timezone` parameter), so this module models AAS's reading of a local time that a
//! daylight-saving change skips or repeats: a skipped time fires as late as the gap is
//! long (02:30 → 03:30 on the spring-forward night), a repeated one fires once, at its
//! first occurrence. AWS does not document its choice; this one is java.time's, and the
//! difference is at most one skipped or repeated hour twice a year.

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};

use crate::fleet::RegionSpec;
pub use crate::windows::{day_name, Window};
/// A region's floor and ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
}

/// The base bounds of a region, outside every window.
pub fn base_bounds(region: &RegionSpec) -> Bounds {
    Bounds {
        min: region.min_instances,
        max: region.max_instances,
    }
}

/// Which end of a window a scheduled change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Start,
    End,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Edge::Start => "start",
            Edge::End => "end",
        })
    }
}

/// One firing of a window's scheduled action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// When it fires.
    pub at: DateTime<Utc>,
    /// The same instant in the region's zone.
    #[serde(serialize_with = "serialize_local")]
    pub local: DateTime<Tz>,
    pub window: String,
    pub edge: Edge,
    /// The bounds from then on.
    pub bounds: Bounds,
}

fn serialize_local<S: Serializer>(local: &DateTime<Tz>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&local.to_rfc3339())
}

/// The instant a local wall time names, as AAS reads it (see the module doc): the first
/// of two, and a skipped time as late as the gap is long.
fn resolve_local(zone: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
        LocalResult::None => {
            // The offset in force before the gap (a day earlier: zones change at most
            // once a day), applied to the skipped wall time.
            let before = zone
                .offset_from_local_datetime(&(local - Duration::days(1)))
                .earliest()
                .map_or(0, |o| o.fix().local_minus_utc());
            let utc = local - Duration::seconds(i64::from(before));
            zone.from_utc_datetime(&utc)
        }
    }
}

/// Every change of `region`'s windows whose start day (local) lies in `dates`, sorted by
/// instant (a window's start before its end at the same instant).
fn changes_between(region: &RegionSpec, first: NaiveDate, last: NaiveDate) -> Vec<Change> {
    let zone = region.time_zone;
    let base = base_bounds(region);
    let mut changes = Vec::new();
    let mut day = first;
    while day <= last {
        for window in &region.windows {
            if !window.days.is_empty() && !window.days.contains(&day.weekday()) {
                continue;
            }
            let end_day = if window.crosses_midnight() {
                day.succ_opt().unwrap_or(day)
            } else {
                day
            };
            for (edge, date, time, bounds) in [
                (
                    Edge::Start,
                    day,
                    window.start,
                    Bounds {
                        min: window.min_instances,
                        max: window.max_instances,
                    },
                ),
                (Edge::End, end_day, window.end, base),
            ] {
                let local = resolve_local(zone, date.and_time(time));
                changes.push(Change {
                    at: local.with_timezone(&Utc),
                    local,
                    window: window.name.clone(),
                    edge,
                    bounds,
                });
            }
        }
        day = match day.succ_opt() {
            Some(next) => next,
            None => break,
        };
    }
    changes.sort_by_key(|c| (c.at, c.edge));
    changes
}

/// The changes around `at`: a week and a day either side covers every window's last and
/// next firing.
fn changes_around(region: &RegionSpec, at: DateTime<Utc>) -> Vec<Change> {
    let today = at.with_timezone(&region.time_zone).date_naive();
    changes_between(region, today - Duration::days(8), today + Duration::days(8))
}

/// What is in force at an instant: the bounds, and the window that set them (none: the
/// region's base bounds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InForce {
    pub bounds: Bounds,
    pub window: Option<String>,
}

/// The bounds in force for `region` at `at`: those of the last change at or before it.
pub fn in_force(region: &RegionSpec, at: DateTime<Utc>) -> InForce {
    let last = changes_around(region, at)
        .into_iter()
        .rev()
        .find(|c| c.at <= at);
    match last {
        Some(change) if change.edge == Edge::Start => InForce {
            bounds: change.bounds,
            window: Some(change.window),
        },
        _ => InForce {
            bounds: base_bounds(region),
            window: None,
        },
    }
}

/// The next scheduled change after `at`, if the region has windows.
pub fn next_change(region: &RegionSpec, at: DateTime<Utc>) -> Option<Change> {
    changes_around(region, at).into_iter().find(|c| c.at > at)
}

/// The instance count a deployment at `at` starts with: the region's desired count,
/// within the bounds in force (a night window's ceiling caps it).
pub fn deploy_count(region: &RegionSpec, at: DateTime<Utc>) -> u32 {
    let bounds = in_force(region, at).bounds;
    region
        .instance_count
        .clamp(bounds.min, bounds.max.max(bounds.min))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use chrono::Weekday;

    const EXAMPLE: &str = include_str!("../../fleet.example.toml");

    fn region(zone: &str, windows: &str) -> RegionSpec {
        let text = format!(
            r#"
name = "capacity-test"
primary_region = "us-east-1"
pattern = "active-active"
primary_bucket = "capacity-test-models"
registry_table = "capacity-test-registry"
[dns]
zone = "example.internal"
record = "api.example.internal"
[[regions]]
name = "us-east-1"
bucket = "capacity-test-us-east-1"
endpoint = "llm"
instance_type = "ml.g5.2xlarge"
instance_count = 2
min_instances = 2
max_instances = 4
time_zone = "{zone}"
{windows}
"#
        );
        match Fleet::from_toml_str(&text) {
            Ok(fleet) => fleet.regions[0].clone(),
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(windows: &str) -> Vec<String> {
        let text = format!(
            "name = \"capacity-test\"\nprimary_region = \"us-east-1\"\npattern = \
             \"geo\"\nprimary_bucket = \"capacity-test-models\"\nregistry_table = \
             \"capacity-test-registry\"\n[dns]\nzone = \"example.internal\"\nrecord = \
             \"example.internal\"\n[[regions]]\nname = \"us-east-1\"\nbucket = \"b-us-east-1\"\n\
             endpoint = \"llm\"\ninstance_type = \"ml.g5.xlarge\"\ninstance_count = 1\n\
             min_instances = 1\nmax_instances = 2\ntime_zone = \"UTC\"\n{windows}"
        );
        match Fleet::from_toml_str(&text) {
            Ok(_) => Vec::new(),
            Err(e) if e.problems().is_empty() => vec![e.to_string()],
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    const NIGHT: &str = "[[regions.windows]]\nname = \"night\"\nstart = \"00:00\"\n\
                         end = \"06:00\"\nmin_instances = 1\nmax_instances = 1\n";

    #[test]
    fn the_example_declares_a_night_window_in_singapore() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let apac = fleet.region("ap-southeast-1").expect("in the example");
        assert_eq!(apac.windows.len(), 1);
        // 03:00 in Singapore is 19:00 UTC the day before.
        let night = in_force(apac, utc("2026-03-02T19:00:00Z"));
        assert_eq!(night.window.as_deref(), Some("night"));
        assert_eq!(night.bounds, Bounds { min: 1, max: 2 });
        let day = in_force(apac, utc("2026-03-03T02:00:00Z"));
        assert_eq!(day.window, None);
        assert_eq!(day.bounds, base_bounds(apac));
    }

    #[test]
    fn a_zone_without_dst_keeps_its_utc_times() {
        let sg = region("Asia/Singapore", NIGHT);
        // Every day of a year: the window starts at 16:00 UTC and ends at 22:00 UTC.
        let mut at = utc("2026-01-01T12:00:00Z");
        for _ in 0..365 {
            let next = next_change(&sg, at).expect("windows change daily");
            assert_eq!(next.at.format("%H:%M").to_string(), "16:00", "{next:?}");
            assert_eq!(next.edge, Edge::Start);
            let after = next_change(&sg, next.at).expect("the end follows");
            assert_eq!(after.at - next.at, Duration::hours(6));
            assert_eq!(after.local.format("%H:%M").to_string(), "06:00");
            at += Duration::days(1);
        }
    }

    #[test]
    fn new_york_spring_forward_skips_an_hour() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let ny = region(
            "America/New_York",
            "[[regions.windows]]\nname = \"early\"\nstart = \"02:30\"\nend = \"05:00\"\n\
             min_instances = 1\nmax_instances = 1\n",
        );
        // The day before: 02:30 EST = 07:30 UTC, 2.5 h long.
        let before = next_change(&ny, utc("2026-03-07T00:00:00Z")).expect("daily");
        assert_eq!(before.at, utc("2026-03-07T07:30:00Z"));
        // The skipped 02:30 fires at 03:30 EDT (07:30 UTC); its end at 05:00 EDT.
        let skipped = next_change(&ny, utc("2026-03-08T00:00:00Z")).expect("daily");
        assert_eq!(skipped.at, utc("2026-03-08T07:30:00Z"));
        assert_eq!(skipped.local.format("%H:%M %Z").to_string(), "03:30 EDT");
        let end = next_change(&ny, skipped.at).expect("the end");
        assert_eq!(end.at, utc("2026-03-08T09:00:00Z"));
        // At 03:10 EDT (07:10 UTC) the window has not fired yet: base bounds.
        assert_eq!(in_force(&ny, utc("2026-03-08T07:10:00Z")).window, None);
        // The day after: 02:30 EDT = 06:30 UTC.
        let after = next_change(&ny, utc("2026-03-09T00:00:00Z")).expect("daily");
        assert_eq!(after.at, utc("2026-03-09T06:30:00Z"));
    }

    #[test]
    fn new_york_fall_back_fires_the_repeated_hour_once() {
        // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
        let ny = region(
            "America/New_York",
            "[[regions.windows]]\nname = \"short\"\nstart = \"01:30\"\nend = \"03:00\"\n\
             min_instances = 1\nmax_instances = 1\n",
        );
        let start = next_change(&ny, utc("2026-11-01T00:00:00Z")).expect("daily");
        // The first 01:30 (EDT, 05:30 UTC), not the second (EST, 06:30 UTC).
        assert_eq!(start.at, utc("2026-11-01T05:30:00Z"));
        let end = next_change(&ny, start.at).expect("the end");
        // 03:00 EST = 08:00 UTC: that night the window lasts 2.5 h.
        assert_eq!(end.at, utc("2026-11-01T08:00:00Z"));
        assert_eq!(end.at - start.at, Duration::minutes(150));
        // Inside, during the repeated hour (second 01:45, EST = 06:45 UTC).
        assert_eq!(
            in_force(&ny, utc("2026-11-01T06:45:00Z")).window.as_deref(),
            Some("short")
        );
        // The next change after the end is the next night's start, exactly once.
        let next = next_change(&ny, end.at).expect("daily");
        assert_eq!(next.at, utc("2026-11-02T06:30:00Z"));
    }

    #[test]
    fn dublin_across_both_transitions() {
        // Europe/Dublin: GMT in winter, IST (+01:00) in summer; changes at 01:00 UTC
        // on the last Sundays of March (2026-03-29) and October (2026-10-25).
        let dublin = region(
            "Europe/Dublin",
            "[[regions.windows]]\nname = \"overnight\"\nstart = \"22:00\"\nend = \"02:00\"\n\
             min_instances = 1\nmax_instances = 2\n",
        );
        // Saturday 22:00 GMT → Sunday 02:00 IST (01:00 UTC): 3 h that night.
        let start = next_change(&dublin, utc("2026-03-28T12:00:00Z")).expect("daily");
        assert_eq!(start.at, utc("2026-03-28T22:00:00Z"));
        let end = next_change(&dublin, start.at).expect("end");
        assert_eq!(end.at, utc("2026-03-29T01:00:00Z"));
        assert_eq!(end.local.format("%H:%M").to_string(), "02:00");
        // The skipped 01:00–02:00 local: at 00:59 UTC (00:59 GMT) inside, at 01:00 UTC
        // (02:00 IST) out.
        assert_eq!(
            in_force(&dublin, utc("2026-03-29T00:59:00Z"))
                .window
                .as_deref(),
            Some("overnight")
        );
        assert_eq!(in_force(&dublin, utc("2026-03-29T01:00:00Z")).window, None);
        // Saturday 22:00 IST (21:00 UTC) → Sunday 02:00 GMT (02:00 UTC): 5 h.
        let start = next_change(&dublin, utc("2026-10-24T12:00:00Z")).expect("daily");
        assert_eq!(start.at, utc("2026-10-24T21:00:00Z"));
        let end = next_change(&dublin, start.at).expect("end");
        assert_eq!(end.at, utc("2026-10-25T02:00:00Z"));
        assert_eq!(end.at - start.at, Duration::hours(5));
        // The repeated 01:00–02:00: in force all along.
        for minute in [0, 30, 59, 60, 90, 119] {
            let at = utc("2026-10-25T00:00:00Z") + Duration::minutes(minute);
            assert_eq!(
                in_force(&dublin, at).window.as_deref(),
                Some("overnight"),
                "{at}"
            );
        }
    }

    #[test]
    fn days_select_the_start_day_and_a_night_ends_the_next_morning() {
        let ny = region(
            "America/New_York",
            "[[regions.windows]]\nname = \"weekend\"\nstart = \"20:00\"\nend = \"08:00\"\n\
             days = [\"sat\", \"fri\"]\nmin_instances = 1\nmax_instances = 1\n",
        );
        let window = &ny.windows[0];
        assert_eq!(window.days, [Weekday::Fri, Weekday::Sat]);
        assert_eq!(window.end_days(), [Weekday::Sat, Weekday::Sun]);
        // Wednesday 2026-06-03 noon EDT: next is Friday 20:00 EDT = Saturday 00:00 UTC.
        let next = next_change(&ny, utc("2026-06-03T16:00:00Z")).expect("weekly");
        assert_eq!(next.at, utc("2026-06-06T00:00:00Z"));
        assert_eq!(next.local.weekday(), Weekday::Fri);
        // Sunday 07:00 EDT: still in (Saturday's window), Monday 07:00: out.
        assert!(in_force(&ny, utc("2026-06-07T11:00:00Z")).window.is_some());
        assert!(in_force(&ny, utc("2026-06-08T11:00:00Z")).window.is_none());
    }

    #[test]
    fn deploy_count_stays_within_the_bounds_in_force() {
        let sg = region("Asia/Singapore", NIGHT);
        // Desired 2, base [2, 4]; the night caps it to 1.
        assert_eq!(deploy_count(&sg, utc("2026-05-05T04:00:00Z")), 2);
        assert_eq!(deploy_count(&sg, utc("2026-05-05T17:00:00Z")), 1);
    }

    #[test]
    fn window_problems_are_named_by_path() {
        let cases = [
            (
                "[[regions.windows]]\nstart = \"25:00\"\nend = \"6:00\"\nmin_instances = 0\n",
                vec![
                    "regions[0].windows[0].name: missing",
                    "regions[0].windows[0].start: \"25:00\" is not a local time",
                    "regions[0].windows[0].end: \"6:00\" is not a local time",
                    "regions[0].windows[0].min_instances: must be at least 1",
                    "regions[0].windows[0].max_instances: missing",
                ],
            ),
            (
                "[[regions.windows]]\nname = \"Night\"\nstart = \"01:00\"\nend = \"01:00\"\n\
                 days = [\"mon\", \"mon\", \"funday\"]\nmin_instances = 3\nmax_instances = 2\n",
                vec![
                    "regions[0].windows[0].name: \"Night\" must be 1 to 32 characters",
                    "regions[0].windows[0].end: equals start (01:00)",
                    "regions[0].windows[0].days[1]: duplicate day \"mon\"",
                    "regions[0].windows[0].days[2]: \"funday\" is not a day",
                    "regions[0].windows[0].max_instances: 2 is less than min_instances 3",
                ],
            ),
            (
                "[[regions.windows]]\nname = \"a\"\nstart = \"01:00\"\nend = \"02:00\"\n\
                 days = []\nmin_instances = 1\nmax_instances = 1\n",
                vec!["regions[0].windows[0].days: is empty"],
            ),
            (
                "target_invocations_per_instance = 0\n",
                vec!["regions[0].target_invocations_per_instance: must be between 1 and"],
            ),
            (
                "[[regions.windows]]\nname = \"a\"\nstart = \"01:00\"\nend = \"02:00\"\n\
                 min_instances = 1\nmax_instances = 1\nsize = 3\n",
                vec!["unknown field `size`"],
            ),
        ];
        for (windows, expected) in cases {
            let text = errors(windows).join("\n");
            for want in expected {
                assert!(text.contains(want), "expected {want:?} in:\n{text}");
            }
        }
    }

    #[test]
    fn overlapping_or_touching_windows_are_refused() {
        let two = |a: (&str, &str, &str), b: (&str, &str, &str)| {
            let window = |name: &str, (start, end, days): (&str, &str, &str)| {
                format!(
                    "[[regions.windows]]\nname = \"{name}\"\nstart = \"{start}\"\nend = \
                     \"{end}\"\n{days}min_instances = 1\nmax_instances = 1\n"
                )
            };
            errors(&format!("{}{}", window("a", a), window("b", b)))
        };
        let overlap = "regions[0].windows: windows \"a\" and \"b\" overlap or touch";
        // Overlap, touch, and across midnight.
        for (a, b) in [
            (("01:00", "03:00", ""), ("02:00", "04:00", "")),
            (("01:00", "03:00", ""), ("03:00", "04:00", "")),
            (("22:00", "02:00", ""), ("01:00", "03:00", "")),
            (
                ("22:00", "02:00", "days = [\"sun\"]\n"),
                ("01:00", "03:00", "days = [\"mon\"]\n"),
            ),
        ] {
            let found = two(a, b);
            assert!(
                found.iter().any(|e| e.starts_with(overlap)),
                "{a:?} {b:?}: {found:?}"
            );
        }
        // A minute apart, or on other days: fine.
        for (a, b) in [
            (("01:00", "03:00", ""), ("03:01", "04:00", "")),
            (
                ("22:00", "02:00", "days = [\"sun\"]\n"),
                ("01:00", "03:00", "days = [\"tue\"]\n"),
            ),
        ] {
            assert_eq!(two(a, b), Vec::<String>::new(), "{a:?} {b:?}");
        }
    }

    proptest::proptest! {
        /// Between two consecutive changes nothing changes, and at a change its bounds
        /// take force: whatever the window, the days, the zone and the instant.
        #[test]
        fn the_bounds_in_force_change_only_at_the_next_change(
            zone in proptest::sample::select(vec![
                "America/New_York", "Europe/Dublin", "Asia/Singapore",
            ]),
            start in 0u32..(24 * 60),
            length in 1u32..(24 * 60),
            days in proptest::sample::subsequence(
                vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 0..=7),
            minute in 0i64..(366 * 24 * 60),
            fraction in 0.0f64..1.0,
        ) {
            let end = (start + length) % (24 * 60);
            let days = if days.is_empty() {
                String::new()
            } else {
                format!("days = [{}]\n", days.iter().map(|d| format!("\"{d}\"")).collect::<Vec<_>>().join(", "))
            };
            let region = region(zone, &format!(
                "[[regions.windows]]\nname = \"w\"\nstart = \"{:02}:{:02}\"\nend = \"{:02}:{:02}\"\n{days}min_instances = 1\nmax_instances = 1\n",
                start / 60, start % 60, end / 60, end % 60,
            ));
            let at = utc("2026-01-01T00:00:00Z") + Duration::minutes(minute);
            let now = in_force(&region, at);
            let next = next_change(&region, at).expect("a weekly window changes within a week");
            proptest::prop_assert!(next.at > at);
            proptest::prop_assert!(next.at - at <= Duration::days(8));
            let between = at + Duration::seconds(((next.at - at).num_seconds() as f64 * fraction) as i64);
            if between < next.at {
                proptest::prop_assert_eq!(in_force(&region, between), now.clone());
            }
            let then = in_force(&region, next.at);
            proptest::prop_assert_eq!(then.bounds, next.bounds);
            proptest::prop_assert_eq!(then.window.is_some(), next.edge == Edge::Start);
        }
    }

    #[test]
    fn windows_round_trip_through_serialization() {
        let fleet = Fleet::from_toml_str(EXAMPLE).expect("example is valid");
        let written = toml::to_string(&fleet).expect("serializes");
        assert!(written.contains("start = \"00:00\""), "{written}");
        assert_eq!(Fleet::from_toml_str(&written).expect("re-parses"), fleet);
    }
}
