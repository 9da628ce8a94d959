//! `custom_profile_field_map`: SCIM attributes kept in Zulip custom profile fields — resolved
//! at readiness (or created), written in the one `PATCH /users/{id}`, read from the
//! snapshot, published per realm in discovery, filterable, sortable and projected, and kept
//! current by Zulip's events.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use fake_zulip::FakeZulipBuilder;
use scim_sidecar::app::App;
use scim_sidecar::config::Config;
use scim_sidecar::demo::demo_config;
use scim_sidecar::provision::{NotReady, Realm};

use crate::support::{call, calls, fake, Harness, TOKEN};

pub const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const WITHIN: Duration = Duration::from_secs(2);

/// The fields an Entra- or Okta-provisioned organization keeps (labels as an admin names
/// them), and the map that points at them.
pub fn with_fields(builder: FakeZulipBuilder) -> FakeZulipBuilder {
    builder
        .with_profile_field("Job title", 1)
        .with_profile_field("Department", 1)
        .with_profile_field("Employee number", 1)
        .with_profile_field("Work phone", 1)
        .with_profile_field("Manager", 6)
}

pub fn mapping(config: &mut Config) {
    let map = [
        ("title", "Job title"),
        (&format!("{ENT}:department") as &str, "Department"),
        (&format!("{ENT}:employeeNumber"), "Employee number"),
        ("phoneNumbers[type eq \"work\"].value", "Work phone"),
        (&format!("{ENT}:manager"), "Manager"),
    ];
    config.realms[0].custom_profile_field_map =
        map.iter().map(|(k, v)| (scim::catalog::OptionalAttr::parse(k).unwrap(), v.to_string())).collect();
}

fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn patch_op(ops: Value) -> Value {
    json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":ops})
}

fn field_id(h: &Harness, label: &str) -> u64 {
    h.fake.profile_fields().into_iter().find(|f| f.name == label).expect("field").id
}

/// `profile_data` of a recorded `PATCH /users/{id}`, as `{field id: value}`.
fn profile_data(form: &[(String, String)]) -> Value {
    let list: Value = form
        .iter()
        .find(|(k, _)| k == "profile_data")
        .map(|(_, v)| serde_json::from_str(v).unwrap())
        .unwrap();
    let mut out = serde_json::Map::new();
    for item in list.as_array().unwrap() {
        out.insert(item["id"].to_string(), item["value"].clone());
    }
    Value::Object(out)
}

async fn start() -> Harness {
    Harness::start_with(with_fields(fake()), mapping).await
}

#[tokio::test]
async fn values_are_written_in_the_one_patch_and_read_from_the_snapshot() {
    let h = start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let iago = h.user_id("iago@zulip.example.com");
    let path = format!("/Users/{hamlet}");
    let reply = h
        .patch(
            &path,
            &patch_op(json!([
                {"op":"replace","path":"emails[type eq \"work\"].value","value":"prince@zulip.example.com"},
                {"op":"replace","value":{"displayName":"Prince Hamlet","title":"Prince",
                    format!("{ENT}:department"):"Royalty", format!("{ENT}:employeeNumber"):"E17"}},
                {"op":"Add","path":"phoneNumbers[type eq \"work\"].value","value":"+45 1234"},
                {"op":"Add","path":"manager","value":[{"$ref":null,"value":iago.to_string()}]}])),
        )
        .await;
    let body = reply.assert_status(200).clone();
    assert_eq!(body["title"], "Prince");
    assert_eq!(body["phoneNumbers"], json!([{"type":"work","value":"+45 1234"}]));
    assert_eq!(body[ENT]["department"], "Royalty");
    assert_eq!(body[ENT]["employeeNumber"], "E17");
    assert_eq!(body[ENT]["manager"]["value"], iago.to_string());
    assert!(body["schemas"].as_array().unwrap().contains(&json!(ENT)), "{body}");
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("PATCH", format!("/api/v1/users/{hamlet}"))], "one call");
    assert_eq!(writes[0].param("full_name"), Some("Prince Hamlet"));
    assert_eq!(writes[0].param("new_email"), Some("prince@zulip.example.com"));
    let sent = profile_data(&writes[0].form);
    assert_eq!(sent[field_id(&h, "Job title").to_string()], "Prince");
    assert_eq!(sent[field_id(&h, "Manager").to_string()], json!([iago]));
    assert_eq!(h.fake.profile_value(hamlet, field_id(&h, "Manager")).as_deref(), Some(&*format!("[{iago}]")));
    assert_eq!(h.fake.profile_value(hamlet, field_id(&h, "Work phone")).as_deref(), Some("+45 1234"));

    // A read is the snapshot's, and equals what the PATCH answered.
    let got = h.get(&path).await.assert_status(200).clone();
    assert_eq!(got, body);
    assert!(h.upstream().is_empty(), "reads make no upstream call");

    // Clearing: remove and null, again in one call.
    let reply = h
        .patch(
            &path,
            &patch_op(json!([{"op":"remove","path":"title"},
                {"op":"replace","value":{format!("{ENT}:department"):null}},
                {"op":"Remove","path":format!("{ENT}:manager")}])),
        )
        .await;
    let body = reply.assert_status(200).clone();
    assert!(body.get("title").is_none());
    assert!(body[ENT].get("department").is_none() && body[ENT].get("manager").is_none(), "{body}");
    let writes = h.upstream_writes();
    assert_eq!(writes.len(), 1);
    let sent = profile_data(&writes[0].form);
    assert_eq!(sent[field_id(&h, "Job title").to_string()], Value::Null);
    assert_eq!(sent[field_id(&h, "Manager").to_string()], Value::Null);
    assert_eq!(h.fake.profile_value(hamlet, field_id(&h, "Job title")), None);

    // Bad values are 400 before any call: a manager that is no user, a title too long, a
    // phone type no field stores.
    for ops in [
        json!([{"op":"replace","path":"manager","value":{"value":"999999"}}]),
        json!([{"op":"replace","path":"title","value":"x".repeat(51)}]),
        json!([{"op":"add","path":"phoneNumbers","value":[{"type":"fax","value":"1"}]}]),
    ] {
        h.patch(&path, &patch_op(ops)).await.assert_error(400, Some("invalidValue"));
    }
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn post_and_put_carry_the_mapped_attributes() {
    let h = start().await;
    let iago = h.user_id("iago@zulip.example.com");
    let body = json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName":"ana@zulip.example.com","active":true,"displayName":"Ana Diaz",
        "emails":[{"primary":true,"type":"work","value":"ana@zulip.example.com"}],
        "name":{"formatted":"Ana Diaz","familyName":"Diaz","givenName":"Ana"},
        "title":"Engineer","phoneNumbers":[{"type":"work","value":"+1 555"}],
        ENT:{"department":"R&D","manager":{"value":iago.to_string()}}});
    let reply = h.post("/Users", &body).await;
    let created = reply.assert_status(201).clone();
    assert_eq!(created["title"], "Engineer");
    assert_eq!(created[ENT]["manager"]["value"], iago.to_string());
    let id: u64 = created["id"].as_str().unwrap().parse().unwrap();
    let writes = h.upstream_writes();
    assert_eq!(
        calls(&writes),
        vec![call("POST", "/api/v1/users"), call("PATCH", format!("/api/v1/users/{id}"))]
    );
    assert_eq!(h.fake.profile_value(id, field_id(&h, "Department")).as_deref(), Some("R&D"));

    // An Okta-style PUT: the whole user, one attribute changed; the extension merges.
    let mut put = created.clone();
    put["title"] = json!("Senior Engineer");
    put[ENT] = json!({"department":"R&D"});
    let reply = h.call(Method::PUT, &format!("/Users/{id}"), Some(&put)).await;
    let replaced = reply.assert_status(200).clone();
    assert_eq!(replaced["title"], "Senior Engineer");
    assert_eq!(replaced[ENT]["manager"]["value"], iago.to_string(), "left out: kept");
    let writes = h.upstream_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(profile_data(&writes[0].form).as_object().unwrap().len(), 1, "only the title");

    // A bad value in a POST creates nothing.
    let mut bad = body.clone();
    bad["userName"] = json!("bo@zulip.example.com");
    bad["emails"] = json!([{"primary":true,"value":"bo@zulip.example.com"}]);
    bad[ENT]["manager"] = json!({"value":"424242"});
    h.post("/Users", &bad).await.assert_error(400, Some("invalidValue"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn discovery_filters_sorting_and_projection_follow_the_map() {
    let h = start().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let iago = h.user_id("iago@zulip.example.com");
    h.fake.set_profile_value(hamlet, field_id(&h, "Employee number"), Some("E2".into()));
    h.fake.set_profile_value(iago, field_id(&h, "Employee number"), Some("E1".into()));
    h.fake.set_profile_value(hamlet, field_id(&h, "Job title"), Some("Prince of Denmark".into()));
    h.fake.set_profile_value(hamlet, field_id(&h, "Manager"), Some(format!("[{iago}]")));
    // (set before the first read loads the snapshot)

    let types = h.get("/ResourceTypes/User").await.body;
    assert_eq!(types["schemaExtensions"], json!([{"schema": ENT, "required": false}]));
    let ext = h.get(&format!("/Schemas/{ENT}")).await.assert_status(200).clone();
    let names: Vec<&str> =
        ext["attributes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["employeeNumber", "department", "manager"], "exactly what is mapped");
    let core = h.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").await.body;
    let core_names: Vec<&str> =
        core["attributes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert!(core_names.contains(&"title") && core_names.contains(&"phoneNumbers"), "{core_names:?}");
    assert!(!core_names.contains(&"nickName"));

    let ids = |body: &Value| -> Vec<String> {
        body["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    for (filter, want) in [
        (format!("{ENT}:employeeNumber eq \"E2\""), vec![hamlet]),
        // caseExact false, also where the stored values narrow the candidates first
        (format!("employeeNumber eq \"e2\" and {ENT}:department pr"), vec![]),
        ("employeeNumber eq \"e2\"".to_string(), vec![hamlet]),
        (format!("{ENT}:employeeNumber eq \"E1\" or title pr"), vec![hamlet, iago]),
        ("title co \"denmark\"".to_string(), vec![hamlet]),
        (format!("id eq \"{hamlet}\" and manager eq \"{iago}\""), vec![hamlet]),
        (format!("{ENT}:manager.value eq \"{hamlet}\""), vec![]),
    ] {
        let body = h.get(&format!("/Users?filter={}", percent(&filter))).await.assert_status(200).clone();
        let want: Vec<String> = want.iter().map(u64::to_string).collect();
        assert_eq!(ids(&body), want, "{filter}");
    }
    h.get(&format!("/Users?filter={}", percent(&format!("{ENT}:costCenter eq \"x\""))))
        .await
        .assert_error(400, Some("invalidFilter"));
    let sorted = h
        .get(&format!(
            "/Users?filter={}&sortBy={}",
            percent(&format!("{ENT}:employeeNumber pr")),
            percent(&format!("{ENT}:employeeNumber"))
        ))
        .await
        .body;
    assert_eq!(ids(&sorted), vec![iago.to_string(), hamlet.to_string()]);
    let only = h
        .get(&format!("/Users/{hamlet}?attributes={}", percent(&format!("{ENT}:employeeNumber"))))
        .await
        .body;
    assert_eq!(only[ENT], json!({"employeeNumber": "E2"}));
    assert!(only.get("title").is_none() && only.get("userName").is_none());
    let without = h.get(&format!("/Users/{hamlet}?excludedAttributes=title,{ENT}")).await.body;
    assert!(
        without.get("title").is_none() && without.get(ENT).is_none() && without.get("userName").is_some()
    );
    h.stop().await;
}

#[tokio::test]
async fn without_the_map_discovery_lists_no_extension() {
    let h = Harness::start().await;
    let types = h.get("/ResourceTypes/User").await.body;
    assert_eq!(types["schemaExtensions"], json!([]));
    h.get(&format!("/Schemas/{ENT}")).await.assert_error(404, None);
    h.stop().await;
}

fn app_for(fake: &fake_zulip::FakeZulip, tweak: impl FnOnce(&mut Config)) -> Arc<App> {
    let addr = "127.0.0.1:0".parse().unwrap();
    let mut config = demo_config(addr, fake.base_url(), TOKEN).expect("config");
    mapping(&mut config);
    tweak(&mut config);
    App::from_config(&config).expect("app")
}

#[tokio::test]
async fn unknown_labels_and_incompatible_types_keep_the_realm_unready_or_are_created() {
    // "Manager" is a short text field here, and "Work phone" is missing.
    let fake = fake()
        .with_profile_field("Job title", 1)
        .with_profile_field("Department", 2)
        .with_profile_field("Employee number", 8)
        .with_profile_field("Manager", 1)
        .start()
        .await
        .expect("fake");
    let app = app_for(&fake, |_| {});
    let realm: &Arc<Realm> = &app.realms()[0];
    let err = realm.check_ready().await.expect_err("not ready");
    let NotReady::Config(reason) = &err else { panic!("{err:?}") };
    assert!(reason.contains("\"Work phone\"") && reason.contains("create_missing_fields"), "{reason}");
    assert!(reason.contains("\"Manager\"") && reason.contains("person picker"), "{reason}");
    assert!(!realm.is_ready());
    assert_eq!(fake.profile_fields().len(), 4, "nothing created, nothing changed");

    // create_missing_fields creates the missing one; the wrongly typed one still blocks.
    let app = app_for(&fake, |c| c.realms[0].create_missing_fields = true);
    let err = app.realms()[0].check_ready().await.expect_err("still not ready");
    assert!(err.to_string().contains("\"Manager\""), "{err}");
    assert!(fake.profile_fields().iter().any(|f| f.name == "Work phone" && f.field_type == 1));
    fake.rename_profile_field(
        fake.profile_fields().iter().find(|f| f.name == "Manager").unwrap().id,
        "Old manager",
    );
    app.realms()[0].check_ready().await.expect("ready once the manager field is created");
    assert!(fake.profile_fields().iter().any(|f| f.name == "Manager" && f.field_type == 6));
}

#[tokio::test]
async fn live_changes_to_values_and_fields_reach_scim() {
    let h = Harness::start_live(with_fields(fake()), mapping).await;
    let realm = h.app.realms()[0].clone();
    let mut progress = realm.live_progress();
    let first = tokio::time::timeout(WITHIN, progress.wait_for(|p| p.live && p.queue_id.is_some()))
        .await
        .expect("live")
        .expect("task")
        .queue_id
        .clone();
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.get("/Users").await.assert_status(200);
    h.fake.set_profile_value(hamlet, field_id(&h, "Job title"), Some("Set in Zulip".into()));
    let newest = h.fake.event_queues().into_iter().find(|q| Some(&q.queue_id) == first.as_ref()).unwrap();
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.last_event_id >= newest.newest_event_id))
        .await
        .expect("applied")
        .expect("task");
    assert_eq!(h.get(&format!("/Users/{hamlet}")).await.assert_status(200)["title"], "Set in Zulip");

    // The field renamed in Zulip: the sidecar re-registers and reloads; the label is gone, so
    // the realm says why it cannot serve.
    h.fake.rename_profile_field(field_id(&h, "Job title"), "Title (old)");
    tokio::time::timeout(WITHIN, progress.wait_for(|p| p.queue_id != first))
        .await
        .expect("the queue is dropped")
        .expect("task");
    let reply = h.get(&format!("/Users/{hamlet}")).await;
    reply.assert_error(503, None);
    assert!(reply.body["detail"].as_str().unwrap().contains("Job title"), "{}", reply.raw);
    h.stop().await;
}
