//! Wire types of the Zulip REST API, as the client decodes them (the fake has its own).

use serde::Deserialize;

/// Zulip organization roles (`role` integers, zulip-rest-api.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Administrator,
    Moderator,
    Member,
    Guest,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::Owner, Role::Administrator, Role::Moderator, Role::Member, Role::Guest];

    /// The API integer.
    pub fn api_value(self) -> u16 {
        match self {
            Role::Owner => 100,
            Role::Administrator => 200,
            Role::Moderator => 300,
            Role::Member => 400,
            Role::Guest => 600,
        }
    }

    pub fn from_api(value: u16) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.api_value() == value)
    }

    /// The SCIM `role` spelling (Zulip's built-in SCIM names).
    pub fn scim_name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Administrator => "administrator",
            Role::Moderator => "moderator",
            Role::Member => "member",
            Role::Guest => "guest",
        }
    }

    /// Parses a SCIM `role` value; exact lower-case names, as Zulip's built-in SCIM.
    pub fn from_scim_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.scim_name() == name)
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u16::deserialize(d)?;
        Role::from_api(v).ok_or_else(|| serde::de::Error::custom(format!("unknown role {v}")))
    }
}

/// A user object from `GET /users` or `GET /users/{id}` (zulip-rest-api.md §8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub user_id: u64,
    /// The API e-mail: the real address or a dummy `user<id>@<host>`.
    pub email: String,
    /// The real address; `None` when the user's visibility hides it from the service account.
    #[serde(default)]
    pub delivery_email: Option<String>,
    pub full_name: String,
    /// ISO 8601, minute precision (`2025-03-04T10:15+00:00`).
    #[serde(default)]
    pub date_joined: String,
    pub is_active: bool,
    pub role: Role,
    pub is_bot: bool,
}

/// A user group from `GET /user_groups` (zulip-rest-api.md §10).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserGroup {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Direct, active members.
    #[serde(default)]
    pub members: Vec<u64>,
    #[serde(default)]
    pub direct_subgroup_ids: Vec<u64>,
    #[serde(default)]
    pub is_system_group: bool,
    #[serde(default)]
    pub deactivated: bool,
}

/// `GET /server_settings` (no authentication).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerSettings {
    pub zulip_version: String,
    pub zulip_feature_level: u32,
    #[serde(default)]
    pub realm_url: Option<String>,
    #[serde(default)]
    pub realm_name: Option<String>,
}

/// Parameters of `PATCH /users/{id}`; `None` leaves a field alone. Applied by Zulip in one
/// transaction (role → full_name → new_email).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub full_name: Option<String>,
    pub role: Option<Role>,
    pub new_email: Option<String>,
}

impl UserUpdate {
    pub fn is_empty(&self) -> bool {
        self.full_name.is_none() && self.role.is_none() && self.new_email.is_none()
    }
}

/// The `X-RateLimit-*` headers of the last response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitState {
    pub limit: u32,
    pub remaining: u32,
    /// UNIX seconds when every limit is clear.
    pub reset: u64,
}
