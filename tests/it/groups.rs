//! SCIM Groups ↔ Zulip user groups through real HTTP on both sides.

use serde_json::{json, Value};

use fake_zulip::{FakeGroup, FakeUser};
use scim_sidecar::config::{GroupDelete, UnknownMembers};

use crate::support::{call, calls, fake, Harness};

fn patch_op(ops: Value) -> Value {
    json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":ops})
}

fn percent(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .map(|m| m.iter().map(|m| m["value"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

async fn harness() -> Harness {
    let f = fake()
        .with_user(FakeUser::new("cordelia@zulip.example.com", "Cordelia Lear"))
        .with_user(FakeUser::new("polonius@zulip.example.com", "Polonius Guest").role(600));
    let h = Harness::start_with(f, |_| {}).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let cordelia = h.user_id("cordelia@zulip.example.com");
    h.fake.insert_group(FakeGroup::new("Engineering", &[hamlet, cordelia]));
    h
}

#[tokio::test]
async fn list_and_filter_groups_including_system_groups() {
    let h = harness().await;
    let body = h.get("/Groups").await.assert_status(200).clone();
    let names: Vec<&str> =
        body["Resources"].as_array().unwrap().iter().map(|g| g["displayName"].as_str().unwrap()).collect();
    assert!(names.contains(&"Engineering"), "{names:?}");
    assert!(names.contains(&"role:members"), "system groups are visible: {names:?}");
    let eng = h.get(&format!("/Groups?filter={}", percent("displayName eq \"Engineering\""))).await.body;
    assert_eq!(eng["totalResults"], 1);
    let group = &eng["Resources"][0];
    let hamlet = h.user_id("hamlet@zulip.example.com").to_string();
    assert!(ids(group).contains(&hamlet));
    let member = group["members"].as_array().unwrap().iter().find(|m| m["value"] == hamlet).unwrap();
    assert_eq!(member["display"], "King Hamlet");
    assert_eq!(member["$ref"], format!("http://{}/scim/v2/Users/{hamlet}", h.addr));
    // caseExact false (RFC 7643): every comparison operator ignores case.
    for f in [
        "displayName eq \"engineering\"",
        "displayName co \"GINEER\"",
        "displayName sw \"eng\"",
        "displayName ew \"RING\"",
    ] {
        let found = h.get(&format!("/Groups?filter={}", percent(f))).await.body;
        assert_eq!(found["totalResults"], 1, "{f}");
        assert_eq!(found["Resources"][0]["displayName"], "Engineering", "{f}");
    }
    let schema = h.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group").await.body;
    let name = schema["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "displayName").unwrap();
    assert_eq!(name["caseExact"], false, "what is honoured is published");
    // Entra reads without members.
    let id = group["id"].as_str().unwrap();
    let lean = h.get(&format!("/Groups/{id}?excludedAttributes=members")).await.body;
    assert!(lean.get("members").is_none());
    assert_eq!(lean["displayName"], "Engineering");
    let by_member = h
        .get(&format!("/Groups?filter={}", percent(&format!("id eq \"{id}\" and members eq \"{hamlet}\""))))
        .await
        .body;
    assert_eq!(by_member["totalResults"], 1);
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn okta_push_groups_sequence() {
    let h = harness().await;
    let hamlet = h.user_id("hamlet@zulip.example.com").to_string();
    let iago = h.user_id("iago@zulip.example.com").to_string();
    // 1. Okta looks the group up, finds nothing, creates it empty.
    let found = h.get(&format!("/Groups?filter={}", percent("displayName eq \"Sales\""))).await.body;
    assert_eq!(found["totalResults"], 0);
    let reply = h.post("/Groups", &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales","members":[]})).await;
    let created = reply.assert_status(201).clone();
    assert_eq!(reply.header("location"), created["meta"]["location"].as_str());
    let id = created["id"].as_str().unwrap().to_string();
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("POST", "/api/v1/user_groups/create")]);
    assert_eq!(writes[0].param("name"), Some("Sales"));
    assert_eq!(writes[0].param("description"), Some("Created from SCIM"));
    assert_eq!(writes[0].param("members"), Some("[]"));
    // 2. Membership: a filtered remove (of a non-member) and an add in one PATCH, plus the rename Okta re-sends.
    let reply = h
        .patch(&format!("/Groups/{id}"), &patch_op(json!([
            {"op":"replace","value":{"id":id,"displayName":"Sales"}},
            {"op":"remove","path":format!("members[value eq \"{iago}\"]")},
            {"op":"add","path":"members","value":[{"value":hamlet,"display":"hamlet@zulip.example.com"},{"value":iago}]},
        ])))
        .await;
    let body = reply.assert_status(200);
    let mut want = vec![hamlet.clone(), iago.clone()];
    want.sort_by_key(|s| s.parse::<u64>().unwrap());
    assert_eq!(ids(body), want);
    let writes = h.upstream_writes();
    assert_eq!(
        calls(&writes),
        vec![call("POST", format!("/api/v1/user_groups/{id}/members"))],
        "one members call, no rename"
    );
    assert!(writes[0].param("delete").is_none());
    // 3. Remove one member the Okta way.
    let reply = h
        .patch(
            &format!("/Groups/{id}"),
            &patch_op(json!([{"op":"remove","path":format!("members[value eq \"{iago}\"]")}])),
        )
        .await;
    assert_eq!(ids(reply.assert_status(200)), vec![hamlet.clone()]);
    let writes = h.upstream_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].param("delete"), Some(format!("[{iago}]").as_str()));
    // Adding an existing member again sends nothing (Zulip would answer 400).
    h.patch(
        &format!("/Groups/{id}"),
        &patch_op(json!([{"op":"add","path":"members","value":[{"value":hamlet}]}])),
    )
    .await
    .assert_status(200);
    assert!(h.upstream_writes().is_empty());
    // 4. Rename.
    let reply = h
        .patch(
            &format!("/Groups/{id}"),
            &patch_op(json!([{"op":"replace","value":{"id":id,"displayName":"Sales EMEA"}}])),
        )
        .await;
    assert_eq!(reply.assert_status(200)["displayName"], "Sales EMEA");
    let writes = h.upstream_writes();
    assert_eq!(calls(&writes), vec![call("PATCH", format!("/api/v1/user_groups/{id}"))]);
    assert_eq!(writes[0].param("name"), Some("Sales EMEA"));
    let zulip = h.fake.group(id.parse().unwrap()).unwrap();
    assert_eq!(zulip.name, "Sales EMEA");
    assert_eq!(zulip.members, vec![hamlet.parse::<u64>().unwrap()]);
    h.stop().await;
}

#[tokio::test]
async fn entra_group_sequence_with_both_removal_forms() {
    let h = harness().await;
    let hamlet = h.user_id("hamlet@zulip.example.com").to_string();
    let iago = h.user_id("iago@zulip.example.com").to_string();
    let cordelia = h.user_id("cordelia@zulip.example.com").to_string();
    let reply = h
        .post("/Groups", &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group",
            "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"Marketing","meta":{"resourceType":"Group"},
            "members":[{"value":hamlet},{"value":iago}]}))
        .await;
    let created = reply.assert_status(201).clone();
    let id = created["id"].as_str().unwrap().to_string();
    let writes = h.upstream_writes();
    assert_eq!(
        calls(&writes),
        vec![call("POST", "/api/v1/user_groups/create")],
        "members set in the create call"
    );
    let lean = h.get(&format!("/Groups/{id}?excludedAttributes=members")).await;
    assert!(lean.assert_status(200).get("members").is_none());
    h.patch(
        &format!("/Groups/{id}"),
        &patch_op(json!([{"op":"Add","path":"members","value":[{"$ref":null,"value":cordelia}]}])),
    )
    .await
    .assert_status(200);
    // Legacy removal: path members + value list.
    let reply = h
        .patch(
            &format!("/Groups/{id}"),
            &patch_op(json!([{"op":"Remove","path":"members","value":[{"value":hamlet}]}])),
        )
        .await;
    assert!(!ids(reply.assert_status(200)).contains(&hamlet));
    // Flag-on removal: value filter.
    let reply = h
        .patch(
            &format!("/Groups/{id}"),
            &patch_op(json!([{"op":"remove","path":format!("members[value eq \"{iago}\"]")}])),
        )
        .await;
    assert_eq!(ids(reply.assert_status(200)), vec![cordelia.clone()]);
    let rename = h
        .patch(
            &format!("/Groups/{id}"),
            &patch_op(json!([{"op":"Replace","path":"displayName","value":"Marketing EMEA"}])),
        )
        .await;
    assert_eq!(rename.assert_status(200)["displayName"], "Marketing EMEA");
    let zulip = h.fake.group(id.parse().unwrap()).unwrap();
    assert_eq!(zulip.members, vec![cordelia.parse::<u64>().unwrap()]);
    assert_eq!(zulip.name, "Marketing EMEA");
    h.stop().await;
}

#[tokio::test]
async fn create_conflicts_and_bad_members() {
    let h = harness().await;
    h.post("/Groups", &json!({"displayName":"Engineering"})).await.assert_error(409, Some("uniqueness"));
    h.post("/Groups", &json!({"displayName":"role:hackers"})).await.assert_error(400, Some("invalidValue"));
    h.post("/Groups", &json!({"members":[]})).await.assert_error(400, Some("invalidValue"));
    let bot = h.user_id("welcome-bot@zulip.example.com");
    let othello = h.user_id("othello@zulip.example.com");
    let reply = h.post("/Groups", &json!({"displayName":"Bad","members":[{"value":"999999"},{"value":bot.to_string()},{"value":othello.to_string()}]})).await;
    reply.assert_error(400, Some("invalidValue"));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("999999")
            && detail.contains(&bot.to_string())
            && detail.contains(&othello.to_string()),
        "{detail}"
    );
    assert!(h.upstream_writes().is_empty());
    h.stop().await;

    let h = Harness::start_with(fake(), |c| c.realms[0].unknown_members = UnknownMembers::Ignore).await;
    let hamlet = h.user_id("hamlet@zulip.example.com").to_string();
    let reply = h
        .post("/Groups", &json!({"displayName":"Lenient","members":[{"value":"999999"},{"value":hamlet}]}))
        .await;
    assert_eq!(ids(reply.assert_status(201)), vec![hamlet]);
    h.stop().await;
}

#[tokio::test]
async fn put_replaces_name_and_members() {
    let h = harness().await;
    let eng = h.fake.group_by_name("Engineering").unwrap();
    let iago = h.user_id("iago@zulip.example.com").to_string();
    let reply = h.put(&format!("/Groups/{}", eng.id), &json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Eng","members":[{"value":iago}]})).await;
    let body = reply.assert_status(200);
    assert_eq!(body["displayName"], "Eng");
    assert_eq!(ids(body), vec![iago.clone()]);
    let writes = h.upstream_writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    // An empty member list empties the group (RFC replace; Zulip's built-in keeps members).
    let reply = h.put(&format!("/Groups/{}", eng.id), &json!({"displayName":"Eng","members":[]})).await;
    assert_eq!(ids(reply.assert_status(200)), Vec::<String>::new());
    assert!(h.fake.group(eng.id).unwrap().members.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn system_groups_are_read_only() {
    let h = harness().await;
    let members = h.fake.group_by_name("role:members").unwrap();
    h.patch(
        &format!("/Groups/{}", members.id),
        &patch_op(json!([{"op":"replace","path":"displayName","value":"x"}])),
    )
    .await
    .assert_error(400, Some("mutability"));
    h.delete(&format!("/Groups/{}", members.id)).await.assert_error(400, Some("mutability"));
    assert!(h.upstream_writes().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn delete_deactivates_frees_the_name_and_then_404s() {
    let h = harness().await;
    let eng = h.fake.group_by_name("Engineering").unwrap();
    let reply = h.delete(&format!("/Groups/{}", eng.id)).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.raw);
    let writes = h.upstream_writes();
    assert_eq!(
        calls(&writes),
        vec![
            call("POST", format!("/api/v1/user_groups/{}/deactivate", eng.id)),
            call("PATCH", format!("/api/v1/user_groups/{}", eng.id))
        ]
    );
    let zulip = h.fake.group(eng.id).unwrap();
    assert!(zulip.deactivated);
    assert_ne!(zulip.name, "Engineering");
    h.get(&format!("/Groups/{}", eng.id)).await.assert_error(404, None);
    let list = h.get(&format!("/Groups?filter={}", percent("displayName eq \"Engineering\""))).await.body;
    assert_eq!(list["totalResults"], 0);
    // The IdP can create the name again.
    h.post("/Groups", &json!({"displayName":"Engineering"})).await.assert_status(201);
    h.stop().await;

    let h = Harness::start_with(fake().with_group(FakeGroup::new("Keep", &[])), |c| {
        c.realms[0].group_delete = GroupDelete::Reject
    })
    .await;
    let keep = h.fake.group_by_name("Keep").unwrap();
    h.delete(&format!("/Groups/{}", keep.id)).await.assert_error(501, None);
    h.stop().await;
}

#[tokio::test]
async fn group_in_use_cannot_be_deleted_and_says_why() {
    let h = harness().await;
    let eng = h.fake.group_by_name("Engineering").unwrap();
    let mut parent = FakeGroup::new("Parent", &[]);
    parent.direct_subgroup_ids = vec![eng.id];
    h.fake.insert_group(parent);
    let reply = h.delete(&format!("/Groups/{}", eng.id)).await;
    reply.assert_error(400, None);
    assert!(reply.body["detail"].as_str().unwrap().contains("Engineering"));
    assert!(!h.fake.group(eng.id).unwrap().deactivated);
    h.stop().await;
}

#[tokio::test]
async fn big_group_costs_a_constant_number_of_upstream_calls() {
    let mut f = fake();
    for i in 0..5000 {
        f = f.with_user(FakeUser::new(&format!("u{i}@zulip.example.com"), &format!("User {i}")));
    }
    let h = Harness::start_with(f, |_| {}).await;
    let all = h.fake.users();
    let members: Vec<Value> = all
        .iter()
        .filter(|u| u.delivery_email.starts_with('u') && !u.is_bot)
        .map(|u| json!({"value": u.user_id.to_string()}))
        .collect();
    assert_eq!(members.len(), 5000);
    let reply = h.post("/Groups", &json!({"displayName":"Everyone5k","members":members})).await;
    let created = reply.assert_status(201).clone();
    assert_eq!(created["members"].as_array().unwrap().len(), 5000);
    let id = created["id"].as_str().unwrap().to_string();
    let first = h.upstream();
    assert_eq!(first.iter().filter(|r| r.method != "GET").count(), 1, "one create call");
    // Remove 2,500 and add them back in one PATCH each: one members call each.
    let half: Vec<Value> = members[..2500].to_vec();
    h.patch(&format!("/Groups/{id}"), &patch_op(json!([{"op":"remove","path":"members","value":half}])))
        .await
        .assert_status(200);
    h.patch(&format!("/Groups/{id}"), &patch_op(json!([{"op":"add","path":"members","value":half}])))
        .await
        .assert_status(200);
    let writes = h.upstream_writes();
    assert_eq!(writes.len(), 2, "{:?}", calls(&writes));
    assert_eq!(h.fake.group(id.parse().unwrap()).unwrap().members.len(), 5000);
    h.stop().await;
}

#[tokio::test]
async fn users_carry_their_groups_when_asked() {
    let h = harness().await;
    let hamlet = h.user_id("hamlet@zulip.example.com");
    let plain = h.get(&format!("/Users/{hamlet}")).await.body;
    assert!(plain.get("groups").is_none());
    let with = h.get(&format!("/Users/{hamlet}?attributes=userName,groups")).await.body;
    let names: Vec<&str> =
        with["groups"].as_array().unwrap().iter().map(|g| g["display"].as_str().unwrap()).collect();
    assert!(names.contains(&"Engineering"), "{with}");
    h.stop().await;
}

#[tokio::test]
async fn a_group_has_one_version_whether_or_not_members_are_shown() {
    let h = harness().await;
    let gid = h.fake.group_by_name("Engineering").unwrap().id;
    let full = h.get(&format!("/Groups/{gid}")).await;
    let slim = h.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    full.assert_status(200);
    slim.assert_status(200);
    assert!(full.body["members"].is_array() && slim.body.get("members").is_none(), "{}", slim.raw);
    let etag = full.header("etag").unwrap().to_string();
    assert_eq!(slim.header("etag"), Some(etag.as_str()));
    assert_eq!(full.body["meta"]["version"], etag);
    // So an If-Match taken from a slim read is honoured by a write.
    let rename = patch_op(json!([{"op":"replace","path":"displayName","value":"Engineers"}]));
    let reply = h
        .raw(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            &[("content-type", "application/scim+json"), ("if-match", &etag)],
            rename.to_string(),
        )
        .await;
    reply.assert_status(200);
    // And a membership change is a new version.
    let cordelia = h.user_id("cordelia@zulip.example.com");
    let drop = patch_op(json!([{"op":"remove","path":format!("members[value eq \"{cordelia}\"]")}]));
    let after = h.patch(&format!("/Groups/{gid}"), &drop).await;
    after.assert_status(200);
    assert_ne!(after.header("etag"), reply.header("etag"));
    h.stop().await;
}
