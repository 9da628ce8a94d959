//! User `externalId`, stored in a Zulip custom profile field (`external_id_field`): the field
//! is found or created, values round-trip through every write, filters find them, changes
//! made in Zulip reach SCIM, and a field deleted in Zulip is recreated rather than half-used.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use fake_zulip::{FakeProfileField, FakeUser, FakeZulipBuilder};
use scim_sidecar::app::App;
use scim_sidecar::config::Config;
use scim_sidecar::demo::demo_config;
use scim_sidecar::provision::{NotReady, Realm};

use crate::support::{call, calls, fake, BareSidecar, Harness, TOKEN};

const LABEL: &str = "SCIM external ID";
const WITHIN: Duration = Duration::from_secs(2);

fn storing(config: &mut Config) {
    config.realms[0].external_id_field = Some(LABEL.into());
}

fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":ops})
}

fn realm(h: &Harness) -> Arc<Realm> {
    h.app.realms()[0].clone()
}

/// The fake's field labelled [`LABEL`].
fn field(h: &Harness) -> FakeProfileField {
    h.fake.profile_fields().into_iter().find(|f| f.name == LABEL).expect("the externalId field exists")
}

/// The `profile_data` form value of a recorded `PATCH /users/{id}`, parsed.
fn profile_data(form: &[(String, String)]) -> Option<Value> {
    form.iter().find(|(k, _)| k == "profile_data").map(|(_, v)| serde_json::from_str(v).expect("json"))
}

fn okta_user(email: &str, external_id: &str) -> Value {
    json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":email,
        "name":{"givenName":"Kim","familyName":"Lee"},"externalId":external_id,"active":true})
}

async fn start(builder: FakeZulipBuilder) -> Harness {
    Harness::start_with(builder, storing).await
}

#[tokio::test]
async fn readiness_creates_an_admin_only_short_text_field_once() {
    let h = start(fake()).await;
    let created = field(&h);
    assert_eq!(created.field_type, 1, "short text");
    assert!(!created.editable_by_user, "only administrators may edit it");
    assert!(created.hint.contains("SCIM"), "{created:?}");
    assert_eq!(h.fake.profile_fields().iter().filter(|f| f.name == LABEL).count(), 1);

    // A second readiness check (a restart) finds it instead of creating another.
    realm(&h).check_ready().await.expect("ready again");
    assert_eq!(
        calls(&h.upstream()),
        [
            call("GET", "/api/v1/server_settings"),
            call("GET", "/api/v1/users/me"),
            call("GET", "/api/v1/realm/profile_fields"),
        ]
    );
    assert_eq!(field(&h).id, created.id);
    h.stop().await;
}

#[tokio::test]
async fn an_existing_field_is_used_as_it_is() {
    let h = start(fake().with_profile_field("Phone number", 1).with_profile_field(LABEL, 1)).await;
    let fields = h.fake.profile_fields();
    assert_eq!(fields.len(), 2, "nothing created: {fields:?}");
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.fake.set_profile_value(hamlet, field(&h).id, Some("00u-hamlet".into()));
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    assert_eq!(body["externalId"], "00u-hamlet");
    let loads: Vec<_> = h.upstream().into_iter().filter(|r| r.path == "/api/v1/users").collect();
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].param("include_custom_profile_fields"), Some("true"));
    h.stop().await;
}

#[tokio::test]
async fn a_field_of_another_type_keeps_the_realm_unready_with_a_clear_reason() {
    let fake = fake().with_profile_field(LABEL, 2).start().await.expect("fake");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config =
        demo_config(listener.local_addr().expect("addr"), fake.base_url(), TOKEN).expect("config");
    storing(&mut config);
    let app = App::from_config(&config).expect("app");
    let err = app.realms()[0].check_ready().await.expect_err("not ready");
    let NotReady::Config(reason) = &err else { panic!("{err:?}") };
    assert!(reason.contains("long text") && reason.contains("short text"), "{reason}");
    assert!(!app.realms()[0].is_ready());
    assert_eq!(fake.profile_fields().len(), 1, "the admin's field is left alone");
    drop(listener);

    // Requests meanwhile: 503 naming the problem, never a user created without its externalId.
    let sidecar = BareSidecar::start(fake.base_url(), storing).await;
    let http = reqwest::Client::new();
    let reply = crate::support::Reply::from(
        http.post(format!("http://{}/scim/v2/Users", sidecar.addr))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(okta_user("kim@zulip.example.com", "00u1").to_string())
            .send()
            .await
            .expect("answer"),
    )
    .await;
    reply.assert_error(503, None);
    assert!(reply.body["detail"].as_str().unwrap().contains("short text"), "{}", reply.raw);
    assert!(fake.requests().iter().all(|r| r.method == "GET"), "nothing written");
    sidecar.stop().await;
    fake.shutdown().await;
}

#[tokio::test]
async fn create_stores_external_id_with_the_role_in_one_patch() {
    let h = start(fake()).await;
    let field_id = field(&h).id;
    let mut body = okta_user("kim@zulip.example.com", "00u1abcdEFGH");
    body["role"] = json!("moderator");
    let reply = h.post("/Users", &body).await;
    let created = reply.assert_status(201).clone();
    assert_eq!(created["externalId"], "00u1abcdEFGH");
    let id: u64 = created["id"].as_str().unwrap().parse().unwrap();

    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), [call("POST", "/api/v1/users"), call("PATCH", format!("/api/v1/users/{id}"))]);
    assert_eq!(writes[1].param("role"), Some("300"));
    assert_eq!(profile_data(&writes[1].form), Some(json!([{"id": field_id, "value": "00u1abcdEFGH"}])));
    assert_eq!(h.fake.profile_value(id, field_id).as_deref(), Some("00u1abcdEFGH"));

    // Read back, by id and by filter, from the snapshot.
    let got = h.get(&format!("/Users/{id}")).await.assert_status(200).clone();
    assert_eq!(got["externalId"], "00u1abcdEFGH");
    assert_eq!(got["meta"]["version"], created["meta"]["version"]);
    let list = h.get(&format!("/Users?filter={}", percent("externalId eq \"00u1abcdEFGH\""))).await;
    let list = list.assert_status(200);
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["id"], id.to_string());
    // caseExact: another case is another id.
    let list = h.get(&format!("/Users?filter={}", percent("externalId eq \"00U1ABCDEFGH\""))).await;
    assert_eq!(list.assert_status(200)["totalResults"], 0);
    assert!(h.upstream().is_empty(), "reads come from the snapshot");
    h.stop().await;
}

#[tokio::test]
async fn a_member_with_an_external_id_costs_two_calls_and_without_one() {
    let h = start(fake()).await;
    h.post("/Users", &okta_user("kim@zulip.example.com", "00u1")).await.assert_status(201);
    assert_eq!(h.upstream_writes().len(), 2, "POST /users, then PATCH profile_data");
    let mut plain = okta_user("lee@zulip.example.com", "");
    plain.as_object_mut().unwrap().remove("externalId");
    let created = h.post("/Users", &plain).await.assert_status(201).clone();
    assert!(created.get("externalId").is_none());
    assert_eq!(calls(&h.upstream_writes()), [call("POST", "/api/v1/users")]);
    h.stop().await;
}

#[tokio::test]
async fn patch_and_put_set_replace_and_clear_external_id() {
    let h = start(fake()).await;
    let field_id = field(&h).id;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");

    // Entra: path form.
    let reply =
        h.patch(&path, &patch_op(json!([{"op":"Replace","path":"externalId","value":"ana-7"}]))).await;
    assert_eq!(reply.assert_status(200)["externalId"], "ana-7");
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), [call("PATCH", format!("/api/v1/users/{hamlet}"))]);
    assert_eq!(profile_data(&writes[0].form), Some(json!([{"id": field_id, "value": "ana-7"}])));
    assert_eq!(writes[0].form.len(), 1, "only what changed: {:?}", writes[0].form);

    // Okta: path-less, with a name change in the same PATCH → one call.
    let ops = json!([{"op":"replace","value":{"externalId":"00u9","name.givenName":"Prince"}}]);
    let reply = h.patch(&path, &patch_op(ops)).await;
    let body = reply.assert_status(200);
    assert_eq!(
        (body["externalId"].as_str(), body["displayName"].as_str()),
        (Some("00u9"), Some("Prince Hamlet"))
    );
    let writes = h.upstream_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].param("full_name"), Some("Prince Hamlet"));
    assert_eq!(profile_data(&writes[0].form), Some(json!([{"id": field_id, "value": "00u9"}])));

    // The same value again costs nothing.
    let reply = h.patch(&path, &patch_op(json!([{"op":"replace","path":"externalId","value":"00u9"}]))).await;
    reply.assert_status(200);
    assert!(h.upstream_writes().is_empty());

    // PUT replaces it; a PUT without it keeps it.
    let put = json!({"userName":"hamlet@zulip.example.com","externalId":"put-1"});
    assert_eq!(h.put(&path, &put).await.assert_status(200)["externalId"], "put-1");
    assert_eq!(h.fake.profile_value(hamlet, field_id).as_deref(), Some("put-1"));
    let put = json!({"userName":"hamlet@zulip.example.com"});
    assert_eq!(h.put(&path, &put).await.assert_status(200)["externalId"], "put-1");
    h.upstream();

    // Remove clears the field in Zulip.
    let reply = h.patch(&path, &patch_op(json!([{"op":"remove","path":"externalId"}]))).await;
    assert!(reply.assert_status(200).get("externalId").is_none(), "{}", reply.raw);
    let writes = h.upstream_writes();
    assert_eq!(profile_data(&writes[0].form), Some(json!([{"id": field_id, "value": null}])));
    assert_eq!(h.fake.profile_value(hamlet, field_id), None);
    h.stop().await;
}

#[tokio::test]
async fn values_the_field_cannot_hold_are_refused_before_any_call() {
    let h = start(fake()).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let too_long = "x".repeat(51);
    h.post("/Users", &okta_user("kim@zulip.example.com", &too_long))
        .await
        .assert_error(400, Some("invalidValue"));
    let ops = json!([{"op":"replace","path":"externalId","value":too_long}]);
    h.patch(&format!("/Users/{hamlet}"), &patch_op(ops)).await.assert_error(400, Some("invalidValue"));
    let ops = json!([{"op":"replace","path":"externalId","value":{"id":"x"}}]);
    h.patch(&format!("/Users/{hamlet}"), &patch_op(ops)).await.assert_error(400, Some("invalidValue"));
    assert!(h.upstream_writes().is_empty());
    assert!(h.fake.user_by_email("kim@zulip.example.com").is_none());
    h.stop().await;
}

#[tokio::test]
async fn without_the_option_external_id_is_ignored_and_no_field_is_made() {
    let h = Harness::start().await;
    let created =
        h.post("/Users", &okta_user("kim@zulip.example.com", "00u1")).await.assert_status(201).clone();
    assert!(created.get("externalId").is_none());
    assert_eq!(calls(&h.upstream_writes()), [call("POST", "/api/v1/users")]);
    assert!(h.fake.profile_fields().is_empty());
    let list = h.get(&format!("/Users?filter={}", percent("externalId eq \"00u1\""))).await;
    assert_eq!(list.assert_status(200)["totalResults"], 0);
    assert!(h.upstream().iter().all(|r| r.param("include_custom_profile_fields").is_none()));
    h.stop().await;
}

#[tokio::test]
async fn a_field_deleted_in_zulip_is_recreated_on_the_next_write_without_events() {
    let h = start(fake()).await;
    let old = field(&h).id;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    h.patch(&path, &patch_op(json!([{"op":"replace","path":"externalId","value":"a"}])))
        .await
        .assert_status(200);
    h.fake.delete_profile_field(old);
    h.upstream();

    let reply = h.patch(&path, &patch_op(json!([{"op":"replace","path":"externalId","value":"b"}]))).await;
    assert_eq!(reply.assert_status(200)["externalId"], "b", "{}", reply.raw);
    let new = field(&h).id;
    assert_ne!(new, old);
    assert_eq!(h.fake.profile_value(hamlet, new).as_deref(), Some("b"));
    let writes = calls(&h.upstream_writes());
    assert_eq!(
        writes,
        [
            call("PATCH", format!("/api/v1/users/{hamlet}")),
            call("POST", "/api/v1/realm/profile_fields"),
            call("PATCH", format!("/api/v1/users/{hamlet}")),
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn live_changes_to_values_and_to_the_field_reach_scim() {
    let h = Harness::start_live(fake(), storing).await;
    let realm = realm(&h);
    let mut progress = realm.live_progress();
    let first = tokio::time::timeout(WITHIN, progress.wait_for(|p| p.live && p.queue_id.is_some()))
        .await
        .expect("live")
        .expect("task")
        .queue_id
        .clone();
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let old = field(&h).id;
    h.get("/Users").await.assert_status(200);

    // A value set in Zulip.
    h.fake.set_profile_value(hamlet, old, Some("set-in-zulip".into()));
    let newest = h.fake.event_queues().into_iter().find(|q| Some(&q.queue_id) == first.as_ref()).unwrap();
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.last_event_id >= newest.newest_event_id))
        .await
        .expect("applied")
        .expect("task");
    assert_eq!(h.get(&format!("/Users/{hamlet}")).await.assert_status(200)["externalId"], "set-in-zulip");

    // The field deleted in Zulip: the sidecar re-registers, reloads and recreates it.
    h.fake.delete_profile_field(old);
    tokio::time::timeout(
        WITHIN,
        progress.wait_for(|p| p.live && p.queue_id.is_some() && p.queue_id != first),
    )
    .await
    .expect("a new queue")
    .expect("task");
    let new = field(&h).id;
    assert_ne!(new, old);
    let body = h.get(&format!("/Users/{hamlet}")).await.assert_status(200).clone();
    assert!(body.get("externalId").is_none(), "Zulip deleted the values with the field: {body}");
    h.stop().await;
}

#[tokio::test]
async fn reactivation_on_create_sets_the_external_id() {
    let h =
        start(fake().with_user(FakeUser::new("gone@zulip.example.com", "Gone Person").deactivated())).await;
    let field_id = field(&h).id;
    let gone = h.user_id("gone@zulip.example.com");
    let reply = h.post("/Users", &okta_user("gone@zulip.example.com", "00u-gone")).await;
    let body = reply.assert_status(201);
    assert_eq!(
        (body["id"].as_str(), body["externalId"].as_str()),
        (Some(gone.to_string().as_str()), Some("00u-gone"))
    );
    assert_eq!(h.fake.profile_value(gone, field_id).as_deref(), Some("00u-gone"));
    h.stop().await;
}
