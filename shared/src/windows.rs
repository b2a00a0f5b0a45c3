//! The fleet file's capacity declarations: a region's target-tracking goal and its time
//! windows (`[[regions.windows]]`), parsed and validated by their TOML path. What they mean
//! at an instant (the bounds in force, the next change) is [`crate::capacity`]'s job.

use std::collections::HashMap;

use chrono::{NaiveTime, Timelike, Weekday};
use serde::{Deserialize, Serialize, Serializer};

use crate::field_error::FieldError;

/// Bounds of `target_invocations_per_instance` (SageMaker's
/// `SageMakerVariantInvocationsPerInstance`, invocations per instance per minute).
const MAX_TARGET_INVOCATIONS: i64 = 1_000_000;
/// Longest window name: it is part of a scheduled action's name.
const MAX_WINDOW_NAME: usize = 32;
const MINUTES_PER_DAY: i64 = 24 * 60;
const MINUTES_PER_WEEK: i64 = 7 * MINUTES_PER_DAY;

/// A span of local time with its own floor and ceiling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Unique within the region: `[a-z0-9-]`, 1..=32; names the scheduled actions.
    pub name: String,
    /// Local start time, whole minutes.
    #[serde(serialize_with = "serialize_hhmm")]
    pub start: NaiveTime,
    /// Local end time, whole minutes; before `start` when the window crosses midnight.
    #[serde(serialize_with = "serialize_hhmm")]
    pub end: NaiveTime,
    /// The days the window *starts* on, Monday first; empty means every day.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_days"
    )]
    pub days: Vec<Weekday>,
    /// Floor while the window is in force; at least 1.
    pub min_instances: u32,
    /// Ceiling while the window is in force; at least `min_instances`.
    pub max_instances: u32,
}

impl Window {
    /// Whether the window ends on the day after it starts.
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// Minutes from start to end (1..1440).
    fn length_minutes(&self) -> i64 {
        let (start, end) = (minute_of_day(self.start), minute_of_day(self.end));
        (end - start).rem_euclid(MINUTES_PER_DAY)
    }

    /// The days it starts on (every day when none are given).
    pub fn start_days(&self) -> Vec<Weekday> {
        if self.days.is_empty() {
            WEEK.to_vec()
        } else {
            self.days.clone()
        }
    }

    /// The days it ends on: its start days, or the next ones when it crosses midnight.
    pub fn end_days(&self) -> Vec<Weekday> {
        if self.crosses_midnight() {
            self.days.iter().map(|d| d.succ()).collect()
        } else {
            self.days.clone()
        }
    }
}

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn minute_of_day(time: NaiveTime) -> i64 {
    i64::from(time.hour()) * 60 + i64::from(time.minute())
}

fn serialize_hhmm<S: Serializer>(time: &NaiveTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.format("%H:%M").to_string())
}

fn serialize_days<S: Serializer>(days: &[Weekday], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(days.iter().map(|d| day_name(*d)))
}

/// The fleet file's name of a day: `mon` ... `sun`.
pub fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

/// `[[regions.windows]]` as written; every key optional so that a missing one is
/// reported by its path with every other problem.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    name: Option<String>,
    start: Option<String>,
    end: Option<String>,
    days: Option<Vec<String>>,
    min_instances: Option<i64>,
    max_instances: Option<i64>,
}

/// Validates a region's `target_invocations_per_instance` (index `region`).
pub(crate) fn validate_target(
    region: usize,
    raw: Option<i64>,
    problems: &mut Vec<FieldError>,
) -> Option<u32> {
    let value = raw?;
    let valid = u32::try_from(value)
        .ok()
        .filter(|v| (1..=MAX_TARGET_INVOCATIONS).contains(&i64::from(*v)));
    if valid.is_none() {
        problems.push(FieldError {
            field: format!("regions[{region}].target_invocations_per_instance"),
            problem: format!(
                "must be between 1 and {MAX_TARGET_INVOCATIONS} (invocations per instance \
                 per minute), not {value}"
            ),
        });
    }
    valid
}

/// Validates a region's windows (index `region`): each on its own, then that no two of
/// them overlap or touch (their scheduled actions would fire at the same minute, in an
/// order AAS does not define).
pub(crate) fn validate_windows(
    region: usize,
    raw: Vec<RawWindow>,
    problems: &mut Vec<FieldError>,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (j, raw) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("regions[{region}].windows[{j}].{field}");
        let before = problems.len();
        let mut add = |field: &str, problem: String| {
            problems.push(FieldError {
                field: at(field),
                problem,
            })
        };
        let name = match raw.name {
            None => {
                add("name", "missing".into());
                None
            }
            Some(name) if !valid_window_name(&name) => {
                add(
                    "name",
                    format!(
                        "{name:?} must be 1 to {MAX_WINDOW_NAME} characters of lowercase \
                         letters, digits and '-'"
                    ),
                );
                None
            }
            Some(name) => {
                if let Some(first) = seen.get(&name) {
                    add(
                        "name",
                        format!("duplicate window {name:?} (also windows[{first}])"),
                    );
                } else {
                    seen.insert(name.clone(), j);
                }
                Some(name)
            }
        };
        let mut time = |field: &str, value: Option<String>| match value {
            None => {
                add(field, "missing (local time, \"HH:MM\")".into());
                None
            }
            Some(text) => {
                let parsed = parse_hhmm(&text);
                if parsed.is_none() {
                    add(
                        field,
                        format!("{text:?} is not a local time \"HH:MM\" (00:00 to 23:59)"),
                    );
                }
                parsed
            }
        };
        let start = time("start", raw.start);
        let end = time("end", raw.end);
        if let (Some(start), Some(end)) = (start, end) {
            if start == end {
                add(
                    "end",
                    format!(
                        "equals start ({}); a window needs a length",
                        start.format("%H:%M")
                    ),
                );
            }
        }
        let mut days = Vec::new();
        if let Some(raw_days) = raw.days {
            if raw_days.is_empty() {
                add(
                    "days",
                    "is empty; leave it out for every day, or list days (\"mon\" ... \"sun\")"
                        .into(),
                );
            }
            for (k, day) in raw_days.iter().enumerate() {
                match WEEK.iter().find(|d| day_name(**d) == day.as_str()) {
                    Some(d) if days.contains(d) => {
                        add(&format!("days[{k}]"), format!("duplicate day {day:?}"))
                    }
                    Some(d) => days.push(*d),
                    None => add(
                        &format!("days[{k}]"),
                        format!("{day:?} is not a day (\"mon\" ... \"sun\")"),
                    ),
                }
            }
            days.sort_by_key(|d| d.num_days_from_monday());
        }
        let min = count(raw.min_instances, &mut add, "min_instances");
        let max = count(raw.max_instances, &mut add, "max_instances");
        if let (Some(min), Some(max)) = (min, max) {
            if max < min {
                add(
                    "max_instances",
                    format!("{max} is less than min_instances {min}"),
                );
            }
        }
        if problems.len() != before {
            continue;
        }
        if let (Some(name), Some(start), Some(end), Some(min), Some(max)) =
            (name, start, end, min, max)
        {
            windows.push(Window {
                name,
                start,
                end,
                days,
                min_instances: min,
                max_instances: max,
            });
        }
    }
    for (a, first) in windows.iter().enumerate() {
        for second in &windows[a + 1..] {
            if overlap_or_touch(first, second) {
                problems.push(FieldError {
                    field: format!("regions[{region}].windows"),
                    problem: format!(
                        "windows {:?} and {:?} overlap or touch; leave at least a minute \
                         between them",
                        first.name, second.name
                    ),
                });
            }
        }
    }
    windows
}

fn count(value: Option<i64>, add: &mut impl FnMut(&str, String), field: &str) -> Option<u32> {
    let Some(value) = value else {
        add(field, "missing".into());
        return None;
    };
    let valid = u32::try_from(value).ok().filter(|v| *v >= 1);
    if valid.is_none() {
        add(
            field,
            format!("must be at least 1 (a region never scales to zero), not {value}"),
        );
    }
    valid
}

fn valid_window_name(name: &str) -> bool {
    (1..=MAX_WINDOW_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `HH:MM`, two digits each.
fn parse_hhmm(text: &str) -> Option<NaiveTime> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

/// The minutes of the week (Monday 00:00 = 0) each occurrence of `window` covers, as
/// closed `(start, length)` spans.
fn week_spans(window: &Window) -> Vec<(i64, i64)> {
    window
        .start_days()
        .iter()
        .map(|d| {
            (
                i64::from(d.num_days_from_monday()) * MINUTES_PER_DAY + minute_of_day(window.start),
                window.length_minutes(),
            )
        })
        .collect()
}

/// Whether two windows share a minute of the week (ends included), on local wall time.
fn overlap_or_touch(a: &Window, b: &Window) -> bool {
    week_spans(a).iter().any(|&(sa, la)| {
        week_spans(b).iter().any(|&(sb, lb)| {
            (sb - sa).rem_euclid(MINUTES_PER_WEEK) <= la
                || (sa - sb).rem_euclid(MINUTES_PER_WEEK) <= lb
        })
    })
}
