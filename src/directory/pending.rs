//! Read-your-writes under delayed events: what the sidecar's own writes are still waiting to
//! hear back from Zulip's events API.
//!
//! A write the sidecar makes is recorded in the snapshot at once (a *write-through*); the
//! events the write causes arrive later — a poll round-trip, a batch window, or seconds on a
//! busy Zulip. Events that Zulip generated *before* the write may arrive after it too, and
//! applied naively they would roll the snapshot back ("renamed to B" answered, then an older
//! "renamed to A" event shows A again until B's own event arrives).
//!
//! Each write-through therefore leaves an *expectation* per changed field: the value the write
//! set. Zulip delivers one queue's events in the order it committed the changes, so while a
//! field has expectations, an incoming event for it is either one of the sidecar's own writes
//! (its value matches the oldest expectation, which it confirms) or a change
//! Zulip committed before the sidecar's newest write of that field (superseded: the snapshot
//! keeps the written value). Once the last expectation is confirmed, events apply normally
//! again. A write that changes nothing sends no event in Zulip, so only real changes (against
//! the snapshot) are expected. An expectation that no event confirms within
//! [`EXPECTATION_TTL`] (its event was lost with an expired queue) is dropped, so a field is
//! never frozen.
//!
//! A new event queue clears them (events from before it never come). Without events they
//! are inert: nothing confirms or consults them, and they are swept once expired.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use zulip_client::types::{Event, PersonUpdate, UserGroupChange};
use zulip_client::{Role, User, UserGroup};

/// How long an expectation waits for its event.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// Above this many fields waiting, expired expectations are swept on the next write.
const SWEEP_ABOVE: usize = 4096;

/// One field of one entity that a write can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    FullName(u64),
    Role(u64),
    Active(u64),
    /// The real address (`delivery_email`).
    Address(u64),
    /// The API e-mail (`email`).
    ApiEmail(u64),
    /// A custom profile field's value: (user, field).
    Profile(u64, u64),
    GroupName(u64),
    GroupDeactivated(u64),
    /// Whether (group, user) is a direct member.
    Member(u64, u64),
}

impl Key {
    fn user(&self) -> Option<u64> {
        match *self {
            Key::FullName(u) | Key::Role(u) | Key::Active(u) | Key::Address(u) | Key::ApiEmail(u) => Some(u),
            Key::Profile(u, _) => Some(u),
            _ => None,
        }
    }

    fn group(&self) -> Option<u64> {
        match *self {
            Key::GroupName(g) | Key::GroupDeactivated(g) | Key::Member(g, _) => Some(g),
            _ => None,
        }
    }
}

/// A field's value, as far as expectations compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(Option<String>),
    Int(u64),
    Bool(bool),
}

/// The outcome of an event's value for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Apply the event's value.
    Apply,
    /// Superseded by the sidecar's newer write: keep this (the written) value.
    Keep(Val),
}

/// The expectations of one realm's directory.
#[derive(Debug, Default)]
pub struct Pending {
    map: Mutex<HashMap<Key, VecDeque<(Val, Instant)>>>,
}

// === impl Pending ===

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<(Val, Instant)>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A write set `key` to `value` (a change from what the snapshot showed).
    pub fn expect(&self, key: Key, value: Val, now: Instant) {
        let mut map = self.lock();
        if map.len() >= SWEEP_ABOVE {
            // Expectations whose event never came are dropped lazily when the next event for
            // their field arrives; this bounds the ones no event ever visits.
            map.retain(|_, queue| {
                queue.back().is_some_and(|(_, at)| now.saturating_duration_since(*at) < EXPECTATION_TTL)
            });
        }
        map.entry(key).or_default().push_back((value, now));
    }

    /// An event sets `key` to `value`.
    pub fn admit(&self, key: Key, value: &Val, now: Instant) -> Admit {
        let mut map = self.lock();
        Self::admit_locked(&mut map, key, value, now)
    }

    fn admit_locked(
        map: &mut HashMap<Key, VecDeque<(Val, Instant)>>,
        key: Key,
        value: &Val,
        now: Instant,
    ) -> Admit {
        let Some(queue) = map.get_mut(&key) else {
            return Admit::Apply;
        };
        while queue.front().is_some_and(|(_, at)| now.saturating_duration_since(*at) >= EXPECTATION_TTL) {
            queue.pop_front();
        }
        // Only the oldest expectation can be confirmed: Zulip sends the writes' events in
        // the order it applied the writes, and an older change that happens to equal a later
        // write (the creation's `is_active: true` before a deactivation and reactivation)
        // must not release the writes before it.
        if queue.front().is_some_and(|(v, _)| v == value) {
            queue.pop_front();
        }
        match queue.back() {
            None => {
                map.remove(&key);
                Admit::Apply
            }
            Some((latest, _)) => Admit::Keep(latest.clone()),
        }
    }

    /// The keys with expectations about `user_id` (for a full `realm_user`/`add` object).
    pub fn user_keys(&self, user_id: u64) -> Vec<Key> {
        self.lock().keys().filter(|k| k.user() == Some(user_id)).copied().collect()
    }

    /// The keys with expectations about `group_id` (for a full `user_group`/`add` object).
    pub fn group_keys(&self, group_id: u64) -> Vec<Key> {
        self.lock().keys().filter(|k| k.group() == Some(group_id)).copied().collect()
    }

    /// Forgets everything (a new event queue: older events will never come).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of fields waiting for their event.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `event` with every field that a newer write of the sidecar supersedes replaced by the
/// written value (or left out, for partial events): see the module doc.
pub fn admit_event(pending: &Pending, event: &Event, now: Instant) -> Event {
    if pending.is_empty() {
        return event.clone();
    }
    match event {
        Event::RealmUserUpdate { id, person } => {
            Event::RealmUserUpdate { id: *id, person: admit_person_update(pending, person, now) }
        }
        Event::RealmUserAdd { id, person } => {
            Event::RealmUserAdd { id: *id, person: admit_person(pending, person, now) }
        }
        Event::UserGroupUpdate { id, group_id, data } => {
            let data = admit_group_update(pending, *group_id, data, now);
            Event::UserGroupUpdate { id: *id, group_id: *group_id, data }
        }
        Event::UserGroupAddMembers { id, group_id, user_ids } => {
            let user_ids = members_admitted(pending, *group_id, user_ids, true, now);
            Event::UserGroupAddMembers { id: *id, group_id: *group_id, user_ids }
        }
        Event::UserGroupRemoveMembers { id, group_id, user_ids } => {
            let user_ids = members_admitted(pending, *group_id, user_ids, false, now);
            Event::UserGroupRemoveMembers { id: *id, group_id: *group_id, user_ids }
        }
        Event::UserGroupRemove { id, group_id } => {
            match pending.admit(Key::GroupDeactivated(*group_id), &Val::Bool(true), now) {
                Admit::Apply | Admit::Keep(Val::Bool(true)) => event.clone(),
                // Reactivated by the sidecar since: nothing to apply (a heartbeat is ignored).
                Admit::Keep(_) => Event::Heartbeat { id: *id },
            }
        }
        Event::UserGroupAdd { id, group } => {
            Event::UserGroupAdd { id: *id, group: admit_group(pending, group, now) }
        }
        _ => event.clone(),
    }
}

/// A `realm_user`/`update` without the fields a newer write supersedes.
fn admit_person_update(pending: &Pending, person: &PersonUpdate, now: Instant) -> PersonUpdate {
    let u = person.user_id;
    let kept = |key: Key, value: Val| matches!(pending.admit(key, &value, now), Admit::Keep(_));
    let mut person = person.clone();
    if person.full_name.as_ref().is_some_and(|name| kept(Key::FullName(u), Val::Text(Some(name.clone())))) {
        person.full_name = None;
    }
    if person.role.is_some_and(|role| kept(Key::Role(u), Val::Int(u64::from(role.api_value())))) {
        person.role = None;
    }
    if person.is_active.is_some_and(|active| kept(Key::Active(u), Val::Bool(active))) {
        person.is_active = None;
    }
    if person.delivery_email.as_ref().is_some_and(|address| kept(Key::Address(u), Val::Text(address.clone())))
    {
        person.delivery_email = None;
    }
    if person.email.as_ref().is_some_and(|email| kept(Key::ApiEmail(u), Val::Text(Some(email.clone())))) {
        person.email = None;
    }
    let new_email = person.other.get("new_email").and_then(Value::as_str).map(str::to_owned);
    if new_email.is_some_and(|email| kept(Key::ApiEmail(u), Val::Text(Some(email)))) {
        person.other.remove("new_email");
    }
    let profile = person.custom_profile_field.as_ref().map(|c| (c.id, profile_val(c.value.clone())));
    if profile.is_some_and(|(field, value)| kept(Key::Profile(u, field), value)) {
        person.custom_profile_field = None;
    }
    person
}

/// A full `realm_user`/`add` object with the written value of every field a newer write
/// supersedes.
fn admit_person(pending: &Pending, person: &User, now: Instant) -> User {
    let mut person = person.clone();
    for key in pending.user_keys(person.user_id) {
        let value = match key {
            Key::FullName(_) => Val::Text(Some(person.full_name.clone())),
            Key::Role(_) => Val::Int(u64::from(person.role.api_value())),
            Key::Active(_) => Val::Bool(person.is_active),
            Key::Address(_) => Val::Text(person.delivery_email.clone()),
            Key::ApiEmail(_) => Val::Text(Some(person.email.clone())),
            Key::Profile(_, field) => profile_val(person.profile_data.get(field).map(str::to_owned)),
            _ => continue,
        };
        let Admit::Keep(kept) = pending.admit(key, &value, now) else {
            continue;
        };
        match (key, kept) {
            (Key::FullName(_), Val::Text(Some(v))) => person.full_name = v,
            (Key::Role(_), Val::Int(v)) => {
                if let Some(role) = u16::try_from(v).ok().and_then(Role::from_api) {
                    person.role = role;
                }
            }
            (Key::Active(_), Val::Bool(v)) => person.is_active = v,
            (Key::Address(_), Val::Text(v)) => person.delivery_email = v,
            (Key::ApiEmail(_), Val::Text(Some(v))) => person.email = v,
            (Key::Profile(_, field), Val::Text(v)) => person.profile_data.set(field, v),
            _ => {}
        }
    }
    person
}

/// A `user_group`/`update` without the fields a newer write supersedes.
fn admit_group_update(
    pending: &Pending,
    group_id: u64,
    data: &UserGroupChange,
    now: Instant,
) -> UserGroupChange {
    let kept = |key: Key, value: Val| matches!(pending.admit(key, &value, now), Admit::Keep(_));
    let mut data = data.clone();
    if data.name.as_ref().is_some_and(|name| kept(Key::GroupName(group_id), Val::Text(Some(name.clone())))) {
        data.name = None;
    }
    if data.deactivated.is_some_and(|d| kept(Key::GroupDeactivated(group_id), Val::Bool(d))) {
        data.deactivated = None;
    }
    data
}

/// A full `user_group`/`add` object with the written value of every field a newer write
/// supersedes.
fn admit_group(pending: &Pending, group: &UserGroup, now: Instant) -> UserGroup {
    let mut group = group.clone();
    for key in pending.group_keys(group.id) {
        let value = match key {
            Key::GroupName(_) => Val::Text(Some(group.name.clone())),
            Key::GroupDeactivated(_) => Val::Bool(group.deactivated),
            Key::Member(_, user) => Val::Bool(group.members.contains(&user)),
            _ => continue,
        };
        let Admit::Keep(kept) = pending.admit(key, &value, now) else {
            continue;
        };
        match (key, kept) {
            (Key::GroupName(_), Val::Text(Some(v))) => group.name = v,
            (Key::GroupDeactivated(_), Val::Bool(v)) => group.deactivated = v,
            (Key::Member(_, user), Val::Bool(true)) if !group.members.contains(&user) => {
                group.members.push(user);
                group.members.sort_unstable();
            }
            (Key::Member(_, user), Val::Bool(false)) => group.members.retain(|m| *m != user),
            _ => {}
        }
    }
    group
}

/// The members of an `add_members` (`added`) or `remove_members` event that no newer write
/// of the sidecar supersedes.
fn members_admitted(
    pending: &Pending,
    group_id: u64,
    user_ids: &[u64],
    added: bool,
    now: Instant,
) -> Vec<u64> {
    user_ids
        .iter()
        .copied()
        .filter(|user| match pending.admit(Key::Member(group_id, *user), &Val::Bool(added), now) {
            Admit::Apply => true,
            Admit::Keep(kept) => kept == Val::Bool(added),
        })
        .collect()
}

/// A profile value as Zulip treats it: an empty string is no value.
pub fn profile_val(value: Option<String>) -> Val {
    Val::Text(value.filter(|v| !v.is_empty()))
}

/// What a write-through of `new` over the snapshot's `old` expects to hear back: every field
/// that changed.
pub fn expect_user_change(pending: &Pending, old: &User, new: &User, now: Instant) {
    let u = new.user_id;
    if old.full_name != new.full_name {
        pending.expect(Key::FullName(u), Val::Text(Some(new.full_name.clone())), now);
    }
    if old.role != new.role {
        pending.expect(Key::Role(u), Val::Int(u64::from(new.role.api_value())), now);
    }
    if old.is_active != new.is_active {
        pending.expect(Key::Active(u), Val::Bool(new.is_active), now);
    }
    if old.delivery_email != new.delivery_email && new.delivery_email.is_some() {
        pending.expect(Key::Address(u), Val::Text(new.delivery_email.clone()), now);
    }
    if old.email != new.email {
        pending.expect(Key::ApiEmail(u), Val::Text(Some(new.email.clone())), now);
    }
    let mut fields: Vec<u64> = new.profile_data.field_ids().chain(old.profile_data.field_ids()).collect();
    fields.sort_unstable();
    fields.dedup();
    for field in fields {
        let (before, after) = (old.profile_data.get(field), new.profile_data.get(field));
        if before != after {
            pending.expect(Key::Profile(u, field), profile_val(after.map(str::to_owned)), now);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn text(s: &str) -> Val {
        Val::Text(Some(s.into()))
    }

    #[test]
    fn no_expectation_applies() {
        let p = Pending::default();
        assert_eq!(p.admit(Key::FullName(1), &text("a"), Instant::now()), Admit::Apply);
    }

    #[test]
    fn an_older_event_is_superseded_until_the_writes_own_event() {
        let p = Pending::default();
        let t = Instant::now();
        p.expect(Key::FullName(1), text("B"), t);
        // Zulip committed "A" (someone else's rename) before the sidecar's write.
        assert_eq!(p.admit(Key::FullName(1), &text("A"), t), Admit::Keep(text("B")));
        assert_eq!(p.admit(Key::FullName(1), &text("B"), t), Admit::Apply);
        assert!(p.is_empty());
        // Afterwards events apply as they come.
        assert_eq!(p.admit(Key::FullName(1), &text("C"), t), Admit::Apply);
    }

    #[test]
    fn writes_there_and_back_wait_for_the_last_event() {
        let p = Pending::default();
        let t = Instant::now();
        // deactivate, reactivate
        p.expect(Key::Active(7), Val::Bool(false), t);
        p.expect(Key::Active(7), Val::Bool(true), t);
        assert_eq!(p.admit(Key::Active(7), &Val::Bool(false), t), Admit::Keep(Val::Bool(true)));
        assert_eq!(p.admit(Key::Active(7), &Val::Bool(true), t), Admit::Apply);
        // The creation's older `true`, arriving before the writes' events, confirms nothing.
        p.expect(Key::Active(8), Val::Bool(false), t);
        p.expect(Key::Active(8), Val::Bool(true), t);
        assert_eq!(p.admit(Key::Active(8), &Val::Bool(true), t), Admit::Keep(Val::Bool(true)));
        assert_eq!(p.admit(Key::Active(8), &Val::Bool(false), t), Admit::Keep(Val::Bool(true)));
        assert_eq!(p.admit(Key::Active(8), &Val::Bool(true), t), Admit::Apply);
        // X -> Y -> X: the first X's event does not release the field.
        p.expect(Key::GroupName(3), text("X"), t);
        p.expect(Key::GroupName(3), text("Y"), t);
        p.expect(Key::GroupName(3), text("X"), t);
        assert_eq!(p.admit(Key::GroupName(3), &text("X"), t), Admit::Keep(text("X")));
        assert_eq!(p.admit(Key::GroupName(3), &text("Y"), t), Admit::Keep(text("X")));
        assert_eq!(p.admit(Key::GroupName(3), &text("X"), t), Admit::Apply);
        assert!(p.is_empty());
    }

    #[test]
    fn expectations_expire() {
        let p = Pending::default();
        let t = Instant::now();
        p.expect(Key::Member(3, 7), Val::Bool(true), t);
        let later = t + EXPECTATION_TTL;
        assert_eq!(p.admit(Key::Member(3, 7), &Val::Bool(false), later), Admit::Apply);
        assert!(p.is_empty());
    }

    #[test]
    fn expectations_no_event_visits_are_swept() {
        let p = Pending::default();
        let t = Instant::now();
        for user in 0..SWEEP_ABOVE as u64 {
            p.expect(Key::FullName(user), text("x"), t);
        }
        assert_eq!(p.len(), SWEEP_ABOVE);
        p.expect(Key::FullName(u64::MAX), text("y"), t + EXPECTATION_TTL);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn keys_by_entity() {
        let p = Pending::default();
        let t = Instant::now();
        p.expect(Key::Role(1), Val::Int(200), t);
        p.expect(Key::Profile(1, 9), text("x"), t);
        p.expect(Key::Member(4, 1), Val::Bool(true), t);
        let mut keys = p.user_keys(1);
        keys.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(keys, vec![Key::Profile(1, 9), Key::Role(1)]);
        assert_eq!(p.group_keys(4), vec![Key::Member(4, 1)]);
    }
}
