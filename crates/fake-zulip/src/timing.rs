//! How long the fake takes: a latency profile for REST calls (so benchmarks see what an
//! import against a real Zulip sees) and an event-delivery mode (so tests see events arrive
//! late, in batches, after the answers to later requests — within Zulip's guarantees: one
//! queue's events keep their order and ids).
//!
//! Both draw from a seeded generator, so a run is reproducible.

use std::time::Duration;

use tokio::time::Instant;

/// A small deterministic generator (SplitMix64): no dependency, the same sequence per seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[min, max]`.
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        if max <= min {
            return min;
        }
        let span = (max - min).as_micros() as u64;
        min + Duration::from_micros(self.next() % (span + 1))
    }
}

/// Time one kind of request takes, drawn uniformly from `[min, max]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyRule {
    /// `GET`, `POST`, … (`*`: any).
    pub method: &'static str,
    /// The request path after `/api/v1` starts with this (`""`: any).
    pub path_prefix: &'static str,
    pub min: Duration,
    pub max: Duration,
}

/// How long the fake takes to answer REST calls (not `GET /events`, whose timing
/// [`EventDelivery`] decides). The first matching rule applies; no rule: at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencyProfile {
    pub rules: Vec<LatencyRule>,
    pub seed: u64,
}

impl LatencyProfile {
    /// What a self-hosted Zulip under light load answers in: `POST /users` 200–300 ms (it
    /// creates the account, its subscriptions and its welcome messages), other writes 50–100
    /// ms, `GET /users` and `GET /user_groups` 20–40 ms, other reads 5–15 ms.
    pub fn realistic() -> Self {
        let ms = Duration::from_millis;
        let rule =
            |method, path_prefix, min, max| LatencyRule { method, path_prefix, min: ms(min), max: ms(max) };
        LatencyProfile {
            rules: vec![
                rule("POST", "/api/v1/users/", 50, 100), // reactivate
                rule("POST", "/api/v1/users", 200, 300),
                rule("PATCH", "", 50, 100),
                rule("DELETE", "/api/v1/users", 50, 100),
                rule("POST", "/api/v1/user_groups", 50, 100),
                rule("POST", "/api/v1/realm", 50, 100),
                rule("GET", "/api/v1/users", 20, 40),
                rule("GET", "/api/v1/user_groups", 20, 40),
                rule("GET", "", 5, 15),
            ],
            seed: 1,
        }
    }

    /// Every request of `method` to a path starting with `path_prefix` takes `[min, max]`
    /// (rules added later are tried later).
    pub fn with_rule(
        mut self,
        method: &'static str,
        path_prefix: &'static str,
        min: Duration,
        max: Duration,
    ) -> Self {
        self.rules.push(LatencyRule { method, path_prefix, min, max });
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub(crate) fn rule_for(&self, method: &str, path: &str) -> Option<&LatencyRule> {
        if path.starts_with("/api/v1/events") || path.starts_with("/api/v1/register") {
            return None;
        }
        self.rules.iter().find(|r| {
            (r.method == "*" || r.method.eq_ignore_ascii_case(method)) && path.starts_with(r.path_prefix)
        })
    }
}

/// When a queued event becomes visible to `GET /events`. Default: at once.
///
/// Each event is delayed by a draw from `[min_delay, max_delay]`, but never becomes visible
/// before an earlier event of its queue (Zulip keeps a queue's order); with `batch`, events
/// are released only on ticks of that period, so several arrive in one poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventDelivery {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub batch: Duration,
    pub seed: u64,
}

impl EventDelivery {
    /// Events visible after `[min, max]`, released in batches every `batch` (zero: no
    /// batching).
    pub fn delayed(min: Duration, max: Duration, batch: Duration) -> Self {
        EventDelivery { min_delay: min, max_delay: max, batch, seed: 7 }
    }

    /// What a busy Zulip does: 100–600 ms behind the answers, in 200 ms batches.
    pub fn late() -> Self {
        Self::delayed(Duration::from_millis(100), Duration::from_millis(600), Duration::from_millis(200))
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub(crate) fn is_immediate(&self) -> bool {
        self.max_delay.is_zero() && self.batch.is_zero()
    }
}

/// The delivery clock of the event queues.
#[derive(Debug)]
pub(crate) struct DeliveryClock {
    pub mode: EventDelivery,
    rng: Rng,
    epoch: Instant,
}

impl DeliveryClock {
    pub fn new(mode: EventDelivery) -> Self {
        let rng = Rng::new(mode.seed);
        DeliveryClock { mode, rng, epoch: Instant::now() }
    }

    pub fn set(&mut self, mode: EventDelivery) {
        self.rng = Rng::new(mode.seed);
        self.mode = mode;
    }

    /// When an event queued `now`, after one visible at `previous`, becomes visible.
    pub fn visible_at(&mut self, now: Instant, previous: Option<Instant>) -> Instant {
        if self.mode.is_immediate() {
            return now;
        }
        let mut at = now + self.rng.between(self.mode.min_delay, self.mode.max_delay);
        if let Some(previous) = previous {
            at = at.max(previous);
        }
        let batch = self.mode.batch;
        if !batch.is_zero() {
            let since = at.saturating_duration_since(self.epoch).as_micros();
            let tick = batch.as_micros().max(1);
            let rounded = since.div_ceil(tick) * tick;
            at = self.epoch + Duration::from_micros(rounded as u64);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_in_range() {
        let (min, max) = (Duration::from_millis(200), Duration::from_millis(300));
        let draws = |seed| {
            let mut r = Rng::new(seed);
            (0..100).map(|_| r.between(min, max)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        assert!(draws(3).iter().all(|d| *d >= min && *d <= max));
    }

    #[test]
    fn realistic_latency_rules() {
        let p = LatencyProfile::realistic();
        let ms = Duration::from_millis;
        assert_eq!(p.rule_for("POST", "/api/v1/users").map(|r| r.min), Some(ms(200)));
        assert_eq!(p.rule_for("POST", "/api/v1/users/12/reactivate").map(|r| r.max), Some(ms(100)));
        assert_eq!(p.rule_for("PATCH", "/api/v1/users/12").map(|r| r.min), Some(ms(50)));
        assert_eq!(p.rule_for("GET", "/api/v1/events"), None);
        assert_eq!(p.rule_for("GET", "/api/v1/server_settings").map(|r| r.max), Some(ms(15)));
    }

    #[test]
    fn delivery_keeps_order_and_batches() {
        let mut clock = DeliveryClock::new(EventDelivery::delayed(
            Duration::from_millis(0),
            Duration::from_millis(500),
            Duration::from_millis(100),
        ));
        let now = Instant::now();
        let mut previous = None;
        for _ in 0..50 {
            let at = clock.visible_at(now, previous);
            assert!(previous.is_none_or(|p| at >= p));
            assert_eq!(at.saturating_duration_since(clock.epoch).as_micros() % 100_000, 0);
            previous = Some(at);
        }
        let mut immediate = DeliveryClock::new(EventDelivery::default());
        assert_eq!(immediate.visible_at(now, None), now);
    }
}
