//! The `/user_groups` endpoints (zulip-rest-api.md §10, transcripts `user-groups.json`).

use serde_json::{json, Value};

use super::model::{check_group_name, now_unix, FakeGroup, FakeUser, Realm, GROUP_SETTINGS, GUEST, MEMBER};
use super::users::Data;
use super::wire::{ApiError, ApiResult, Params};

fn invalid_group() -> ApiError {
    ApiError::bad("Invalid user group")
}

fn deactivated_group() -> ApiError {
    ApiError::bad("User group is deactivated.")
}

fn insufficient() -> ApiError {
    ApiError::bad("Insufficient permission")
}

/// The decorator on every group endpoint except `…/deactivate`: humans, no guests.
pub(crate) fn require_member(caller: &FakeUser) -> ApiResult<()> {
    if caller.is_bot {
        return Err(ApiError::bad("This endpoint does not accept bot requests."));
    }
    if caller.role == GUEST {
        return Err(ApiError::bad("Not allowed for guest users"));
    }
    Ok(())
}

/// Group settings this feature level knows.
pub(crate) fn settings_for(fl: u32) -> Vec<&'static str> {
    GROUP_SETTINGS
        .into_iter()
        .filter(|s| match *s {
            "can_manage_group" => fl >= 283,
            "can_join_group" => fl >= 301,
            "can_add_members_group" => fl >= 305,
            "can_leave_group" => fl >= 308,
            "can_remove_members_group" => fl >= 324,
            _ => true,
        })
        .collect()
}

pub(crate) fn list_params(fl: u32) -> Vec<&'static str> {
    match fl {
        294.. => vec!["include_deactivated_groups"],
        290..=293 => vec!["allow_deactivated"],
        _ => vec![],
    }
}

pub(crate) fn create_params(fl: u32) -> Vec<&'static str> {
    let mut v = vec!["name", "members", "description"];
    if fl >= 311 {
        v.push("subgroups");
    }
    v.extend(settings_for(fl));
    v
}

pub(crate) fn update_params(fl: u32) -> Vec<&'static str> {
    let mut v = vec!["name", "description"];
    if fl >= 386 {
        v.push("deactivated");
    }
    v.extend(settings_for(fl));
    v
}

pub(crate) fn members_params(fl: u32) -> Vec<&'static str> {
    let mut v = vec!["add", "delete"];
    if fl >= 311 {
        v.extend(["add_subgroups", "delete_subgroups"]);
    }
    v
}

/// `GET /user_groups`.
pub(crate) fn list(realm: &Realm, params: &Params) -> ApiResult<Data> {
    let include = match realm.feature_level {
        294.. => params.json_bool("include_deactivated_groups")?,
        290..=293 => params.json_bool("allow_deactivated")?,
        _ => None,
    }
    .unwrap_or(false);
    let groups: Vec<Value> = realm
        .groups
        .values()
        .filter(|g| include || !g.deactivated)
        .map(|g| Value::Object(realm.render_group(g)))
        .collect();
    let mut d = Data::new();
    d.insert("user_groups".into(), Value::Array(groups));
    Ok(d)
}

/// Validates a group-setting value: an existing group id, or an anonymous group of active
/// users and existing groups.
fn check_setting_value(realm: &Realm, name: &str, v: &Value) -> ApiResult<()> {
    let check_group = |id: u64| {
        if realm.groups.contains_key(&id) {
            Ok(())
        } else {
            Err(ApiError::bad(format!("Invalid user group ID: {id}")))
        }
    };
    match v {
        Value::Number(n) => check_group(n.as_u64().unwrap_or(u64::MAX)),
        Value::Object(o) => {
            let list = |key: &str| -> ApiResult<Vec<u64>> {
                match o.get(key) {
                    None => Ok(Vec::new()),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| x.as_u64().ok_or_else(|| ApiError::bad(format!("Invalid {name}"))))
                        .collect(),
                    Some(_) => Err(ApiError::bad(format!("Invalid {name}"))),
                }
            };
            for u in list("direct_members")? {
                if !realm.is_active_user(u) {
                    return Err(ApiError::bad(format!("Invalid user ID: {u}")));
                }
            }
            for g in list("direct_subgroups")? {
                check_group(g)?;
            }
            Ok(())
        }
        _ => Err(ApiError::bad(format!("Invalid {name}"))),
    }
}

fn check_new_members(realm: &Realm, ids: &[u64]) -> ApiResult<()> {
    match ids.iter().find(|id| !realm.is_active_user(**id)) {
        Some(id) => Err(ApiError::bad(format!("Invalid user ID: {id}"))),
        None => Ok(()),
    }
}

fn check_subgroups_exist(realm: &Realm, ids: &[u64]) -> ApiResult<()> {
    match ids.iter().find(|id| !realm.groups.contains_key(id)) {
        Some(id) => Err(ApiError::bad(format!("Invalid user group ID: {id}"))),
        None => Ok(()),
    }
}

fn dedup(ids: Vec<u64>) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// `POST /user_groups/create`.
pub(crate) fn create(realm: &mut Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    let fl = realm.feature_level;
    let name = params.required_string("name")?;
    let members = params.required_int_list("members")?;
    let description = params.required_string("description")?;
    let subgroups =
        if fl >= 311 { params.json_int_list("subgroups")?.unwrap_or_default() } else { Vec::new() };
    let mut settings = serde_json::Map::new();
    for s in settings_for(fl) {
        if let Some(v) = params.json_value(s)? {
            settings.insert(s.to_string(), v);
        }
    }
    // Realm setting can_create_groups, default role:members.
    if caller.role > MEMBER {
        return Err(insufficient());
    }
    check_group_name(&name).map_err(ApiError::bad)?;
    check_new_members(realm, &members)?;
    check_subgroups_exist(realm, &subgroups)?;
    for (s, v) in &settings {
        check_setting_value(realm, s, v)?;
    }
    if realm.group_name_taken(&name) {
        return Err(ApiError::bad(format!("User group '{name}' already exists.")));
    }
    let mut g = FakeGroup::new(&name, &dedup(members));
    g.description = description;
    g.direct_subgroup_ids = dedup(subgroups);
    g.creator_id = Some(caller.user_id);
    g.date_created = Some(now_unix());
    g.settings = settings;
    let id = realm.insert_group(g);
    let mut d = Data::new();
    if fl >= 317 {
        d.insert("group_id".into(), json!(id));
    }
    Ok(d)
}

/// Lookup + the checks of Zulip's `access_user_group_for_update`.
fn access_for_update(realm: &Realm, id: u64, allow_deactivated: bool) -> ApiResult<FakeGroup> {
    let g = realm.groups.get(&id).cloned().ok_or_else(invalid_group)?;
    if g.is_system_group {
        return Err(insufficient());
    }
    if !allow_deactivated && g.deactivated {
        return Err(deactivated_group());
    }
    Ok(g)
}

/// `PATCH /user_groups/{id}`.
pub(crate) fn update(realm: &mut Realm, caller: &FakeUser, id: u64, params: &Params) -> ApiResult<Data> {
    let fl = realm.feature_level;
    let name = params.string("name");
    let description = params.string("description");
    let reactivate = if fl >= 386 { params.json_bool("deactivated")? } else { None };
    let mut changes = Vec::new();
    for s in settings_for(fl) {
        if let Some(v) = params.json_value(s)? {
            match v {
                Value::Object(o) if o.contains_key("new") => changes.push((s, o)),
                _ => return Err(ApiError::bad(format!("Invalid {s}"))),
            }
        }
    }
    if name.is_none() && description.is_none() && reactivate.is_none() && changes.is_empty() {
        return Err(ApiError::bad("No new data supplied"));
    }
    // Renaming a deactivated group worked already at FL 313 (transcript), before FL 340.
    let mut g = access_for_update(realm, id, true)?;
    if !realm.can_manage_group(caller, &g) {
        return Err(insufficient());
    }
    if let Some(name) = name.filter(|n| *n != g.name) {
        check_group_name(&name).map_err(ApiError::bad)?;
        if realm.group_name_taken(&name) {
            return Err(ApiError::bad(format!("User group '{name}' already exists.")));
        }
        g.name = name;
    }
    if let Some(d) = description {
        g.description = d;
    }
    for (s, o) in changes {
        if let Some(old) = o.get("old") {
            if g.settings.get(s) != Some(old) {
                return Err(ApiError::new(
                    400,
                    "EXPECTATION_MISMATCH",
                    "'old' value does not match the expected value.",
                ));
            }
        }
        let new = o.get("new").cloned().unwrap_or(Value::Null);
        check_setting_value(realm, s, &new)?;
        g.settings.insert(s.to_string(), new);
    }
    if reactivate == Some(false) {
        g.deactivated = false;
    }
    realm.groups.insert(id, g);
    Ok(Data::new())
}

/// The users and subgroups one membership request adds and removes.
struct MembershipChange {
    add: Vec<u64>,
    delete: Vec<u64>,
    add_sub: Vec<u64>,
    delete_sub: Vec<u64>,
}

/// `POST /user_groups/{id}/members` (and, with `subgroups_route`, `POST …/subgroups`).
pub(crate) fn update_members(
    realm: &mut Realm,
    caller: &FakeUser,
    id: u64,
    params: &Params,
    subgroups_route: bool,
) -> ApiResult<Data> {
    let fl = realm.feature_level;
    let change = MembershipChange::parse(params, fl, subgroups_route)?;
    let mut g = access_for_update(realm, id, fl >= 391)?;
    check_membership_permission(realm, caller, &g, &change)?;
    check_membership_change(realm, id, &g, &change)?;
    let MembershipChange { add, delete, add_sub, delete_sub } = change;
    g.members.extend(dedup(add));
    g.members.retain(|m| !delete.contains(m));
    g.direct_subgroup_ids.extend(dedup(add_sub));
    g.direct_subgroup_ids.retain(|s| !delete_sub.contains(s));
    realm.groups.insert(id, g);
    Ok(Data::new())
}

impl MembershipChange {
    /// `add`/`delete` (users, or subgroups on the subgroups route) and, from FL 311,
    /// `add_subgroups`/`delete_subgroups`; a request that changes nothing is refused.
    fn parse(params: &Params, fl: u32, subgroups_route: bool) -> ApiResult<MembershipChange> {
        let list = |n: &str| -> ApiResult<Vec<u64>> { Ok(params.json_int_list(n)?.unwrap_or_default()) };
        let change = if subgroups_route {
            MembershipChange {
                add: Vec::new(),
                delete: Vec::new(),
                add_sub: list("add")?,
                delete_sub: list("delete")?,
            }
        } else {
            let subs = |n: &str| -> ApiResult<Vec<u64>> {
                if fl >= 311 {
                    list(n)
                } else {
                    Ok(Vec::new())
                }
            };
            MembershipChange {
                add: list("add")?,
                delete: list("delete")?,
                add_sub: subs("add_subgroups")?,
                delete_sub: subs("delete_subgroups")?,
            }
        };
        let c = &change;
        if c.add.is_empty() && c.delete.is_empty() && c.add_sub.is_empty() && c.delete_sub.is_empty() {
            return Err(ApiError::bad(if subgroups_route {
                "Nothing to do. Specify at least one of \"add\" or \"delete\"."
            } else {
                "Nothing to do. Specify at least one of \"add\", \"delete\", \"add_subgroups\" or \"delete_subgroups\"."
            }));
        }
        Ok(change)
    }
}

/// Whether `caller` may make each part of `change`: managers may do anything; otherwise
/// the group's `can_add_members_group`, `can_remove_members_group` (FL 324), and
/// `can_join_group`/`can_leave_group` for a change of only themselves.
fn check_membership_permission(
    realm: &Realm,
    caller: &FakeUser,
    g: &FakeGroup,
    change: &MembershipChange,
) -> ApiResult<()> {
    let fl = realm.feature_level;
    let MembershipChange { add, delete, add_sub, delete_sub } = change;
    let me = caller.user_id;
    let manage = realm.can_manage_group(caller, g);
    let setting = |s: &str| realm.setting_contains(g.settings.get(s), me);
    let may_add = manage
        || setting("can_add_members_group")
        || (add.iter().all(|u| *u == me) && setting("can_join_group"));
    let may_remove = manage
        || (fl >= 324 && setting("can_remove_members_group"))
        || (delete.iter().all(|u| *u == me) && setting("can_leave_group"));
    let may_subgroups = manage || setting("can_add_members_group");
    if (!add.is_empty() && !may_add)
        || (!delete.is_empty() && !may_remove)
        || ((!add_sub.is_empty() || !delete_sub.is_empty()) && !may_subgroups)
    {
        return Err(insufficient());
    }
    Ok(())
}

/// The users and subgroups named exist, additions are new, removals are present, and no
/// added subgroup would make group `id` contain itself.
fn check_membership_change(
    realm: &Realm,
    id: u64,
    g: &FakeGroup,
    change: &MembershipChange,
) -> ApiResult<()> {
    let MembershipChange { add, delete, add_sub, delete_sub } = change;
    check_new_members(realm, add)?;
    if let Some(u) = add.iter().find(|u| g.members.contains(u)) {
        return Err(ApiError::bad(format!("User {u} is already a member of this group")));
    }
    check_new_members(realm, delete)?;
    if let Some(u) = delete.iter().find(|u| !g.members.contains(u)) {
        return Err(ApiError::bad(format!("There is no member '{u}' in this user group")));
    }
    check_subgroups_exist(realm, add_sub)?;
    for s in add_sub {
        if g.direct_subgroup_ids.contains(s) {
            return Err(ApiError::bad(format!("User group {s} is already a subgroup of this group.")));
        }
        if *s == id || realm.recursive_subgroups(*s, false).contains(&id) {
            return Err(ApiError::bad(format!(
                "User group {id} is already a subgroup of one of the passed subgroups."
            )));
        }
    }
    check_subgroups_exist(realm, delete_sub)?;
    if let Some(s) = delete_sub.iter().find(|s| !g.direct_subgroup_ids.contains(s)) {
        return Err(ApiError::bad(format!("User group {s} is not a subgroup of this group.")));
    }
    Ok(())
}

/// `GET /user_groups/{id}/members`: recursive unless `direct_member_only`.
pub(crate) fn members(realm: &Realm, id: u64, params: &Params) -> ApiResult<Data> {
    let direct = params.json_bool("direct_member_only")?.unwrap_or(false);
    let g = realm.groups.get(&id).ok_or_else(invalid_group)?;
    if g.deactivated {
        return Err(deactivated_group());
    }
    let ids: Vec<u64> = if direct {
        g.members.iter().copied().filter(|u| realm.is_active_user(*u)).collect()
    } else {
        realm.recursive_members(id).into_iter().collect()
    };
    let mut d = Data::new();
    d.insert("members".into(), json!(ids));
    Ok(d)
}

/// `GET /user_groups/{id}/members/{user_id}`.
pub(crate) fn is_member(realm: &Realm, id: u64, user_id: u64, params: &Params) -> ApiResult<Data> {
    let direct = params.json_bool("direct_member_only")?.unwrap_or(false);
    let g = realm.groups.get(&id).ok_or_else(invalid_group)?;
    if g.deactivated {
        return Err(deactivated_group());
    }
    if !realm.users.contains_key(&user_id) {
        return Err(ApiError::bad("No such user"));
    }
    let member = realm.is_active_user(user_id)
        && if direct { g.members.contains(&user_id) } else { realm.recursive_members(id).contains(&user_id) };
    let mut d = Data::new();
    d.insert("is_user_group_member".into(), json!(member));
    Ok(d)
}

/// `GET /user_groups/{id}/subgroups`: recursive unless `direct_subgroup_only`.
pub(crate) fn subgroups(realm: &Realm, id: u64, params: &Params) -> ApiResult<Data> {
    let direct = params.json_bool("direct_subgroup_only")?.unwrap_or(false);
    let g = realm.groups.get(&id).ok_or_else(invalid_group)?;
    if g.deactivated {
        return Err(deactivated_group());
    }
    let ids: Vec<u64> = if direct {
        g.direct_subgroup_ids.clone()
    } else {
        realm.recursive_subgroups(id, false).into_iter().collect()
    };
    let mut d = Data::new();
    d.insert("subgroups".into(), json!(ids));
    Ok(d)
}

/// Where an active group still uses `id`: as a subgroup, or in a permission setting.
fn objections(realm: &Realm, id: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let supergroups: Vec<u64> = realm
        .groups
        .values()
        .filter(|g| !g.deactivated && g.id != id && g.direct_subgroup_ids.contains(&id))
        .map(|g| g.id)
        .collect();
    if !supergroups.is_empty() {
        out.push(json!({"type": "subgroup", "supergroup_ids": supergroups}));
    }
    for g in realm.groups.values().filter(|g| !g.deactivated && !g.is_system_group && g.id != id) {
        let settings: Vec<&str> = GROUP_SETTINGS
            .into_iter()
            .filter(|s| match g.settings.get(*s) {
                Some(Value::Number(n)) => n.as_u64() == Some(id),
                Some(Value::Object(o)) => o
                    .get("direct_subgroups")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v.as_u64() == Some(id))),
                _ => false,
            })
            .collect();
        if !settings.is_empty() {
            out.push(json!({"type": "user_group", "group_id": g.id, "settings": settings}));
        }
    }
    out
}

/// `POST /user_groups/{id}/deactivate` (no bot check, unlike the other group endpoints).
pub(crate) fn deactivate(realm: &mut Realm, caller: &FakeUser, id: u64) -> ApiResult<Data> {
    let g = access_for_update(realm, id, false)?;
    if !realm.can_manage_group(caller, &g) {
        return Err(insufficient());
    }
    let objections = objections(realm, id);
    if !objections.is_empty() {
        return Err(ApiError::new(
            400,
            "CANNOT_DEACTIVATE_GROUP_IN_USE",
            "Cannot deactivate user group in use.",
        )
        .with("objections", Value::Array(objections)));
    }
    if let Some(g) = realm.groups.get_mut(&id) {
        g.deactivated = true;
    }
    Ok(Data::new())
}

/// `DELETE /user_groups/{id}` (feature level < 294 only).
pub(crate) fn delete(realm: &mut Realm, caller: &FakeUser, id: u64) -> ApiResult<Data> {
    let g = access_for_update(realm, id, true)?;
    if !realm.can_manage_group(caller, &g) {
        return Err(insufficient());
    }
    realm.groups.remove(&id);
    for other in realm.groups.values_mut() {
        other.direct_subgroup_ids.retain(|s| *s != id);
    }
    Ok(Data::new())
}
