//! [`Health`]: why a realm is, or is not, ready, for `/readyz` and the logs: its state, since
//! when, and the last upstream failure (readiness checks, the live task, requests), in words
//! that name no URL ([`crate::error::upstream_cause`]).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A realm's upstream record. Updated by whoever meets Zulip; read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Clone)]
struct State {
    /// The readiness check succeeded (the realm may still wait for its first snapshot).
    checked: bool,
    /// When `checked` last changed (the sidecar's start, before the first check).
    since: SystemTime,
    last_error: Option<(SystemTime, String)>,
}

/// What `/readyz` says about one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub ready: bool,
    /// Zulip answered the readiness check (else: never yet, or not since `since`).
    pub checked: bool,
    pub since: SystemTime,
    pub last_error: Option<(SystemTime, String)>,
}

impl Default for Health {
    fn default() -> Self {
        Health { state: Mutex::new(State { checked: false, since: SystemTime::now(), last_error: None }) }
    }
}

impl Health {
    /// The readiness check succeeded.
    pub fn checked(&self) {
        let mut s = self.lock();
        if !s.checked {
            s.checked = true;
            s.since = SystemTime::now();
        }
    }

    /// The readiness check failed with `cause`.
    pub fn check_failed(&self, cause: String) {
        let mut s = self.lock();
        if s.checked {
            s.checked = false;
            s.since = SystemTime::now();
        }
        s.last_error = Some((SystemTime::now(), cause));
    }

    /// Any other upstream failure (a request, the live task): remembered, state unchanged.
    pub fn failed(&self, cause: String) {
        self.lock().last_error = Some((SystemTime::now(), cause));
    }

    pub fn report(&self, ready: bool) -> HealthReport {
        let s = self.lock().clone();
        HealthReport { ready, checked: s.checked, since: s.since, last_error: s.last_error }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HealthReport {
    /// One line: `acme: not ready since 2026-12-02T13:50:01Z (12 s); last error …: …`.
    pub fn line(&self, realm: &str, now: SystemTime) -> String {
        let state = match (self.ready, self.checked) {
            (true, _) => "ready",
            (false, true) => "not ready (loading its snapshots)",
            (false, false) => "not ready",
        };
        let for_how_long = now.duration_since(self.since).unwrap_or(Duration::ZERO).as_secs();
        let mut line = format!("{realm}: {state} since {} ({for_how_long} s)", rfc3339(self.since));
        if let Some((at, cause)) = &self.last_error {
            line.push_str(&format!("; last upstream error at {}: {cause}", rfc3339(*at)));
        }
        line
    }
}

/// `2026-12-02T13:50:01Z` (whole seconds, UTC).
pub fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_since_when_and_why() {
        let health = Health::default();
        health.check_failed("zulip unreachable: cannot connect: tcp connect error".into());
        let report = health.report(false);
        let line = report.line("acme", report.since + Duration::from_secs(12));
        assert!(line.starts_with("acme: not ready since "), "{line}");
        assert!(line.contains(" (12 s); last upstream error at "), "{line}");
        assert!(line.ends_with(": zulip unreachable: cannot connect: tcp connect error"), "{line}");

        health.checked();
        let report = health.report(true);
        assert!(report.checked && report.since >= report.last_error.as_ref().unwrap().0);
        assert!(report.line("acme", report.since).starts_with("acme: ready since "));
        assert!(health.report(false).line("acme", SystemTime::now()).contains("loading its snapshots"));
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_683_401_250);
        assert_eq!(rfc3339(at), "2025-12-02T13:50:01Z");
    }
}
