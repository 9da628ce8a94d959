//! Progress of long work. While a realm's writes queue behind Zulip's rate limit (a first
//! import sends thousands), the IdP only sees slow answers; the operator sees one `info` line
//! per realm every `progress_interval_ms`: writes queued, done, the rate, the time left at
//! that rate, and the current wait for the rate limit. A line says when the queue is empty
//! again. Idle realms, and single writes that do not wait, write nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use zulip_client::ClientStats;

use crate::provision::Realm;

/// The state between two samples of one realm's client.
#[derive(Debug, Default)]
pub struct Progress {
    previous: ClientStats,
    /// The writes since the queue began to fill: (when, the counters then).
    batch: Option<(Instant, ClientStats)>,
}

/// One progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    pub queued: u64,
    /// Writes done (and failed) since the queue began to fill.
    pub done: u64,
    pub failed: u64,
    /// 429 answers since the queue began to fill.
    pub rate_limited: u64,
    /// Writes per minute since the queue began to fill.
    pub per_minute: f64,
    /// Time left for the queued writes at that rate (`None`: nothing got through yet).
    pub eta: Option<Duration>,
    pub rate_limit_wait: Duration,
    /// Zulip's last `X-RateLimit-*` report: calls left of the limit.
    pub budget: Option<(u32, u32)>,
    /// The queue is empty again: the batch is over.
    pub finished: bool,
    pub elapsed: Duration,
}

impl Progress {
    /// Compares `stats` with the previous sample, `interval` ago.
    pub fn step(&mut self, stats: ClientStats, interval: Duration, now: Instant) -> Option<ProgressLine> {
        let previous = std::mem::replace(&mut self.previous, stats);
        let waiting =
            stats.writes_queued > 1 || (stats.writes_queued > 0 && !stats.rate_limit_wait.is_zero());
        if self.batch.is_none() && waiting {
            // The batch began at the previous sample, when these counters were read.
            self.batch = Some((now.checked_sub(interval).unwrap_or(now), previous));
        }
        let (started, at_start) = self.batch?;
        let finished = stats.writes_queued == 0;
        if finished {
            self.batch = None;
        }
        // The batch's average rate: what the rate limit lets through, smoothed over its waits.
        let through = (stats.writes_done + stats.writes_failed)
            .saturating_sub(at_start.writes_done + at_start.writes_failed);
        let per_second = through as f64 / now.saturating_duration_since(started).as_secs_f64().max(0.001);
        Some(ProgressLine {
            queued: stats.writes_queued,
            done: stats.writes_done.saturating_sub(at_start.writes_done),
            failed: stats.writes_failed.saturating_sub(at_start.writes_failed),
            rate_limited: stats.rate_limited.saturating_sub(at_start.rate_limited),
            per_minute: (per_second * 600.0).round() / 10.0,
            eta: (per_second > 0.0).then(|| Duration::from_secs_f64(stats.writes_queued as f64 / per_second)),
            rate_limit_wait: stats.rate_limit_wait,
            budget: stats.rate_limit.map(|r| (r.remaining, r.limit)),
            finished,
            elapsed: now.saturating_duration_since(started),
        })
    }
}

impl ProgressLine {
    pub fn log(&self, realm: &str) {
        let wait_s = (self.rate_limit_wait.as_secs_f64() * 10.0).round() / 10.0;
        let budget = self.budget.map(|(left, limit)| format!("{left} of {limit} left"));
        if self.finished {
            tracing::info!(
                realm,
                done = self.done,
                failed = self.failed,
                rate_limited = self.rate_limited,
                elapsed_s = self.elapsed.as_secs(),
                "write queue empty again"
            );
        } else {
            tracing::info!(
                realm,
                queued_writes = self.queued,
                done = self.done,
                failed = self.failed,
                writes_per_min = self.per_minute,
                eta_s = self.eta.map(|d| d.as_secs()),
                rate_limit_wait_s = wait_s,
                zulip_budget = budget.as_deref(),
                rate_limited = self.rate_limited,
                "writes queued behind zulip's rate limit"
            );
        }
    }
}

/// Samples `realm`'s client every `interval` and logs its progress (see the module doc).
pub async fn run(realm: Arc<Realm>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut progress = Progress::default();
    loop {
        ticks.tick().await;
        if let Some(line) = progress.step(realm.client.stats(), interval, Instant::now()) {
            line.log(realm.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(queued: u64, done: u64, wait_ms: u64) -> ClientStats {
        ClientStats {
            writes_queued: queued,
            writes_done: done,
            rate_limit_wait: Duration::from_millis(wait_ms),
            ..ClientStats::default()
        }
    }

    #[test]
    fn a_queue_behind_the_rate_limit_reports_rate_and_time_left_then_its_end() {
        let mut p = Progress::default();
        let s = Duration::from_secs(10);
        let t0 = Instant::now() + s;
        assert_eq!(p.step(stats(0, 5, 0), s, t0), None, "idle");
        assert_eq!(p.step(stats(1, 6, 0), s, t0 + s), None, "one write without a wait is not news");
        let line = p.step(stats(40, 16, 2500), s, t0 + 2 * s).unwrap();
        assert_eq!((line.queued, line.done, line.per_minute), (40, 10, 60.0));
        assert_eq!(line.eta, Some(Duration::from_secs(40)));
        assert_eq!(line.rate_limit_wait, Duration::from_millis(2500));
        let line = p.step(stats(30, 16, 9000), s, t0 + 3 * s).unwrap();
        assert_eq!((line.done, line.per_minute, line.elapsed), (10, 30.0, 2 * s), "the batch's average");
        assert_eq!(line.eta, Some(Duration::from_secs(60)));
        let line = p.step(stats(20, 36, 1000), s, t0 + 4 * s).unwrap();
        assert_eq!((line.done, line.eta), (30, Some(Duration::from_secs(20))));
        let end = p.step(stats(0, 56, 0), s, t0 + 5 * s).unwrap();
        assert!(end.finished);
        assert_eq!((end.done, end.elapsed), (50, 4 * s));
        assert_eq!(p.step(stats(0, 56, 0), s, t0 + 6 * s), None, "quiet again");
    }
}
