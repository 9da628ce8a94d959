//! The properties: every 2xx's claimed effect is in Zulip when it is answered, every error's
//! "already applied" / "nothing was changed" is true, and once a run settles Zulip holds
//! exactly the IdP's intended state (no address with two accounts) and every replica's
//! reads agree with Zulip.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use fake_zulip::FakeZulip;

use super::model::Model;
use crate::support::Reply;

/// What a write's 2xx claims.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A read: no claim.
    Read,
    /// A User resource with these values (JSON pointers into the answer).
    User { id: Option<u64>, fields: Vec<(&'static str, Value)> },
    /// `DELETE /Users/{id}`: the account is deactivated.
    UserGone(u64),
    /// A Group with this name and these active members.
    Group { id: Option<u64>, name: String, members: BTreeSet<u64> },
    /// `DELETE /Groups/{id}`: the group is deactivated.
    GroupGone(u64),
}

pub fn role_name(role: u16) -> &'static str {
    match role {
        100 => "owner",
        200 => "administrator",
        300 => "moderator",
        400 => "member",
        600 => "guest",
        _ => "?",
    }
}

/// One account: address, name, role, active, profile field values.
type UserState = (String, String, u16, bool, BTreeMap<u64, String>);

/// Zulip's users and groups as the fake holds them (read directly, never via a sidecar).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// id → (address, name, role, active, externalId field value)
    users: BTreeMap<u64, UserState>,
    /// id → (name, members, deactivated)
    groups: BTreeMap<u64, (String, Vec<u64>, bool)>,
}

impl Snapshot {
    pub fn read(fake: &FakeZulip) -> Snapshot {
        let users = fake
            .users()
            .into_iter()
            .map(|u| {
                (
                    u.user_id,
                    (u.delivery_email.to_ascii_lowercase(), u.full_name, u.role, u.is_active, u.profile_data),
                )
            })
            .collect();
        let groups = fake
            .groups()
            .into_iter()
            .filter(|g| !g.is_system_group)
            .map(|g| {
                let mut members = g.members.clone();
                members.sort_unstable();
                (g.id, (g.name, members, g.deactivated))
            })
            .collect();
        Snapshot { users, groups }
    }

    fn diff(&self, other: &Snapshot) -> String {
        let mut out = Vec::new();
        for (id, u) in &other.users {
            if self.users.get(id) != Some(u) {
                out.push(format!("user {id}: {:?} -> {u:?}", self.users.get(id)));
            }
        }
        for (id, g) in &other.groups {
            if self.groups.get(id) != Some(g) {
                out.push(format!("group {id}: {:?} -> {g:?}", self.groups.get(id)));
            }
        }
        out.join("; ")
    }
}

/// The active members of group `id` in Zulip.
fn visible_members(fake: &FakeZulip, members: &[u64]) -> BTreeSet<u64> {
    members.iter().copied().filter(|m| fake.user(*m).is_some_and(|u| u.is_active && !u.is_bot)).collect()
}

fn member_ids(body: &Value) -> Option<BTreeSet<u64>> {
    body.get("members")?
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["value"].as_str()).filter_map(|v| v.parse().ok()).collect())
}

fn id_of(body: &Value) -> Option<u64> {
    body["id"].as_str().and_then(|id| id.parse().ok())
}

/// Zulip's value for one of a User's pointers (`None`: not one the check knows).
fn zulip_user_value(u: &fake_zulip::FakeUser, field: Option<u64>, pointer: &str) -> Option<Value> {
    Some(match pointer {
        "/userName" => Value::from(u.delivery_email.to_ascii_lowercase()),
        "/displayName" => Value::from(u.full_name.clone()),
        "/active" => Value::from(u.is_active),
        "/role" => Value::from(role_name(u.role)),
        "/externalId" => u.profile_data.get(&field?).map_or(Value::Null, |v| Value::from(v.clone())),
        _ => return None,
    })
}

/// A User answer's claimed effect against the Zulip account it names: every attribute the
/// request set holds in Zulip now. (The others are the snapshot's, current within the events
/// latency: [`super::reads_agree`] bounds that.)
fn user_claim(
    fake: &FakeZulip,
    field: Option<u64>,
    body: &Value,
    fields: &[(&'static str, Value)],
) -> Vec<String> {
    let Some(id) = id_of(body) else {
        return vec!["a User answer without a numeric id".into()];
    };
    let Some(u) = fake.user(id) else {
        return vec![format!("user {id} is not in Zulip")];
    };
    let mut out = Vec::new();
    for (pointer, want) in fields {
        let Some(have) = zulip_user_value(&u, field, pointer) else {
            continue;
        };
        let want = match want {
            Value::String(s) if *pointer == "/userName" => Value::from(s.to_ascii_lowercase()),
            other => other.clone(),
        };
        if have != want {
            out.push(format!("2xx, but Zulip's {pointer} is {have}, asked {want}"));
        }
    }
    out
}

fn group_claim(fake: &FakeZulip, body: &Value) -> Vec<String> {
    let Some(id) = id_of(body) else {
        return vec!["a Group answer without a numeric id".into()];
    };
    let Some(g) = fake.group(id) else {
        return vec![format!("group {id} is not in Zulip")];
    };
    let mut out = Vec::new();
    if g.deactivated {
        out.push(format!("group {id} is deactivated in Zulip"));
    }
    if body["displayName"].as_str() != Some(g.name.as_str()) {
        out.push(format!("displayName {} but Zulip has {}", body["displayName"], g.name));
    }
    if let Some(members) = member_ids(body) {
        let zulip = visible_members(fake, &g.members);
        if members != zulip {
            out.push(format!("members {members:?} but Zulip has {zulip:?}"));
        }
    }
    out
}

/// Checks one answer against Zulip *now*; `before` is Zulip just before the request.
pub fn answer(
    fake: &FakeZulip,
    field: Option<u64>,
    before: &Snapshot,
    reply: &Reply,
    expect: &Expect,
) -> Vec<String> {
    let mut out = Vec::new();
    if reply.status.is_success() {
        match expect {
            Expect::Read => {}
            Expect::User { id, fields } => {
                out.extend(user_claim(fake, field, &reply.body, fields));
                if id.is_some() && id_of(&reply.body) != *id {
                    out.push(format!("answered for user {:?}, asked for {id:?}", id_of(&reply.body)));
                }
                for (pointer, want) in fields {
                    if reply.body.pointer(pointer) != Some(want) {
                        out.push(format!(
                            "2xx without the change: {pointer} is {:?}, asked {want}",
                            reply.body.pointer(pointer)
                        ));
                    }
                }
            }
            Expect::UserGone(id) => {
                if fake.user(*id).is_some_and(|u| u.is_active) {
                    out.push(format!("DELETE answered 204 but user {id} is active in Zulip"));
                }
            }
            Expect::Group { id, name, members } => {
                out.extend(group_claim(fake, &reply.body));
                if id.is_some() && id_of(&reply.body) != *id {
                    out.push(format!("answered for group {:?}, asked for {id:?}", id_of(&reply.body)));
                }
                if reply.body["displayName"].as_str() != Some(name.as_str()) {
                    out.push(format!("2xx without the rename: {} for {name}", reply.body["displayName"]));
                }
                let zulip = id_of(&reply.body)
                    .and_then(|gid| fake.group(gid))
                    .map(|g| visible_members(fake, &g.members))
                    .unwrap_or_default();
                if &zulip != members {
                    out.push(format!("2xx but Zulip's members are {zulip:?}, asked {members:?}"));
                }
            }
            Expect::GroupGone(id) => {
                if fake.group(*id).is_some_and(|g| !g.deactivated) {
                    out.push(format!("DELETE answered 204 but group {id} is active in Zulip"));
                }
            }
        }
        return out;
    }
    if matches!(expect, Expect::Read) || reply.status.as_u16() < 400 {
        return out;
    }
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    let now = Snapshot::read(fake);
    if detail.contains("nothing was changed") && now != *before {
        out.push(format!("says nothing was changed, but Zulip changed: {}", before.diff(&now)));
    }
    if let Some(applied) = detail.split("already applied: ").nth(1) {
        out.extend(applied_claim(fake, applied, expect));
    }
    out
}

fn number_after<'a>(text: &'a str, prefix: &str) -> Option<(u64, &'a str)> {
    let rest = text.split(prefix).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((digits.parse().ok()?, &rest[digits.len()..]))
}

/// The "already applied" part of an error's detail, against Zulip.
fn applied_claim(fake: &FakeZulip, applied: &str, expect: &Expect) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((id, rest)) = number_after(applied, "created Zulip user ") {
        match fake.user(id) {
            None => out.push(format!("claims user {id} was created; Zulip has none")),
            Some(u) => {
                let want_active = !rest.starts_with(" and deactivated it again");
                if u.is_active != want_active {
                    out.push(format!("claims '{applied}' but user {id} active={}", u.is_active));
                }
                if rest.starts_with(" as a member") && u.role != 400 {
                    out.push(format!("claims '{applied}' but user {id} has role {}", role_name(u.role)));
                }
            }
        }
    } else if let Some((id, rest)) = number_after(applied, "renamed group ") {
        let name = rest.trim_start_matches(" to ");
        match fake.group(id) {
            Some(g) if g.name == name => {}
            other => out.push(format!("claims '{applied}' but Zulip has {:?}", other.map(|g| g.name))),
        }
    } else if let Some((id, _)) = number_after(applied, "updated Zulip user ") {
        if let (Some(u), Expect::User { fields, .. }) = (fake.user(id), expect) {
            for (pointer, want) in fields {
                let have = match *pointer {
                    "/userName" => Value::from(u.delivery_email.to_ascii_lowercase()),
                    "/displayName" => Value::from(u.full_name.clone()),
                    "/role" => Value::from(role_name(u.role)),
                    _ => continue,
                };
                if &have != want {
                    out.push(format!("claims '{applied}' but Zulip's {pointer} is {have}, asked {want}"));
                }
            }
        }
    }
    out
}

/// The SCIM path of the resource a write answered with.
pub fn resource_path(reply: &Reply, expect: &Expect) -> Option<String> {
    let id = id_of(&reply.body)?;
    match expect {
        Expect::User { .. } => Some(format!("/Users/{id}")),
        Expect::Group { .. } => Some(format!("/Groups/{id}")),
        _ => None,
    }
}

/// The Zulip account or group behind a SCIM path, for messages.
pub fn zulip_state(fake: &FakeZulip, path: &str) -> String {
    let id = path.rsplit('/').next().and_then(|id| id.parse::<u64>().ok()).unwrap_or_default();
    if path.starts_with("/Users/") {
        format!("{:?}", fake.user(id).map(|u| (u.full_name, role_name(u.role), u.is_active, u.profile_data)))
    } else {
        format!("{:?}", fake.group(id).map(|g| (g.name, g.members, g.deactivated)))
    }
}

/// Whether a replica's read of `path` (`status`, `body`) shows what Zulip holds now: a User's
/// address, name, active, role and externalId; a Group's name and active members, or a 404
/// for a deactivated group.
pub fn read_agrees(fake: &FakeZulip, field: Option<u64>, path: &str, status: u16, body: &Value) -> bool {
    let Some(id) = path.rsplit('/').next().and_then(|id| id.parse::<u64>().ok()) else {
        return false;
    };
    if path.starts_with("/Users/") {
        let Some(u) = fake.user(id) else {
            return status == 404;
        };
        status == 200
            && ["/userName", "/displayName", "/active", "/role", "/externalId"].iter().all(|p| {
                let have = match body.pointer(p) {
                    Some(Value::String(s)) if *p == "/userName" => Value::from(s.to_ascii_lowercase()),
                    Some(v) => v.clone(),
                    None => Value::Null,
                };
                zulip_user_value(&u, field, p).is_none_or(|want| want == have)
            })
    } else {
        match fake.group(id) {
            Some(g) if !g.deactivated => {
                status == 200
                    && body["displayName"].as_str() == Some(g.name.as_str())
                    && member_ids(body) == Some(visible_members(fake, &g.members))
            }
            _ => status == 404,
        }
    }
}

/// A read User against what the IdP wants (its repair pass).
pub fn fields_match(current: &Value, expect: &Expect) -> bool {
    match expect {
        Expect::User { fields, .. } => fields.iter().all(|(p, want)| current.pointer(p) == Some(want)),
        _ => false,
    }
}

pub fn group_matches(current: &Value, expect: &Expect) -> bool {
    match expect {
        Expect::Group { name, members, .. } => {
            current["displayName"].as_str() == Some(name.as_str())
                && member_ids(current).as_ref() == Some(members)
        }
        _ => false,
    }
}

/// Zulip against the model once the run settled; `strict`: every entity (after the
/// repair pass), else only those whose last write succeeded and nobody edited since.
pub fn converged(fake: &FakeZulip, field: Option<u64>, model: &Model, strict: bool) -> Vec<String> {
    let mut out = Vec::new();
    let users = fake.users();
    let mut by_address: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for u in &users {
        by_address.entry(u.delivery_email.to_ascii_lowercase()).or_default().push(u.user_id);
    }
    for (address, ids) in &by_address {
        if ids.len() > 1 {
            out.push(format!("address {address} has {} accounts: {ids:?}", ids.len()));
        }
    }
    for m in &model.people {
        if !strict && (m.dirty || m.edited) {
            continue;
        }
        if !m.assigned {
            for address in &m.past_addresses {
                if by_address.contains_key(address) {
                    out.push(format!("person {} was never assigned but {address} has an account", m.slot));
                }
            }
            continue;
        }
        let Some(id) = m.account else {
            out.push(format!("person {} ({}) has no account", m.slot, m.address));
            continue;
        };
        let Some(u) = fake.user(id) else {
            out.push(format!("person {}'s account {id} is not in Zulip", m.slot));
            continue;
        };
        let have = (
            u.delivery_email.to_ascii_lowercase(),
            u.full_name.clone(),
            role_name(u.role),
            u.is_active,
            field.and_then(|f| u.profile_data.get(&f).cloned()).unwrap_or_default(),
        );
        // A deactivated account keeps whatever it had; only its state is intended.
        let want_ext = if field.is_some() { m.external_id.clone() } else { String::new() };
        let want = (m.address.clone(), m.display(), m.role, m.active, want_ext);
        let equal = if m.active { have == want } else { !have.3 };
        if !equal {
            out.push(format!("person {} (user {id}): Zulip has {have:?}, the IdP wants {want:?}", m.slot));
        }
    }
    for g in &model.groups {
        if !strict && g.dirty {
            continue;
        }
        for old in &g.deleted {
            if fake.group(*old).is_some_and(|z| !z.deactivated) {
                out.push(format!("group slot {} deleted group {old} is still active", g.slot));
            }
        }
        let Some(id) = g.id else {
            continue;
        };
        let Some(z) = fake.group(id) else {
            out.push(format!("group {id} is not in Zulip"));
            continue;
        };
        let want: BTreeSet<u64> = g
            .members
            .iter()
            .filter_map(|p| model.people[*p].account.filter(|_| model.people[*p].active))
            .collect();
        let have = visible_members(fake, &z.members);
        if z.deactivated || z.name != g.name || have != want {
            out.push(format!(
                "group {id}: Zulip has ({}, {have:?}, deactivated {}), the IdP wants ({}, {want:?})",
                z.name, z.deactivated, g.name
            ));
        }
    }
    out
}

/// What a sidecar should list: every human account and active non-system group in Zulip.
pub fn zulip_listing(fake: &FakeZulip, field: Option<u64>) -> (BTreeSet<String>, BTreeSet<String>) {
    let users = fake
        .users()
        .into_iter()
        .filter(|u| !u.is_bot)
        .map(|u| {
            format!(
                "{} {} {} {} {} {}",
                u.user_id,
                u.delivery_email.to_ascii_lowercase(),
                u.full_name,
                role_name(u.role),
                u.is_active,
                field.and_then(|f| u.profile_data.get(&f).cloned()).unwrap_or_default()
            )
        })
        .collect();
    let groups = fake
        .groups()
        .into_iter()
        .filter(|g| !g.deactivated)
        .map(|g| format!("{} {} {:?}", g.id, g.name, visible_members(fake, &g.members)))
        .collect();
    (users, groups)
}

/// The same listing from a sidecar's `GET /Users` and `GET /Groups` answers.
pub fn sidecar_listing(users: &Value, groups: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let users = users["Resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|u| {
                    format!(
                        "{} {} {} {} {} {}",
                        u["id"].as_str().unwrap_or_default(),
                        u["userName"].as_str().unwrap_or_default().to_ascii_lowercase(),
                        u["displayName"].as_str().unwrap_or_default(),
                        u["role"].as_str().unwrap_or_default(),
                        u["active"].as_bool().unwrap_or_default(),
                        u["externalId"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let groups = groups["Resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|g| {
                    format!(
                        "{} {} {:?}",
                        g["id"].as_str().unwrap_or_default(),
                        g["displayName"].as_str().unwrap_or_default(),
                        member_ids(g).unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (users, groups)
}
