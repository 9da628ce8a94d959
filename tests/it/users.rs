//! SCIM Users through real HTTP on both sides.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use fake_zulip::{Failure, FakeUser};
use scim_sidecar::config::UserDelete;

use crate::support::{call, calls, fake, BareSidecar, Harness, TOKEN};

fn filter(f: &str) -> String {
    format!("/Users?filter={}", percent(f))
}

fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn okta_user(email: &str, given: &str, family: &str) -> Value {
    json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":email,
        "name":{"givenName":given,"familyName":family},
        "emails":[{"primary":true,"value":email,"type":"work"}],
        "displayName":format!("{given} {family}"),"locale":"en-US","externalId":"00u1abcdEFGH",
        "groups":[],"password":"x7Rq2pLm","active":true})
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":ops})
}

#[tokio::test]
async fn wrong_token_is_401_and_never_reaches_zulip() {
    let h = Harness::start().await;
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("non-token"),
        Some("Basic dXNlcjpwYXNz"),
        Some(TOKEN),
    ] {
        let mut req = h.http.get(h.url("/Users"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let reply = crate::support::Reply::from(req.send().await.unwrap()).await;
        reply.assert_error(401, None);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert!(!reply.raw.contains("demo"), "the body never names the realm");
    }
    // Unknown SCIM endpoints need the token too.
    let reply = crate::support::Reply::from(h.http.get(h.url("/Widgets")).send().await.unwrap()).await;
    reply.assert_error(401, None);
    assert!(h.upstream().is_empty(), "no upstream call for an unauthenticated request");
    h.stop().await;
}

#[tokio::test]
async fn list_shows_humans_including_deactivated_and_never_bots() {
    let h = Harness::start().await;
    let reply = h.get("/Users").await;
    let body = reply.assert_status(200);
    assert_eq!(reply.header("content-type"), Some("application/scim+json"));
    assert_eq!(body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
    let names: Vec<&str> =
        body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap()).collect();
    assert!(names.contains(&"othello@zulip.example.com"));
    assert!(names.contains(&"hamlet@zulip.example.com"));
    assert!(!names.contains(&"welcome-bot@zulip.example.com"), "{names:?}");
    assert_eq!(body["totalResults"], names.len());
    assert_eq!(body["itemsPerPage"], names.len());
    assert_eq!(body["startIndex"], 1);
    let othello = body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userName"] == "othello@zulip.example.com")
        .unwrap();
    assert_eq!(othello["active"], false);
    // One snapshot, whatever the number of reads.
    h.get("/Users").await.assert_status(200);
    h.get(&format!("/Users/{}", h.user_id("hamlet@zulip.example.com"))).await.assert_status(200);
    assert_eq!(calls(&h.upstream()), vec![call("GET", "/api/v1/users")]);
    h.stop().await;
}

#[tokio::test]
async fn paging_is_one_based_stable_and_counts_what_it_returns() {
    let mut fake = fake();
    for i in 0..7 {
        fake = fake.with_user(FakeUser::new(&format!("p{i}@zulip.example.com"), &format!("Person {i}")));
    }
    let h = Harness::start_with(fake, |_| {}).await;
    let all = h.get("/Users?count=500").await.body;
    let total = all["totalResults"].as_u64().unwrap() as usize;
    let ids: Vec<String> =
        all["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let mut numeric: Vec<u64> = ids.iter().map(|i| i.parse().unwrap()).collect();
    numeric.sort();
    assert_eq!(numeric.iter().map(u64::to_string).collect::<Vec<_>>(), ids, "id order");
    let mut paged = Vec::new();
    let mut start = 1;
    while start <= total {
        let page = h.get(&format!("/Users?startIndex={start}&count=3")).await.body;
        assert_eq!(page["startIndex"], start);
        assert_eq!(page["totalResults"], total);
        let items = page["Resources"].as_array().unwrap();
        assert_eq!(page["itemsPerPage"], items.len());
        paged.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        start += 3;
    }
    assert_eq!(paged, ids);
    let empty = h.get("/Users?count=0").await.body;
    assert_eq!(empty["Resources"], json!([]));
    assert_eq!(empty["itemsPerPage"], 0);
    let below = h.get("/Users?startIndex=0&count=1").await.body;
    assert_eq!(below["startIndex"], 1);
    h.get("/Users?count=abc").await.assert_error(400, Some("invalidValue"));
    h.stop().await;
}

#[tokio::test]
async fn filters_the_idps_send_are_answered_from_the_snapshot() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com").to_string();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("userName eq \"HAMLET@zulip.example.com\"".into(), vec!["hamlet@zulip.example.com"]),
        ("userName eq \"nobody@zulip.example.com\"".into(), vec![]),
        (format!("id eq \"{hamlet}\""), vec!["hamlet@zulip.example.com"]),
        ("externalId eq \"5e0c1f3a-7d0b-4c1e-9a52-1f0c2b7d9e44\"".into(), vec![]),
        ("emails.value eq \"iago@zulip.example.com\"".into(), vec!["iago@zulip.example.com"]),
        (
            "emails[type eq \"work\"].value eq \"iago@zulip.example.com\"".into(),
            vec!["iago@zulip.example.com"],
        ),
        ("active eq false".into(), vec!["othello@zulip.example.com"]),
        (
            "userName eq \"hamlet@zulip.example.com\" or userName eq \"iago@zulip.example.com\"".into(),
            vec!["hamlet@zulip.example.com", "iago@zulip.example.com"],
        ),
        ("userName eq \"hamlet@zulip.example.com\" and active eq false".into(), vec![]),
        (
            "welcome-bot@zulip.example.com"
                .replace("welcome", "userName eq \"welcome")
                .replace(".com", ".com\""),
            vec![],
        ),
    ];
    for (f, want) in cases {
        let reply = h.get(&filter(&f)).await;
        let body = reply.assert_status(200);
        let mut got: Vec<&str> =
            body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap()).collect();
        got.sort();
        assert_eq!(got, want, "{f}");
        assert_eq!(body["totalResults"], want.len(), "{f}");
    }
    let writes = h.upstream_writes();
    assert!(writes.is_empty(), "{writes:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_filter_it_cannot_evaluate_is_400_never_an_empty_list() {
    let h = Harness::start().await;
    for bad in [
        "nickName eq \"x\"",
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "active gt true",
        "emails[type eq \"work\"",
    ] {
        h.get(&filter(bad)).await.assert_error(400, Some("invalidFilter"));
    }
    let search = h.post("/Users/.search", &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"title eq \"x\""})).await;
    search.assert_error(400, Some("invalidFilter"));
    h.stop().await;
}

#[tokio::test]
async fn search_endpoint_filters_and_pages() {
    let h = Harness::start().await;
    let reply = h
        .post(
            "/Users/.search",
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter":"userName eq \"iago@zulip.example.com\"","startIndex":1,"count":10}),
        )
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["role"], "administrator");
    h.stop().await;
}

#[tokio::test]
async fn get_user_by_id_and_404s() {
    let h = Harness::start().await;
    let id = h.user_id("iago@zulip.example.com");
    let reply = h.get(&format!("/Users/{id}")).await;
    let body = reply.assert_status(200);
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["userName"], "iago@zulip.example.com");
    assert_eq!(body["name"]["givenName"], "Iago");
    assert_eq!(body["name"]["familyName"], "Admin");
    assert_eq!(body["role"], "administrator");
    assert_eq!(body["meta"]["resourceType"], "User");
    let location = body["meta"]["location"].as_str().unwrap();
    assert_eq!(location, format!("http://{}/scim/v2/Users/{id}", h.addr));
    assert_eq!(reply.header("location"), Some(location));
    assert_eq!(reply.header("etag"), body["meta"]["version"].as_str());
    let bot = h.user_id("welcome-bot@zulip.example.com");
    for missing in [bot.to_string(), "999999".into(), "abc".into(), "00919288221112222".into(), "-5".into()] {
        h.get(&format!("/Users/{missing}")).await.assert_error(404, None);
    }
    h.stop().await;
}

#[tokio::test]
async fn post_user_creates_with_one_call_and_answers_201_with_location() {
    let h = Harness::start().await;
    let reply = h.post("/Users", &okta_user("kim@zulip.example.com", "Kim", "Lee")).await;
    let body = reply.assert_status(201).clone();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["userName"], "kim@zulip.example.com");
    assert_eq!(body["name"]["givenName"], "Kim");
    assert_eq!(body["name"]["familyName"], "Lee");
    assert_eq!(body["active"], true);
    assert_eq!(body["role"], "member");
    assert_eq!(reply.header("location"), body["meta"]["location"].as_str());
    assert!(body.get("password").is_none());
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("POST", "/api/v1/users")]);
    assert_eq!(writes[0].param("email"), Some("kim@zulip.example.com"));
    assert_eq!(writes[0].param("full_name"), Some("Kim Lee"));
    assert!(
        writes[0].param("password").is_some_and(|p| p.len() >= 20 && p != "x7Rq2pLm"),
        "a strong throwaway password, never the IdP's"
    );
    let zulip = h.fake.user(id.parse().unwrap()).unwrap();
    assert_eq!(zulip.full_name, "Kim Lee");
    assert_eq!(zulip.role, 400);
    // Readable at once, without another upstream call.
    h.get(&format!("/Users/{id}")).await.assert_status(200);
    h.get(&filter("userName eq \"kim@zulip.example.com\"")).await.assert_status(200);
    assert!(h.upstream().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn post_user_with_a_role_sets_it_with_a_second_call() {
    let h = Harness::start().await;
    let mut body = okta_user("mod@zulip.example.com", "Mo", "Derator");
    body["role"] = json!("moderator");
    let created = h.post("/Users", &body).await.assert_status(201).clone();
    assert_eq!(created["role"], "moderator");
    let id = created["id"].as_str().unwrap();
    let writes = h.upstream_writes();
    assert_eq!(
        calls(&writes),
        vec![call("POST", "/api/v1/users"), call("PATCH", format!("/api/v1/users/{id}"))]
    );
    assert_eq!(writes[1].param("role"), Some("300"));
    assert_eq!(h.fake.user(id.parse().unwrap()).unwrap().role, 300);
    let mut bad = okta_user("x@zulip.example.com", "X", "Y");
    bad["role"] = json!("superuser");
    h.post("/Users", &bad).await.assert_error(400, Some("invalidValue"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn post_duplicate_address_is_409_without_upstream_write() {
    let h = Harness::start().await;
    for email in ["hamlet@zulip.example.com", "HAMLET@ZULIP.EXAMPLE.COM"] {
        h.post("/Users", &okta_user(email, "King", "Hamlet")).await.assert_error(409, Some("uniqueness"));
    }
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn post_with_a_deactivated_accounts_address_reactivates_that_account() {
    let h = Harness::start().await;
    let othello = h.user_id("othello@zulip.example.com");
    let reply = h.post("/Users", &okta_user("othello@zulip.example.com", "Othello", "Back")).await;
    let body = reply.assert_status(201);
    assert_eq!(body["id"], othello.to_string());
    assert_eq!(body["active"], true);
    assert_eq!(body["name"]["familyName"], "Back");
    let writes = h.upstream_writes();
    assert_eq!(
        calls(&writes),
        vec![
            call("PATCH", format!("/api/v1/users/{othello}")),
            call("POST", format!("/api/v1/users/{othello}/reactivate"))
        ]
    );
    let zulip = h.fake.user(othello).unwrap();
    assert!(zulip.is_active);
    assert_eq!(zulip.full_name, "Othello Back");
    h.stop().await;

    let h = Harness::start_with(fake(), |c| c.realms[0].reactivate_on_create = false).await;
    h.post("/Users", &okta_user("othello@zulip.example.com", "Othello", "Back"))
        .await
        .assert_error(409, Some("uniqueness"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn post_rejects_bad_bodies_before_any_upstream_call() {
    let h = Harness::start().await;
    let cases = [
        (
            json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"name":{"givenName":"A","familyName":"B"}}),
            "invalidValue",
        ),
        (json!({"userName":"not-an-email","name":{"formatted":"X"}}), "invalidValue"),
        (json!({"not":"a scim resource"}), "invalidValue"),
        (json!({"userName":"a@zulip.example.com","name":{"formatted":"X"},"active":"maybe"}), "invalidValue"),
    ];
    for (body, scim_type) in cases {
        h.post("/Users", &body).await.assert_error(400, Some(scim_type));
    }
    let reply = h.raw(Method::POST, "/Users", &[("content-type", "application/json")], "{not json").await;
    reply.assert_error(400, Some("invalidSyntax"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn media_types_and_body_limits() {
    let h = Harness::start().await;
    let body = okta_user("json@zulip.example.com", "Plain", "Json").to_string();
    let reply = h
        .raw(Method::POST, "/Users", &[("content-type", "application/json; charset=utf-8")], body.clone())
        .await;
    reply.assert_status(201);
    assert_eq!(reply.header("content-type"), Some("application/scim+json"));
    let reply = h.raw(Method::POST, "/Users", &[("content-type", "text/plain")], body).await;
    reply.assert_error(415, None);
    let huge =
        format!("{{\"userName\":\"big@zulip.example.com\",\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let reply = h.raw(Method::POST, "/Users", &[("content-type", "application/scim+json")], huge).await;
    reply.assert_error(413, None);
    h.stop().await;
}

#[tokio::test]
async fn entra_tenant_url_with_flag_and_trailing_slash_works() {
    let h = Harness::start().await;
    let url = format!(
        "http://{}/scim/v2/Users/?aadOptscim062020&filter={}",
        h.addr,
        percent("userName eq \"5e0c1f3a-7d0b-4c1e-9a52-1f0c2b7d9e44\"")
    );
    let reply = crate::support::Reply::from(h.http.get(url).bearer_auth(TOKEN).send().await.unwrap()).await;
    let body = reply.assert_status(200);
    assert_eq!(body["totalResults"], 0);
    assert_eq!(body["Resources"], json!([]));
    h.stop().await;
}

#[tokio::test]
async fn put_updates_name_and_role_and_keeps_what_it_omits() {
    let h = Harness::start().await;
    let iago = h.user_id("iago@zulip.example.com");
    let mut current = h.get(&format!("/Users/{iago}")).await.body;
    current["name"] = json!({"givenName":"Iago","familyName":"Renamed"});
    current["displayName"] = json!("Iago Admin"); // stale, as Okta re-sends it
    current.as_object_mut().unwrap().remove("role");
    let reply = h.put(&format!("/Users/{iago}"), &current).await;
    let body = reply.assert_status(200);
    assert_eq!(body["name"]["familyName"], "Renamed");
    assert_eq!(body["role"], "administrator", "a PUT without role never demotes");
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("PATCH", format!("/api/v1/users/{iago}"))]);
    assert_eq!(writes[0].param("full_name"), Some("Iago Renamed"));
    assert_eq!(writes[0].param("role"), None);
    assert_eq!(h.fake.user(iago).unwrap().role, 200);
    // Nothing changed: nothing sent.
    h.put(&format!("/Users/{iago}"), &body.clone()).await.assert_status(200);
    assert!(h.upstream_writes().is_empty());
    // userName is required in a PUT.
    h.put(&format!("/Users/{iago}"), &json!({"name":{"formatted":"X"}}))
        .await
        .assert_error(400, Some("invalidValue"));
    h.stop().await;
}

#[tokio::test]
async fn okta_patch_deactivates_and_reactivates() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let reply = h
        .patch(&format!("/Users/{hamlet}"), &patch_op(json!([{"op":"replace","value":{"active":false}}])))
        .await;
    assert_eq!(reply.assert_status(200)["active"], false);
    assert_eq!(calls(&h.upstream_writes()), vec![call("DELETE", format!("/api/v1/users/{hamlet}"))]);
    assert!(!h.fake.user(hamlet).unwrap().is_active);
    // Still visible, as Okta's CRUD test requires.
    assert_eq!(h.get(&format!("/Users/{hamlet}")).await.assert_status(200)["active"], false);
    let reply = h
        .patch(&format!("/Users/{hamlet}"), &patch_op(json!([{"op":"replace","value":{"active":true}}])))
        .await;
    assert_eq!(reply.assert_status(200)["active"], true);
    assert_eq!(calls(&h.upstream_writes()), vec![call("POST", format!("/api/v1/users/{hamlet}/reactivate"))]);
    assert!(h.fake.user(hamlet).unwrap().is_active);
    h.stop().await;
}

#[tokio::test]
async fn entra_patch_dialects_with_and_without_the_flag() {
    let h = Harness::start_with(fake(), |c| c.realms[0].name_formatted_included = true).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    // Legacy (no aadOptscim062020): capitalised op, string boolean.
    let reply = h.patch(&path, &patch_op(json!([{"op":"Replace","path":"active","value":"False"}]))).await;
    assert_eq!(reply.assert_status(200)["active"], false);
    assert_eq!(calls(&h.upstream_writes()), vec![call("DELETE", format!("/api/v1/users/{hamlet}"))]);
    let reply = h.patch(&path, &patch_op(json!([{"op":"Replace","path":"active","value":"True"}]))).await;
    assert_eq!(reply.assert_status(200)["active"], true);
    h.upstream();
    // Flag on: one path-less replace with dotted keys, one attribute per call to Zulip.
    let reply = h
        .patch(&path, &patch_op(json!([{"op":"replace","value":{"name.formatted":"Prince Hamlet","displayName":"Prince Hamlet"}}])))
        .await;
    assert_eq!(reply.assert_status(200)["name"]["formatted"], "Prince Hamlet");
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("PATCH", format!("/api/v1/users/{hamlet}"))]);
    assert_eq!(writes[0].param("full_name"), Some("Prince Hamlet"));
    // `Add` on a single-valued attribute is a replace.
    let reply = h.patch(&path, &patch_op(json!([{"op":"Add","path":"displayName","value":"Hamlet"}]))).await;
    assert_eq!(reply.assert_status(200)["displayName"], "Hamlet");
    assert_eq!(h.fake.user(hamlet).unwrap().full_name, "Hamlet");
    h.stop().await;
}

#[tokio::test]
async fn patch_user_name_changes_the_address_with_new_email() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let reply = h
        .patch(
            &format!("/Users/{hamlet}"),
            &patch_op(json!([{"op":"replace","path":"userName","value":"prince@zulip.example.com"}])),
        )
        .await;
    assert_eq!(reply.assert_status(200)["userName"], "prince@zulip.example.com");
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("PATCH", format!("/api/v1/users/{hamlet}"))]);
    assert_eq!(writes[0].param("new_email"), Some("prince@zulip.example.com"));
    assert_eq!(h.fake.user(hamlet).unwrap().delivery_email, "prince@zulip.example.com");
    let found = h.get(&filter("userName eq \"prince@zulip.example.com\"")).await.body;
    assert_eq!(found["totalResults"], 1);
    // Taken by someone else: 409 before any call.
    h.patch(
        &format!("/Users/{hamlet}"),
        &patch_op(json!([{"op":"replace","path":"userName","value":"iago@zulip.example.com"}])),
    )
    .await
    .assert_error(409, Some("uniqueness"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn the_work_email_is_the_address_in_every_patch_form() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    let forms = [
        // Entra (flag on): its own operation for the value path.
        json!([{"op":"replace","path":"emails[type eq \"work\"].value","value":"a1@zulip.example.com"}]),
        // Entra legacy: `Add`, capitalised.
        json!([{"op":"Add","path":"emails[type eq \"work\"].value","value":"a2@zulip.example.com"}]),
        json!([{"op":"replace","path":"emails[primary eq true].value","value":"a3@zulip.example.com"}]),
        // Path-less with the value path as a key, next to another attribute.
        json!([{"op":"replace","value":{"emails[type eq \"work\"].value":"a4@zulip.example.com","displayName":"Prince Hamlet"}}]),
        // A whole emails value.
        json!([{"op":"replace","path":"emails","value":[{"value":"a5@zulip.example.com","type":"work","primary":true}]}]),
        // `add` of a new primary: the old address is the one it replaces.
        json!([{"op":"add","path":"emails","value":[{"value":"a6@zulip.example.com","type":"work","primary":true}]}]),
        // userName and the work e-mail together, agreeing.
        json!([{"op":"replace","path":"userName","value":"a7@zulip.example.com"},
               {"op":"replace","path":"emails[type eq \"work\"].value","value":"a7@zulip.example.com"}]),
    ];
    for (i, ops) in forms.into_iter().enumerate() {
        let address = format!("a{}@zulip.example.com", i + 1);
        let reply = h.patch(&path, &patch_op(ops)).await;
        let body = reply.assert_status(200);
        assert_eq!(body["userName"], address.as_str(), "form {i}");
        assert_eq!(body["emails"], json!([{"value": address, "type": "work", "primary": true}]), "form {i}");
        let writes = h.upstream_writes();
        assert_eq!(
            calls(&writes),
            vec![call("PATCH", format!("/api/v1/users/{hamlet}"))],
            "form {i}: one call"
        );
        assert_eq!(writes[0].param("new_email"), Some(address.as_str()), "form {i}");
        assert_eq!(h.fake.user(hamlet).unwrap().delivery_email, address);
    }
    // The same address as now: nothing to do, no call.
    h.patch(
        &path,
        &patch_op(
            json!([{"op":"replace","path":"emails[type eq \"work\"].value","value":"A7@zulip.example.com"}]),
        ),
    )
    .await
    .assert_status(200);
    assert!(h.upstream_writes().is_empty());
    // Taken by another account: 409, as for userName.
    h.patch(&path, &patch_op(json!([{"op":"replace","path":"emails[type eq \"work\"].value","value":"iago@zulip.example.com"}])))
        .await
        .assert_error(409, Some("uniqueness"));
    // userName and the work e-mail disagree: 400 naming both, nothing applied.
    let reply = h
        .patch(
            &path,
            &patch_op(json!([
            {"op":"replace","path":"userName","value":"b1@zulip.example.com"},
            {"op":"replace","path":"displayName","value":"Someone Else"},
            {"op":"replace","path":"emails[type eq \"work\"].value","value":"b2@zulip.example.com"}])),
        )
        .await;
    reply.assert_error(400, Some("invalidValue"));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("b1@zulip.example.com") && detail.contains("b2@zulip.example.com"), "{detail}");
    // A second address Zulip cannot hold: 400; removing the address: 400 mutability.
    h.patch(
        &path,
        &patch_op(
            json!([{"op":"add","path":"emails","value":[{"value":"h@home.example.com","type":"home"}]}]),
        ),
    )
    .await
    .assert_error(400, Some("invalidValue"));
    h.patch(&path, &patch_op(json!([{"op":"remove","path":"emails"}])))
        .await
        .assert_error(400, Some("mutability"));
    assert!(h.upstream_writes().is_empty(), "refusals call nothing");
    assert_eq!(h.fake.user(hamlet).unwrap().full_name, "Prince Hamlet");
    h.stop().await;
}

#[tokio::test]
async fn put_and_post_take_the_address_from_emails_too() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    // PUT whose userName and primary e-mail agree: one PATCH with new_email.
    let body = json!({"userName":"prince@zulip.example.com","emails":[{"value":"prince@zulip.example.com","type":"work","primary":true}]});
    let reply = h.call(Method::PUT, &format!("/Users/{hamlet}"), Some(&body)).await;
    assert_eq!(reply.assert_status(200)["userName"], "prince@zulip.example.com");
    assert_eq!(h.upstream_writes()[0].param("new_email"), Some("prince@zulip.example.com"));
    // Disagreeing: 400 naming both, before any call.
    let body = json!({"userName":"prince@zulip.example.com","emails":[{"value":"other@zulip.example.com","primary":true}]});
    let reply = h.call(Method::PUT, &format!("/Users/{hamlet}"), Some(&body)).await;
    reply.assert_error(400, Some("invalidValue"));
    assert!(reply.body["detail"].as_str().unwrap().contains("other@zulip.example.com"));
    let mut post = okta_user("kim@zulip.example.com", "Kim", "Lee");
    post["emails"] = json!([{"value":"kim.lee@zulip.example.com","type":"work","primary":true}]);
    h.post("/Users", &post).await.assert_error(400, Some("invalidValue"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn ignore_unmapped_attributes_accepts_and_drops_what_zulip_cannot_hold() {
    let h = Harness::start_with(fake(), |c| c.realms[0].ignore_unmapped_attributes = true).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    let reply = h
        .patch(&path, &patch_op(json!([
            {"op":"add","path":"emails","value":[{"value":"h@home.example.com","type":"home"}]},
            {"op":"Add","path":"nickName","value":"Ham"},
            {"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter":"C1","displayName":"Prince Hamlet"}}])))
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["displayName"], "Prince Hamlet");
    assert!(body.get("nickName").is_none());
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("PATCH", format!("/api/v1/users/{hamlet}"))]);
    assert_eq!(writes[0].param("full_name"), Some("Prince Hamlet"));
    assert_eq!(writes[0].param("new_email"), None);
    // Without the option, the same nickName is a clear 400.
    let strict = Harness::start().await;
    strict
        .patch(&path, &patch_op(json!([{"op":"Add","path":"nickName","value":"Ham"}])))
        .await
        .assert_error(400, Some("invalidPath"));
    strict.stop().await;
    h.stop().await;
}

#[tokio::test]
async fn email_change_on_an_old_zulip_is_a_clear_error() {
    let h = Harness::start_with(fake().feature_level(300), |_| {}).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let reply = h
        .patch(
            &format!("/Users/{hamlet}"),
            &patch_op(json!([{"op":"replace","path":"userName","value":"prince@zulip.example.com"}])),
        )
        .await;
    reply.assert_error(400, Some("mutability"));
    assert!(reply.body["detail"].as_str().unwrap().contains("313"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn patch_role_and_bad_role() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    for (role, api) in [
        ("owner", "100"),
        ("administrator", "200"),
        ("moderator", "300"),
        ("guest", "600"),
        ("member", "400"),
    ] {
        let reply = h.patch(&path, &patch_op(json!([{"op":"replace","path":"role","value":role}]))).await;
        assert_eq!(reply.assert_status(200)["role"], role);
        let writes = h.upstream_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].param("role"), Some(api));
    }
    h.patch(&path, &patch_op(json!([{"op":"replace","path":"role","value":"admin"}])))
        .await
        .assert_error(400, Some("invalidValue"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn delete_deactivates_and_the_user_stays_visible_inactive() {
    let h = Harness::start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let reply = h.delete(&format!("/Users/{hamlet}")).await;
    assert_eq!(reply.status.as_u16(), 204);
    assert!(reply.raw.is_empty());
    assert_eq!(calls(&h.upstream_writes()), vec![call("DELETE", format!("/api/v1/users/{hamlet}"))]);
    assert_eq!(h.get(&format!("/Users/{hamlet}")).await.assert_status(200)["active"], false);
    // Idempotent.
    assert_eq!(h.delete(&format!("/Users/{hamlet}")).await.status.as_u16(), 204);
    assert!(h.upstream_writes().is_empty());
    h.delete("/Users/999999").await.assert_error(404, None);
    h.stop().await;

    let h = Harness::start_with(fake(), |c| c.realms[0].user_delete = UserDelete::Reject).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.delete(&format!("/Users/{hamlet}")).await.assert_error(400, None);
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn the_service_account_cannot_be_deactivated_over_scim() {
    let h = Harness::start().await;
    let me = h.user_id(scim_sidecar::demo::DEMO_SERVICE_EMAIL);
    h.patch(&format!("/Users/{me}"), &patch_op(json!([{"op":"replace","value":{"active":false}}])))
        .await
        .assert_error(400, Some("mutability"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn hidden_addresses_are_never_matched_wrongly() {
    let h = Harness::start_with(
        fake().with_user(FakeUser::new("hidden@zulip.example.com", "Hidden Person").visibility(4)),
        |_| {},
    )
    .await;
    let hidden = h.user_id("hidden@zulip.example.com");
    let reply = h.get(&format!("/Users/{hidden}")).await;
    let body = reply.assert_status(200);
    assert_ne!(body["userName"], "hidden@zulip.example.com", "the sidecar cannot see it");
    assert!(body.get("emails").is_none());
    // A lookup by the real address finds nothing (it cannot be resolved) ...
    assert_eq!(h.get(&filter("userName eq \"hidden@zulip.example.com\"")).await.body["totalResults"], 0);
    // ... and creating it is refused by Zulip: a clear error that says why, never a duplicate.
    let reply = h.post("/Users", &okta_user("hidden@zulip.example.com", "Hidden", "Person")).await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.raw);
    assert!(reply.body["detail"].as_str().unwrap().contains("hide their address"), "{}", reply.raw);
    assert_eq!(h.fake.users().iter().filter(|u| u.delivery_email == "hidden@zulip.example.com").count(), 1);
    // Once the sidecar sets the address itself, it knows it.
    let reply = h
        .patch(
            &format!("/Users/{hidden}"),
            &patch_op(json!([{"op":"replace","path":"userName","value":"hidden2@zulip.example.com"}])),
        )
        .await;
    assert_eq!(reply.assert_status(200)["userName"], "hidden2@zulip.example.com");
    assert_eq!(h.get(&filter("userName eq \"hidden2@zulip.example.com\"")).await.body["totalResults"], 1);
    h.stop().await;
}

#[tokio::test]
async fn upstream_failures_become_scim_errors() {
    let h = Harness::start().await;
    h.fake.fail_next(
        "GET",
        "/api/v1/users",
        Failure::Api { status: 500, code: "BAD_REQUEST".into(), msg: "Internal server error".into() },
    );
    h.get("/Users").await.assert_error(502, None);
    h.fake.fail_next("GET", "/api/v1/users", Failure::Html404);
    h.get("/Users").await.assert_error(502, None);
    // A reset on a non-idempotent call is not retried: its outcome is unknown.
    h.get("/Users").await.assert_status(200);
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.upstream();
    h.fake.fail_next("DELETE", &format!("/api/v1/users/{hamlet}"), Failure::Reset);
    let reply = h
        .patch(&format!("/Users/{hamlet}"), &patch_op(json!([{"op":"replace","value":{"active":false}}])))
        .await;
    reply.assert_error(502, None);
    // The sidecar looked before answering: the account is still active, and it says so
    // without claiming a request Zulip never answered cannot still land.
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("none when the sidecar read Zulip user") && detail.contains("may still apply"),
        "{detail}"
    );
    let deletes = h.upstream().into_iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(deletes, 1, "sent once, never repeated blindly");
    // Zulip's 429 becomes a SCIM 429 with Retry-After, and the sidecar holds back until then
    // (an unknown id is looked up in Zulip).
    h.fake.fail_next("GET", "/api/v1/users/99999", Failure::RateLimited { retry_after_secs: 28.7068 });
    let reply = h.get("/Users/99999").await;
    reply.assert_error(429, None);
    assert_eq!(reply.header("retry-after"), Some("29"));
    h.upstream();
    let again = h.get("/Users/99998").await;
    again.assert_error(429, None);
    assert!(again.header("retry-after").is_some());
    assert!(h.upstream().is_empty(), "nothing is sent while Zulip asked to wait");
    h.stop().await;
}

#[tokio::test]
async fn a_slow_read_is_retried_and_a_dead_zulip_is_504() {
    let h = Harness::start_with(fake(), |c| c.realms[0].upstream.timeout = Duration::from_millis(200)).await;
    h.fake.delay_next("GET", "/api/v1/users", Duration::from_secs(3));
    h.get("/Users").await.assert_status(200);
    assert_eq!(
        h.upstream().iter().filter(|r| r.path == "/api/v1/users").count(),
        2,
        "timed out once, retried once"
    );
    h.stop().await;

    let h = Harness::start_with(fake(), |c| c.realms[0].upstream.timeout = Duration::from_millis(100)).await;
    for _ in 0..10 {
        h.fake.fail_next("GET", "/api/v1/users", Failure::Hang);
    }
    h.get("/Users").await.assert_error(504, None);
    h.stop().await;
}

#[tokio::test]
async fn create_whose_outcome_is_unknown_is_resolved_by_looking() {
    let h = Harness::start().await;
    h.get("/Users").await.assert_status(200); // warm snapshot
    h.fake.fail_next("POST", "/api/v1/users", Failure::AfterApply(Box::new(Failure::Reset)));
    let reply = h.post("/Users", &okta_user("lost@zulip.example.com", "Lost", "Reply")).await;
    let body = reply.assert_status(201);
    assert_eq!(body["userName"], "lost@zulip.example.com");
    assert_eq!(
        h.fake.users().iter().filter(|u| u.delivery_email == "lost@zulip.example.com").count(),
        1,
        "never a duplicate"
    );
    h.stop().await;
}

#[tokio::test]
async fn readiness_and_liveness() {
    let h = Harness::start().await;
    let live = h.http.get(format!("http://{}/livez", h.addr)).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    let ready = h.http.get(format!("http://{}/readyz", h.addr)).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    h.stop().await;

    // A realm whose upstream never answered is not ready.
    let sidecar = BareSidecar::start(url::Url::parse("http://127.0.0.1:9").unwrap(), |_| {}).await;
    let ready = reqwest::get(format!("http://{}/readyz", sidecar.addr)).await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.unwrap().contains("demo"));
    sidecar.stop().await;
}

#[tokio::test]
async fn inflight_request_completes_after_shutdown_begins() {
    let mut h = Harness::start().await;
    h.fake.delay_next("GET", "/api/v1/users", Duration::from_millis(500));
    let http = h.http.clone();
    let url = h.url("/Users");
    let pending =
        tokio::spawn(
            async move { http.get(url).bearer_auth(TOKEN).send().await.map(|r| r.status().as_u16()) },
        );
    // Wait until the request has reached Zulip, then begin shutdown.
    while h.fake.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    h.begin_shutdown();
    assert_eq!(pending.await.unwrap().unwrap(), 200);
    let fake = h.fake.clone();
    h.join().await;
    fake.shutdown().await;
}

// === create_guests_without_streams ===

fn guest_user(email: &str) -> Value {
    let mut body = okta_user(email, "Gus", "Guest");
    body["role"] = json!("guest");
    body
}

async fn without_streams_for_guests() -> Harness {
    let h = Harness::start_with(fake(), |c| c.realms[0].create_guests_without_streams = true).await;
    h.get("/Users").await.assert_status(200); // warm snapshot: only the creation's calls below
    h.upstream();
    h
}

#[tokio::test]
async fn a_guest_created_with_create_guests_without_streams_has_no_channels() {
    let h = without_streams_for_guests().await;
    let reply = h.post("/Users", &guest_user("gus@zulip.example.com")).await;
    let body = reply.assert_status(201).clone();
    assert_eq!(body["role"], "guest");
    let id: u64 = body["id"].as_str().unwrap().parse().unwrap();
    let upstream = h.upstream();
    assert_eq!(
        calls(&upstream),
        vec![
            call("POST", "/api/v1/users"),
            call("PATCH", format!("/api/v1/users/{id}")),
            call("GET", "/api/v1/streams"),
            call("DELETE", "/api/v1/users/me/subscriptions"),
        ]
    );
    assert_eq!(upstream[1].param("role"), Some("600"));
    let lookup: Vec<(&str, &str)> = upstream[2].query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        lookup,
        [("include_public", "false"), ("include_subscribed", "false"), ("include_default", "true")],
        "only the default channels"
    );
    assert_eq!(upstream[3].param("subscriptions"), Some(r#"["general", "random"]"#));
    assert_eq!(upstream[3].param("principals"), Some(format!("[{id}]").as_str()));
    let zulip = h.fake.user(id).unwrap();
    assert_eq!((zulip.role, zulip.is_active), (600, true));
    assert!(h.fake.user_channels(id).is_empty(), "{:?}", h.fake.user_channels(id));

    // A member created the same way keeps the default channels, with one call.
    let member = h.post("/Users", &okta_user("mem@zulip.example.com", "Mem", "Ber")).await;
    let member_id: u64 = member.assert_status(201)["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(calls(&h.upstream()), vec![call("POST", "/api/v1/users")]);
    assert_eq!(h.fake.user_channels(member_id), ["general", "random"]);

    // Only at creation, as in Zulip: a later change to guest keeps the channels.
    let reply = h
        .patch(
            &format!("/Users/{member_id}"),
            &patch_op(json!([{"op":"replace","path":"role","value":"guest"}])),
        )
        .await;
    assert_eq!(reply.assert_status(200)["role"], "guest");
    assert_eq!(calls(&h.upstream()), vec![call("PATCH", format!("/api/v1/users/{member_id}"))]);
    assert_eq!(h.fake.user_channels(member_id), ["general", "random"]);
    h.stop().await;
}

#[tokio::test]
async fn with_the_option_off_a_new_guest_keeps_the_default_channels() {
    let h = Harness::start().await;
    let created = h.post("/Users", &guest_user("gus@zulip.example.com")).await.assert_status(201).clone();
    let id: u64 = created["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        calls(&h.upstream_writes()),
        vec![call("POST", "/api/v1/users"), call("PATCH", format!("/api/v1/users/{id}"))]
    );
    assert_eq!(h.fake.user(id).unwrap().role, 600);
    assert_eq!(h.fake.user_channels(id), ["general", "random"]);
    h.stop().await;
}

#[tokio::test]
async fn a_failed_unsubscribe_says_the_guest_exists_still_subscribed() {
    let h = without_streams_for_guests().await;
    h.fake.fail_next(
        "DELETE",
        "/api/v1/users/me/subscriptions",
        Failure::Api { status: 500, code: "BAD_REQUEST".into(), msg: "Internal server error".into() },
    );
    let reply = h.post("/Users", &guest_user("gus@zulip.example.com")).await;
    reply.assert_error(502, None);
    let id = h.user_id("gus@zulip.example.com");
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("created Zulip user {id} as a guest"))
            && detail.contains("still subscribed to the organization's default channels"),
        "{detail}"
    );
    assert_eq!(
        calls(&h.upstream()).last(),
        Some(&call("DELETE", "/api/v1/users/me/subscriptions")),
        "sent once: a 500 is not retried"
    );
    // Zulip holds what the detail says.
    let zulip = h.fake.user(id).unwrap();
    assert_eq!((zulip.role, zulip.is_active), (600, true));
    assert_eq!(h.fake.user_channels(id), ["general", "random"]);
    // The IdP's retry finds the address taken (documented): 409, nothing written.
    h.post("/Users", &guest_user("gus@zulip.example.com")).await.assert_error(409, Some("uniqueness"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}
