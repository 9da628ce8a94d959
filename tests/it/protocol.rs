//! The SCIM protocol surface through HTTP: discovery, projection, sorting, versioning, root
//! search and the error shapes of unknown endpoints and methods.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Harness, Reply, TOKEN};

fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn discovery_documents_need_no_upstream_and_refuse_writes() {
    let h = Harness::start().await;
    let spc = h.get("/ServiceProviderConfig").await;
    let body = spc.assert_status(200);
    assert_eq!(body["patch"]["supported"], true);
    assert_eq!(body["filter"]["supported"], true);
    assert_eq!(body["filter"]["maxResults"], 500);
    assert_eq!(body["etag"]["supported"], true);
    assert_eq!(body["sort"]["supported"], true);
    assert_eq!(body["bulk"]["supported"], false);
    assert_eq!(body["changePassword"]["supported"], false);
    assert_eq!(body["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let types = h.get("/ResourceTypes").await.body;
    let names: Vec<&str> =
        types["Resources"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["User", "Group"]);
    assert_eq!(h.get("/ResourceTypes/User").await.assert_status(200)["endpoint"], "/Users");
    h.get("/ResourceTypes/Widget").await.assert_error(404, None);
    let schemas = h.get("/Schemas").await.body;
    let ids: Vec<&str> =
        schemas["Resources"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    for urn in [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:core:2.0:Group",
        "urn:ietf:params:scim:schemas:core:2.0:ResourceType",
        "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
        "urn:ietf:params:scim:schemas:core:2.0:Schema",
    ] {
        assert!(ids.contains(&urn), "{urn} in {ids:?}");
    }
    let user = h.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").await.body;
    let emails = user["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "emails").unwrap();
    assert_eq!(emails["mutability"], "readWrite", "what is published is what is honoured: it is the address");
    h.get("/Schemas/urn:example:nothing").await.assert_error(404, None);
    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"] {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let reply = h.call(method.clone(), path, Some(&json!({}))).await;
            reply.assert_error(405, None);
            assert_eq!(reply.header("allow"), Some("GET"), "{method} {path}");
        }
    }
    assert!(h.upstream().is_empty(), "discovery makes no upstream call");
    h.stop().await;
}

#[tokio::test]
async fn unknown_endpoints_methods_and_unsupported_features() {
    let h = Harness::start().await;
    h.get("/Widgets").await.assert_error(404, None);
    h.get("/Users/1/extra").await.assert_error(404, None);
    let reply = h.call(Method::DELETE, "/Users", None).await;
    reply.assert_error(405, None);
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    h.post("/Bulk", &json!({})).await.assert_error(501, None);
    h.get("/Me").await.assert_error(501, None);
    h.stop().await;
}

#[tokio::test]
async fn attributes_and_excluded_attributes_shape_every_response() {
    let h = Harness::start().await;
    let id = h.user_id("hamlet@zulip.example.com");
    let only = h.get(&format!("/Users/{id}?attributes=userName,name.givenName")).await.body;
    let mut keys: Vec<&str> = only.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["id", "name", "schemas", "userName"]);
    assert_eq!(only["name"], json!({"givenName": "King"}));
    let without = h.get(&format!("/Users/{id}?excludedAttributes=emails,meta")).await.body;
    assert!(without.get("emails").is_none() && without.get("meta").is_none() && without.get("id").is_some());
    let list = h.get("/Users?attributes=userName&count=2").await.body;
    for r in list["Resources"].as_array().unwrap() {
        assert_eq!(r.as_object().unwrap().len(), 3, "{r}");
    }
    // Writes honour them too.
    let created = h
        .post(
            "/Users?attributes=userName",
            &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"proj@zulip.example.com","name":{"formatted":"Pro Jection"}}),
        )
        .await;
    assert_eq!(created.assert_status(201).as_object().unwrap().len(), 3);
    assert!(created.header("location").is_some());
    h.stop().await;
}

#[tokio::test]
async fn sorting_is_stable_and_validated() {
    let h = Harness::start().await;
    let asc = h.get("/Users?sortBy=userName&count=500").await.body;
    let names: Vec<String> = asc["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let desc = h.get("/Users?sortBy=userName&sortOrder=descending&count=500").await.body;
    let back: Vec<String> = desc["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_lowercase())
        .collect();
    sorted.reverse();
    assert_eq!(back, sorted);
    h.get("/Users?sortBy=shoeSize").await.assert_error(400, Some("invalidValue"));
    h.stop().await;
}

#[tokio::test]
async fn etags_guard_writes_and_save_reads() {
    let h = Harness::start().await;
    let id = h.user_id("hamlet@zulip.example.com");
    let first = h.get(&format!("/Users/{id}")).await;
    let etag = first.header("etag").unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(first.body["meta"]["version"], etag);
    // If-None-Match with the current version: 304, no body.
    let reply = Reply::from(
        h.http
            .get(h.url(&format!("/Users/{id}")))
            .bearer_auth(TOKEN)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status.as_u16(), 304);
    // A stale If-Match: 412 and nothing sent to Zulip.
    let patch = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Hamlet"}]});
    let stale = h
        .raw(
            Method::PATCH,
            &format!("/Users/{id}"),
            &[("if-match", "W/\"0000000000000000\""), ("content-type", "application/scim+json")],
            patch.to_string(),
        )
        .await;
    stale.assert_error(412, None);
    assert!(h.upstream_writes().is_empty());
    // The current one: applied, and the version changes with the content.
    let fresh = h
        .raw(
            Method::PATCH,
            &format!("/Users/{id}"),
            &[("if-match", &etag), ("content-type", "application/scim+json")],
            patch.to_string(),
        )
        .await;
    assert_eq!(fresh.assert_status(200)["displayName"], "Hamlet");
    assert_ne!(fresh.header("etag"), Some(etag.as_str()));
    h.stop().await;
}

#[tokio::test]
async fn root_search_spans_users_and_groups() {
    let h = Harness::start().await;
    let reply = h
        .post(
            "/.search",
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"displayName sw \"role:own\"","count":10}),
        )
        .await;
    let body = reply.assert_status(200);
    let types: Vec<&str> = body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Group"]);
    let all = h
        .post("/.search", &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}))
        .await
        .body;
    let kinds: Vec<Value> =
        all["Resources"].as_array().unwrap().iter().map(|r| r["meta"]["resourceType"].clone()).collect();
    assert!(kinds.contains(&json!("User")) && kinds.contains(&json!("Group")));
    h.post("/.search", &json!({"filter":"nosuch eq 1"})).await.assert_error(400, Some("invalidFilter"));
    let filtered = h
        .get(&format!("/Users?filter={}", percent("name.familyName co \"amle\" and not (active eq false)")))
        .await
        .body;
    assert_eq!(filtered["totalResults"], 1);
    h.stop().await;
}

#[tokio::test]
async fn metrics_count_scim_requests_and_upstream_calls_by_template() {
    let h = Harness::start().await;
    let id = h.user_id("hamlet@zulip.example.com");
    h.get("/Users").await.assert_status(200);
    h.patch(
        &format!("/Users/{id}"),
        &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Hamlet"}]}),
    )
    .await
    .assert_status(200);
    let text = h.http.get(format!("http://{}/metrics", h.addr)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("scim_requests_total"), "{text}");
    assert!(text.contains("list_users"), "{text}");
    assert!(text.contains("zulip_requests_total"), "{text}");
    assert!(
        text.contains("PATCH /users/{id}"),
        "upstream calls are labelled by template, never by id: {text}"
    );
    assert!(!text.contains(&format!("/users/{id}")), "{text}");
    // The realm's state, sampled at scrape time: ready, not followed live here, and the
    // snapshot's population (hamlet, iago, othello and the service account; bots excluded).
    assert!(text.contains(r#"scim_realm_ready{realm="demo"} 1"#), "{text}");
    assert!(text.contains(r#"scim_realm_live{realm="demo"} 0"#), "{text}");
    assert!(text.contains(r#"scim_realm_snapshot_users{realm="demo"} 4"#), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn http2_cleartext_is_served_too() {
    let h = Harness::start().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(h.url("/Users?count=1")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 200);
    h.stop().await;
}
