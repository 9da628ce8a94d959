//! Configuration: figment layering (defaults < `sidecar.yaml` < `SCIM_SIDECAR_*` env with `__`
//! nesting) into a raw serde DTO, then validated into [`Config`], reporting every problem at once.
//!
//! CONTRACT (loading/validation owned by the config helper; keep these types):
//! - `Config::load(path: &Path) -> Result<Config, ConfigError>`
//! - `Config::from_figment(figment::Figment) -> Result<Config, ConfigError>`
//! - `Config::redacted(&self) -> serde_json::Value` (secrets shown as `***`)

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use crate::secret::Secret;

/// Startup configuration failure; `main` prints it and exits 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Figment(#[from] Box<figment::Error>),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Access-log / tracing output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// What `DELETE /Users/{id}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserDelete {
    /// Deactivate the Zulip account, answer 204 (default).
    Deactivate,
    /// Zulip's built-in answer: 400.
    Reject,
}

/// What `DELETE /Groups/{id}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupDelete {
    /// Rename and deactivate the Zulip group, answer 204 (default).
    Deactivate,
    /// Zulip's built-in answer: 501.
    Reject,
}

/// How member ids that are not active users of the realm are treated in group writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownMembers {
    /// 400 `invalidValue` naming them (default).
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
    /// If non-empty, a request must carry one of these Host values.
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
}
