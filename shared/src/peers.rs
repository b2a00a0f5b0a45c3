//! The fleet as one region's table replica shows it, and the rule that keeps
//! `min_healthy` without a home region.
//!
//! Every region decides from its own replica of the registry table, never from another
//! region's: a dark region, or an impaired us-east-1, cannot block a drain anywhere else.
//! A region that wants to drain (by alarm or by hand):
//!
//! 1. writes its **intent** (the time `t`) into its own record;
//! 2. waits the **settle time** `S`, chosen above the table's replication lag `L`;
//! 3. reads its peers' records again and counts as out of service every peer that is
//!    drained, found unreachable by the newest probe of it, or has a live intent that comes
//!    **before** its own in the order (intent time, region name);
//! 4. drains only if the regions left in service would still be `min_healthy`, and in any
//!    case clears its intent.
//!
//! Why `min_healthy` holds: take any two regions A and B that both reach step 3, A's intent
//! first in the order. A's intent was written at `t_A <= t_B` and reached B's replica by
//! `t_A + L < t_B + S`, when B reads: B counts A. So each region counts every region before
//! it that might drain at the same time (and all that already have); the drains decided
//! in one round are a prefix of the order, each of which saw all earlier ones, so the last
//! to drain saw them all and the limit holds. Intents that were withdrawn are counted too,
//! which can only suppress a drain (the next tick retries it), never allow one. Clock skew
//! between regions adds to `L` (Lambda's clocks follow the Amazon Time Sync Service, within
//! a millisecond). An intent stops counting [`INTENT_GRACE`] after its settle time: a
//! region that died between steps 1 and 4 does not block its peers for ever.
//!
//! What the rule cannot see, Route 53 backs up: when every record is unhealthy, Route 53
//! answers as if all were healthy (fail-open), so no rule error can take the whole fleet
//! out of DNS.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::failover::{FleetView, HealthState, RegionHealth};

/// How long after its settle time an intent still counts: longer than a drain takes to
/// commit, short enough that a region that died mid-drain is forgotten soon.
pub const INTENT_GRACE: Duration = Duration::from_secs(30);

/// How long a probe result counts: a few ticks (one a minute), so an observer that itself
/// went dark does not keep a peer "unreachable" for ever.
pub const PROBE_FRESHNESS: Duration = Duration::from_secs(300);

/// One region's probe of one peer's front door `/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reachability {
    /// Since when the peer's front door has not answered (None: it answers, 200 or 503).
    pub unreachable_since: Option<DateTime<Utc>>,
    /// When the probe ran.
    pub checked: DateTime<Utc>,
    /// What it answered: `200 ...`, `503 ...`, or why it did not answer.
    pub answer: String,
}

/// What one region's scheduled tick saw of its peers; one item per observer, written in
/// the observer's own replica.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerProbes {
    pub observer: String,
    pub peers: BTreeMap<String, Reachability>,
}

/// One peer as this region's replica shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub region: String,
    /// Its health record (None: it never had an incident, so it is in service).
    pub record: Option<RegionHealth>,
    /// Since when and by whom the newest fresh probe of it by another region found it
    /// unreachable.
    pub unreachable: Option<(DateTime<Utc>, String)>,
}

/// Why a peer counts as out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Its record says so.
    Drained(HealthState),
    /// Its front door stopped answering another region's probes: Route 53 takes it out.
    Unreachable {
        since: DateTime<Utc>,
        observer: String,
    },
    /// It is about to decide a drain, ahead of this region in the order.
    Draining { intent: DateTime<Utc> },
}

/// Whether an intent written at `intent` may still lead to a drain: until
/// [`INTENT_GRACE`] after its settle time.
pub fn intent_is_live(intent: DateTime<Utc>, settle: Duration, now: DateTime<Utc>) -> bool {
    let lifetime =
        chrono::Duration::from_std(settle + INTENT_GRACE).unwrap_or(chrono::Duration::MAX);
    now < intent + lifetime
}

/// Whether the newest fresh probe of `peer` among `probes` (by anyone but itself) found it
/// unreachable, and if so since when and by whom. The newest wins: a region that went dark
/// right after its last probe keeps its old verdict for [`PROBE_FRESHNESS`], and a peer that
/// came back must not stay "unreachable" on the word of an observer that can no longer probe
/// (on a tie, unreachable wins).
pub fn unreachable(
    peer: &str,
    probes: &[PeerProbes],
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, String)> {
    let fresh = chrono::Duration::from_std(PROBE_FRESHNESS).unwrap_or(chrono::Duration::MAX);
    let (seen, observer) = probes
        .iter()
        .filter(|p| p.observer != peer)
        .filter_map(|p| p.peers.get(peer).map(|seen| (seen, &p.observer)))
        .filter(|(seen, _)| now - seen.checked < fresh)
        .max_by_key(|(seen, _)| (seen.checked, seen.unreachable_since.is_some()))?;
    seen.unreachable_since
        .map(|since| (since, observer.clone()))
}

/// Whether `peer` counts as out of service for `me`, whose own intent (if it has written
/// one) is `my_intent`. Without an intent of its own, a region counts every live intent.
pub fn out_of_service(
    me: &str,
    my_intent: Option<DateTime<Utc>>,
    peer: &PeerView,
    settle: Duration,
    now: DateTime<Utc>,
) -> Option<Out> {
    if let Some(record) = &peer.record {
        if !record.state.in_service() {
            return Some(Out::Drained(record.state));
        }
    }
    if let Some((since, observer)) = &peer.unreachable {
        return Some(Out::Unreachable {
            since: *since,
            observer: observer.clone(),
        });
    }
    let intent = peer.record.as_ref()?.drain_intent?;
    let live = intent_is_live(intent, settle, now);
    let ahead = my_intent.is_none_or(|mine| (intent, peer.region.as_str()) < (mine, me));
    (live && ahead).then_some(Out::Draining { intent })
}

/// The fleet as `me` must count it: how many other regions are in service.
pub fn fleet_view(
    regions: usize,
    me: &str,
    my_intent: Option<DateTime<Utc>>,
    peers: &[PeerView],
    settle: Duration,
    now: DateTime<Utc>,
) -> FleetView {
    let out = peers
        .iter()
        .filter(|peer| peer.region != me)
        .filter(|peer| out_of_service(me, my_intent, peer, settle, now).is_some())
        .count();
    FleetView {
        regions,
        others_in_service: regions.saturating_sub(1 + out),
    }
}

/// The peers counted out of service, for the reason a suppressed drain records.
pub fn describe_out(
    me: &str,
    my_intent: Option<DateTime<Utc>>,
    peers: &[PeerView],
    settle: Duration,
    now: DateTime<Utc>,
) -> String {
    let described: Vec<String> = peers
        .iter()
        .filter(|peer| peer.region != me)
        .filter_map(|peer| {
            let out = out_of_service(me, my_intent, peer, settle, now)?;
            Some(match out {
                Out::Drained(state) => format!("{} {}", peer.region, state_name(state)),
                Out::Unreachable { since, observer } => format!(
                    "{} unreachable since {} (seen from {observer})",
                    peer.region,
                    since.format("%H:%M:%S")
                ),
                Out::Draining { intent } => format!(
                    "{} draining since {}",
                    peer.region,
                    intent.format("%H:%M:%S%.3f")
                ),
            })
        })
        .collect();
    described.join(", ")
}

fn state_name(state: HealthState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid time")
    }

    fn peer(region: &str, state: HealthState, intent: Option<i64>) -> PeerView {
        let mut record = RegionHealth::new(region, at(0));
        record.state = state;
        record.drain_intent = intent.map(at);
        PeerView {
            region: region.into(),
            record: Some(record),
            unreachable: None,
        }
    }

    const SETTLE: Duration = Duration::from_secs(5);

    #[test]
    fn drained_and_unreachable_peers_are_out() {
        let drained = peer("eu-west-1", HealthState::DrainedByAlarm, None);
        assert_eq!(
            out_of_service("us-east-1", None, &drained, SETTLE, at(10)),
            Some(Out::Drained(HealthState::DrainedByAlarm))
        );
        let dark = PeerView {
            unreachable: Some((at(3), "ap-southeast-1".into())),
            ..peer("eu-west-1", HealthState::Healthy, None)
        };
        assert!(matches!(
            out_of_service("us-east-1", None, &dark, SETTLE, at(10)),
            Some(Out::Unreachable { .. })
        ));
        let never_recorded = PeerView {
            region: "eu-west-1".into(),
            record: None,
            unreachable: None,
        };
        assert_eq!(
            out_of_service("us-east-1", None, &never_recorded, SETTLE, at(10)),
            None
        );
    }

    #[test]
    fn only_earlier_live_intents_count() {
        let earlier = peer("eu-west-1", HealthState::Healthy, Some(1));
        let later = peer("eu-west-1", HealthState::Healthy, Some(3));
        assert!(out_of_service("us-east-1", Some(at(2)), &earlier, SETTLE, at(7)).is_some());
        assert!(out_of_service("us-east-1", Some(at(2)), &later, SETTLE, at(7)).is_none());
        assert!(
            out_of_service("us-east-1", None, &later, SETTLE, at(7)).is_some(),
            "without an intent of its own a region counts every live intent"
        );
        // Same time: the region name breaks the tie, the same way on both sides.
        let tie = peer("eu-west-1", HealthState::Healthy, Some(2));
        assert!(out_of_service("us-east-1", Some(at(2)), &tie, SETTLE, at(7)).is_some());
        let me_first = peer("us-east-1", HealthState::Healthy, Some(2));
        assert!(out_of_service("eu-west-1", Some(at(2)), &me_first, SETTLE, at(7)).is_none());
        // Past settle + grace, an intent is an abandoned one.
        let stale = 1 + (SETTLE + INTENT_GRACE).as_secs() as i64;
        assert!(out_of_service(
            "us-east-1",
            Some(at(stale + 1)),
            &earlier,
            SETTLE,
            at(stale + 1)
        )
        .is_none());
    }

    fn probe(observer: &str, since: Option<i64>, checked: i64) -> PeerProbes {
        PeerProbes {
            observer: observer.into(),
            peers: BTreeMap::from([(
                "eu-west-1".to_string(),
                Reachability {
                    unreachable_since: since.map(at),
                    checked: at(checked),
                    answer: "connection refused".into(),
                },
            )]),
        }
    }

    #[test]
    fn probes_count_while_fresh_and_not_the_peers_own() {
        let probes = [
            probe("us-east-1", Some(20), 60),
            probe("ap-southeast-1", Some(10), 50),
        ];
        assert_eq!(
            unreachable("eu-west-1", &probes, at(70)),
            Some((at(20), "us-east-1".into()))
        );
        let stale = PROBE_FRESHNESS.as_secs() as i64 + 61;
        assert_eq!(unreachable("eu-west-1", &probes, at(stale)), None);
        assert_eq!(
            unreachable("eu-west-1", &[probe("eu-west-1", Some(10), 60)], at(70)),
            None
        );
    }

    /// The demo's race: us-east-1 found eu-west-1 unreachable and went dark before its next
    /// tick; ap-southeast-1 has since found eu-west-1 answering again.
    #[test]
    fn a_newer_answer_outweighs_an_older_unreachable() {
        let back = [
            probe("us-east-1", Some(20), 30),
            probe("ap-southeast-1", None, 40),
        ];
        assert_eq!(unreachable("eu-west-1", &back, at(50)), None);
        let gone_again = [
            probe("us-east-1", None, 30),
            probe("ap-southeast-1", Some(35), 40),
        ];
        assert_eq!(
            unreachable("eu-west-1", &gone_again, at(50)),
            Some((at(35), "ap-southeast-1".into()))
        );
        let tie = [
            probe("us-east-1", None, 40),
            probe("ap-southeast-1", Some(35), 40),
        ];
        assert_eq!(
            unreachable("eu-west-1", &tie, at(50)),
            Some((at(35), "ap-southeast-1".into()))
        );
    }

    #[test]
    fn the_view_counts_the_others_in_service() {
        let peers = [
            peer("eu-west-1", HealthState::DrainedByHand, None),
            peer("ap-southeast-1", HealthState::Healthy, None),
        ];
        let view = fleet_view(3, "us-east-1", None, &peers, SETTLE, at(0));
        assert_eq!(view.others_in_service, 1);
        assert_eq!(
            describe_out("us-east-1", None, &peers, SETTLE, at(0)),
            "eu-west-1 drained_by_hand"
        );
    }
}
