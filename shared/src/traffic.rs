//! Front-door forwarding: which share of a region's inference its front door sends on to
//! a peer's front door, and which requests. Two things ask for a share: continuous warm
//! traffic (active-passive: the primary sends `warm_percent` to each standby, all the
//! time, so no standby is ever cold) and a running drill (`meridian drill`: a share of
//! one region's traffic shifted to another step by step). Pure: the front door reads the
//! drill's shift and its peers' records and asks [`plan`] and [`choose`].
//!
//! The split lives in the registry table, read by the front door from its own replica
//! every second, so a change takes effect within a second and replication, whatever DNS
//! resolvers cached. A forwarded request carries [`FORWARDED_FROM`] and is never
//! forwarded again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fleet::{Fleet, Pattern};
pub use crate::traffic_settings::TrafficSettings;

/// The header a forwarded request carries (the region that forwarded it): a front door
/// serves such a request itself, never forwards it again.
pub const FORWARDED_FROM: &str = "x-meridian-forwarded-from";

/// Shares are counted in basis points (1/100 of a percent) of a region's requests.
pub const ALL: u32 = 10_000;

/// A percent as basis points, rounded.
pub fn basis_points(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 100.0).round() as u32
}

/// A drill's current shift of one region's traffic, as the drill function writes it and
/// the source region's front door reads it. It lapses at `until` by itself: a drill that
/// stopped renewing it (its state machine gone with its region) shifts nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillShift {
    pub drill_id: String,
    pub from: String,
    pub to: String,
    /// Percent of `from`'s inference sent to `to`.
    pub percent: u32,
    /// The step's index in the drill's steps, for the per-step counts.
    pub step: usize,
    pub until: DateTime<Utc>,
}

/// Why a share is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Continuous warm traffic to a standby.
    Warm,
    /// A drill's step.
    Drill { drill_id: String, step: usize },
}

/// One peer's share of a region's inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub to: String,
    /// Basis points of the region's requests.
    pub basis_points: u32,
    pub why: Why,
}

/// What the front door knows of a peer: whether its record says it is in service and
/// the front door URL it published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDoor {
    pub in_service: bool,
    pub url: Option<String>,
}

/// The peers `region` may forward to, before their records are read: each standby of an
/// active-passive primary with warm traffic on, and a live drill's target.
pub fn candidates(
    fleet: &Fleet,
    region: &str,
    drill: Option<&DrillShift>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut peers: Vec<String> = warm_targets(fleet, region);
    if let Some(shift) = live_drill(region, drill, now) {
        if !peers.contains(&shift.to) {
            peers.push(shift.to.clone());
        }
    }
    peers
}

fn warm_targets(fleet: &Fleet, region: &str) -> Vec<String> {
    let warm = fleet.pattern == Pattern::ActivePassive
        && region == fleet.primary_region
        && basis_points(fleet.traffic.warm_percent) > 0;
    if !warm {
        return Vec::new();
    }
    fleet
        .regions
        .iter()
        .filter(|r| r.name != region)
        .map(|r| r.name.clone())
        .collect()
}

fn live_drill<'a>(
    region: &str,
    drill: Option<&'a DrillShift>,
    now: DateTime<Utc>,
) -> Option<&'a DrillShift> {
    drill.filter(|s| s.from == region && s.to != region && now < s.until && s.percent > 0)
}

/// The shares `region`'s front door forwards: a live drill's first (it replaces the warm
/// share of its target), then each standby's warm share, each cut to what is left of
/// the whole. Only to a peer whose record says it is in service and that published its
/// front door (`peers`, by region): a drained peer gets nothing at once.
pub fn plan(
    fleet: &Fleet,
    region: &str,
    drill: Option<&DrillShift>,
    peers: &std::collections::BTreeMap<String, PeerDoor>,
    now: DateTime<Utc>,
) -> Vec<Share> {
    let reachable = |to: &str| {
        peers
            .get(to)
            .is_some_and(|p| p.in_service && p.url.is_some())
    };
    let mut shares = Vec::new();
    let mut left = ALL;
    let drill = live_drill(region, drill, now).filter(|s| reachable(&s.to));
    if let Some(shift) = drill {
        let points = basis_points(f64::from(shift.percent)).min(left);
        left -= points;
        shares.push(Share {
            to: shift.to.clone(),
            basis_points: points,
            why: Why::Drill {
                drill_id: shift.drill_id.clone(),
                step: shift.step,
            },
        });
    }
    for to in warm_targets(fleet, region) {
        if drill.is_some_and(|s| s.to == to) || !reachable(&to) {
            continue;
        }
        let points = basis_points(fleet.traffic.warm_percent).min(left);
        if points == 0 {
            continue;
        }
        left -= points;
        shares.push(Share {
            to,
            basis_points: points,
            why: Why::Warm,
        });
    }
    shares
}

/// The share a request falls in, by its id: the id's hash picks a point in the whole,
/// and the shares take consecutive stretches of it. The same id always gets the same
/// answer; ids spread uniformly, so over `n` requests a share of `p` gets `n·p` of them
/// with binomial spread.
pub fn choose<'a>(request_id: &str, shares: &'a [Share]) -> Option<&'a Share> {
    let point = (fnv1a(request_id.as_bytes()) % u64::from(ALL)) as u32;
    let mut end = 0;
    shares.iter().find(|share| {
        end += share.basis_points;
        point < end
    })
}

/// FNV-1a, 64 bits: fast, stable across builds and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn fleet(pattern: &str, warm: Option<f64>) -> Fleet {
        let traffic = warm
            .map(|w| format!("[traffic]\nwarm_percent = {w}\n"))
            .unwrap_or_default();
        Fleet::from_toml_str(&fleet_text(pattern, &traffic))
            .unwrap_or_else(|e| panic!("test fleet: {e}"))
    }

    fn fleet_text(pattern: &str, traffic: &str) -> String {
        format!(
            r#"
name = "meridian-test"
primary_region = "us-east-1"
pattern = "{pattern}"
primary_bucket = "meridian-test-models"
registry_table = "meridian-test-registry"
[dns]
zone = "llm.example.internal"
record = "api.llm.example.internal"
{regions}
{traffic}"#,
            regions = ["us-east-1", "eu-west-1", "ap-southeast-1"]
                .iter()
                .map(|r| format!(
                    "[[regions]]\nname = \"{r}\"\nbucket = \"meridian-test-models-{r}\"\nendpoint = \"llm\"\ninstance_type = \"ml.g5.2xlarge\"\ninstance_count = 1\nmin_instances = 1\nmax_instances = 1\ntime_zone = \"UTC\"\n"
                ))
                .collect::<String>(),
        )
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn all_up() -> BTreeMap<String, PeerDoor> {
        ["us-east-1", "eu-west-1", "ap-southeast-1"]
            .iter()
            .map(|r| {
                (
                    r.to_string(),
                    PeerDoor {
                        in_service: true,
                        url: Some(format!("https://{r}.example")),
                    },
                )
            })
            .collect()
    }

    fn drill(to: &str, percent: u32, until: i64) -> DrillShift {
        DrillShift {
            drill_id: "d1".into(),
            from: "us-east-1".into(),
            to: to.into(),
            percent,
            step: 2,
            until: at(until),
        }
    }

    #[test]
    fn warm_traffic_goes_from_an_active_passive_primary_to_each_standby() {
        let passive = fleet("active-passive", None);
        let shares = plan(&passive, "us-east-1", None, &all_up(), at(0));
        assert_eq!(
            shares,
            vec![
                Share {
                    to: "eu-west-1".into(),
                    basis_points: 500,
                    why: Why::Warm
                },
                Share {
                    to: "ap-southeast-1".into(),
                    basis_points: 500,
                    why: Why::Warm
                },
            ]
        );
        assert!(
            plan(&passive, "eu-west-1", None, &all_up(), at(0)).is_empty(),
            "standbys forward nothing"
        );
        assert!(plan(
            &fleet("active-active", None),
            "us-east-1",
            None,
            &all_up(),
            at(0)
        )
        .is_empty());
        assert!(plan(
            &fleet("active-passive", Some(0.0)),
            "us-east-1",
            None,
            &all_up(),
            at(0)
        )
        .is_empty());
        let custom = plan(
            &fleet("active-passive", Some(12.5)),
            "us-east-1",
            None,
            &all_up(),
            at(0),
        );
        assert_eq!(custom[0].basis_points, 1250);
    }

    #[test]
    fn a_drained_or_unpublished_peer_gets_nothing() {
        let fleet = fleet("active-passive", None);
        let mut peers = all_up();
        peers.insert(
            "eu-west-1".into(),
            PeerDoor {
                in_service: false,
                url: Some("u".into()),
            },
        );
        peers.insert(
            "ap-southeast-1".into(),
            PeerDoor {
                in_service: true,
                url: None,
            },
        );
        assert!(plan(&fleet, "us-east-1", None, &peers, at(0)).is_empty());
        let shift = drill("eu-west-1", 50, 60);
        assert!(plan(&fleet, "us-east-1", Some(&shift), &peers, at(0)).is_empty());
    }

    #[test]
    fn a_live_drill_replaces_its_targets_warm_share_and_lapses_at_its_time() {
        let fleet = fleet("active-passive", None);
        let shift = drill("eu-west-1", 25, 60);
        let shares = plan(&fleet, "us-east-1", Some(&shift), &all_up(), at(0));
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].to, "eu-west-1");
        assert_eq!(shares[0].basis_points, 2500);
        assert_eq!(
            shares[0].why,
            Why::Drill {
                drill_id: "d1".into(),
                step: 2
            }
        );
        assert_eq!(shares[1].to, "ap-southeast-1");
        assert_eq!(shares[1].why, Why::Warm);
        let lapsed = plan(&fleet, "us-east-1", Some(&shift), &all_up(), at(60));
        assert!(lapsed.iter().all(|s| s.why == Why::Warm));
        assert!(
            plan(&fleet, "eu-west-1", Some(&shift), &all_up(), at(0)).is_empty(),
            "only the source forwards"
        );
    }

    #[test]
    fn a_full_drill_leaves_no_room_for_warm_traffic() {
        let fleet = fleet("active-passive", None);
        let shares = plan(
            &fleet,
            "us-east-1",
            Some(&drill("eu-west-1", 100, 60)),
            &all_up(),
            at(0),
        );
        assert_eq!(shares.len(), 1);
        assert_eq!(shares[0].basis_points, ALL);
        let everything: Vec<_> = (0..1000)
            .filter_map(|i| choose(&format!("r{i}"), &shares))
            .collect();
        assert_eq!(everything.len(), 1000);
    }

    #[test]
    fn candidates_are_the_standbys_and_a_live_drills_target() {
        let active = fleet("active-active", None);
        assert!(candidates(&active, "us-east-1", None, at(0)).is_empty());
        let shift = drill("ap-southeast-1", 10, 60);
        assert_eq!(
            candidates(&active, "us-east-1", Some(&shift), at(0)),
            vec!["ap-southeast-1"]
        );
        assert!(candidates(&active, "us-east-1", Some(&shift), at(61)).is_empty());
        let passive = fleet("active-passive", None);
        assert_eq!(
            candidates(&passive, "us-east-1", None, at(0)),
            vec!["eu-west-1", "ap-southeast-1"]
        );
    }

    #[test]
    fn the_traffic_section_is_validated() {
        let text = |section: &str| fleet_text("active-passive", section);
        let parsed = Fleet::from_toml_str(&text(
            "[traffic]\nwarm_percent = 2.5\ndrill_max_error_percent = 1.0\n",
        ));
        assert_eq!(
            parsed.ok().map(|f| f.traffic),
            Some(TrafficSettings {
                warm_percent: 2.5,
                drill_max_error_percent: 1.0
            })
        );
        let err = Fleet::from_toml_str(&text("[traffic]\nwarm_percent = 60.0\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("traffic.warm_percent"), "{err}");
        let err = Fleet::from_toml_str(&text("[traffic]\nwarm = 5\n")).err();
        assert!(err.is_some(), "unknown keys are rejected");
    }

    proptest! {
        #[test]
        fn a_choice_is_deterministic_and_within_the_shares(id in "[a-z0-9-]{1,40}", a in 0u32..=5000, b in 0u32..=5000) {
            let shares = vec![
                Share { to: "x".into(), basis_points: a, why: Why::Warm },
                Share { to: "y".into(), basis_points: b, why: Why::Warm },
            ];
            prop_assert_eq!(choose(&id, &shares), choose(&id, &shares));
            if a == 0 && b == 0 {
                prop_assert!(choose(&id, &shares).is_none());
            }
            if let Some(share) = choose(&id, &shares) {
                prop_assert!(share.basis_points > 0);
            }
        }
    }

    #[test]
    fn choices_spread_as_the_shares_say() {
        let shares = vec![Share {
            to: "x".into(),
            basis_points: 2500,
            why: Why::Warm,
        }];
        let n = 20_000;
        let hits = (0..n)
            .filter(|i| choose(&uuid_like(*i), &shares).is_some())
            .count() as f64;
        // 25% of 20,000: sd = sqrt(n·p·(1-p)) ≈ 61; 5 sd either side.
        assert!((hits - 5000.0).abs() < 310.0, "{hits}");
    }

    fn uuid_like(i: u64) -> String {
        format!(
            "{:08x}-7b61-11e6-9a41-{:012x}",
            i.wrapping_mul(2_654_435_761),
            i
        )
    }
}
