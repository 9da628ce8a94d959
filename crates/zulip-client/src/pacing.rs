//! Upstream policy for one realm: rate-limit pacing, retry rules and the deadline.
//!
//! Pure decisions (unit-tested with a fake clock: every function takes `now`) plus
//! [`Pacer`], the small gate [`ZulipClient`](super::ZulipClient) asks before each request.
//!
//! # Pacing (zulip-rest-api.md §4; transcripts README, fact 2)
//! Zulip allows each account 200 requests/minute and 2000/hour by default and reports the
//! strictest bucket in `X-RateLimit-Limit/Remaining/Reset` (`Reset`: absolute UNIX seconds
//! when every limit is clear). From the last report, [`delay`] decides:
//! - at least 10 % of the limit left (or the reset already passed): no wait;
//! - fewer left: spread what remains over the time to the reset, one call every
//!   `(reset - now) / remaining` ([`Pacer`] chains the slots, so concurrent callers do not
//!   all leave at once);
//! - nothing left: wait until the reset.
//!
//! Calls in flight count against the budget: a report says what was left when Zulip answered
//! one call, and every call sent but not yet answered will spend one more, so the pacer
//! decides from `remaining - in flight`. Concurrent writes therefore slow down as the budget
//! runs low instead of all leaving on the same stale report (a 429 storm).
//!
//! `Reset` is read against Zulip's own clock (its `Date` header) and turned into a local
//! monotonic instant on receipt, so a skewed clock on either side does not stall or
//! flood the realm; a reset more than [`MAX_RESET_IN`] away is treated as that far.
//!
//! # Retries
//! [`retry_for`] says whether a failed attempt may be sent again, from the call's
//! [`Idempotency`] (stated by each client method, never guessed from the HTTP method).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::ZulipError;
use super::types::RateLimitState;

/// Below this share of the limit (1/10), calls are spread over the time to the reset.
const LOW_BUDGET_DIVISOR: u64 = 10;

/// The longest time to a reset that is believed (Zulip's longest default window).
pub const MAX_RESET_IN: Duration = Duration::from_secs(3600);

/// Longest single backoff between fault retries (before jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How one realm's client treats its upstream: deadline, concurrency and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// Total time one client call may spend, queueing, pacing waits, retries and backoff
    /// included. A wait that would not fit is not started: the call fails at once.
    pub deadline: Duration,
    /// Calls in flight to this realm's Zulip at once (the long-poll `get_events` excluded).
    pub max_in_flight: usize,
    /// First backoff of a fault retry; doubles per attempt, full jitter.
    pub retry_base: Duration,
    /// Retries after the first attempt (429s and faults alike).
    pub max_retries: u32,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        UpstreamPolicy {
            deadline: Duration::from_secs(25),
            max_in_flight: 8,
            retry_base: Duration::from_millis(100),
            max_retries: 4,
        }
    }
}

impl UpstreamPolicy {
    /// Time a wait must leave before the deadline for the request itself to be answered:
    /// sleeping until the last millisecond only to time out would turn a clean "retry
    /// later" into an unknown outcome. 1 s, or a fifth of a (test-sized) deadline.
    pub fn answer_reserve(&self) -> Duration {
        Duration::from_secs(1).min(self.deadline / 5)
    }
}

/// Whether sending a call twice leaves Zulip as sending it once. Each client method
/// states its own (the table is in `client.rs`'s module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, and writes that set values (`PATCH`, reactivate): retried after any
    /// transient fault.
    Idempotent,
    /// Creates, deactivations and member diffs: retried only when Zulip certainly did
    /// nothing (a 429, or a connection that was never made). Otherwise the outcome is
    /// unknown and the caller resolves it.
    NotIdempotent,
}

/// Why, and how soon, a failed attempt is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// 429: Zulip did nothing; send again once `Retry-After` has passed.
    RateLimited(Duration),
    /// A transient fault: back off (full jitter), but at least `at_least` (a 503's
    /// `Retry-After`).
    Fault { reason: &'static str, at_least: Duration },
}

impl Retry {
    pub fn reason(&self) -> &'static str {
        match self {
            Retry::RateLimited(_) => "rate limited (429)",
            Retry::Fault { reason, .. } => reason,
        }
    }
}

/// Whether an attempt that failed with `error` may be sent again.
pub fn retry_for(idempotency: Idempotency, error: &ZulipError) -> Option<Retry> {
    let idempotent = idempotency == Idempotency::Idempotent;
    let fault = |reason| Retry::Fault { reason, at_least: Duration::ZERO };
    match error {
        ZulipError::Api { status: 429, retry_after, .. } => {
            Some(Retry::RateLimited(retry_after.unwrap_or(Duration::from_secs(1))))
        }
        // The connection was never made: nothing reached Zulip.
        ZulipError::Transport(e) if e.is_connect() => Some(fault("connect failed")),
        ZulipError::Transport(e) if idempotent && e.is_timeout() => Some(fault("timeout")),
        ZulipError::Transport(_) if idempotent => Some(fault("connection failed")),
        ZulipError::Api { status: status @ (502..=504), retry_after, .. } if idempotent => {
            Some(Retry::Fault {
                reason: gateway_reason(*status),
                at_least: retry_after.unwrap_or(Duration::ZERO),
            })
        }
        ZulipError::Decode { status, .. } if idempotent && (502..=504).contains(status) => {
            Some(fault(gateway_reason(*status)))
        }
        // A truncated or garbled success body (an HTML 404 page is deterministic: not retried).
        ZulipError::Decode { status, .. } if idempotent && (200..300).contains(status) => {
            Some(fault("undecodable body"))
        }
        ZulipError::Transport(_)
        | ZulipError::Api { .. }
        | ZulipError::Decode { .. }
        | ZulipError::Config(_)
        | ZulipError::Throttled { .. } => None,
    }
}

fn gateway_reason(status: u16) -> &'static str {
    match status {
        502 => "http 502",
        503 => "http 503",
        _ => "http 504",
    }
}

/// Full-jitter exponential backoff before retry number `attempt` (1-based): a uniform
/// draw (`unit` in `[0, 1)`) from `[0, min(base · 2^(attempt-1), MAX_BACKOFF)]`.
pub fn backoff(base: Duration, attempt: u32, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let ceiling = base.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// The rate-limit report of one response, anchored to the local monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub remaining: u32,
    /// When every limit is clear, on the local clock.
    pub reset_at: Instant,
}

impl Budget {
    /// Anchors `state` (received at `now`) to the local clock. `server_now` is Zulip's
    /// UNIX time when it answered (its `Date` header; else the local wall clock).
    pub fn from_report(state: RateLimitState, server_now: u64, now: Instant) -> Budget {
        let reset_in = Duration::from_secs(state.reset.saturating_sub(server_now));
        Budget { limit: state.limit, remaining: state.remaining, reset_at: now + reset_in.min(MAX_RESET_IN) }
    }
}

/// How long to wait between calls under `budget` at `now` (see the module doc).
pub fn delay(budget: &Budget, now: Instant) -> Duration {
    let to_reset = budget.reset_at.saturating_duration_since(now);
    if to_reset.is_zero() {
        return Duration::ZERO;
    }
    if budget.remaining == 0 {
        return to_reset;
    }
    if u64::from(budget.remaining) * LOW_BUDGET_DIVISOR >= u64::from(budget.limit) {
        return Duration::ZERO;
    }
    to_reset / budget.remaining
}

/// One realm's pacing gate: the last rate-limit report and the next free send slot.
///
/// Shared by a client's clones. std `Mutex`: it is only held to compute a slot, never
/// across `.await`.
///
/// A wait is decided from the last report, which is a pessimistic guess while the budget
/// is low (`Reset` is when *every* limit is clear, so a short window's budget returns long
/// before it). Every new report therefore wakes the calls that are waiting
/// ([`Pacer::next_report`]): one whose slot is still ahead leaves at once when the report
/// shows the budget plentiful again ([`Pacer::clear_to_send`]), and one that was refused a
/// slot within its deadline asks again.
#[derive(Debug, Default)]
pub struct Pacer {
    state: Mutex<PacerState>,
    /// Woken by every report ([`Pacer::observe`]).
    reported: Notify,
}

#[derive(Debug, Default)]
struct PacerState {
    /// The headers as Zulip sent them (for [`ZulipClient::rate_limit`](super::ZulipClient::rate_limit)).
    report: Option<RateLimitState>,
    /// When the request whose answer gave `report` was sent.
    report_sent: Option<Instant>,
    budget: Option<Budget>,
    /// While spreading a low budget: the earliest time the next call may leave.
    next_slot: Option<Instant>,
    /// After a 429: nobody sends before this.
    hold_until: Option<Instant>,
    /// Calls that reserved a send time and have not been answered yet.
    in_flight: u32,
    /// Calls that reserved a later send time and are waiting for it.
    waiting: u32,
}

/// One call counted in flight from the moment it is sent ([`InFlight::sending`]) until it is
/// answered (or dropped). A call still waiting for its slot is not counted: the slot chain
/// already spaces it.
#[derive(Debug)]
pub struct InFlight<'a> {
    pacer: &'a Pacer,
    counted: bool,
}

impl InFlight<'_> {
    /// The call leaves now: count it (once).
    pub fn sending(&mut self) {
        if !self.counted {
            let mut s = self.pacer.lock();
            s.in_flight += 1;
            s.waiting = s.waiting.saturating_sub(1);
            self.counted = true;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.pacer.lock();
        if self.counted {
            s.in_flight = s.in_flight.saturating_sub(1);
        } else {
            s.waiting = s.waiting.saturating_sub(1);
        }
    }
}

// === impl Pacer ===

impl Pacer {
    /// Records a response's `X-RateLimit-*` report for a request sent just now.
    pub fn observe(&self, state: RateLimitState, server_now: u64, now: Instant) {
        self.observe_sent(state, server_now, now, now);
    }

    /// Records the report of a request sent at `sent` and answered at `now`, and wakes the
    /// calls waiting for one. Zulip counts a request, and writes its report, when the
    /// request arrives: the answer to a request sent before the one that gave the current
    /// report (a long poll held for seconds) says less, and is ignored.
    pub fn observe_sent(&self, state: RateLimitState, server_now: u64, sent: Instant, now: Instant) {
        {
            let mut s = self.lock();
            if s.report_sent.is_some_and(|newest| sent < newest) {
                return;
            }
            s.report = Some(state);
            s.report_sent = Some(sent);
            s.budget = Some(Budget::from_report(state, server_now, now));
        }
        self.reported.notify_waiters();
    }

    /// Resolves at the next report ([`Pacer::observe`]). Take it *before* looking at the
    /// pacer: a report that arrives in between still wakes it.
    pub fn next_report(&self) -> tokio::sync::futures::Notified<'_> {
        self.reported.notified()
    }

    /// Whether a call may leave at once: no 429 hold, and the budget left after the calls
    /// in flight needs no spreading.
    pub fn clear_to_send(&self, now: Instant) -> bool {
        let s = self.lock();
        if s.hold_until.is_some_and(|hold| hold > now) {
            return false;
        }
        s.budget.as_ref().is_none_or(|budget| {
            let left = Budget { remaining: budget.remaining.saturating_sub(s.in_flight), ..*budget };
            delay(&left, now).is_zero()
        })
    }

    /// Whether a report is on its way: a call is on the wire or waiting for its slot (a
    /// call refused a slot may wait for it rather than be refused at once).
    pub fn report_expected(&self) -> bool {
        let s = self.lock();
        s.in_flight > 0 || s.waiting > 0
    }

    /// After a 429: holds every caller until `until`.
    pub fn hold(&self, until: Instant) {
        let mut s = self.lock();
        s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
    }

    /// The last report, as sent.
    pub fn report(&self) -> Option<RateLimitState> {
        self.lock().report
    }

    /// Reserves the caller's send time: `Ok((wait, guard))`, or `Err(wait)` (nothing
    /// reserved) when the wait would be longer than `max_wait`. Without a wait the call is
    /// counted in flight at once; otherwise [`InFlight::sending`] counts it once its wait is
    /// over. The guard uncounts it when dropped (after its answer).
    pub fn reserve_in_flight(
        &self,
        now: Instant,
        max_wait: Duration,
    ) -> Result<(Duration, InFlight<'_>), Duration> {
        let wait = self.reserve(now, max_wait)?;
        self.lock().waiting += 1;
        let mut guard = InFlight { pacer: self, counted: false };
        if wait.is_zero() {
            guard.sending();
        }
        Ok((wait, guard))
    }

    /// Calls counted in flight.
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// Reserves the caller's send time: `Ok(wait)` before sending, or `Err(wait)` (nothing
    /// reserved) when the wait would be longer than `max_wait`. The calls in flight
    /// ([`Pacer::reserve_in_flight`]) count as spent.
    pub fn reserve(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let mut s = self.lock();
        let mut not_before = now;
        if let Some(hold) = s.hold_until {
            if hold <= now {
                s.hold_until = None;
            }
            not_before = not_before.max(hold);
        }
        let in_flight = s.in_flight;
        let (gap, exhausted) = match &s.budget {
            Some(budget) => {
                let left = Budget { remaining: budget.remaining.saturating_sub(in_flight), ..*budget };
                (delay(&left, now), left.remaining == 0 && !delay(&left, now).is_zero())
            }
            None => (Duration::ZERO, false),
        };
        if exhausted {
            // The whole budget returns at the reset: everyone may leave then.
            not_before = not_before.max(now + gap);
        }
        let slot = if gap.is_zero() || exhausted {
            s.next_slot = None;
            not_before
        } else {
            not_before.max(s.next_slot.unwrap_or(now))
        };
        let wait = slot.saturating_duration_since(now);
        if wait > max_wait {
            return Err(wait);
        }
        if !gap.is_zero() && !exhausted {
            s.next_slot = Some(slot + gap);
        }
        Ok(wait)
    }

    /// How long a call reserving its slot at `now` would wait (nothing is reserved).
    pub fn wait_at(&self, now: Instant) -> Duration {
        let s = self.lock();
        let mut not_before = s.hold_until.map_or(now, |hold| hold.max(now));
        let (gap, exhausted) = match &s.budget {
            Some(budget) => (delay(budget, now), budget.remaining == 0),
            None => (Duration::ZERO, false),
        };
        if exhausted {
            not_before = not_before.max(now + gap);
        } else if !gap.is_zero() {
            not_before = not_before.max(s.next_slot.unwrap_or(now));
        }
        not_before.saturating_duration_since(now)
    }

    /// How long until `calls` calls in a row could all have left, from the last report:
    /// an operation that must not stop half-way (a create and its follow-up) asks before its
    /// first call. Calls beyond the remaining budget wait for the reset; a low budget spreads
    /// them one `delay` apart.
    pub fn wait_for_calls(&self, now: Instant, calls: u32) -> Duration {
        let s = self.lock();
        let held = s.hold_until.map_or(Duration::ZERO, |h| h.saturating_duration_since(now));
        let Some(budget) = &s.budget else {
            return held;
        };
        let to_reset = budget.reset_at.saturating_duration_since(now);
        if to_reset.is_zero() {
            return held;
        }
        if budget.remaining < calls {
            return held.max(to_reset);
        }
        let spread = delay(budget, now).saturating_mul(calls.saturating_sub(1));
        held + spread
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PacerState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn budget(t0: Instant, limit: u32, remaining: u32, reset_in: Duration) -> Budget {
        Budget { limit, remaining, reset_at: t0 + reset_in }
    }

    #[test]
    fn delay_table() {
        let t0 = Instant::now();
        // (limit, remaining, reset in, now offset, expected wait)
        let rows: &[(u32, u32, Duration, Duration, Duration)] = &[
            // plenty left: no wait, however far the reset
            (200, 199, S(60), S(0), S(0)),
            (200, 20, S(60), S(0), S(0)), // exactly 10 %: still plenty
            (100_000, 99_991, S(3600), S(0), S(0)),
            // low: spread the rest over the time to the reset
            (200, 19, S(57), S(0), S(3)),
            (200, 10, S(60), S(0), S(6)),
            (200, 1, S(60), S(0), S(60)),
            (200, 10, S(60), S(50), S(1)), // 10 s left, 10 calls
            // none left: until the reset
            (200, 0, S(50), S(0), S(50)),
            (200, 0, S(50), S(20), S(30)),
            // reset passed: the report is stale, no wait
            (200, 0, S(50), S(50), S(0)),
            (200, 3, S(50), S(51), S(0)),
            // a zero limit (nonsense) never divides by zero
            (0, 0, S(5), S(0), S(5)),
        ];
        for &(limit, remaining, reset_in, at, want) in rows {
            let b = budget(t0, limit, remaining, reset_in);
            assert_eq!(
                delay(&b, t0 + at),
                want,
                "limit {limit} remaining {remaining} reset in {reset_in:?} at +{at:?}"
            );
        }
    }

    #[test]
    fn reset_is_read_against_zulips_clock_and_bounded() {
        let t0 = Instant::now();
        let state = |reset| RateLimitState { limit: 200, remaining: 0, reset };
        // Zulip's clock says 1000; reset at 1042 → 42 s from receipt, whatever our clock says.
        assert_eq!(Budget::from_report(state(1042), 1000, t0).reset_at, t0 + S(42));
        // A reset in the past (for Zulip) is now.
        assert_eq!(Budget::from_report(state(900), 1000, t0).reset_at, t0);
        // A reset years away (a broken clock) is believed only up to an hour.
        assert_eq!(Budget::from_report(state(u64::MAX), 1000, t0).reset_at, t0 + MAX_RESET_IN);
    }

    #[test]
    fn no_report_no_wait() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(t0, S(0)), Ok(S(0)));
        assert_eq!(pacer.report(), None);
    }

    #[test]
    fn a_low_budget_gives_concurrent_callers_successive_slots() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        // 5 left of 200, reset in 10 s (Zulip's clock = ours here): one call every 2 s.
        let report = RateLimitState { limit: 200, remaining: 5, reset: 1010 };
        pacer.observe(report, 1000, t0);
        assert_eq!(pacer.report(), Some(report));
        assert_eq!(pacer.wait_at(t0), S(0));
        assert_eq!(pacer.reserve(t0, S(25)), Ok(S(0)));
        assert_eq!(pacer.reserve(t0, S(25)), Ok(S(2)));
        assert_eq!(pacer.wait_at(t0), S(4), "peeking reserves nothing");
        assert_eq!(pacer.reserve(t0, S(25)), Ok(S(4)));
        // A wait beyond the caller's budget reserves nothing...
        assert_eq!(pacer.reserve(t0, S(5)), Err(S(6)));
        // ...so the next caller gets that slot.
        assert_eq!(pacer.reserve(t0, S(25)), Ok(S(6)));
        // A sequential caller arriving later waits only for the rest of its slot.
        assert_eq!(pacer.reserve(t0 + MS(7500), S(25)), Ok(MS(500)));
    }

    #[test]
    fn plenty_left_clears_the_slot_chain() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        let report = |remaining| RateLimitState { limit: 200, remaining, reset: 1060 };
        pacer.observe(report(2), 1000, t0);
        assert_eq!(pacer.reserve(t0, S(60)), Ok(S(0)));
        assert_eq!(pacer.reserve(t0, S(60)), Ok(S(30)));
        pacer.observe(report(150), 1000, t0);
        assert_eq!(pacer.reserve(t0, S(60)), Ok(S(0)));
        assert_eq!(pacer.reserve(t0, S(60)), Ok(S(0)));
    }

    #[test]
    fn an_exhausted_budget_holds_everyone_until_the_reset() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        pacer.observe(RateLimitState { limit: 200, remaining: 0, reset: 1020 }, 1000, t0);
        // Everyone waits for the reset, none longer (the whole budget returns then).
        assert_eq!(pacer.wait_at(t0 + S(5)), S(15));
        assert_eq!(pacer.reserve(t0, S(25)), Ok(S(20)));
        assert_eq!(pacer.reserve(t0, S(25)), Ok(S(20)));
        assert_eq!(pacer.reserve(t0 + S(5), S(25)), Ok(S(15)));
        // Beyond the deadline: refused, with the wait to report as Retry-After.
        assert_eq!(pacer.reserve(t0, S(10)), Err(S(20)));
        assert_eq!(pacer.reserve(t0 + S(20), S(0)), Ok(S(0)));
    }

    #[test]
    fn calls_in_flight_count_as_spent() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        // 24 of 200 left: plenty (>= 10 %) for one caller...
        pacer.observe(RateLimitState { limit: 200, remaining: 24, reset: 1040 }, 1000, t0);
        let mut guards = Vec::new();
        for _ in 0..4 {
            let (wait, guard) = pacer.reserve_in_flight(t0, S(60)).unwrap();
            assert_eq!(wait, S(0));
            guards.push(guard);
        }
        assert_eq!(pacer.in_flight(), 4);
        // ...and with 4 unanswered calls, 20 are really left: still plenty.
        let (wait, fifth) = pacer.reserve_in_flight(t0, S(60)).unwrap();
        assert_eq!(wait, S(0));
        // With 5, 19 are left (< 10 %): calls are spread, one every 40 s / 19.
        let (wait, _sixth) = pacer.reserve_in_flight(t0, S(60)).unwrap();
        assert_eq!(wait, S(0));
        let (wait, _seventh) = pacer.reserve_in_flight(t0, S(60)).unwrap();
        assert!(wait > S(2) && wait < S(3), "spread once in-flight calls eat the margin: {wait:?}");
        drop(fifth);
        drop(guards);
        // The seventh still waits for its slot: not on the wire, not counted.
        assert_eq!(pacer.in_flight(), 1);
        // As many in flight as left: wait for the reset rather than provoke 429s.
        let p = Pacer::default();
        p.observe(RateLimitState { limit: 200, remaining: 2, reset: 1030 }, 1000, t0);
        let (_, _a) = p.reserve_in_flight(t0, S(60)).unwrap();
        let (wait, mut b) = p.reserve_in_flight(t0, S(60)).unwrap();
        assert_eq!(wait, S(15), "2 left over 30 s: one every 15 s");
        b.sending();
        b.sending(); // counted once
        assert_eq!(p.in_flight(), 2);
        let p2 = Pacer::default();
        p2.observe(RateLimitState { limit: 200, remaining: 2, reset: 1030 }, 1000, t0);
        p2.lock().in_flight = 2;
        assert_eq!(p2.reserve(t0, S(60)), Ok(S(30)));
    }

    #[tokio::test]
    async fn a_report_wakes_the_waiting_calls_and_says_whether_they_may_leave() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        // 5 of 200 left for 10 s: spread, one call every 2 s.
        pacer.observe(RateLimitState { limit: 200, remaining: 5, reset: 1010 }, 1000, t0);
        assert!(!pacer.report_expected(), "nobody on the wire or waiting");
        let (wait, first) = pacer.reserve_in_flight(t0, S(25)).unwrap();
        assert_eq!(wait, S(0));
        let (wait, mut second) = pacer.reserve_in_flight(t0, S(25)).unwrap();
        assert_eq!(wait, S(2));
        assert!(pacer.report_expected());
        assert!(!pacer.clear_to_send(t0), "the budget is low: the second waits for its slot");
        // The next report wakes whoever waits for it, taken before it came.
        let report = pacer.next_report();
        pacer.observe(RateLimitState { limit: 200, remaining: 150, reset: 1010 }, 1000, t0);
        tokio::time::timeout(MS(1), report).await.expect("woken by the report");
        assert!(pacer.clear_to_send(t0), "150 left: the second may leave now");
        second.sending();
        drop((first, second));
        assert!(!pacer.report_expected());
        // A 429's hold is never cut short by a report.
        pacer.hold(t0 + S(1));
        assert!(!pacer.clear_to_send(t0));
        assert!(pacer.clear_to_send(t0 + S(1)));
    }

    #[test]
    fn a_report_older_than_the_current_one_is_ignored() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        let low = RateLimitState { limit: 2000, remaining: 60, reset: 1360 };
        let back = RateLimitState { limit: 200, remaining: 199, reset: 1360 };
        // A write sent at +5 s finds the budget back...
        pacer.observe_sent(back, 1000, t0 + S(5), t0 + S(5));
        // ...then a long poll sent at +1 s is answered, with what Zulip counted at +1 s.
        pacer.observe_sent(low, 1000, t0 + S(1), t0 + S(5));
        assert_eq!(pacer.report(), Some(back));
        assert_eq!(pacer.reserve(t0 + S(5), S(0)), Ok(S(0)));
        // A later request's report is taken, even a lower one.
        pacer.observe_sent(low, 1000, t0 + S(6), t0 + S(6));
        assert_eq!(pacer.report(), Some(low));
    }

    #[test]
    fn a_429_holds_every_caller() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        pacer.hold(t0 + MS(300));
        pacer.hold(t0 + MS(100)); // an earlier hold never shortens a later one
        assert_eq!(pacer.wait_at(t0), MS(300));
        assert_eq!(pacer.reserve(t0, S(1)), Ok(MS(300)));
        assert_eq!(pacer.reserve(t0 + MS(200), S(1)), Ok(MS(100)));
        assert_eq!(pacer.reserve(t0 + MS(200), MS(50)), Err(MS(100)));
        assert_eq!(pacer.reserve(t0 + MS(300), S(0)), Ok(S(0)));
    }

    #[test]
    fn backoff_is_full_jitter_doubling_and_capped() {
        let base = MS(100);
        assert_eq!(backoff(base, 1, 0.0), S(0));
        assert_eq!(backoff(base, 1, 0.5), MS(50));
        assert_eq!(backoff(base, 2, 1.0), MS(200));
        assert_eq!(backoff(base, 3, 1.0), MS(400));
        assert_eq!(backoff(base, 4, 0.25), MS(200));
        assert_eq!(backoff(base, 30, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(base, u32::MAX, 1.0), MAX_BACKOFF);
    }

    fn api(status: u16, code: &str, retry_after: Option<Duration>) -> ZulipError {
        ZulipError::Api { status, code: code.into(), msg: String::new(), retry_after }
    }

    fn decode(status: u16) -> ZulipError {
        ZulipError::Decode { status, detail: "x".into() }
    }

    #[test]
    fn retry_table() {
        use Idempotency::{Idempotent as I, NotIdempotent as N};
        let rate_limited = api(429, "RATE_LIMIT_HIT", Some(MS(50)));
        let cases: Vec<(ZulipError, Option<&str>, Option<&str>)> = vec![
            // (error, reason when idempotent, reason when not)
            (rate_limited, Some("rate limited (429)"), Some("rate limited (429)")),
            (api(503, "BAD_REQUEST", None), Some("http 503"), None),
            (api(502, "BAD_REQUEST", None), Some("http 502"), None),
            (decode(504), Some("http 504"), None),
            (decode(200), Some("undecodable body"), None),
            (decode(404), None, None), // HTML 404: deterministic
            (api(500, "BAD_REQUEST", None), None, None),
            (api(400, "BAD_REQUEST", None), None, None),
            (api(401, "UNAUTHORIZED", None), None, None),
            (ZulipError::Config("x".into()), None, None),
            (ZulipError::Throttled { reason: "x", retry_after: S(1) }, None, None),
        ];
        for (error, idempotent, not) in &cases {
            assert_eq!(retry_for(I, error).map(|r| r.reason()), *idempotent, "{error:?}");
            assert_eq!(retry_for(N, error).map(|r| r.reason()), *not, "{error:?}");
        }
        // A 429 waits Retry-After (1 s when absent); a 503's Retry-After is a floor.
        assert_eq!(retry_for(N, &api(429, "RATE_LIMIT_HIT", Some(MS(50)))), Some(Retry::RateLimited(MS(50))));
        assert_eq!(retry_for(N, &api(429, "RATE_LIMIT_HIT", None)), Some(Retry::RateLimited(S(1))));
        assert_eq!(
            retry_for(I, &api(503, "BAD_REQUEST", Some(S(2)))),
            Some(Retry::Fault { reason: "http 503", at_least: S(2) })
        );
    }

    #[tokio::test]
    async fn transport_errors_retry_by_idempotency_and_connect_failures_always() {
        // A real connect failure: a port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let refused = reqwest::get(format!("http://{addr}/")).await.unwrap_err();
        let refused = ZulipError::Transport(refused);
        for idempotency in [Idempotency::Idempotent, Idempotency::NotIdempotent] {
            assert_eq!(retry_for(idempotency, &refused).map(|r| r.reason()), Some("connect failed"));
        }
    }
}
