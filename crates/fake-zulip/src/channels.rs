//! The channel endpoints the sidecar may use (zulip-rest-api.md §9 "Channel subscriptions",
//! zulip-openapi.yaml "Get all channels", "Get channel subscribers", "Unsubscribe from a
//! channel"; "Get a user's subscribed channels" is FL 440). No transcripts exist for them:
//! shapes and errors follow the OpenAPI description. Channel changes generate no events.

use serde_json::{json, Value};

use super::model::{FakeChannel, FakeUser, Realm, GUEST};
use super::users::Data;
use super::wire::{ApiError, ApiResult, Params};

pub(crate) const GET_CHANNELS_PARAMS: &[&str] = &[
    "include_public",
    "include_web_public",
    "include_subscribed",
    "include_all_active",
    "include_default",
    "include_owner_subscribed",
];
pub(crate) const UNSUBSCRIBE_PARAMS: &[&str] = &["subscriptions", "principals"];

fn invalid_channel_id() -> ApiError {
    ApiError::bad("Invalid channel ID")
}

/// Whether `caller` may see `c`'s metadata and subscribers: administrators see every
/// channel; others public ones (not guests) and those they are in.
fn can_access(caller: &FakeUser, c: &FakeChannel) -> bool {
    caller.is_admin()
        || c.subscribers.contains(&caller.user_id)
        || (!c.invite_only && caller.role != GUEST)
        || c.is_web_public
}

/// `GET /streams`: the union of the sets asked for, sorted by name.
pub(crate) fn list(realm: &Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    let flag =
        |name: &str, default: bool| -> ApiResult<bool> { Ok(params.json_bool(name)?.unwrap_or(default)) };
    let include_public = flag("include_public", true)?;
    let include_web_public = flag("include_web_public", false)?;
    let include_subscribed = flag("include_subscribed", true)?;
    let include_all_active = flag("include_all_active", false)?;
    let include_default = flag("include_default", false)?;
    let include_owner_subscribed = flag("include_owner_subscribed", false)?;
    if include_all_active && !caller.is_admin() {
        return Err(ApiError::bad("User not authorized for this query"));
    }
    let owner = caller.bot_owner_id.filter(|_| caller.is_bot && include_owner_subscribed);
    let mut streams: Vec<&FakeChannel> = realm
        .channels
        .values()
        .filter(|c| {
            include_all_active
                || (include_public && !c.invite_only && caller.role != GUEST)
                || (include_web_public && c.is_web_public)
                || (include_subscribed && c.subscribers.contains(&caller.user_id))
                || (include_default && c.is_default)
                || owner.is_some_and(|o| c.subscribers.contains(&o) && can_access(caller, c))
        })
        .collect();
    streams.sort_by_key(|c| c.name.to_lowercase());
    let rendered: Vec<Value> =
        streams.into_iter().map(|c| Value::Object(realm.render_channel(c, include_default))).collect();
    let mut d = Data::new();
    d.insert("streams".into(), Value::Array(rendered));
    Ok(d)
}

/// `GET /streams/{stream_id}/members`: active subscribers, ascending.
pub(crate) fn members(realm: &Realm, caller: &FakeUser, stream_id: u64) -> ApiResult<Data> {
    let channel =
        realm.channels.get(&stream_id).filter(|c| can_access(caller, c)).ok_or_else(invalid_channel_id)?;
    let subscribers: Vec<u64> =
        channel.subscribers.iter().copied().filter(|id| realm.is_active_user(*id)).collect();
    let mut d = Data::new();
    d.insert("subscribers".into(), json!(subscribers));
    Ok(d)
}

/// `GET /users/{user_id}/channels` (FL 440): the ids of the channels the user is in that
/// the caller can access.
pub(crate) fn user_channels(realm: &Realm, caller: &FakeUser, user_id: u64) -> ApiResult<Data> {
    if !realm.users.contains_key(&user_id) {
        return Err(ApiError::bad("No such user"));
    }
    let ids: Vec<u64> = realm
        .channels
        .values()
        .filter(|c| c.subscribers.contains(&user_id) && can_access(caller, c))
        .map(|c| c.stream_id)
        .collect();
    let mut d = Data::new();
    d.insert("subscribed_channel_ids".into(), json!(ids));
    Ok(d)
}

/// `principals`: a JSON list of user ids or of Zulip API e-mails.
fn principals(realm: &Realm, caller: &FakeUser, params: &Params) -> ApiResult<Option<Vec<u64>>> {
    let Some(value) = params.json_value("principals")? else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(ApiError::bad("principals is not a list"));
    };
    let fl = realm.feature_level;
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let user = match &item {
            Value::Number(n) => n.as_u64().and_then(|id| realm.users.get(&id)),
            Value::String(email) => realm.lookup_by_api_email(caller, email),
            _ => return Err(ApiError::bad("principals is not a list of integers or strings")),
        };
        match user.filter(|u| u.is_active) {
            Some(u) => ids.push(u.user_id),
            // FL 208 turned the 403 into a 400 (OpenAPI "Unsubscribe from a channel").
            None if fl >= 208 => return Err(ApiError::bad("No such user")),
            None => {
                let shown = match &item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return Err(ApiError::new(
                    403,
                    "UNAUTHORIZED_PRINCIPAL",
                    format!("User not authorized to execute queries on behalf of '{shown}'"),
                )
                .with("principal", item.clone()));
            }
        }
    }
    Ok(Some(ids))
}

/// `DELETE /users/me/subscriptions`: removes the principals (default: the caller) from the
/// named channels. Principals are checked first, then every name (an unknown one refuses
/// the whole request), then the permission to remove others.
pub(crate) fn unsubscribe(realm: &mut Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    let names = match params.json_value("subscriptions")? {
        None => return Err(ApiError::missing("subscriptions")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| ApiError::bad(format!("subscriptions[{i}] is not a string")))
            })
            .collect::<ApiResult<Vec<String>>>()?,
        Some(_) => return Err(ApiError::bad("subscriptions is not a list")),
    };
    let people = principals(realm, caller, params)?.unwrap_or_else(|| vec![caller.user_id]);
    let mut ids = Vec::with_capacity(names.len());
    for name in &names {
        let channel = realm.channel_by_name(name).filter(|c| can_access(caller, c)).ok_or_else(|| {
            ApiError::new(400, "STREAM_DOES_NOT_EXIST", format!("Channel '{name}' does not exist"))
                .with("stream", json!(name))
        })?;
        ids.push(channel.stream_id);
    }
    let others = people.iter().any(|id| {
        *id != caller.user_id
            && !realm.users.get(id).is_some_and(|u| u.is_bot && u.bot_owner_id == Some(caller.user_id))
    });
    if others && !caller.is_admin() {
        return Err(ApiError::bad("Insufficient permission"));
    }
    let mut removed = Vec::new();
    let mut not_removed = Vec::new();
    for id in ids {
        if let Some(channel) = realm.channels.get_mut(&id) {
            for person in &people {
                if channel.subscribers.remove(person) {
                    removed.push(channel.name.clone());
                } else {
                    not_removed.push(channel.name.clone());
                }
            }
        }
    }
    let mut d = Data::new();
    d.insert("removed".into(), json!(removed));
    d.insert("not_removed".into(), json!(not_removed));
    Ok(d)
}
