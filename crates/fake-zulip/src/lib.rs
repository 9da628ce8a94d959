//! `FakeZulip`: an in-memory Zulip REST server at the HTTP level, for tests and `demo`.
//!
//! It follows `reference/zulip-rest-api.md` and the recorded transcripts, and never reuses the
//! client's wire types (a serialisation bug must not cancel itself out). Layout:
//! - [`model`]: users, groups, the realm's rules (system groups, e-mail visibility, rendering);
//! - [`wire`]: parameters (form body + query, JSON-typed values), envelopes, Basic auth;
//! - [`routes`]: path → route, allowed methods, dispatch; [`users`], [`groups`],
//!   [`channels`] and [`profile_fields`]: endpoints (channels: `GET /streams`,
//!   `GET /streams/{id}/members`, `GET /users/{id}/channels`,
//!   `DELETE /users/me/subscriptions`; `POST /users` subscribes the new user to the default
//!   channels; no channel events; custom profile fields: `/realm/profile_fields[/{id}]` and
//!   the `profile_data` of `PATCH /users/{id}`);
//! - [`ratelimit`]: per-account sliding windows with `X-RateLimit-*` headers;
//! - [`events`]: `POST /register`, `GET /events` (long-poll), `DELETE /events`, and the events
//!   that every change generates (REST writes and the out-of-band helpers alike).
//!
//! - [`timing`]: a seeded [`LatencyProfile`] for REST answers (`.latency(LatencyProfile::realistic())`)
//!   and [`EventDelivery`] for events (late, batched, a queue's order kept).
//!
//! A request is recorded first, then a queued delay or failure applies, then the profile's
//! latency (outside the lock: concurrent calls overlap), then the route is matched (HTML 404 /
//! 405 before auth), then Basic auth, Host, rate limit, and the endpoint.

mod channels;
mod events;
mod groups;
mod model;
mod profile_fields;
mod ratelimit;
mod routes;
mod timing;
mod users;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use events::EventQueueInfo;
pub use model::{FakeChannel, FakeGroup, FakeProfileField, FakeUser};
pub use ratelimit::RateLimitRules;
pub use timing::{EventDelivery, LatencyProfile, LatencyRule};

use events::{EventQueues, PollStart};
use model::{Realm, ADMIN, GUEST, MEMBER, MODERATOR, OWNER, VIS_NOBODY};
use ratelimit::{Decision, Limiter};
use routes::Route;
use wire::{ApiError, AuthHeader, Params, Resp};

/// Bodies above this are refused by closing the connection (Zulip's nginx would 413).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Percent-decoded, without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Form-encoded body fields (empty for any other content type).
    pub form: Vec<(String, String)>,
    /// The user part of a Basic `Authorization` header.
    pub auth_email: Option<String>,
    pub host: Option<String>,
}

/// A one-shot injected answer (see [`FakeZulip::fail_next`]).
#[derive(Debug, Clone)]
pub enum Failure {
    /// A Zulip error envelope with this status, code and message.
    Api { status: u16, code: String, msg: String },
    /// 429 `RATE_LIMIT_HIT` with a fractional `Retry-After`.
    RateLimited { retry_after_secs: f64 },
    /// An HTML 404 page.
    Html404,
    /// Any status with a non-JSON (`text/html`) body.
    NonJson { status: u16, body: String },
    /// 200 `application/json` with a cut-off body.
    TruncatedJson,
    /// Close the connection without answering.
    Reset,
    /// Never answer (until shutdown).
    Hang,
    /// Apply the request normally, then answer with the inner failure ("Zulip created the
    /// user, but the response was lost").
    AfterApply(Box<Failure>),
}

// === impl RecordedRequest ===

impl RecordedRequest {
    /// A parameter's value: the form body first, then the query string.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.form.iter().rev().chain(self.query.iter().rev()).find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && self.path == path
    }
}

/// Everything behind the lock. std `Mutex`, because it is never held across `.await`.
#[derive(Debug)]
struct Shared {
    realm: Realm,
    limiter: Limiter,
    log: Vec<RecordedRequest>,
    failures: HashMap<(String, String), VecDeque<Failure>>,
    delays: HashMap<(String, String), VecDeque<Duration>>,
    events: EventQueues,
    /// How long REST calls take ([`LatencyProfile`]; default: no added latency).
    latency: LatencyProfile,
    latency_rng: timing::Rng,
}

impl Shared {
    /// The latency the profile gives this request (zero without a matching rule).
    fn latency_for(&mut self, method: &str, path: &str) -> Duration {
        match self.latency.rule_for(method, path) {
            Some(rule) => {
                let (min, max) = (rule.min, rule.max);
                self.latency_rng.between(min, max)
            }
            None => Duration::ZERO,
        }
    }

    /// Logs `req` and takes what was injected for it ([`FakeZulip::delay_next`],
    /// [`FakeZulip::fail_next`]) and the latency it gets.
    fn record(&mut self, req: &Received) -> Injected {
        self.log.push(req.recorded());
        let key = (req.method.clone(), req.path.clone());
        let delay = self.delays.get_mut(&key).and_then(VecDeque::pop_front);
        let failure = self.failures.get_mut(&key).and_then(VecDeque::pop_front);
        let latency = self.latency_for(&req.method, &req.path);
        Injected { delay, failure, latency }
    }
}

// === impl Shared ===

impl Shared {
    /// Runs a change of the realm and queues the events it generates (`touched`: the users it
    /// may change besides new ones).
    fn change<R>(&mut self, touched: &[u64], f: impl FnOnce(&mut Realm) -> R) -> R {
        let before = self.events.capture(&self.realm, touched);
        let out = f(&mut self.realm);
        self.events.publish(&self.realm, before);
        out
    }
}

#[derive(Debug)]
struct Inner {
    shared: Mutex<Shared>,
    shutdown: watch::Sender<bool>,
}

// === impl Inner ===

impl Inner {
    /// Locks the state; a poisoned lock (a panicking test thread) is still usable.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake Zulip server; a cheap `Clone` handle.
#[derive(Debug, Clone)]
pub struct FakeZulip {
    inner: Arc<Inner>,
    addr: SocketAddr,
    base_url: url::Url,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// Seeds and starts a [`FakeZulip`].
#[derive(Debug)]
pub struct FakeZulipBuilder {
    realm: Realm,
    rules: Option<RateLimitRules>,
    heartbeat: Duration,
    latency: LatencyProfile,
    delivery: EventDelivery,
}

// === impl FakeZulip ===

impl FakeZulip {
    pub fn builder() -> FakeZulipBuilder {
        FakeZulipBuilder {
            realm: Realm::new(),
            rules: None,
            heartbeat: events::DEFAULT_HEARTBEAT,
            latency: LatencyProfile::default(),
            delivery: EventDelivery::default(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> url::Url {
        self.base_url.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().log.clone()
    }

    /// Drains the request log.
    pub fn take_requests(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut self.inner.lock().log)
    }

    pub fn clear_requests(&self) {
        self.inner.lock().log.clear();
    }

    /// Answers the next `method` request to exactly `path` (e.g. `/api/v1/users`, no query)
    /// with `failure`; queued failures for one (method, path) are used first in, first out.
    pub fn fail_next(&self, method: &str, path: &str, failure: Failure) {
        self.inner
            .lock()
            .failures
            .entry((method.to_ascii_uppercase(), path.to_string()))
            .or_default()
            .push_back(failure);
    }

    /// Waits `delay` before answering the next `method` request to `path` normally.
    pub fn delay_next(&self, method: &str, path: &str, delay: Duration) {
        self.inner
            .lock()
            .delays
            .entry((method.to_ascii_uppercase(), path.to_string()))
            .or_default()
            .push_back(delay);
    }

    /// Drops the failures and delays still queued for `method` `path` (a test that injected
    /// one on a call its operation did not reach takes it back).
    pub fn clear_failures(&self, method: &str, path: &str) {
        let key = (method.to_ascii_uppercase(), path.to_string());
        let mut shared = self.inner.lock();
        shared.failures.remove(&key);
        shared.delays.remove(&key);
    }

    pub fn user(&self, user_id: u64) -> Option<FakeUser> {
        self.inner.lock().realm.users.get(&user_id).cloned()
    }

    /// By delivery email, case-insensitively.
    pub fn user_by_email(&self, delivery_email: &str) -> Option<FakeUser> {
        self.inner.lock().realm.user_by_email(delivery_email).cloned()
    }

    pub fn users(&self) -> Vec<FakeUser> {
        self.inner.lock().realm.users.values().cloned().collect()
    }

    pub fn group(&self, id: u64) -> Option<FakeGroup> {
        self.inner.lock().realm.groups.get(&id).cloned()
    }

    /// By exact (case-sensitive) name, like Zulip's uniqueness rule.
    pub fn group_by_name(&self, name: &str) -> Option<FakeGroup> {
        self.inner.lock().realm.groups.values().find(|g| g.name == name).cloned()
    }

    pub fn groups(&self) -> Vec<FakeGroup> {
        self.inner.lock().realm.groups.values().cloned().collect()
    }

    /// Every channel, in id order.
    pub fn channels(&self) -> Vec<FakeChannel> {
        self.inner.lock().realm.channels.values().cloned().collect()
    }

    /// Names of the channels `user_id` is subscribed to, in channel-id order.
    pub fn user_channels(&self, user_id: u64) -> Vec<String> {
        self.inner.lock().realm.user_channel_names(user_id)
    }

    /// Adds (or replaces) a channel; assigns an id when `stream_id == 0`. No events.
    pub fn insert_channel(&self, channel: FakeChannel) -> u64 {
        self.inner.lock().realm.insert_channel(channel)
    }

    /// Adds (or replaces) a user "in Zulip's UI"; assigns an id when `user_id == 0`.
    /// Generates the events Zulip would (`realm_user`/`add`, role-group `add_members`).
    pub fn insert_user(&self, user: FakeUser) -> u64 {
        let touched: Vec<u64> = [user.user_id].into_iter().filter(|id| *id != 0).collect();
        self.inner.lock().change(&touched, |realm| realm.insert_user(user))
    }

    /// Changes a user out of band; system-group membership follows role changes. Generates
    /// one `realm_user`/`update` event per changed property, then the group events.
    pub fn modify_user(&self, user_id: u64, f: impl FnOnce(&mut FakeUser)) {
        self.inner.lock().change(&[user_id], |realm| {
            if let Some(u) = realm.users.get_mut(&user_id) {
                f(u);
                u.user_id = user_id;
            }
            realm.sync_system_groups();
        });
    }

    /// Adds (or replaces) a group; assigns an id when `id == 0` and fills default settings.
    pub fn insert_group(&self, group: FakeGroup) -> u64 {
        self.inner.lock().change(&[], |realm| realm.insert_group(group))
    }

    /// Changes a group out of band (name, description, members, `deactivated`, …) and
    /// generates the `user_group` events.
    pub fn modify_group(&self, group_id: u64, f: impl FnOnce(&mut FakeGroup)) {
        self.inner.lock().change(&[], |realm| {
            if let Some(g) = realm.groups.get_mut(&group_id) {
                f(g);
                g.id = group_id;
            }
            realm.sync_system_groups();
        });
    }

    /// The realm's custom profile fields, in listing order.
    pub fn profile_fields(&self) -> Vec<FakeProfileField> {
        self.inner.lock().realm.profile_fields_in_order().into_iter().cloned().collect()
    }

    /// Adds a field "in Zulip's UI" (no validation) and returns its id; sends
    /// `custom_profile_fields` like `POST /realm/profile_fields`.
    pub fn add_profile_field(&self, name: &str, field_type: u8) -> u64 {
        self.insert_profile_field(FakeProfileField::new(name, field_type))
    }

    /// Adds (or replaces) a field; id 0 = assign, order 0 = the id. Sends
    /// `custom_profile_fields`.
    pub fn insert_profile_field(&self, field: FakeProfileField) -> u64 {
        self.inner.lock().change(&[], |realm| realm.insert_profile_field(field))
    }

    /// Renames a field out of band (nothing happens for an unknown id); sends
    /// `custom_profile_fields`.
    pub fn rename_profile_field(&self, field_id: u64, name: &str) {
        self.inner.lock().change(&[], |realm| {
            if let Some(f) = realm.profile_fields.get_mut(&field_id) {
                f.name = name.to_string();
                realm.profile_fields_version += 1;
            }
        });
    }

    /// Deletes a field and every user's value for it; sends `custom_profile_fields` and,
    /// like Zulip, nothing per user.
    pub fn delete_profile_field(&self, field_id: u64) {
        self.inner.lock().change(&[], |realm| realm.remove_profile_field(field_id));
    }

    /// A user's value for a field, as stored (a person picker's is JSON text, `"[10,9]"`).
    pub fn profile_value(&self, user_id: u64, field_id: u64) -> Option<String> {
        self.inner.lock().realm.users.get(&user_id).and_then(|u| u.profile_data.get(&field_id).cloned())
    }

    /// Sets (`Some`) or clears (`None` or `Some("")`) a user's value as stored, without
    /// validation; nothing happens for an unknown user or field. Sends the `realm_user`
    /// update a REST change would.
    pub fn set_profile_value(&self, user_id: u64, field_id: u64, value: Option<String>) {
        self.inner.lock().change(&[user_id], |realm| {
            if !realm.profile_fields.contains_key(&field_id) {
                return;
            }
            if let Some(u) = realm.users.get_mut(&user_id) {
                match value.filter(|v| !v.is_empty()) {
                    Some(v) => u.profile_data.insert(field_id, v),
                    None => u.profile_data.remove(&field_id),
                };
            }
        });
    }

    /// Registered event queues with their newest event id (tests wait for a consumer to have
    /// applied that id).
    pub fn event_queues(&self) -> Vec<EventQueueInfo> {
        self.inner.lock().events.info()
    }

    /// Drops every event queue, as Zulip does after a restart or when a queue was not polled
    /// for ten minutes: polls answer `BAD_EVENT_QUEUE_ID`, pending ones at once.
    pub fn expire_event_queues(&self) {
        self.inner.lock().events.expire_all();
    }

    /// How long a blocking `GET /events` with nothing to deliver waits before it answers a
    /// `heartbeat` (default 50 s; Zulip's is about 54 s).
    pub fn set_event_heartbeat(&self, interval: Duration) {
        self.inner.lock().events.heartbeat = interval;
    }

    /// See [`FakeZulipBuilder::latency`].
    pub fn set_latency(&self, profile: LatencyProfile) {
        let mut shared = self.inner.lock();
        shared.latency_rng = timing::Rng::new(profile.seed);
        shared.latency = profile;
    }

    /// See [`FakeZulipBuilder::event_delivery`]; applies to events queued from now on.
    pub fn set_event_delivery(&self, delivery: EventDelivery) {
        self.inner.lock().events.delivery.set(delivery);
    }

    pub fn set_feature_level(&self, level: u32) {
        self.inner.lock().realm.feature_level = level;
    }

    /// `None` = no limiting (headers still sent, with a limit of 100000).
    pub fn set_rate_limit(&self, rules: Option<RateLimitRules>) {
        self.inner.lock().limiter.set_rules(rules);
    }

    /// Stops accepting, drops every open connection (hanging requests included) and waits
    /// for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

// === impl FakeZulipBuilder ===

impl FakeZulipBuilder {
    /// Default 442.
    pub fn feature_level(mut self, level: u32) -> Self {
        self.realm.feature_level = level;
        self
    }

    /// The realm's host for dummy emails `user<id>@<host>` (default `zulip.example.com`).
    pub fn realm_host(mut self, host: &str) -> Self {
        self.realm.realm_host = host.to_ascii_lowercase();
        self
    }

    /// Refuse a Host other than the realm host ("Account is not associated with this
    /// subdomain").
    pub fn enforce_host(mut self, yes: bool) -> Self {
        self.realm.enforce_host = yes;
        self
    }

    /// A human owner with `can_create_users` and `can_change_user_emails`.
    pub fn service_account(mut self, email: &str, api_key: &str) -> Self {
        let mut u = FakeUser::new(email, "SCIM Service Account").role(OWNER).api_key(api_key);
        u.can_create_users = true;
        u.can_change_user_emails = true;
        self.realm.insert_user(u);
        self
    }

    pub fn with_user(mut self, user: FakeUser) -> Self {
        // System groups are derived once in `start`, so seeding N users is O(N).
        self.realm.insert_user_unsynced(user);
        self
    }

    /// Adds a custom profile field (ids from 1, in call order); values go in
    /// [`FakeUser::profile_data`].
    pub fn with_profile_field(mut self, name: &str, field_type: u8) -> Self {
        self.realm.insert_profile_field(FakeProfileField::new(name, field_type));
        self
    }

    pub fn with_group(mut self, group: FakeGroup) -> Self {
        self.realm.insert_group(group);
        self
    }

    /// What every realm has from the start: the eight `role:*` groups (members derived
    /// from the users' roles) and three channels, "general" and "random" being default
    /// channels and "engineering" not.
    pub fn with_system_groups(mut self) -> Self {
        self.realm.add_system_groups();
        self.realm.add_default_channels();
        self
    }

    /// Adds a channel (id 0 = assign).
    pub fn with_channel(mut self, channel: FakeChannel) -> Self {
        self.realm.insert_channel(channel);
        self
    }

    /// The `demo` realm: a service account, one user per role, a deactivated user, a
    /// hidden-email user, a bot, system groups, "Engineering" and "Support", and the
    /// channels of [`FakeZulipBuilder::with_system_groups`].
    pub fn with_demo_data(self) -> Self {
        let host = "zulip.example.com";
        let at = |local: &str| format!("{local}@{host}");
        let mut b = self.realm_host(host).with_system_groups().service_account(&at("scim-bot"), DEMO_API_KEY);
        let users = [
            FakeUser::new(&at("desdemona"), "Desdemona Owner").role(OWNER),
            FakeUser::new(&at("iago"), "Iago Admin").role(ADMIN),
            FakeUser::new(&at("prospero"), "Prospero Moderator").role(MODERATOR),
            FakeUser::new(&at("hamlet"), "King Hamlet").role(MEMBER),
            FakeUser::new(&at("cordelia"), "Cordelia Lear").role(MEMBER),
            FakeUser::new(&at("polonius"), "Polonius Guest").role(GUEST),
            FakeUser::new(&at("othello"), "Othello Gone").deactivated(),
            FakeUser::new(&at("hidden"), "Hidden Person").visibility(VIS_NOBODY),
            FakeUser::new(&at("welcome-bot"), "Welcome Bot").bot(),
        ];
        let mut ids = HashMap::new();
        for u in users {
            let email = u.delivery_email.clone();
            ids.insert(email, b.realm.insert_user(u));
        }
        let id = |local: &str| ids.get(&at(local)).copied().unwrap_or_default();
        let mut eng = FakeGroup::new("Engineering", &[id("hamlet"), id("cordelia")]);
        eng.description = "Engineering team".into();
        let mut support = FakeGroup::new("Support", &[id("iago")]);
        support.description = "Support team".into();
        b.realm.insert_group(eng);
        b.realm.insert_group(support);
        b
    }

    pub fn rate_limit(mut self, rules: RateLimitRules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// See [`FakeZulip::set_event_heartbeat`].
    pub fn event_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// REST calls take the time `profile` gives them (e.g. [`LatencyProfile::realistic`]),
    /// spent outside the fake's lock, so concurrent calls overlap as on a real server.
    pub fn latency(mut self, profile: LatencyProfile) -> Self {
        self.latency = profile;
        self
    }

    /// Events become visible to `GET /events` as `delivery` says (late, batched).
    pub fn event_delivery(mut self, delivery: EventDelivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> std::io::Result<FakeZulip> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        self.start_on(listener).await
    }

    pub async fn start_on(self, listener: TcpListener) -> std::io::Result<FakeZulip> {
        let addr = listener.local_addr()?;
        let base_url = url::Url::parse(&format!("http://{addr}"))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut limiter = Limiter::default();
        limiter.set_rules(self.rules);
        let mut realm = self.realm;
        realm.sync_system_groups();
        let (shutdown, _) = watch::channel(false);
        let mut events = EventQueues::new();
        events.heartbeat = self.heartbeat;
        events.delivery.set(self.delivery);
        let latency_rng = timing::Rng::new(self.latency.seed);
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                realm,
                limiter,
                log: Vec::new(),
                failures: HashMap::new(),
                delays: HashMap::new(),
                events,
                latency: self.latency,
                latency_rng,
            }),
            shutdown,
        });
        let task = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(FakeZulip { inner, addr, base_url, task: Arc::new(Mutex::new(Some(task))) })
    }
}

/// The demo service account's API key (32 alphanumerics).
pub const DEMO_API_KEY: &str = "demoapikeydemoapikeydemoapikey12";
/// The demo service account's email.
pub const DEMO_SERVICE_EMAIL: &str = "scim-bot@zulip.example.com";

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let inner = inner.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            handle(inner.clone(), req)
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                // EMFILE and friends: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// The service function: `Err` closes the connection without an answer.
async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Resp, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body: Bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let received = Received::read(&parts, &body);
    let Injected { delay, failure, latency } = inner.lock().record(&received);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    // The server's own processing time, before the change is committed.
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let after_apply = match failure {
        Some(Failure::AfterApply(f)) => Some(*f),
        Some(f) => return failure_response(&inner, f).await,
        None => None,
    };
    let response = respond(&inner, &received).await?;
    match after_apply {
        Some(f) => failure_response(&inner, f).await,
        None => Ok(response),
    }
}

/// A request as read off the wire, decoded for the log, routing and auth.
struct Received {
    /// Upper case.
    method: String,
    /// Percent-decoded, without the query string.
    path: String,
    /// The percent-decoded segments of the path (the first is the empty one before `/`).
    segments: Vec<String>,
    query: Vec<(String, String)>,
    /// Form-encoded body fields (empty for any other content type).
    form: Vec<(String, String)>,
    auth: AuthHeader,
    host: Option<String>,
    accept: String,
}

// === impl Received ===

impl Received {
    fn read(parts: &hyper::http::request::Parts, body: &[u8]) -> Received {
        let header = |name: header::HeaderName| {
            parts.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let content_type = header(header::CONTENT_TYPE).unwrap_or_default();
        let form = if content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
            wire::parse_form(body)
        } else {
            Vec::new()
        };
        let query = parts.uri.query().map(|q| wire::parse_form(q.as_bytes())).unwrap_or_default();
        let segments: Vec<String> = parts
            .uri
            .path()
            .split('/')
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        Received {
            method: parts.method.as_str().to_ascii_uppercase(),
            path: segments.join("/"),
            segments,
            query,
            form,
            auth: wire::decode_auth(parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())),
            host: header(header::HOST).or_else(|| parts.uri.host().map(str::to_string)),
            accept: header(header::ACCEPT).unwrap_or_default(),
        }
    }

    /// The entry of the request log ([`FakeZulip::requests`]).
    fn recorded(&self) -> RecordedRequest {
        RecordedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            form: self.form.clone(),
            auth_email: match &self.auth {
                AuthHeader::Basic { email, .. } => Some(email.clone()),
                _ => None,
            },
            host: self.host.clone(),
        }
    }
}

/// What the test hooks and the latency profile hold for one request.
struct Injected {
    delay: Option<Duration>,
    failure: Option<Failure>,
    latency: Duration,
}

/// Processes the request under the lock, then finishes a long-poll outside it.
async fn respond(inner: &Inner, received: &Received) -> Result<Resp, std::io::Error> {
    let request = Parsed {
        method: &received.method,
        path: &received.path,
        segments: &received.segments,
        params: Params::new(&received.query, &received.form),
        auth: &received.auth,
        host: received.host.as_deref(),
        accept: &received.accept,
    };
    let processed = {
        let mut shared = inner.lock();
        process(&mut shared, &request)
    };
    match processed {
        Processed::Done(response) => Ok(response),
        Processed::Wait(wait) => long_poll(inner, wait).await,
    }
}

/// The parsed parts of a request that `process` needs.
struct Parsed<'a> {
    method: &'a str,
    path: &'a str,
    segments: &'a [String],
    params: Params,
    auth: &'a AuthHeader,
    host: Option<&'a str>,
    accept: &'a str,
}

async fn failure_response(inner: &Inner, failure: Failure) -> Result<Resp, std::io::Error> {
    let fl = inner.lock().realm.feature_level;
    let mut failure = failure;
    // Nested AfterApply makes no sense after the fact; use its innermost failure.
    while let Failure::AfterApply(f) = failure {
        failure = *f;
    }
    Ok(match failure {
        Failure::Api { status, code, msg } => wire::error_response(&ApiError::new(status, &code, msg)),
        Failure::RateLimited { retry_after_secs } => wire::rate_limited(retry_after_secs, fl),
        Failure::Html404 => wire::html_404("/"),
        Failure::NonJson { status, body } => wire::raw(status, "text/html; charset=utf-8", body),
        Failure::TruncatedJson => wire::raw(200, "application/json", "{\"result\":\"succ"),
        Failure::Reset => return Err(std::io::Error::other("injected connection reset")),
        Failure::Hang => {
            let mut stop = inner.shutdown.subscribe();
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
            return Err(std::io::Error::other("shut down while hanging"));
        }
        Failure::AfterApply(_) => wire::raw(500, "text/plain", "unreachable"),
    })
}

/// What `process` decided.
enum Processed {
    Done(Resp),
    /// A blocking `GET /events` with nothing to deliver yet.
    Wait(Wait),
}

/// A long-poll to finish outside the lock.
struct Wait {
    queue_id: String,
    owner: u64,
    /// `X-RateLimit-*` of the request (limit, remaining, reset).
    rate: (u32, u32, i64),
}

/// Waits until the queue has events (answered at once), disappears (`BAD_EVENT_QUEUE_ID`),
/// or the heartbeat interval passes (a `heartbeat` event); `Err` closes the connection when
/// the fake shuts down.
async fn long_poll(inner: &Inner, wait: Wait) -> Result<Resp, std::io::Error> {
    let deadline = tokio::time::Instant::now() + inner.lock().events.heartbeat;
    let mut stop = inner.shutdown.subscribe();
    let (limit, remaining, reset) = wait.rate;
    let answer = |result: Result<Map<String, Value>, ApiError>| {
        let mut r = match result {
            Ok(data) => wire::success(data, &[]),
            Err(e) => wire::error_response(&e),
        };
        add_rate_headers(&mut r, limit, remaining, reset);
        r
    };
    loop {
        let wake = {
            let mut shared = inner.lock();
            match shared.events.pending(wait.owner, &wait.queue_id) {
                Ok(Some(data)) => return Ok(answer(Ok(data))),
                Err(e) => return Ok(answer(Err(e))),
                Ok(None) => {}
            }
            let next = shared.events.next_visible(wait.owner, &wait.queue_id);
            if next.is_none() && tokio::time::Instant::now() >= deadline {
                return Ok(answer(shared.events.heartbeat(wait.owner, &wait.queue_id)));
            }
            // Subscribed under the lock: an event queued after the check above wakes us.
            (shared.events.subscribe(), next.unwrap_or(deadline))
        };
        let (mut wake, until) = (wake.0, wake.1);
        tokio::select! {
            _ = wake.changed() => {}
            () = tokio::time::sleep_until(until) => {}
            _ = stop.changed() => return Err(std::io::Error::other("shut down during a long-poll")),
        }
    }
}

/// `POST /register`, `GET /events`, `DELETE /events` for an authenticated caller.
fn serve_events(
    shared: &mut Shared,
    route: &Route,
    req: &Parsed<'_>,
    caller: &FakeUser,
) -> Result<Processed, ApiError> {
    let data = match (route, req.method) {
        (Route::Register, _) => events::register(&shared.realm, &mut shared.events, caller, &req.params)?,
        (Route::Events, "DELETE") => {
            let queue_id = req.params.required_string("queue_id")?;
            shared.events.delete(caller.user_id, &queue_id)?;
            Map::new()
        }
        _ => match shared.events.poll(caller.user_id, &req.params)? {
            PollStart::Ready(data) => data,
            PollStart::Wait { queue_id } => {
                return Ok(Processed::Wait(Wait { queue_id, owner: caller.user_id, rate: (0, 0, 0) }))
            }
        },
    };
    let known = match route {
        Route::Register => events::REGISTER_PARAMS,
        _ if req.method == "DELETE" => events::DELETE_QUEUE_PARAMS,
        _ => events::GET_EVENTS_PARAMS,
    };
    Ok(Processed::Done(wire::success(data, &req.params.unknown(known))))
}

/// Routing, auth, Host, rate limit and the endpoint, all under the lock (no `.await`).
fn process(shared: &mut Shared, req: &Parsed<'_>) -> Processed {
    let mut wait = None;
    let response = serve(shared, req, &mut wait);
    match wait {
        Some(mut w) => {
            let rate = |name: &str| {
                response.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok())
            };
            w.rate = (
                rate("x-ratelimit-limit").unwrap_or_default() as u32,
                rate("x-ratelimit-remaining").unwrap_or_default() as u32,
                rate("x-ratelimit-reset").unwrap_or_default(),
            );
            Processed::Wait(w)
        }
        None => Processed::Done(response),
    }
}

/// The response to `req`; a blocking `GET /events` with nothing to deliver yet leaves its
/// long-poll in `wait` (and the response is then only a carrier of its rate-limit headers).
fn serve(shared: &mut Shared, req: &Parsed<'_>, wait: &mut Option<Wait>) -> Resp {
    let fl = shared.realm.feature_level;
    let Some(api_segments) = api_segments(req.segments) else {
        return outside_api(req.path);
    };
    let Some(route) = Route::parse(api_segments, fl) else {
        return wire::html_404(req.path);
    };
    if route == Route::ServerSettings {
        return if matches!(req.method, "GET" | "HEAD") {
            server_settings(&shared.realm, req.host)
        } else {
            wire::empty_405()
        };
    }
    let allowed = route.allowed(fl);
    if !allowed.contains(&req.method) {
        return wire::method_not_allowed(&allowed);
    }
    let caller = match authenticate(&shared.realm, req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (limit, remaining, reset_in) = match shared.limiter.check(caller.user_id, Instant::now()) {
        Decision::Allowed { limit, remaining, reset_in } => (limit, remaining, reset_in),
        Decision::Limited { limit, retry_after } => {
            let mut r = wire::rate_limited(retry_after, fl);
            let reset = now_unix_f64() + retry_after;
            add_rate_headers(&mut r, limit, 0, reset.ceil() as i64);
            return r;
        }
    };
    let mut response = serve_endpoint(shared, &route, req, &caller, wait);
    let reset = (now_unix_f64() + reset_in.as_secs_f64()).floor() as i64;
    add_rate_headers(&mut response, limit, remaining, reset);
    response
}

/// The segments after `/api/v1/`; `None` for a path outside the REST API.
fn api_segments(segments: &[String]) -> Option<&[String]> {
    segments.get(..3).and_then(|head| {
        (head.first().map(String::as_str) == Some("")
            && head.get(1).map(String::as_str) == Some("api")
            && head.get(2).map(String::as_str) == Some("v1"))
        .then(|| segments.get(3..).unwrap_or_default())
    })
}

/// A path outside `/api/v1/`: the web app's `/json/…` wants a session (401), anything else
/// is an HTML 404.
fn outside_api(path: &str) -> Resp {
    if path.starts_with("/json/") {
        let mut r = wire::json_response(
            401,
            &ApiError::new(401, "UNAUTHORIZED", "Not logged in: API authentication or user session required")
                .body(),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Session realm=\"zulip\""));
        return r;
    }
    wire::html_404(path)
}

/// The endpoint's answer to an authenticated caller within the rate limit: refused when the
/// Host is not the realm's (if enforced), else the events API or a REST endpoint.
fn serve_endpoint(
    shared: &mut Shared,
    route: &Route,
    req: &Parsed<'_>,
    caller: &FakeUser,
    wait: &mut Option<Wait>,
) -> Resp {
    if shared.realm.enforce_host && !host_matches(&shared.realm, req.host) {
        return wire::error_response(&ApiError::bad("Account is not associated with this subdomain"));
    }
    if !matches!(route, Route::Register | Route::Events) {
        return serve_rest(shared, route, req, caller);
    }
    match serve_events(shared, route, req, caller) {
        Ok(Processed::Done(r)) => r,
        Ok(Processed::Wait(w)) => {
            *wait = Some(w);
            wire::success(Map::new(), &[])
        }
        Err(e) => wire::error_response(&e),
    }
}

/// A REST endpoint through [`routes::dispatch`]; a write runs as a change of the realm, so
/// the events it causes are queued.
fn serve_rest(shared: &mut Shared, route: &Route, req: &Parsed<'_>, caller: &FakeUser) -> Resp {
    let touched = if matches!(req.method, "GET" | "HEAD") {
        None
    } else {
        Some(routes::touched_users(&shared.realm, route, caller))
    };
    let (result, known) = match touched {
        Some(touched) => {
            shared.change(&touched, |realm| routes::dispatch(realm, route, req.method, caller, &req.params))
        }
        None => routes::dispatch(&mut shared.realm, route, req.method, caller, &req.params),
    };
    match result {
        Ok(data) => wire::success(data, &req.params.unknown(&known)),
        Err(e) => wire::error_response(&e),
    }
}

fn now_unix_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn add_rate_headers(r: &mut Resp, limit: u32, remaining: u32, reset: i64) {
    let h = r.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            h.insert(header::HeaderName::from_static(name), v);
        }
    }
}

fn host_matches(realm: &Realm, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let bare =
        host.rsplit_once(':').map_or(
            host,
            |(h, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            },
        );
    bare.eq_ignore_ascii_case(&realm.realm_host)
}

/// Zulip's REST auth decorator: every failure row of the transcripts (`auth-and-errors.json`).
fn authenticate(realm: &Realm, req: &Parsed<'_>) -> Result<FakeUser, Box<Resp>> {
    let unauthorized = |msg: &str| Box::new(wire::error_response(&ApiError::new(401, "UNAUTHORIZED", msg)));
    match req.auth {
        AuthHeader::Missing => {
            if req.accept.contains("text/html") {
                let next: String = form_urlencoded::byte_serialize(req.path.as_bytes()).collect();
                let mut r = wire::raw(302, "text/html; charset=utf-8", "");
                if let Ok(v) = header::HeaderValue::from_str(&format!("/login/?next={next}")) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return Err(Box::new(r));
            }
            Err(unauthorized("Not logged in: API authentication or user session required"))
        }
        AuthHeader::NotBasic => Err(Box::new(wire::error_response(&ApiError::bad(
            "This endpoint requires HTTP basic authentication.",
        )))),
        AuthHeader::Malformed => Err(unauthorized("Invalid authorization header for basic auth")),
        AuthHeader::Basic { email, api_key } => {
            if !wire::well_formed_key(api_key) {
                return Err(unauthorized("Malformed API key"));
            }
            let user = realm
                .users
                .values()
                .find(|u| u.api_key.as_deref() == Some(api_key.as_str()))
                .filter(|u| u.delivery_email.eq_ignore_ascii_case(email.trim()))
                .ok_or_else(|| unauthorized("Invalid API key"))?;
            if !user.is_active {
                return Err(unauthorized("Account is deactivated"));
            }
            Ok(user.clone())
        }
    }
}

/// Zulip's major version for a feature level: a release, or the next one's `-dev+git`.
fn version_for(fl: u32) -> String {
    const RELEASES: [(u32, u32); 9] =
        [(25, 3), (65, 4), (122, 5), (156, 6), (185, 7), (237, 8), (277, 9), (371, 10), (421, 11)];
    if let Some((_, major)) = RELEASES.iter().find(|(l, _)| *l == fl) {
        return format!("{major}.0");
    }
    let next = RELEASES.iter().find(|(l, _)| *l > fl).map_or(12, |(_, major)| *major);
    format!("{next}.0-dev+git")
}

/// `GET /server_settings`: no auth, no rate-limit headers.
fn server_settings(realm: &Realm, host: Option<&str>) -> Resp {
    let realm_url = format!("http://{}", host.unwrap_or(&realm.realm_host));
    let mut d = Map::new();
    d.insert(
        "authentication_methods".into(),
        json!({"password": true, "dev": false, "email": true, "ldap": false,
               "remoteuser": false, "github": false, "azuread": false, "gitlab": false,
               "google": false, "apple": false, "saml": false, "openid connect": false}),
    );
    d.insert("zulip_version".into(), json!(version_for(realm.feature_level)));
    d.insert("zulip_merge_base".into(), json!(""));
    d.insert("zulip_feature_level".into(), json!(realm.feature_level));
    d.insert("push_notifications_enabled".into(), json!(false));
    d.insert("is_incompatible".into(), json!(false));
    d.insert("email_auth_enabled".into(), json!(true));
    d.insert("require_email_format_usernames".into(), json!(true));
    d.insert("realm_url".into(), json!(realm_url));
    d.insert("realm_name".into(), json!("Fake Zulip"));
    d.insert(
        "realm_icon".into(),
        json!("https://secure.gravatar.com/avatar/62429d594b6ffc712f54aee976a18b44?d=identicon"),
    );
    d.insert("realm_description".into(), json!("<p>An in-memory Zulip for tests.</p>"));
    d.insert("realm_web_public_access_enabled".into(), json!(false));
    d.insert("external_authentication_methods".into(), Value::Array(Vec::new()));
    d.insert("realm_uri".into(), json!(realm_url));
    wire::success(d, &[])
}

#[cfg(test)]
mod tests;
