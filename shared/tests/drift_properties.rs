//! The drift check's pure part: every case of the comparison, what the registry says a
//! region should serve, and the record kept across ticks (properties: a repeated verdict
//! changes nothing; starts and ends alternate; the record follows the last judged tick).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use meridian::drift::{
    compare, history_event, registered, track, Change, Difference, Drift, Endpoint, Expected,
    Registered, RegistryView, Variant, Verdict,
};
use meridian::fleet::Fleet;
use meridian::manifest::Manifest;
use meridian::registry::{
    ActivePointer, LockHolder, RegionProgress, RegisteredManifest, RolloutLock, VersionRecord,
    VersionStatus,
};
use proptest::prelude::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid time")
}

fn expected() -> Expected {
    Expected {
        version: "llama/v2".into(),
        config: "llama-v2-abcdef01".into(),
        variant: "primary".into(),
        model_data: "s3://bucket-eu/models/llama/v2/".into(),
        image: "image:v2".into(),
    }
}

fn variant(model_data: &str, image: &str) -> Variant {
    Variant {
        name: "primary".into(),
        model: "llama-v2-abcdef01".into(),
        model_data: Some(model_data.into()),
        image: Some(image.into()),
    }
}

/// The endpoint exactly as the rollout deployed `expected()`.
fn serving(status: &str, config: &str, variants: Vec<Variant>) -> Endpoint {
    Endpoint::Serving {
        status: status.into(),
        config: config.into(),
        variants,
    }
}

fn in_sync_endpoint() -> Endpoint {
    let e = expected();
    serving(
        "InService",
        &e.config,
        vec![variant(&e.model_data, &e.image)],
    )
}

fn differences(verdict: &Verdict) -> Vec<(String, String, String)> {
    match verdict {
        Verdict::Drifted { differences, .. } => differences
            .iter()
            .map(|d| (d.field.clone(), d.expected.clone(), d.actual.clone()))
            .collect(),
        other => panic!("expected drift, got {other:?}"),
    }
}

fn d(field: &str, expected: &str, actual: &str) -> (String, String, String) {
    (field.into(), expected.into(), actual.into())
}

#[test]
fn the_endpoint_as_deployed_is_in_sync() {
    let active = Registered::Active(expected());
    assert_eq!(compare(&active, &in_sync_endpoint()), Verdict::InSync);
}

#[test]
fn each_field_that_differs_is_named_with_expected_and_actual() {
    let e = expected();
    let active = Registered::Active(e.clone());
    let config = serving(
        "InService",
        "hand-made",
        vec![variant(&e.model_data, &e.image)],
    );
    assert_eq!(
        differences(&compare(&active, &config)),
        vec![d("config", &e.config, "hand-made")]
    );
    let data = serving(
        "InService",
        &e.config,
        vec![variant("s3://bucket-eu/models/llama/v1/", &e.image)],
    );
    assert_eq!(
        differences(&compare(&active, &data)),
        vec![d(
            "model_data",
            &e.model_data,
            "s3://bucket-eu/models/llama/v1/"
        )]
    );
    let image = serving(
        "InService",
        &e.config,
        vec![variant(&e.model_data, "image:v1")],
    );
    assert_eq!(
        differences(&compare(&active, &image)),
        vec![d("image", &e.image, "image:v1")]
    );
    // A variant renamed behind the fleet's back: the alarms and autoscaling watch nothing.
    let renamed = serving(
        "InService",
        &e.config,
        vec![Variant {
            name: "blue".into(),
            ..variant(&e.model_data, &e.image)
        }],
    );
    assert_eq!(
        differences(&compare(&active, &renamed)),
        vec![d("variant", &e.variant, "blue")]
    );
    // A hand-made config for another version: every field differs, each is named.
    let all = serving(
        "InService",
        "hand-made",
        vec![variant("s3://other/", "image:v1")],
    );
    assert_eq!(
        differences(&compare(&active, &all)),
        vec![
            d("config", &e.config, "hand-made"),
            d("model_data", &e.model_data, "s3://other/"),
            d("image", &e.image, "image:v1"),
        ]
    );
    // A model deleted behind the config: unreadable, not silently equal.
    let deleted = serving(
        "InService",
        &e.config,
        vec![Variant {
            model_data: None,
            image: None,
            ..variant("", "")
        }],
    );
    assert_eq!(
        differences(&compare(&active, &deleted)),
        vec![
            d(
                "model_data",
                &e.model_data,
                "unreadable (model llama-v2-abcdef01)"
            ),
            d("image", &e.image, "unreadable (model llama-v2-abcdef01)"),
        ]
    );
    // A second variant (traffic split by hand) is drift even when both match.
    let two = serving(
        "InService",
        &e.config,
        vec![
            variant(&e.model_data, &e.image),
            variant(&e.model_data, &e.image),
        ],
    );
    assert_eq!(
        differences(&compare(&active, &two)),
        vec![d("variants", "1", "2 (primary, primary)")]
    );
}

#[test]
fn a_missing_endpoint_is_drift() {
    let e = expected();
    assert_eq!(
        differences(&compare(&Registered::Active(e.clone()), &Endpoint::Missing)),
        vec![d("endpoint", &format!("serving {}", e.config), "missing")]
    );
}

#[test]
fn an_endpoint_mid_change_is_judged_later_and_a_stopped_one_now() {
    let e = expected();
    let active = Registered::Active(e.clone());
    for status in [
        "Creating",
        "Updating",
        "SystemUpdating",
        "RollingBack",
        "Deleting",
    ] {
        let endpoint = serving(status, "hand-made", vec![variant("x", "y")]);
        assert!(
            matches!(compare(&active, &endpoint), Verdict::NotJudged(why) if why.contains(status)),
            "{status}"
        );
    }
    // Failed or OutOfService is the failover's business; what it serves is still compared.
    let failed = serving("Failed", &e.config, vec![variant(&e.model_data, &e.image)]);
    assert_eq!(compare(&active, &failed), Verdict::InSync);
}

#[test]
fn no_active_version_or_a_rollout_in_progress_is_not_drift() {
    let endpoint = serving("InService", "anything", vec![variant("x", "y")]);
    assert!(matches!(
        compare(&Registered::NothingActive, &endpoint),
        Verdict::NotJudged(_)
    ));
    let rolling = Registered::RollingOut {
        model: "llama".into(),
        version: "v3".into(),
    };
    assert!(
        matches!(compare(&rolling, &Endpoint::Missing), Verdict::NotJudged(why) if why.contains("llama/v3"))
    );
}

fn fleet() -> Fleet {
    Fleet::from_toml_str(include_str!("../../fleet.example.toml")).expect("example is valid")
}

fn record(model: &str, version: &str, config: Option<&str>) -> VersionRecord {
    let manifest: Manifest = serde_json::from_value(serde_json::json!({
        "format": 1,
        "model": model,
        "version": version,
        "serving": {"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/tgi:3", "instance_type": "ml.g5.2xlarge", "instance_count": 1, "variant_name": "primary"},
        "files": [{"path": "w.safetensors", "size": 1, "sha256": "0".repeat(64)}],
    }))
    .expect("a valid manifest");
    VersionRecord {
        model: model.into(),
        version: version.into(),
        digest: "abcdef0123456789".into(),
        manifest: RegisteredManifest::new(&manifest, "manifest.json", None, b"{}"),
        status: VersionStatus::Active,
        phases: BTreeMap::new(),
        regions: config
            .map(|c| {
                BTreeMap::from([(
                    "eu-west-1".to_owned(),
                    RegionProgress {
                        config: Some(c.into()),
                        ..RegionProgress::default()
                    },
                )])
            })
            .unwrap_or_default(),
        execution: None,
        reason: None,
    }
}

fn pointer(version: &str, since: i64) -> ActivePointer {
    ActivePointer {
        version: version.into(),
        digest: "abcdef0123456789".into(),
        previous: None,
        since: at(since),
    }
}

#[test]
fn the_registry_says_what_each_region_should_serve() {
    let fleet = fleet();
    let eu = fleet.region("eu-west-1").expect("eu-west-1");
    let view = RegistryView::default();
    assert_eq!(
        registered(&view, None, eu, "primary"),
        Registered::NothingActive
    );
    let rec = record("llama", "v2", Some("llama-v2-recorded"));
    let Registered::Active(expected) = registered(&view, Some(&rec), eu, "primary") else {
        panic!("active")
    };
    assert_eq!(expected.version, "llama/v2");
    assert_eq!(
        expected.config, "llama-v2-recorded",
        "the config the rollout recorded"
    );
    assert_eq!(
        expected.model_data,
        format!("s3://{}/models/llama/v2/", eu.bucket),
        "the version in the region's own bucket"
    );
    assert_eq!(expected.image, rec.manifest.serving.image);
    // A record without the region's config: the name the rollout gives it.
    let Registered::Active(derived) =
        registered(&view, Some(&record("llama", "v2", None)), eu, "primary")
    else {
        panic!("active")
    };
    assert_eq!(derived.config, "llama-v2-abcdef01");
    // The fleet's lock held by any model: a rollout is in progress, whatever is active.
    let locked = RegistryView {
        lock: RolloutLock {
            holder: Some(LockHolder {
                model: "mistral".into(),
                version: "v9".into(),
                since: chrono::Utc::now(),
                execution: None,
                repair: None,
            }),
            queue: vec![],
        },
        ..RegistryView::default()
    };
    assert_eq!(
        registered(&locked, Some(&rec), eu, "primary"),
        Registered::RollingOut {
            model: "mistral".into(),
            version: "v9".into()
        }
    );
}

#[test]
fn the_latest_commit_across_models_is_the_fleets_active_version() {
    let view = RegistryView {
        active: BTreeMap::from([
            ("llama".to_owned(), pointer("v2", 10)),
            ("mistral".to_owned(), pointer("v7", 20)),
            ("qwen".to_owned(), pointer("v1", 5)),
        ]),
        ..RegistryView::default()
    };
    let (model, active) = view.latest_active().expect("one is active");
    assert_eq!((model, active.version.as_str()), ("mistral", "v7"));
    assert_eq!(RegistryView::default().latest_active(), None);
}

fn drifted(field: &str) -> Verdict {
    Verdict::Drifted {
        expected: "llama/v2".into(),
        differences: vec![Difference {
            field: field.into(),
            expected: "a".into(),
            actual: "b".into(),
        }],
    }
}

#[test]
fn drift_is_recorded_once_kept_while_it_lasts_and_cleared_when_it_heals() {
    let started = track(None, &drifted("config"), at(0));
    let Change::Started(drift) = &started else {
        panic!("{started:?}")
    };
    assert_eq!(drift.since, at(0));
    let recorded = started.apply(None);
    assert_eq!(
        track(recorded.as_ref(), &drifted("config"), at(60)),
        Change::None
    );
    let changed = track(recorded.as_ref(), &drifted("image"), at(60));
    let Change::Changed(now) = &changed else {
        panic!("{changed:?}")
    };
    assert_eq!(now.since, at(0), "still drifted since the first tick");
    let not_judged = Verdict::NotJudged("endpoint is Updating".into());
    assert_eq!(track(recorded.as_ref(), &not_judged, at(90)), Change::None);
    let ended = track(recorded.as_ref(), &Verdict::InSync, at(120));
    assert_eq!(ended.apply(recorded.clone()), None);
    let start_event = history_event("eu-west-1", &started, at(0)).expect("an entry");
    let end_event = history_event("eu-west-1", &ended, at(120)).expect("an entry");
    assert_eq!(start_event.kind, "drift");
    assert!(start_event.reason.contains("config: expected a, serving b"));
    assert_eq!(end_event.kind, "drift-healed");
    assert!(
        end_event.reason.contains("after 120 s"),
        "{}",
        end_event.reason
    );
    assert_ne!(start_event.id, end_event.id);
    // The same drift seen by a retried tick names the same entries.
    assert_eq!(
        history_event("eu-west-1", &started, at(5)).map(|e| e.id),
        Some(start_event.id)
    );
    assert_eq!(history_event("eu-west-1", &changed, at(60)), None);
}

fn arb_verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::InSync),
        Just(Verdict::NotJudged("endpoint is Updating".into())),
        prop::sample::select(vec!["config", "model_data", "image", "endpoint"]).prop_map(drifted),
    ]
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    let e = expected();
    let value =
        |good: String| prop_oneof![Just(Some(good)), Just(Some("other".into())), Just(None)];
    // The model is named as the rollout names it: its name is not compared, only what it runs.
    let model = e.config.clone();
    let variant =
        (value(e.model_data.clone()), value(e.image.clone())).prop_map(move |(m, i)| Variant {
            name: "primary".into(),
            model: model.clone(),
            model_data: m,
            image: i,
        });
    prop_oneof![
        Just(Endpoint::Missing),
        (
            prop::sample::select(vec!["InService", "Failed", "Updating", "RollingBack"]),
            prop_oneof![Just(e.config.clone()), Just("hand-made".to_owned())],
            prop::collection::vec(variant, 0..3),
        )
            .prop_map(|(status, config, variants)| Endpoint::Serving {
                status: status.into(),
                config,
                variants,
            }),
    ]
}

proptest! {
    /// In sync exactly when nothing differs; a drift names only fields that differ, each
    /// with the registry's value; mid-change endpoints and rollouts are never drift.
    #[test]
    fn comparison_reports_exactly_what_differs(endpoint in arb_endpoint()) {
        let e = expected();
        match compare(&Registered::Active(e.clone()), &endpoint) {
            Verdict::InSync => prop_assert_eq!(&endpoint, &in_sync_endpoint_with_status(&endpoint)),
            Verdict::Drifted { expected, differences } => {
                prop_assert_eq!(expected, e.version.clone());
                prop_assert!(!differences.is_empty());
                for difference in &differences {
                    prop_assert_ne!(&difference.expected, &difference.actual);
                }
            }
            Verdict::NotJudged(why) => prop_assert!(why.starts_with("endpoint is ")),
        }
        let rolling = Registered::RollingOut { model: "m".into(), version: "v".into() };
        prop_assert!(matches!(compare(&rolling, &endpoint), Verdict::NotJudged(_)));
        prop_assert!(matches!(compare(&Registered::NothingActive, &endpoint), Verdict::NotJudged(_)));
    }

    /// Over any sequence of ticks: the same verdict twice writes nothing the second time;
    /// history entries alternate drift / drift-healed, starting with drift; the record
    /// holds a drift exactly when the last judged verdict was one, since the first tick of
    /// that episode.
    #[test]
    fn the_record_follows_the_ticks(verdicts in prop::collection::vec(arb_verdict(), 0..40)) {
        let mut record: Option<Drift> = None;
        let mut kinds = Vec::new();
        let mut last_judged = None;
        let mut episode_start = None;
        for (i, verdict) in verdicts.iter().enumerate() {
            let now = at(60 * i as i64);
            let change = track(record.as_ref(), verdict, now);
            if let Some(event) = history_event("eu-west-1", &change, now) {
                kinds.push(event.kind);
            }
            record = change.apply(record);
            prop_assert_eq!(track(record.as_ref(), verdict, now + Duration::seconds(1)), Change::None);
            match verdict {
                Verdict::InSync => { last_judged = Some(false); episode_start = None; }
                Verdict::Drifted { .. } => {
                    last_judged = Some(true);
                    episode_start.get_or_insert(now);
                }
                Verdict::NotJudged(_) => {}
            }
        }
        for (i, kind) in kinds.iter().enumerate() {
            prop_assert_eq!(kind.as_str(), if i % 2 == 0 { "drift" } else { "drift-healed" });
        }
        prop_assert_eq!(record.is_some(), last_judged == Some(true));
        prop_assert_eq!(record.map(|r| r.since), episode_start);
    }
}

/// The in-sync endpoint with `endpoint`'s status (any non-changing status is judged).
fn in_sync_endpoint_with_status(endpoint: &Endpoint) -> Endpoint {
    let e = expected();
    let status = match endpoint {
        Endpoint::Serving { status, .. } => status.clone(),
        Endpoint::Missing => "Missing".into(),
    };
    serving(&status, &e.config, vec![variant(&e.model_data, &e.image)])
}
