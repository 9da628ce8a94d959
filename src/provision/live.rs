//! The per-realm live task: keeps the realm's snapshots current with Zulip's real-time events
//! API, so that a change made directly in Zulip shows in SCIM reads within a poll round-trip.
//!
//! ```text
//! loop {
//!     POST /register {event_types: [realm_user, user_group(, custom_profile_fields)]} -> queue_id, last_event_id
//!     GET /users + GET /user_groups (forced reloads; events that arrive meanwhile are replayed)
//!     mark live (snapshots stop expiring by TTL)
//!     loop { GET /events?queue_id&last_event_id (long-poll) -> apply each event in place }
//! }
//! ```
//!
//! Registering *before* loading means no change can fall between the snapshot and the queue:
//! anything Zulip did after the register is in the queue, and events are idempotent, so
//! re-applying one the snapshot already shows is harmless.
//!
//! - `BAD_EVENT_QUEUE_ID` (queue expired, Zulip restarted), pruned events, a gap in event ids,
//!   or an event the snapshot cannot place: register again and reload.
//! - Other failures (Zulip down, events unsupported, 5xx, 429): the realm is marked not live
//!   (snapshots expire by TTL again, so reads fall back to periodic reloads), and the task
//!   retries with bounded exponential backoff. A failed poll retries the same queue, which
//!   Zulip keeps for ten minutes, so a short outage costs no reload.
//! - Logs: `info` when events start flowing, `warn` once when they stop (with the cause);
//!   retries in between log at `debug`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use tracing::instrument::WithSubscriber;

use crate::directory::Applied;
use crate::error::{upstream_cause, Error, ErrorChain};
use crate::provision::Realm;
use zulip_client::types::{Event, RegisteredQueue};
use zulip_client::ZulipError;

/// The event types the sidecar follows.
pub const EVENT_TYPES: [&str; 2] = ["realm_user", "user_group"];

/// Followed too by a realm that stores `externalId` in a custom profile field, to notice the
/// field being deleted or renamed in Zulip.
pub const PROFILE_FIELD_EVENTS: &str = "custom_profile_fields";

/// Timing of the live task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOptions {
    /// Client-side limit of one blocking `GET /events`: above Zulip's heartbeat (~54 s).
    pub poll_timeout: Duration,
    /// First wait after a failure; doubled per consecutive failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Pause after a batch of events before polling again, so that a burst of changes (an
    /// IdP import: every write the sidecar makes comes back as an event) is fetched in a few
    /// polls, not one per change — each poll counts against the account's rate limit.
    pub batch_window: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            poll_timeout: Duration::from_secs(90),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            batch_window: Duration::from_millis(250),
        }
    }
}

/// What the live task has done so far, published through [`Realm::live_progress`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveProgress {
    /// The queue being followed.
    pub queue_id: Option<String>,
    /// The newest event applied from that queue (`-1` right after registering).
    pub last_event_id: i64,
    /// Events are flowing: the snapshots are current and do not expire by TTL.
    pub live: bool,
}

/// How one queue's session ended.
enum SessionEnd {
    Shutdown,
    /// Register again and reload; `progressed`: at least one poll succeeded first.
    Resync {
        reason: String,
        progressed: bool,
    },
    /// Could not register or load: back off, then try again.
    Failed(Failure),
}

/// Whether events flow, for logging transitions once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Starting,
    Live,
    Degraded,
}

/// Why events stopped: for the log (the whole chain) and for `/readyz` (no URL).
#[derive(Debug)]
struct Failure {
    log: String,
    public: String,
}

impl Failure {
    fn new<E: std::error::Error + PublicCause>(what: &str, e: &E) -> Failure {
        Failure { log: format!("{what}: {}", ErrorChain(e)), public: format!("{what}: {}", e.public_cause()) }
    }
}

/// The cause of a failure in words that name no URL.
trait PublicCause {
    fn public_cause(&self) -> String;
}

impl PublicCause for ZulipError {
    fn public_cause(&self) -> String {
        upstream_cause(self)
    }
}

impl PublicCause for Error {
    fn public_cause(&self) -> String {
        match self {
            Error::Upstream { source, .. } => upstream_cause(source),
            other => other.to_string(),
        }
    }
}

struct Task {
    realm: Arc<Realm>,
    shutdown: watch::Receiver<bool>,
    options: LiveOptions,
    health: Health,
    backoff: Duration,
}

/// Starts one live task per realm; they stop when `stop` turns true (or its sender is
/// dropped). Join the handles to wait for them (they delete their event queues).
pub fn spawn_all(
    realms: &[Arc<Realm>],
    stop: &watch::Receiver<bool>,
    options: LiveOptions,
) -> Vec<tokio::task::JoinHandle<()>> {
    realms
        .iter()
        .map(|realm| tokio::spawn(run(realm.clone(), stop.clone(), options).with_current_subscriber()))
        .collect()
}

/// Follows the realm's events until `shutdown` turns true (or its sender is dropped).
pub async fn run(realm: Arc<Realm>, shutdown: watch::Receiver<bool>, options: LiveOptions) {
    realm.mark_live_task_started();
    let backoff = options.min_backoff;
    let mut task = Task { realm, shutdown, options, health: Health::Starting, backoff };
    loop {
        match task.session().await {
            SessionEnd::Shutdown => break,
            SessionEnd::Resync { reason, progressed } => {
                tracing::info!(realm = %task.realm.name(), reason = %reason, "re-registering the event queue");
                task.realm.set_live(None, false);
                if !progressed && !task.pause().await {
                    break;
                }
            }
            SessionEnd::Failed(cause) => {
                task.realm.set_live(None, false);
                task.degraded(&cause);
                // Keep the realm serving (and ready) on TTL snapshots meanwhile.
                if let Err(e) = task.realm.user_index().await {
                    tracing::debug!(realm = %task.realm.name(), error = %ErrorChain(&e), "users snapshot unavailable");
                }
                if let Err(e) = task.realm.group_index().await {
                    tracing::debug!(realm = %task.realm.name(), error = %ErrorChain(&e), "groups snapshot unavailable");
                }
                if !task.pause().await {
                    break;
                }
            }
        }
    }
    task.realm.set_live(None, false);
    tracing::debug!(realm = %task.realm.name(), "live updates stopped");
}

// === impl Task ===

impl Task {
    /// Register, load, then follow one queue.
    async fn session(&mut self) -> SessionEnd {
        let client = self.realm.client.clone();
        let mut event_types = EVENT_TYPES.to_vec();
        if self.realm.uses_profile_fields() {
            event_types.push(PROFILE_FIELD_EVENTS);
        }
        let queue = match self.cancellable(client.register_event_queue(&event_types)).await {
            None => return SessionEnd::Shutdown,
            Some(Ok(queue)) => queue,
            Some(Err(e)) => return SessionEnd::Failed(Failure::new("cannot register an event queue", &e)),
        };
        let realm = self.realm.clone();
        match self.cancellable(realm.reload_snapshots()).await {
            None => {
                self.delete_queue(&queue).await;
                return SessionEnd::Shutdown;
            }
            Some(Err(e)) => {
                self.delete_queue(&queue).await;
                return SessionEnd::Failed(Failure::new("cannot load the snapshots", &e));
            }
            Some(Ok(())) => {}
        }
        let end = self.follow(&queue).await;
        if matches!(end, SessionEnd::Shutdown) {
            self.delete_queue(&queue).await;
        }
        end
    }

    /// Long-polls `queue` and applies its events until it must be replaced.
    async fn follow(&mut self, queue: &RegisteredQueue) -> SessionEnd {
        let mut last = queue.last_event_id;
        let mut progressed = false;
        self.realm.set_live(Some((&queue.queue_id, last)), true);
        self.healthy();
        loop {
            let client = self.realm.client.clone();
            let poll = client.get_events(&queue.queue_id, last, false, self.options.poll_timeout);
            let events = match self.cancellable(poll).await {
                None => return SessionEnd::Shutdown,
                Some(Ok(events)) => events,
                // Unknown queue, or a 400 such as "An event newer than N has already been
                // pruned!": this queue cannot give us what we need.
                Some(Err(e)) if e.is_bad_event_queue() || e.is_bad_request() => {
                    return SessionEnd::Resync { reason: e.to_string(), progressed };
                }
                Some(Err(e)) => {
                    // The queue survives short outages: retry it, on TTL snapshots meanwhile.
                    self.realm.set_live(Some((&queue.queue_id, last)), false);
                    self.degraded(&Failure::new("polling events failed", &e));
                    if !self.pause().await {
                        return SessionEnd::Shutdown;
                    }
                    continue;
                }
            };
            if let Err(reason) = self.apply_events(&events, &mut last) {
                return SessionEnd::Resync { reason, progressed };
            }
            progressed = true;
            self.backoff = self.options.min_backoff;
            self.realm.set_live(Some((&queue.queue_id, last)), true);
            self.healthy();
            let changes = events.iter().any(|e| !matches!(e, Event::Heartbeat { .. }));
            if changes
                && !self.options.batch_window.is_zero()
                && self.cancellable(tokio::time::sleep(self.options.batch_window)).await.is_none()
            {
                return SessionEnd::Shutdown;
            }
        }
    }

    /// Applies one poll's events in order, advancing `last`; `Err` with the reason when the
    /// queue must be replaced (an event without id, a gap in ids, a changed profile field,
    /// or an event the snapshot cannot place).
    fn apply_events(&self, events: &[Event], last: &mut i64) -> Result<(), String> {
        for event in events {
            let Some(id) = event.id() else {
                return Err("an event without id".into());
            };
            if id <= *last {
                continue;
            }
            if id > *last + 1 {
                return Err(format!("event ids jumped from {last} to {id}"));
            }
            if let Event::CustomProfileFields { fields, .. } = event {
                if let Some(reason) = self.realm.profile_fields_changed(fields) {
                    return Err(reason);
                }
            }
            if let Applied::Inconsistent(reason) = self.realm.dir.apply_event(event) {
                return Err(reason);
            }
            if !matches!(event, Event::Heartbeat { .. }) {
                tracing::debug!(realm = %self.realm.name(), event_id = id, "applied event");
            }
            *last = id;
        }
        Ok(())
    }

    /// Runs `fut` unless shutdown comes first (`None`).
    async fn cancellable<T>(&mut self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|stop| *stop) => None,
            out = fut => Some(out),
        }
    }

    /// Sleeps the current backoff and doubles it; `false` on shutdown.
    async fn pause(&mut self) -> bool {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.options.max_backoff);
        self.cancellable(tokio::time::sleep(wait)).await.is_some()
    }

    async fn delete_queue(&self, queue: &RegisteredQueue) {
        let delete = self.realm.client.delete_event_queue(&queue.queue_id);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), delete).await {
            tracing::debug!(realm = %self.realm.name(), error = %ErrorChain(&e), "could not delete the event queue");
        }
    }

    fn healthy(&mut self) {
        if self.health != Health::Live {
            tracing::info!(realm = %self.realm.name(), "live updates from zulip's events api");
            self.health = Health::Live;
        }
    }

    /// Events stopped: says why. When Zulip itself is unreachable the readiness and request
    /// lines say so too; the line does not blame the events API for an outage of all of Zulip.
    fn degraded(&mut self, failure: &Failure) {
        self.realm.health.failed(format!("live updates: {}", failure.public));
        let cause = failure.log.as_str();
        if self.health == Health::Degraded {
            tracing::debug!(realm = %self.realm.name(), cause, retry_in_ms = self.backoff.as_millis() as u64, "live updates still unavailable");
        } else {
            tracing::warn!(realm = %self.realm.name(), cause, retry_in_ms = self.backoff.as_millis() as u64, "live updates stopped: snapshots refresh by ttl until they resume");
            self.health = Health::Degraded;
        }
    }
}
