//! The events API (`POST /register`, `GET /events`, `DELETE /events`; transcripts
//! `events.json`): per-queue event lists, long-polling, heartbeats, pruning, and the events
//! every state change generates, found by comparing the state before and after the change.
//!
//! Any change goes through [`EventQueues::capture`] then [`EventQueues::publish`], REST writes
//! and the out-of-band helpers alike, so no change can forget its events. Shapes follow the
//! transcripts (README facts 8 and 9): deactivation is a lone `is_active:false` update (no
//! `remove_members`); reactivation adds `add_members` for every group the user is directly in;
//! a role change is a `role` update followed by system-group membership changes; a new
//! address is a `delivery_email` update followed by an avatar update; group deactivation is
//! `op: "remove"`; one event per changed group property.
//!
//! Custom profile fields: every write to the field list sends `custom_profile_fields` with
//! the whole list (deleting a field sends nothing per user, though the values go); a changed
//! value sends `realm_user`/`update` with `custom_profile_field: {id, value,
//! rendered_value}` (rendered only for text types), a cleared one `{id, value: null}`
//! (Zulip's `check_remove_custom_profile_field_value`). Clears come before sets, each in
//! field-id order (Zulip: clears, then sets, each in request order).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::model::{gravatar_url, FakeGroup, FakeUser, Realm, GROUP_SETTINGS};
use super::timing::{DeliveryClock, EventDelivery};
use super::users::Data;
use super::wire::{ApiError, ApiResult, Params};

/// Zulip's Tornado answers a blocking poll with nothing to say after about 54 s.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(50);

pub(crate) const REGISTER_PARAMS: &[&str] = &[
    "event_types",
    "fetch_event_types",
    "apply_markdown",
    "client_gravatar",
    "include_subscribers",
    "slim_presence",
    "all_public_streams",
    "narrow",
    "client_capabilities",
    "queue_lifespan_secs",
    "presence_history_limit_days",
    "user_client",
];
pub(crate) const GET_EVENTS_PARAMS: &[&str] = &["queue_id", "last_event_id", "dont_block", "user_client"];
pub(crate) const DELETE_QUEUE_PARAMS: &[&str] = &["queue_id"];

/// One registered queue, as tests see it ([`super::FakeZulip::event_queues`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQueueInfo {
    pub queue_id: String,
    /// The account that registered it (only it may poll it).
    pub owner_id: u64,
    /// `None`: every type.
    pub event_types: Option<Vec<String>>,
    /// The id of the newest event queued so far (`-1` when none).
    pub newest_event_id: i64,
    /// Events queued and not yet acknowledged by a poll.
    pub pending: usize,
}

#[derive(Debug)]
struct Queue {
    owner: u64,
    event_types: Option<Vec<String>>,
    events: VecDeque<Value>,
    /// When each event of `events` becomes visible to polls (non-decreasing).
    visible: VecDeque<Instant>,
    next_id: i64,
    /// The id of the newest event dropped after an acknowledgement.
    newest_pruned: Option<i64>,
}

/// Every queue of the realm.
#[derive(Debug)]
pub(crate) struct EventQueues {
    queues: BTreeMap<String, Queue>,
    created: u64,
    pub heartbeat: Duration,
    /// Bumped whenever an event is queued or queues disappear; long-polls wait on it.
    wake: watch::Sender<u64>,
    /// When queued events become visible ([`EventDelivery`]; default: at once).
    pub delivery: DeliveryClock,
}

/// The parts of the state a change may touch, taken before it (see [`EventQueues::capture`]).
#[derive(Debug)]
pub(crate) struct Before {
    users: BTreeMap<u64, Option<FakeUser>>,
    groups: BTreeMap<u64, FakeGroup>,
    next_user_id: u64,
    profile_fields_version: u64,
}

/// How a `GET /events` starts.
#[derive(Debug)]
pub(crate) enum PollStart {
    /// Answer now (`dont_block`, events pending, or a new queue).
    Ready(Data),
    /// Wait for an event or the heartbeat on this queue.
    Wait { queue_id: String },
}

fn bad_queue(queue_id: &str) -> ApiError {
    ApiError::new(400, "BAD_EVENT_QUEUE_ID", format!("Bad event queue ID: {queue_id}"))
        .with("queue_id", json!(queue_id))
}

// === impl EventQueues ===

impl EventQueues {
    pub fn new() -> Self {
        EventQueues {
            queues: BTreeMap::new(),
            created: 0,
            heartbeat: DEFAULT_HEARTBEAT,
            wake: watch::channel(0).0,
            delivery: DeliveryClock::new(EventDelivery::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    fn wake_pollers(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn info(&self) -> Vec<EventQueueInfo> {
        self.queues
            .iter()
            .map(|(id, q)| EventQueueInfo {
                queue_id: id.clone(),
                owner_id: q.owner,
                event_types: q.event_types.clone(),
                newest_event_id: q.next_id - 1,
                pending: q.events.len(),
            })
            .collect()
    }

    /// A new queue for `owner`; `event_types: None` = every type.
    pub fn register(&mut self, owner: u64, event_types: Option<Vec<String>>) -> String {
        self.created += 1;
        let queue_id = format!("{:08x}-fake-{:04x}", rand::random::<u32>(), self.created);
        let queue = Queue {
            owner,
            event_types,
            events: VecDeque::new(),
            visible: VecDeque::new(),
            next_id: 0,
            newest_pruned: None,
        };
        self.queues.insert(queue_id.clone(), queue);
        queue_id
    }

    /// Drops every queue (Zulip's garbage collection, a server restart); pending polls answer
    /// `BAD_EVENT_QUEUE_ID` at once.
    pub fn expire_all(&mut self) {
        self.queues.clear();
        self.wake_pollers();
    }

    /// `DELETE /events`.
    pub fn delete(&mut self, owner: u64, queue_id: &str) -> ApiResult<()> {
        match self.queues.get(queue_id) {
            Some(q) if q.owner == owner => {
                self.queues.remove(queue_id);
                self.wake_pollers();
                Ok(())
            }
            _ => Err(bad_queue(queue_id)),
        }
    }

    /// `GET /events`: acknowledges (prunes) events up to `last_event_id`, then answers at once
    /// or asks the caller to wait.
    pub fn poll(&mut self, owner: u64, params: &Params) -> ApiResult<PollStart> {
        let last_event_id = params.json_int("last_event_id")?;
        let dont_block = params.json_bool("dont_block")?.unwrap_or(false);
        let Some(queue_id) = params.string("queue_id") else {
            // Tornado creates a queue (without initial state) instead of failing.
            let queue_id = self.register(owner, None);
            let mut d = Data::new();
            d.insert("events".into(), json!([]));
            d.insert("queue_id".into(), json!(queue_id));
            return Ok(PollStart::Ready(d));
        };
        let queue = self
            .queues
            .get_mut(&queue_id)
            .filter(|q| q.owner == owner)
            .ok_or_else(|| bad_queue(&queue_id))?;
        if let Some(last) = last_event_id {
            if queue.newest_pruned.is_some_and(|pruned| last < pruned) {
                return Err(ApiError::bad(format!("An event newer than {last} has already been pruned!")));
            }
            while queue.events.front().and_then(|e| e["id"].as_i64()).is_some_and(|id| id <= last) {
                queue.visible.pop_front();
                if let Some(pruned) = queue.events.pop_front() {
                    queue.newest_pruned = pruned["id"].as_i64();
                }
            }
        }
        if dont_block {
            let mut d = Data::new();
            d.insert("events".into(), Value::Array(queue.visible_events(Instant::now())));
            return Ok(PollStart::Ready(d));
        }
        match self.pending(owner, &queue_id)? {
            Some(d) => Ok(PollStart::Ready(d)),
            None => Ok(PollStart::Wait { queue_id }),
        }
    }

    /// A blocking poll's answer if the queue has events; `Err` once the queue is gone.
    pub fn pending(&self, owner: u64, queue_id: &str) -> ApiResult<Option<Data>> {
        let queue =
            self.queues.get(queue_id).filter(|q| q.owner == owner).ok_or_else(|| bad_queue(queue_id))?;
        let events = queue.visible_events(Instant::now());
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(blocking_answer(events, queue_id)))
    }

    /// When the next queued event that is not visible yet becomes visible (a long-poll
    /// wakes then).
    pub fn next_visible(&self, owner: u64, queue_id: &str) -> Option<Instant> {
        let queue = self.queues.get(queue_id).filter(|q| q.owner == owner)?;
        let now = Instant::now();
        queue.visible.iter().copied().find(|at| *at > now)
    }

    /// Nothing happened for a heartbeat interval: queue a `heartbeat` event and answer it.
    pub fn heartbeat(&mut self, owner: u64, queue_id: &str) -> ApiResult<Data> {
        let queue =
            self.queues.get_mut(queue_id).filter(|q| q.owner == owner).ok_or_else(|| bad_queue(queue_id))?;
        let event = json!({"type": "heartbeat", "id": queue.next_id});
        queue.next_id += 1;
        let now = Instant::now();
        // After every event queued before it (which may not be visible yet).
        let at = queue.visible.back().map_or(now, |last| (*last).max(now));
        queue.events.push_back(event);
        queue.visible.push_back(at);
        Ok(blocking_answer(queue.visible_events(Instant::now().max(at)), queue_id))
    }

    /// What a change may touch, when anyone listens: the given users (and bots they own, which
    /// follow their owner's deactivation), every group, and users created from now on.
    pub fn capture(&self, realm: &Realm, touched: &[u64]) -> Option<Before> {
        if self.queues.is_empty() {
            return None;
        }
        let mut users = BTreeMap::new();
        for id in touched {
            users.insert(*id, realm.users.get(id).cloned());
        }
        for bot in realm.users.values().filter(|u| u.bot_owner_id.is_some_and(|o| touched.contains(&o))) {
            users.insert(bot.user_id, Some(bot.clone()));
        }
        Some(Before {
            users,
            groups: realm.groups.clone(),
            next_user_id: realm.next_user_id,
            profile_fields_version: realm.profile_fields_version,
        })
    }

    /// Queues the events that turn `before` into the current `realm`, rendered for each
    /// queue's owner, and wakes the pollers.
    pub fn publish(&mut self, realm: &Realm, before: Option<Before>) {
        let Some(mut before) = before else {
            return;
        };
        for id in before.next_user_id..realm.next_user_id {
            before.users.entry(id).or_insert(None);
        }
        let mut any = false;
        for queue in self.queues.values_mut() {
            let Some(viewer) = realm.users.get(&queue.owner) else {
                continue;
            };
            for mut event in changes(realm, viewer, &before) {
                let wanted = queue
                    .event_types
                    .as_ref()
                    .is_none_or(|types| event["type"].as_str().is_some_and(|t| types.iter().any(|w| w == t)));
                if !wanted {
                    continue;
                }
                if let Some(map) = event.as_object_mut() {
                    map.insert("id".into(), json!(queue.next_id));
                }
                queue.next_id += 1;
                let at = self.delivery.visible_at(Instant::now(), queue.visible.back().copied());
                queue.events.push_back(event);
                queue.visible.push_back(at);
                any = true;
            }
        }
        if any {
            self.wake_pollers();
        }
    }
}

impl Queue {
    /// The events visible at `now`: a prefix of the queue (visibility never reorders).
    fn visible_events(&self, now: Instant) -> Vec<Value> {
        self.events
            .iter()
            .zip(&self.visible)
            .take_while(|(_, at)| **at <= now)
            .map(|(e, _)| e.clone())
            .collect()
    }
}

/// A blocking poll's body: the events and (unlike `dont_block`) the queue id.
fn blocking_answer(events: Vec<Value>, queue_id: &str) -> Data {
    let mut d = Data::new();
    d.insert("events".into(), Value::Array(events));
    d.insert("queue_id".into(), json!(queue_id));
    d
}

/// The events (without ids) from `before` to `realm`, as `viewer` receives them.
fn changes(realm: &Realm, viewer: &FakeUser, before: &Before) -> Vec<Value> {
    let mut out = Vec::new();
    if before.profile_fields_version != realm.profile_fields_version {
        out.push(json!({"type": "custom_profile_fields", "fields": realm.render_profile_fields()}));
    }
    let reactivated = user_changes(realm, viewer, before, &mut out);
    // Reactivation re-announces every group the user is directly in (memberships were kept).
    for user_id in reactivated {
        for g in realm.groups.values().filter(|g| !g.deactivated && g.members.contains(&user_id)) {
            out.push(members_event("add_members", g.id, vec![user_id]));
        }
    }
    let ids: BTreeSet<u64> = before.groups.keys().chain(realm.groups.keys()).copied().collect();
    for id in ids {
        match (before.groups.get(&id), realm.groups.get(&id)) {
            (None, Some(new)) => out.push(json!({
                "type": "user_group", "op": "add", "group": realm.render_group(new),
            })),
            (Some(_), None) => out.push(json!({"type": "user_group", "op": "remove", "group_id": id})),
            (Some(old), Some(new)) => group_updates(id, old, new, &mut out),
            (None, None) => {}
        }
    }
    out
}

/// The `realm_user` events of the users in `before` (added, removed, updated); returns the
/// ones reactivated.
fn user_changes(realm: &Realm, viewer: &FakeUser, before: &Before, out: &mut Vec<Value>) -> Vec<u64> {
    let mut reactivated = Vec::new();
    for (id, old) in &before.users {
        match (old, realm.users.get(id)) {
            (None, Some(new)) => out.push(json!({
                "type": "realm_user", "op": "add",
                "person": realm.render_user(viewer, new, false, true),
            })),
            (Some(old), None) => out.push(json!({
                "type": "realm_user", "op": "remove",
                "person": {"user_id": id, "full_name": old.full_name},
            })),
            (Some(old), Some(new)) => {
                user_updates(realm, viewer, old, new, out);
                if !old.is_active && new.is_active {
                    reactivated.push(*id);
                }
            }
            (None, None) => {}
        }
    }
    reactivated
}

/// The `user_group` events of group `id`, which still exists, in Zulip's order: name,
/// description, settings, members, subgroups, then (de)activation.
fn group_updates(id: u64, old: &FakeGroup, new: &FakeGroup, out: &mut Vec<Value>) {
    if old.name != new.name {
        out.push(group_update_event(id, "name", json!(new.name)));
    }
    if old.description != new.description {
        out.push(group_update_event(id, "description", json!(new.description)));
    }
    for s in GROUP_SETTINGS {
        if old.settings.get(s) != new.settings.get(s) {
            out.push(group_update_event(id, s, new.settings.get(s).cloned().unwrap_or(Value::Null)));
        }
    }
    let added = only_in(&new.members, &old.members);
    let removed = only_in(&old.members, &new.members);
    if !added.is_empty() {
        out.push(members_event("add_members", id, added));
    }
    if !removed.is_empty() {
        out.push(members_event("remove_members", id, removed));
    }
    let added = only_in(&new.direct_subgroup_ids, &old.direct_subgroup_ids);
    let removed = only_in(&old.direct_subgroup_ids, &new.direct_subgroup_ids);
    if !added.is_empty() {
        out.push(subgroups_event("add_subgroups", id, added));
    }
    if !removed.is_empty() {
        out.push(subgroups_event("remove_subgroups", id, removed));
    }
    match (old.deactivated, new.deactivated) {
        (false, true) => out.push(json!({"type": "user_group", "op": "remove", "group_id": id})),
        (true, false) => out.push(group_update_event(id, "deactivated", json!(false))),
        _ => {}
    }
}

/// A `user_group`/`update` event setting one property.
fn group_update_event(group_id: u64, key: &str, value: Value) -> Value {
    let mut data = Map::new();
    data.insert(key.to_string(), value);
    json!({"type": "user_group", "op": "update", "group_id": group_id, "data": data})
}

/// A `user_group` `add_members`/`remove_members` event.
fn members_event(op: &str, group_id: u64, ids: Vec<u64>) -> Value {
    json!({"type": "user_group", "op": op, "group_id": group_id, "user_ids": ids})
}

/// A `user_group` `add_subgroups`/`remove_subgroups` event.
fn subgroups_event(op: &str, group_id: u64, ids: Vec<u64>) -> Value {
    json!({"type": "user_group", "op": op, "group_id": group_id, "direct_subgroup_ids": ids})
}

/// `realm_user`/`update` events, one per changed property, in Zulip's order.
fn user_updates(realm: &Realm, viewer: &FakeUser, old: &FakeUser, new: &FakeUser, out: &mut Vec<Value>) {
    let id = new.user_id;
    let mut push = |person: Value| out.push(json!({"type": "realm_user", "op": "update", "person": person}));
    if old.role != new.role {
        push(json!({"user_id": id, "role": new.role}));
    }
    if old.full_name != new.full_name {
        push(json!({"user_id": id, "full_name": new.full_name}));
    }
    for field in profile_changes(realm, old, new) {
        push(json!({"user_id": id, "custom_profile_field": field}));
    }
    let seen = |u: &FakeUser| realm.can_see_email(viewer, u).then(|| u.delivery_email.clone());
    if seen(old) != seen(new) {
        push(json!({"user_id": id, "delivery_email": seen(new)}));
    }
    if old.delivery_email != new.delivery_email {
        let url = gravatar_url(&new.delivery_email);
        push(json!({
            "avatar_source": "G",
            "avatar_url": url,
            "avatar_url_medium": url.replace("&version=", "&s=500&version="),
            "avatar_version": 1,
            "user_id": id,
        }));
    }
    if realm.api_email(old) != realm.api_email(new) {
        push(json!({"user_id": id, "new_email": realm.api_email(new)}));
    }
    if old.is_active != new.is_active {
        push(json!({"user_id": id, "is_active": new.is_active}));
    }
}

/// `custom_profile_field` bodies for the values that differ (fields that still exist only:
/// a deleted field's values vanish silently): clears, then sets, each by field id.
fn profile_changes(realm: &Realm, old: &FakeUser, new: &FakeUser) -> Vec<Value> {
    let ids: BTreeSet<u64> = old.profile_data.keys().chain(new.profile_data.keys()).copied().collect();
    let mut clears = Vec::new();
    let mut sets = Vec::new();
    for id in ids {
        let Some(field) = realm.profile_fields.get(&id) else {
            continue;
        };
        match (old.profile_data.get(&id), new.profile_data.get(&id)) {
            (Some(_), None) => clears.push(json!({"id": id, "value": null})),
            (before, Some(value)) if before != Some(value) => {
                let mut body = Map::new();
                body.insert("id".into(), json!(id));
                body.extend(realm.render_profile_value(field, value));
                sets.push(Value::Object(body));
            }
            _ => {}
        }
    }
    clears.extend(sets);
    clears
}

/// Items of `a` not in `b`, in `a`'s order.
fn only_in(a: &[u64], b: &[u64]) -> Vec<u64> {
    if b.len() < 32 {
        return a.iter().copied().filter(|x| !b.contains(x)).collect();
    }
    // Large groups (role:members of a big realm): a set, not a quadratic scan.
    let b: std::collections::HashSet<u64> = b.iter().copied().collect();
    a.iter().copied().filter(|x| !b.contains(x)).collect()
}

/// `POST /register`: a queue for the caller, plus the initial state asked for
/// (`fetch_event_types`, default `event_types`): `realm_user` gives `realm_users` (active, no
/// `is_active` field) and `realm_non_active_users`; `realm_user_groups` gives the active groups;
/// `custom_profile_fields` gives the field list and `custom_profile_field_types`.
pub(crate) fn register(
    realm: &Realm,
    queues: &mut EventQueues,
    caller: &FakeUser,
    params: &Params,
) -> ApiResult<Data> {
    let strings = |name: &str| -> ApiResult<Option<Vec<String>>> {
        match params.json_value(name)? {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::bad(format!("{name}[{i}] is not a string")))
                })
                .collect::<ApiResult<Vec<String>>>()
                .map(Some),
            Some(_) => Err(ApiError::bad(format!("{name} is not a list"))),
        }
    };
    let event_types = strings("event_types")?;
    let fetch = strings("fetch_event_types")?.or_else(|| event_types.clone());
    let fetches = |t: &str| fetch.as_ref().is_none_or(|f| f.iter().any(|x| x == t));
    let client_gravatar = params.json_bool("client_gravatar")?.unwrap_or(true);
    let queue_id = queues.register(caller.user_id, event_types);
    let mut d = Data::new();
    d.insert("queue_id".into(), json!(queue_id));
    d.insert("last_event_id".into(), json!(-1));
    d.insert("zulip_version".into(), json!(super::version_for(realm.feature_level)));
    d.insert("zulip_feature_level".into(), json!(realm.feature_level));
    d.insert("zulip_merge_base".into(), json!(""));
    if fetches("realm_user") {
        let render = |u: &FakeUser| {
            let mut m = realm.render_user(caller, u, client_gravatar, !u.is_bot);
            m.remove("is_active");
            Value::Object(m)
        };
        let active: Vec<Value> = realm.users.values().filter(|u| u.is_active).map(render).collect();
        let inactive: Vec<Value> = realm.users.values().filter(|u| !u.is_active).map(render).collect();
        d.insert("realm_users".into(), Value::Array(active));
        d.insert("realm_non_active_users".into(), Value::Array(inactive));
        d.insert("cross_realm_bots".into(), json!([]));
    }
    if fetch.as_ref().is_some_and(|f| f.iter().any(|x| x == "realm_user_groups")) {
        let groups: Vec<Value> = realm
            .groups
            .values()
            .filter(|g| !g.deactivated)
            .map(|g| Value::Object(realm.render_group(g)))
            .collect();
        d.insert("realm_user_groups".into(), Value::Array(groups));
    }
    if fetches("custom_profile_fields") {
        d.insert("custom_profile_fields".into(), Value::Array(realm.render_profile_fields()));
        d.insert("custom_profile_field_types".into(), field_types());
    }
    Ok(d)
}

/// `custom_profile_field_types` of `POST /register`, in Zulip's order (sorted by name).
fn field_types() -> Value {
    const TYPES: [(&str, u8, &str); 8] = [
        ("DATE", 4, "Date"),
        ("EXTERNAL_ACCOUNT", 7, "External account"),
        ("URL", 5, "Link"),
        ("SELECT", 3, "List of options"),
        ("PRONOUNS", 8, "Pronouns"),
        ("LONG_TEXT", 2, "Text (long)"),
        ("SHORT_TEXT", 1, "Text (short)"),
        ("USER", 6, "Users"),
    ];
    let mut m = Map::new();
    for (key, id, name) in TYPES {
        m.insert(key.into(), json!({"id": id, "name": name}));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests;
