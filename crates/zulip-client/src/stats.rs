//! [`ClientStats`]: what one realm's client is doing, for the sidecar to sample (progress
//! lines during a long import, the `scim_writes_queued` and `zulip_rate_limit_wait_seconds`
//! gauges). Plain atomics: this crate knows nothing of telemetry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::types::RateLimitState;

/// A sample of one client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Writes that have been called and have not returned yet: waiting for the realm's
    /// write queue or its rate limit, or being sent.
    pub writes_queued: u64,
    /// Writes that succeeded, since the client was built.
    pub writes_done: u64,
    /// Writes that failed (after their retries), since the client was built.
    pub writes_failed: u64,
    /// Zulip's 429 answers, since the client was built.
    pub rate_limited: u64,
    /// How long a call sent now would wait for the rate limit (a 429's hold, the spread of a
    /// low budget, an exhausted budget's reset).
    pub rate_limit_wait: Duration,
    /// The last `X-RateLimit-*` report.
    pub rate_limit: Option<RateLimitState>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes_queued: AtomicU64,
    writes_done: AtomicU64,
    writes_failed: AtomicU64,
    rate_limited: AtomicU64,
}

/// One write counted as queued until it returns; [`WriteGuard::done`] records how.
pub(crate) struct WriteGuard<'a> {
    counters: &'a Counters,
    succeeded: bool,
}

impl Counters {
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        self.writes_queued.fetch_add(1, Ordering::Relaxed);
        WriteGuard { counters: self, succeeded: false }
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sample(
        &self,
        rate_limit_wait: Duration,
        rate_limit: Option<RateLimitState>,
    ) -> ClientStats {
        ClientStats {
            writes_queued: self.writes_queued.load(Ordering::Relaxed),
            writes_done: self.writes_done.load(Ordering::Relaxed),
            writes_failed: self.writes_failed.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            rate_limit_wait,
            rate_limit,
        }
    }
}

impl WriteGuard<'_> {
    pub(crate) fn done(mut self) {
        self.succeeded = true;
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let c = self.counters;
        c.writes_queued.fetch_sub(1, Ordering::Relaxed);
        let outcome = if self.succeeded { &c.writes_done } else { &c.writes_failed };
        outcome.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_count_as_queued_until_they_return() {
        let counters = Counters::default();
        let first = counters.write();
        let second = counters.write();
        assert_eq!(counters.sample(Duration::ZERO, None).writes_queued, 2);
        first.done();
        drop(second);
        counters.rate_limited();
        let stats = counters.sample(Duration::from_secs(2), None);
        assert_eq!(
            (stats.writes_queued, stats.writes_done, stats.writes_failed, stats.rate_limited),
            (0, 1, 1, 1)
        );
        assert_eq!(stats.rate_limit_wait, Duration::from_secs(2));
    }
}
