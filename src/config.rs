//! Configuration: figment layering (defaults < `sidecar.yaml` < `SCIM_SIDECAR_*` env with `__`
//! nesting) into a raw serde DTO, then validated into [`Config`], reporting every problem at once.
//!
//! Entry points: [`Config::load`], [`Config::from_figment`] and [`Config::redacted`].
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
//! Every problem of every realm is reported at once, in plain words (`timeout_ms: must be a
//! whole number, got "soon"`), with a "did you mean" for a misspelt key or value. serde stops
//! at the first value of the wrong type in a section, so such a value is reported, left out
//! (its default applies) and the section read again, until every remaining value fits; the
//! semantic checks then run on what was read. Values of secret keys are never quoted.
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

use crate::audit::AuditTargetConfig;
use secret::Secret;

mod server;
pub use server::{RateLimit, ServerConfig, TlsConfig, MIN_HEADER_BYTES};

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
#[derive(Debug, Clone, PartialEq)]
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
    /// Connection timeouts, HTTP/2 bounds, request-rate limits, TLS (`server:`).
    pub server: ServerConfig,
    /// Log `/livez`, `/readyz` and `/metrics` requests at `info` (else at `debug`).
    pub log_probes: bool,
    /// How often a realm whose writes queue behind Zulip's rate limit logs its progress.
    pub progress_interval: Duration,
    /// Where the audit trail goes (`audit:`; default: the log stream, target `audit`).
    pub audit: AuditTargetConfig,
    /// Reverse proxies in front of the sidecar that append to `X-Forwarded-For`: the client
    /// address for `allow_ips` is the entry this many hops from the right (0: the peer).
    pub trusted_proxy_hops: usize,
    /// How often the config file and the files it names are checked for changes (a change
    /// reloads the configuration); zero: never (SIGHUP still reloads).
    pub watch_interval: Duration,
    /// The files the configuration was read from (secret files, JWKS files), watched for
    /// changes besides the config file itself.
    pub files: Vec<PathBuf>,
    pub realms: Vec<RealmConfig>,
}

/// One Zulip organization served by the sidecar.
#[derive(Debug, Clone, PartialEq)]
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
    /// If non-empty, a request must come from one of these networks (after its token).
    pub allow_ips: Vec<IpNet>,
    /// OAuth 2.0 bearer JWTs accepted besides the static tokens.
    pub jwt: Option<JwtConfig>,
    /// Accept and drop what Zulip cannot hold (addresses besides the account's one, PATCHes
    /// of attributes the realm does not map) instead of answering 400.
    pub ignore_unmapped_attributes: bool,
    /// SCIM attribute → label of the Zulip custom profile field that stores it (keys parsed
    /// and validated at load; sorted by the key as written).
    pub custom_profile_field_map: Vec<(scim::catalog::OptionalAttr, String)>,
    /// Create the fields of `custom_profile_field_map` that Zulip lacks (else: not ready).
    pub create_missing_fields: bool,
    pub upstream: UpstreamConfig,
}

/// `realms.<name>.jwt`: which OAuth 2.0 access tokens (JWTs) the realm accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// The exact `iss` required.
    pub issuer: String,
    /// `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Where the signing keys come from.
    pub jwks_source: JwksSource,
    /// The signing keys (public): read at load from a file; fetched at start, on reload and
    /// every `jwks_refresh` from a URL ([`crate::jwks`]).
    pub jwks: jsonwebtoken::jwk::JwkSet,
    /// How often keys from a URL are fetched again.
    pub jwks_refresh: Duration,
    /// Accepted signature algorithms (`RS256`, `ES256`).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// If non-empty, the token's client (`azp`, `appid` or `client_id`) must be one of these.
    pub client_ids: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Where a realm's JWT signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(Url),
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => write!(f, "{url}"),
        }
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is /32 or
/// /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `addr[/prefix]`; host bits must be zero (`10.0.0.1/8` is refused as a typo).
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| "not an IP network (expected e.g. 10.0.0.0/8 or 2001:db8::/32)".to_owned())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("prefix length must be 0..={max}")),
            },
        };
        let net = IpNet { addr, prefix };
        if net.masked(addr) != addr {
            return Err(format!("host bits set: did you mean {}/{prefix}?", net.masked(addr)));
        }
        Ok(net)
    }

    fn masked(&self, ip: std::net::IpAddr) -> std::net::IpAddr {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                std::net::IpAddr::V4((u32::from(v4) & mask).into())
            }
            std::net::IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                std::net::IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How the sidecar reaches the realm's Zulip API.
#[derive(Debug, Clone, PartialEq)]
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
    } else if token.trim() != token {
        // The header's token is compared without the spaces around it: this one could never match.
        Some(
            "the token starts or ends with whitespace, which an Authorization header cannot carry: remove it"
                .to_owned(),
        )
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
    /// Concurrent connections held open (see `server::limits`). Default 1024.
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
    /// Connection and request limits, TLS. Extracted on its own (see `server::extract`).
    #[serde(default)]
    #[allow(dead_code)]
    server: Option<IgnoredAny>,
    /// `true` to log `/livez`, `/readyz` and `/metrics` requests at `info`. Default `false`
    /// (`debug`).
    #[serde(default)]
    log_probes: bool,
    /// How often a realm whose writes queue behind Zulip's rate limit logs its progress, in
    /// ms. Default 10000.
    #[serde(default = "defaults::progress_interval_ms")]
    progress_interval_ms: u64,
    /// Where audit records go: `{path: FILE | "-", format: json}`. Default: the log stream.
    #[serde(default)]
    audit: Option<RawAudit>,
    /// Proxies in front that append to `X-Forwarded-For` (for `allow_ips`). Default 0.
    #[serde(default)]
    trusted_proxy_hops: usize,
    /// How often the config file and the secret/JWKS files it names are checked for changes
    /// (a change reloads), in ms; 0: never. Default 5000.
    #[serde(default = "defaults::config_watch_ms")]
    config_watch_ms: u64,
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
    /// Networks (CIDR) requests must come from. Default: any.
    #[serde(default)]
    allow_ips: OneOrMany<String>,
    /// OAuth 2.0 bearer JWTs accepted besides static tokens.
    jwt: Option<RawJwt>,
    /// Accept and drop attributes and addresses Zulip cannot hold (default `false`: 400).
    #[serde(default)]
    ignore_unmapped_attributes: bool,
    /// SCIM attribute → custom profile field label (`title: "Job title"`).
    #[serde(default)]
    custom_profile_field_map: std::collections::BTreeMap<String, String>,
    /// Create missing mapped fields (default `false`: the realm stays unready, naming them).
    #[serde(default)]
    create_missing_fields: bool,
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

/// `realms.<name>.jwt`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    /// The exact `iss` (Entra: `https://login.microsoftonline.com/<tenant>/v2.0` or
    /// `https://sts.windows.net/<tenant>/`). Required.
    issuer: Option<String>,
    /// Accepted `aud` value(s) (Entra: the application ID URI or client id). Required.
    #[serde(default)]
    audience: OneOrMany<String>,
    /// JWKS file (`{"keys": [...]}`) with the issuer's public signing keys; or `jwks_url`.
    jwks_file: Option<PathBuf>,
    /// Where the issuer publishes its JWKS (https); or `jwks_file`.
    jwks_url: Option<String>,
    /// How often keys from `jwks_url` are fetched again, in seconds. Default 3600.
    #[serde(default = "defaults::jwks_refresh_s")]
    jwks_refresh_s: u64,
    /// `RS256` and/or `ES256`. Default both.
    #[serde(default)]
    algorithms: OneOrMany<String>,
    /// Accepted client ids (`azp`/`appid`/`client_id`). Default: any client of the issuer.
    #[serde(default)]
    client_ids: OneOrMany<String>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds. Default 60.
    #[serde(default = "defaults::leeway_s")]
    leeway_s: u64,
}

/// `audit:`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    /// File the JSON lines are appended to; `-` for stdout. Required.
    path: Option<String>,
    /// `json` (the only format). Default json.
    #[serde(default)]
    #[allow(dead_code)]
    format: AuditFormat,
}

/// The audit line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// One JSON object per line.
    #[default]
    Json,
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
    pub(super) fn progress_interval_ms() -> u64 {
        10_000
    }
    pub(super) fn timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn config_watch_ms() -> u64 {
        5_000
    }
    pub(super) fn jwks_refresh_s() -> u64 {
        3600
    }
    pub(super) fn leeway_s() -> u64 {
        60
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
        if let Some(Value::Dict(_, audit)) = root.get("audit") {
            problems.unknown_keys("audit", audit, fields_of::<RawAudit>());
        }
        let raw = problems.extract::<RawConfig>("", root.clone());

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

        let server = server::extract(&root, &mut problems);
        let config = raw.and_then(|raw| top_level(raw, server, realms, &mut problems));
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
            "server": self.server.redacted(),
            "log_probes": self.log_probes,
            "progress_interval_ms": millis(self.progress_interval),
            "audit": match &self.audit {
                AuditTargetConfig::Log => json!({"target": "log"}),
                AuditTargetConfig::Stdout => json!({"path": "-", "format": AuditFormat::Json}),
                AuditTargetConfig::File(path) => json!({"path": path.display().to_string(), "format": AuditFormat::Json}),
            },
            "trusted_proxy_hops": self.trusted_proxy_hops,
            "config_watch_ms": millis(self.watch_interval),
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
            "allow_ips": self.allow_ips.iter().map(IpNet::to_string).collect::<Vec<_>>(),
            "jwt": self.jwt.as_ref().map(|jwt| json!({
                "issuer": jwt.issuer,
                "audience": jwt.audiences,
                "jwks": jwt.jwks_source.to_string(),
                "jwks_refresh_s": jwt.jwks_refresh.as_secs(),
                "keys": jwt.jwks.keys.iter().map(|k| k.common.key_id.clone().unwrap_or_default()).collect::<Vec<_>>(),
                "algorithms": jwt.algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
                "client_ids": jwt.client_ids,
                "leeway_s": jwt.leeway.as_secs(),
            })),
            "ignore_unmapped_attributes": self.ignore_unmapped_attributes,
            "custom_profile_field_map": self
                .custom_profile_field_map
                .iter()
                .map(|(attr, label)| (attr.to_string(), serde_json::Value::from(label.as_str())))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "create_missing_fields": self.create_missing_fields,
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

fn top_level(
    raw: RawConfig,
    server: Option<ServerConfig>,
    realms: Vec<RealmConfig>,
    problems: &mut Problems,
) -> Option<Config> {
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
    let progress_interval = positive_ms(problems, "progress_interval_ms", raw.progress_interval_ms);
    for (key, value) in [("max_connections", raw.max_connections), ("max_body_bytes", raw.max_body_bytes)] {
        if value == 0 {
            problems.push(key, "must be greater than 0");
        }
    }
    let audit = match raw.audit.map(|a| a.path) {
        None => AuditTargetConfig::Log,
        Some(None) => {
            problems.push("audit.path", "required (a file, or \"-\" for stdout)");
            AuditTargetConfig::Log
        }
        Some(Some(path)) if path.trim().is_empty() => {
            problems.push("audit.path", "must not be empty (a file, or \"-\" for stdout)");
            AuditTargetConfig::Log
        }
        Some(Some(path)) if path.trim() == "-" => AuditTargetConfig::Stdout,
        Some(Some(path)) => AuditTargetConfig::File(PathBuf::from(path)),
    };
    if raw.trusted_proxy_hops > 16 {
        problems.push("trusted_proxy_hops", "at most 16");
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Config {
        listen: listen?,
        audit,
        trusted_proxy_hops: raw.trusted_proxy_hops,
        watch_interval: Duration::from_millis(raw.config_watch_ms),
        files: std::mem::take(&mut problems.files),
        log_format: raw.log_format,
        shutdown_grace,
        max_connections: raw.max_connections,
        max_body_bytes: raw.max_body_bytes,
        request_deadline,
        snapshot_ttl,
        server: server?,
        log_probes: raw.log_probes,
        progress_interval,
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
    if let Some(problem) = realm_name_problem(name) {
        problems.push(if name.is_empty() { "realms.\"\"" } else { &key }, problem);
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
    if let Some(Value::Dict(_, jwt)) = dict.get("jwt") {
        problems.unknown_keys(&format!("{key}.jwt"), jwt, fields_of::<RawJwt>());
    }
    // A value of the wrong type is reported and left out, so the rest is still checked.
    let raw = problems.extract::<RawRealm>(&key, dict.clone())?;
    let realm = validate_realm(&key, name, raw, problems, tokens);
    if problems.list.len() > before {
        return None;
    }
    realm
}

/// Why `name` cannot be a realm's name, if it cannot.
fn realm_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the empty realm name is not allowed: name the root-domain realm `root`")
    } else if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        Some(
            "realm names may contain only lowercase letters, digits, `-` and `_` \
             (environment overrides are lowercased)",
        )
    } else {
        None
    }
}

/// The semantic checks of one realm's settings (their types are already right).
fn validate_realm(
    key: &str,
    name: &str,
    raw: RawRealm,
    problems: &mut Problems,
    tokens: &mut TokenRegistry,
) -> Option<RealmConfig> {
    let url = realm_url(key, &raw, problems);
    let hosts = realm_hosts(key, &raw.hosts.0, problems);
    let bearer_token_sha256 = realm_tokens(key, &raw, problems, tokens);
    let allow_ips = realm_allow_ips(key, &raw.allow_ips.0, problems);
    let jwt = raw.jwt.as_ref().and_then(|jwt| jwt_config(key, jwt, problems, tokens));
    let scim_client_name = raw.scim_client_name.as_deref().map_or(name, str::trim).to_owned();
    if scim_client_name.is_empty() {
        problems.push(&format!("{key}.scim_client_name"), "must not be empty");
    }
    let upstream = match &raw.upstream {
        None => {
            problems.push(&format!("{key}.upstream"), "required");
            None
        }
        Some(upstream_raw) => upstream(key, upstream_raw, url.as_ref(), problems),
    };
    let external_id_field = realm_external_id_field(key, &raw, problems);
    let custom_profile_field_map =
        field_map(key, &raw.custom_profile_field_map, external_id_field.as_deref(), problems);
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
        allow_ips,
        jwt,
        ignore_unmapped_attributes: raw.ignore_unmapped_attributes,
        custom_profile_field_map,
        create_missing_fields: raw.create_missing_fields,
        upstream: upstream?,
    })
}

/// The realm's `url`: required.
fn realm_url(key: &str, raw: &RawRealm, problems: &mut Problems) -> Option<Url> {
    match raw.url.as_deref() {
        None => {
            problems.push(&format!("{key}.url"), "required");
            None
        }
        Some(url) => http_url(url).map_err(|why| problems.push(&format!("{key}.url"), &why)).ok(),
    }
}

/// `allow_ips`: every entry an address or a network.
fn realm_allow_ips(key: &str, allow_ips: &[String], problems: &mut Problems) -> Vec<IpNet> {
    allow_ips
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            IpNet::parse(text)
                .map_err(|why| problems.push(&indexed(key, "allow_ips", i, allow_ips.len()), &why))
                .ok()
        })
        .collect()
}

/// `external_id_field`, trimmed: a possible profile field label.
fn realm_external_id_field(key: &str, raw: &RawRealm, problems: &mut Problems) -> Option<String> {
    let external_id_field = raw.external_id_field.as_deref().map(str::trim).map(str::to_owned);
    if let Some(problem) = external_id_field.as_deref().and_then(profile_field_label_problem) {
        problems.push(&format!("{key}.external_id_field"), &problem);
    }
    external_id_field
}

/// `hosts`, lowercased; entries that are not host names are problems.
fn realm_hosts(key: &str, hosts: &[String], problems: &mut Problems) -> Vec<String> {
    hosts
        .iter()
        .enumerate()
        .filter_map(|(i, host)| {
            let host = host.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                problems.push(&indexed(key, "hosts", i, hosts.len()), "not a host name");
                None
            } else {
                Some(host)
            }
        })
        .collect()
}

/// Validates `realms.<name>.jwt`, reading its JWKS file.
fn jwt_config(
    realm_key: &str,
    raw: &RawJwt,
    problems: &mut Problems,
    tokens: &mut TokenRegistry,
) -> Option<JwtConfig> {
    let key = format!("{realm_key}.jwt");
    let before = problems.list.len();
    let issuer = jwt_issuer(&key, raw, problems);
    let audiences = jwt_audiences(&key, raw, problems);
    let algorithms = jwt_algorithms(&key, raw, problems);
    let jwks = jwt_keys(&key, raw, problems);
    if raw.jwks_refresh_s == 0 {
        problems.push(&format!("{key}.jwks_refresh_s"), "must be greater than 0");
    }
    if let (Some(issuer), false) = (&issuer, audiences.is_empty()) {
        claim_issuer_audiences(&key, issuer, &audiences, problems, tokens);
    }
    if problems.list.len() > before {
        return None;
    }
    Some(JwtConfig {
        issuer: issuer?,
        audiences,
        jwks_source: jwks.clone()?.0,
        jwks: jwks?.1,
        jwks_refresh: Duration::from_secs(raw.jwks_refresh_s),
        algorithms,
        client_ids: raw.client_ids.0.iter().map(|c| c.trim().to_owned()).collect(),
        leeway: Duration::from_secs(raw.leeway_s),
    })
}

/// `jwt.issuer`: required.
fn jwt_issuer(key: &str, raw: &RawJwt, problems: &mut Problems) -> Option<String> {
    match raw.issuer.as_deref().map(str::trim) {
        None | Some("") => {
            problems.push(&format!("{key}.issuer"), "required");
            None
        }
        Some(issuer) => Some(issuer.to_owned()),
    }
}

/// `jwt.audience`, trimmed, blanks left out: at least one.
fn jwt_audiences(key: &str, raw: &RawJwt, problems: &mut Problems) -> Vec<String> {
    let audiences: Vec<String> =
        raw.audience.0.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    if audiences.is_empty() {
        problems.push(&format!("{key}.audience"), "required (one value or a list)");
    }
    audiences
}

/// `jwt.algorithms`: RS256 and ES256 when not set; any other is a problem.
fn jwt_algorithms(key: &str, raw: &RawJwt, problems: &mut Problems) -> Vec<jsonwebtoken::Algorithm> {
    if raw.algorithms.0.is_empty() {
        return vec![jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256];
    }
    raw.algorithms
        .0
        .iter()
        .filter_map(|name| match name.trim() {
            "RS256" => Some(jsonwebtoken::Algorithm::RS256),
            "ES256" => Some(jsonwebtoken::Algorithm::ES256),
            other => {
                problems.push(
                    &format!("{key}.algorithms"),
                    &format!("unsupported algorithm `{other}` (expected RS256 or ES256)"),
                );
                None
            }
        })
        .collect()
}

/// Where the signing keys come from (exactly one of `jwks_file` and `jwks_url`) and the keys
/// read from the file; a URL's keys are left empty here.
fn jwt_keys(
    key: &str,
    raw: &RawJwt,
    problems: &mut Problems,
) -> Option<(JwksSource, jsonwebtoken::jwk::JwkSet)> {
    match (&raw.jwks_file, &raw.jwks_url) {
        (Some(_), Some(_)) => {
            problems.push(key, "set only one of jwks_file and jwks_url");
            None
        }
        (None, None) => {
            problems.push(key, "set jwks_file or jwks_url");
            None
        }
        (Some(path), None) => {
            problems.files.push(path.clone());
            match read_jwks(path) {
                Ok(jwks) => Some((JwksSource::File(path.clone()), jwks)),
                Err(why) => {
                    problems.push(&format!("{key}.jwks_file"), &why);
                    None
                }
            }
        }
        (None, Some(url)) => match jwks_url(url) {
            // Fetched when the sidecar starts (and on reloads), not by validation.
            Ok(url) => Some((JwksSource::Url(url), jsonwebtoken::jwk::JwkSet { keys: Vec::new() })),
            Err(why) => {
                problems.push(&format!("{key}.jwks_url"), &why);
                None
            }
        },
    }
}

/// Claims each (issuer, audience) pair for this realm: two realms accepting one issuer's
/// tokens for one audience could not tell whose a token is.
fn claim_issuer_audiences(
    key: &str,
    issuer: &str,
    audiences: &[String],
    problems: &mut Problems,
    tokens: &mut TokenRegistry,
) {
    for audience in audiences {
        let digest = token_digest(&format!("jwt\u{0}{issuer}\u{0}{audience}"));
        if let Some(first) = tokens.first_use(digest, key) {
            problems.push(
                &format!("{key}.audience"),
                &format!("issuer {issuer} with audience {audience} is already accepted at {first}"),
            );
        }
    }
}

/// Reads a JWKS file: at least one RSA or P-256 EC signing key it must hold.
pub fn read_jwks(path: &Path) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    let text = std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    parse_jwks(&text).map_err(|why| format!("{}: {why}", path.display()))
}

/// A JWKS document with at least one usable signing key.
pub fn parse_jwks(bytes: &[u8]) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(bytes).map_err(|err| format!("not a JWKS ({{\"keys\": [...]}}): {err}"))?;
    if !jwks.keys.iter().any(|k| jsonwebtoken::DecodingKey::from_jwk(k).is_ok()) {
        return Err("no usable signing key (RSA or EC P-256)".to_owned());
    }
    Ok(jwks)
}

/// An `https://` URL (plain http only to loopback) without credentials.
fn jwks_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|err| format!("not a valid URL: {err}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".to_owned());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err("must be an https:// URL (plain http only to loopback)".to_owned()),
    }
}

/// `custom_profile_field_map`: every key a storable SCIM attribute (named once), every label
/// a possible field label, used once and not the `externalId` field's.
fn field_map(
    key: &str,
    raw: &std::collections::BTreeMap<String, String>,
    external_id_field: Option<&str>,
    problems: &mut Problems<'_>,
) -> Vec<(scim::catalog::OptionalAttr, String)> {
    let mut out: Vec<(scim::catalog::OptionalAttr, String)> = Vec::new();
    for (attr, label) in raw {
        let at = format!("{key}.custom_profile_field_map.{attr:?}");
        let label = label.trim().to_owned();
        let attr = match scim::catalog::OptionalAttr::parse(attr) {
            Ok(attr) => attr,
            Err(problem) => {
                problems.push(&at, &problem);
                continue;
            }
        };
        if label.is_empty() {
            problems.push(&at, "the label of a Zulip custom profile field is required");
        } else if let Some(problem) = profile_field_label_problem(&label) {
            problems.push(&at, &problem);
        } else if external_id_field == Some(label.as_str()) {
            problems.push(&at, "is the external_id_field's label: one field per attribute");
        } else if let Some((other, _)) = out.iter().find(|(a, l)| *l == label || *a == attr) {
            problems
                .push(&at, &format!("{other} already uses this label or attribute: one field per attribute"));
        } else {
            out.push((attr, label));
        }
    }
    out
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
        problems.files.push(path.clone());
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

    let mistyped = ["bearer_token", "bearer_token_file", "bearer_token_sha256"]
        .iter()
        .any(|field| problems.mistyped.contains(&format!("{key}.{field}")));
    if raw.bearer_token.0.is_empty()
        && raw.bearer_token_file.0.is_empty()
        && raw.bearer_token_sha256.0.is_empty()
        && !mistyped
        && raw.jwt.is_none()
    {
        problems
            .push(key, "no bearer token: set bearer_token, bearer_token_file, bearer_token_sha256 or jwt");
    }
    digests
}

/// Validates `realms.<name>.upstream`, reading its API key file.
fn upstream(
    realm_key: &str,
    raw: &RawUpstream,
    realm_url: Option<&Url>,
    problems: &mut Problems,
) -> Option<UpstreamConfig> {
    let key = format!("{realm_key}.upstream");
    let before = problems.list.len();
    let url = upstream_url(realm_key, raw, realm_url, problems);
    let email = upstream_email(&key, raw, problems);
    let api_key = upstream_api_key(&key, raw, problems);
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

/// `upstream.url`, defaulted from the realm's `url`; plain http only to loopback unless
/// `allow_insecure_upstream` (the API key would travel in clear).
fn upstream_url(
    realm_key: &str,
    raw: &RawUpstream,
    realm_url: Option<&Url>,
    problems: &mut Problems,
) -> Option<Url> {
    let key = format!("{realm_key}.upstream");
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
    url
}

/// `upstream.email`: required, an e-mail address.
fn upstream_email(key: &str, raw: &RawUpstream, problems: &mut Problems) -> Option<String> {
    match raw.email.as_deref().map(str::trim) {
        None | Some("") => {
            problems.push(&format!("{key}.email"), "required");
            None
        }
        Some(email) if !email.contains('@') => {
            problems.push(&format!("{key}.email"), "not an e-mail address");
            None
        }
        Some(email) => Some(email.to_owned()),
    }
}

/// The service account's API key: exactly one of `api_key` and `api_key_file`.
fn upstream_api_key(key: &str, raw: &RawUpstream, problems: &mut Problems) -> Option<Secret<String>> {
    match (&raw.api_key, &raw.api_key_file) {
        (Some(_), Some(_)) => {
            problems.push(key, "set only one of api_key and api_key_file");
            None
        }
        (None, None) => {
            let mistyped =
                ["api_key", "api_key_file"].iter().any(|f| problems.mistyped.contains(&format!("{key}.{f}")));
            if !mistyped {
                problems.push(key, "set api_key or api_key_file");
            }
            None
        }
        (Some(key_value), None) => match api_key_problem(key_value.0.expose()) {
            Some(why) => {
                problems.push(&format!("{key}.api_key"), why);
                None
            }
            None => Some(key_value.0.clone()),
        },
        (None, Some(path)) => api_key_file(key, path, problems),
    }
}

/// The API key in `upstream.api_key_file` (trimmed); the file is watched for reloads.
fn api_key_file(key: &str, path: &Path, problems: &mut Problems) -> Option<Secret<String>> {
    problems.files.push(path.to_owned());
    match read_secret_file(path) {
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
    }
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
    let url = Url::parse(text.trim()).map_err(url_problem)?;
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

/// A URL parse error in plain words.
fn url_problem(err: url::ParseError) -> String {
    use url::ParseError as P;
    let what = match err {
        P::RelativeUrlWithoutBase => "it needs a scheme and a host",
        P::EmptyHost => "it has no host",
        P::InvalidPort => "its port is not a number from 1 to 65535",
        P::InvalidIpv4Address | P::InvalidIpv6Address => "its IP address is not valid",
        P::IdnaError | P::InvalidDomainCharacter => "its host name contains characters a host name cannot",
        _ => "it cannot be read as a URL",
    };
    format!("not a valid URL: {what} (expected e.g. https://zulip.example.com)")
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
    /// Keys whose value had the wrong type: reported once, then left out (defaulted), so
    /// their later checks (`required`, …) say nothing more.
    mistyped: Vec<String>,
    /// Every file read on the way (watched for changes by reloads).
    files: Vec<PathBuf>,
}

impl<'f> Problems<'f> {
    fn new(figment: &'f Figment) -> Self {
        Problems { figment, list: Vec::new(), mistyped: Vec::new(), files: Vec::new() }
    }

    fn push(&mut self, key: &str, what: &str) {
        if !self.mistyped.iter().any(|k| k == key) {
            self.list.push(format!("{key}: {what}"));
        }
    }

    /// Deserializes the section at `prefix` (whose data is `dict`), reporting every value of
    /// the wrong type: serde stops at the first, so each is reported, removed and the section
    /// read again (at most once per key). `None` only if the section cannot be read at all.
    fn extract<T: de::DeserializeOwned>(&mut self, prefix: &str, mut dict: Dict) -> Option<T> {
        let mut result = self.section(prefix).extract::<T>();
        for _ in 0..=MAX_RETRIES {
            let err = match result {
                Ok(value) => return Some(value),
                Err(err) => err,
            };
            let mut removed_any = false;
            for e in err {
                if let Kind::UnknownField(field, _) = &e.kind {
                    // Already reported by `unknown_keys`: leave it out and read on.
                    let mut path = e.path.clone();
                    if path.last() != Some(field) {
                        path.push(field.clone());
                    }
                    removed_any |= remove_path(&mut dict, &path);
                    continue;
                }
                let key = e.path.iter().fold(prefix.to_owned(), |key, part| join_key(&key, part));
                if self.figment_problem(&e.kind, &key) {
                    removed_any |= remove_path(&mut dict, &e.path);
                    self.mistyped.push(key);
                }
            }
            if !removed_any {
                return None;
            }
            result = Figment::from(figment::providers::Serialized::defaults(&dict)).extract::<T>();
        }
        None
    }

    /// The section at `prefix` of the full figment (the root for `""`).
    fn section(&self, prefix: &str) -> Figment {
        if prefix.is_empty() {
            self.figment.clone()
        } else {
            // `focus` rather than `extract_inner`: error paths stay relative to the section.
            self.figment.focus(prefix)
        }
    }

    fn push_raw(&mut self, message: String) {
        self.list.push(message);
    }

    /// Reports every key of `dict` (at `prefix`) that the DTO does not declare.
    fn unknown_keys(&mut self, prefix: &str, dict: &Dict, known: &[&str]) {
        for name in dict.keys().filter(|name| !known.contains(&name.as_str())) {
            let key = join_key(prefix, name);
            let from = self.source_of(&key);
            let hint = match did_you_mean(name, known.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("expected one of: {}", known.join(", ")),
            };
            self.list.push(format!("{key}: unknown key{from} ({hint})"));
        }
    }

    /// ` (in FILE)` or ` (from SCIM_SIDECAR_…)` for the provider that set `key`, if known.
    fn source_of(&self, key: &str) -> String {
        self.figment.find_metadata(key).map(|md| describe_source(md, key)).unwrap_or_default()
    }

    /// Reports one extraction error at `key`; `true` when it is about that key's value (which
    /// can then be left out and the section read again).
    fn figment_problem(&mut self, kind: &Kind, key: &str) -> bool {
        let (key, what, about_value) = match kind {
            Kind::UnknownField(..) => return false, // reported by `unknown_keys`
            Kind::MissingField(field) => (join_key(key, field), "required".to_owned(), false),
            Kind::DuplicateField(field) => (join_key(key, field), "given twice".to_owned(), false),
            kind => (key.to_owned(), describe_kind(kind, is_secret_key(key)), !key.is_empty()),
        };
        if self.mistyped.contains(&key) {
            return false;
        }
        let from = self.source_of(&key);
        let shown = if key.is_empty() { "configuration" } else { key.as_str() };
        self.list.push(format!("{shown}: {what}{from}"));
        about_value
    }
}

/// Re-reads of a section after leaving out a mistyped value, at most (one per key it has).
const MAX_RETRIES: usize = 32;

/// Removes the value at `path` (relative to `dict`); `false` if there is none.
fn remove_path(dict: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [leaf] => dict.remove(leaf).is_some(),
        [head, rest @ ..] => match dict.get_mut(head) {
            Some(Value::Dict(_, inner)) => remove_path(inner, rest),
            // A list element (`hosts[1]`): leave out the whole list.
            Some(_) => dict.remove(head).is_some(),
            None => false,
        },
    }
}

/// Keys whose values are never quoted in a message.
fn is_secret_key(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    matches!(leaf, "bearer_token" | "bearer_token_sha256" | "api_key")
}

/// The closest of `candidates` to `given`, when it is close enough to be a typo.
fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(&given, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.chars().count() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance (insertions, deletions, substitutions), by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
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

/// A serde error in plain words. The offending value is quoted unless it is `secret`.
fn describe_kind(kind: &Kind, secret: bool) -> String {
    let got = |actual: &Actual| describe_actual(actual, secret);
    match kind {
        Kind::Message(message) => message.clone(),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("must be {}, got {}", describe_expected(expected), got(actual))
        }
        Kind::InvalidLength(len, expected) => format!("must be {expected}, got {len} items"),
        Kind::UnknownVariant(given, expected) => {
            let hint = did_you_mean(given, expected.iter().copied())
                .map(|close| format!(" (did you mean \"{close}\"?)"))
                .unwrap_or_default();
            format!("must be one of {}, got \"{given}\"{hint}", expected.join(", "))
        }
        Kind::UnknownField(field, _) => format!("unknown key `{field}`"),
        Kind::MissingField(field) => format!("missing key `{field}`"),
        Kind::DuplicateField(field) => format!("key `{field}` given twice"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "the number is too large".to_owned(),
        Kind::Unsupported(actual) => format!("unsupported value: {}", got(actual)),
        Kind::UnsupportedKey(actual, expected) => {
            format!("keys must be {}, got {}", describe_expected(expected), got(actual))
        }
    }
}

/// serde's name of what it expected (`u64`, `a boolean`, …) in plain words.
fn describe_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a borrowed string" | "a string" => "text".to_owned(),
        "a string or a list of strings" => "text or a list of texts".to_owned(),
        "enum LogFormat" => one_of(variants_of::<LogFormat>()),
        "enum UserDelete" => one_of(variants_of::<UserDelete>()),
        "enum GroupDelete" => one_of(variants_of::<GroupDelete>()),
        "enum UnknownMembers" => one_of(variants_of::<UnknownMembers>()),
        other if other.starts_with("struct ") || other.starts_with("map") => "a map of settings".to_owned(),
        other => other.to_owned(),
    }
}

fn one_of(values: &[&str]) -> String {
    format!("one of {}", values.join(", "))
}

/// The values a unit-variant enum accepts, asked of serde itself (like [`fields_of`]).
fn variants_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("variant probe"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("variant probe"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }

    let mut variants: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut variants));
    variants
}

/// What was found instead: quoted when it may be shown, else only its kind.
fn describe_actual(actual: &Actual, secret: bool) -> String {
    let kind = match actual {
        Actual::Bool(b) if !secret => return b.to_string(),
        Actual::Unsigned(n) if !secret => return n.to_string(),
        Actual::Signed(n) if !secret => return n.to_string(),
        Actual::Float(n) if !secret => return n.to_string(),
        Actual::Char(c) if !secret => return format!("{:?}", c.to_string()),
        // A long string in a key that is not a secret may still be one pasted into the wrong
        // key (a token in SCIM_SIDECAR_SHUTDOWN_GRACE_MS): only short ones are quoted.
        Actual::Str(text) if !secret && text.chars().count() < MIN_TOKEN_LEN => return format!("{text:?}"),
        Actual::Str(text) if !secret => return format!("text of {} characters", text.chars().count()),
        Actual::Bool(_) => "true or false",
        Actual::Unsigned(_) | Actual::Signed(_) => "a number",
        Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "text",
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
    };
    kind.to_owned()
}

#[cfg(test)]
mod production_tests;
#[cfg(test)]
mod tests;
