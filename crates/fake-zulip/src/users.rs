//! The `/users` endpoints (zulip-rest-api.md §9, transcripts `users.json`).

use serde_json::{json, Map, Value};

use super::model::{check_full_name, now_minute_iso, valid_email, FakeUser, Realm, OWNER, ROLES};
use super::profile_fields::{apply_profile_data, parse_profile_data};
use super::wire::{ApiError, ApiResult, Params};

pub(crate) type Data = Map<String, Value>;

/// How a user was named in the path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UserRef {
    Id(u64),
    Email(String),
}

pub(crate) const LIST_PARAMS: &[&str] = &["client_gravatar", "include_custom_profile_fields", "user_ids"];
pub(crate) const GET_PARAMS: &[&str] = &["client_gravatar", "include_custom_profile_fields"];
pub(crate) const CREATE_PARAMS: &[&str] = &["email", "password", "full_name"];
pub(crate) const UPDATE_PARAMS: &[&str] = &["full_name", "role", "profile_data", "new_email"];
pub(crate) const DEACTIVATE_PARAMS: &[&str] = &["deactivation_notification_comment", "actions"];

fn no_such_user() -> ApiError {
    ApiError::bad("No such user")
}

fn gravatar_flags(realm: &Realm, params: &Params) -> ApiResult<(bool, bool)> {
    let default_gravatar = realm.feature_level >= 92;
    Ok((
        params.json_bool("client_gravatar")?.unwrap_or(default_gravatar),
        params.json_bool("include_custom_profile_fields")?.unwrap_or(false),
    ))
}

/// `GET /users`: every account, bots and deactivated users included, ascending ids.
pub(crate) fn list(realm: &Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    let (gravatar, profile) = gravatar_flags(realm, params)?;
    let wanted = if realm.feature_level >= 384 { params.json_int_list("user_ids")? } else { None };
    let members: Vec<Value> = realm
        .users
        .values()
        .filter(|u| wanted.as_ref().is_none_or(|w| w.contains(&u.user_id)))
        .map(|u| Value::Object(realm.render_user(caller, u, gravatar, profile)))
        .collect();
    let mut d = Data::new();
    d.insert("members".into(), Value::Array(members));
    Ok(d)
}

fn resolve<'a>(realm: &'a Realm, caller: &FakeUser, r: &UserRef) -> Option<&'a FakeUser> {
    match r {
        UserRef::Id(id) => realm.users.get(id),
        UserRef::Email(e) => realm.lookup_by_api_email(caller, e),
    }
}

/// `GET /users/{user_id}` and `GET /users/{email}`.
pub(crate) fn get(realm: &Realm, caller: &FakeUser, target: &UserRef, params: &Params) -> ApiResult<Data> {
    let (gravatar, profile) = gravatar_flags(realm, params)?;
    let user = resolve(realm, caller, target).ok_or_else(no_such_user)?;
    let mut d = Data::new();
    d.insert("user".into(), Value::Object(realm.render_user(caller, user, gravatar, profile)));
    Ok(d)
}

/// `GET /users/me`: the caller's own object at the top level.
pub(crate) fn me(realm: &Realm, caller: &FakeUser) -> ApiResult<Data> {
    // This view never lets the client compute gravatars.
    let mut d = realm.render_user(caller, caller, false, !caller.is_bot);
    d.insert("max_message_id".into(), json!(-1));
    Ok(d)
}

/// `POST /users`.
pub(crate) fn create(realm: &mut Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    if !caller.is_admin() {
        return Err(ApiError::principal("Must be an organization administrator"));
    }
    if !caller.can_create_users {
        return Err(ApiError::bad("User not authorized to create users"));
    }
    let email = params.required_string("email")?;
    let password = params.required_string("password")?;
    let full_name = params.required_string("full_name")?;
    let full_name = check_full_name(&full_name).map_err(ApiError::bad)?;
    if !valid_email(email.trim()) {
        return Err(ApiError::bad("Bad name or username"));
    }
    if realm.user_by_email(&email).is_some() {
        return Err(ApiError::bad(format!("Email '{email}' already in use")));
    }
    if password.chars().count() < 6 {
        return Err(ApiError::bad("The password is too weak."));
    }
    let mut user = FakeUser::new(email.trim(), &full_name);
    user.date_joined = now_minute_iso();
    let id = realm.insert_user(user);
    realm.subscribe_to_default_channels(id);
    let mut d = Data::new();
    if realm.feature_level >= 30 {
        d.insert("user_id".into(), json!(id));
    }
    Ok(d)
}

/// `PATCH /users/{user_id}` and `PATCH /users/{email}`: validated as a whole, then applied
/// in one step (role → full_name → profile_data → new_email); any error changes nothing.
pub(crate) fn update(
    realm: &mut Realm,
    caller: &FakeUser,
    target: &UserRef,
    params: &Params,
) -> ApiResult<Data> {
    let fl = realm.feature_level;
    // Typed parameters are parsed before the view runs.
    let full_name = params.string("full_name");
    let role = parse_role(params)?;
    let profile_data = params.json_value("profile_data")?.map(parse_profile_data).transpose()?;
    let new_email = if fl >= 313 { params.string("new_email") } else { None };

    if caller.is_admin() && new_email.is_some() && !caller.can_change_user_emails {
        return Err(ApiError::bad("User not authorized to change user emails"));
    }
    let mut user = resolve(realm, caller, target).cloned().ok_or_else(no_such_user)?;
    if !caller.is_admin() {
        return Err(ApiError::bad("Insufficient permission"));
    }

    if let Some(role) = role.filter(|r| *r != user.role) {
        change_role(realm, caller, &mut user, role)?;
    }
    if let Some(name) = full_name {
        if name != user.full_name && !name.trim().is_empty() {
            user.full_name = check_full_name(&name).map_err(ApiError::bad)?;
        }
    }
    if let Some(items) = &profile_data {
        apply_profile_data(realm, &mut user, items)?;
    }
    if let Some(new_email) = new_email {
        if new_email != user.delivery_email {
            change_email(realm, &mut user, &new_email)?;
        }
    }
    realm.users.insert(user.user_id, user);
    realm.sync_system_groups();
    Ok(Data::new())
}

/// The `role` parameter: one of Zulip's role values.
fn parse_role(params: &Params) -> ApiResult<Option<u16>> {
    match params.json_int("role")? {
        Some(r) if !ROLES.iter().any(|x| i64::from(*x) == r) => {
            Err(ApiError::bad("Invalid role: Value error, Not in the list of possible values"))
        }
        Some(r) => Ok(u16::try_from(r).ok()),
        None => Ok(None),
    }
}

/// Only an owner grants or removes ownership, and never the last owner's.
fn change_role(realm: &Realm, caller: &FakeUser, user: &mut FakeUser, role: u16) -> ApiResult<()> {
    if (role == OWNER || user.role == OWNER) && caller.role != OWNER {
        return Err(ApiError::principal("Must be an organization owner"));
    }
    if user.role == OWNER && is_last_owner(realm, user.user_id) {
        return Err(ApiError::bad(
            "The owner permission cannot be removed from the only organization owner.",
        ));
    }
    user.role = role;
    Ok(())
}

/// A new delivery email: well formed and nobody else's (active or deactivated).
fn change_email(realm: &Realm, user: &mut FakeUser, new_email: &str) -> ApiResult<()> {
    if !valid_email(new_email.trim()) {
        return Err(ApiError::bad("Invalid new email address."));
    }
    if let Some(other) = realm.user_by_email(new_email) {
        return Err(ApiError::bad(if other.is_active {
            "New email value error: Already has an account."
        } else {
            "New email value error: Account has been deactivated."
        }));
    }
    user.delivery_email = new_email.trim().to_string();
    Ok(())
}

/// The only active human owner?
fn is_last_owner(realm: &Realm, user_id: u64) -> bool {
    !realm.users.values().any(|u| u.user_id != user_id && u.role == OWNER && u.is_active && !u.is_bot)
}

/// `DELETE /users/{user_id}`.
pub(crate) fn deactivate(
    realm: &mut Realm,
    caller: &FakeUser,
    user_id: u64,
    params: &Params,
) -> ApiResult<Data> {
    if let Some(comment) = params.get("deactivation_notification_comment") {
        if comment.chars().count() > 2000 {
            return Err(ApiError::bad(
                "deactivation_notification_comment is too long (limit: 2000 characters)",
            ));
        }
    }
    if realm.feature_level >= 459 {
        if let Some(v) = params.json_value("actions")? {
            if !v.is_object() {
                return Err(ApiError::bad("actions is not a dict"));
            }
        }
    }
    let target = realm.users.get(&user_id).filter(|u| !u.is_bot).cloned().ok_or_else(no_such_user)?;
    if !target.is_active {
        return Err(ApiError::bad("User is deactivated"));
    }
    if !caller.is_admin() {
        return Err(ApiError::bad("Insufficient permission"));
    }
    if target.role == OWNER && caller.role != OWNER {
        return Err(ApiError::principal("Must be an organization owner"));
    }
    if target.role == OWNER && is_last_owner(realm, user_id) {
        return Err(ApiError::bad("Cannot deactivate the only organization owner"));
    }
    deactivate_with_bots(realm, user_id);
    Ok(Data::new())
}

/// Deactivates the user and the bots they own (Zulip does the bots first).
fn deactivate_with_bots(realm: &mut Realm, user_id: u64) {
    for u in realm.users.values_mut() {
        if u.user_id == user_id || (u.is_bot && u.bot_owner_id == Some(user_id)) {
            u.is_active = false;
        }
    }
}

/// `DELETE /users/me`.
pub(crate) fn deactivate_me(realm: &mut Realm, caller: &FakeUser) -> ApiResult<Data> {
    let others_active = realm.users.values().any(|u| u.is_active && u.user_id != caller.user_id);
    if !others_active {
        return Err(ApiError::new(400, "CANNOT_DEACTIVATE_LAST_USER", "Cannot deactivate the only user.")
            .with("is_last_owner", json!(false))
            .with("entity", json!("user")));
    }
    if caller.role == OWNER && is_last_owner(realm, caller.user_id) {
        return Err(ApiError::new(
            400,
            "CANNOT_DEACTIVATE_LAST_USER",
            "Cannot deactivate the only organization owner.",
        )
        .with("is_last_owner", json!(true))
        .with("entity", json!("organization owner")));
    }
    deactivate_with_bots(realm, caller.user_id);
    Ok(Data::new())
}

/// `POST /users/{user_id}/reactivate`: idempotent.
pub(crate) fn reactivate(realm: &mut Realm, caller: &FakeUser, user_id: u64) -> ApiResult<Data> {
    if !realm.users.contains_key(&user_id) {
        return Err(no_such_user());
    }
    if !caller.is_admin() {
        return Err(ApiError::bad("Insufficient permission"));
    }
    if let Some(u) = realm.users.get_mut(&user_id) {
        u.is_active = true;
    }
    Ok(Data::new())
}
