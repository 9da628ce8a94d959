//! Per-realm directory: a snapshot of the realm's accounts (one `GET /users`) and groups (one
//! `GET /user_groups`), indexed by id and by lower-cased address. Concurrent misses share one
//! upstream call. Writes made by the sidecar update the snapshot in place (field by field,
//! [`UserEdit`], so a newer change an event brought meanwhile is kept), so an IdP import costs
//! one snapshot, not one lookup per user; changes made in Zulip arrive as real-time events ([`Directory::apply_event`], fed by
//! `provision::live`). The directory is an optimisation, never the source of truth: it may be
//! dropped at any moment.
//!
//! # Freshness: TTL versus events
//! A snapshot is trusted for the configured TTL after it was loaded, **or for as long as the
//! realm's event stream is healthy** ([`Directory::set_live`]): while events flow, every change
//! made in Zulip is applied in place, and a TTL reload would fetch the same data for nothing.
//! When the stream breaks (Zulip without events, errors), the TTL applies again, measured from
//! the load, so reads fall back to periodic reloads.
//!
//! Snapshots are not held in moka (whose TTL cannot be suspended while events flow, and whose
//! insertion cannot be made atomic with the replay below); each lives in a [`Slot`]: the
//! current index plus a single-flight load lock. Changes that arrive while a load is in flight
//! are recorded and replayed onto the loaded index before it is published, so an event that
//! Zulip sent after answering the load is never lost.
//!
//! # Read-your-writes
//! The sidecar's own writes are recorded at once (write-through) and leave per-field
//! expectations ([`pending`]): an event Zulip generated before a write, arriving after it,
//! never rolls the snapshot back. Group `members` hold what Zulip keeps, deactivated users
//! included (hidden by readers while deactivated), so a reactivated user is back in its groups
//! at once, as in Zulip.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use zulip_client::types::{Event, PersonUpdate, UserGroupChange};
use zulip_client::{Role, User, UserGroup, ZulipError};

pub mod pending;

use pending::{Key, Pending, Val};

/// What applying one event did to a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The snapshot now reflects the event (re-applying an event is harmless).
    Changed,
    /// Nothing to do: not an event about users or groups, or no snapshot is loaded.
    Ignored,
    /// The event names a user or group the snapshot does not know, or has an unexpected
    /// shape: the snapshot can no longer be trusted to match Zulip; load it again.
    Inconsistent(String),
}

/// Accounts of one realm, indexed.
#[derive(Debug, Default)]
pub struct UserIndex {
    by_id: HashMap<u64, User>,
    /// Lower-cased delivery (or learned) address → user id.
    by_email: HashMap<String, u64>,
    /// Ids of human (non-bot) accounts, ascending: the SCIM list order, indexable by page.
    humans: Vec<u64>,
    /// The lower-cased address each id is indexed under.
    key_of: HashMap<u64, String>,
    /// Humans whose address the service account cannot see and the sidecar never learned.
    hidden: std::collections::HashSet<u64>,
}

// === impl UserIndex ===

impl UserIndex {
    pub fn new(users: Vec<User>, learned: &LearnedEmails) -> Self {
        let mut index = UserIndex::default();
        for user in users {
            index.insert_unsorted(user, learned);
        }
        index.humans.sort_unstable();
        index
    }

    fn insert_unsorted(&mut self, user: User, learned: &LearnedEmails) {
        self.index_address(&user, learned);
        if !user.is_bot {
            self.humans.push(user.user_id);
        }
        self.by_id.insert(user.user_id, user);
    }

    fn index_address(&mut self, user: &User, learned: &LearnedEmails) {
        if let Some(address) = address_of(user, learned) {
            let key = address.to_lowercase();
            self.by_email.insert(key.clone(), user.user_id);
            self.key_of.insert(user.user_id, key);
        } else if !user.is_bot {
            // Shown under its API e-mail (`user<id>@host`), so index that: it cannot collide
            // with a real address.
            let key = user.email.to_lowercase();
            self.by_email.insert(key.clone(), user.user_id);
            self.key_of.insert(user.user_id, key);
            self.hidden.insert(user.user_id);
        }
    }

    /// Inserts or replaces a user (as Zulip now holds it).
    pub fn upsert(&mut self, user: User, learned: &LearnedEmails) {
        if let Some(old) = self.by_id.remove(&user.user_id) {
            if let Some(key) = self.key_of.remove(&old.user_id) {
                if self.by_email.get(&key) == Some(&old.user_id) {
                    self.by_email.remove(&key);
                }
            }
            self.hidden.remove(&old.user_id);
            if !old.is_bot {
                if let Ok(pos) = self.humans.binary_search(&old.user_id) {
                    self.humans.remove(pos);
                }
            }
        }
        let id = user.user_id;
        self.index_address(&user, learned);
        if !user.is_bot {
            if let Err(pos) = self.humans.binary_search(&id) {
                self.humans.insert(pos, id);
            }
        }
        self.by_id.insert(id, user);
    }

    /// Forgets a user (`realm_user`/`remove`); `false` if it was not known.
    pub fn remove(&mut self, user_id: u64) -> bool {
        let Some(old) = self.by_id.remove(&user_id) else {
            return false;
        };
        if let Some(key) = self.key_of.remove(&user_id) {
            if self.by_email.get(&key) == Some(&user_id) {
                self.by_email.remove(&key);
            }
        }
        self.hidden.remove(&user_id);
        if !old.is_bot {
            if let Ok(pos) = self.humans.binary_search(&user_id) {
                self.humans.remove(pos);
            }
        }
        true
    }

    /// Applies a `realm_user` event; other events are [`Applied::Ignored`].
    pub fn apply_event(&mut self, event: &Event, learned: &LearnedEmails) -> Applied {
        match event {
            // An account already in the snapshot was recorded by the sidecar's own create (or
            // by a load that answered after it): the event describes the account as it was
            // at creation, so it must not undo what came after (the create's follow-up set
            // role and externalId; their own update events follow).
            Event::RealmUserAdd { person, .. } if self.by_id.contains_key(&person.user_id) => {
                Applied::Ignored
            }
            Event::RealmUserAdd { person, .. } => {
                self.upsert(person.clone(), learned);
                Applied::Changed
            }
            Event::RealmUserUpdate { person, .. } => self.apply_person_update(person, learned),
            Event::RealmUserRemove { user_id, .. } => {
                self.remove(*user_id);
                Applied::Changed
            }
            Event::Other(value) if event_type(value) == Some("realm_user") => {
                Applied::Inconsistent(format!("undecodable realm_user event: {}", short(value)))
            }
            _ => Applied::Ignored,
        }
    }

    /// Applies the fields of a `realm_user`/`update` `person` (only the changed ones are
    /// present); the indexes follow an address change.
    pub fn apply_person_update(&mut self, person: &PersonUpdate, learned: &LearnedEmails) -> Applied {
        let Some(mut user) = self.by_id.get(&person.user_id).cloned() else {
            return Applied::Inconsistent(format!("update of unknown user {}", person.user_id));
        };
        if let Some(full_name) = &person.full_name {
            user.full_name = full_name.clone();
        }
        if let Some(role) = person.role {
            user.role = role;
        }
        if let Some(is_active) = person.is_active {
            user.is_active = is_active;
        }
        if let Some(delivery_email) = &person.delivery_email {
            user.delivery_email = delivery_email.clone();
        }
        // `new_email` is what Zulip sends when the API e-mail itself changes (realm-public
        // addresses); `email` is accepted too.
        let new_email =
            person.email.as_deref().or_else(|| person.other.get("new_email").and_then(Value::as_str));
        if let Some(email) = new_email {
            user.email = email.to_string();
        }
        if let Some(change) = &person.custom_profile_field {
            user.profile_data.set(change.id, change.value.clone());
        }
        self.upsert(user, learned);
        Applied::Changed
    }

    /// Any account (bots included) by id.
    pub fn get(&self, user_id: u64) -> Option<&User> {
        self.by_id.get(&user_id)
    }

    /// The account (bot or human) whose known address is `email`, case-insensitively.
    pub fn by_email(&self, email: &str) -> Option<&User> {
        self.by_email.get(&email.to_lowercase()).and_then(|id| self.by_id.get(id))
    }

    /// Number of human accounts (the SCIM population).
    pub fn human_count(&self) -> usize {
        self.humans.len()
    }

    /// Human accounts in id order, from the 0-based `offset`.
    pub fn humans_from(&self, offset: usize) -> impl Iterator<Item = &User> + '_ {
        self.humans.iter().skip(offset).filter_map(|id| self.by_id.get(id))
    }

    /// Humans whose address is unknown to the sidecar (e-mail visibility "nobody").
    pub fn hidden_count(&self) -> usize {
        self.hidden.len()
    }
}

fn address_of<'a>(user: &'a User, learned: &'a LearnedEmails) -> Option<String> {
    user.delivery_email.clone().or_else(|| learned.get(user.user_id))
}

/// Addresses the sidecar itself learned for accounts whose address Zulip hides from the
/// service account (it created them, or changed their address). Lost on restart.
#[derive(Debug, Clone)]
pub struct LearnedEmails(moka::sync::Cache<u64, String>);

impl LearnedEmails {
    pub fn new() -> Self {
        LearnedEmails(moka::sync::Cache::new(1_000_000))
    }
    pub fn get(&self, user_id: u64) -> Option<String> {
        self.0.get(&user_id)
    }
    pub fn learn(&self, user_id: u64, email: &str) {
        self.0.insert(user_id, email.to_string());
    }
}

impl Default for LearnedEmails {
    fn default() -> Self {
        Self::new()
    }
}

/// Groups of one realm (active and deactivated), by id, in id order.
///
/// `members` are the direct memberships Zulip keeps, deactivated users included: Zulip keeps a
/// deactivated user's memberships (hidden from `GET /user_groups` while the user is
/// deactivated, FL 303) and shows them again on reactivation. Readers show active members only.
/// A snapshot loaded while a user was deactivated cannot know that user's memberships:
/// `dormant_known` lists the users whose deactivation this snapshot saw happen (so their
/// memberships are all here).
#[derive(Debug, Default)]
pub struct GroupIndex {
    pub groups: std::collections::BTreeMap<u64, UserGroup>,
    dormant_known: HashSet<u64>,
}

impl GroupIndex {
    pub fn new(groups: Vec<UserGroup>) -> Self {
        GroupIndex { groups: groups.into_iter().map(|g| (g.id, g)).collect(), dormant_known: HashSet::new() }
    }

    /// Whether this snapshot holds every membership of `user_id` (false for a user that was
    /// deactivated when it was loaded: Zulip did not list them).
    pub fn memberships_known(&self, user_id: u64) -> bool {
        self.dormant_known.contains(&user_id)
    }
    /// A group with exactly this name (case-sensitive, deactivated ones included: Zulip
    /// reserves their names).
    pub fn by_name(&self, name: &str) -> Option<&UserGroup> {
        self.groups.values().find(|g| g.name == name)
    }

    /// Applies a `user_group` event; other events are [`Applied::Ignored`].
    pub fn apply_event(&mut self, event: &Event) -> Applied {
        let unknown = |group_id: &u64| Applied::Inconsistent(format!("event for unknown group {group_id}"));
        match event {
            Event::UserGroupAdd { group, .. } => {
                self.groups.insert(group.id, group.clone());
                Applied::Changed
            }
            Event::UserGroupUpdate { group_id, data, .. } => match self.groups.get_mut(group_id) {
                Some(group) => {
                    apply_group_change(group, data);
                    Applied::Changed
                }
                None => unknown(group_id),
            },
            Event::UserGroupAddMembers { group_id, user_ids, .. } => match self.groups.get_mut(group_id) {
                Some(group) => {
                    for id in user_ids {
                        if !group.members.contains(id) {
                            group.members.push(*id);
                        }
                    }
                    group.members.sort_unstable();
                    Applied::Changed
                }
                None => unknown(group_id),
            },
            Event::UserGroupRemoveMembers { group_id, user_ids, .. } => match self.groups.get_mut(group_id) {
                Some(group) => {
                    group.members.retain(|m| !user_ids.contains(m));
                    Applied::Changed
                }
                None => unknown(group_id),
            },
            // Zulip says `remove` when a group is deactivated; the snapshot keeps deactivated
            // groups (their names stay reserved), as `include_deactivated_groups=true` does.
            Event::UserGroupRemove { group_id, .. } => match self.groups.get_mut(group_id) {
                Some(group) => {
                    group.deactivated = true;
                    Applied::Changed
                }
                None => unknown(group_id),
            },
            Event::Other(value) if event_type(value) == Some("user_group") => self.apply_untyped(value),
            _ => Applied::Ignored,
        }
    }

    /// `user_group` events the client does not type: `add_subgroups`/`remove_subgroups`.
    fn apply_untyped(&mut self, value: &Value) -> Applied {
        let op = value.get("op").and_then(Value::as_str);
        let group_id = value.get("group_id").and_then(Value::as_u64);
        let ids: Option<Vec<u64>> = value
            .get("direct_subgroup_ids")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_u64).collect());
        let (Some(op @ ("add_subgroups" | "remove_subgroups")), Some(group_id), Some(ids)) =
            (op, group_id, ids)
        else {
            return Applied::Inconsistent(format!("undecodable user_group event: {}", short(value)));
        };
        let Some(group) = self.groups.get_mut(&group_id) else {
            return Applied::Inconsistent(format!("event for unknown group {group_id}"));
        };
        if op == "add_subgroups" {
            for id in ids {
                if !group.direct_subgroup_ids.contains(&id) {
                    group.direct_subgroup_ids.push(id);
                }
            }
        } else {
            group.direct_subgroup_ids.retain(|s| !ids.contains(s));
        }
        Applied::Changed
    }

    /// Takes a removed user out of every group's members.
    pub fn drop_member(&mut self, user_id: u64) {
        for group in self.groups.values_mut() {
            group.members.retain(|m| *m != user_id);
        }
    }
}

fn apply_group_change(group: &mut UserGroup, change: &UserGroupChange) {
    if let Some(name) = &change.name {
        group.name = name.clone();
    }
    if let Some(description) = &change.description {
        group.description = description.clone();
    }
    if let Some(deactivated) = change.deactivated {
        group.deactivated = deactivated;
    }
}

fn event_type(value: &Value) -> Option<&str> {
    value.get("type").and_then(Value::as_str)
}

/// An event for a log line, cut to a sane length.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A snapshot shared between requests: a std `RwLock`, because it is never held across
/// `.await` and reads vastly outnumber writes.
#[derive(Debug, Default)]
pub struct Shared<T>(RwLock<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared(RwLock::new(value))
    }
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A change to a users snapshot: an event, or what the sidecar's own write left in Zulip.
#[derive(Debug, Clone)]
enum UserChange {
    Event(Event),
    Upsert(User),
    Edit(UserEdit),
    /// A copy fetched on a miss: kept only if the snapshot still has no entry for it (an
    /// event that arrived during the fetch is newer than the copy).
    InsertIfAbsent(User),
    /// A copy fetched to refresh `seen` (the entry the fetch started from): kept only if the
    /// entry is still `seen` (or absent) — an event applied during the fetch is newer.
    Refresh {
        seen: User,
        fresh: User,
    },
}

/// What one of the sidecar's own writes changed on an account. Applied to the snapshot's
/// current copy, field by field: a change the snapshot learned meanwhile from an event (the
/// `externalId` a create's follow-up set, an admin's edit) is kept, where replacing the entry
/// with the writer's copy — read before the write — would silently undo it.
#[derive(Debug, Clone, Default)]
pub struct UserEdit {
    pub user_id: u64,
    pub full_name: Option<String>,
    pub role: Option<Role>,
    pub delivery_email: Option<String>,
    pub is_active: Option<bool>,
    /// Custom profile field values set (`Some`) or cleared (`None`).
    pub profile_data: Vec<(u64, Option<String>)>,
}

impl UserEdit {
    pub fn apply_to(&self, user: &mut User) {
        if let Some(name) = &self.full_name {
            user.full_name = name.clone();
        }
        if let Some(role) = self.role {
            user.role = role;
        }
        if let Some(email) = &self.delivery_email {
            user.delivery_email = Some(email.clone());
        }
        if let Some(active) = self.is_active {
            user.is_active = active;
        }
        for (field, value) in &self.profile_data {
            user.profile_data.set(*field, value.clone());
        }
    }
}

/// A change to a groups snapshot.
#[derive(Debug, Clone)]
enum GroupChange {
    Event(Event),
    /// The user was removed: no longer a member anywhere.
    DropMember(u64),
    /// The user was deactivated while this snapshot was current: Zulip keeps (and hides)
    /// its memberships, which the snapshot holds.
    Deactivated(u64),
    /// What the sidecar's own write left in Zulip.
    Written(GroupWrite),
}

/// A group write the sidecar made, as recorded in the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupWrite {
    pub group_id: u64,
    pub name: Option<String>,
    pub add: Vec<u64>,
    pub delete: Vec<u64>,
    pub deactivated: Option<bool>,
}

impl GroupIndex {
    fn apply_write(&mut self, write: &GroupWrite) -> Applied {
        let Some(g) = self.groups.get_mut(&write.group_id) else {
            return Applied::Ignored;
        };
        if let Some(name) = &write.name {
            g.name = name.clone();
        }
        if let Some(deactivated) = write.deactivated {
            g.deactivated = deactivated;
        }
        g.members.retain(|m| !write.delete.contains(m));
        g.members.extend(write.add.iter().copied());
        g.members.sort_unstable();
        g.members.dedup();
        Applied::Changed
    }
}

/// An index that changes can be applied to (and replayed onto after a load).
trait Indexed: Sized {
    type Change: Clone;
    fn apply_change(&mut self, change: &Self::Change, learned: &LearnedEmails) -> Applied;
    /// A change recorded during a load, replayed onto its result (which may or may not
    /// already show it).
    fn replay_change(&mut self, change: &Self::Change, learned: &LearnedEmails) -> Applied {
        self.apply_change(change, learned)
    }
}

impl Indexed for UserIndex {
    type Change = UserChange;
    fn apply_change(&mut self, change: &UserChange, learned: &LearnedEmails) -> Applied {
        match change {
            UserChange::Event(event) => self.apply_event(event, learned),
            UserChange::Upsert(user) => {
                self.upsert(user.clone(), learned);
                Applied::Changed
            }
            UserChange::InsertIfAbsent(user) if self.by_id.contains_key(&user.user_id) => Applied::Ignored,
            UserChange::InsertIfAbsent(user) => {
                self.upsert(user.clone(), learned);
                Applied::Changed
            }
            UserChange::Refresh { seen, fresh } => match self.by_id.get(&seen.user_id) {
                Some(current) if current != seen => Applied::Ignored,
                _ => {
                    self.upsert(fresh.clone(), learned);
                    Applied::Changed
                }
            },
            UserChange::Edit(edit) => match self.by_id.get(&edit.user_id).cloned() {
                Some(mut user) => {
                    edit.apply_to(&mut user);
                    self.upsert(user, learned);
                    Applied::Changed
                }
                None => Applied::Ignored,
            },
        }
    }
}

impl Indexed for GroupIndex {
    type Change = GroupChange;
    fn apply_change(&mut self, change: &GroupChange, _: &LearnedEmails) -> Applied {
        match change {
            GroupChange::Event(event) => self.apply_event(event),
            GroupChange::DropMember(user_id) => {
                self.drop_member(*user_id);
                Applied::Changed
            }
            GroupChange::Deactivated(user_id) => {
                self.dormant_known.insert(*user_id);
                Applied::Changed
            }
            GroupChange::Written(write) => self.apply_write(write),
        }
    }

    fn replay_change(&mut self, change: &GroupChange, learned: &LearnedEmails) -> Applied {
        match change {
            // The load may have been answered after the deactivation, without the user's
            // memberships: not known.
            GroupChange::Deactivated(_) => Applied::Ignored,
            other => self.apply_change(other, learned),
        }
    }
}

/// One snapshot and when it was loaded.
struct Loaded<T> {
    index: Arc<Shared<T>>,
    loaded_at: Instant,
}

impl<T> Clone for Loaded<T> {
    fn clone(&self) -> Self {
        Loaded { index: self.index.clone(), loaded_at: self.loaded_at }
    }
}

/// The mutable part of a [`Slot`].
struct SlotState<T: Indexed> {
    current: Option<Loaded<T>>,
    /// `Some` while a load is in flight: the changes to replay onto its result.
    recording: Option<Vec<T::Change>>,
    /// Completed load attempts, so that callers that waited for a failed load share its
    /// error instead of each trying again.
    attempts: u64,
    last_error: Option<Arc<ZulipError>>,
}

/// One snapshot of a realm (users or groups) with single-flight loading.
///
/// `state` is a std `Mutex`: it is held only to copy an `Arc` or to apply one change, never
/// across `.await`. `loading` is a tokio `Mutex` held across the upstream call: the first
/// miss loads, concurrent misses wait for it and share its outcome.
struct Slot<T: Indexed> {
    state: Mutex<SlotState<T>>,
    loading: tokio::sync::Mutex<()>,
}

/// Stops recording when a load ends, even if its future is dropped half-way.
struct RecordingGuard<'a, T: Indexed>(&'a Slot<T>);

impl<T: Indexed> Drop for RecordingGuard<'_, T> {
    fn drop(&mut self) {
        self.0.lock().recording = None;
    }
}

// === impl Slot ===

impl<T: Indexed> Slot<T> {
    fn new() -> Self {
        Slot {
            state: Mutex::new(SlotState { current: None, recording: None, attempts: 0, last_error: None }),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current snapshot if `fresh` accepts its load time.
    fn current(&self, fresh: impl Fn(Instant) -> bool) -> Option<Arc<Shared<T>>> {
        self.lock().current.as_ref().filter(|c| fresh(c.loaded_at)).map(|c| c.index.clone())
    }

    fn is_loaded(&self) -> bool {
        self.lock().current.is_some()
    }

    fn invalidate(&self) {
        self.lock().current = None;
    }

    /// Applies a change to the current snapshot (if any), and records it for a load in flight.
    fn apply(&self, change: T::Change, learned: &LearnedEmails) -> Applied {
        let mut state = self.lock();
        let applied = match &state.current {
            Some(current) => current.index.write().apply_change(&change, learned),
            None => Applied::Ignored,
        };
        if let Some(recording) = &mut state.recording {
            recording.push(change);
        }
        applied
    }

    /// The snapshot, loading it when there is none or `fresh` rejects it; with `force`, a new
    /// load that starts after this call, whatever is cached.
    async fn get<D, F, Fut>(
        &self,
        fresh: impl Fn(Instant) -> bool,
        force: bool,
        load: F,
        build: impl FnOnce(D) -> T,
        learned: &LearnedEmails,
    ) -> Result<Arc<Shared<T>>, Arc<ZulipError>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<D, ZulipError>>,
    {
        let seen = {
            let state = self.lock();
            if !force {
                if let Some(current) = state.current.as_ref().filter(|c| fresh(c.loaded_at)) {
                    return Ok(current.index.clone());
                }
            }
            state.attempts
        };
        let _loading = self.loading.lock().await;
        {
            let mut state = self.lock();
            if !force {
                if let Some(current) = state.current.as_ref().filter(|c| fresh(c.loaded_at)) {
                    return Ok(current.index.clone());
                }
                if state.attempts != seen {
                    if let Some(e) = &state.last_error {
                        return Err(e.clone());
                    }
                }
            }
            state.recording = Some(Vec::new());
        }
        let _recording = RecordingGuard(self);
        let result = load().await;
        // Built outside the lock (a large realm takes a while); changes that arrive meanwhile
        // are still recorded and replayed by `publish`.
        self.publish(result.map(build), learned)
    }

    /// Ends a load: the built index, with the changes recorded meanwhile replayed onto it,
    /// becomes the current snapshot; a failure is kept for the callers that waited for it.
    fn publish(
        &self,
        built: Result<T, ZulipError>,
        learned: &LearnedEmails,
    ) -> Result<Arc<Shared<T>>, Arc<ZulipError>> {
        let mut state = self.lock();
        state.attempts += 1;
        let recorded = state.recording.replace(Vec::new()).unwrap_or_default();
        match built {
            Ok(mut index) => {
                for change in &recorded {
                    let _ = index.replay_change(change, learned);
                }
                let index = Arc::new(Shared::new(index));
                state.current = Some(Loaded { index: index.clone(), loaded_at: Instant::now() });
                state.last_error = None;
                Ok(index)
            }
            Err(e) => {
                let e = Arc::new(e);
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

impl<T: Indexed> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Slot")
            .field("loaded_at", &state.current.as_ref().map(|c| c.loaded_at))
            .field("loading", &state.recording.is_some())
            .finish_non_exhaustive()
    }
}

/// The cached directory of one realm.
#[derive(Debug, Clone)]
pub struct Directory {
    users: Arc<Slot<UserIndex>>,
    groups: Arc<Slot<GroupIndex>>,
    pub learned: LearnedEmails,
    /// How long a snapshot is trusted after its load while the event stream is down.
    ttl: Duration,
    /// Set by the realm's live task while its event stream is healthy: snapshots do not
    /// expire then. An atomic, read on every snapshot access.
    live: Arc<AtomicBool>,
    /// What the sidecar's writes still expect to hear back from Zulip's events
    /// ([`pending`]): events older than a write never roll the snapshot back.
    pending: Arc<Pending>,
    /// One change at a time: an event's admission against [`pending`] and its application,
    /// and a write's expectations and its record, never interleave. Otherwise a write's own
    /// event, admitted (nothing expected yet) while the write read the snapshot's copy,
    /// leaves the write expecting an event that has already come — hiding the field's later
    /// events (another replica's reactivation) for [`pending::EXPECTATION_TTL`].
    record: Arc<Mutex<()>>,
}

// === impl Directory ===

impl Directory {
    /// `ttl`: how long a snapshot is trusted before the next read reloads it, unless events
    /// keep it current ([`Directory::set_live`]).
    pub fn new(ttl: Duration) -> Self {
        Directory {
            users: Arc::new(Slot::new()),
            groups: Arc::new(Slot::new()),
            learned: LearnedEmails::new(),
            ttl,
            live: Arc::new(AtomicBool::new(false)),
            pending: Arc::new(Pending::default()),
            record: Arc::new(Mutex::new(())),
        }
    }

    /// Holds the change order ([`Directory::record`]'s doc). Never held across an await.
    fn one_change(&self) -> MutexGuard<'_, ()> {
        self.record.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a snapshot loaded at `loaded_at` may still be served.
    fn fresh(&self) -> impl Fn(Instant) -> bool {
        let live = self.is_live();
        let ttl = self.ttl;
        move |loaded_at| live || loaded_at.elapsed() < ttl
    }

    /// Marks the event stream healthy (snapshots never expire) or not (the TTL applies).
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
    }

    /// A new event queue is followed: events from before it will never come, so no write
    /// waits for one any more.
    pub fn new_event_queue(&self) {
        self.pending.clear();
    }

    /// Fields whose write-through still waits for its event (tests, metrics).
    pub fn pending_expectations(&self) -> usize {
        self.pending.len()
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Both snapshots are loaded (stale or not).
    pub fn is_loaded(&self) -> bool {
        self.users.is_loaded() && self.groups.is_loaded()
    }

    /// The users snapshot, loading it with `load` on a miss; concurrent misses share one load.
    pub async fn users<F, Fut>(&self, load: F) -> Result<Arc<Shared<UserIndex>>, Arc<ZulipError>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<User>, ZulipError>>,
    {
        let learned = self.learned.clone();
        self.users
            .get(self.fresh(), false, load, |users| UserIndex::new(users, &learned), &self.learned)
            .await
    }

    /// A new users snapshot, loaded now whatever is cached (after registering an event queue).
    pub async fn reload_users<F, Fut>(&self, load: F) -> Result<Arc<Shared<UserIndex>>, Arc<ZulipError>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<User>, ZulipError>>,
    {
        let learned = self.learned.clone();
        self.users.get(self.fresh(), true, load, |users| UserIndex::new(users, &learned), &self.learned).await
    }

    /// The users snapshot if one is loaded and fresh.
    pub async fn cached_users(&self) -> Option<Arc<Shared<UserIndex>>> {
        self.users.current(self.fresh())
    }

    /// Human accounts in the last loaded users snapshot, fresh or not (`None`: never loaded).
    pub fn human_count(&self) -> Option<usize> {
        self.users.current(|_| true).map(|index| index.read().human_count())
    }

    /// Records what Zulip now holds for a user (after a write the sidecar made). Every field
    /// that changed waits for its event ([`pending`]); a deactivation keeps the user's
    /// memberships (hidden while deactivated, as in Zulip).
    pub async fn upsert_user(&self, user: User) {
        let _order = self.one_change();
        let old = self.users.current(|_| true).and_then(|index| index.read().get(user.user_id).cloned());
        if let Some(old) = &old {
            pending::expect_user_change(&self.pending, old, &user, Instant::now());
            if old.is_active && !user.is_active {
                self.groups.apply(GroupChange::Deactivated(user.user_id), &self.learned);
            }
        }
        self.users.apply(UserChange::Upsert(user), &self.learned);
    }

    /// Records a group write the sidecar made (rename, member diff, deactivation); each
    /// changed field waits for its event.
    pub fn record_group_write(&self, write: GroupWrite) {
        let _order = self.one_change();
        {
            let now = Instant::now();
            let current = self
                .groups
                .current(|_| true)
                .and_then(|index| index.read().groups.get(&write.group_id).cloned());
            let g = write.group_id;
            if let Some(current) = current {
                if let Some(name) = write.name.as_ref().filter(|n| **n != current.name) {
                    self.pending.expect(Key::GroupName(g), Val::Text(Some(name.clone())), now);
                }
                if let Some(deactivated) = write.deactivated.filter(|d| *d != current.deactivated) {
                    self.pending.expect(Key::GroupDeactivated(g), Val::Bool(deactivated), now);
                }
                for user in write.add.iter().filter(|u| !current.members.contains(u)) {
                    self.pending.expect(Key::Member(g, *user), Val::Bool(true), now);
                }
                for user in write.delete.iter().filter(|u| current.members.contains(u)) {
                    self.pending.expect(Key::Member(g, *user), Val::Bool(false), now);
                }
            }
        }
        self.groups.apply(GroupChange::Written(write), &self.learned);
    }

    /// Whether the current groups snapshot holds every membership of `user_id` (see
    /// [`GroupIndex`]); `true` when no snapshot is loaded (the next load is complete).
    pub fn memberships_known(&self, user_id: u64) -> bool {
        self.groups.current(|_| true).is_none_or(|index| index.read().memberships_known(user_id))
    }

    /// Records an account fetched on a snapshot miss unless an event brought it meanwhile;
    /// returns the account as the snapshot now holds it (`user` when there is no snapshot).
    pub async fn insert_user_if_absent(&self, user: User) -> User {
        let _order = self.one_change();
        let user_id = user.user_id;
        self.users.apply(UserChange::InsertIfAbsent(user.clone()), &self.learned);
        self.users.current(|_| true).and_then(|index| index.read().get(user_id).cloned()).unwrap_or(user)
    }

    /// Records a copy of `seen` fetched from Zulip (a write's re-read before it asserts a value
    /// the snapshot shows). The copy replaces the entry only if no event changed it during the fetch, and leaves no
    /// expectation: it is not the sidecar's write, and an expectation for a value an event
    /// had already moved past would hide that field's later events for
    /// [`pending::EXPECTATION_TTL`] (a replica showing a reactivated account as deactivated).
    pub async fn refresh_user(&self, seen: &User, fresh: User) {
        let _order = self.one_change();
        let user_id = fresh.user_id;
        let deactivated = seen.is_active && !fresh.is_active;
        let change = UserChange::Refresh { seen: seen.clone(), fresh };
        if self.users.apply(change, &self.learned) == Applied::Changed && deactivated {
            self.groups.apply(GroupChange::Deactivated(user_id), &self.learned);
        }
    }

    /// Records what one of the sidecar's writes changed (see [`UserEdit`]) and returns the
    /// account as the snapshot now holds it (`None`: no snapshot, or the account is not in it).
    /// Only the fields the write set wait for their event ([`pending`]), and only where they
    /// differ from the snapshot's copy: the other fields keep what events brought meanwhile
    /// (an admin's edit during the write), where replacing the entry with the writer's copy —
    /// read before the write — would roll them back and leave expectations for values Zulip
    /// does not hold, hiding their events for [`pending::EXPECTATION_TTL`].
    pub async fn edit_user(&self, edit: UserEdit) -> Option<User> {
        let _order = self.one_change();
        let user_id = edit.user_id;
        let old = self.users.current(|_| true).and_then(|index| index.read().get(user_id).cloned());
        if let Some(old) = &old {
            let mut new = old.clone();
            edit.apply_to(&mut new);
            pending::expect_user_change(&self.pending, old, &new, Instant::now());
            if old.is_active && !new.is_active {
                self.groups.apply(GroupChange::Deactivated(user_id), &self.learned);
            }
        }
        self.users.apply(UserChange::Edit(edit), &self.learned);
        self.users.current(|_| true).and_then(|index| index.read().get(user_id).cloned())
    }

    /// Drops the users snapshot (the outcome of a write is unknown).
    pub async fn invalidate_users(&self) {
        self.users.invalidate();
    }

    /// Remembers that `user_id`'s address is `email` (the sidecar set it).
    pub fn learn_email(&self, user_id: u64, email: &str) {
        self.learned.learn(user_id, email);
    }

    /// The groups snapshot, loading it with `load` on a miss.
    pub async fn groups<F, Fut>(&self, load: F) -> Result<Arc<Shared<GroupIndex>>, Arc<ZulipError>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<UserGroup>, ZulipError>>,
    {
        self.groups.get(self.fresh(), false, load, GroupIndex::new, &self.learned).await
    }

    /// A new groups snapshot, loaded now whatever is cached.
    pub async fn reload_groups<F, Fut>(&self, load: F) -> Result<Arc<Shared<GroupIndex>>, Arc<ZulipError>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<UserGroup>, ZulipError>>,
    {
        self.groups.get(self.fresh(), true, load, GroupIndex::new, &self.learned).await
    }

    pub async fn invalidate_groups(&self) {
        self.groups.invalidate();
    }

    pub async fn cached_groups(&self) -> Option<Arc<Shared<GroupIndex>>> {
        self.groups.current(self.fresh())
    }

    /// Applies one event from Zulip's events API to the snapshots, in place (and to a load in
    /// flight). Re-applying an event is harmless; an event a newer write of the sidecar
    /// supersedes does not roll it back ([`pending`]). A removed user leaves every group; a
    /// deactivated one stays a (hidden) member, as in Zulip.
    pub fn apply_event(&self, event: &Event) -> Applied {
        let _order = self.one_change();
        let admitted = pending::admit_event(&self.pending, event, Instant::now());
        let event = &admitted;
        match event {
            Event::RealmUserAdd { .. } | Event::RealmUserUpdate { .. } | Event::RealmUserRemove { .. } => {
                if let Event::RealmUserUpdate { person, .. } = event {
                    let was_active = self
                        .users
                        .current(|_| true)
                        .and_then(|index| index.read().get(person.user_id).map(|u| u.is_active));
                    if person.is_active == Some(false) && was_active == Some(true) {
                        self.groups.apply(GroupChange::Deactivated(person.user_id), &self.learned);
                    }
                }
                let applied = self.users.apply(UserChange::Event(event.clone()), &self.learned);
                if let Event::RealmUserRemove { user_id, .. } = event {
                    self.groups.apply(GroupChange::DropMember(*user_id), &self.learned);
                }
                applied
            }
            Event::UserGroupAdd { .. }
            | Event::UserGroupUpdate { .. }
            | Event::UserGroupAddMembers { .. }
            | Event::UserGroupRemoveMembers { .. }
            | Event::UserGroupRemove { .. } => {
                self.groups.apply(GroupChange::Event(event.clone()), &self.learned)
            }
            Event::Other(value) => match event_type(value) {
                Some("realm_user") => self.users.apply(UserChange::Event(event.clone()), &self.learned),
                Some("user_group") => self.groups.apply(GroupChange::Event(event.clone()), &self.learned),
                _ => Applied::Ignored,
            },
            // The realm decides what a change of its profile fields means (live task).
            Event::Heartbeat { .. } | Event::CustomProfileFields { .. } => Applied::Ignored,
        }
    }
}

#[cfg(test)]
mod tests;
