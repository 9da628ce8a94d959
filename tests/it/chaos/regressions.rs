//! One test per divergence the chaos search found, each the smallest sequence that shows it
//! (the fixes are in `src/provision` and `src/directory.rs`), plus a longer two-replica run.

use std::time::Duration;

use serde_json::{json, Value};

use fake_zulip::{Failure, FakeGroup, RateLimitRules};

use super::model::{Case, Dialect, Op, Step};
use super::run_case;
use crate::support::{fake, Harness};
use scim_sidecar::demo::{DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};

fn html_500() -> Failure {
    Failure::NonJson { status: 500, body: "<html><h1>500</h1></html>".into() }
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Found by the search (seed 2): Zulip applied the member diff, then answered an HTML 500;
/// the sidecar answered 502 "nothing was changed". Now it reads the group before answering.
#[tokio::test]
async fn a_member_change_whose_answer_is_lost_after_zulip_applied_it_is_a_success() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let gid = h.fake.insert_group(FakeGroup::new("Sales", &[]));
    h.get(&format!("/Groups/{gid}")).await.assert_status(200);
    h.fake.fail_next(
        "POST",
        &format!("/api/v1/user_groups/{gid}/members"),
        Failure::AfterApply(Box::new(html_500())),
    );
    let reply = h
        .patch(
            &format!("/Groups/{gid}"),
            &patch(json!([{"op": "Add", "path": "members", "value": [{"value": hamlet.to_string()}]}])),
        )
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["members"][0]["value"], hamlet.to_string());
    assert_eq!(h.fake.group(gid).unwrap().members, vec![hamlet]);
    let posts =
        h.upstream().iter().filter(|r| r.is("POST", &format!("/api/v1/user_groups/{gid}/members"))).count();
    assert_eq!(posts, 1, "a diff is never sent twice");
    h.stop().await;
}

/// Found by the soak (seed 1796223337923079565, sequence 252): a group rename whose answer was
/// lost after Zulip applied it (HTML 500) answered 502 "nothing was changed".
#[tokio::test]
async fn a_group_rename_whose_answer_is_lost_after_zulip_applied_it_is_a_success() {
    let h = Harness::start().await;
    let gid = h.fake.insert_group(FakeGroup::new("Support", &[]));
    h.get(&format!("/Groups/{gid}")).await.assert_status(200);
    h.fake.fail_next(
        "PATCH",
        &format!("/api/v1/user_groups/{gid}"),
        Failure::AfterApply(Box::new(html_500())),
    );
    let rename = patch(json!([{"op": "replace", "value": {"id": gid.to_string(), "displayName": "Ops"}}]));
    let reply = h.patch(&format!("/Groups/{gid}"), &rename).await;
    assert_eq!(reply.assert_status(200)["displayName"], "Ops");
    assert_eq!(h.fake.group(gid).unwrap().name, "Ops");
    h.stop().await;
}

/// The same failure before Zulip applied it: the error says the change was not there when
/// the sidecar looked — and, since Zulip never answered, not that nothing can still change
/// (the soak's sequence 302: a request Zulip applied after the sidecar gave up on it).
#[tokio::test]
async fn a_member_change_lost_before_zulip_applied_it_says_what_the_sidecar_saw() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let gid = h.fake.insert_group(FakeGroup::new("Sales", &[]));
    h.get(&format!("/Groups/{gid}")).await.assert_status(200);
    h.fake.fail_next("POST", &format!("/api/v1/user_groups/{gid}/members"), html_500());
    let reply = h
        .patch(
            &format!("/Groups/{gid}"),
            &patch(json!([{"op": "Add", "path": "members", "value": [{"value": hamlet.to_string()}]}])),
        )
        .await;
    reply.assert_error(502, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("no member change when the sidecar read group") && detail.contains("may still apply"),
        "{detail}"
    );
    assert!(!detail.contains("nothing was changed"), "{detail}");
    assert!(h.fake.group(gid).unwrap().members.is_empty());
    h.stop().await;
}

/// The same for a deactivation (`DELETE /users/{id}` is not idempotent, so not retried):
/// Zulip deactivated the account and the connection dropped before the answer.
#[tokio::test]
async fn a_deactivation_whose_answer_is_lost_after_zulip_applied_it_is_a_success() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.get(&format!("/Users/{hamlet}")).await.assert_status(200);
    h.fake.fail_next(
        "DELETE",
        &format!("/api/v1/users/{hamlet}"),
        Failure::AfterApply(Box::new(Failure::Reset)),
    );
    let reply = h
        .patch(
            &format!("/Users/{hamlet}"),
            &patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await;
    assert_eq!(reply.assert_status(200)["active"], false);
    assert!(!h.fake.user(hamlet).unwrap().is_active);
    h.stop().await;
}

/// A name change whose every attempt is answered with a lost answer after Zulip applied it
/// (retries exhausted): the sidecar looks, finds the change, and answers 200.
#[tokio::test]
async fn an_update_whose_answers_are_all_lost_after_zulip_applied_it_is_a_success() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.get(&format!("/Users/{hamlet}")).await.assert_status(200);
    for _ in 0..8 {
        h.fake.fail_next(
            "PATCH",
            &format!("/api/v1/users/{hamlet}"),
            Failure::AfterApply(Box::new(html_500())),
        );
    }
    let reply = h
        .patch(
            &format!("/Users/{hamlet}"),
            &patch(json!([{"op": "replace", "path": "displayName", "value": "Prince Hamlet"}])),
        )
        .await;
    assert_eq!(reply.assert_status(200)["displayName"], "Prince Hamlet");
    assert_eq!(h.fake.user(hamlet).unwrap().full_name, "Prince Hamlet");
    h.stop().await;
}

/// Found while analysing a two-replica search failure: a group DELETE whose rename (which frees the name of
/// the deactivated group) failed answered 204 anyway; the name stayed reserved, and the
/// IdP's re-create of the group got 409 for good. Now the DELETE fails saying so, and its
/// retry finishes the rename.
#[tokio::test]
async fn a_group_delete_whose_rename_fails_is_finished_by_its_retry() {
    let h = Harness::start().await;
    let gid = h.fake.insert_group(FakeGroup::new("Engineering", &[]));
    h.get(&format!("/Groups/{gid}")).await.assert_status(200);
    for _ in 0..8 {
        h.fake.fail_next("PATCH", &format!("/api/v1/user_groups/{gid}"), html_500());
    }
    let reply = h.delete(&format!("/Groups/{gid}")).await;
    reply.assert_error(502, None);
    assert!(reply.body["detail"].as_str().unwrap().contains("still reserved"), "{}", reply.raw);
    assert!(h.fake.group(gid).unwrap().deactivated);
    h.fake.clear_failures("PATCH", &format!("/api/v1/user_groups/{gid}"));
    h.delete(&format!("/Groups/{gid}")).await.assert_status(204);
    assert_eq!(h.fake.group(gid).unwrap().name, format!("Engineering (deleted {gid})"));
    h.get(&format!("/Groups/{gid}")).await.assert_error(404, None);
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering", "members": []});
    h.post("/Groups", &body).await.assert_status(201);
    h.stop().await;
}

/// The known one: a create whose follow-up `PATCH` (the role) would have to wait past
/// `request_deadline_ms` for the rate limit. The follow-up was never sent, the undo neither,
/// and an active member was left where the IdP asked for a moderator (the IdP's retry of the
/// POST then got 409). Now a create is not started unless the budget the sidecar knows of
/// lets all its calls through within the deadline: a clean 429, nothing created.
///
/// Left (reported): when the sidecar has not yet seen the budget spent (another replica, or
/// a client outside the sidecar, spent it), its POST can still take the last call.
#[tokio::test]
async fn a_create_whose_follow_up_would_wait_past_the_deadline_is_not_started() {
    let h = Harness::start_with(fake(), |c| c.request_deadline = Duration::from_millis(1500)).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.get("/Users").await.assert_status(200);
    // 50 calls per 10 s; spend the budget down to two calls left.
    h.fake.set_rate_limit(Some(RateLimitRules { rules: vec![(Duration::from_secs(10), 50)] }));
    let direct = || {
        h.http
            .get(format!("{}api/v1/users/me", h.fake.base_url()))
            .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_SERVICE_API_KEY))
            .send()
    };
    let remaining = |r: &reqwest::Response| -> u32 {
        r.headers()["x-ratelimit-remaining"].to_str().unwrap().parse().unwrap()
    };
    let mut left = remaining(&direct().await.unwrap());
    while left > 2 {
        left = remaining(&direct().await.unwrap());
    }
    // One SCIM write: the sidecar learns that one call is left.
    let rename = patch(json!([{"op": "replace", "path": "displayName", "value": "Prince Hamlet"}]));
    h.patch(&format!("/Users/{hamlet}"), &rename).await.assert_status(200);
    h.fake.take_requests();
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "late@zulip.example.com",
        "name": {"givenName": "Late", "familyName": "Mod"}, "role": "moderator", "active": true});
    let reply = h.post("/Users", &user).await;
    reply.assert_error(429, None);
    assert!(reply.header("retry-after").is_some());
    assert!(h.fake.user_by_email("late@zulip.example.com").is_none(), "no member left behind");
    assert!(h.upstream_writes().is_empty(), "nothing sent");
    // A member (one call) still fits.
    let member = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "plain@zulip.example.com",
        "name": {"givenName": "Plain", "familyName": "Member"}, "active": true});
    h.post("/Users", &member).await.assert_status(201);
    h.stop().await;
}

/// The same when the sidecar has not seen the budget spent (another replica, or a client
/// outside the sidecar spent it): its POST takes the last call, and the follow-up waits for
/// the budget past the deadline (bounded) instead of leaving a member behind.
#[tokio::test]
async fn a_create_whose_budget_runs_out_after_the_post_finishes_with_its_role() {
    let h = Harness::start_with(fake(), |c| c.request_deadline = Duration::from_millis(1500)).await;
    h.get("/Users").await.assert_status(200);
    h.fake.set_rate_limit(Some(RateLimitRules { rules: vec![(Duration::from_secs(3), 40)] }));
    let direct = || {
        h.http
            .get(format!("{}api/v1/users/me", h.fake.base_url()))
            .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_SERVICE_API_KEY))
            .send()
    };
    let remaining = |r: &reqwest::Response| -> u32 {
        r.headers()["x-ratelimit-remaining"].to_str().unwrap().parse().unwrap()
    };
    let mut left = remaining(&direct().await.unwrap());
    while left > 1 {
        left = remaining(&direct().await.unwrap());
    }
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "late@zulip.example.com",
        "name": {"givenName": "Late", "familyName": "Mod"}, "role": "moderator", "active": true});
    let reply = h.post("/Users", &user).await;
    assert_eq!(reply.assert_status(201)["role"], "moderator");
    let created = h.fake.user_by_email("late@zulip.example.com").unwrap();
    assert_eq!((created.role, created.is_active), (300, true));
    h.stop().await;
}

fn steps(ops: Vec<Op>) -> Vec<Step> {
    ops.into_iter().map(|op| Step { op, replica: 0, fault: None }).collect()
}

/// Found by the search (seed 3, `externalId` stored): right after a create that stores
/// `externalId` (`POST /users`, then `PATCH /users/{id}` with the profile field), about one
/// run in five the snapshot lost the `externalId`: the create's `realm_user`/`add` event,
/// applied after the create had recorded the account, replaced it with the account as it
/// was before the follow-up; a PATCH read in that window then wrote its (stale) copy back
/// over the follow-up's event, for good. Now an `add` for a known account is ignored, and a
/// write records its changes field by field instead of replacing the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_id_survives_the_create_event_race() {
    let ops = vec![Op::Rename { p: 0, given: 4, family: 3 }, Op::Rename { p: 0, given: 3, family: 1 }];
    for _ in 0..12 {
        let case = Case { dialect: Dialect::Entra, steps: steps(ops.clone()) };
        if let Err(divergence) = run_case(&case, 1, true).await {
            panic!("{divergence}");
        }
    }
}

/// A longer two-replica check (about 30 s, so not in CI): sixteen cases from the CI seed,
/// strictly — no divergence, and so no read (on any replica) that disagrees with Zulip
/// longer than the events bound after a write. It found the group 409 below
/// (`a_name_freed_by_another_replicas_delete_can_be_created_at_once`) and reproduced the
/// cross-replica stale reads after an admin's edit (`an_admins_edit_during_a_write_…`).
///
/// Run: `cargo test -p scim-sidecar --test it a_replica_sees -- --ignored --nocapture`.
#[test]
#[ignore = "a longer two-replica check (30 s)"]
fn a_replica_sees_another_replicas_write_to_a_reactivated_account() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&super::DEFAULT_SEED.to_le_bytes());
    bytes[8..16].copy_from_slice(&2u64.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(Default::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut stale = 0;
    for _ in 0..16 {
        let case = super::model::case(2, 32).new_tree(&mut runner).unwrap().current();
        match rt.block_on(run_case(&case, 2, true)) {
            Ok(stats) => stale += stats.stale_reads,
            Err(e) => panic!("{e}\n{case:#?}"),
        }
    }
    // Divergences (stale reads included) panic above; these were under the tightened limit.
    eprintln!("cross-replica stale reads recorded under the tightened rate limit: {stale}");
}

/// Found by the two-replica search (the CI seed, case 10): replica B deletes a group (its
/// name is freed by the rename), and replica A, whose snapshot had not yet applied the
/// rename, answered the IdP's re-create of that name 409 "reserved by deactivated group" —
/// a refusal no lookup could explain. A 409 is now answered only after a fresh read agrees.
///
/// It was flaky (about 1 run in 4 here under load): when A's snapshot had not yet applied
/// the DELETE at all, the IdP's lookup by name on A found the deleted group, and its push to
/// it — a PATCH with nothing to change — answered 200 from the snapshot for a group Zulip
/// had deactivated (a false success; then 404s once A caught up). A group write with nothing
/// to send now re-reads the groups before answering (404 for a deactivated group), and the
/// IdP creates the group after that 404, as after any 404. Each run does the case 8 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_freed_by_another_replicas_delete_can_be_created_at_once() {
    use super::model::{Fault, FaultKind};
    let steps = vec![
        Step {
            op: Op::GroupCreate { g: 1, name: 0 },
            replica: 0,
            fault: Some(Fault { kind: FaultKind::TimeoutAfter, call: 0 }),
        },
        Step { op: Op::GroupDelete { g: 1 }, replica: 1, fault: None },
        Step { op: Op::GroupCreate { g: 2, name: 0 }, replica: 0, fault: None },
    ];
    for _ in 0..8 {
        let case = Case { dialect: Dialect::Okta, steps: steps.clone() };
        if let Err(divergence) = run_case(&case, 2, true).await {
            panic!("{divergence}");
        }
    }
}

/// Polls `GET path` on `h` until `ok` accepts the answer or `within` passes; the last answer.
async fn read_until(h: &Harness, path: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let body = h.get(path).await.body;
        if ok(&body) || started.elapsed() > within {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The cause of the recorded cross-replica stale reads (issue 15): an admin edits an account
/// in Zulip while a write to it is in flight; the edit's events reach the snapshot before the
/// write finishes. The write then recorded its copy of the account — read before the write —
/// over the whole entry: the admin's name and role were rolled back, and the expectations
/// left for them (values Zulip did not hold, so no event ever confirmed them) hid every
/// later event for those fields for 30 s. Another replica, showing Zulip's values, looked
/// stale next to this one's answer. A write now records only the fields it set.
#[tokio::test]
async fn an_admins_edit_during_a_write_is_not_rolled_back_by_the_write() {
    let h = Harness::start_live(fake(), |_| {}).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    let name = h.get(&path).await.assert_status(200)["displayName"].clone();
    assert_ne!(name, "Edited In Zulip");
    let delete = format!("/api/v1/users/{hamlet}");
    h.fake.delay_next("DELETE", &delete, Duration::from_millis(800));
    let admin = async {
        let started = std::time::Instant::now();
        while !h.fake.requests().iter().any(|r| r.is("DELETE", &delete)) {
            assert!(started.elapsed() < Duration::from_secs(5), "the deactivation reaches Zulip");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.fake.modify_user(hamlet, |u| {
            u.full_name = "Edited In Zulip".into();
            u.role = 300;
        });
        let seen =
            read_until(&h, &path, Duration::from_secs(5), |u| u["displayName"] == "Edited In Zulip").await;
        assert_eq!(seen["displayName"], "Edited In Zulip", "the admin's edit is applied during the write");
    };
    let deactivate = patch(json!([{"op": "replace", "value": {"active": false}}]));
    let (reply, ()) = tokio::join!(h.patch(&path, &deactivate), admin);
    assert_eq!(reply.assert_status(200)["active"], false);
    // Zulip: deactivated, with the admin's name and role. The sidecar must agree within one
    // events round-trip, not after the expectations' 30 s.
    let zulip = h.fake.user(hamlet).unwrap();
    assert!(!zulip.is_active);
    assert_eq!(zulip.full_name, "Edited In Zulip");
    let read = read_until(&h, &path, Duration::from_secs(3), |u| {
        u["displayName"] == "Edited In Zulip" && u["role"] == "moderator" && u["active"] == false
    })
    .await;
    assert_eq!(
        (&read["displayName"], &read["role"], &read["active"]),
        (&json!("Edited In Zulip"), &json!("moderator"), &json!(false)),
        "the write rolled the admin's edit back: {read}"
    );
    h.stop().await;
}

/// The soak's lasting divergence (one replica lacked a user's `externalId` 4 s after a run,
/// while Zulip and the other replicas had it): the same record-over-the-entry as above on a
/// replica that did not set the `externalId`. Its write to the account (here a role change)
/// was in flight when the `custom_profile_field` event of another replica's write arrived;
/// recording its copy — read before that event — removed the value again, and the
/// expectation it left (no value, which Zulip never sent) hid the field's events for 30 s.
#[tokio::test]
async fn an_external_id_set_elsewhere_during_a_write_is_kept() {
    let h = Harness::start_live(fake().with_profile_field("externalId", 1), |config| {
        config.realms[0].external_id_field = Some("externalId".into());
    })
    .await;
    let field = h.fake.profile_fields().iter().find(|f| f.name == "externalId").map(|f| f.id).unwrap();
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    assert_eq!(h.get(&path).await.assert_status(200)["externalId"], Value::Null);
    let update = format!("/api/v1/users/{hamlet}");
    h.fake.delay_next("PATCH", &update, Duration::from_millis(800));
    let other_replica = async {
        let started = std::time::Instant::now();
        while !h.fake.requests().iter().any(|r| r.is("PATCH", &update)) {
            assert!(started.elapsed() < Duration::from_secs(5), "the role change reaches Zulip");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.fake.modify_user(hamlet, |u| {
            u.profile_data.insert(field, "ext-7".into());
        });
        let seen = read_until(&h, &path, Duration::from_secs(5), |u| u["externalId"] == "ext-7").await;
        assert_eq!(seen["externalId"], "ext-7", "the other write's event is applied during this one");
    };
    let role = patch(json!([{"op": "Replace", "path": "role", "value": "moderator"}]));
    let (reply, ()) = tokio::join!(h.patch(&path, &role), other_replica);
    assert_eq!(reply.assert_status(200)["role"], "moderator");
    assert_eq!(h.fake.user(hamlet).unwrap().profile_data.get(&field).map(String::as_str), Some("ext-7"));
    let read = read_until(&h, &path, Duration::from_secs(3), |u| {
        u["externalId"] == "ext-7" && u["role"] == "moderator"
    })
    .await;
    assert_eq!((&read["externalId"], &read["role"]), (&json!("ext-7"), &json!("moderator")), "{read}");
    h.stop().await;
}

/// A create whose `POST /users` got no answer, and whose account the sidecar did not find
/// when it looked, said "nothing was changed" — but Zulip may still apply a request it never
/// answered. The detail now says what the sidecar saw and what a retry does.
#[tokio::test]
async fn a_create_lost_before_zulip_applied_it_says_what_the_sidecar_saw() {
    let h = Harness::start().await;
    h.get("/Users?count=1").await.assert_status(200);
    h.fake.fail_next("POST", "/api/v1/users", html_500());
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "new.person@zulip.example.com",
        "name": {"givenName": "New", "familyName": "Person"},
        "active": true,
    });
    let reply = h.post("/Users", &body).await;
    reply.assert_error(502, None);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("none when the sidecar read Zulip's users again")
            && detail.contains("may still create it")
            && detail.contains("a retried POST answers 409"),
        "{detail}"
    );
    assert!(!detail.contains("nothing was changed"), "{detail}");
    assert!(h.fake.user_by_email("new.person@zulip.example.com").is_none());
    // What the detail promises: once Zulip has the account, a retried POST answers 409 naming it.
    h.fake.fail_next("POST", "/api/v1/users", Failure::AfterApply(Box::new(html_500())));
    let _ = h.post("/Users", &body).await;
    let id = h.user_id("new.person@zulip.example.com");
    let retry = h.post("/Users", &body).await;
    retry.assert_error(409, Some("uniqueness"));
    assert!(retry.body["detail"].as_str().unwrap().contains(&id.to_string()), "{}", retry.raw);
    // The soak's sequence 99 (seed 1796230067510640313): the look itself failed (here every
    // `GET /users`; there the request deadline) and the answer said "nothing was changed".
    h.fake.fail_next("POST", "/api/v1/users", html_500());
    for _ in 0..12 {
        h.fake.fail_next("GET", "/api/v1/users", html_500());
    }
    let other = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "other.person@zulip.example.com",
        "name": {"givenName": "Other", "familyName": "Person"},
    });
    let reply = h.post("/Users", &other).await;
    h.fake.clear_failures("GET", "/api/v1/users");
    assert!(reply.status.is_server_error(), "{}", reply.raw);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("may have reached Zulip") && !detail.contains("nothing was changed"), "{detail}");
    h.stop().await;
}

/// Found by the strict soak (seed 1796230706301358577, sequence 69): a PUT asserting the name
/// the snapshot showed, right after an admin changed it in Zulip, needs the re-read of
/// divergence 4; when that read failed, the write was diffed against the snapshot, skipped
/// the name and answered 200 for a name Zulip did not hold. It is refused now (nothing sent).
#[tokio::test]
async fn a_write_whose_re_read_fails_is_refused_not_diffed_against_the_snapshot() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    let mut current = h.get(&path).await.assert_status(200).clone();
    h.fake.modify_user(hamlet, |u| u.full_name = "Edited In Zulip".into());
    for _ in 0..8 {
        h.fake.fail_next("GET", &format!("/api/v1/users/{hamlet}"), html_500());
    }
    current.as_object_mut().unwrap().remove("meta");
    let reply = h.put(&path, &current).await;
    h.fake.clear_failures("GET", &format!("/api/v1/users/{hamlet}"));
    assert!(reply.status.is_server_error(), "{}", reply.raw);
    assert_eq!(h.fake.user(hamlet).unwrap().full_name, "Edited In Zulip");
    assert!(h.upstream_writes().is_empty(), "nothing is sent");
    h.stop().await;
}
