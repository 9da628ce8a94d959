//! Concurrent writes: writes to different users and groups reach Zulip side by side, writes to
//! one entity (and two creates of one address) keep their arrival order, and an unknown
//! outcome is still resolved without a duplicate account.

use std::time::Duration;

use serde_json::{json, Value};

use fake_zulip::{Failure, FakeZulip, LatencyProfile};

use crate::support::{fake, Harness, Reply};

const WITHIN: Duration = Duration::from_secs(5);

/// Waits (bounded) until the fake has received `count` requests matching `method path`.
async fn received(fake: &FakeZulip, method: &str, path: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if fake.requests().iter().filter(|r| r.is(method, path)).count() >= count {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{method} {path} x{count} not received in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn new_user(email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Same", "familyName": "Person"},
    })
}

fn rename(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": name}],
    })
}

#[tokio::test]
async fn two_creates_of_one_address_serialize_and_the_second_sees_the_first() {
    let h = Harness::start_with(fake().latency(LatencyProfile::realistic()), |_| {}).await;
    let body = new_user("twin@zulip.example.com");
    let (a, b) = tokio::join!(h.post("/Users", &body), h.post("/Users", &body));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", a.raw, b.raw);
    let creates = h.upstream().iter().filter(|r| r.is("POST", "/api/v1/users")).count();
    assert_eq!(creates, 1, "the second create found the first in the snapshot");
    assert_eq!(h.fake.users().iter().filter(|u| u.delivery_email == "twin@zulip.example.com").count(), 1);
}

#[tokio::test]
async fn an_unknown_outcome_amid_concurrent_creates_never_duplicates() {
    let h = Harness::start_with(fake().latency(LatencyProfile::realistic()), |_| {}).await;
    // Zulip creates the account, but the answer is lost.
    h.fake.fail_next("POST", "/api/v1/users", Failure::AfterApply(Box::new(Failure::Reset)));
    let twin = new_user("lost@zulip.example.com");
    let others: Vec<Value> = (0..4).map(|i| new_user(&format!("other{i}@zulip.example.com"))).collect();
    let (first, second, rest) = tokio::join!(
        h.post("/Users", &twin),
        h.post("/Users", &twin),
        futures_util::future::join_all(others.iter().map(|b| h.post("/Users", b)))
    );
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", first.raw, second.raw);
    for reply in rest {
        reply.assert_status(201);
    }
    assert_eq!(h.fake.users().iter().filter(|u| u.delivery_email == "lost@zulip.example.com").count(), 1);
}

#[tokio::test]
async fn writes_to_one_user_keep_their_order_while_others_overtake() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com").to_string();
    let iago = h.user_id("iago@zulip.example.com").to_string();
    // Hamlet's rename is slow upstream.
    h.fake.delay_next("PATCH", &format!("/api/v1/users/{hamlet}"), Duration::from_millis(300));
    let slow = tokio::spawn({
        let (url, http, hamlet) = (h.url(""), h.http.clone(), hamlet.clone());
        async move {
            let req = http
                .patch(format!("{url}/Users/{hamlet}"))
                .bearer_auth(crate::support::TOKEN)
                .header("content-type", "application/scim+json")
                .body(rename("Hamlet One").to_string());
            Reply::from(req.send().await.expect("answer")).await
        }
    });
    received(&h.fake, "PATCH", &format!("/api/v1/users/{hamlet}"), 1).await;
    // Meanwhile: Hamlet's deactivation waits for the rename; Iago's rename does not.
    let hamlet_path = format!("/Users/{hamlet}");
    let (deactivated, other) = tokio::join!(h.delete(&hamlet_path), async {
        let reply = h.patch(&format!("/Users/{iago}"), &rename("Iago Two")).await;
        let overtook = h.fake.requests().iter().all(|r| !r.is("DELETE", &format!("/api/v1/users/{hamlet}")));
        (reply, overtook)
    });
    slow.await.expect("join").assert_status(200);
    assert_eq!(deactivated.status.as_u16(), 204, "{}", deactivated.raw);
    other.0.assert_status(200);
    assert!(other.1, "a write to another user does not wait behind Hamlet's");
    let order: Vec<String> = h
        .upstream()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let rename_at =
        order.iter().position(|c| *c == format!("PATCH /api/v1/users/{hamlet}")).expect("rename sent");
    let delete_at =
        order.iter().position(|c| *c == format!("DELETE /api/v1/users/{hamlet}")).expect("delete sent");
    let iago_at = order.iter().position(|c| *c == format!("PATCH /api/v1/users/{iago}")).expect("iago sent");
    assert!(rename_at < delete_at, "{order:?}");
    assert!(iago_at < delete_at, "{order:?}");
    let user = h.get(&format!("/Users/{hamlet}")).await;
    let user = user.assert_status(200);
    assert_eq!((&user["displayName"], &user["active"]), (&json!("Hamlet One"), &json!(false)));
}
