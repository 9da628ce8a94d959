//! `ZulipClient`: typed calls on Zulip's REST API, one method per API doc page.
//!
//! The methods are named after the pages of Zulip's API documentation (`get_users`,
//! `update_user_group_members`, …); rustdoc lists them with their endpoints.
//!
//! # Wire rules (zulip-rest-api.md §1, transcripts README "Parameter encoding")
//! - Parameters go in the query string for GET and in an `application/x-www-form-urlencoded`
//!   body otherwise; Zulip silently ignores JSON bodies.
//! - Plain strings (`email`, `password`, `full_name`, `new_email`, `name`, `description`,
//!   `queue_id`) are sent as they are; every other parameter is JSON text inside the form
//!   field (`role=200`, `members=[10, 227]`, `include_deactivated_groups=true`,
//!   `subscriptions=["general", "random"]`), spelled as in the transcripts (`", "` and
//!   `": "` separators; Zulip accepts either spelling).
//! - `None` fields and empty member lists are left out; a call with nothing to change is not
//!   sent at all (Zulip answers 400 "No new data supplied" / "Nothing to do").
//! - Decoding branches on HTTP status and the envelope's `code`, never on `msg`.
//!
//! # Respecting the upstream ([`UpstreamPolicy`], [`super::pacing`])
//! Every call but the long poll runs within one deadline (`policy.deadline`, 25 s):
//! 1. **Queue.** At most `max_in_flight` calls per realm, reads and writes alike, admitted in
//!    arrival order (tokio's semaphore is fair). Writes to *different* users and groups run
//!    concurrently; the order of writes to one entity is the caller's to keep (the sidecar
//!    holds a per-entity lock for a whole SCIM operation, `provision::ordering`).
//! 2. **Pace.** The last `X-RateLimit-*` report, less the calls still in flight, may ask for
//!    a wait ([`super::pacing`]). The wait ends early when a newer report shows the budget
//!    plentiful again; a call whose slot is beyond the deadline waits, while other calls
//!    will bring a report, for that report and asks again.
//! 3. **Send**, with a timeout of `min(timeout, time left)`.
//! 4. **Retry** what is safe ([`Idempotency`], [`super::pacing::retry_for`]), at most
//!    `max_retries` times: a 429 after its `Retry-After`, faults after a full-jitter
//!    backoff.
//!
//! A wait that would not leave time to be answered before the deadline is never started:
//! a 429 is returned as it came (`Api { status: 429, retry_after }`), a pacing wait becomes
//! [`ZulipError::Throttled`] (nothing sent; once no report is coming, or the deadline leaves
//! only the time to be answered, with the wait the pacer gives then), a fault returns its
//! own error. Either way
//! [`ZulipError::rate_limited`] gives the `Retry-After` for the IdP.
//!
//! | method | request | idempotency | retried after |
//! |---|---|---|---|
//! | `server_settings`, `get_own_user`, `get_users`, `get_user`, `get_user_groups`, `get_user_group_members`, `get_channels` | `GET` | idempotent | 429, connect/reset/timeout, 502–504, undecodable 2xx body |
//! | `update_user` | `PATCH /users/{id}` | idempotent (same values twice: 200, transcripts) | same as `GET` |
//! | `update_user_group` | `PATCH /user_groups/{id}` | idempotent (same name twice: 200) | same as `GET` |
//! | `reactivate_user` | `POST /users/{id}/reactivate` | idempotent (active user: 200) | same as `GET` |
//! | `unsubscribe_users` | `DELETE /users/me/subscriptions` | idempotent (not subscribed: 200, listed in `not_removed`) | same as `GET` |
//! | `create_user` | `POST /users` | not idempotent | 429, connection never made |
//! | `deactivate_user` | `DELETE /users/{id}` | not idempotent (twice: 400) | 429, connection never made |
//! | `create_user_group` | `POST /user_groups/create` | not idempotent | 429, connection never made |
//! | `update_user_group_members` | `POST /user_groups/{id}/members` | not idempotent (a diff) | 429, connection never made |
//! | `deactivate_user_group` | `POST /user_groups/{id}/deactivate` | not idempotent (twice: 400) | 429, connection never made |
//! | `register_event_queue` | `POST /register` | not idempotent (a queue each) | 429, connection never made |
//! | `delete_event_queue` | `DELETE /events` | not idempotent (twice: bad queue) | 429, connection never made |
//! | `get_events` | `GET /events` (long poll) | exempt: no queue, pacing or retry | never (the poller loops) |
//!
//! For a non-idempotent call that failed after it may have reached Zulip (timeout, reset,
//! undecodable answer: [`ZulipError::outcome_known`] is false) the caller looks before
//! repeating it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use reqwest::{Method, StatusCode};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use super::error::ZulipError;
pub use super::pacing::UpstreamPolicy;
use super::pacing::{backoff, retry_for, Idempotency, InFlight, Pacer, Retry};
use super::stats::{ClientStats, Counters};
use super::types::{
    Channel, Event, ProfileField, RateLimitState, RegisteredQueue, ServerSettings, Unsubscribed, User,
    UserGroup, UserUpdate,
};
use secret::Secret;

/// `User-Agent` of every upstream request.
pub const USER_AGENT: &str = concat!("scim-sidecar/", env!("CARGO_PKG_VERSION"));

/// Largest response body read (a 10 000-user `GET /users` is a few MB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// `Retry-After` suggested when the realm's queue did not admit a call within its deadline.
const QUEUE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How to reach one realm's Zulip as its service account.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where `/api/v1` lives (scheme + host [+ port]), e.g. `http://127.0.0.1:9991`.
    pub base_url: Url,
    /// Host header to send when it differs from `base_url`'s (the realm's public host).
    pub host: Option<String>,
    /// The service account's delivery e-mail (Basic auth user).
    pub email: String,
    pub api_key: Secret<String>,
    /// Per-request timeout (one attempt; the whole call is bounded by `policy.deadline`).
    pub timeout: Duration,
    /// Deadline, concurrency and retries (`UpstreamPolicy::default()` unless configured).
    pub policy: UpstreamPolicy,
}

/// Parameters of `POST /user_groups/create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewUserGroup {
    pub name: String,
    /// Required by Zulip, may be empty.
    pub description: String,
    /// Required by Zulip, may be empty; active users only.
    pub members: Vec<u64>,
    /// A group-setting value (a group id, or `{"direct_members": [..], "direct_subgroups": [..]}`);
    /// `None` lets Zulip default to the creating account.
    pub can_manage_group: Option<Value>,
    pub can_add_members_group: Option<Value>,
}

/// Which channels `GET /streams` returns: the union of the sets asked for. `Default` is
/// Zulip's own default (public channels and the caller's subscriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelQuery {
    pub include_public: bool,
    pub include_web_public: bool,
    pub include_subscribed: bool,
    /// Every active channel; administrators only (others: 400).
    pub include_all_active: bool,
    /// The realm's default channels, and `is_default` on every channel returned.
    pub include_default: bool,
}

impl Default for ChannelQuery {
    fn default() -> Self {
        ChannelQuery {
            include_public: true,
            include_web_public: false,
            include_subscribed: true,
            include_all_active: false,
            include_default: false,
        }
    }
}

impl ChannelQuery {
    /// Exactly the realm's default channels (the ones `POST /users` subscribes a new user
    /// to), each with `is_default: true`. Default channels are never private (Zulip refuses
    /// to make a private channel default, or a default channel private).
    pub fn default_channels() -> Self {
        ChannelQuery {
            include_public: false,
            include_subscribed: false,
            include_default: true,
            ..Self::default()
        }
    }
}

/// A client for one realm's service account.
///
/// Cheap to clone: clones share one connection pool, one rate-limit record and one queue
/// (a client is one realm's service account: Zulip's rate limit is per account).
#[derive(Clone)]
pub struct ZulipClient {
    /// One pool per realm; reqwest's `Client` is an `Arc` inside.
    http: reqwest::Client,
    /// `base_url` + `/api/v1`, without a trailing slash.
    api_root: String,
    /// `Basic base64(email:api_key)`, built once and marked sensitive.
    authorization: Secret<HeaderValue>,
    /// The realm's public host, when `base_url` points elsewhere.
    host: Option<HeaderValue>,
    email: String,
    timeout: Duration,
    policy: UpstreamPolicy,
    /// The last `X-RateLimit-*` report and the send slots derived from it.
    pacer: Arc<Pacer>,
    /// `max_in_flight` permits: bounds the realm's open upstream requests (and sockets),
    /// writes included, so an import's burst reaches Zulip at most `max_in_flight` at a
    /// time, each paced against the budget left after the others in flight.
    in_flight: Arc<Semaphore>,
    /// Told about every attempt (metrics); the zulip module knows nothing of telemetry.
    observer: Option<CallObserver>,
    /// Writes queued and done, 429s: sampled by [`ZulipClient::stats`].
    counters: Arc<Counters>,
}

/// Called after every upstream attempt with the endpoint template (ids as `{id}`, e.g.
/// `PATCH /users/{id}`), the HTTP status (0: no response) and the attempt's latency.
pub type CallObserver = Arc<dyn Fn(&str, u16, Duration) + Send + Sync>;

/// `METHOD /path` with numeric segments as `{id}`: a bounded label set for metrics.
fn endpoint_template(method: &Method, path: &str) -> String {
    let path: Vec<&str> =
        path.split('/').map(|seg| if seg.parse::<u64>().is_ok() { "{id}" } else { seg }).collect();
    format!("{method} {}", path.join("/"))
}

/// Whether a call carries the service account's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Basic,
    None,
}

/// Form fields or query parameters, in the order they are sent.
type Params = Vec<(&'static str, String)>;

const IDEMPOTENT: Idempotency = Idempotency::Idempotent;
const NOT_IDEMPOTENT: Idempotency = Idempotency::NotIdempotent;

// === impl ZulipClient ===

impl ZulipClient {
    /// Builds the client (rustls, pooled connections, no request sent).
    pub fn new(config: ClientConfig) -> Result<ZulipClient, ZulipError> {
        let ClientConfig { base_url, host, email, api_key, timeout, policy } = config;
        if policy.max_in_flight == 0 || policy.deadline.is_zero() {
            return Err(ZulipError::Config(
                "upstream policy needs max_in_flight >= 1 and a non-zero deadline".into(),
            ));
        }
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
            return Err(ZulipError::Config(format!("base url {base_url} is not an http(s) url with a host")));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(ZulipError::Config(format!("base url {base_url} must not have a query or fragment")));
        }
        let api_root = format!("{}/api/v1", base_url.as_str().trim_end_matches('/'));

        let credentials = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{email}:{}", api_key.expose().trim()),
        );
        let mut authorization = HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| ZulipError::Config("credentials are not a valid header value".into()))?;
        authorization.set_sensitive(true);

        let host = host
            .map(|h| {
                HeaderValue::from_str(&h)
                    .map_err(|_| ZulipError::Config(format!("host {h:?} is not a valid header")))
            })
            .transpose()?;

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if host.is_some() {
            // Over HTTP/2 the authority comes from the URL, not from `Host`: stay on HTTP/1.1
            // so that the overridden Host selects the realm.
            builder = builder.http1_only();
        }
        let http = builder.build().map_err(ZulipError::Transport)?;

        Ok(ZulipClient {
            http,
            api_root,
            authorization: Secret::new(authorization),
            host,
            email,
            timeout,
            policy,
            pacer: Arc::new(Pacer::default()),
            in_flight: Arc::new(Semaphore::new(policy.max_in_flight.min(Semaphore::MAX_PERMITS))),
            observer: None,
            counters: Arc::new(Counters::default()),
        })
    }

    /// Reports every attempt to `observer` (endpoint template, status, latency).
    pub fn with_observer(mut self, observer: CallObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// `GET /server_settings` (no authentication): version and feature level.
    pub async fn server_settings(&self) -> Result<ServerSettings, ZulipError> {
        self.call(Method::GET, "/server_settings", Vec::new(), Auth::None, IDEMPOTENT).await
    }

    /// `GET /users/me`: the service account itself (its fields sit at the top level).
    pub async fn get_own_user(&self) -> Result<User, ZulipError> {
        self.call(Method::GET, "/users/me", Vec::new(), Auth::Basic, IDEMPOTENT).await
    }

    /// `GET /users`: every account of the realm, bots and deactivated users included.
    pub async fn get_users(&self) -> Result<Vec<User>, ZulipError> {
        self.get_users_with_profile_field(None).await
    }

    /// `GET /users`, with the value of custom profile field `field` (and no other) in each
    /// user's `profile_data` when it is given.
    pub async fn get_users_with_profile_field(&self, field: Option<u64>) -> Result<Vec<User>, ZulipError> {
        self.get_users_with_profile_fields(field.as_slice()).await
    }

    /// `GET /users`, with the values of the custom profile fields `fields` (and no others)
    /// in each user's `profile_data` (none asked for when `fields` is empty).
    pub async fn get_users_with_profile_fields(&self, fields: &[u64]) -> Result<Vec<User>, ZulipError> {
        #[derive(Deserialize)]
        struct Users {
            members: Vec<User>,
        }
        let field = fields.first().copied();
        let mut users: Users =
            self.call(Method::GET, "/users", profile_params(field), Auth::Basic, IDEMPOTENT).await?;
        if !fields.is_empty() {
            users.members.iter_mut().for_each(|u| u.profile_data.retain_fields(fields));
        }
        Ok(users.members)
    }

    /// `GET /users/{user_id}` (works for deactivated users and bots; unknown id: 400).
    pub async fn get_user(&self, user_id: u64) -> Result<User, ZulipError> {
        self.get_user_with_profile_field(user_id, None).await
    }

    /// `GET /users/{user_id}`, with custom profile field `field` as in
    /// [`get_users_with_profile_field`](Self::get_users_with_profile_field).
    pub async fn get_user_with_profile_field(
        &self,
        user_id: u64,
        field: Option<u64>,
    ) -> Result<User, ZulipError> {
        self.get_user_with_profile_fields(user_id, field.as_slice()).await
    }

    /// `GET /users/{user_id}` with the custom profile fields `fields`, as in
    /// [`get_users_with_profile_fields`](Self::get_users_with_profile_fields).
    pub async fn get_user_with_profile_fields(
        &self,
        user_id: u64,
        fields: &[u64],
    ) -> Result<User, ZulipError> {
        #[derive(Deserialize)]
        struct OneUser {
            user: User,
        }
        let path = format!("/users/{user_id}");
        let field = fields.first().copied();
        let mut one: OneUser =
            self.call(Method::GET, &path, profile_params(field), Auth::Basic, IDEMPOTENT).await?;
        if !fields.is_empty() {
            one.user.profile_data.retain_fields(fields);
        }
        Ok(one.user)
    }

    /// `GET /realm/profile_fields`: the realm's custom profile fields.
    pub async fn get_custom_profile_fields(&self) -> Result<Vec<ProfileField>, ZulipError> {
        #[derive(Deserialize)]
        struct Fields {
            custom_fields: Vec<ProfileField>,
        }
        let fields: Fields =
            self.call(Method::GET, "/realm/profile_fields", Vec::new(), Auth::Basic, IDEMPOTENT).await?;
        Ok(fields.custom_fields)
    }

    /// `POST /realm/profile_fields`: a field of `field_type` ([`ProfileField::SHORT_TEXT`], …)
    /// that only administrators may edit; returns its id. A label already used is a 400 (`A
    /// field with that label already exists.`), so a retry after an unknown outcome is harmless.
    pub async fn create_custom_profile_field(
        &self,
        name: &str,
        hint: &str,
        field_type: u8,
    ) -> Result<u64, ZulipError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let params = vec![
            ("name", name.to_owned()),
            ("hint", hint.to_owned()),
            ("field_type", field_type.to_string()),
            ("editable_by_user", "false".to_owned()),
        ];
        let created: Created =
            self.call(Method::POST, "/realm/profile_fields", params, Auth::Basic, NOT_IDEMPOTENT).await?;
        Ok(created.id)
    }

    /// `POST /users`: creates a member; returns the new `user_id`.
    pub async fn create_user(
        &self,
        email: &str,
        password: &Secret<String>,
        full_name: &str,
    ) -> Result<u64, ZulipError> {
        #[derive(Deserialize)]
        struct Created {
            user_id: u64,
        }
        let params = vec![
            ("email", email.to_owned()),
            ("password", password.expose().clone()),
            ("full_name", full_name.to_owned()),
        ];
        let created: Created = self.call(Method::POST, "/users", params, Auth::Basic, NOT_IDEMPOTENT).await?;
        Ok(created.user_id)
    }

    /// `PATCH /users/{user_id}`. An empty update sends nothing.
    pub async fn update_user(&self, user_id: u64, update: &UserUpdate) -> Result<(), ZulipError> {
        if update.is_empty() {
            return Ok(());
        }
        let mut params = Params::new();
        if let Some(full_name) = &update.full_name {
            params.push(("full_name", full_name.clone()));
        }
        if let Some(role) = update.role {
            params.push(("role", role.api_value().to_string()));
        }
        if !update.profile_data.is_empty() || !update.profile_users.is_empty() {
            let items: Vec<Value> = update
                .profile_data
                .iter()
                .map(|(id, value)| serde_json::json!({"id": id, "value": value}))
                .chain(update.profile_users.iter().map(|(id, users)| {
                    // Zulip clears a person-picker field with an empty list or null.
                    let value = if users.is_empty() { Value::Null } else { serde_json::json!(users) };
                    serde_json::json!({"id": id, "value": value})
                }))
                .collect();
            params.push(("profile_data", Value::Array(items).to_string()));
        }
        if let Some(new_email) = &update.new_email {
            params.push(("new_email", new_email.clone()));
        }
        let path = format!("/users/{user_id}");
        // Setting the same values twice is a 200 (transcripts: same name, role, address).
        self.call_unit(Method::PATCH, &path, params, IDEMPOTENT).await
    }

    /// `DELETE /users/{user_id}`: deactivates (400 "User is deactivated" if already so).
    pub async fn deactivate_user(&self, user_id: u64) -> Result<(), ZulipError> {
        let path = format!("/users/{user_id}");
        // Twice is a 400 "User is deactivated": the caller resolves an unknown outcome.
        self.call_unit(Method::DELETE, &path, Vec::new(), NOT_IDEMPOTENT).await
    }

    /// `POST /users/{user_id}/reactivate` (succeeds on an active user too).
    pub async fn reactivate_user(&self, user_id: u64) -> Result<(), ZulipError> {
        let path = format!("/users/{user_id}/reactivate");
        // An active user's reactivation is a 200.
        self.call_unit(Method::POST, &path, Vec::new(), IDEMPOTENT).await
    }

    /// `GET /user_groups`, system groups included; deactivated ones only when asked.
    pub async fn get_user_groups(&self, include_deactivated: bool) -> Result<Vec<UserGroup>, ZulipError> {
        #[derive(Deserialize)]
        struct Groups {
            user_groups: Vec<UserGroup>,
        }
        let mut params = Params::new();
        if include_deactivated {
            params.push(("include_deactivated_groups", json_text(&Value::Bool(true))));
        }
        let groups: Groups = self.call(Method::GET, "/user_groups", params, Auth::Basic, IDEMPOTENT).await?;
        Ok(groups.user_groups)
    }

    /// `POST /user_groups/create`. The new id is only returned from feature level 317 on
    /// (`None` before: find it with [`ZulipClient::get_user_groups`]).
    pub async fn create_user_group(&self, group: &NewUserGroup) -> Result<Option<u64>, ZulipError> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(default)]
            group_id: Option<u64>,
        }
        let mut params = vec![
            ("name", group.name.clone()),
            ("description", group.description.clone()),
            ("members", json_ids(&group.members)),
        ];
        if let Some(setting) = &group.can_manage_group {
            params.push(("can_manage_group", json_text(setting)));
        }
        if let Some(setting) = &group.can_add_members_group {
            params.push(("can_add_members_group", json_text(setting)));
        }
        let created: Created =
            self.call(Method::POST, "/user_groups/create", params, Auth::Basic, NOT_IDEMPOTENT).await?;
        Ok(created.group_id)
    }

    /// `PATCH /user_groups/{group_id}`. Nothing to change sends nothing.
    pub async fn update_user_group(
        &self,
        group_id: u64,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<(), ZulipError> {
        let mut params = Params::new();
        if let Some(name) = name {
            params.push(("name", name.to_owned()));
        }
        if let Some(description) = description {
            params.push(("description", description.to_owned()));
        }
        if params.is_empty() {
            return Ok(());
        }
        let path = format!("/user_groups/{group_id}");
        // Renaming to the current name is a 200.
        self.call_unit(Method::PATCH, &path, params, IDEMPOTENT).await
    }

    /// `POST /user_groups/{group_id}/members`. Zulip is strict (adding a member or removing
    /// a non-member is a 400), so callers send a diff. Two empty lists send nothing.
    pub async fn update_user_group_members(
        &self,
        group_id: u64,
        add: &[u64],
        delete: &[u64],
    ) -> Result<(), ZulipError> {
        let mut params = Params::new();
        if !add.is_empty() {
            params.push(("add", json_ids(add)));
        }
        if !delete.is_empty() {
            params.push(("delete", json_ids(delete)));
        }
        if params.is_empty() {
            return Ok(());
        }
        let path = format!("/user_groups/{group_id}/members");
        // A diff: adding a member twice is a 400.
        self.call_unit(Method::POST, &path, params, NOT_IDEMPOTENT).await
    }

    /// `GET /user_groups/{group_id}/members`: active members, recursively through subgroups
    /// unless `direct_only`. A deactivated group is a 400.
    pub async fn get_user_group_members(
        &self,
        group_id: u64,
        direct_only: bool,
    ) -> Result<Vec<u64>, ZulipError> {
        #[derive(Deserialize)]
        struct Members {
            members: Vec<u64>,
        }
        let mut params = Params::new();
        if direct_only {
            params.push(("direct_member_only", json_text(&Value::Bool(true))));
        }
        let path = format!("/user_groups/{group_id}/members");
        let members: Members = self.call(Method::GET, &path, params, Auth::Basic, IDEMPOTENT).await?;
        Ok(members.members)
    }

    /// `POST /user_groups/{group_id}/deactivate` (FL 290; `DELETE` is gone since FL 294).
    pub async fn deactivate_user_group(&self, group_id: u64) -> Result<(), ZulipError> {
        let path = format!("/user_groups/{group_id}/deactivate");
        self.call_unit(Method::POST, &path, Vec::new(), NOT_IDEMPOTENT).await
    }

    /// `GET /streams`: the channels `query` selects that the service account can see.
    /// Only parameters that differ from Zulip's defaults are sent.
    pub async fn get_channels(&self, query: &ChannelQuery) -> Result<Vec<Channel>, ZulipError> {
        #[derive(Deserialize)]
        struct Channels {
            streams: Vec<Channel>,
        }
        let defaults = ChannelQuery::default();
        let mut params = Params::new();
        for (name, value, default) in [
            ("include_public", query.include_public, defaults.include_public),
            ("include_web_public", query.include_web_public, defaults.include_web_public),
            ("include_subscribed", query.include_subscribed, defaults.include_subscribed),
            ("include_all_active", query.include_all_active, defaults.include_all_active),
            ("include_default", query.include_default, defaults.include_default),
        ] {
            if value != default {
                params.push((name, json_text(&Value::Bool(value))));
            }
        }
        let channels: Channels = self.call(Method::GET, "/streams", params, Auth::Basic, IDEMPOTENT).await?;
        Ok(channels.streams)
    }

    /// `DELETE /users/me/subscriptions` with `principals`: removes `user_ids` from the
    /// channels named (administrators may remove anyone). A channel a user is not in is
    /// reported in `not_removed`, not refused; an unknown name is a 400
    /// `STREAM_DOES_NOT_EXIST`. Nothing is sent when either list is empty (without
    /// `principals` Zulip would unsubscribe the service account itself).
    pub async fn unsubscribe_users(
        &self,
        channel_names: &[String],
        user_ids: &[u64],
    ) -> Result<Unsubscribed, ZulipError> {
        if channel_names.is_empty() || user_ids.is_empty() {
            return Ok(Unsubscribed::default());
        }
        let params = vec![
            ("subscriptions", json_text(&Value::from(channel_names.to_vec()))),
            ("principals", json_ids(user_ids)),
        ];
        // Repeating it finds nothing left to remove: a 200 with everything in `not_removed`.
        self.call(Method::DELETE, "/users/me/subscriptions", params, Auth::Basic, IDEMPOTENT).await
    }

    /// The `X-RateLimit-*` headers of the latest response that carried them.
    pub fn rate_limit(&self) -> Option<RateLimitState> {
        self.pacer.report()
    }

    /// What the client is doing now: writes queued and done, 429s, the current pacing wait.
    pub fn stats(&self) -> ClientStats {
        self.counters.sample(self.pacer.wait_at(Instant::now()), self.pacer.report())
    }

    /// `POST /register`: a queue of `event_types` events. Asks for no initial state
    /// (`fetch_event_types=[]`): the caller reads users and groups with the REST calls.
    pub async fn register_event_queue(&self, event_types: &[&str]) -> Result<RegisteredQueue, ZulipError> {
        let types = Value::from(event_types.to_vec());
        let params = vec![
            ("event_types", json_text(&types)),
            ("fetch_event_types", json_text(&Value::Array(Vec::new()))),
            ("apply_markdown", json_text(&Value::Bool(false))),
            ("client_gravatar", json_text(&Value::Bool(true))),
        ];
        self.call(Method::POST, "/register", params, Auth::Basic, NOT_IDEMPOTENT).await
    }

    /// `GET /events`: the events after `last_event_id` (which they acknowledge). A blocking
    /// poll (`dont_block: false`) waits up to about a minute for a heartbeat, so it runs
    /// under `poll_timeout` instead of the per-request timeout. An expired or unknown
    /// queue is [`ZulipError::is_bad_event_queue`].
    ///
    /// Exempt from the realm's queue, pacing and retries: a poll holds its request open for
    /// up to a minute and would block every other call; the poller's loop retries.
    pub async fn get_events(
        &self,
        queue_id: &str,
        last_event_id: i64,
        dont_block: bool,
        poll_timeout: Duration,
    ) -> Result<Vec<Event>, ZulipError> {
        #[derive(Deserialize)]
        struct Events {
            events: Vec<Value>,
        }
        let mut params =
            vec![("queue_id", queue_id.to_owned()), ("last_event_id", last_event_id.to_string())];
        if dont_block {
            params.push(("dont_block", json_text(&Value::Bool(true))));
        }
        let events: Events =
            self.send_once(&Method::GET, "/events", &params, Auth::Basic, poll_timeout).await?;
        Ok(events.events.into_iter().map(Event::from_value).collect())
    }

    /// `DELETE /events`: drops the queue (an already deleted one is a bad-queue error).
    pub async fn delete_event_queue(&self, queue_id: &str) -> Result<(), ZulipError> {
        let params = vec![("queue_id", queue_id.to_owned())];
        self.call_unit(Method::DELETE, "/events", params, NOT_IDEMPOTENT).await
    }

    // --- request machinery ---

    async fn call_unit(
        &self,
        method: Method,
        path: &str,
        params: Params,
        idempotency: Idempotency,
    ) -> Result<(), ZulipError> {
        let IgnoredAny = self.call(method, path, params, Auth::Basic, idempotency).await?;
        Ok(())
    }

    /// One call under the realm's [`UpstreamPolicy`]: queue, pace, send, retry what is
    /// safe, all within the deadline (module doc). The permit is the first `.await`, so
    /// calls queue in the order they were made.
    #[tracing::instrument(level = "debug", skip_all, fields(method = %method, endpoint = path))]
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Params,
        auth: Auth,
        idempotency: Idempotency,
    ) -> Result<T, ZulipError> {
        let deadline = Instant::now() + self.policy.deadline;
        let counted = (method != Method::GET).then(|| self.counters.write());
        let _permit = match tokio::time::timeout_at(deadline, self.in_flight.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(queue_full(path)),
        };
        let reserve = self.policy.answer_reserve();
        let mut attempt: u32 = 0;
        loop {
            let in_flight = self.pace(path, attempt, deadline, reserve).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = self.send_once(&method, path, &params, auth, self.timeout.min(left)).await;
            drop(in_flight);
            let error = match sent {
                Ok(value) => {
                    if let Some(write) = counted {
                        write.done();
                    }
                    return Ok(value);
                }
                Err(error) => error,
            };
            let Some(retry) = retry_for(idempotency, &error) else {
                return Err(error);
            };
            attempt += 1;
            let wait = self.wait_before_retry(retry, attempt);
            if !self.may_retry(path, attempt, wait, retry, deadline) {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// How long to wait before retry number `attempt`: a 429's `Retry-After` (which then
    /// holds every caller of the account), or a fault's full-jitter backoff.
    fn wait_before_retry(&self, retry: Retry, attempt: u32) -> Duration {
        match retry {
            Retry::RateLimited(after) => {
                // Zulip's word holds for every caller of this account.
                self.pacer.hold(Instant::now() + after);
                after
            }
            Retry::Fault { at_least, .. } => {
                backoff(self.policy.retry_base, attempt, rand::random::<f64>()).max(at_least)
            }
        }
    }

    /// Whether retry number `attempt`, after `wait`, is within `max_retries` and leaves time
    /// to be answered before the deadline (logged either way).
    fn may_retry(&self, path: &str, attempt: u32, wait: Duration, retry: Retry, deadline: Instant) -> bool {
        let wait_ms = wait.as_millis() as u64;
        let reason = retry.reason();
        if attempt > self.policy.max_retries {
            tracing::debug!(
                endpoint = path,
                attempt,
                wait_ms,
                reason,
                "zulip call failed; retries exhausted"
            );
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if wait + self.policy.answer_reserve() > left {
            tracing::debug!(
                endpoint = path,
                attempt,
                wait_ms,
                reason,
                "zulip call failed; a retry would pass the deadline"
            );
            return false;
        }
        tracing::debug!(endpoint = path, attempt, wait_ms, reason, "zulip call failed; retrying");
        true
    }

    /// A clone (same pool, rate-limit record and write queue) whose calls may take up to
    /// `deadline` — for the remaining calls of a write Zulip has already begun to apply (a
    /// create's follow-up), which must run to their end rather than stop half-way.
    pub fn continuing(&self, deadline: Duration) -> ZulipClient {
        let mut client = self.clone();
        client.policy.deadline = client.policy.deadline.max(deadline);
        client
    }

    /// Refuses (nothing sent) an operation of `calls` consecutive calls that the rate-limit
    /// budget would not let through within one deadline: `Throttled`, whose `Retry-After`
    /// is the wait. A create whose follow-up `PATCH` could only be sent after the deadline
    /// would otherwise leave half an account behind.
    pub fn ensure_budget_for(&self, calls: u32) -> Result<(), ZulipError> {
        let wait = self.pacer.wait_for_calls(Instant::now(), calls);
        if wait + self.policy.answer_reserve() > self.policy.deadline {
            tracing::debug!(
                calls,
                wait_ms = wait.as_millis() as u64,
                "operation not started: its calls would not fit the deadline"
            );
            return Err(ZulipError::Throttled {
                reason: "the service account's rate-limit budget would not let all of the operation's calls through before the deadline",
                retry_after: wait,
            });
        }
        Ok(())
    }

    /// Waits for this call's send slot ([`Pacer::reserve_in_flight`]; the guard counts the
    /// call in flight until it is dropped), or refuses the call (nothing sent) when no slot
    /// leaves time to be answered before the deadline.
    ///
    /// A slot is decided from the last report, a guess that the next one may improve: a
    /// call waiting for its slot leaves as soon as a report shows the budget plentiful
    /// ([`ZulipClient::wait_for_slot`]), and a call refused a slot, while other calls will
    /// still bring a report, waits for that report and asks again, until the deadline
    /// leaves only the time to be answered. Only then is it refused, with the wait the
    /// pacer gives at that moment as its `Retry-After`.
    async fn pace(
        &self,
        path: &str,
        attempt: u32,
        deadline: Instant,
        reserve: Duration,
    ) -> Result<InFlight<'_>, ZulipError> {
        if deadline.saturating_duration_since(Instant::now()) < reserve {
            // Queueing used up the deadline: sending now would likely time out and leave
            // a write's outcome unknown. Not sending is a clean "retry later".
            return Err(queue_full(path));
        }
        let last_chance = deadline.checked_sub(reserve).unwrap_or(deadline);
        loop {
            let report = self.pacer.next_report();
            let now = Instant::now();
            let max_wait = last_chance.saturating_duration_since(now);
            match self.pacer.reserve_in_flight(now, max_wait) {
                Ok((wait, in_flight)) if wait.is_zero() => return Ok(in_flight),
                Ok((wait, mut in_flight)) => {
                    log_pacing(path, attempt, wait, "pacing zulip call");
                    self.wait_for_slot(now + wait).await;
                    in_flight.sending();
                    return Ok(in_flight);
                }
                Err(wait) if !max_wait.is_zero() && self.pacer.report_expected() => {
                    log_pacing(path, attempt, wait, "zulip call waits for a fresher rate-limit report");
                    tokio::select! {
                        () = report => {}
                        () = tokio::time::sleep_until(last_chance) => {}
                    }
                }
                Err(wait) => {
                    log_pacing(path, attempt, wait, "zulip call not sent: the wait would pass the deadline");
                    return Err(ZulipError::Throttled {
                        reason: "the service account's rate-limit budget is spent",
                        retry_after: wait,
                    });
                }
            }
        }
    }

    /// Sleeps until `slot`, or less: a report that shows the budget plentiful again (the
    /// reset of a short window, which the last report could not tell) ends the wait.
    async fn wait_for_slot(&self, slot: Instant) {
        loop {
            let report = self.pacer.next_report();
            if self.pacer.clear_to_send(Instant::now()) {
                return;
            }
            tokio::select! {
                () = report => {}
                () = tokio::time::sleep_until(slot) => return,
            }
        }
    }

    /// One request: query string for GET, form body otherwise; then [`decode`].
    async fn send_once<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        params: &Params,
        auth: Auth,
        timeout: Duration,
    ) -> Result<T, ZulipError> {
        let mut url = Url::parse(&format!("{}{path}", self.api_root))
            .map_err(|e| ZulipError::Config(format!("cannot build url for {path}: {e}")))?;
        let encoded = encode_params(params);
        let is_get = method == Method::GET;
        if is_get && !params.is_empty() {
            url.set_query(Some(&encoded));
        }

        let mut request = self.http.request(method.clone(), url).timeout(timeout);
        if let Some(host) = &self.host {
            request = request.header(HOST, host.clone());
        }
        if auth == Auth::Basic {
            request = request.header(AUTHORIZATION, self.authorization.expose().clone());
        }
        if !is_get && !params.is_empty() {
            request = request.header(CONTENT_TYPE, FORM_CONTENT_TYPE).body(encoded);
        }

        let started = Instant::now();
        let observe = |status: u16| {
            if let Some(observer) = &self.observer {
                observer(&endpoint_template(method, path), status, started.elapsed());
            }
        };
        let response = request.send().await.map_err(|e| {
            tracing::debug!(error = %e, timeout = e.is_timeout(), connect = e.is_connect(), "zulip request failed");
            observe(0);
            ZulipError::Transport(e)
        })?;
        let status = response.status();
        observe(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.counters.rate_limited();
        }
        let headers = response.headers().clone();
        self.record_rate_limit(&headers, started);
        let body = read_body(response).await?;
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "zulip answered"
        );
        decode(status, &headers, &body)
    }

    /// Hands the response's rate-limit report (of a request sent at `sent`) to the pacer.
    fn record_rate_limit(&self, headers: &HeaderMap, sent: Instant) {
        if let Some(state) = rate_limit_from_headers(headers) {
            let server_now = http_date(headers).unwrap_or_else(unix_now);
            self.pacer.observe_sent(state, server_now, sent, Instant::now());
        }
    }
}

impl std::fmt::Debug for ZulipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZulipClient")
            .field("api_root", &self.api_root)
            .field("host", &self.host)
            .field("email", &self.email)
            .field("authorization", &self.authorization)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

// === wire helpers ===

/// Reads the whole body, bounded by [`MAX_BODY_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ZulipError> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ZulipError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ZulipError::Decode {
                status,
                detail: format!("body larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `application/x-www-form-urlencoded` (also the query-string spelling).
fn encode_params(params: &[(&'static str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// A list of ids as JSON text: `[10, 227]`.
fn json_ids(ids: &[u64]) -> String {
    json_text(&Value::from(ids.to_vec()))
}

/// JSON text for a form field, spelled like the transcripts (Python's `json.dumps`:
/// `", "` between items, `": "` after keys). Infallible, unlike `serde_json::to_string`.
pub(crate) fn json_text(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push_str(": ");
                    write(item, out);
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// `X-RateLimit-Limit/Remaining/Reset` (any capitalisation; Tornado sends `X-Ratelimit-*`).
/// `None` unless all three are present and numeric (401s and unauthenticated calls carry none).
fn rate_limit_from_headers(headers: &HeaderMap) -> Option<RateLimitState> {
    fn number(headers: &HeaderMap, name: &str) -> Option<f64> {
        let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    }
    Some(RateLimitState {
        limit: number(headers, "x-ratelimit-limit")? as u32,
        remaining: number(headers, "x-ratelimit-remaining")? as u32,
        reset: number(headers, "x-ratelimit-reset")? as u64,
    })
}

/// A pacing decision, at debug.
fn log_pacing(path: &str, attempt: u32, wait: Duration, what: &'static str) {
    tracing::debug!(
        endpoint = path,
        attempt,
        wait_ms = wait.as_millis() as u64,
        reason = "rate-limit budget",
        "{what}"
    );
}

/// The call never left: the realm's queue did not admit it in time to be answered within
/// the deadline.
fn queue_full(path: &str) -> ZulipError {
    tracing::debug!(
        endpoint = path,
        wait_ms = QUEUE_RETRY_AFTER.as_millis() as u64,
        reason = "queue full",
        "zulip call not sent: the realm's queue did not admit it before the deadline"
    );
    ZulipError::Throttled {
        reason: "the realm's upstream queue did not admit the call before the deadline",
        retry_after: QUEUE_RETRY_AFTER,
    }
}

/// Zulip's clock when it answered: the `Date` header (`Tue, 24 Nov 2026 02:56:29 GMT`),
/// as UNIX seconds.
fn http_date(headers: &HeaderMap) -> Option<u64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let value = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let at = time::PrimitiveDateTime::parse(value.trim(), &format).ok()?;
    u64::try_from(at.assume_utc().unix_timestamp()).ok()
}

/// The local wall clock as UNIX seconds (0 before 1970: any reset is then believed up to
/// [`super::pacing::MAX_RESET_IN`]).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds as a float, e.g. `"50.313318967819214"`.
fn seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

/// The part of Zulip's envelope read before the data.
#[derive(serde::Deserialize)]
struct EnvelopeHead {
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    ignored_parameters_unsupported: Option<Vec<Value>>,
}

/// `include_custom_profile_fields=true` when a field's value is wanted.
fn profile_params(field: Option<u64>) -> Params {
    match field {
        Some(_) => vec![("include_custom_profile_fields", "true".to_owned())],
        None => Vec::new(),
    }
}

/// Turns one response into `T` (the success envelope's data) or a [`ZulipError`].
///
/// - `{"result":"success", …}` with a 2xx status → `T` from the whole envelope;
/// - `{"result":"error", msg, code?}` → `Api` (`code` defaults to `BAD_REQUEST`, as Zulip's
///   own default; 405 bodies have none), with `retry_after` from the `Retry-After` header,
///   else the body's `"retry-after"`;
/// - anything else (HTML 404 page, empty or truncated body, unexpected shape) → `Decode`.
pub(crate) fn decode<T: DeserializeOwned>(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ZulipError> {
    let code = status.as_u16();
    let decode_error = |detail: String| ZulipError::Decode { status: code, detail };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("no content type");

    // Only the envelope's head is read first: a large success body (`GET /users` of a big
    // realm) is then decoded straight into `T`, never through a `serde_json::Value` tree.
    let head: EnvelopeHead = serde_json::from_slice(body)
        .map_err(|e| decode_error(format!("{} byte {content_type} body is not json: {e}", body.len())))?;
    match head.result.as_deref() {
        Some("success") if status.is_success() => {
            if let Some(ignored) = head.ignored_parameters_unsupported {
                tracing::warn!(parameters = ?ignored, "zulip ignored parameters it does not know");
            }
            serde_json::from_slice(body).map_err(|e| decode_error(format!("unexpected success body: {e}")))
        }
        Some("error") => {
            let envelope: Value = serde_json::from_slice(body)
                .map_err(|e| decode_error(format!("error body is not json: {e}")))?;
            let text = |key: &str| envelope.get(key).and_then(Value::as_str).map(str::to_owned);
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .and_then(seconds)
                .or_else(|| envelope.get("retry-after").and_then(Value::as_f64).and_then(seconds));
            Err(ZulipError::Api {
                status: code,
                code: text("code").unwrap_or_else(|| "BAD_REQUEST".to_owned()),
                msg: text("msg").unwrap_or_default(),
                retry_after,
            })
        }
        other => Err(decode_error(format!("json {content_type} body with result {other:?} on http {code}"))),
    }
}

#[cfg(test)]
mod tests;
