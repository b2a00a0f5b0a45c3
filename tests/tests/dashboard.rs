//! The CloudWatch dashboard of `template.yaml` against the metrics Meridian emits
//! (`meridian::metrics::all`). A dashboard line naming a metric with another dimension set
//! than the code emits it with graphs nothing: CloudWatch keeps one metric per dimension
//! set. So: every `["Meridian", <metric>, <dimension>, <value>, ...]` on the dashboard is
//! a metric Meridian emits, with exactly its dimension names; every metric Meridian emits
//! is on the dashboard; and the body is valid JSON once `!Sub`/`!If` are applied for every
//! number of fleet regions the template's slots allow (1 to 5).
//!
//! There is no YAML parser here: the Dashboard resource is read as text, in the shapes the
//! template uses (a `!Sub [body, {Name: expression}]` whose expressions are a `!Sub` of
//! one single-quoted string, guarded by `!If [HasFleetRegion<k>, ..., ""]` for slots 2..5).
//! An expression of another shape fails the test rather than being skipped.

use std::collections::{BTreeMap, BTreeSet};

use meridian::metrics::{self, NAMESPACE, PHASE, REGION, ROLLOUT_PHASES};
use serde_json::Value;

const SLOTS: usize = 5;
const REGIONS: [&str; SLOTS] = [
    "us-east-1",
    "eu-west-1",
    "ap-southeast-1",
    "us-west-2",
    "eu-central-1",
];
/// The stack's own region (the control region, where the dashboard lives); not one of
/// `REGIONS`, so a line read in the wrong region cannot pass by coincidence.
const STACK_REGION: &str = "sa-east-1";

/// The `VariantName` parameter's value in the rendered dashboards.
const FLEET_VARIANT: &str = "fleet-variant";

fn template() -> String {
    std::fs::read_to_string(meridian_tests::workspace_root().join("template.yaml"))
        .expect("template.yaml")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The text of the `Dashboard` resource: from its key to the next resource or section.
fn dashboard_resource(template: &str) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "  Dashboard:")
        .expect("a Dashboard resource");
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) <= 2)
        .map_or(lines.len(), |i| start + 1 + i);
    lines[start..end].join("\n")
}

/// The dashboard body (the `- |-` literal block) and its substitutions, name → expression.
fn body_and_substitutions(resource: &str) -> (String, Vec<(String, String)>) {
    let lines: Vec<&str> = resource.lines().collect();
    let open = lines
        .iter()
        .position(|l| l.trim() == "- |-")
        .expect("DashboardBody: !Sub with a literal block body");
    let list_indent = indent(lines[open]);
    let mut body = Vec::new();
    let mut rest = open + 1;
    while rest < lines.len() && (lines[rest].trim().is_empty() || indent(lines[rest]) > list_indent)
    {
        body.push(lines[rest].trim());
        rest += 1;
    }
    let mut substitutions = Vec::new();
    for line in &lines[rest..] {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let entry = entry.strip_prefix("- ").unwrap_or(entry);
        let (name, expression) = entry
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a substitution entry: {line}"));
        substitutions.push((name.to_owned(), expression.to_owned()));
    }
    assert!(!substitutions.is_empty(), "the body has substitutions");
    (body.join("\n"), substitutions)
}

/// The first YAML single-quoted string of `expression` (`''` is a quote).
fn single_quoted(expression: &str) -> Option<String> {
    let start = expression.find('\'')? + 1;
    let mut text = String::new();
    let mut chars = expression[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                text.push('\'');
            } else {
                return Some(text);
            }
        } else {
            text.push(c);
        }
    }
    panic!("unterminated quoted string in {expression}")
}

/// Replaces every `${NAME}` of `text` with `value(NAME)`.
fn substitute(text: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unterminated ${{ in {text}"))
            + start;
        out.push_str(&value(&rest[start + 2..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The slot of a per-region entry (`Deploy3` → 3); `None` for other entries.
fn slot(name: &str) -> Option<usize> {
    let digit = name.chars().last()?.to_digit(10)? as usize;
    (1..=SLOTS).contains(&digit).then_some(digit)
}

/// The `!Select [i, ...]` indexes that pick from a per-region parameter list in `expression`.
fn per_region_selects(expression: &str) -> Vec<usize> {
    let mut indexes = Vec::new();
    for (at, _) in expression.match_indices("!Select [") {
        let rest = &expression[at + "!Select [".len()..];
        let Some((index, tail)) = rest.split_once(", ") else {
            continue;
        };
        let picks_a_region = ["FleetRegions", "EndpointNames", "RegionalBucketArns"]
            .iter()
            .any(|list| {
                tail.starts_with(&format!(
                    r#"!Split [",", !Join ["", [!Join [",", !Ref {list}]"#
                ))
            });
        if picks_a_region {
            indexes.push(index.parse().expect("a literal index"));
        }
    }
    indexes
}

/// The value of one substitution for a fleet of `regions` regions.
fn evaluate(name: &str, expression: &str, regions: usize) -> String {
    let slot = slot(name);
    if let Some(k) = slot {
        let guard = format!("!If [HasFleetRegion{k}, ");
        if k == 1 {
            assert!(
                !expression.starts_with("!If"),
                "{name}: slot 1 is always there"
            );
        } else {
            assert!(
                expression.starts_with(&guard),
                "{name}: slot {k} must be guarded by HasFleetRegion{k}"
            );
            assert!(
                expression.ends_with(r#"], ""]"#),
                "{name}: an absent slot must be the empty string"
            );
        }
        for index in per_region_selects(expression) {
            assert_eq!(index, k - 1, "{name} selects another slot's entry");
        }
        if k > regions {
            return String::new();
        }
    }
    let text = if let Some(quoted) = single_quoted(expression) {
        quoted
    } else if let Some(plain) = expression.strip_prefix("!Sub ") {
        plain.to_owned()
    } else {
        panic!("{name}: an expression of unknown shape: {expression}")
    };
    if let Some(k) = slot {
        assert_eq!(
            k > 1,
            text.starts_with(','),
            "{name}: slots 2..5 and only they start with a comma"
        );
    }
    let k = slot.unwrap_or(1);
    substitute(&text, |variable| match variable {
        "R" => REGIONS[k - 1].to_owned(),
        "E" => format!("endpoint-{k}"),
        "B" => format!("bucket-{k}"),
        "P" => "primary-bucket".to_owned(),
        "VariantName" => FLEET_VARIANT.to_owned(),
        "FleetName" => "meridian-demo".to_owned(),
        "AWS::Region" => STACK_REGION.to_owned(),
        "AWS::Partition" => "aws".to_owned(),
        "AWS::AccountId" => "123456789012".to_owned(),
        other => panic!("{name}: unknown variable ${{{other}}}"),
    })
}

/// The dashboard body as CloudFormation renders it for a fleet of `regions` regions.
fn rendered(template: &str, regions: usize) -> Value {
    let resource = dashboard_resource(template);
    let (body, substitutions) = body_and_substitutions(&resource);
    let values: BTreeMap<String, String> = substitutions
        .iter()
        .map(|(name, expression)| (name.clone(), evaluate(name, expression, regions)))
        .collect();
    let text = substitute(&body, |name| match name {
        "AWS::Region" => STACK_REGION.to_owned(),
        "FleetName" => "meridian-demo".to_owned(),
        other => values
            .get(other)
            .unwrap_or_else(|| panic!("the body uses ${{{other}}}, which has no value"))
            .clone(),
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the dashboard body for {regions} regions is not JSON: {e}"))
}

/// A dashboard metric line: namespace, metric, dimension names and values, options.
#[derive(Debug, Clone, PartialEq)]
struct MetricLine {
    namespace: String,
    metric: String,
    dimensions: Vec<(String, String)>,
    options: Value,
}

fn metric_line(entry: &Value) -> MetricLine {
    let items = entry.as_array().expect("a metric line is an array");
    let strings: Vec<&str> = items.iter().map_while(Value::as_str).collect();
    assert!(strings.len() >= 2, "{entry}: namespace and metric name");
    assert!(
        strings[2..].chunks_exact(2).remainder().is_empty(),
        "{entry}: dimension names and values come in pairs"
    );
    let options = items.get(strings.len()).cloned().unwrap_or(Value::Null);
    assert!(
        items.len() <= strings.len() + 1 && (options.is_null() || options.is_object()),
        "{entry}: at most one options object, last"
    );
    MetricLine {
        namespace: strings[0].to_owned(),
        metric: strings[1].to_owned(),
        dimensions: strings[2..]
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
            .collect(),
        options,
    }
}

/// Every `[NAMESPACE, ...]` metric line written in the Dashboard resource's text (body and
/// every slot's substitution), found by a scan that knows nothing of `!Sub` or `!If`.
fn meridian_lines_in_text(resource: &str) -> Vec<MetricLine> {
    let quoted = format!("\"{NAMESPACE}\"");
    let mut lines = Vec::new();
    for (at, _) in resource.match_indices(&quoted) {
        let before = resource[..at].trim_end();
        if !before.ends_with('[') {
            continue;
        }
        let open = before.len() - 1;
        let mut depth = 0;
        let mut in_string = false;
        let mut close = None;
        for (i, c) in resource[open..].char_indices() {
            match c {
                '"' => in_string = !in_string,
                '[' | '{' if !in_string => depth += 1,
                ']' | '}' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.expect("a closed metric line");
        let text = substitute(&resource[open..=close], |_| "x".to_owned());
        let entry: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("metric line {text} is not JSON: {e}"));
        lines.push(metric_line(&entry));
    }
    lines
}

/// Every metric line of every metric widget of a rendered dashboard, with the widget's region.
fn widget_lines(dashboard: &Value) -> Vec<(MetricLine, String)> {
    let widgets = dashboard["widgets"].as_array().expect("widgets");
    widgets
        .iter()
        .filter(|w| w["type"] == "metric")
        .flat_map(|w| {
            let region = w["properties"]["region"]
                .as_str()
                .expect("every metric widget names its region")
                .to_owned();
            w["properties"]["metrics"]
                .as_array()
                .expect("a metric widget lists metrics")
                .iter()
                .map(move |entry| (metric_line(entry), region.clone()))
        })
        .collect()
}

/// The dimension names of a line, sorted: CloudWatch tells metrics apart by the set of
/// their dimensions, not by the order a dashboard writes them in.
fn dimension_names(line: &MetricLine) -> Vec<&str> {
    let mut names: Vec<&str> = line
        .dimensions
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    names.sort_unstable();
    names
}

fn sorted(dimensions: &[&'static str]) -> Vec<&'static str> {
    let mut names = dimensions.to_vec();
    names.sort_unstable();
    names
}

/// Meridian metric lines of the dashboard that name a metric Meridian does not emit, or
/// name it with other dimensions than it is emitted with.
fn unknown_or_mismatched(template: &str) -> Vec<String> {
    let emitted = metrics::all();
    let mut problems = Vec::new();
    for line in meridian_lines_in_text(&dashboard_resource(template)) {
        match emitted.iter().find(|m| m.name == line.metric) {
            None => problems.push(format!(
                "the dashboard graphs {}, which Meridian does not emit",
                line.metric
            )),
            Some(spec) if dimension_names(&line) != sorted(&spec.dimensions) => {
                problems.push(format!(
                    "{} is graphed with dimensions {:?}, emitted with {:?}",
                    line.metric,
                    dimension_names(&line),
                    spec.dimensions
                ));
            }
            Some(_) => {}
        }
    }
    problems
}

/// Metrics Meridian emits that no dashboard line graphs with their dimensions.
fn not_on_the_dashboard(template: &str) -> Vec<String> {
    let on_dashboard = meridian_lines_in_text(&dashboard_resource(template));
    metrics::all()
        .into_iter()
        .filter(|spec| {
            !on_dashboard
                .iter()
                .any(|l| l.metric == spec.name && dimension_names(l) == sorted(&spec.dimensions))
        })
        .map(|spec| format!("{} {:?}", spec.name, spec.dimensions))
        .collect()
}

#[test]
fn every_meridian_metric_on_the_dashboard_is_emitted_with_those_dimensions() {
    let template = template();
    let found = meridian_lines_in_text(&dashboard_resource(&template)).len();
    assert!(
        found >= metrics::all().len(),
        "the scan found {found} Meridian metric lines"
    );
    assert_eq!(unknown_or_mismatched(&template), Vec::<String>::new());
}

#[test]
fn every_metric_meridian_emits_is_on_the_dashboard() {
    assert_eq!(not_on_the_dashboard(&template()), Vec::<String>::new());
}

/// The checks above on templates broken on purpose: each break is caught.
#[test]
fn the_checks_catch_a_broken_dashboard() {
    let template = template();
    let broken = |from: &str, to: &str| {
        assert!(template.contains(from), "the template has {from}");
        template.replacen(from, to, 1)
    };
    // A phase line without its Phase dimension graphs another (absent) metric.
    let no_phase = broken(r#""Region","${R}","Phase","deploy""#, r#""Region","${R}""#);
    assert_eq!(unknown_or_mismatched(&no_phase).len(), 1);
    // A metric name the code does not emit.
    let renamed = broken(r#""RolloutDuration""#, r#""RolloutTime""#);
    assert_eq!(unknown_or_mismatched(&renamed).len(), 1);
    assert_eq!(
        not_on_the_dashboard(&renamed),
        vec![format!("{} []", metrics::ROLLOUT_DURATION.name)]
    );
    // Dimension order does not matter to CloudWatch, so not to the check either.
    let reordered = broken(
        r#""Region","${R}","Phase","verify""#,
        r#""Phase","verify","Region","${R}""#,
    );
    assert_eq!(unknown_or_mismatched(&reordered), Vec::<String>::new());
}

#[test]
#[should_panic(expected = "slots 2..5 and only they start with a comma")]
fn a_slot_without_its_leading_comma_is_caught() {
    let template = template().replacen(
        r#"Deploy2: !If [HasFleetRegion2, !Sub [',["#,
        r#"Deploy2: !If [HasFleetRegion2, !Sub ['["#,
        1,
    );
    rendered(&template, SLOTS);
}

#[test]
#[should_panic(expected = "Verify3 selects another slot's entry")]
fn a_slot_reading_another_slots_region_is_caught() {
    let template = template();
    let line = template
        .lines()
        .find(|l| l.trim_start().starts_with("Verify3: "))
        .expect("a Verify3 slot");
    let wrong = line.replace("!Select [2, ", "!Select [1, ");
    rendered(&template.replacen(line, &wrong, 1), SLOTS);
}

#[test]
fn the_dashboard_is_valid_json_for_every_number_of_fleet_regions() {
    let scanned: BTreeSet<(String, Vec<String>)> =
        meridian_lines_in_text(&dashboard_resource(&template()))
            .iter()
            .map(|l| {
                (
                    l.metric.clone(),
                    dimension_names(l).into_iter().map(str::to_owned).collect(),
                )
            })
            .collect();
    for regions in 1..=SLOTS {
        let dashboard = rendered(&template(), regions);
        let widgets = dashboard["widgets"].as_array().expect("widgets");
        // Widgets stay on the 24-column grid and do not overlap.
        let cells: Vec<(i64, i64, i64, i64)> = widgets
            .iter()
            .map(|w| {
                let n = |key: &str| w[key].as_i64().unwrap_or_else(|| panic!("{key} of {w}"));
                (n("x"), n("y"), n("width"), n("height"))
            })
            .collect();
        for (i, a) in cells.iter().enumerate() {
            assert!(a.0 >= 0 && a.0 + a.2 <= 24, "widget {i} leaves the grid");
            for b in &cells[i + 1..] {
                let apart =
                    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "widgets {a:?} and {b:?} overlap");
            }
        }
        let lines = widget_lines(&dashboard);
        // Per-region metrics have a line per fleet region (and per phase), no more.
        let regional = metrics::all()
            .into_iter()
            .filter(|m| m.dimensions.contains(&REGION));
        for spec in regional {
            let graphed: Vec<(&str, Option<&str>)> = lines
                .iter()
                .filter(|(l, _)| l.namespace == NAMESPACE && l.metric == spec.name)
                .map(|(l, _)| {
                    let value = |dimension: &str| {
                        l.dimensions
                            .iter()
                            .find(|(n, _)| n == dimension)
                            .map(|(_, v)| v.as_str())
                    };
                    (value(REGION).unwrap_or_default(), value(PHASE))
                })
                .collect();
            let phases: Vec<Option<&str>> = if spec.dimensions.contains(&PHASE) {
                ROLLOUT_PHASES.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            let expected: BTreeSet<(&str, Option<&str>)> = REGIONS[..regions]
                .iter()
                .flat_map(|r| phases.iter().map(move |p| (*r, *p)))
                .collect();
            assert_eq!(
                graphed.iter().copied().collect::<BTreeSet<_>>(),
                expected,
                "{} for {regions} regions",
                spec.name
            );
            assert_eq!(
                graphed.len(),
                expected.len(),
                "{}: no line twice",
                spec.name
            );
        }
        if regions == SLOTS {
            let rendered_set: BTreeSet<(String, Vec<String>)> = lines
                .iter()
                .filter(|(l, _)| l.namespace == NAMESPACE)
                .map(|(l, _)| {
                    (
                        l.metric.clone(),
                        dimension_names(l).into_iter().map(str::to_owned).collect(),
                    )
                })
                .collect();
            assert_eq!(
                rendered_set, scanned,
                "the rendered dashboard and the text scan see the same Meridian metrics"
            );
        }
    }
}

/// The fleet file owns the variant name: SageMaker's lines watch the `VariantName`
/// parameter's variant, never a name written into the template.
#[test]
fn sagemaker_lines_watch_the_fleets_variant() {
    let dashboard = rendered(&template(), SLOTS);
    let sagemaker: Vec<MetricLine> = widget_lines(&dashboard)
        .into_iter()
        .map(|(line, _)| line)
        .filter(|line| line.namespace == "AWS/SageMaker")
        .collect();
    assert!(!sagemaker.is_empty(), "the dashboard graphs SageMaker");
    for line in sagemaker {
        let variant = line
            .dimensions
            .iter()
            .find(|(name, _)| name == "VariantName");
        assert_eq!(
            variant.map(|(_, value)| value.as_str()),
            Some(FLEET_VARIANT),
            "{line:?}"
        );
    }
}

/// The failover and failback functions run in every region, so their metrics are read in
/// the region named by `Region`; the rollout function runs in the control region only,
/// where the dashboard is, so its metrics must be read there whatever region they are about.
#[test]
fn each_meridian_metric_is_read_in_the_region_that_emits_it() {
    let control_only = [
        metrics::ROLLOUT_PHASE_DURATION.name,
        metrics::ROLLOUT_DURATION.name,
        metrics::REPAIR_STARTED.name,
        metrics::REPAIR_SUCCEEDED.name,
        metrics::REPAIR_FAILED.name,
    ];
    for (line, widget_region) in widget_lines(&rendered(&template(), SLOTS)) {
        if line.namespace != NAMESPACE {
            continue;
        }
        let read_in = line.options["region"]
            .as_str()
            .unwrap_or(&widget_region)
            .to_owned();
        let expected = if control_only.contains(&line.metric.as_str()) {
            STACK_REGION.to_owned()
        } else {
            line.dimensions
                .iter()
                .find(|(name, _)| name == REGION)
                .map(|(_, value)| value.clone())
                .expect("a regional metric has a Region")
        };
        assert_eq!(read_in, expected, "{line:?}");
    }
}
