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

use crate::zulip::types::{RateLimitState, ServerSettings, User, UserGroup, UserUpdate};
use crate::zulip::ZulipError;

#[derive(Debug, Clone)]
pub struct NewUserGroup {
    pub name: String,
    pub description: String,
    pub members: Vec<u64>,
    pub can_manage_group: Option<serde_json::Value>,
    pub can_add_members_group: Option<serde_json::Value>,
}

#[allow(unused_variables)]
impl ZulipClient {
    pub fn new(config: ClientConfig) -> Result<ZulipClient, ZulipError> {
        unimplemented!()
    }
    pub async fn server_settings(&self) -> Result<ServerSettings, ZulipError> {
        unimplemented!()
    }
    pub async fn get_own_user(&self) -> Result<User, ZulipError> {
        unimplemented!()
    }
    pub async fn get_users(&self) -> Result<Vec<User>, ZulipError> {
        unimplemented!()
    }
    pub async fn get_user(&self, user_id: u64) -> Result<User, ZulipError> {
        unimplemented!()
    }
    pub async fn create_user(
        &self,
        email: &str,
        password: &Secret<String>,
        full_name: &str,
    ) -> Result<u64, ZulipError> {
        unimplemented!()
    }
    pub async fn update_user(&self, user_id: u64, update: &UserUpdate) -> Result<(), ZulipError> {
        unimplemented!()
    }
    pub async fn deactivate_user(&self, user_id: u64) -> Result<(), ZulipError> {
        unimplemented!()
    }
    pub async fn reactivate_user(&self, user_id: u64) -> Result<(), ZulipError> {
        unimplemented!()
    }
    pub async fn get_user_groups(
        &self,
        include_deactivated: bool,
    ) -> Result<Vec<UserGroup>, ZulipError> {
        unimplemented!()
    }
    pub async fn create_user_group(&self, group: &NewUserGroup) -> Result<Option<u64>, ZulipError> {
        unimplemented!()
    }
    pub async fn update_user_group(
        &self,
        group_id: u64,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<(), ZulipError> {
        unimplemented!()
    }
    pub async fn update_user_group_members(
        &self,
        group_id: u64,
        add: &[u64],
        delete: &[u64],
    ) -> Result<(), ZulipError> {
        unimplemented!()
    }
    pub async fn deactivate_user_group(&self, group_id: u64) -> Result<(), ZulipError> {
        unimplemented!()
    }
    pub fn rate_limit(&self) -> Option<RateLimitState> {
        unimplemented!()
    }
}
