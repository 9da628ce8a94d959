//! Fault injection: every upstream failure becomes a SCIM error (never a hang, a panic or a
//! false 2xx), nothing is half-applied silently, and the IdP's retry converges.

use std::time::Duration;

use serde_json::{json, Value};

use fake_zulip::{Failure, FakeGroup};

use crate::support::{fake, BareSidecar, Harness, TOKEN};

fn user(email: &str, role: Option<&str>) -> Value {
    let mut u = json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":email,
        "name":{"givenName":"Fault","familyName":"Tolerant"},"active":true});
    if let Some(r) = role {
        u["role"] = json!(r);
    }
    u
}

fn next_user_id(h: &Harness) -> u64 {
    h.fake.users().iter().map(|u| u.user_id).max().unwrap() + 1
}

#[tokio::test]
async fn a_create_whose_role_step_fails_is_undone_and_the_retry_converges() {
    let h = Harness::start().await;
    let id = next_user_id(&h);
    h.fake.fail_next(
        "PATCH",
        &format!("/api/v1/users/{id}"),
        Failure::Api {
            status: 400,
            code: "UNAUTHORIZED_PRINCIPAL".into(),
            msg: "Must be an organization owner".into(),
        },
    );
    let reply = h.post("/Users", &user("mid@zulip.example.com", Some("administrator"))).await;
    reply.assert_error(403, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("already applied") && detail.contains("deactivated it again"), "{detail}");
    let zulip = h.fake.user(id).unwrap();
    assert!(!zulip.is_active, "no active member left behind where an administrator was asked for");
    // The IdP retries the same POST: the account comes back with the role.
    let reply = h.post("/Users", &user("mid@zulip.example.com", Some("administrator"))).await;
    let body = reply.assert_status(201);
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["role"], "administrator");
    let zulip = h.fake.user(id).unwrap();
    assert!(zulip.is_active);
    assert_eq!(zulip.role, 200);
    assert_eq!(h.fake.users().iter().filter(|u| u.delivery_email == "mid@zulip.example.com").count(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_create_that_times_out_after_zulip_applied_it_is_resolved_without_a_duplicate() {
    let h = Harness::start_with(fake(), |c| c.realms[0].upstream.timeout = Duration::from_millis(150)).await;
    h.get("/Users").await.assert_status(200);
    h.fake.fail_next("POST", "/api/v1/users", Failure::AfterApply(Box::new(Failure::Hang)));
    let reply = h.post("/Users", &user("slow@zulip.example.com", None)).await;
    assert_eq!(reply.assert_status(201)["userName"], "slow@zulip.example.com");
    assert_eq!(h.fake.users().iter().filter(|u| u.delivery_email == "slow@zulip.example.com").count(), 1);
    let posts = h.upstream().iter().filter(|r| r.method == "POST" && r.path == "/api/v1/users").count();
    assert_eq!(posts, 1, "a non-idempotent call is never sent twice");
    h.stop().await;
}

#[tokio::test]
async fn a_create_that_failed_before_zulip_applied_it_says_so() {
    let h = Harness::start_with(fake(), |c| c.realms[0].upstream.timeout = Duration::from_millis(150)).await;
    h.fake.fail_next("POST", "/api/v1/users", Failure::Hang);
    let reply = h.post("/Users", &user("never@zulip.example.com", None)).await;
    reply.assert_error(504, None);
    // Not "nothing was changed": Zulip never answered and may still apply it.
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("none when the sidecar read Zulip's users again")
            && detail.contains("may still create it"),
        "{detail}"
    );
    assert!(h.fake.user_by_email("never@zulip.example.com").is_none());
    // The retry succeeds.
    h.post("/Users", &user("never@zulip.example.com", None)).await.assert_status(201);
    h.stop().await;
}

#[tokio::test]
async fn malformed_and_html_answers_are_502_and_the_next_read_recovers() {
    let h = Harness::start().await;
    for failure in
        [Failure::TruncatedJson, Failure::Html404, Failure::NonJson { status: 200, body: "<html>".into() }]
    {
        // Reads are retried: make the failure outlast the retries.
        for _ in 0..6 {
            h.fake.fail_next("GET", "/api/v1/users", failure.clone());
        }
        h.get("/Users").await.assert_error(502, None);
    }
    // Drain whatever injections remain, then a normal read works.
    let mut ok = false;
    for _ in 0..20 {
        if h.get("/Users").await.status.as_u16() == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok);
    h.stop().await;
}

#[tokio::test]
async fn a_group_patch_that_fails_after_the_rename_says_what_was_applied_and_converges() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let gid = h.fake.insert_group(FakeGroup::new("Ops", &[]));
    h.fake.fail_next(
        "POST",
        &format!("/api/v1/user_groups/{gid}/members"),
        Failure::Api { status: 500, code: "BAD_REQUEST".into(), msg: "Internal server error".into() },
    );
    let patch = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
        {"op":"replace","value":{"id":gid.to_string(),"displayName":"Operations"}},
        {"op":"add","path":"members","value":[{"value":hamlet.to_string()}]}]});
    let reply = h.patch(&format!("/Groups/{gid}"), &patch).await;
    reply.assert_error(502, None);
    assert!(reply.body["detail"].as_str().unwrap().contains("renamed group"), "{}", reply.raw);
    assert_eq!(h.fake.group(gid).unwrap().name, "Operations");
    assert!(h.fake.group(gid).unwrap().members.is_empty());
    // Okta retries the same PATCH: the rename is a no-op now, the member is added.
    let reply = h.patch(&format!("/Groups/{gid}"), &patch).await;
    reply.assert_status(200);
    let g = h.fake.group(gid).unwrap();
    assert_eq!((g.name.as_str(), g.members.clone()), ("Operations", vec![hamlet]));
    h.stop().await;
}

#[tokio::test]
async fn an_unreachable_zulip_is_a_quick_502_never_a_hang() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let h = Harness::start().await;
    // A second sidecar, pointed at a closed port.
    let sidecar = BareSidecar::start(url::Url::parse(&format!("http://{dead}")).unwrap(), |c| {
        c.request_deadline = Duration::from_secs(2)
    })
    .await;
    let started = std::time::Instant::now();
    let reply = crate::support::Reply::from(
        h.http.get(format!("http://{}/scim/v2/Users", sidecar.addr)).bearer_auth(TOKEN).send().await.unwrap(),
    )
    .await;
    reply.assert_error(502, None);
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the deadline");
    sidecar.stop().await;
    h.stop().await;
}

/// `POST /Users` from an IdP client that gives up after 200 ms (before the sidecar answers).
async fn post_and_hang_up(h: &Harness, body: &Value) {
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let gave_up = impatient
        .post(h.url("/Users"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()), "the client timed out");
}

#[tokio::test]
async fn a_create_runs_to_completion_when_the_idp_hangs_up_half_way() {
    // The IdP's HTTP client gives up while the create's second call (the role) is in flight.
    // Cut there, the account would stay a member: the write must finish on its own.
    let h = Harness::start().await;
    let id = next_user_id(&h);
    h.fake.delay_next("PATCH", &format!("/api/v1/users/{id}"), Duration::from_millis(600));
    post_and_hang_up(&h, &user("hasty@zulip.example.com", Some("moderator"))).await;

    // The create's PATCH finishes although nobody waits for the answer any more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let created = h.fake.user(id).expect("the account exists");
        if created.role == 300 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the role step ran to completion: {created:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let patches: Vec<_> = h.upstream().into_iter().filter(|r| r.method == "PATCH").map(|r| r.path).collect();
    assert_eq!(patches, [format!("/api/v1/users/{id}")]);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_a_write_whose_idp_hung_up() {
    let mut h = Harness::start().await;
    let id = next_user_id(&h);
    h.fake.delay_next("PATCH", &format!("/api/v1/users/{id}"), Duration::from_millis(600));
    post_and_hang_up(&h, &user("late@zulip.example.com", Some("administrator"))).await;
    // No connection is left, but the create's role step is still in flight: the server
    // returns only after it (grace period: 5 s).
    h.begin_shutdown();
    let fake = h.fake.clone();
    h.join().await;
    assert_eq!(fake.user(id).expect("created").role, 200, "the write finished before shutdown returned");
    fake.shutdown().await;
}
