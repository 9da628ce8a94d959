//! Paths to routes (parse first), the methods each route allows, and dispatch to handlers.

use super::model::{FakeUser, Realm};
use super::users::{Data, UserRef};
use super::wire::{ApiResult, Params};
use super::{channels, groups, profile_fields, users};

/// A known `/api/v1/…` route.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    ServerSettings,
    Users,
    UsersMe,
    User(UserRef),
    UserReactivate(u64),
    /// `GET /users/{user_id}/channels` (FL 440).
    UserChannels(u64),
    /// `DELETE /users/me/subscriptions` (the only method the fake serves there).
    UsersMeSubscriptions,
    Streams,
    StreamMembers(u64),
    UserGroups,
    UserGroupCreate,
    UserGroup(u64),
    GroupMembers(u64),
    GroupMember(u64, u64),
    GroupSubgroups(u64),
    GroupDeactivate(u64),
    /// `GET` (list), `POST` (create), `PATCH` (reorder) `/realm/profile_fields`.
    ProfileFields,
    /// `PATCH` (update), `DELETE /realm/profile_fields/{id}`.
    ProfileField(u64),
    /// `POST /register` (served by `process`, not `dispatch`: it owns the event queues).
    Register,
    /// `GET`/`DELETE /events` (likewise; a `GET` may long-poll).
    Events,
}

/// An integer path segment as Django's `[0-9]+` matches it; huge values never exist.
fn int_segment(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

// === impl Route ===

impl Route {
    /// `segments` are the percent-decoded parts after `/api/v1/`; `None` = HTML 404.
    pub fn parse(segments: &[String], feature_level: u32) -> Option<Route> {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let route = match s.as_slice() {
            ["server_settings"] => Route::ServerSettings,
            ["register"] => Route::Register,
            ["events"] => Route::Events,
            ["users"] => Route::Users,
            ["users", "me"] => Route::UsersMe,
            ["users", "me", "subscriptions"] => Route::UsersMeSubscriptions,
            ["users", id, "channels"] if feature_level >= 440 => Route::UserChannels(int_segment(id)?),
            ["users", id] if !id.is_empty() => match int_segment(id) {
                Some(n) => Route::User(UserRef::Id(n)),
                None => Route::User(UserRef::Email((*id).to_string())),
            },
            ["users", id, "reactivate"] => Route::UserReactivate(int_segment(id)?),
            ["streams"] => Route::Streams,
            ["streams", id, "members"] => Route::StreamMembers(int_segment(id)?),
            ["user_groups"] => Route::UserGroups,
            ["user_groups", "create"] => Route::UserGroupCreate,
            ["user_groups", id] => Route::UserGroup(int_segment(id)?),
            ["user_groups", id, "members"] => Route::GroupMembers(int_segment(id)?),
            ["user_groups", id, "members", uid] => Route::GroupMember(int_segment(id)?, int_segment(uid)?),
            ["user_groups", id, "subgroups"] => Route::GroupSubgroups(int_segment(id)?),
            ["user_groups", id, "deactivate"] if feature_level >= 290 => {
                Route::GroupDeactivate(int_segment(id)?)
            }
            ["realm", "profile_fields"] => Route::ProfileFields,
            ["realm", "profile_fields", id] => Route::ProfileField(int_segment(id)?),
            _ => return None,
        };
        Some(route)
    }

    /// Methods as Django's `rest_dispatch` lists them (HEAD added wherever GET is).
    pub fn allowed(&self, feature_level: u32) -> Vec<&'static str> {
        let mut m: Vec<&'static str> = match self {
            Route::ServerSettings => vec!["GET"],
            Route::Users => vec!["GET", "POST"],
            Route::UsersMe => vec!["GET", "DELETE"],
            Route::User(UserRef::Id(_)) => vec!["GET", "PATCH", "DELETE"],
            Route::User(UserRef::Email(_)) if feature_level >= 313 => vec!["GET", "PATCH"],
            Route::User(UserRef::Email(_)) => vec!["GET"],
            Route::UserReactivate(_) => vec!["POST"],
            Route::UserChannels(_) | Route::Streams | Route::StreamMembers(_) => vec!["GET"],
            // Zulip also serves GET, POST and PATCH here; the fake only what the sidecar uses.
            Route::UsersMeSubscriptions => vec!["DELETE"],
            Route::UserGroups => vec!["GET"],
            Route::UserGroupCreate => vec!["POST"],
            Route::UserGroup(_) if feature_level < 294 => vec!["PATCH", "DELETE"],
            Route::UserGroup(_) => vec!["PATCH"],
            Route::GroupMembers(_) | Route::GroupSubgroups(_) => vec!["GET", "POST"],
            Route::GroupMember(..) => vec!["GET"],
            Route::GroupDeactivate(_) => vec!["POST"],
            Route::ProfileFields => vec!["GET", "PATCH", "POST"],
            Route::ProfileField(_) => vec!["PATCH", "DELETE"],
            Route::Register => vec!["POST"],
            Route::Events => vec!["GET", "DELETE"],
        };
        if m.contains(&"GET") {
            m.push("HEAD");
        }
        m
    }

    /// Group endpoints refuse bots and guests, except `…/deactivate`.
    fn needs_human_member(&self) -> bool {
        matches!(
            self,
            Route::UserGroups
                | Route::UserGroupCreate
                | Route::UserGroup(_)
                | Route::GroupMembers(_)
                | Route::GroupMember(..)
                | Route::GroupSubgroups(_)
        )
    }
}

/// The users a write on `route` may change (bots they own follow them; new users are found
/// by id), so that only those are compared for events.
pub(crate) fn touched_users(realm: &Realm, route: &Route, caller: &FakeUser) -> Vec<u64> {
    match route {
        Route::User(UserRef::Id(id)) | Route::UserReactivate(id) => vec![*id],
        Route::User(UserRef::Email(email)) => {
            realm.lookup_by_api_email(caller, email).map(|u| u.user_id).into_iter().collect()
        }
        Route::UsersMe => vec![caller.user_id],
        _ => Vec::new(),
    }
}

/// A handler's result and the parameter names its endpoint understands.
type Dispatched = (ApiResult<Data>, Vec<&'static str>);

/// Runs an authenticated request; returns the handler's result and the parameter names the
/// endpoint understands (for `ignored_parameters_unsupported`).
pub(crate) fn dispatch(
    realm: &mut Realm,
    route: &Route,
    method: &str,
    caller: &FakeUser,
    params: &Params,
) -> Dispatched {
    if route.needs_human_member() {
        if let Err(e) = groups::require_member(caller) {
            return (Err(e), Vec::new());
        }
    }
    let method = if method == "HEAD" { "GET" } else { method };
    match route {
        Route::Users | Route::UsersMe | Route::User(_) | Route::UserReactivate(_) => {
            dispatch_users(realm, route, method, caller, params)
        }
        Route::UserChannels(_) | Route::UsersMeSubscriptions | Route::Streams | Route::StreamMembers(_) => {
            dispatch_channels(realm, route, caller, params)
        }
        Route::UserGroups
        | Route::UserGroupCreate
        | Route::UserGroup(_)
        | Route::GroupMembers(_)
        | Route::GroupMember(..)
        | Route::GroupSubgroups(_)
        | Route::GroupDeactivate(_) => dispatch_groups(realm, route, method, caller, params),
        Route::ProfileFields | Route::ProfileField(_) => {
            dispatch_profile_fields(realm, route, method, caller, params)
        }
        Route::ServerSettings | Route::Register | Route::Events => not_dispatched(),
    }
}

/// Unreachable after the method check; answer like an unknown user to stay total.
fn not_dispatched() -> Dispatched {
    (Err(super::wire::ApiError::bad("No such user")), Vec::new())
}

/// `/users`, `/users/me`, `/users/{id|email}` and `…/reactivate`.
fn dispatch_users(
    realm: &mut Realm,
    route: &Route,
    method: &str,
    caller: &FakeUser,
    params: &Params,
) -> Dispatched {
    let fl = realm.feature_level;
    match (route, method) {
        (Route::Users, "GET") => {
            let known = if fl >= 384 { users::LIST_PARAMS.to_vec() } else { users::GET_PARAMS.to_vec() };
            (users::list(realm, caller, params), known)
        }
        (Route::Users, _) => (users::create(realm, caller, params), users::CREATE_PARAMS.to_vec()),
        (Route::UsersMe, "GET") => (users::me(realm, caller), Vec::new()),
        (Route::UsersMe, _) => (users::deactivate_me(realm, caller), Vec::new()),
        (Route::User(target), "GET") => {
            (users::get(realm, caller, target, params), users::GET_PARAMS.to_vec())
        }
        (Route::User(target), "PATCH") => {
            let mut known = users::UPDATE_PARAMS.to_vec();
            if fl < 313 {
                known.retain(|p| *p != "new_email");
            }
            (users::update(realm, caller, target, params), known)
        }
        (Route::User(UserRef::Id(id)), _) => {
            let mut known = users::DEACTIVATE_PARAMS.to_vec();
            if fl < 459 {
                known.retain(|p| *p != "actions");
            }
            (users::deactivate(realm, caller, *id, params), known)
        }
        (Route::UserReactivate(id), _) => (users::reactivate(realm, caller, *id), Vec::new()),
        _ => not_dispatched(),
    }
}

/// `/users/{id}/channels`, `/users/me/subscriptions`, `/streams` and its members.
fn dispatch_channels(realm: &mut Realm, route: &Route, caller: &FakeUser, params: &Params) -> Dispatched {
    match route {
        Route::UserChannels(id) => (channels::user_channels(realm, caller, *id), Vec::new()),
        Route::UsersMeSubscriptions => {
            (channels::unsubscribe(realm, caller, params), channels::UNSUBSCRIBE_PARAMS.to_vec())
        }
        Route::Streams => (channels::list(realm, caller, params), channels::GET_CHANNELS_PARAMS.to_vec()),
        Route::StreamMembers(id) => (channels::members(realm, caller, *id), Vec::new()),
        _ => not_dispatched(),
    }
}

/// `/user_groups` and everything under it.
fn dispatch_groups(
    realm: &mut Realm,
    route: &Route,
    method: &str,
    caller: &FakeUser,
    params: &Params,
) -> Dispatched {
    let fl = realm.feature_level;
    match (route, method) {
        (Route::UserGroups, _) => (groups::list(realm, params), groups::list_params(fl)),
        (Route::UserGroupCreate, _) => (groups::create(realm, caller, params), groups::create_params(fl)),
        (Route::UserGroup(id), "PATCH") => {
            (groups::update(realm, caller, *id, params), groups::update_params(fl))
        }
        (Route::UserGroup(id), _) => (groups::delete(realm, caller, *id), Vec::new()),
        (Route::GroupMembers(id), "GET") => (groups::members(realm, *id, params), vec!["direct_member_only"]),
        (Route::GroupMembers(id), _) => {
            (groups::update_members(realm, caller, *id, params, false), groups::members_params(fl))
        }
        (Route::GroupMember(id, uid), _) => {
            (groups::is_member(realm, *id, *uid, params), vec!["direct_member_only"])
        }
        (Route::GroupSubgroups(id), "GET") => {
            (groups::subgroups(realm, *id, params), vec!["direct_subgroup_only"])
        }
        (Route::GroupSubgroups(id), _) => {
            (groups::update_members(realm, caller, *id, params, true), vec!["add", "delete"])
        }
        (Route::GroupDeactivate(id), _) => (groups::deactivate(realm, caller, *id), Vec::new()),
        _ => not_dispatched(),
    }
}

/// `/realm/profile_fields` and `/realm/profile_fields/{id}`.
fn dispatch_profile_fields(
    realm: &mut Realm,
    route: &Route,
    method: &str,
    caller: &FakeUser,
    params: &Params,
) -> Dispatched {
    match (route, method) {
        (Route::ProfileFields, "GET") => (profile_fields::list(realm), Vec::new()),
        (Route::ProfileFields, "PATCH") => {
            (profile_fields::reorder(realm, caller, params), profile_fields::REORDER_PARAMS.to_vec())
        }
        (Route::ProfileFields, _) => {
            (profile_fields::create(realm, caller, params), profile_fields::CREATE_PARAMS.to_vec())
        }
        (Route::ProfileField(id), "PATCH") => {
            (profile_fields::update(realm, caller, *id, params), profile_fields::UPDATE_PARAMS.to_vec())
        }
        (Route::ProfileField(id), _) => (profile_fields::delete(realm, caller, *id), Vec::new()),
        _ => not_dispatched(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/').map(str::to_string).collect()
    }

    #[test]
    fn parses_known_routes_and_rejects_the_rest() {
        let fl = 442;
        let cases: &[(&str, Option<Route>)] = &[
            ("users", Some(Route::Users)),
            ("users/me", Some(Route::UsersMe)),
            ("users/12", Some(Route::User(UserRef::Id(12)))),
            ("users/-5", Some(Route::User(UserRef::Email("-5".into())))),
            ("users/a@b.c", Some(Route::User(UserRef::Email("a@b.c".into())))),
            ("users/12/reactivate", Some(Route::UserReactivate(12))),
            ("users/abc/reactivate", None),
            ("users/me/", None),
            ("user_groups/abc/members", None),
            ("user_groups/3/members/4", Some(Route::GroupMember(3, 4))),
            ("user_groups/create", Some(Route::UserGroupCreate)),
            ("user_groups/7/deactivate", Some(Route::GroupDeactivate(7))),
            ("no_such_endpoint", None),
            ("users/99999999999999999999999", Some(Route::User(UserRef::Id(u64::MAX)))),
            ("register", Some(Route::Register)),
            ("streams", Some(Route::Streams)),
            ("streams/501/members", Some(Route::StreamMembers(501))),
            ("streams/general/members", None),
            ("users/12/channels", Some(Route::UserChannels(12))),
            ("users/me/subscriptions", Some(Route::UsersMeSubscriptions)),
            ("events", Some(Route::Events)),
            ("realm/profile_fields", Some(Route::ProfileFields)),
            ("realm/profile_fields/10", Some(Route::ProfileField(10))),
            ("realm/profile_fields/abc", None),
            ("realm/profile_fields/", None),
        ];
        for (path, want) in cases {
            assert_eq!(&Route::parse(&segs(path), fl), want, "{path}");
        }
        assert_eq!(Route::parse(&segs("user_groups/7/deactivate"), 289), None);
        assert_eq!(Route::parse(&segs("users/12/channels"), 439), None);
    }

    #[test]
    fn allowed_methods_follow_the_feature_level() {
        assert_eq!(Route::Users.allowed(442), ["GET", "POST", "HEAD"]);
        assert_eq!(Route::UsersMe.allowed(313), ["GET", "DELETE", "HEAD"]);
        assert_eq!(Route::UserGroup(1).allowed(442), ["PATCH"]);
        assert_eq!(Route::UserGroup(1).allowed(293), ["PATCH", "DELETE"]);
        assert_eq!(Route::User(UserRef::Email("x".into())).allowed(312), ["GET", "HEAD"]);
        assert_eq!(Route::ProfileFields.allowed(442), ["GET", "PATCH", "POST", "HEAD"]);
        assert_eq!(Route::ProfileField(1).allowed(442), ["PATCH", "DELETE"]);
    }
}
