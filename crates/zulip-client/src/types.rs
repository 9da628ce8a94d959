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
    pub const ALL: [Role; 5] = [Role::Owner, Role::Administrator, Role::Moderator, Role::Member, Role::Guest];

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
    /// Custom profile field values; present only when asked for (`include_custom_profile_fields`).
    #[serde(default)]
    pub profile_data: ProfileData,
}

/// A user's custom profile field values: field id → value. Zulip's `rendered_value` (HTML) is
/// dropped, and the client keeps only the fields the sidecar reads, so an entry costs a few
/// bytes per user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileData(Vec<(u64, String)>);

impl ProfileData {
    /// The value of field `field`, if the user has one.
    pub fn get(&self, field: u64) -> Option<&str> {
        self.0.iter().find(|(id, _)| *id == field).map(|(_, v)| v.as_str())
    }

    /// Sets (`Some`) or clears (`None`, or an empty string, as Zulip treats it) a value.
    pub fn set(&mut self, field: u64, value: Option<String>) {
        self.0.retain(|(id, _)| *id != field);
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.0.push((field, value));
        }
    }

    /// Keeps only the value of `field`.
    pub fn retain_only(&mut self, field: u64) {
        self.retain_fields(&[field]);
    }

    /// Keeps only the values of `fields`.
    pub fn retain_fields(&mut self, fields: &[u64]) {
        self.0.retain(|(id, _)| fields.contains(id));
        self.0.shrink_to_fit();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids of the fields that have a value.
    pub fn field_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|(id, _)| *id)
    }
}

impl<'de> Deserialize<'de> for ProfileData {
    /// `{"<field id>": {"value": "…", "rendered_value": "…"}, …}`. Keys that are not ids and
    /// values that are not strings (Zulip sends none) are skipped rather than failing the
    /// whole `GET /users`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default)]
            value: serde_json::Value,
        }
        let map = std::collections::BTreeMap::<String, Entry>::deserialize(d)?;
        let mut out = Vec::with_capacity(map.len());
        for (key, entry) in map {
            if let (Ok(id), serde_json::Value::String(value)) = (key.parse::<u64>(), entry.value) {
                if !value.is_empty() {
                    out.push((id, value));
                }
            }
        }
        Ok(ProfileData(out))
    }
}

/// A custom profile field of the realm (`GET /realm/profile_fields`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProfileField {
    pub id: u64,
    pub name: String,
    /// 1 short text, 2 long text, 3 list of options, 4 date, 5 link, 6 person picker,
    /// 7 external account, 8 pronouns.
    #[serde(rename = "type")]
    pub field_type: u8,
    #[serde(default)]
    pub hint: String,
}

impl ProfileField {
    pub const SHORT_TEXT: u8 = 1;
    pub const LONG_TEXT: u8 = 2;
    pub const LINK: u8 = 5;
    pub const PERSON_PICKER: u8 = 6;
    pub const PRONOUNS: u8 = 8;

    /// Zulip's name for a field type, for messages.
    pub fn type_name(field_type: u8) -> &'static str {
        match field_type {
            1 => "short text",
            2 => "long text",
            3 => "list of options",
            4 => "date",
            5 => "link",
            6 => "person picker",
            7 => "external account",
            8 => "pronouns",
            _ => "unknown",
        }
    }
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
    /// UNIX seconds (FL 292); null for system groups and groups older than that.
    #[serde(default)]
    pub date_created: Option<i64>,
}

/// A channel from `GET /streams` (only the fields the sidecar reads; Zulip's API calls
/// channels "streams" in paths and field names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Channel {
    pub stream_id: u64,
    pub name: String,
    #[serde(default)]
    pub invite_only: bool,
    /// Only present when the request asked `include_default=true`.
    #[serde(default)]
    pub is_default: Option<bool>,
}

/// The answer of `DELETE /users/me/subscriptions`: channel names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Unsubscribed {
    /// Channels the users were removed from.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Channels the users were not subscribed to (nothing to do).
    #[serde(default)]
    pub not_removed: Vec<String>,
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
/// transaction (role → full_name → profile_data → new_email).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub full_name: Option<String>,
    pub role: Option<Role>,
    /// Custom profile field values to set (`Some`) or clear (`None`).
    pub profile_data: Vec<(u64, Option<String>)>,
    /// Person-picker field values: the user ids to set (an empty list clears). Sent in the
    /// same `profile_data` list.
    pub profile_users: Vec<(u64, Vec<u64>)>,
    pub new_email: Option<String>,
}

impl UserUpdate {
    pub fn is_empty(&self) -> bool {
        self.full_name.is_none()
            && self.role.is_none()
            && self.profile_data.is_empty()
            && self.profile_users.is_empty()
            && self.new_email.is_none()
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

// === Events API (`POST /register`, `GET /events`) ===

/// A queue made by `POST /register`: poll it with `GET /events` from `last_event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredQueue {
    pub queue_id: String,
    /// `-1` for a fresh queue: the id of the last event already reflected in the state.
    pub last_event_id: i64,
}

/// One event from `GET /events` (shapes in tests/fixtures/zulip-transcripts/events.json).
///
/// Only the events the sidecar reacts to are typed; anything else (including a known type
/// whose body does not have the expected shape) is kept whole in [`Event::Other`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `realm_user`/`add`: a new user or bot, with the full user object.
    RealmUserAdd { id: i64, person: User },
    /// `realm_user`/`update`: `person` carries `user_id` plus only the changed fields.
    RealmUserUpdate { id: i64, person: PersonUpdate },
    /// `realm_user`/`remove`: the user is no longer visible to the service account.
    RealmUserRemove { id: i64, user_id: u64 },
    /// `custom_profile_fields`: the realm's fields after one was added, changed or deleted.
    CustomProfileFields { id: i64, fields: Vec<ProfileField> },
    /// `user_group`/`add`: a new group, with the full group object (and its id).
    UserGroupAdd { id: i64, group: UserGroup },
    /// `user_group`/`update`: one event per changed property.
    UserGroupUpdate { id: i64, group_id: u64, data: UserGroupChange },
    /// `user_group`/`add_members` (also sent for every group on reactivation).
    UserGroupAddMembers { id: i64, group_id: u64, user_ids: Vec<u64> },
    /// `user_group`/`remove_members`.
    UserGroupRemoveMembers { id: i64, group_id: u64, user_ids: Vec<u64> },
    /// `user_group`/`remove`: the group was deactivated.
    UserGroupRemove { id: i64, group_id: u64 },
    /// `heartbeat`: a blocking poll with nothing pending (after about 54 s).
    Heartbeat { id: i64 },
    /// Any other event, as received.
    Other(serde_json::Value),
}

impl Event {
    /// The event id (the next poll's `last_event_id` is the largest one seen).
    pub fn id(&self) -> Option<i64> {
        match self {
            Event::RealmUserAdd { id, .. }
            | Event::RealmUserUpdate { id, .. }
            | Event::RealmUserRemove { id, .. }
            | Event::CustomProfileFields { id, .. }
            | Event::UserGroupAdd { id, .. }
            | Event::UserGroupUpdate { id, .. }
            | Event::UserGroupAddMembers { id, .. }
            | Event::UserGroupRemoveMembers { id, .. }
            | Event::UserGroupRemove { id, .. }
            | Event::Heartbeat { id } => Some(*id),
            Event::Other(value) => value.get("id").and_then(serde_json::Value::as_i64),
        }
    }

    /// Decodes one element of `GET /events`' `events` list. Never fails: an unknown or
    /// unexpectedly shaped event becomes [`Event::Other`].
    pub fn from_value(value: serde_json::Value) -> Event {
        match Event::typed(&value) {
            Some(event) => event,
            None => Event::Other(value),
        }
    }

    fn typed(value: &serde_json::Value) -> Option<Event> {
        use serde_json::Value;

        fn field<T: serde::de::DeserializeOwned>(value: &Value, key: &str) -> Option<T> {
            T::deserialize(value.get(key)?).ok()
        }

        let id: i64 = field(value, "id")?;
        let kind = value.get("type")?.as_str()?;
        let op = value.get("op").and_then(Value::as_str);
        Some(match (kind, op) {
            ("heartbeat", _) => Event::Heartbeat { id },
            ("realm_user", Some("add")) => Event::RealmUserAdd { id, person: field(value, "person")? },
            ("realm_user", Some("update")) => Event::RealmUserUpdate { id, person: field(value, "person")? },
            ("realm_user", Some("remove")) => {
                Event::RealmUserRemove { id, user_id: field(value.get("person")?, "user_id")? }
            }
            ("custom_profile_fields", _) => {
                Event::CustomProfileFields { id, fields: field(value, "fields")? }
            }
            ("user_group", Some("add")) => Event::UserGroupAdd { id, group: field(value, "group")? },
            ("user_group", Some("update")) => Event::UserGroupUpdate {
                id,
                group_id: field(value, "group_id")?,
                data: field(value, "data")?,
            },
            ("user_group", Some("add_members")) => Event::UserGroupAddMembers {
                id,
                group_id: field(value, "group_id")?,
                user_ids: field(value, "user_ids")?,
            },
            ("user_group", Some("remove_members")) => Event::UserGroupRemoveMembers {
                id,
                group_id: field(value, "group_id")?,
                user_ids: field(value, "user_ids")?,
            },
            ("user_group", Some("remove")) => {
                Event::UserGroupRemove { id, group_id: field(value, "group_id")? }
            }
            _ => return None,
        })
    }
}

/// `person` of a `realm_user`/`update` event: `user_id` plus only what changed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PersonUpdate {
    pub user_id: u64,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// `Some(None)`: the address became invisible to the service account.
    #[serde(default, deserialize_with = "present")]
    pub delivery_email: Option<Option<String>>,
    #[serde(default)]
    pub email: Option<String>,
    /// One custom profile field's new value.
    #[serde(default)]
    pub custom_profile_field: Option<ProfileValueChange>,
    /// Every other changed field (`avatar_url`, `timezone`, …).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// `custom_profile_field` of a `realm_user`/`update` event; `value` is `null` when cleared.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProfileValueChange {
    pub id: u64,
    #[serde(default)]
    pub value: Option<String>,
}

/// `data` of a `user_group`/`update` event: the one property that changed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserGroupChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub deactivated: Option<bool>,
    /// Permission settings (`can_manage_group`, …) and anything newer.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Distinguishes a present `null` (`Some(None)`) from an absent key (`None`, via `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
