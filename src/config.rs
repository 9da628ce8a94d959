//! Configuration: figment layering (defaults < `sidecar.yaml` < `SCIM_SIDECAR_*` env with `__`
//! nesting) into a raw serde DTO, then validated into [`Config`], reporting every problem at once.
//!
//! CONTRACT (loading/validation owned by the config helper; keep these types):
//! - `Config::load(path: &Path) -> Result<Config, ConfigError>`
//! - `Config::from_figment(figment::Figment) -> Result<Config, ConfigError>`
//! - `Config::redacted(&self) -> serde_json::Value` (secrets shown as `***`)
//!
//! # Two stages
//!
//! 1. **Raw**: [`RawConfig`], [`RawRealm`] and [`RawUpstream`] are serde DTOs that mirror the
//!    YAML keys one to one (`deny_unknown_fields`; defaults are serde defaults, the lowest
//!    layer). Each realm is extracted on its own, so one broken realm cannot hide the
//!    problems of another, and unknown keys are listed all at once by comparing every map
//!    against the field names serde itself declares for the DTO.
//! 2. **Validated**: [`Config`] has no `Option` that is really required, durations instead
//!    of milliseconds, parsed URLs, and bearer tokens reduced to SHA-256 digests. Every problem
//!    found on the way is collected into [`ConfigError::Invalid`], each message starting with
//!    the key path (`realms.acme.bearer_token: empty token`). No message ever contains a
//!    secret: values of secret keys are never echoed, file contents never printed.
//!
//! Unknown keys and semantic problems are all reported at once. A wrong *type* stops serde
//! in that section (the top level, one realm), so a second wrong type, or one behind an
//! unknown key, in the same section shows up on the next run.
//!
//! # Environment
//!
//! `SCIM_SIDECAR_<KEY>` overrides `<key>`; `__` descends one level:
//! `SCIM_SIDECAR_REALMS__ACME__UPSTREAM__TIMEOUT_MS=5000`. Environment keys are lowercased,
//! which is why realm names must be lowercase (a realm `Acme` could never be overridden).
//! `SCIM_SIDECAR_CONFIG` is the CLI's config path and is not a key. Values are read like
//! figment's `Env` (`true`, `10`, `[a, b]`), except that the secret and path keys
//! (`bearer_token*`, `api_key*`) keep their text verbatim unless it starts with `[` (a list),
//! so an all-digit token is never turned into a number.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::{Actual, Kind};
use figment::providers::{Env, Format, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use url::{Host, Url};

use secret::Secret;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SCIM_SIDECAR_";

/// Shortest bearer token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Longest label Zulip accepts for a custom profile field.
pub const MAX_PROFILE_FIELD_LABEL: usize = 40;

/// Startup configuration failure; `main` prints it and exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read at all (YAML syntax error, unreadable config file).
    #[error(transparent)]
    Figment(#[from] Box<figment::Error>),
    /// Every problem found, each naming its key path.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Access-log / tracing output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers (default).
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// What `DELETE /Users/{id}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDelete {
    /// Deactivate the Zulip account, answer 204 (default).
    #[default]
    Deactivate,
    /// Zulip's built-in answer: 400.
    Reject,
}

/// What `DELETE /Groups/{id}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupDelete {
    /// Rename and deactivate the Zulip group, answer 204 (default).
    #[default]
    Deactivate,
    /// Zulip's built-in answer: 501.
    Reject,
}

/// How member ids that are not active users of the realm are treated in group writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownMembers {
    /// 400 `invalidValue` naming them (default).
    #[default]
    Reject,
    /// Drop them silently (for clients that send stale ids).
    Ignore,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
    /// Concurrent connections accepted.
    pub max_connections: usize,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long one IdP request may wait upstream in total (retries included).
    pub request_deadline: Duration,
    /// How long a realm snapshot is trusted without a refresh when live events are off.
    pub snapshot_ttl: Duration,
    pub realms: Vec<RealmConfig>,
}

/// One Zulip organization served by the sidecar.
#[derive(Debug, Clone)]
pub struct RealmConfig {
    /// The key under `realms:` (the Zulip subdomain, `root` for the root domain).
    pub name: String,
    /// The realm's public URL: `meta.location` base and the Host sent upstream.
    pub url: Url,
    /// If non-empty, a request must carry one of these Host values (lowercased at load).
    pub hosts: Vec<String>,
    /// SHA-256 digests of every accepted bearer token (plain tokens are hashed at load).
    pub bearer_token_sha256: Vec<[u8; 32]>,
    pub scim_client_name: String,
    pub name_formatted_included: bool,
    pub create_guests_without_streams: bool,
    pub user_delete: UserDelete,
    pub reactivate_on_create: bool,
    pub group_delete: GroupDelete,
    pub unknown_members: UnknownMembers,
    /// The label of the Zulip custom profile field (short text) that stores SCIM
    /// `externalId`; `None`: `externalId` is not stored (accepted and ignored on input).
    pub external_id_field: Option<String>,
    pub upstream: UpstreamConfig,
}

/// How the sidecar reaches the realm's Zulip API.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Where `/api/v1` is reached (default: the realm url).
    pub url: Url,
    /// The service account's delivery e-mail.
    pub email: String,
    pub api_key: Secret<String>,
    pub timeout: Duration,
    pub allow_insecure_upstream: bool,
    /// Calls in flight to this realm's Zulip at once (writes to different users and groups
    /// run concurrently up to it; writes to one entity always keep their order).
    pub max_in_flight: usize,
}

// === token helpers (shared with `scim-sidecar hash-token`) ===

/// The SHA-256 digest under which a bearer token is stored and compared.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Why `token` is not acceptable as a bearer token, if it is not.
pub fn token_problem(token: &str) -> Option<String> {
    if token.is_empty() {
        Some("empty token".to_owned())
    } else if token.chars().count() < MIN_TOKEN_LEN {
        Some(format!("token too short (weak): at least {MIN_TOKEN_LEN} characters required"))
    } else {
        None
    }
}

/// A secret as read from a file or stdin: without its trailing line break(s) (`echo` and
/// editors add one; Kubernetes secrets often keep it).
pub fn trim_secret(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

// === raw DTOs ===

/// The top level of `sidecar.yaml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Socket address the SCIM server listens on. Default `0.0.0.0:8080`.
    #[serde(default = "defaults::listen")]
    listen: String,
    /// `json` (one object per line, for log shippers) or `pretty` (for people). Default `json`.
    #[serde(default)]
    log_format: LogFormat,
    /// How long in-flight requests may finish after SIGTERM/SIGINT, in ms. Default 10000.
    #[serde(default = "defaults::shutdown_grace_ms")]
    shutdown_grace_ms: u64,
    /// Concurrent connections accepted; more wait in the kernel backlog. Default 1024.
    #[serde(default = "defaults::max_connections")]
    max_connections: usize,
    /// Largest request body accepted (413 above). Default 1 MiB.
    #[serde(default = "defaults::max_body_bytes")]
    max_body_bytes: usize,
    /// Total time one SCIM request may spend upstream, retries included, in ms. Default 25000.
    #[serde(default = "defaults::request_deadline_ms")]
    request_deadline_ms: u64,
    /// How long a realm snapshot (users, groups) is trusted before a refresh, in ms.
    /// Default 60000.
    #[serde(default = "defaults::snapshot_ttl_ms")]
    snapshot_ttl_ms: u64,
    /// Realm name → [`RawRealm`]. Ignored here: each realm is extracted on its own (see
    /// [`Config::from_figment`]) so that one broken realm does not hide another's problems.
    #[serde(default)]
    #[allow(dead_code)]
    realms: Option<IgnoredAny>,
}

/// One entry under `realms:`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRealm {
    /// The realm's public URL, `http(s)://host[:port]` without path or query. Required.
    url: Option<String>,
    /// Host header values a request must carry (one or a list). Default: any host.
    #[serde(default)]
    hosts: OneOrMany<String>,
    /// Accepted bearer token(s), in clear. Hashed at load.
    #[serde(default)]
    bearer_token: OneOrMany<RawSecret>,
    /// File(s) each holding one bearer token (trailing newline ignored).
    #[serde(default)]
    bearer_token_file: OneOrMany<PathBuf>,
    /// SHA-256 digest(s) of accepted tokens, 64 hex characters (`scim-sidecar hash-token`).
    #[serde(default)]
    bearer_token_sha256: OneOrMany<String>,
    /// Name reported for the SCIM client in logs. Default: the realm name.
    scim_client_name: Option<String>,
    /// `true` to emit and read `name.formatted` (Entra), `false` for given/family (Okta).
    #[serde(default)]
    name_formatted_included: bool,
    /// `true` to create guests without default stream subscriptions.
    #[serde(default)]
    create_guests_without_streams: bool,
    /// `deactivate` (default) or `reject`.
    #[serde(default)]
    user_delete: UserDelete,
    /// POST of a deactivated account's address reactivates it (default `true`; `false`: 409).
    #[serde(default = "defaults::yes")]
    reactivate_on_create: bool,
    /// `deactivate` (default) or `reject`.
    #[serde(default)]
    group_delete: GroupDelete,
    /// `reject` (default) or `ignore` member ids that are not active users.
    #[serde(default)]
    unknown_members: UnknownMembers,
    /// Label of the custom profile field that stores `externalId` (created if missing).
    external_id_field: Option<String>,
    /// How to reach the realm's Zulip API. Required.
    upstream: Option<RawUpstream>,
}

/// `realms.<name>.upstream`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    /// Where Zulip's API is reached. Default: the realm url.
    url: Option<String>,
    /// Delivery e-mail of the service account. Required.
    email: Option<String>,
    /// The service account's API key (32 letters and digits); or `api_key_file`.
    api_key: Option<RawSecret>,
    /// File holding the API key (trailing newline ignored); or `api_key`.
    api_key_file: Option<PathBuf>,
    /// Timeout of one upstream HTTP request, in ms. Default 10000.
    #[serde(default = "defaults::timeout_ms")]
    timeout_ms: u64,
    /// Allow plain `http://` to a host other than loopback (the API key crosses the network
    /// in clear). Default `false`.
    #[serde(default)]
    allow_insecure_upstream: bool,
    /// Calls in flight to Zulip at once, 1..=64. Default 8.
    #[serde(default = "defaults::max_in_flight")]
    max_in_flight: usize,
}

/// The most calls in flight to one realm's Zulip that `max_in_flight` accepts.
pub const MAX_IN_FLIGHT_LIMIT: usize = 64;

mod defaults {
    pub(super) fn listen() -> String {
        "0.0.0.0:8080".to_owned()
    }
    pub(super) fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub(super) fn max_connections() -> usize {
        1024
    }
    pub(super) fn max_body_bytes() -> usize {
        1024 * 1024
    }
    pub(super) fn request_deadline_ms() -> u64 {
        25_000
    }
    pub(super) fn snapshot_ttl_ms() -> u64 {
        60_000
    }
    pub(super) fn timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn max_in_flight() -> usize {
        8
    }
    pub(super) fn yes() -> bool {
        true
    }
}

/// A secret string while still raw; `Debug` prints `***`.
#[derive(Debug)]
struct RawSecret(Secret<String>);

impl From<String> for RawSecret {
    fn from(value: String) -> Self {
        RawSecret(Secret::new(value))
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(RawSecret::from)
    }
}

/// `key: value` or `key: [value, …]` (several at once, e.g. while rotating a token).
#[derive(Debug)]
struct OneOrMany<T>(Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: From<String> + Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);

        impl<'de, T: From<String> + Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![T::from(v.to_owned())]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

/// The keys a `#[derive(Deserialize)]` struct accepts, asked of serde itself, so that the
/// unknown-key report cannot drift from the DTOs.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("field probe"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("field probe"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always fails: it only records the field list on the way.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

// === environment provider ===

/// Name of [`SidecarEnv`]'s metadata, used to name the variable in problem messages.
const ENV_METADATA_NAME: &str = "environment variable";

/// Leaf keys whose environment value is kept verbatim (secrets and secret paths).
const VERBATIM_KEYS: &[&str] =
    &["bearer_token", "bearer_token_file", "bearer_token_sha256", "api_key", "api_key_file"];

/// `SCIM_SIDECAR_*` variables with `__` nesting: figment's `Env`, except that values of
/// [`VERBATIM_KEYS`] are not parsed (see the module doc) and messages name the variable.
struct SidecarEnv(Env);

impl SidecarEnv {
    fn new() -> Self {
        SidecarEnv(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]))
    }
}

impl Provider for SidecarEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_METADATA_NAME).interpolater(|_: &Profile, keys: &[&str]| {
            format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, raw) in self.0.iter() {
            let path: Vec<&str> = key.as_str().split('.').collect();
            let leaf = path.last().copied().unwrap_or_default();
            let value = if VERBATIM_KEYS.contains(&leaf) && !raw.trim_start().starts_with('[') {
                Value::from(raw)
            } else {
                match raw.parse::<Value>() {
                    Ok(value) => value,
                    Err(never) => match never {},
                }
            };
            insert_path(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert_path(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [leaf] => {
            dict.insert((*leaf).to_owned(), value);
        }
        [head, rest @ ..] => {
            let entry = dict.entry((*head).to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

// === impl Config ===

impl Config {
    /// The standard layering: `path` (YAML, if the file exists) < `SCIM_SIDECAR_*` variables.
    pub fn figment(path: &Path) -> Figment {
        let mut figment = Figment::new();
        if path.exists() {
            figment = figment.merge(Yaml::file_exact(path));
        }
        figment.merge(SidecarEnv::new())
    }

    /// Loads and validates [`Config::figment`]`(path)`.
    ///
    /// A missing file is not an error by itself: a container may be configured by
    /// environment variables alone. It is reported when no realm comes from the
    /// environment either.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let figment = Self::figment(path);
        let file_missing = std::fs::metadata(path).err();
        match (Self::from_figment(figment), file_missing) {
            (Err(ConfigError::Invalid(mut problems)), Some(err)) => {
                if let Some(at) = problems.iter().position(|p| p == NO_REALMS) {
                    problems[at] = format!(
                        "{}: cannot read configuration file: {err} (and no realm is configured \
                         through {ENV_PREFIX}REALMS__<NAME>__* variables)",
                        path.display()
                    );
                }
                Err(ConfigError::Invalid(problems))
            }
            (result, _) => result,
        }
    }

    /// Extracts and validates a configuration from any figment (tests use YAML strings).
    ///
    /// A source that cannot be read at all (YAML syntax) is [`ConfigError::Figment`]; every
    /// other problem, including unknown keys and wrong types, lands in
    /// [`ConfigError::Invalid`], all at once.
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        // Fails only when a provider failed (YAML syntax, unreadable file); the error names it.
        let root = figment.extract::<Dict>().map_err(|err| ConfigError::Figment(Box::new(err)))?;
        let mut problems = Problems::new(&figment);
        problems.unknown_keys("", &root, fields_of::<RawConfig>());
        let raw = match figment.extract::<RawConfig>() {
            Ok(raw) => Some(raw),
            Err(err) => {
                problems.figment(err, "");
                None
            }
        };

        let mut tokens = TokenRegistry::default();
        let mut realms = Vec::new();
        match root.get("realms") {
            None => problems.push_raw(NO_REALMS.to_owned()),
            Some(Value::Dict(_, dict)) if dict.is_empty() => problems.push_raw(NO_REALMS.to_owned()),
            Some(Value::Dict(_, dict)) => {
                for (name, value) in dict {
                    if let Some(realm) = realm(name, value, &mut problems, &mut tokens) {
                        realms.push(realm);
                    }
                }
            }
            Some(_) => problems.push("realms", "expected a map of realm name to realm"),
        }

        let config = raw.and_then(|raw| top_level(raw, realms, &mut problems));
        match config {
            Some(config) if problems.list.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(problems.list)),
        }
    }

    /// The validated configuration as JSON for `check-config`: bearer tokens as a count and
    /// the first 8 hex characters of each digest, API keys as `***`.
    pub fn redacted(&self) -> serde_json::Value {
        let realms: serde_json::Map<String, serde_json::Value> =
            self.realms.iter().map(|realm| (realm.name.clone(), realm.redacted())).collect();
        json!({
            "listen": self.listen.to_string(),
            "log_format": self.log_format,
            "shutdown_grace_ms": millis(self.shutdown_grace),
            "max_connections": self.max_connections,
            "max_body_bytes": self.max_body_bytes,
            "request_deadline_ms": millis(self.request_deadline),
            "snapshot_ttl_ms": millis(self.snapshot_ttl),
            "realms": realms,
        })
    }
}

// === impl RealmConfig ===

impl RealmConfig {
    fn redacted(&self) -> serde_json::Value {
        let prefixes: Vec<String> =
            self.bearer_token_sha256.iter().map(|digest| hex::encode(&digest[..4])).collect();
        json!({
            "url": self.url.as_str(),
            "hosts": self.hosts,
            "bearer_token_sha256": { "count": prefixes.len(), "prefixes": prefixes },
            "scim_client_name": self.scim_client_name,
            "name_formatted_included": self.name_formatted_included,
            "create_guests_without_streams": self.create_guests_without_streams,
            "user_delete": self.user_delete,
            "reactivate_on_create": self.reactivate_on_create,
            "group_delete": self.group_delete,
            "unknown_members": self.unknown_members,
            "external_id_field": self.external_id_field,
            "upstream": {
                "url": self.upstream.url.as_str(),
                "email": self.upstream.email,
                "api_key": "***",
                "timeout_ms": millis(self.upstream.timeout),
                "allow_insecure_upstream": self.upstream.allow_insecure_upstream,
                "max_in_flight": self.upstream.max_in_flight,
            },
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

// === validation ===

const NO_REALMS: &str =
    "realms: no realm configured (add one under `realms:` or set SCIM_SIDECAR_REALMS__<NAME>__URL)";

fn top_level(raw: RawConfig, realms: Vec<RealmConfig>, problems: &mut Problems) -> Option<Config> {
    let before = problems.list.len();
    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push("listen", "not an IP socket address (expected e.g. 0.0.0.0:8080 or [::]:8080)");
            None
        }
    };
    let shutdown_grace = positive_ms(problems, "shutdown_grace_ms", raw.shutdown_grace_ms);
    let request_deadline = positive_ms(problems, "request_deadline_ms", raw.request_deadline_ms);
    let snapshot_ttl = positive_ms(problems, "snapshot_ttl_ms", raw.snapshot_ttl_ms);
    for (key, value) in [("max_connections", raw.max_connections), ("max_body_bytes", raw.max_body_bytes)] {
        if value == 0 {
            problems.push(key, "must be greater than 0");
        }
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Config {
        listen: listen?,
        log_format: raw.log_format,
        shutdown_grace,
        max_connections: raw.max_connections,
        max_body_bytes: raw.max_body_bytes,
        request_deadline,
        snapshot_ttl,
        realms,
    })
}

fn positive_ms(problems: &mut Problems, key: &str, ms: u64) -> Duration {
    if ms == 0 {
        problems.push(key, "must be greater than 0");
    }
    Duration::from_millis(ms)
}

/// Validates `realms.<name>`; `None` when it has problems (all pushed to `problems`).
fn realm(
    name: &str,
    value: &Value,
    problems: &mut Problems,
    tokens: &mut TokenRegistry,
) -> Option<RealmConfig> {
    let key = format!("realms.{name}");
    if name.is_empty() {
        problems
            .push("realms.\"\"", "the empty realm name is not allowed: name the root-domain realm `root`");
        return None;
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        problems.push(
            &key,
            "realm names may contain only lowercase letters, digits, `-` and `_` \
             (environment overrides are lowercased)",
        );
        return None;
    }
    let Value::Dict(_, dict) = value else {
        problems.push(&key, "expected a map of realm settings");
        return None;
    };
    let before = problems.list.len();
    problems.unknown_keys(&key, dict, fields_of::<RawRealm>());
    if let Some(Value::Dict(_, upstream)) = dict.get("upstream") {
        problems.unknown_keys(&format!("{key}.upstream"), upstream, fields_of::<RawUpstream>());
    }
    // `focus` rather than `extract_inner`: error paths stay relative to the realm.
    let raw = match problems.figment.focus(&key).extract::<RawRealm>() {
        Ok(raw) => raw,
        Err(err) => {
            problems.figment(err, &key);
            return None;
        }
    };

    let url = match raw.url.as_deref() {
        None => {
            problems.push(&format!("{key}.url"), "required");
            None
        }
        Some(url) => http_url(url).map_err(|why| problems.push(&format!("{key}.url"), &why)).ok(),
    };
    let hosts = raw
        .hosts
        .0
        .iter()
        .enumerate()
        .filter_map(|(i, host)| {
            let host = host.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                problems.push(&indexed(&key, "hosts", i, raw.hosts.0.len()), "not a host name");
                None
            } else {
                Some(host)
            }
        })
        .collect();
    let bearer_token_sha256 = realm_tokens(&key, &raw, problems, tokens);
    let scim_client_name = raw.scim_client_name.unwrap_or_else(|| name.to_owned());
    if scim_client_name.trim().is_empty() {
        problems.push(&format!("{key}.scim_client_name"), "must not be empty");
    }
    let upstream = match (&raw.upstream, &url) {
        (None, _) => {
            problems.push(&format!("{key}.upstream"), "required");
            None
        }
        (Some(upstream_raw), url) => upstream(&key, upstream_raw, url.as_ref(), problems),
    };
    let external_id_field = raw.external_id_field.as_deref().map(str::trim).map(str::to_owned);
    if let Some(label) = &external_id_field {
        if let Some(problem) = profile_field_label_problem(label) {
            problems.push(&format!("{key}.external_id_field"), &problem);
        }
    }

    if problems.list.len() > before {
        return None;
    }
    Some(RealmConfig {
        name: name.to_owned(),
        url: url?,
        hosts,
        bearer_token_sha256,
        scim_client_name,
        name_formatted_included: raw.name_formatted_included,
        create_guests_without_streams: raw.create_guests_without_streams,
        user_delete: raw.user_delete,
        reactivate_on_create: raw.reactivate_on_create,
        group_delete: raw.group_delete,
        unknown_members: raw.unknown_members,
        external_id_field,
        upstream: upstream?,
    })
}

/// Why `label` cannot name a Zulip custom profile field, if it cannot (Zulip refuses blank
/// labels and labels over 40 characters).
fn profile_field_label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        Some("must not be empty (leave the key out to not store externalId)".to_owned())
    } else if label.chars().count() > MAX_PROFILE_FIELD_LABEL {
        Some(format!("longer than Zulip's {MAX_PROFILE_FIELD_LABEL} characters for a profile field label"))
    } else if label.chars().any(char::is_control) {
        Some("contains control characters".to_owned())
    } else {
        None
    }
}

/// `realms.x.bearer_token[2]` when a list was given, `realms.x.bearer_token` otherwise.
fn indexed(realm_key: &str, field: &str, i: usize, len: usize) -> String {
    if len > 1 {
        format!("{realm_key}.{field}[{i}]")
    } else {
        format!("{realm_key}.{field}")
    }
}

/// Every token of a realm, reduced to digests; duplicates are reported via `tokens`.
fn realm_tokens(
    key: &str,
    raw: &RawRealm,
    problems: &mut Problems,
    tokens: &mut TokenRegistry,
) -> Vec<[u8; 32]> {
    let mut digests = Vec::new();
    let mut accept = |problems: &mut Problems, at: String, digest: [u8; 32]| {
        if let Some(first) = tokens.first_use(digest, &at) {
            problems.push(&at, &format!("the same token is already configured at {first}"));
        }
        digests.push(digest);
    };

    let n = raw.bearer_token.0.len();
    for (i, token) in raw.bearer_token.0.iter().enumerate() {
        let at = indexed(key, "bearer_token", i, n);
        match token_problem(token.0.expose()) {
            Some(why) => problems.push(&at, &why),
            None => accept(problems, at, token_digest(token.0.expose())),
        }
    }

    let n = raw.bearer_token_file.0.len();
    for (i, path) in raw.bearer_token_file.0.iter().enumerate() {
        let at = indexed(key, "bearer_token_file", i, n);
        match read_secret_file(path) {
            Err(why) => problems.push(&at, &why),
            Ok(token) => match token_problem(trim_secret(token.expose())) {
                Some(why) => problems.push(&at, &format!("{}: {why}", path.display())),
                None => accept(problems, at, token_digest(trim_secret(token.expose()))),
            },
        }
    }

    let n = raw.bearer_token_sha256.0.len();
    for (i, text) in raw.bearer_token_sha256.0.iter().enumerate() {
        let at = indexed(key, "bearer_token_sha256", i, n);
        let mut digest = [0u8; 32];
        match hex::decode_to_slice(text.trim(), &mut digest) {
            Ok(()) => accept(problems, at, digest),
            Err(_) => problems.push(&at, "not a SHA-256 digest (expected 64 hex characters)"),
        }
    }

    if raw.bearer_token.0.is_empty()
        && raw.bearer_token_file.0.is_empty()
        && raw.bearer_token_sha256.0.is_empty()
    {
        problems.push(key, "no bearer token: set bearer_token, bearer_token_file or bearer_token_sha256");
    }
    digests
}

fn upstream(
    realm_key: &str,
    raw: &RawUpstream,
    realm_url: Option<&Url>,
    problems: &mut Problems,
) -> Option<UpstreamConfig> {
    let key = format!("{realm_key}.upstream");
    let before = problems.list.len();

    let url = match raw.url.as_deref() {
        Some(url) => http_url(url).map_err(|why| problems.push(&format!("{key}.url"), &why)).ok(),
        None => realm_url.cloned(),
    };
    if let Some(url) = &url {
        if url.scheme() == "http" && !is_loopback(url) && !raw.allow_insecure_upstream {
            let defaulted =
                if raw.url.is_none() { format!(" (defaulted from {realm_key}.url)") } else { String::new() };
            problems.push(
                &format!("{key}.url"),
                &format!(
                    "plain http to a non-loopback host would send the API key in clear{defaulted}: \
                     use https, or set allow_insecure_upstream: true"
                ),
            );
        }
    }

    let email = match raw.email.as_deref().map(str::trim) {
        None | Some("") => {
            problems.push(&format!("{key}.email"), "required");
            None
        }
        Some(email) if !email.contains('@') => {
            problems.push(&format!("{key}.email"), "not an e-mail address");
            None
        }
        Some(email) => Some(email.to_owned()),
    };

    let api_key = match (&raw.api_key, &raw.api_key_file) {
        (Some(_), Some(_)) => {
            problems.push(&key, "set only one of api_key and api_key_file");
            None
        }
        (None, None) => {
            problems.push(&key, "set api_key or api_key_file");
            None
        }
        (Some(key_value), None) => match api_key_problem(key_value.0.expose()) {
            Some(why) => {
                problems.push(&format!("{key}.api_key"), why);
                None
            }
            None => Some(key_value.0.clone()),
        },
        (None, Some(path)) => match read_secret_file(path) {
            Err(why) => {
                problems.push(&format!("{key}.api_key_file"), &why);
                None
            }
            Ok(contents) => {
                let api_key = trim_secret(contents.expose());
                match api_key_problem(api_key) {
                    Some(why) => {
                        problems.push(&format!("{key}.api_key_file"), &format!("{}: {why}", path.display()));
                        None
                    }
                    None => Some(Secret::new(api_key.to_owned())),
                }
            }
        },
    };

    if raw.timeout_ms == 0 {
        problems.push(&format!("{key}.timeout_ms"), "must be greater than 0");
    }
    if raw.max_in_flight == 0 || raw.max_in_flight > MAX_IN_FLIGHT_LIMIT {
        problems
            .push(&format!("{key}.max_in_flight"), &format!("must be between 1 and {MAX_IN_FLIGHT_LIMIT}"));
    }

    if problems.list.len() > before {
        return None;
    }
    Some(UpstreamConfig {
        url: url?,
        email: email?,
        api_key: api_key?,
        timeout: Duration::from_millis(raw.timeout_ms),
        allow_insecure_upstream: raw.allow_insecure_upstream,
        max_in_flight: raw.max_in_flight,
    })
}

/// Zulip API keys are 32 ASCII letters and digits.
fn api_key_problem(api_key: &str) -> Option<&'static str> {
    if api_key.is_empty() {
        Some("empty API key")
    } else if api_key.len() != 32 || !api_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Some("not a Zulip API key (expected 32 letters and digits)")
    } else {
        None
    }
}

/// Reads a secret file; the error names the file, never its contents.
fn read_secret_file(path: &Path) -> Result<Secret<String>, String> {
    std::fs::read_to_string(path)
        .map(Secret::new)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))
}

/// An absolute `http(s)://host[:port]` URL without credentials, path, query or fragment.
/// Errors never echo the URL (it might carry credentials).
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|err| format!("not a valid URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".to_owned());
    }
    if url.host().is_none() {
        return Err("has no host".to_owned());
    }
    if url.path() != "/" {
        return Err(format!("must not have a path (found `{}`)", url.path()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Every token digest seen so far, with where it was first configured.
#[derive(Default)]
struct TokenRegistry(HashMap<[u8; 32], String>);

impl TokenRegistry {
    /// Records `digest` at `at`; returns where it was configured before, if it was.
    fn first_use(&mut self, digest: [u8; 32], at: &str) -> Option<String> {
        match self.0.get(&digest) {
            Some(first) => Some(first.clone()),
            None => {
                self.0.insert(digest, at.to_owned());
                None
            }
        }
    }
}

// === problem collection ===

/// The problems found so far, each `key.path: what is wrong`.
struct Problems<'f> {
    figment: &'f Figment,
    list: Vec<String>,
}

impl<'f> Problems<'f> {
    fn new(figment: &'f Figment) -> Self {
        Problems { figment, list: Vec::new() }
    }

    fn push(&mut self, key: &str, what: &str) {
        self.list.push(format!("{key}: {what}"));
    }

    fn push_raw(&mut self, message: String) {
        self.list.push(message);
    }

    /// Reports every key of `dict` (at `prefix`) that the DTO does not declare.
    fn unknown_keys(&mut self, prefix: &str, dict: &Dict, known: &[&str]) {
        for name in dict.keys().filter(|name| !known.contains(&name.as_str())) {
            let key = join_key(prefix, name);
            let from = self.source_of(&key);
            self.list.push(format!("{key}: unknown key{from} (expected one of: {})", known.join(", ")));
        }
    }

    /// ` (in FILE)` or ` (from SCIM_SIDECAR_…)` for the provider that set `key`, if known.
    fn source_of(&self, key: &str) -> String {
        self.figment.find_metadata(key).map(|md| describe_source(md, key)).unwrap_or_default()
    }

    /// Converts a figment extraction error (possibly several) into problems. `prefix` is the
    /// key path of the focused figment; unknown fields were already reported by `unknown_keys`.
    fn figment(&mut self, err: figment::Error, prefix: &str) {
        for e in err {
            let key = e.path.iter().fold(prefix.to_owned(), |key, part| join_key(&key, part));
            let (key, what) = match &e.kind {
                Kind::UnknownField(..) => continue,
                Kind::MissingField(field) => (join_key(&key, field), "required".to_owned()),
                Kind::DuplicateField(field) => (join_key(&key, field), "given twice".to_owned()),
                kind => (key, describe_kind(kind)),
            };
            let from = e.metadata.as_ref().map(|md| describe_source(md, &key)).unwrap_or_default();
            let key = if key.is_empty() { "configuration".to_owned() } else { key };
            self.list.push(format!("{key}: {what}{from}"));
        }
    }
}

fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn describe_source(md: &Metadata, key: &str) -> String {
    match &md.source {
        Some(Source::File(path)) => format!(" (in {})", path.display()),
        _ if md.name == ENV_METADATA_NAME => {
            let keys: Vec<&str> = key.split('.').collect();
            format!(" (from {})", md.interpolate(&Profile::Default, &keys))
        }
        _ => String::new(),
    }
}

/// A serde error in words, never quoting the offending value (it may be a secret).
fn describe_kind(kind: &Kind) -> String {
    match kind {
        Kind::Message(message) => message.clone(),
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", describe_actual(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid {}: expected {expected}", describe_actual(actual))
        }
        Kind::InvalidLength(len, expected) => format!("expected {expected}, found {len} items"),
        Kind::UnknownVariant(given, expected) => {
            format!("unknown value `{given}` (expected one of: {})", expected.join(", "))
        }
        Kind::UnknownField(field, _) => format!("unknown key `{field}`"),
        Kind::MissingField(field) => format!("missing key `{field}`"),
        Kind::DuplicateField(field) => format!("key `{field}` given twice"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".to_owned(),
        Kind::Unsupported(actual) => format!("unsupported {}", describe_actual(actual)),
        Kind::UnsupportedKey(actual, expected) => {
            format!("unsupported key type {}, expected {expected}", describe_actual(actual))
        }
    }
}

fn describe_actual(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a number",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "an empty value",
        Actual::Seq => "a list",
        Actual::Map => "a map",
        Actual::NewtypeStruct
        | Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant
        | Actual::Other(_) => "a value of another type",
    }
}

#[cfg(test)]
mod tests;
