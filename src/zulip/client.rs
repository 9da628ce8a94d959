//! `ZulipClient`: typed calls on Zulip's REST API, one method per API doc page.
//!
//! CONTRACT (bodies owned by the client helper; keep these signatures):
//! ```ignore
//! ZulipClient::new(ClientConfig) -> Result<ZulipClient, ZulipError>
//! server_settings() -> Result<ServerSettings, ZulipError>          // GET /server_settings, no auth
//! get_own_user() -> Result<User, ZulipError>                        // GET /users/me
//! get_users() -> Result<Vec<User>, ZulipError>                      // GET /users (all, incl. bots, deactivated)
//! get_user(user_id: u64) -> Result<User, ZulipError>                // GET /users/{id}
//! create_user(email, password: &Secret<String>, full_name) -> Result<u64, ZulipError>  // POST /users
//! update_user(user_id, &UserUpdate) -> Result<(), ZulipError>       // PATCH /users/{id}
//! deactivate_user(user_id) -> Result<(), ZulipError>                // DELETE /users/{id}
//! reactivate_user(user_id) -> Result<(), ZulipError>                // POST /users/{id}/reactivate
//! get_user_groups(include_deactivated: bool) -> Result<Vec<UserGroup>, ZulipError>
//! create_user_group(&NewUserGroup) -> Result<Option<u64>, ZulipError>   // group_id at FL >= 317
//! update_user_group(group_id, name: Option<&str>, description: Option<&str>) -> Result<(), ZulipError>
//! update_user_group_members(group_id, add: &[u64], delete: &[u64]) -> Result<(), ZulipError>
//! deactivate_user_group(group_id) -> Result<(), ZulipError>
//! rate_limit() -> Option<RateLimitState>                           // last X-RateLimit-* seen
//! ```

use std::time::Duration;

use url::Url;

use crate::secret::Secret;

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
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A client for one realm's service account.
#[derive(Debug, Clone)]
pub struct ZulipClient {
    _config: ClientConfig,
}
