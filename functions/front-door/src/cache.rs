//! A value read at most once per time-to-live, with one read in flight at a time: Route
//! 53's checkers probe `/health` from many locations, uncoordinated (several probes a
//! second at times), and each probe must not cost a DynamoDB and a SageMaker read.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// The last value read and when; failed reads are kept too, so an outage of the store is
/// not hammered by the probes that report it.
pub struct Cached<T> {
    ttl: Duration,
    slot: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Cached<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The value read within the TTL, or a fresh one from `read`. Callers that arrive
    /// while a read is in flight wait for it and share its value rather than read again.
    pub async fn get<F, Fut>(&self, read: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() < self.ttl {
                return value.clone();
            }
        }
        let value = read().await;
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_second_get_within_the_ttl_does_not_read() {
        let cache = Cached::new(Duration::from_secs(3600));
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            7
        };
        assert_eq!(cache.get(read).await, 7);
        assert_eq!(cache.get(read).await, 7);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_expired_value_is_read_again() {
        let cache = Cached::new(Duration::ZERO);
        let reads = AtomicUsize::new(0);
        for expected in 1..=3 {
            let value = cache
                .get(|| async { reads.fetch_add(1, Ordering::SeqCst) + 1 })
                .await;
            assert_eq!(value, expected);
        }
    }

    #[tokio::test]
    async fn a_get_during_a_read_waits_for_it_and_shares_its_value() {
        let cache = Arc::new(Cached::new(Duration::from_secs(3600)));
        let (release, mut released) = tokio::sync::watch::channel(false);
        let first = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .get(|| async move {
                        let _ = released.wait_for(|go| *go).await;
                        "first read"
                    })
                    .await
            }
        });
        let second_reads = Arc::new(AtomicUsize::new(0));
        let second = tokio::spawn({
            let (cache, second_reads) = (cache.clone(), second_reads.clone());
            async move {
                cache
                    .get(|| async move {
                        second_reads.fetch_add(1, Ordering::SeqCst);
                        "second read"
                    })
                    .await
            }
        });
        // On this single-threaded runtime both tasks run up to their first wait: the
        // first inside its read, the second queued behind it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !second.is_finished(),
            "the second get waits for the read in flight"
        );
        let _ = release.send(true);
        assert_eq!(first.await.ok(), Some("first read"));
        assert_eq!(second.await.ok(), Some("first read"));
        assert_eq!(second_reads.load(Ordering::SeqCst), 0);
    }
}
