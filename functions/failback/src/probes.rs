//! The tick's look at its peers: publish this region's front door URL in its record (so
//! the peers can find it), probe every peer's front door `/health`, and keep what it saw
//! in this region's replica. A peer that stops answering is recorded in the history as
//! "unreachable since T" by the regions that can still write, and counts as out of
//! service for their safety rules, although it can write nothing itself.

use chrono::{DateTime, Utc};
use meridian::failover::RegionHealth;
use meridian::fleet::Fleet;
use meridian::health::{
    Clock, FailoverEvent, FrontDoorProbe, HealthError, HealthStore, ProbeAnswer, Write,
};
use meridian::peers::{PeerProbes, Reachability};

/// Writes `url` into `region`'s record if it is not there yet. A concurrent write wins;
/// the next tick tries again.
pub async fn publish_front_door<S: HealthStore, K: Clock>(
    region: &str,
    url: &str,
    store: &S,
    clock: &K,
) -> Result<(), HealthError> {
    let stored = store.load(region).await?;
    if stored.as_ref().and_then(|s| s.value.front_door.as_deref()) == Some(url) {
        return Ok(());
    }
    let version = stored.as_ref().map(|s| s.version);
    let mut record = stored.map_or_else(|| RegionHealth::new(region, clock.now()), |s| s.value);
    record.front_door = Some(url.to_owned());
    if store.save(&record, version).await? == Write::Conflict {
        tracing::info!(%region, "front door URL not published this tick: a concurrent write");
    }
    Ok(())
}

/// Probes every peer whose front door URL this region's replica knows, records the
/// changes in the history and stores what it saw. Returns the new probes.
pub async fn probe_peers<S: HealthStore, P: FrontDoorProbe, K: Clock>(
    fleet: &Fleet,
    region: &str,
    store: &S,
    probe: &P,
    clock: &K,
) -> Result<PeerProbes, HealthError> {
    let before = store.load_probes(region).await?.unwrap_or_default();
    let mut after = PeerProbes {
        observer: region.to_owned(),
        peers: Default::default(),
    };
    for peer in fleet.region_names().into_iter().filter(|r| *r != region) {
        let Some(url) = store
            .load(peer)
            .await?
            .and_then(|stored| stored.value.front_door)
        else {
            continue;
        };
        let answer = probe.probe(&url).await;
        let checked = clock.now();
        let previous = before.peers.get(peer);
        let was_unreachable = previous.and_then(|p| p.unreachable_since);
        let seen = Reachability {
            unreachable_since: if answer.reachable() {
                None
            } else {
                Some(was_unreachable.unwrap_or(checked))
            },
            checked,
            answer: answer.describe(),
        };
        if let Some(event) = transition(region, peer, &url, was_unreachable, &answer, checked) {
            tracing::warn!(%region, %peer, kind = %event.kind, answer = %seen.answer,
                "a peer's front door changed reachability");
            store.record(&event).await?;
        }
        after.peers.insert(peer.to_owned(), seen);
    }
    store.save_probes(&after).await?;
    Ok(after)
}

/// The history entry for a change of a peer's reachability, written into the peer's log
/// (in this region's replica; one id per observer and change, so a retried tick writes
/// it once).
fn transition(
    observer: &str,
    peer: &str,
    url: &str,
    was_unreachable: Option<DateTime<Utc>>,
    answer: &ProbeAnswer,
    now: DateTime<Utc>,
) -> Option<FailoverEvent> {
    let (kind, id, reason) = match (was_unreachable, answer.reachable()) {
        (None, false) => (
            "unreachable",
            format!("unreachable#{observer}@{}", now.timestamp_millis()),
            format!(
                "front door {url} did not answer {observer}'s probe of /health: {}",
                answer.describe()
            ),
        ),
        (Some(since), true) => (
            "reachable",
            format!("reachable#{observer}@{}", now.timestamp_millis()),
            format!(
                "front door answered {observer}'s probe again after {} s: {}",
                (now - since).num_seconds(),
                answer.describe()
            ),
        ),
        _ => return None,
    };
    let (from, to) = if kind == "unreachable" {
        ("reachable", "unreachable")
    } else {
        ("unreachable", "reachable")
    };
    Some(FailoverEvent::observed(
        id,
        peer,
        kind,
        (from, to),
        reason,
        now,
    ))
}
