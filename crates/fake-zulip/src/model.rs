//! The fake's own state types (never the client's wire types) and the realm rules derived
//! from them: system-group membership, e-mail visibility, JSON rendering of users, groups and
//! custom profile fields.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

pub(crate) const OWNER: u16 = 100;
pub(crate) const ADMIN: u16 = 200;
pub(crate) const MODERATOR: u16 = 300;
pub(crate) const MEMBER: u16 = 400;
pub(crate) const GUEST: u16 = 600;
pub(crate) const ROLES: [u16; 5] = [OWNER, ADMIN, MODERATOR, MEMBER, GUEST];

/// `email_address_visibility` values (zulip-rest-api.md §7).
pub(crate) const VIS_EVERYONE: u8 = 1;
pub(crate) const VIS_MEMBERS: u8 = 2;
pub(crate) const VIS_ADMINS: u8 = 3;
pub(crate) const VIS_NOBODY: u8 = 4;
pub(crate) const VIS_MODERATORS: u8 = 5;

/// The six group permission settings, in the order Zulip lists them.
pub(crate) const GROUP_SETTINGS: [&str; 6] = [
    "can_add_members_group",
    "can_join_group",
    "can_leave_group",
    "can_manage_group",
    "can_mention_group",
    "can_remove_members_group",
];

/// Custom profile field types (zulip-rest-api.md §11).
pub(crate) const FIELD_SHORT_TEXT: u8 = 1;
pub(crate) const FIELD_LONG_TEXT: u8 = 2;
pub(crate) const FIELD_SELECT: u8 = 3;
pub(crate) const FIELD_DATE: u8 = 4;
pub(crate) const FIELD_URL: u8 = 5;
pub(crate) const FIELD_USER: u8 = 6;
pub(crate) const FIELD_EXTERNAL_ACCOUNT: u8 = 7;
pub(crate) const FIELD_PRONOUNS: u8 = 8;

/// System groups in creation order: (name, description, role predicate, direct subgroup).
const SYSTEM_GROUPS: [(&str, &str, &[u16], Option<&str>); 8] = [
    ("role:nobody", "Nobody", &[], None),
    ("role:owners", "Owners of this organization", &[OWNER], None),
    (
        "role:administrators",
        "Administrators of this organization, including owners",
        &[ADMIN],
        Some("role:owners"),
    ),
    (
        "role:moderators",
        "Moderators of this organization, including administrators",
        &[MODERATOR],
        Some("role:administrators"),
    ),
    (
        "role:fullmembers",
        "Members of this organization, not including new accounts and guests",
        &[MEMBER],
        Some("role:moderators"),
    ),
    (
        "role:members",
        "Members of this organization, not including guests",
        &[MEMBER],
        Some("role:fullmembers"),
    ),
    ("role:everyone", "Everyone including guests", &[GUEST], Some("role:members")),
    ("role:internet", "Everyone on the Internet", &[], Some("role:everyone")),
];

/// A Zulip account as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeUser {
    /// 0 means "assign one on insertion".
    pub user_id: u64,
    /// The real address: login, Basic auth, duplicate checks.
    pub delivery_email: String,
    pub full_name: String,
    /// 100 owner, 200 administrator, 300 moderator, 400 member, 600 guest.
    pub role: u16,
    pub is_active: bool,
    pub is_bot: bool,
    /// ISO 8601 at minute precision, e.g. `2026-11-24T01:27+00:00`.
    pub date_joined: String,
    /// 1 everyone, 2 members, 3 admins (default), 4 nobody, 5 moderators.
    pub email_address_visibility: u8,
    /// 32 alphanumerics; `None` = cannot authenticate.
    pub api_key: Option<String>,
    /// Server-side flag needed by `POST /users` (not settable through the API).
    pub can_create_users: bool,
    /// Server-side flag needed by `new_email` (not settable through the API).
    pub can_change_user_emails: bool,
    pub bot_owner_id: Option<u64>,
    /// Custom profile field values by field id, as Zulip stores them: text as given, a
    /// person picker's ids as JSON text (`"[10,9]"`). Never empty strings (a falsy value
    /// clears the field).
    pub profile_data: BTreeMap<u64, String>,
}

/// A custom profile field of the realm as the fake stores it (`GET /realm/profile_fields`).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeProfileField {
    /// 0 means "assign one on insertion" (ids increase from 1 and are never reused).
    pub id: u64,
    /// Unique in the realm, case-sensitively (Zulip's `unique_together`).
    pub name: String,
    /// 1 short text, 2 long text, 3 list of options, 4 date, 5 link, 6 person picker,
    /// 7 external account, 8 pronouns.
    pub field_type: u8,
    pub hint: String,
    /// JSON text as Zulip stores it (options of type 3, `{"subtype":…}` of type 7); `""`
    /// when unused.
    pub field_data: String,
    /// Sort key of the listing. Zulip sets it to the id on creation and to the position
    /// (from 0) on reorder; 0 on insertion means "the id".
    pub order: i64,
    pub required: bool,
    pub editable_by_user: bool,
    /// Listed only when true.
    pub display_in_profile_summary: bool,
}

/// A user group as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeGroup {
    /// 0 means "assign one on insertion".
    pub id: u64,
    pub name: String,
    pub description: String,
    /// Direct members, stored including deactivated users (hidden from reads, FL 303).
    pub members: Vec<u64>,
    pub direct_subgroup_ids: Vec<u64>,
    pub is_system_group: bool,
    pub deactivated: bool,
    pub creator_id: Option<u64>,
    /// UNIX seconds.
    pub date_created: Option<i64>,
    /// `can_manage_group` etc. as sent or defaulted: an integer group id or
    /// `{"direct_members":[..],"direct_subgroups":[..]}`.
    pub settings: Map<String, Value>,
}

/// A channel ("stream" in the API's paths and fields) as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeChannel {
    /// 0 means "assign one on insertion".
    pub stream_id: u64,
    /// Unique in the realm, case-insensitively (Zulip's rule).
    pub name: String,
    pub description: String,
    /// Private channel. Zulip never lets a default channel be private; keep it so.
    pub invite_only: bool,
    pub is_web_public: bool,
    /// One of the realm's default channels: `POST /users` subscribes new users to it.
    pub is_default: bool,
    /// Subscribed users, deactivated ones included (hidden from reads, like Zulip).
    pub subscribers: BTreeSet<u64>,
    /// UNIX seconds.
    pub date_created: i64,
    pub creator_id: Option<u64>,
}

// === impl FakeUser ===

impl FakeUser {
    /// An active member (role 400) with visibility 3 (admins), joined now; id 0 = assign.
    pub fn new(delivery_email: &str, full_name: &str) -> Self {
        FakeUser {
            user_id: 0,
            delivery_email: delivery_email.to_string(),
            full_name: full_name.to_string(),
            role: MEMBER,
            is_active: true,
            is_bot: false,
            date_joined: now_minute_iso(),
            email_address_visibility: VIS_ADMINS,
            api_key: None,
            can_create_users: false,
            can_change_user_emails: false,
            bot_owner_id: None,
            profile_data: BTreeMap::new(),
        }
    }

    pub fn role(mut self, r: u16) -> Self {
        self.role = r;
        self
    }

    pub fn deactivated(mut self) -> Self {
        self.is_active = false;
        self
    }

    pub fn bot(mut self) -> Self {
        self.is_bot = true;
        self
    }

    pub fn id(mut self, id: u64) -> Self {
        self.user_id = id;
        self
    }

    pub fn visibility(mut self, v: u8) -> Self {
        self.email_address_visibility = v;
        self
    }

    pub fn api_key(mut self, k: &str) -> Self {
        self.api_key = Some(k.to_string());
        self
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role == OWNER || self.role == ADMIN
    }
}

// === impl FakeGroup ===

impl FakeGroup {
    /// An active, non-system group with an empty description; id 0 = assign. Settings left
    /// empty are filled with Zulip's defaults on insertion.
    pub fn new(name: &str, members: &[u64]) -> Self {
        FakeGroup {
            id: 0,
            name: name.to_string(),
            description: String::new(),
            members: members.to_vec(),
            direct_subgroup_ids: Vec::new(),
            is_system_group: false,
            deactivated: false,
            creator_id: None,
            date_created: None,
            settings: Map::new(),
        }
    }
}

// === impl FakeProfileField ===

impl FakeProfileField {
    /// No hint, no field data, not required, editable by users; id 0 = assign, order 0 =
    /// the id.
    pub fn new(name: &str, field_type: u8) -> Self {
        FakeProfileField {
            id: 0,
            name: name.to_string(),
            field_type,
            hint: String::new(),
            field_data: String::new(),
            order: 0,
            required: false,
            editable_by_user: true,
            display_in_profile_summary: false,
        }
    }

    pub fn id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    pub fn hint(mut self, hint: &str) -> Self {
        self.hint = hint.to_string();
        self
    }

    /// JSON text, e.g. `{"0":{"text":"Day","order":"1"}}` for a list of options.
    pub fn field_data(mut self, field_data: &str) -> Self {
        self.field_data = field_data.to_string();
        self
    }

    /// Short and long text values are rendered as Markdown (`rendered_value`).
    pub(crate) fn is_renderable(&self) -> bool {
        matches!(self.field_type, FIELD_SHORT_TEXT | FIELD_LONG_TEXT)
    }
}

// === impl FakeChannel ===

impl FakeChannel {
    /// A public, non-default channel without subscribers; id 0 = assign.
    pub fn new(name: &str) -> Self {
        FakeChannel {
            stream_id: 0,
            name: name.to_string(),
            description: String::new(),
            invite_only: false,
            is_web_public: false,
            is_default: false,
            subscribers: BTreeSet::new(),
            date_created: now_unix(),
            creator_id: None,
        }
    }

    /// Makes it one of the realm's default channels.
    pub fn default_channel(mut self) -> Self {
        self.is_default = true;
        self
    }

    pub fn private(mut self) -> Self {
        self.invite_only = true;
        self
    }

    pub fn subscribers(mut self, user_ids: &[u64]) -> Self {
        self.subscribers.extend(user_ids.iter().copied());
        self
    }
}

/// Everything the fake knows about its one realm.
#[derive(Debug, Clone)]
pub(crate) struct Realm {
    pub users: BTreeMap<u64, FakeUser>,
    pub groups: BTreeMap<u64, FakeGroup>,
    pub channels: BTreeMap<u64, FakeChannel>,
    pub profile_fields: BTreeMap<u64, FakeProfileField>,
    pub next_user_id: u64,
    pub next_group_id: u64,
    pub next_channel_id: u64,
    pub next_profile_field_id: u64,
    /// Bumped by every write to the field list, changed or not: Zulip sends a
    /// `custom_profile_fields` event after each one.
    pub profile_fields_version: u64,
    pub feature_level: u32,
    /// Host (no port) of the realm: dummy emails `user<id>@<host>`, Host enforcement.
    pub realm_host: String,
    pub enforce_host: bool,
}

// === impl Realm ===

impl Realm {
    pub fn new() -> Self {
        Realm {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            channels: BTreeMap::new(),
            profile_fields: BTreeMap::new(),
            // Distinct id ranges make user-id/group-id/channel-id mix-ups visible in tests.
            next_user_id: 8,
            next_group_id: 30,
            next_channel_id: 500,
            // Like Zulip's: a realm's fields are numbered from 1.
            next_profile_field_id: 1,
            profile_fields_version: 0,
            feature_level: 442,
            realm_host: "zulip.example.com".to_string(),
            enforce_host: false,
        }
    }

    pub fn insert_user(&mut self, user: FakeUser) -> u64 {
        let id = self.insert_user_unsynced(user);
        self.sync_system_groups();
        id
    }

    /// Adds a user without re-deriving the system groups (O(users)); the caller syncs once
    /// after a batch (the builder does, in `start`).
    pub fn insert_user_unsynced(&mut self, mut user: FakeUser) -> u64 {
        if user.user_id == 0 {
            user.user_id = self.next_user_id;
        }
        self.next_user_id = self.next_user_id.max(user.user_id.saturating_add(1));
        let id = user.user_id;
        self.users.insert(id, user);
        id
    }

    pub fn insert_group(&mut self, mut group: FakeGroup) -> u64 {
        if group.id == 0 {
            group.id = self.next_group_id;
        }
        self.next_group_id = self.next_group_id.max(group.id.saturating_add(1));
        let id = group.id;
        self.fill_group_defaults(&mut group);
        self.groups.insert(id, group);
        self.sync_system_groups();
        id
    }

    pub fn insert_channel(&mut self, mut channel: FakeChannel) -> u64 {
        if channel.stream_id == 0 {
            channel.stream_id = self.next_channel_id;
        }
        self.next_channel_id = self.next_channel_id.max(channel.stream_id.saturating_add(1));
        let id = channel.stream_id;
        self.channels.insert(id, channel);
        id
    }

    /// Adds (or replaces) a custom profile field; assigns an id when `id == 0` and sets
    /// `order` to the id when it is 0, like Zulip's creation.
    pub fn insert_profile_field(&mut self, mut field: FakeProfileField) -> u64 {
        if field.id == 0 {
            field.id = self.next_profile_field_id;
        }
        self.next_profile_field_id = self.next_profile_field_id.max(field.id.saturating_add(1));
        if field.order == 0 {
            field.order = i64::try_from(field.id).unwrap_or(i64::MAX);
        }
        let id = field.id;
        self.profile_fields.insert(id, field);
        self.profile_fields_version += 1;
        id
    }

    /// Deletes a field and every user's value for it (O(users)); `false` if unknown.
    pub fn remove_profile_field(&mut self, id: u64) -> bool {
        if self.profile_fields.remove(&id).is_none() {
            return false;
        }
        for u in self.users.values_mut() {
            u.profile_data.remove(&id);
        }
        self.profile_fields_version += 1;
        true
    }

    /// The fields in listing order (Zulip's `order_by("order")`; ties by id).
    pub fn profile_fields_in_order(&self) -> Vec<&FakeProfileField> {
        let mut fields: Vec<&FakeProfileField> = self.profile_fields.values().collect();
        fields.sort_by_key(|f| (f.order, f.id));
        fields
    }

    /// A field as `GET /realm/profile_fields` lists it (Zulip's `as_dict`).
    pub fn render_profile_field(&self, f: &FakeProfileField) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(f.id));
        m.insert("name".into(), json!(f.name));
        m.insert("type".into(), json!(f.field_type));
        m.insert("hint".into(), json!(f.hint));
        m.insert("field_data".into(), json!(f.field_data));
        m.insert("order".into(), json!(f.order));
        m.insert("required".into(), json!(f.required));
        m.insert("editable_by_user".into(), json!(f.editable_by_user));
        if f.display_in_profile_summary {
            m.insert("display_in_profile_summary".into(), json!(true));
        }
        m
    }

    /// Every field, in listing order.
    pub fn render_profile_fields(&self) -> Vec<Value> {
        self.profile_fields_in_order()
            .into_iter()
            .map(|f| Value::Object(self.render_profile_field(f)))
            .collect()
    }

    /// `{"value": …, "rendered_value": …}` (rendered only for the text types).
    pub fn render_profile_value(&self, field: &FakeProfileField, value: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("value".into(), json!(value));
        if field.is_renderable() {
            m.insert("rendered_value".into(), json!(render_markdown(value)));
        }
        m
    }

    /// A human's `profile_data`: only the fields with a value, keyed by the field id as a
    /// string, in ascending field-id order.
    pub fn render_profile_data(&self, u: &FakeUser) -> Map<String, Value> {
        let mut m = Map::new();
        for (id, value) in &u.profile_data {
            if let Some(field) = self.profile_fields.get(id) {
                m.insert(id.to_string(), Value::Object(self.render_profile_value(field, value)));
            }
        }
        m
    }

    /// The realm's starting channels (once): "general" and "random" are default channels,
    /// "engineering" is not.
    pub fn add_default_channels(&mut self) {
        if !self.channels.is_empty() {
            return;
        }
        for channel in [
            FakeChannel::new("general").default_channel(),
            FakeChannel::new("random").default_channel(),
            FakeChannel::new("engineering"),
        ] {
            self.insert_channel(channel);
        }
    }

    /// What `POST /users` does for a new account: subscribe it to every default channel.
    pub fn subscribe_to_default_channels(&mut self, user_id: u64) {
        for channel in self.channels.values_mut().filter(|c| c.is_default) {
            channel.subscribers.insert(user_id);
        }
    }

    /// By name, case-insensitively (Zulip's `name__iexact`).
    pub fn channel_by_name(&self, name: &str) -> Option<&FakeChannel> {
        let name = name.to_lowercase();
        self.channels.values().find(|c| c.name.to_lowercase() == name)
    }

    /// Names of the channels `user_id` is subscribed to, in id order.
    pub fn user_channel_names(&self, user_id: u64) -> Vec<String> {
        self.channels.values().filter(|c| c.subscribers.contains(&user_id)).map(|c| c.name.clone()).collect()
    }

    pub fn system_group_id(&self, name: &str) -> Option<u64> {
        self.groups.values().find(|g| g.is_system_group && g.name == name).map(|g| g.id)
    }

    /// Creates the eight `role:*` groups (once), nested as in Zulip.
    pub fn add_system_groups(&mut self) {
        if self.system_group_id("role:nobody").is_some() {
            return;
        }
        for (name, description, _, sub) in SYSTEM_GROUPS {
            let mut g = FakeGroup::new(name, &[]);
            g.description = description.to_string();
            g.is_system_group = true;
            if let Some(sub) = sub.and_then(|s| self.system_group_id(s)) {
                g.direct_subgroup_ids.push(sub);
            }
            let id = self.next_group_id;
            g.id = id;
            self.next_group_id += 1;
            self.groups.insert(id, g);
        }
        // System groups' settings all point at role:nobody.
        if let Some(nobody) = self.system_group_id("role:nobody") {
            for g in self.groups.values_mut().filter(|g| g.is_system_group) {
                for s in GROUP_SETTINGS {
                    g.settings.insert(s.to_string(), json!(nobody));
                }
            }
        }
        self.sync_system_groups();
    }

    /// Recomputes the direct members of every system group from the users' roles (stored
    /// including deactivated users and bots, like Zulip).
    pub fn sync_system_groups(&mut self) {
        for (name, _, roles, _) in SYSTEM_GROUPS {
            let members: Vec<u64> =
                self.users.values().filter(|u| roles.contains(&u.role)).map(|u| u.user_id).collect();
            if let Some(g) = self.groups.values_mut().find(|g| g.is_system_group && g.name == name) {
                g.members = members;
            }
        }
    }

    /// Fills settings left out with Zulip's creation defaults (§10).
    pub fn fill_group_defaults(&self, group: &mut FakeGroup) {
        let anon = |members: Vec<u64>| json!({"direct_members": members, "direct_subgroups": []});
        let nobody =
            self.system_group_id("role:nobody").map(|id| json!(id)).unwrap_or_else(|| anon(Vec::new()));
        let everyone =
            self.system_group_id("role:everyone").map(|id| json!(id)).unwrap_or_else(|| anon(Vec::new()));
        let creator = match group.creator_id {
            Some(c) => anon(vec![c]),
            None => nobody.clone(),
        };
        for s in GROUP_SETTINGS {
            if group.settings.contains_key(s) {
                continue;
            }
            let v = match s {
                "can_add_members_group" | "can_manage_group" => creator.clone(),
                "can_leave_group" | "can_mention_group" => everyone.clone(),
                _ => nobody.clone(),
            };
            group.settings.insert(s.to_string(), v);
        }
    }

    pub fn user_by_email(&self, email: &str) -> Option<&FakeUser> {
        let email = email.trim().to_lowercase();
        self.users.values().find(|u| u.delivery_email.to_lowercase() == email)
    }

    pub fn dummy_email(&self, user_id: u64) -> String {
        format!("user{user_id}@{}", self.realm_host)
    }

    /// The "Zulip API email": the real address for bots and visibility "everyone".
    pub fn api_email(&self, u: &FakeUser) -> String {
        if u.is_bot || u.email_address_visibility == VIS_EVERYONE {
            u.delivery_email.clone()
        } else {
            self.dummy_email(u.user_id)
        }
    }

    /// Whether `viewer` may see `target`'s delivery email (§7).
    pub fn can_see_email(&self, viewer: &FakeUser, target: &FakeUser) -> bool {
        if viewer.user_id == target.user_id || target.is_bot {
            return true;
        }
        let r = viewer.role;
        match target.email_address_visibility {
            VIS_EVERYONE => true,
            VIS_MEMBERS => r <= MEMBER,
            VIS_ADMINS => r <= ADMIN,
            VIS_MODERATORS => r <= MODERATOR,
            _ => false,
        }
    }

    /// `GET /users/{email}` lookup: the dummy address, or the real one if visible.
    pub fn lookup_by_api_email(&self, viewer: &FakeUser, email: &str) -> Option<&FakeUser> {
        let wanted = email.trim().to_lowercase();
        self.users.values().find(|u| {
            if self.api_email(u).to_lowercase() == wanted
                || self.dummy_email(u.user_id).to_lowercase() == wanted
            {
                return true;
            }
            let real_ok = if self.feature_level >= 302 {
                self.can_see_email(viewer, u)
            } else {
                u.email_address_visibility == VIS_EVERYONE
            };
            real_ok && u.delivery_email.to_lowercase() == wanted
        })
    }

    /// A user object as `GET /users` returns it to `viewer`.
    pub fn render_user(
        &self,
        viewer: &FakeUser,
        u: &FakeUser,
        client_gravatar: bool,
        profile_fields: bool,
    ) -> Map<String, Value> {
        let email = self.api_email(u);
        let mut m = Map::new();
        m.insert("email".into(), json!(email));
        m.insert("user_id".into(), json!(u.user_id));
        m.insert("avatar_version".into(), json!(1));
        m.insert("is_admin".into(), json!(u.is_admin()));
        m.insert("is_owner".into(), json!(u.role == OWNER));
        m.insert("is_guest".into(), json!(u.role == GUEST));
        if self.feature_level < 363 {
            m.insert("is_billing_admin".into(), json!(false));
        }
        m.insert("role".into(), json!(u.role));
        m.insert("is_bot".into(), json!(u.is_bot));
        m.insert("full_name".into(), json!(u.full_name));
        m.insert("timezone".into(), json!(""));
        m.insert("is_active".into(), json!(u.is_active));
        m.insert("date_joined".into(), json!(u.date_joined));
        let delivery = if self.can_see_email(viewer, u) { json!(u.delivery_email) } else { Value::Null };
        m.insert("delivery_email".into(), delivery);
        // The client can compute a gravatar only when it knows the real address.
        let avatar = if client_gravatar && email == u.delivery_email {
            Value::Null
        } else {
            json!(gravatar_url(&u.delivery_email))
        };
        m.insert("avatar_url".into(), avatar);
        if self.feature_level >= 433 {
            m.insert("is_imported_stub".into(), json!(false));
        }
        if u.is_bot {
            m.insert("bot_type".into(), json!(1));
            m.insert("bot_owner_id".into(), json!(u.bot_owner_id));
        } else if profile_fields {
            m.insert("profile_data".into(), Value::Object(self.render_profile_data(u)));
        }
        m
    }

    pub fn is_active_user(&self, id: u64) -> bool {
        self.users.get(&id).is_some_and(|u| u.is_active)
    }

    /// Active members of `group_id`, recursively through subgroups (cycle-safe), ascending.
    pub fn recursive_members(&self, group_id: u64) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for g in self.recursive_subgroups(group_id, true) {
            if let Some(group) = self.groups.get(&g) {
                out.extend(group.members.iter().copied().filter(|m| self.is_active_user(*m)));
            }
        }
        out
    }

    /// Subgroups of `group_id`, recursively; `include_self` adds the group itself.
    pub fn recursive_subgroups(&self, group_id: u64, include_self: bool) -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![group_id];
        while let Some(g) = stack.pop() {
            if let Some(group) = self.groups.get(&g) {
                for s in &group.direct_subgroup_ids {
                    if seen.insert(*s) {
                        stack.push(*s);
                    }
                }
            }
        }
        if include_self {
            seen.insert(group_id);
        }
        seen
    }

    /// Whether the active `user_id` belongs to a group-setting value.
    pub fn setting_contains(&self, value: Option<&Value>, user_id: u64) -> bool {
        if !self.is_active_user(user_id) {
            return false;
        }
        match value {
            Some(Value::Number(n)) => {
                n.as_u64().is_some_and(|g| self.recursive_members(g).contains(&user_id))
            }
            Some(Value::Object(o)) => {
                let direct = o
                    .get("direct_members")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v.as_u64() == Some(user_id)));
                direct
                    || o.get("direct_subgroups").and_then(Value::as_array).is_some_and(|a| {
                        a.iter()
                            .filter_map(Value::as_u64)
                            .any(|g| self.recursive_members(g).contains(&user_id))
                    })
            }
            _ => false,
        }
    }

    /// Manage rights: realm `can_manage_all_groups` (default role:owners) or the group's own
    /// `can_manage_group`.
    pub fn can_manage_group(&self, caller: &FakeUser, group: &FakeGroup) -> bool {
        caller.role == OWNER || self.setting_contains(group.settings.get("can_manage_group"), caller.user_id)
    }

    /// A channel object as `GET /streams` returns it (`is_default` only when asked).
    pub fn render_channel(&self, c: &FakeChannel, include_default: bool) -> Map<String, Value> {
        let admins = self.system_group_id("role:administrators");
        let mut m = Map::new();
        m.insert("stream_id".into(), json!(c.stream_id));
        m.insert("name".into(), json!(c.name));
        m.insert("description".into(), json!(c.description));
        m.insert("date_created".into(), json!(c.date_created));
        m.insert("creator_id".into(), json!(c.creator_id));
        m.insert("invite_only".into(), json!(c.invite_only));
        let rendered =
            if c.description.is_empty() { String::new() } else { format!("<p>{}</p>", c.description) };
        m.insert("rendered_description".into(), json!(rendered));
        m.insert("is_web_public".into(), json!(c.is_web_public));
        m.insert("stream_post_policy".into(), json!(1));
        m.insert("message_retention_days".into(), Value::Null);
        m.insert("history_public_to_subscribers".into(), json!(!c.invite_only));
        m.insert("first_message_id".into(), Value::Null);
        m.insert("is_announcement_only".into(), json!(false));
        m.insert("can_remove_subscribers_group".into(), json!(admins));
        m.insert("stream_weekly_traffic".into(), Value::Null);
        if include_default {
            m.insert("is_default".into(), json!(c.is_default));
        }
        m
    }

    pub fn group_name_taken(&self, name: &str) -> bool {
        self.groups.values().any(|g| g.name == name)
    }

    /// A group object as `GET /user_groups` returns it (direct, active members only).
    pub fn render_group(&self, g: &FakeGroup) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(g.id));
        m.insert("name".into(), json!(g.name));
        m.insert("creator_id".into(), json!(g.creator_id));
        m.insert("date_created".into(), json!(g.date_created));
        m.insert("description".into(), json!(g.description));
        let members: Vec<u64> = g.members.iter().copied().filter(|id| self.is_active_user(*id)).collect();
        m.insert("members".into(), json!(members));
        m.insert("direct_subgroup_ids".into(), json!(g.direct_subgroup_ids));
        m.insert("is_system_group".into(), json!(g.is_system_group));
        for s in GROUP_SETTINGS {
            if s == "can_remove_members_group" && self.feature_level < 324 {
                continue;
            }
            if let Some(v) = g.settings.get(s) {
                m.insert(s.into(), v.clone());
            }
        }
        m.insert("deactivated".into(), json!(g.deactivated));
        m
    }
}

/// Zulip's `check_full_name`: the stripped name, or the error message.
pub(crate) fn check_full_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.chars().count() > 100 {
        return Err("Name too long!");
    }
    if name.is_empty() {
        return Err("Name too short!");
    }
    if name.chars().any(|c| "*`\\>\"@".contains(c) || c.is_control()) {
        return Err("Invalid characters in name!");
    }
    if let Some((_, tail)) = name.rsplit_once('|') {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
            return Err("Invalid format!");
        }
    }
    Ok(name.to_string())
}

/// A pragmatic version of Django's `validate_email`.
pub(crate) fn valid_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.contains('@') || local.starts_with('.') || local.ends_with('.') {
        return false;
    }
    if domain == "localhost" {
        return true;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Zulip's user-group name rules; `Err` is the message.
pub(crate) fn check_group_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("User group name can't be empty!".into());
    }
    if name.chars().count() > 100 {
        return Err("User group name cannot exceed 100 characters.".into());
    }
    for prefix in ["@", "role:", "user:", "stream:", "channel:"] {
        if name.starts_with(prefix) {
            return Err(format!("User group name cannot start with '{prefix}'."));
        }
    }
    Ok(())
}

/// Zulip's Markdown rendering of a profile value, for the plain-text subset the fake
/// supports: paragraphs (split on blank lines, single newlines become `<br>`), `*`/`-`/`+`
/// bullet lists, and HTML escaping. No inline markup, links or mentions.
pub(crate) fn render_markdown(text: &str) -> String {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    // (is a bullet list, escaped lines); a blank line or a change of kind starts a block.
    let mut blocks: Vec<(bool, Vec<String>)> = Vec::new();
    let mut open = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            open = false;
            continue;
        }
        let bullet = ["* ", "- ", "+ "].iter().find_map(|b| line.strip_prefix(b));
        let (is_list, content) = match bullet {
            Some(item) => (true, item.trim()),
            None => (false, line),
        };
        match blocks.last_mut() {
            Some((kind, lines)) if open && *kind == is_list => lines.push(escape(content)),
            _ => blocks.push((is_list, vec![escape(content)])),
        }
        open = true;
    }
    let html: Vec<String> = blocks
        .iter()
        .map(|(is_list, lines)| {
            if *is_list {
                let items: Vec<String> = lines.iter().map(|l| format!("<li>{l}</li>")).collect();
                format!("<ul>\n{}\n</ul>", items.join("\n"))
            } else {
                format!("<p>{}</p>", lines.join("<br>\n"))
            }
        })
        .collect();
    html.join("\n")
}

/// Gravatar-style URL. Zulip hashes with MD5; the fake uses the first 32 hex digits of
/// SHA-256 (no MD5 dependency), which has the same shape.
pub(crate) fn gravatar_url(email: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(email.to_lowercase().as_bytes());
    let hex = hex::encode(digest);
    format!("https://secure.gravatar.com/avatar/{}?d=identicon&version=1", &hex[..32])
}

pub(crate) fn now_minute_iso() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}+00:00",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
