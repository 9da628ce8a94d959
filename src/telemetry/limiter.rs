//! [`LineLimiter`]: at most one identical log line per key and window, so that an IdP
//! retrying the same refused request, or a Zulip outage failing every request the same way,
//! does not bury the log. The next line that gets through says how many were held back.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most; beyond, the table starts afresh (a flood of distinct lines is not
/// repeated lines).
const MAX_KEYS: usize = 4096;

/// Rate limits lines by a key (the parts of the line that make it "the same").
#[derive(Debug)]
pub struct LineLimiter {
    window: Duration,
    seen: Mutex<HashMap<u64, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When the last line with this key was written.
    written: Instant,
    /// Lines held back since.
    held_back: u64,
}

impl LineLimiter {
    pub fn new(window: Duration) -> Self {
        LineLimiter { window, seen: Mutex::new(HashMap::new()) }
    }

    /// `Some(n)`: write the line, noting that `n` identical lines were held back before it;
    /// `None`: hold it back.
    pub fn admit(&self, key: impl Hash, now: Instant) -> Option<u64> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let key = hasher.finish();
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(&key) {
            seen.clear();
        }
        match seen.get_mut(&key) {
            Some(entry) if now.saturating_duration_since(entry.written) < self.window => {
                entry.held_back += 1;
                None
            }
            Some(entry) => {
                let held_back = entry.held_back;
                *entry = Seen { written: now, held_back: 0 };
                Some(held_back)
            }
            None => {
                seen.insert(key, Seen { written: now, held_back: 0 });
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_lines_pass_once_per_window_and_count_the_rest() {
        let limiter = LineLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.admit(("acme", 400, "bad filter"), t0), Some(0));
        assert_eq!(limiter.admit(("acme", 400, "bad filter"), t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.admit(("acme", 400, "bad filter"), t0 + Duration::from_secs(2)), None);
        assert_eq!(
            limiter.admit(("acme", 400, "other"), t0 + Duration::from_secs(2)),
            Some(0),
            "another line"
        );
        assert_eq!(limiter.admit(("acme", 400, "bad filter"), t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.admit(("acme", 400, "bad filter"), t0 + Duration::from_secs(21)), Some(0));
    }
}
