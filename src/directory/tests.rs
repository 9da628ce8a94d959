//! Unit tests of the directory: indexes, events, single-flight loads, TTL versus live.
use super::*;
use zulip_client::Role;

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
        profile_data: Default::default(),
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

fn event(value: serde_json::Value) -> Event {
    Event::from_value(value)
}

fn group(id: u64, name: &str, members: &[u64]) -> UserGroup {
    UserGroup {
        id,
        name: name.into(),
        description: String::new(),
        members: members.to_vec(),
        direct_subgroup_ids: Vec::new(),
        is_system_group: false,
        deactivated: false,
        date_created: None,
    }
}

#[test]
fn realm_user_events_keep_the_indexes_consistent() {
    let learned = LearnedEmails::new();
    let mut index = UserIndex::new(vec![user(2, Some("a@x.co"), false), user(3, None, false)], &learned);
    let add = event(serde_json::json!({"type": "realm_user", "op": "add", "id": 0, "person": {
        "email": "user1@x.co", "user_id": 1, "role": 400, "is_bot": false, "full_name": "One",
        "is_active": true, "date_joined": "", "delivery_email": "one@x.co", "avatar_url": null}}));
    assert_eq!(index.apply_event(&add, &learned), Applied::Changed);
    // Idempotent; and an `add` never replaces a known account (it would undo what the
    // sidecar recorded after the create, e.g. the externalId its follow-up set).
    assert_eq!(index.apply_event(&add, &learned), Applied::Ignored, "idempotent");
    assert_eq!(index.humans_from(0).map(|u| u.user_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(index.by_email("ONE@x.co").map(|u| u.user_id), Some(1));

    let update = |person: serde_json::Value| {
        event(serde_json::json!({"type": "realm_user", "op": "update", "id": 1, "person": person}))
    };
    index.apply_event(&update(serde_json::json!({"user_id": 2, "full_name": "Renamed"})), &learned);
    index.apply_event(&update(serde_json::json!({"user_id": 2, "role": 200})), &learned);
    index.apply_event(&update(serde_json::json!({"user_id": 2, "is_active": false})), &learned);
    let two = index.get(2).unwrap();
    assert_eq!((two.full_name.as_str(), two.role, two.is_active), ("Renamed", Role::Administrator, false));

    index.apply_event(&update(serde_json::json!({"user_id": 2, "delivery_email": "b@x.co"})), &learned);
    assert!(index.by_email("a@x.co").is_none());
    assert_eq!(index.by_email("b@x.co").map(|u| u.user_id), Some(2));
    // The address becomes invisible: indexed under the API e-mail, counted as hidden.
    assert_eq!(index.hidden_count(), 1);
    index.apply_event(&update(serde_json::json!({"user_id": 2, "delivery_email": null})), &learned);
    assert!(index.by_email("b@x.co").is_none());
    assert_eq!(index.by_email("user2@x.co").map(|u| u.user_id), Some(2));
    assert_eq!(index.hidden_count(), 2);
    index.apply_event(&update(serde_json::json!({"user_id": 3, "new_email": "three@x.co"})), &learned);
    assert_eq!(index.get(3).unwrap().email, "three@x.co");
    // Avatar-only updates change nothing visible.
    index.apply_event(
        &update(serde_json::json!({"user_id": 3, "avatar_url": "x", "avatar_version": 2})),
        &learned,
    );

    assert!(matches!(
        index.apply_event(&update(serde_json::json!({"user_id": 99, "full_name": "X"})), &learned),
        Applied::Inconsistent(_)
    ));
    let remove = event(
        serde_json::json!({"type": "realm_user", "op": "remove", "id": 2, "person": {"user_id": 1, "full_name": "One"}}),
    );
    assert_eq!(index.apply_event(&remove, &learned), Applied::Changed);
    assert!(index.by_email("one@x.co").is_none());
    assert_eq!(index.human_count(), 2);
    assert_eq!(
        index.apply_event(&event(serde_json::json!({"type": "heartbeat", "id": 3})), &learned),
        Applied::Ignored
    );
}

#[test]
fn user_group_events_follow_the_transcript_shapes() {
    let mut groups = GroupIndex::new(vec![group(30, "alpha", &[1, 2])]);
    let ev = |v: serde_json::Value| event(v);
    groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "add", "id": 1, "group": {
        "name": "beta", "members": [2], "description": "B", "id": 31, "is_system_group": false,
        "direct_subgroup_ids": [], "deactivated": false}})));
    groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "add_members", "group_id": 30, "user_ids": [3], "id": 2})));
    groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "remove_members", "group_id": 30, "user_ids": [1], "id": 3})));
    groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "update", "group_id": 30, "data": {"name": "gamma"}, "id": 4})));
    groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "update", "group_id": 30, "data": {"can_mention_group": 14}, "id": 5})));
    groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "add_subgroups", "group_id": 30, "direct_subgroup_ids": [31], "id": 6})));
    groups
        .apply_event(&ev(serde_json::json!({"type": "user_group", "op": "remove", "group_id": 31, "id": 7})));
    let alpha = &groups.groups[&30];
    assert_eq!(
        (alpha.name.as_str(), alpha.members.clone(), alpha.direct_subgroup_ids.clone()),
        ("gamma", vec![2, 3], vec![31])
    );
    assert!(groups.groups[&31].deactivated);
    assert!(groups.by_name("alpha").is_none());
    groups.drop_member(2);
    assert_eq!(groups.groups[&30].members, vec![3]);
    assert!(matches!(
        groups.apply_event(&ev(serde_json::json!({"type": "user_group", "op": "add_members", "group_id": 99, "user_ids": [3], "id": 8}))),
        Applied::Inconsistent(_)
    ));
    assert!(matches!(
        groups.apply_event(&ev(
            serde_json::json!({"type": "user_group", "op": "frobnicate", "group_id": 30, "id": 9})
        )),
        Applied::Inconsistent(_)
    ));
}

#[tokio::test]
async fn deactivation_keeps_the_hidden_membership_and_reactivation_shows_it() {
    let dir = Directory::new(Duration::from_secs(60));
    dir.users(|| async { Ok(vec![user(1, Some("a@x.co"), false)]) }).await.unwrap();
    dir.groups(|| async { Ok(vec![group(30, "alpha", &[1])]) }).await.unwrap();
    assert!(dir.is_loaded());
    assert!(!dir.memberships_known(1), "user 1 was never seen deactivated");
    let deactivate = event(
        serde_json::json!({"type": "realm_user", "op": "update", "id": 0, "person": {"user_id": 1, "is_active": false}}),
    );
    assert_eq!(dir.apply_event(&deactivate), Applied::Changed);
    assert!(!dir.cached_users().await.unwrap().read().get(1).unwrap().is_active);
    // Zulip keeps the membership (hidden while deactivated); so does the snapshot.
    assert_eq!(dir.cached_groups().await.unwrap().read().groups[&30].members, vec![1]);
    assert!(dir.memberships_known(1));
    let reactivate = event(
        serde_json::json!({"type": "realm_user", "op": "update", "id": 1, "person": {"user_id": 1, "is_active": true}}),
    );
    assert_eq!(dir.apply_event(&reactivate), Applied::Changed);
    assert!(dir.cached_users().await.unwrap().read().get(1).unwrap().is_active);
    assert_eq!(dir.cached_groups().await.unwrap().read().groups[&30].members, vec![1]);
}

#[tokio::test]
async fn events_older_than_a_write_through_never_roll_it_back() {
    let dir = Directory::new(Duration::from_secs(60));
    dir.set_live(true);
    dir.users(|| async { Ok(vec![user(1, Some("a@x.co"), false)]) }).await.unwrap();
    dir.groups(|| async { Ok(vec![group(30, "alpha", &[1])]) }).await.unwrap();
    let current = || async { dir.cached_users().await.unwrap().read().get(1).cloned().unwrap() };
    // The sidecar deactivates, then reactivates user 1; renames it; renames group 30 and
    // takes user 1 out of it.
    let mut u = current().await;
    u.is_active = false;
    dir.upsert_user(u.clone()).await;
    u.is_active = true;
    u.full_name = "Renamed".into();
    dir.upsert_user(u).await;
    dir.record_group_write(GroupWrite {
        group_id: 30,
        name: Some("beta".into()),
        delete: vec![1],
        ..GroupWrite::default()
    });
    let expected = |dir: &Directory| dir.pending_expectations();
    assert_eq!(expected(&dir), 4, "active, full_name, group name, membership");
    // Now the events arrive, late: the deactivation first (older than the reactivation).
    let events = [
        serde_json::json!({"type": "realm_user", "op": "update", "id": 0, "person": {"user_id": 1, "is_active": false}}),
        // Someone renamed the group in Zulip before the sidecar did.
        serde_json::json!({"type": "user_group", "op": "update", "id": 1, "group_id": 30, "data": {"name": "older"}}),
        serde_json::json!({"type": "realm_user", "op": "update", "id": 2, "person": {"user_id": 1, "is_active": true}}),
        serde_json::json!({"type": "user_group", "op": "add_members", "id": 3, "group_id": 30, "user_ids": [1]}),
    ];
    for e in events {
        dir.apply_event(&event(e));
        let users = dir.cached_users().await.unwrap();
        let groups = dir.cached_groups().await.unwrap();
        let (users, groups) = (users.read(), groups.read());
        let u = users.get(1).unwrap();
        assert!(u.is_active && u.full_name == "Renamed", "{u:?}");
        assert_eq!(groups.groups[&30].name, "beta");
        assert!(groups.groups[&30].members.is_empty());
    }
    // The writes' own events confirm them; afterwards events apply as they come.
    for e in [
        serde_json::json!({"type": "realm_user", "op": "update", "id": 4, "person": {"user_id": 1, "full_name": "Renamed"}}),
        serde_json::json!({"type": "user_group", "op": "update", "id": 5, "group_id": 30, "data": {"name": "beta"}}),
        serde_json::json!({"type": "user_group", "op": "remove_members", "id": 6, "group_id": 30, "user_ids": [1]}),
    ] {
        dir.apply_event(&event(e));
    }
    assert_eq!(expected(&dir), 0);
    dir.apply_event(&event(
        serde_json::json!({"type": "user_group", "op": "update", "id": 7, "group_id": 30, "data": {"name": "gamma"}}),
    ));
    assert_eq!(dir.cached_groups().await.unwrap().read().groups[&30].name, "gamma");
}

#[tokio::test]
async fn concurrent_misses_share_one_load_and_its_error() {
    let dir = Directory::new(Duration::from_secs(60));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = |calls: Arc<std::sync::atomic::AtomicUsize>| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Err::<Vec<User>, _>(ZulipError::Config("down".into()))
    };
    let (a, b) = tokio::join!(dir.users(|| load(calls.clone())), dir.users(|| load(calls.clone())));
    assert!(a.is_err() && b.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let ok = |calls: Arc<std::sync::atomic::AtomicUsize>| async move {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(vec![user(1, Some("a@x.co"), false)])
    };
    let (a, b) = tokio::join!(dir.users(|| ok(calls.clone())), dir.users(|| ok(calls.clone())));
    assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_event_that_arrives_during_a_load_is_replayed_onto_it() {
    let dir = Directory::new(Duration::from_secs(60));
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel::<()>();
    let loading = {
        let dir = dir.clone();
        tokio::spawn(async move {
            dir.users(|| async move {
                // Zulip answered before the rename; the event arrives before we are done.
                let _ = answer_rx.await;
                Ok(vec![user(1, Some("a@x.co"), false)])
            })
            .await
            .map(|_| ())
        })
    };
    while dir.users.lock().recording.is_none() {
        tokio::task::yield_now().await;
    }
    let rename = event(
        serde_json::json!({"type": "realm_user", "op": "update", "id": 0, "person": {"user_id": 1, "full_name": "Renamed"}}),
    );
    assert_eq!(dir.apply_event(&rename), Applied::Ignored, "nothing loaded yet");
    answer_tx.send(()).unwrap();
    loading.await.unwrap().unwrap();
    assert_eq!(dir.cached_users().await.unwrap().read().get(1).unwrap().full_name, "Renamed");
}

#[tokio::test]
async fn the_ttl_applies_only_while_events_are_not_live() {
    let dir = Directory::new(Duration::ZERO);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = || {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![user(1, Some("a@x.co"), false)])
        }
    };
    dir.users(load).await.unwrap();
    dir.users(load).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a zero TTL reloads on every read");
    dir.set_live(true);
    dir.users(load).await.unwrap();
    dir.users(load).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "live: the snapshot does not expire");
    dir.reload_users(load).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "reload always loads");
    dir.set_live(false);
    dir.users(load).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// Found by the strict soak (seed 1796230706301358577, sequence 76): a write's re-read of an
/// account, fetched while another replica reactivated it, came back deactivated after the
/// reactivation's event had been applied; recording that copy rolled the account back and
/// left an expectation no event would confirm, so the replica showed it deactivated for 30 s.
#[tokio::test]
async fn a_refresh_fetched_before_an_event_never_rolls_the_event_back() {
    let dir = Directory::new(Duration::from_secs(60));
    dir.set_live(true);
    let mut seen = user(1, Some("a@x.co"), false);
    seen.is_active = false;
    dir.users({
        let seen = seen.clone();
        || async move { Ok(vec![seen]) }
    })
    .await
    .unwrap();
    let fetched = seen.clone(); // Zulip's answer, read before the reactivation.
    let reactivate = event(
        serde_json::json!({"type": "realm_user", "op": "update", "id": 0, "person": {"user_id": 1, "is_active": true}}),
    );
    assert_eq!(dir.apply_event(&reactivate), Applied::Changed);
    dir.refresh_user(&seen, fetched).await;
    let active = || async { dir.cached_users().await.unwrap().read().get(1).unwrap().is_active };
    assert!(active().await, "the older copy rolled the reactivation back");
    assert_eq!(dir.pending_expectations(), 0);

    // A copy of the entry as it still is replaces it, and expects no event either: the next
    // event applies as it comes.
    let current = dir.cached_users().await.unwrap().read().get(1).cloned().unwrap();
    let mut renamed = current.clone();
    renamed.full_name = "Fetched".into();
    dir.refresh_user(&current, renamed).await;
    assert_eq!(dir.cached_users().await.unwrap().read().get(1).unwrap().full_name, "Fetched");
    assert_eq!(dir.pending_expectations(), 0);
    let deactivate = event(
        serde_json::json!({"type": "realm_user", "op": "update", "id": 1, "person": {"user_id": 1, "is_active": false}}),
    );
    assert_eq!(dir.apply_event(&deactivate), Applied::Changed);
    assert!(!active().await);
}

/// Found by the 30-minute soak (seed 1796233225181267910, sequences 213, 310 and 325): the
/// replica that deactivated an account kept showing it deactivated after another replica
/// reactivated it. The deactivation's own event, admitted while the write was recording
/// itself (after it read the snapshot's copy, before it left its expectation), was applied
/// with nothing expected; the write then expected an event that had already come, and the
/// reactivation's event was held back as older for 30 s. Events and writes now record one at
/// a time. This races a write and its own event many times: never may an expectation be
/// left behind.
#[test]
fn a_writes_own_event_applied_while_it_records_itself_leaves_no_expectation() {
    use std::sync::{Arc, Barrier};
    let dir = Arc::new(Directory::new(Duration::from_secs(60)));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(dir.users(|| async { Ok(vec![user(1, Some("a@x.co"), false)]) })).unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let mut left_behind = 0;
    for round in 0..20_000u64 {
        let active = round % 2 == 1; // the value this round's write and event carry
        let events = {
            let (dir, barrier) = (dir.clone(), barrier.clone());
            std::thread::spawn(move || {
                let e = event(serde_json::json!({"type": "realm_user", "op": "update", "id": round,
                    "person": {"user_id": 1, "is_active": active}}));
                barrier.wait();
                dir.apply_event(&e);
            })
        };
        barrier.wait();
        rt.block_on(dir.edit_user(UserEdit { user_id: 1, is_active: Some(active), ..UserEdit::default() }));
        events.join().unwrap();
        if dir.pending_expectations() > 0 {
            left_behind += 1;
            dir.new_event_queue();
        }
    }
    assert_eq!(left_behind, 0, "rounds that left an expectation no event would confirm");
}
