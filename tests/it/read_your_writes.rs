//! Read-your-writes with the live task on: every SCIM read right after a SCIM write shows the
//! write and everything Zulip did because of it, however late (and batched) Zulip's events
//! arrive, and no event older than a write rolls it back once it does arrive.
//!
//! The fake's [`EventDelivery`] delays events behind the answers to later requests and
//! releases them in batches (a queue's order kept, as Zulip does); each sequence runs with
//! several seeds and with immediate delivery.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use fake_zulip::EventDelivery;
use scim_sidecar::provision::Realm;

use crate::support::{fake, Harness};

const WITHIN: Duration = Duration::from_secs(5);

fn realm(h: &Harness) -> Arc<Realm> {
    h.app.realms()[0].clone()
}

async fn wait_live(h: &Harness) {
    let mut progress = realm(h).live_progress();
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.live && p.queue_id.is_some()))
        .await
        .expect("events flow")
        .expect("live task running");
}

/// The newest event id the fake queued for the realm's queue.
fn newest_event(h: &Harness) -> i64 {
    let queue = realm(h).live_progress().borrow().queue_id.clone().expect("a queue");
    h.fake.event_queues().into_iter().find(|q| q.queue_id == queue).map_or(-1, |q| q.newest_event_id)
}

/// Waits until every event queued so far is applied.
async fn wait_caught_up(h: &Harness) {
    let target = newest_event(h);
    let mut progress = realm(h).live_progress();
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.last_event_id >= target))
        .await
        .unwrap_or_else(|_| panic!("event {target} applied in time"))
        .expect("live task running");
}

/// Waits until the realm applied an event newer than `seen` (bounded: a check loop, not a
/// sleep-to-wait).
async fn progressed(h: &Harness, seen: i64) {
    let mut progress = realm(h).live_progress();
    let _ = tokio::time::timeout(WITHIN, progress.wait_for(|p| p.last_event_id > seen))
        .await
        .expect("events keep coming");
}

async fn create_user(h: &Harness, email: &str, given: &str, family: &str) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": given, "familyName": family},
        "active": true,
    });
    h.post("/Users", &body).await.assert_status(201)["id"].as_str().expect("id").to_string()
}

async fn set_active(h: &Harness, id: &str, active: bool) {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": active}}],
    });
    h.patch(&format!("/Users/{id}"), &body).await.assert_status(200);
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["value"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The `display` of group `gid` in a user's `groups` (`None`: not a member).
fn group_display(user: &Value, gid: &str) -> Option<String> {
    user["groups"]
        .as_array()?
        .iter()
        .find(|g| g["value"] == gid)
        .and_then(|g| g["display"].as_str().map(str::to_owned))
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// The deliveries every sequence runs under: immediate, and late + batched with a few seeds.
fn deliveries() -> Vec<EventDelivery> {
    let mut out = vec![EventDelivery::default()];
    out.extend((1..=3).map(|seed| EventDelivery::late().seed(seed)));
    out
}

/// Create A and B, a group with both, deactivate B, reactivate B, read the group at once:
/// B is a member again (Zulip kept the membership through the deactivation and shows it
/// with the reactivation). Fails on a directory that drops a deactivated user's memberships.
#[tokio::test]
async fn a_reactivated_member_is_in_the_group_at_once() {
    for delivery in deliveries() {
        let h = Harness::start_live(fake().event_delivery(delivery.clone()), |_| {}).await;
        wait_live(&h).await;
        let a = create_user(&h, "ann@zulip.example.com", "Ann", "Alpha").await;
        let b = create_user(&h, "bob@zulip.example.com", "Bob", "Beta").await;
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Reactivation",
            "members": [{"value": a}, {"value": b}],
        });
        let gid = h.post("/Groups", &group).await.assert_status(201)["id"].as_str().unwrap().to_string();
        set_active(&h, &b, false).await;
        let shown = h.get(&format!("/Groups/{gid}")).await;
        assert_eq!(
            member_ids(shown.assert_status(200)),
            sorted(&[&a]),
            "{delivery:?}: B hidden while deactivated"
        );
        // An IdP that deactivates and later reactivates: the deactivation's events are in.
        wait_caught_up(&h).await;
        set_active(&h, &b, true).await;
        let shown = h.get(&format!("/Groups/{gid}")).await;
        assert_eq!(member_ids(shown.assert_status(200)), sorted(&[&a, &b]), "{delivery:?}: at once");
        let user = h.get(&format!("/Users/{b}?attributes=groups")).await;
        let groups = user.assert_status(200)["groups"].as_array().cloned().unwrap_or_default();
        assert!(groups.iter().any(|g| g["value"] == gid.as_str()), "{delivery:?}: {groups:?}");
        // And nothing the events bring afterwards takes B out again.
        loop {
            let seen = realm(&h).last_event_id();
            if seen >= newest_event(&h) {
                break;
            }
            let shown = h.get(&format!("/Groups/{gid}")).await;
            assert_eq!(
                member_ids(shown.assert_status(200)),
                sorted(&[&a, &b]),
                "{delivery:?}: while events arrive"
            );
            progressed(&h, seen).await;
        }
        let shown = h.get(&format!("/Groups/{gid}")).await;
        assert_eq!(member_ids(shown.assert_status(200)), sorted(&[&a, &b]), "{delivery:?}: after the events");
        h.stop().await;
    }
}

/// The same, without waiting for the deactivation's events: deactivate and reactivate back
/// to back, then read while the (late) events are still coming.
#[tokio::test]
async fn deactivate_then_reactivate_back_to_back_never_loses_the_membership() {
    for delivery in deliveries() {
        let h = Harness::start_live(fake().event_delivery(delivery.clone()), |_| {}).await;
        wait_live(&h).await;
        let a = create_user(&h, "ann@zulip.example.com", "Ann", "Alpha").await;
        let b = create_user(&h, "bob@zulip.example.com", "Bob", "Beta").await;
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Back to back",
            "members": [{"value": a}, {"value": b}],
        });
        let gid = h.post("/Groups", &group).await.assert_status(201)["id"].as_str().unwrap().to_string();
        set_active(&h, &b, false).await;
        set_active(&h, &b, true).await;
        loop {
            let seen = realm(&h).last_event_id();
            let done = seen >= newest_event(&h);
            let shown = h.get(&format!("/Groups/{gid}")).await;
            assert_eq!(member_ids(shown.assert_status(200)), sorted(&[&a, &b]), "{delivery:?}");
            let user = h.get(&format!("/Users/{b}")).await;
            assert_eq!(user.assert_status(200)["active"], true, "{delivery:?}");
            if done {
                break;
            }
            progressed(&h, seen).await;
        }
        h.stop().await;
    }
}

/// An Okta-shaped sequence of writes, each followed at once by the reads an IdP makes;
/// renames, an address change and a role change show in every resource that carries them.
#[tokio::test]
async fn every_write_is_read_back_at_once_and_never_rolled_back() {
    for delivery in deliveries() {
        let h = Harness::start_live(fake().event_delivery(delivery.clone()), |_| {}).await;
        wait_live(&h).await;
        let d = format!("{delivery:?}");
        let a = create_user(&h, "ann@zulip.example.com", "Ann", "Alpha").await;
        let b = create_user(&h, "bob@zulip.example.com", "Bob", "Beta").await;

        // Role change, read back.
        let role = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "role", "value": "moderator"}],
        });
        h.patch(&format!("/Users/{a}"), &role).await.assert_status(200);
        assert_eq!(h.get(&format!("/Users/{a}")).await.assert_status(200)["role"], "moderator", "{d}");

        // Group with A; add B; read back.
        let group = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Sequence",
            "members": [{"value": a}],
        });
        let gid = h.post("/Groups", &group).await.assert_status(201)["id"].as_str().unwrap().to_string();
        let add_b = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": b}]}],
        });
        h.patch(&format!("/Groups/{gid}"), &add_b).await.assert_status(200);
        assert_eq!(
            member_ids(h.get(&format!("/Groups/{gid}")).await.assert_status(200)),
            sorted(&[&a, &b]),
            "{d}"
        );

        // Rename the group: the user's `groups` shows the new name at once.
        let rename = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed sequence"}],
        });
        h.patch(&format!("/Groups/{gid}"), &rename).await.assert_status(200);
        let user = h.get(&format!("/Users/{b}?attributes=groups")).await;
        assert_eq!(group_display(user.assert_status(200), &gid), Some("Renamed sequence".into()), "{d}");

        // Rename B: the group's member `display` shows it at once.
        let name = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Bobby Beta"}],
        });
        h.patch(&format!("/Users/{b}"), &name).await.assert_status(200);
        let shown = h.get(&format!("/Groups/{gid}")).await;
        let members = shown.assert_status(200)["members"].as_array().cloned().unwrap_or_default();
        assert!(
            members.iter().any(|m| m["value"] == b.as_str() && m["display"] == "Bobby Beta"),
            "{d}: {members:?}"
        );

        // Change B's address: the lookup an IdP makes next finds it under the new one.
        let address = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "userName", "value": "robert@zulip.example.com"}],
        });
        h.patch(&format!("/Users/{b}"), &address).await.assert_status(200);
        let found = h.get("/Users?filter=userName%20eq%20%22robert@zulip.example.com%22").await;
        assert_eq!(found.assert_status(200)["totalResults"], 1, "{d}");
        assert_eq!(found.body["Resources"][0]["id"], b.as_str(), "{d}");

        // Remove A, then B's deactivation and reactivation.
        let remove_a = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": format!("members[value eq \"{a}\"]")}],
        });
        h.patch(&format!("/Groups/{gid}"), &remove_a).await.assert_status(200);
        assert_eq!(
            member_ids(h.get(&format!("/Groups/{gid}")).await.assert_status(200)),
            sorted(&[&b]),
            "{d}"
        );
        set_active(&h, &b, false).await;
        assert_eq!(
            member_ids(h.get(&format!("/Groups/{gid}")).await.assert_status(200)),
            Vec::<String>::new(),
            "{d}"
        );
        set_active(&h, &b, true).await;

        // The final state, read at once and on every poll until all events are in.
        loop {
            let seen = realm(&h).last_event_id();
            let done = seen >= newest_event(&h);
            check_final(&h, &a, &b, &gid, &d).await;
            if done {
                break;
            }
            progressed(&h, seen).await;
        }
        assert_eq!(realm(&h).pending_expectations(), 0, "{d}: every write confirmed by its event");
        h.stop().await;
    }
}

/// The end state of [`every_write_is_read_back_at_once_and_never_rolled_back`].
async fn check_final(h: &Harness, a: &str, b: &str, gid: &str, d: &str) {
    let group = h.get(&format!("/Groups/{gid}")).await;
    let group = group.assert_status(200);
    assert_eq!(group["displayName"], "Renamed sequence", "{d}");
    assert_eq!(member_ids(group), sorted(&[b]), "{d}");
    assert_eq!(group["members"][0]["display"], "Bobby Beta", "{d}");
    let ub = h.get(&format!("/Users/{b}?attributes=userName,active,displayName,groups")).await;
    let ub = ub.assert_status(200);
    assert_eq!(
        (&ub["userName"], &ub["active"], &ub["displayName"]),
        (&json!("robert@zulip.example.com"), &json!(true), &json!("Bobby Beta")),
        "{d}"
    );
    assert_eq!(group_display(ub, gid), Some("Renamed sequence".into()), "{d}");
    let ua = h.get(&format!("/Users/{a}?attributes=role,groups")).await;
    let ua = ua.assert_status(200);
    assert_eq!(ua["role"], "moderator", "{d}");
    assert_eq!(group_display(ua, gid), None, "{d}: {ua}");
}
