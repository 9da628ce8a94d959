//! Per-realm directory: a snapshot of the realm's accounts (one `GET /users`), indexed by id
//! and by lower-cased address, held in moka so that concurrent misses share one upstream call
//! and the whole snapshot expires after the configured TTL. Writes made by the sidecar update
//! the snapshot in place (the entry is replaced by what Zulip now holds), so an IdP import
//! costs one snapshot, not one lookup per user. The directory is an optimisation, never the
//! source of truth: it may be dropped at any moment.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::zulip::{User, UserGroup, ZulipError};

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
#[derive(Debug, Default)]
pub struct GroupIndex {
    pub groups: std::collections::BTreeMap<u64, UserGroup>,
}

impl GroupIndex {
    pub fn new(groups: Vec<UserGroup>) -> Self {
        GroupIndex { groups: groups.into_iter().map(|g| (g.id, g)).collect() }
    }
    /// A group with exactly this name (case-sensitive, deactivated ones included: Zulip
    /// reserves their names).
    pub fn by_name(&self, name: &str) -> Option<&UserGroup> {
        self.groups.values().find(|g| g.name == name)
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

/// The cached directory of one realm.
#[derive(Debug, Clone)]
pub struct Directory {
    users: moka::future::Cache<(), Arc<Shared<UserIndex>>>,
    groups: moka::future::Cache<(), Arc<Shared<GroupIndex>>>,
    pub learned: LearnedEmails,
}

// === impl Directory ===

impl Directory {
    /// `ttl`: how long a snapshot is trusted before the next read reloads it.
    pub fn new(ttl: Duration) -> Self {
        Directory {
            users: moka::future::Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            groups: moka::future::Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            learned: LearnedEmails::new(),
        }
    }

    /// The users snapshot, loading it with `load` on a miss; concurrent misses share one load.
    pub async fn users<F, Fut>(&self, load: F) -> Result<Arc<Shared<UserIndex>>, Arc<ZulipError>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<User>, ZulipError>>,
    {
        let learned = self.learned.clone();
        self.users
            .try_get_with((), async move {
                let users = load().await?;
                Ok::<_, ZulipError>(Arc::new(Shared::new(UserIndex::new(users, &learned))))
            })
            .await
    }

    /// The users snapshot if one is loaded.
    pub async fn cached_users(&self) -> Option<Arc<Shared<UserIndex>>> {
        self.users.get(&()).await
    }

    /// Records what Zulip now holds for a user (after a write the sidecar made).
    pub async fn upsert_user(&self, user: User) {
        if let Some(index) = self.users.get(&()).await {
            index.write().upsert(user, &self.learned);
        }
    }

    /// Drops the users snapshot (the outcome of a write is unknown).
    pub async fn invalidate_users(&self) {
        self.users.invalidate(&()).await;
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
        self.groups
            .try_get_with((), async move {
                let groups = load().await?;
                Ok::<_, ZulipError>(Arc::new(Shared::new(GroupIndex::new(groups))))
            })
            .await
    }

    pub async fn invalidate_groups(&self) {
        self.groups.invalidate(&()).await;
    }

    pub async fn cached_groups(&self) -> Option<Arc<Shared<GroupIndex>>> {
        self.groups.get(&()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zulip::Role;

    fn user(id: u64, email: Option<&str>, bot: bool) -> User {
        User {
            user_id: id,
            email: format!("user{id}@x.co"),
            delivery_email: email.map(str::to_string),
            full_name: format!("User {id}"),
            date_joined: String::new(),
            is_active: true,
            role: Role::Member,
            is_bot: bot,
        }
    }

    #[test]
    fn index_orders_humans_and_finds_addresses_case_insensitively() {
        let learned = LearnedEmails::new();
        learned.learn(5, "Learned@X.co");
        let index = UserIndex::new(
            vec![
                user(9, Some("Nine@x.co"), false),
                user(3, Some("bot@x.co"), true),
                user(5, None, false),
                user(7, None, false),
            ],
            &learned,
        );
        assert_eq!(index.humans_from(0).map(|u| u.user_id).collect::<Vec<_>>(), vec![5, 7, 9]);
        assert_eq!(index.human_count(), 3);
        assert_eq!(index.by_email("nine@X.CO").map(|u| u.user_id), Some(9));
        assert_eq!(index.by_email("learned@x.co").map(|u| u.user_id), Some(5));
        assert_eq!(index.by_email("bot@x.co").map(|u| u.user_id), Some(3));
        assert_eq!(index.hidden_count(), 1);
        assert_eq!(index.humans_from(2).map(|u| u.user_id).collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn upsert_moves_the_address_and_keeps_order() {
        let learned = LearnedEmails::new();
        let mut index = UserIndex::new(vec![user(2, Some("a@x.co"), false)], &learned);
        index.upsert(user(2, Some("b@x.co"), false), &learned);
        assert!(index.by_email("a@x.co").is_none());
        assert_eq!(index.by_email("B@x.co").map(|u| u.user_id), Some(2));
        index.upsert(user(1, Some("c@x.co"), false), &learned);
        assert_eq!(index.humans_from(0).map(|u| u.user_id).collect::<Vec<_>>(), vec![1, 2]);
        index.upsert(user(4, None, false), &learned);
        assert_eq!(index.hidden_count(), 1);
        learned.learn(4, "d@x.co");
        index.upsert(user(4, None, false), &learned);
        assert_eq!(index.hidden_count(), 0);
        assert_eq!(index.human_count(), 3);
    }
}
