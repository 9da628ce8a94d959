//! Connection slots that a flood cannot starve, and each connection's idle deadline.
//!
//! Every accepted connection takes a slot at once: the accept loop never waits for one.
//! A connection is *anonymous* until one of its requests carries a valid bearer token
//! ([`ConnInfo::authenticated`]); then it is *authenticated* for the rest of its life.
//! When all `max_connections` slots are taken, a newcomer takes the slot of the oldest
//! anonymous connection that has no request in flight (a half-open or idle one), which is
//! closed; only when there is none (every slot authenticated or busy) is the newcomer
//! answered 503 with `Retry-After` and closed. So a flood of anonymous connections can
//! only evict other anonymous connections, never an IdP's authenticated one, and an IdP's
//! new connection always gets in: it is the newest, and becomes authenticated with its
//! first request.
//!
//! Why evict rather than refuse: refusing newcomers when full is exactly what a flood
//! wants (the IdP's next connection is refused too). Evicting the oldest idle anonymous
//! connection costs a legitimate client nothing it would not lose to the header timeout.
//!
//! Deadlines (enforced by the connection task, see `server::serve_connection`): with no
//! request in flight, an anonymous connection is closed `header_read_timeout` after it was
//! opened or its last request ended (this also covers HTTP/2 and the protocol detection,
//! which hyper's own HTTP/1.1 header timeout does not see), an authenticated one after
//! `idle_timeout`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::telemetry::Metrics;

/// The connection table: `max` slots, anonymous connections in accept order.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// By id, that is oldest first.
    anonymous: BTreeMap<u64, Arc<ConnState>>,
    authenticated: usize,
}

/// A newcomer found every slot authenticated or busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    state: Arc<ConnState>,
}

/// What the request handler may know and do about its connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo(Arc<ConnState>);

/// One connection's state, shared by its task, its requests and the slot table.
#[derive(Debug)]
pub struct ConnState {
    id: u64,
    peer: SocketAddr,
    in_flight: AtomicUsize,
    authenticated: AtomicBool,
    evicted: AtomicBool,
    close_requested: AtomicBool,
    /// When the last request ended (or the connection was accepted).
    last_done: Mutex<Instant>,
    /// Wakes the connection task: a request began or ended, eviction, close request.
    changed: Notify,
    slots: Weak<Slots>,
}

/// Counts one request in flight on its connection until dropped.
#[derive(Debug)]
pub struct Busy(Arc<ConnState>);

/// What the connection task should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A request is in flight: wait for a change.
    Wait,
    /// Idle: close at this instant unless something changes before.
    CloseAt(Instant),
    /// Evicted for a newcomer: close now.
    Evicted,
    /// A response asked for the connection to close: shut it down gracefully.
    Shutdown,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl Slots ===

impl Slots {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Slots> {
        Arc::new(Slots { max: max.max(1), inner: Mutex::new(Inner::default()), metrics })
    }

    /// A slot for a connection just accepted from `peer`, evicting the oldest idle anonymous
    /// connection if every slot is taken; [`Full`] when none can be evicted.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Slot, Full> {
        let mut inner = lock(&self.inner);
        if inner.anonymous.len() + inner.authenticated >= self.max {
            let victim = inner.anonymous.iter().find(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0);
            let Some(id) = victim.map(|(id, _)| *id) else {
                drop(inner);
                self.metrics.connection_closed("refused_full");
                return Err(Full);
            };
            if let Some(victim) = inner.anonymous.remove(&id) {
                victim.evicted.store(true, Ordering::Release);
                victim.changed.notify_one();
                self.metrics.connection_closed("evicted");
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState {
            id,
            peer,
            in_flight: AtomicUsize::new(0),
            authenticated: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            close_requested: AtomicBool::new(false),
            last_done: Mutex::new(Instant::now()),
            changed: Notify::new(),
            slots: Arc::downgrade(self),
        });
        inner.anonymous.insert(id, state.clone());
        self.publish(&inner);
        Ok(Slot { state })
    }

    /// Anonymous and authenticated connections holding a slot.
    pub fn counts(&self) -> (usize, usize) {
        let inner = lock(&self.inner);
        (inner.anonymous.len(), inner.authenticated)
    }

    fn authenticate(&self, state: &ConnState) {
        let mut inner = lock(&self.inner);
        if inner.anonymous.remove(&state.id).is_some() {
            inner.authenticated += 1;
            state.authenticated.store(true, Ordering::Release);
            self.publish(&inner);
        }
    }

    fn release(&self, state: &ConnState) {
        let mut inner = lock(&self.inner);
        if inner.anonymous.remove(&state.id).is_none() && state.authenticated.load(Ordering::Acquire) {
            inner.authenticated = inner.authenticated.saturating_sub(1);
        }
        self.publish(&inner);
    }

    fn publish(&self, inner: &Inner) {
        self.metrics.set_connections(inner.anonymous.len(), inner.authenticated);
    }
}

// === impl Slot ===

impl Slot {
    pub fn info(&self) -> ConnInfo {
        ConnInfo(self.state.clone())
    }

    pub fn state(&self) -> &ConnState {
        &self.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.state.slots.upgrade() {
            slots.release(&self.state);
        }
    }
}

// === impl ConnState ===

impl ConnState {
    /// What to do now, given the timeouts.
    pub fn next(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Next {
        if self.evicted.load(Ordering::Acquire) {
            return Next::Evicted;
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Next::Wait;
        }
        if self.close_requested.load(Ordering::Acquire) {
            return Next::Shutdown;
        }
        let limit =
            if self.authenticated.load(Ordering::Acquire) { idle_timeout } else { header_read_timeout };
        match lock(&self.last_done).checked_add(limit) {
            Some(at) => Next::CloseAt(at),
            None => Next::Wait,
        }
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Resolves when a request begins or ends, or the connection is evicted or asked to close.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// Marks one request in flight (until the guard drops).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *lock(&self.0.last_done) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

// === impl ConnInfo ===

impl ConnInfo {
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    pub fn peer_ip(&self) -> IpAddr {
        self.0.peer.ip()
    }

    /// A request on this connection carried a valid token: the connection leaves the
    /// anonymous pool (it can no longer be evicted, and gets the idle timeout).
    pub fn authenticated(&self) {
        if !self.0.is_authenticated() {
            if let Some(slots) = self.0.slots.upgrade() {
                slots.authenticate(&self.0);
            }
        }
    }

    /// Close the connection once no request is in flight (HTTP/2: GOAWAY).
    pub fn close_after_response(&self) {
        self.0.close_requested.store(true, Ordering::Release);
        self.0.changed.notify_one();
    }

    pub(crate) fn state(&self) -> &Arc<ConnState> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40_000))
    }

    const HEADER: Duration = Duration::from_secs(1);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_full_table_evicts_the_oldest_idle_anonymous_connection() {
        let slots = Slots::new(2, Arc::new(Metrics::new()));
        let first = slots.admit(peer()).unwrap();
        let second = slots.admit(peer()).unwrap();
        let busy = second.state.begin();
        let third = slots.admit(peer()).unwrap();
        assert_eq!(first.state.next(HEADER, IDLE), Next::Evicted, "oldest idle one goes");
        assert!(matches!(second.state.next(HEADER, IDLE), Next::Wait), "busy: kept");
        assert_eq!(slots.counts(), (2, 0));
        // Now one is busy and one idle: the idle one (third) goes next.
        let fourth = slots.admit(peer()).unwrap();
        assert_eq!(third.state.next(HEADER, IDLE), Next::Evicted);
        drop(busy);
        drop((first, third));
        assert_eq!(slots.counts(), (2, 0), "evicted slots were already freed");
        drop((second, fourth));
        assert_eq!(slots.counts(), (0, 0));
    }

    #[tokio::test]
    async fn authenticated_and_busy_connections_are_never_evicted() {
        let slots = Slots::new(2, Arc::new(Metrics::new()));
        let idp = slots.admit(peer()).unwrap();
        idp.info().authenticated();
        let busy = slots.admit(peer()).unwrap();
        let _request = busy.state.begin();
        assert_eq!(slots.admit(peer()).map(drop), Err(Full));
        assert_eq!(slots.counts(), (1, 1));
        assert!(matches!(idp.state.next(HEADER, IDLE), Next::CloseAt(_)));
        drop(idp);
        assert_eq!(slots.counts(), (1, 0), "an authenticated slot is freed on close");
        let _newcomer = slots.admit(peer()).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn anonymous_connections_get_the_header_timeout_authenticated_the_idle_timeout() {
        let slots = Slots::new(4, Arc::new(Metrics::new()));
        let slot = slots.admit(peer()).unwrap();
        let start = Instant::now();
        assert_eq!(slot.state.next(HEADER, IDLE), Next::CloseAt(start + HEADER));
        let busy = slot.state.begin();
        slot.info().authenticated();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(slot.state.next(HEADER, IDLE), Next::Wait);
        drop(busy);
        assert_eq!(slot.state.next(HEADER, IDLE), Next::CloseAt(start + Duration::from_secs(5) + IDLE));
        slot.info().close_after_response();
        assert_eq!(slot.state.next(HEADER, IDLE), Next::Shutdown);
    }
}
