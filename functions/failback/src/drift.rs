//! The tick's drift check: does this region's endpoint serve what the registry says is
//! the fleet's active version? It reads the registry in the region's own table replica
//! and the endpoint from SageMaker in this region (nothing in another region, nothing in
//! the primary), judges with [`meridian::drift`], keeps the drift in the region's record
//! (what differs, since when), writes a history entry when a drift starts and when it
//! heals, and returns the `Drift` metric. A duplicate tick finds the record already as
//! its verdict wants it and writes nothing.

pub mod aws;

use std::future::Future;

use meridian::drift::{
    compare, history_event, registered, track, Change, Drift, Endpoint, Registered, RegistryView,
    Verdict,
};
use meridian::failover::RegionHealth;
use meridian::fleet::RegionSpec;
use meridian::health::{Clock, HealthError, HealthStore, Write};
use meridian::metrics::DRIFT;
use meridian::registry::VersionRecord;
use serde_json::{json, Value};

/// What the check reads: the region's endpoint and the registry, both in this region.
pub trait DriftSources: Send + Sync {
    /// Every model's active pointer and rollout lock, and the record of the version
    /// committed last ([`RegistryView::latest_active`]), from this region's replica.
    fn registry(
        &self,
    ) -> impl Future<Output = Result<(RegistryView, Option<VersionRecord>), HealthError>> + Send;
    /// The endpoint as SageMaker reports it: its configuration, and each variant's model
    /// data location and image.
    fn endpoint(&self) -> impl Future<Output = Result<Endpoint, HealthError>> + Send;
}

/// Attempts at writing the record against concurrent writers of the same record (the
/// failover function) before the next tick tries again.
const ATTEMPTS: usize = 3;

/// Runs the check for `region`. Never fails the tick: a read or write that fails is
/// logged and reported in the summary, and the next tick checks again.
pub async fn check<S: HealthStore, D: DriftSources, K: Clock>(
    region: &RegionSpec,
    variant: &str,
    sources: &D,
    store: &S,
    clock: &K,
) -> (Value, Option<String>) {
    match run(region, variant, sources, store, clock).await {
        Ok((verdict, drift)) => {
            let metric = DRIFT.line(
                if drift.is_some() { 1.0 } else { 0.0 },
                [region.name.as_str()],
                clock.now(),
            );
            let summary = match verdict {
                Verdict::NotJudged(why) => json!({ "not_judged": why, "drift": drift }),
                _ => json!({ "drift": drift }),
            };
            (summary, Some(metric))
        }
        Err(error) => {
            tracing::warn!(region = %region.name, %error, "drift check failed; the next tick checks again");
            (json!({ "unchecked": error.to_string() }), None)
        }
    }
}

async fn run<S: HealthStore, D: DriftSources, K: Clock>(
    region: &RegionSpec,
    variant: &str,
    sources: &D,
    store: &S,
    clock: &K,
) -> Result<(Verdict, Option<Drift>), HealthError> {
    let (view, active) = sources.registry().await?;
    let expected = registered(&view, active.as_ref(), region, variant);
    let verdict = if matches!(expected, Registered::Active(_)) {
        compare(&expected, &sources.endpoint().await?)
    } else {
        // No commit yet, or a rollout in progress: not judged, and SageMaker is not asked.
        compare(&expected, &Endpoint::Missing)
    };
    let now = clock.now();
    for _ in 0..ATTEMPTS {
        let stored = store.load(&region.name).await?;
        let current = stored.as_ref().and_then(|s| s.value.drift.clone());
        let change = track(current.as_ref(), &verdict, now);
        if change == Change::None {
            return Ok((verdict, current));
        }
        let version = stored.as_ref().map(|s| s.version);
        let mut record = stored.map_or_else(|| RegionHealth::new(&region.name, now), |s| s.value);
        record.drift = change.apply(current);
        if store.save(&record, version).await? == Write::Done {
            // Only the tick whose write won records the change: a tick that lost the race
            // to a concurrent one (the same change) reloads and finds nothing to do.
            if let Some(event) = history_event(&region.name, &change, now) {
                store.record(&event).await?;
            }
            match &change {
                Change::Ended { was, .. } => {
                    tracing::info!(region = %region.name, was = %was.describe(), "drift healed")
                }
                _ => {
                    tracing::warn!(region = %region.name, drift = ?record.drift, "endpoint drifted from the registry")
                }
            }
            return Ok((verdict, record.drift));
        }
    }
    Err(HealthError::Retryable(format!(
        "drift of {}: {ATTEMPTS} attempts lost to concurrent writers",
        region.name
    )))
}

#[cfg(test)]
mod tests;
