//! Per-account sliding-window rate limiting, as Zulip's `api_by_user` rules.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Rate-limit rules: `(window, max requests)` pairs, all applied per authenticated account
/// over a sliding window, e.g. `[(60s, 200), (3600s, 2000)]`.
#[derive(Debug, Clone)]
pub struct RateLimitRules {
    pub rules: Vec<(Duration, u32)>,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Allowed { limit: u32, remaining: u32, reset_in: Duration },
    Limited { limit: u32, retry_after: f64 },
}

/// The dev server's effective rule: headers are sent, but nothing is ever limited.
const UNLIMITED: (Duration, u32) = (Duration::from_secs(60), 100_000);

#[derive(Debug, Default)]
pub(crate) struct Limiter {
    rules: Option<RateLimitRules>,
    /// Accepted requests per account, oldest first.
    hits: HashMap<u64, VecDeque<Instant>>,
}

// === impl Limiter ===

impl Limiter {
    pub fn set_rules(&mut self, rules: Option<RateLimitRules>) {
        self.rules = rules.filter(|r| !r.rules.is_empty());
    }

    fn rules(&self) -> Vec<(Duration, u32)> {
        match &self.rules {
            Some(r) => r.rules.clone(),
            None => vec![UNLIMITED],
        }
    }

    /// Counts the request unless it is over a limit (a refused request is not counted).
    pub fn check(&mut self, account: u64, now: Instant) -> Decision {
        let rules = self.rules();
        let longest = rules.iter().map(|(w, _)| *w).max().unwrap_or(UNLIMITED.0);
        let hits = self.hits.entry(account).or_default();
        while hits.front().is_some_and(|t| now.saturating_duration_since(*t) >= longest) {
            hits.pop_front();
        }
        let in_window = |hits: &VecDeque<Instant>, w: Duration| -> Vec<Instant> {
            hits.iter().copied().filter(|t| now.saturating_duration_since(*t) < w).collect()
        };
        let mut limited: Option<(u32, f64)> = None;
        for (w, max) in &rules {
            let recent = in_window(hits, *w);
            let count = recent.len();
            let max_usize = usize::try_from(*max).unwrap_or(usize::MAX);
            if count >= max_usize {
                // The request that must expire before one more fits.
                let idx = count - max_usize;
                let wait = recent
                    .get(idx)
                    .and_then(|t| t.checked_add(*w))
                    .map(|expiry| expiry.saturating_duration_since(now).as_secs_f64())
                    .unwrap_or(w.as_secs_f64());
                if limited.is_none_or(|(_, longest_wait)| longest_wait < wait) {
                    limited = Some((*max, wait));
                }
            }
        }
        if let Some((limit, retry_after)) = limited {
            return Decision::Limited { limit, retry_after };
        }
        hits.push_back(now);
        let mut best: Option<(u32, u32)> = None;
        for (w, max) in &rules {
            let count = u32::try_from(in_window(hits, *w).len()).unwrap_or(u32::MAX);
            let remaining = max.saturating_sub(count);
            if best.is_none_or(|(_, fewest)| fewest > remaining) {
                best = Some((*max, remaining));
            }
        }
        let (limit, remaining) = best.unwrap_or((UNLIMITED.1, UNLIMITED.1));
        Decision::Allowed { limit, remaining, reset_in: longest }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rules(r: &[(u64, u32)]) -> Option<RateLimitRules> {
        Some(RateLimitRules { rules: r.iter().map(|(s, n)| (Duration::from_secs(*s), *n)).collect() })
    }

    #[test]
    fn counts_down_then_limits_with_fractional_retry_after() {
        let mut l = Limiter::default();
        l.set_rules(rules(&[(60, 3)]));
        let t0 = Instant::now();
        for (i, left) in [2, 1, 0].into_iter().enumerate() {
            let t = t0 + Duration::from_millis(100 * i as u64);
            assert_eq!(
                l.check(1, t),
                Decision::Allowed { limit: 3, remaining: left, reset_in: Duration::from_secs(60) }
            );
        }
        let t = t0 + Duration::from_millis(10_500);
        match l.check(1, t) {
            Decision::Limited { limit, retry_after } => {
                assert_eq!(limit, 3);
                assert!((retry_after - 49.5).abs() < 1e-6, "{retry_after}");
            }
            other => panic!("expected limited, got {other:?}"),
        }
        // Another account has its own bucket.
        assert!(matches!(l.check(2, t), Decision::Allowed { remaining: 2, .. }));
        // The window slides: once the first request expires, one more fits.
        let later = t0 + Duration::from_millis(60_050);
        assert!(matches!(l.check(1, later), Decision::Allowed { remaining: 0, .. }));
    }

    #[test]
    fn reports_the_rule_with_fewest_remaining() {
        let mut l = Limiter::default();
        l.set_rules(rules(&[(60, 10), (3600, 2)]));
        let t0 = Instant::now();
        assert!(matches!(l.check(1, t0), Decision::Allowed { limit: 2, remaining: 1, .. }));
    }

    #[test]
    fn default_is_effectively_unlimited() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert!(matches!(l.check(1, t0), Decision::Allowed { limit: 100_000, remaining: 99_999, .. }));
    }
}
