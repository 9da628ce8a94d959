//! Write ordering per entity: writes to one user or group run one at a time, in the order they
//! arrived; writes to different entities run concurrently (bounded upstream by the client's
//! `max_in_flight`).
//!
//! A SCIM write holds its entity's lock for the whole operation — the snapshot read that
//! computes the Zulip calls, the calls, and the write-through — so a PATCH racing its own
//! DELETE, or a member added then removed, reach Zulip in the IdP's order and each sees the
//! previous one's result. A create is keyed by what makes it unique (a user's address, a
//! group's name): two creates of one address serialize, and the second finds the first's
//! account in the snapshot (409, or the reactivation) instead of racing it to Zulip.
//!
//! tokio's `Mutex` is fair (FIFO), which gives the arrival order. Entries are dropped once
//! nobody holds or waits for them, so the map stays as small as the writes in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::query::Resource;

/// What a write is ordered by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntityKey {
    /// An existing user or group, by SCIM id.
    Resource(Resource, String),
    /// A user to be created, by lower-cased `userName`.
    NewUser(String),
    /// A group to be created, by `displayName`.
    NewGroup(String),
}

impl EntityKey {
    /// The key of a `POST` (`None`: the body names nothing; it fails validation anyway).
    pub fn for_create(resource: Resource, body: &Value) -> Option<EntityKey> {
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        match resource {
            Resource::User => text("userName").map(|s| EntityKey::NewUser(s.to_lowercase())),
            Resource::Group => text("displayName").map(|s| EntityKey::NewGroup(s.to_owned())),
        }
    }
}

/// One realm's per-entity write locks.
#[derive(Debug, Default)]
pub struct EntityLocks {
    map: Mutex<HashMap<EntityKey, Arc<AsyncMutex<()>>>>,
}

/// Held for the duration of one write; releases (and forgets an unused entry) on drop.
#[derive(Debug)]
pub struct EntityGuard<'a> {
    locks: &'a EntityLocks,
    key: EntityKey,
    guard: Option<OwnedMutexGuard<()>>,
}

// === impl EntityLocks ===

impl EntityLocks {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<EntityKey, Arc<AsyncMutex<()>>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for the writes to `key` that arrived earlier, then holds it.
    pub async fn lock(&self, key: EntityKey) -> EntityGuard<'_> {
        let mutex = self.entries().entry(key.clone()).or_default().clone();
        let guard = mutex.lock_owned().await;
        EntityGuard { locks: self, key, guard: Some(guard) }
    }

    /// Entities with a write in flight or waiting.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for EntityGuard<'_> {
    fn drop(&mut self) {
        let mut entries = self.locks.entries();
        self.guard = None;
        // Only the map's own reference left: nobody holds or waits for this key.
        if entries.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn user(id: &str) -> EntityKey {
        EntityKey::Resource(Resource::User, id.into())
    }

    #[tokio::test]
    async fn one_key_serializes_in_arrival_order_and_other_keys_run_concurrently() {
        let locks = Arc::new(EntityLocks::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (locks, order, running, peak) = (locks.clone(), order.clone(), running.clone(), peak.clone());
            // 0, 2, 4 on user 1; 1, 3, 5 on users 11, 13, 15.
            let key = if i % 2 == 0 { user("1") } else { user(&format!("1{i}")) };
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock(key).await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }));
            // Let each task queue before the next arrives.
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let same: Vec<i32> = order.iter().copied().filter(|i| i % 2 == 0).collect();
        assert_eq!(same, vec![0, 2, 4], "one key keeps arrival order");
        assert!(peak.load(Ordering::SeqCst) >= 2, "different keys overlap");
        assert!(locks.is_empty(), "entries are forgotten once released");
    }

    #[test]
    fn creates_are_keyed_by_what_makes_them_unique() {
        let body = json!({"userName": " Ann@Example.COM "});
        assert_eq!(
            EntityKey::for_create(Resource::User, &body),
            Some(EntityKey::NewUser("ann@example.com".into()))
        );
        let body = json!({"displayName": "Ops "});
        assert_eq!(EntityKey::for_create(Resource::Group, &body), Some(EntityKey::NewGroup("Ops".into())));
        assert_eq!(EntityKey::for_create(Resource::User, &json!({})), None);
    }
}
