//! The fleet's rollout lock and queue: what a rollout updates is the fleet's endpoint in
//! each region, which every model shares, so one lock per fleet (not per model) guards
//! it, and versions of any model queue behind it in upload order. Pure: the registry
//! stores the lock (`endpoints` / `lock`) and applies these transitions with optimistic
//! concurrency.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version whose rollout holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub model: String,
    pub version: String,
    /// When it took the lock (the lock's age in `meridian rollout status`).
    pub since: DateTime<Utc>,
    /// The name of its Step Functions execution, once started: what the execution-ended
    /// event is matched with.
    #[serde(default)]
    pub execution: Option<String>,
    /// The region, when the holder is a drift repair of that region alone (of the active
    /// version `model`/`version`, [`crate::repair`]) rather than a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<String>,
}

/// A version waiting for the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedVersion {
    pub model: String,
    pub version: String,
    pub queued: DateTime<Utc>,
}

/// The fleet's rollout lock and the versions queued behind it, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutLock {
    pub holder: Option<LockHolder>,
    pub queue: Vec<QueuedVersion>,
}

impl RolloutLock {
    /// Whether `model`/`version` holds the lock.
    pub fn held_by(&self, model: &str, version: &str) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|h| h.model == model && h.version == version)
    }

    fn queued(&self, model: &str, version: &str) -> bool {
        self.queue
            .iter()
            .any(|q| q.model == model && q.version == version)
    }

    /// Takes the lock for `model`/`version` if it is free, or queues the version behind the
    /// holder (once). Returns whether anything changed.
    pub fn acquire_or_queue(&mut self, model: &str, version: &str, now: DateTime<Utc>) -> bool {
        if self.held_by(model, version) {
            return false;
        }
        if self.holder.is_none() {
            self.queue
                .retain(|q| !(q.model == model && q.version == version));
            self.holder = Some(LockHolder {
                model: model.to_owned(),
                version: version.to_owned(),
                since: now,
                execution: None,
                repair: None,
            });
            return true;
        }
        if self.queued(model, version) {
            return false;
        }
        self.queue.push(QueuedVersion {
            model: model.to_owned(),
            version: version.to_owned(),
            queued: now,
        });
        true
    }

    /// Releases the lock if `model`/`version` holds it, handing it to the oldest queued
    /// version, which is returned (its rollout is the caller's to start). `None` when the
    /// version did not hold the lock (already released: idempotent) or nothing is queued.
    pub fn release(
        &mut self,
        model: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Option<(String, String)> {
        if !self.held_by(model, version) {
            return None;
        }
        self.holder = None;
        if self.queue.is_empty() {
            return None;
        }
        let next = self.queue.remove(0);
        self.holder = Some(LockHolder {
            model: next.model.clone(),
            version: next.version.clone(),
            since: now,
            execution: None,
            repair: None,
        });
        Some((next.model, next.version))
    }

    /// Takes the lock for the repair of `region` (putting back the active `model`/`version`)
    /// with its execution named up front, only if nothing holds it and nothing is queued:
    /// a repair never jumps the queue. Returns whether it took it (false when held by
    /// anyone, this repair included).
    pub fn acquire_for_repair(
        &mut self,
        model: &str,
        version: &str,
        region: &str,
        execution: &str,
        now: DateTime<Utc>,
    ) -> bool {
        if self.holder.is_some() || !self.queue.is_empty() {
            return false;
        }
        self.holder = Some(LockHolder {
            model: model.to_owned(),
            version: version.to_owned(),
            since: now,
            execution: Some(execution.to_owned()),
            repair: Some(region.to_owned()),
        });
        true
    }

    /// Records the holder's execution name; false when `model`/`version` no longer holds
    /// the lock or the name is already recorded.
    pub fn record_execution(&mut self, model: &str, version: &str, execution: &str) -> bool {
        match self.holder.as_mut() {
            Some(h)
                if h.model == model
                    && h.version == version
                    && h.execution.as_deref() != Some(execution) =>
            {
                h.execution = Some(execution.to_owned());
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap_or_default()
    }

    #[test]
    fn two_models_share_one_lock_and_queue_in_upload_order() {
        let mut lock = RolloutLock::default();
        assert!(lock.acquire_or_queue("llama", "v1", at(0)));
        assert!(lock.acquire_or_queue("mistral", "v1", at(1)));
        assert!(lock.acquire_or_queue("llama", "v2", at(2)));
        assert!(
            !lock.acquire_or_queue("mistral", "v1", at(3)),
            "queued once"
        );
        assert!(lock.held_by("llama", "v1"));
        assert_eq!(
            lock.release("llama", "v1", at(4)),
            Some(("mistral".into(), "v1".into()))
        );
        assert_eq!(lock.release("llama", "v1", at(5)), None, "idempotent");
        assert_eq!(lock.holder.as_ref().map(|h| h.since), Some(at(4)));
        assert_eq!(
            lock.release("mistral", "v1", at(6)),
            Some(("llama".into(), "v2".into()))
        );
        assert_eq!(lock.release("llama", "v2", at(7)), None);
        assert_eq!(lock, RolloutLock::default());
    }

    #[test]
    fn the_execution_is_recorded_for_the_holder_only() {
        let mut lock = RolloutLock::default();
        lock.acquire_or_queue("llama", "v1", at(0));
        lock.acquire_or_queue("llama", "v2", at(1));
        assert!(!lock.record_execution("llama", "v2", "e2"));
        assert!(lock.record_execution("llama", "v1", "e1"));
        assert!(!lock.record_execution("llama", "v1", "e1"));
        assert_eq!(lock.holder.and_then(|h| h.execution).as_deref(), Some("e1"));
    }

    #[test]
    fn a_repair_takes_only_a_free_lock_and_releases_like_a_rollout() {
        let mut lock = RolloutLock::default();
        assert!(lock.acquire_for_repair("llama", "v1", "eu-west-1", "r1", at(0)));
        assert!(
            !lock.acquire_for_repair("llama", "v1", "eu-west-1", "r1", at(1)),
            "held, by itself"
        );
        assert!(!lock.acquire_for_repair("llama", "v1", "us-west-2", "r2", at(1)));
        assert!(
            lock.acquire_or_queue("llama", "v2", at(2)),
            "queued behind it"
        );
        assert_eq!(
            lock.release("llama", "v1", at(3)),
            Some(("llama".into(), "v2".into()))
        );
        assert_eq!(lock.holder.as_ref().and_then(|h| h.repair.clone()), None);
        assert!(
            !lock.acquire_for_repair("llama", "v1", "eu-west-1", "r1", at(4)),
            "a rollout holds it"
        );
        lock.release("llama", "v2", at(5));
        lock.acquire_or_queue("llama", "v3", at(6));
        lock.queue.push(QueuedVersion {
            model: "llama".into(),
            version: "v4".into(),
            queued: at(7),
        });
        lock.holder = None;
        assert!(
            !lock.acquire_for_repair("llama", "v3", "eu-west-1", "r1", at(8)),
            "never ahead of a queued version"
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Upload(u8, u8),
        Release(u8, u8),
        Repair(u8, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..3, 0u8..3).prop_map(|(m, v)| Step::Upload(m, v)),
            (0u8..3, 0u8..3).prop_map(|(m, v)| Step::Release(m, v)),
            (0u8..3, 0u8..3).prop_map(|(m, r)| Step::Repair(m, r)),
        ]
    }

    proptest! {
        /// At most one version holds the lock, whatever model; no version is both holder
        /// and queued or queued twice; a repair takes only a free lock with an empty queue; the queue keeps upload order; a release by anyone
        /// but the holder changes nothing.
        #[test]
        fn one_holder_and_a_fifo_queue(steps in proptest::collection::vec(step(), 0..40)) {
            let mut lock = RolloutLock::default();
            for (i, step) in steps.into_iter().enumerate() {
                let now = at(i64::try_from(i).unwrap_or_default());
                let before = lock.clone();
                match step {
                    Step::Upload(m, v) => {
                        lock.acquire_or_queue(&format!("m{m}"), &format!("v{v}"), now);
                    }
                    Step::Repair(m, r) => {
                        let region = format!("r{r}");
                        let took = lock.acquire_for_repair(&format!("m{m}"), "active", &region, &region, now);
                        prop_assert_eq!(took, before.holder.is_none() && before.queue.is_empty());
                        if !took {
                            prop_assert_eq!(&lock, &before);
                        }
                    }
                    Step::Release(m, v) => {
                        let (model, version) = (format!("m{m}"), format!("v{v}"));
                        let next = lock.release(&model, &version, now);
                        if !before.held_by(&model, &version) {
                            prop_assert_eq!(&lock, &before);
                        } else {
                            prop_assert_eq!(
                                next,
                                before.queue.first().map(|q| (q.model.clone(), q.version.clone()))
                            );
                        }
                    }
                }
                let mut seen: Vec<(&str, &str)> = lock
                    .queue
                    .iter()
                    .map(|q| (q.model.as_str(), q.version.as_str()))
                    .collect();
                if let Some(h) = &lock.holder {
                    seen.push((h.model.as_str(), h.version.as_str()));
                }
                let count = seen.len();
                seen.sort_unstable();
                seen.dedup();
                prop_assert_eq!(seen.len(), count);
                prop_assert!(lock.queue.windows(2).all(|w| w[0].queued <= w[1].queued));
                prop_assert!(lock.holder.is_some() || lock.queue.is_empty());
            }
        }
    }
}
