//! Live updates: changes made directly in Zulip reach SCIM reads through Zulip's events API,
//! without snapshot reloads; expired queues are replaced; without events, TTL snapshots serve.
//!
//! Waiting is done on notifications, not sleeps: the fake reports the newest event id of each
//! queue, and the realm publishes the newest id it applied ([`Realm::live_progress`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use fake_zulip::{Failure, FakeGroup, FakeUser};
use scim_sidecar::provision::live::{spawn_all, LiveOptions};
use scim_sidecar::provision::Realm;

use crate::support::{fake, Harness};

/// Everything a test may wait for is bounded by this (the feature's promise).
const WITHIN: Duration = Duration::from_secs(2);

fn realm(h: &Harness) -> Arc<Realm> {
    h.app.realms()[0].clone()
}

fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Waits until events flow (queue registered, snapshots loaded); returns the queue id.
async fn wait_live(h: &Harness) -> String {
    let mut progress = realm(h).live_progress();
    let live = tokio::time::timeout(WITHIN, progress.wait_for(|p| p.live && p.queue_id.is_some()))
        .await
        .expect("events flow within 2 s")
        .expect("live task running")
        .clone();
    live.queue_id.expect("queue id")
}

/// Waits until the realm applied every event the fake queued so far for its queue.
async fn caught_up(h: &Harness) {
    let realm = realm(h);
    let queue = realm.live_progress().borrow().queue_id.clone().expect("a queue");
    let target = h
        .fake
        .event_queues()
        .into_iter()
        .find(|q| q.queue_id == queue)
        .map(|q| q.newest_event_id)
        .expect("the fake knows the queue");
    let mut progress = realm.live_progress();
    tokio::time::timeout(
        WITHIN,
        progress.wait_for(|p| p.queue_id.as_deref() == Some(queue.as_str()) && p.last_event_id >= target),
    )
    .await
    .unwrap_or_else(|_| panic!("event {target} applied within 2 s"))
    .expect("live task running");
}

/// Snapshot loads (`GET /users`, `GET /user_groups`) among the recorded upstream requests.
fn snapshot_loads(h: &Harness) -> (usize, usize) {
    let requests = h.upstream();
    let count = |path: &str| requests.iter().filter(|r| r.method == "GET" && r.path == path).count();
    (count("/api/v1/users"), count("/api/v1/user_groups"))
}

async fn user_by_name(h: &Harness, email: &str) -> Value {
    let body = h.get(&format!("/Users?filter={}", percent(&format!("userName eq \"{email}\"")))).await;
    body.assert_status(200).clone()
}

#[tokio::test]
async fn out_of_band_changes_are_visible_within_two_seconds_without_reloads() {
    let h = Harness::start_live(fake(), |_| {}).await;
    wait_live(&h).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let iago = h.user_id("iago@zulip.example.com");
    // Warm reads, then forget the requests made so far (the initial snapshot).
    h.get("/Users").await.assert_status(200);
    h.upstream();
    let mut latencies = Vec::new();

    // Rename.
    let started = Instant::now();
    h.fake.modify_user(hamlet, |u| u.full_name = "Prince Hamlet".into());
    caught_up(&h).await;
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    latencies.push(("rename", started.elapsed()));
    assert_eq!(body["displayName"], "Prince Hamlet");

    // Deactivation.
    let started = Instant::now();
    h.fake.modify_user(iago, |u| u.is_active = false);
    caught_up(&h).await;
    let body = user_by_name(&h, "iago@zulip.example.com").await;
    latencies.push(("deactivation", started.elapsed()));
    assert_eq!(body["Resources"][0]["active"], false, "{body}");

    // A new user.
    let started = Instant::now();
    let new = h.fake.insert_user(FakeUser::new("miranda@zulip.example.com", "Miranda New"));
    caught_up(&h).await;
    let body = user_by_name(&h, "miranda@zulip.example.com").await;
    latencies.push(("new user", started.elapsed()));
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(body["Resources"][0]["id"], new.to_string());

    // A role change.
    let started = Instant::now();
    h.fake.modify_user(hamlet, |u| u.role = 200);
    caught_up(&h).await;
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    latencies.push(("role change", started.elapsed()));
    assert_eq!(body["role"], "administrator");

    // A new group, then a membership change.
    let started = Instant::now();
    let ops = h.fake.insert_group(FakeGroup::new("Ops", &[hamlet]));
    caught_up(&h).await;
    let body = h.get(&format!("/Groups/{ops}")).await.assert_status(200).clone();
    latencies.push(("new group", started.elapsed()));
    assert_eq!(body["displayName"], "Ops");
    let started = Instant::now();
    h.fake.modify_group(ops, |g| {
        g.members.push(new);
        g.members.retain(|m| *m != hamlet);
    });
    caught_up(&h).await;
    let body = h.get(&format!("/Groups/{ops}")).await.assert_status(200).clone();
    latencies.push(("group membership", started.elapsed()));
    let members: Vec<&str> =
        body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, vec![new.to_string()]);

    // The address changes (the by-email index follows).
    h.fake.modify_user(new, |u| u.delivery_email = "miranda2@zulip.example.com".into());
    caught_up(&h).await;
    assert_eq!(user_by_name(&h, "miranda@zulip.example.com").await["totalResults"], 0);
    assert_eq!(user_by_name(&h, "miranda2@zulip.example.com").await["totalResults"], 1);

    assert_eq!(snapshot_loads(&h), (0, 0), "events, not reloads, carried every change");
    assert!(realm(&h).is_live());
    for (what, latency) in &latencies {
        eprintln!("live: {what} visible in SCIM after {} µs", latency.as_micros());
        assert!(*latency < WITHIN, "{what}: {latency:?}");
    }
    h.stop().await;
}

#[tokio::test]
async fn the_sidecars_own_writes_and_their_events_agree() {
    let h = Harness::start_live(fake(), |_| {}).await;
    wait_live(&h).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.upstream();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"displayName": "Hamlet Via SCIM"}}]});
    h.patch(&format!("/Users/{hamlet}"), &patch).await.assert_status(200);
    let created = h
        .post(
            "/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "kim@zulip.example.com",
                "name": {"givenName": "Kim", "familyName": "Lee"}, "active": true}),
        )
        .await;
    created.assert_status(201);
    caught_up(&h).await;
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    assert_eq!(body["displayName"], "Hamlet Via SCIM");
    assert_eq!(user_by_name(&h, "kim@zulip.example.com").await["totalResults"], 1);
    assert_eq!(snapshot_loads(&h).0, 0);
    h.stop().await;
}

#[tokio::test]
async fn an_expired_queue_is_replaced_and_the_snapshot_stays_correct() {
    let h = Harness::start_live(fake(), |_| {}).await;
    let first = wait_live(&h).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.upstream();

    let mut progress = realm(&h).live_progress();
    h.fake.expire_event_queues();
    // A change right after the expiry: shown by the re-snapshot or the new queue.
    h.fake.modify_user(hamlet, |u| u.full_name = "Hamlet While Expired".into());
    tokio::time::timeout(
        WITHIN,
        progress.wait_for(|p| p.live && p.queue_id.as_deref().is_some_and(|q| q != first)),
    )
    .await
    .expect("a new queue within 2 s")
    .expect("live task running");
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    assert_eq!(body["displayName"], "Hamlet While Expired");

    h.fake.modify_user(hamlet, |u| u.full_name = "Hamlet After Expiry".into());
    caught_up(&h).await;
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    assert_eq!(body["displayName"], "Hamlet After Expiry");
    let requests = h.fake.requests();
    assert_eq!(requests.iter().filter(|r| r.path == "/api/v1/register").count(), 1, "registered once more");
    assert_eq!(snapshot_loads(&h), (1, 1), "one re-snapshot for the new queue");
    assert_eq!(h.fake.event_queues().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_the_stream_live_without_reloads() {
    let h = Harness::start_live(fake().event_heartbeat(Duration::from_millis(50)), |_| {}).await;
    wait_live(&h).await;
    h.upstream();
    let mut progress = realm(&h).live_progress();
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.live && p.last_event_id >= 2))
        .await
        .expect("three heartbeats within 2 s")
        .expect("live task running");
    assert_eq!(snapshot_loads(&h), (0, 0));
    let metrics =
        h.http.get(format!("http://{}/metrics", h.addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"scim_realm_live{realm="demo"} 1"#), "{metrics}");
    h.stop().await;
}

#[tokio::test]
async fn without_events_the_realm_serves_ttl_snapshots() {
    // A short TTL, so that the fallback's reload shows quickly.
    let h = Harness::start_with(fake(), |c| c.snapshot_ttl = Duration::from_millis(20)).await;
    for _ in 0..20 {
        // Zulip (or a proxy in front of it) without the events API.
        h.fake.fail_next("POST", "/api/v1/register", Failure::Html404);
    }
    let (stop, stopped) = watch::channel(false);
    let tasks = spawn_all(h.app.realms(), &stopped, LiveOptions::default());
    let realm = realm(&h);

    // The live task loads the TTL snapshots itself, so the realm becomes ready.
    let deadline = Instant::now() + WITHIN;
    while !realm.is_ready() {
        assert!(Instant::now() < deadline, "ready within 2 s on TTL snapshots");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!realm.is_live());
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.get(&format!("/Users/{hamlet}")).await.assert_status(200);

    // A change in Zulip shows once the TTL has passed (polling: TTL expiry takes time).
    h.fake.modify_user(hamlet, |u| u.full_name = "Hamlet By TTL".into());
    let deadline = Instant::now() + WITHIN;
    loop {
        let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
        if body["displayName"] == "Hamlet By TTL" {
            break;
        }
        assert!(Instant::now() < deadline, "visible by TTL within 2 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = h.http.get(format!("http://{}/readyz", h.addr)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    h.stop().await;
}

#[tokio::test]
async fn readyz_waits_for_the_snapshot_when_live() {
    let h = Harness::start_with(fake(), |_| {}).await;
    h.fake.delay_next("GET", "/api/v1/users", Duration::from_millis(300));
    let (stop, stopped) = watch::channel(false);
    let tasks = spawn_all(h.app.realms(), &stopped, LiveOptions::default());
    let mut progress = realm(&h).live_progress();
    // Registered but still loading: not ready.
    while !h.fake.requests().iter().any(|r| r.path == "/api/v1/users") {
        tokio::task::yield_now().await;
    }
    let ready = h.http.get(format!("http://{}/readyz", h.addr)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.live)).await.unwrap().unwrap();
    let ready = h.http.get(format!("http://{}/readyz", h.addr)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    // The queue was deleted on shutdown.
    assert!(h.fake.event_queues().is_empty());
    h.stop().await;
}
