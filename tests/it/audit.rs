//! The audit trail: Okta- and Entra-shaped lifecycles, each change applied to Zulip one JSON
//! line answering who (realm, SCIM client, request id, operation), what (target, attribute
//! before → after), when, and how it ended — partial failures included.

use std::path::{Path, PathBuf};

use fake_zulip::Failure;
use reqwest::Method;
use serde_json::{json, Value};

use scim_sidecar::audit::{new_request_id, AuditTargetConfig};

use crate::support::{fake, Harness, Reply, TOKEN};

fn audit_path() -> PathBuf {
    std::env::temp_dir().join(format!("scim-audit-it-{}.jsonl", new_request_id()))
}

/// Every record written so far.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
        .collect()
}

async fn start(path: &Path, client: &str, entra: bool) -> Harness {
    let (path, client) = (path.to_path_buf(), client.to_string());
    Harness::start_with(fake(), move |c| {
        c.audit = AuditTargetConfig::File(path);
        c.realms[0].scim_client_name = client;
        c.realms[0].name_formatted_included = entra;
    })
    .await
}

/// A request with an `X-Request-Id`, as an ingress or the IdP sets it.
async fn send(h: &Harness, method: Method, path: &str, body: Option<Value>, request_id: &str) -> Reply {
    let mut req = h.http.request(method, h.url(path)).bearer_auth(TOKEN).header("x-request-id", request_id);
    if let Some(body) = body {
        req = req.header("content-type", "application/scim+json").body(body.to_string());
    }
    Reply::from(req.send().await.unwrap()).await
}

/// The `(attribute, before, after)` of a record's scalar changes.
fn scalars(record: &Value) -> Vec<(String, Value, Value)> {
    record["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("before").is_some())
        .map(|c| (c["attribute"].as_str().unwrap().to_string(), c["before"].clone(), c["after"].clone()))
        .collect()
}

fn change(attribute: &str, before: Value, after: Value) -> (String, Value, Value) {
    (attribute.to_string(), before, after)
}

#[track_caller]
fn assert_who(record: &Value, client: &str, request_id: &str, operation: &str) {
    assert_eq!(record["realm"], "demo", "{record}");
    assert_eq!(record["scim_client"], client, "{record}");
    assert_eq!(record["request_id"], request_id, "{record}");
    assert_eq!(record["operation"], operation, "{record}");
    let time = record["time"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(),
        "{time}"
    );
}

#[tokio::test]
async fn okta_lifecycle_is_audited_change_by_change() {
    let path = audit_path();
    let h = start(&path, "okta", false).await;
    let hamlet = h.user_id("hamlet@zulip.example.com");

    // Okta: POST, then PUT (rename), PATCH active false, group push.
    let created = send(
        &h,
        Method::POST,
        "/Users",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "kim@zulip.example.com",
            "name": {"givenName": "Kim", "familyName": "Lee"},
            "emails": [{"primary": true, "value": "kim@zulip.example.com", "type": "work"}],
            "active": true
        })),
        "okta-1",
    )
    .await;
    let id = created.assert_status(201)["id"].as_str().unwrap().to_string();
    let put = send(
        &h,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id, "userName": "kim@zulip.example.com",
            "name": {"givenName": "Kimberly", "familyName": "Lee"}, "active": true
        })),
        "okta-2",
    )
    .await;
    put.assert_status(200);
    // A PUT that changes nothing applies nothing: no record.
    let again = send(
        &h,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": id, "userName": "kim@zulip.example.com",
            "name": {"givenName": "Kimberly", "familyName": "Lee"}, "active": true
        })),
        "okta-2b",
    )
    .await;
    again.assert_status(200);
    let off = send(
        &h,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        })),
        "okta-3",
    )
    .await;
    off.assert_status(200);
    let group = send(
        &h,
        Method::POST,
        "/Groups",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering", "members": []
        })),
        "okta-4",
    )
    .await;
    let gid = group.assert_status(201)["id"].as_str().unwrap().to_string();
    send(
        &h,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": hamlet.to_string()}]}]
        })),
        "okta-5",
    )
    .await
    .assert_status(200);
    send(&h, Method::DELETE, &format!("/Groups/{gid}"), None, "okta-6").await.assert_status(204);
    // Reads are not audited.
    send(&h, Method::GET, "/Users", None, "okta-7").await.assert_status(200);

    let log = records(&path);
    assert_eq!(log.len(), 6, "{log:#?}");
    let [create, rename, deactivate, group_create, group_add, group_delete] = &log[..] else {
        unreachable!()
    };

    assert_who(create, "okta", "okta-1", "create_user");
    assert_eq!(create["target"], json!({"type": "User", "id": id, "address": "kim@zulip.example.com"}));
    assert_eq!(
        scalars(create),
        vec![
            change("userName", Value::Null, json!("kim@zulip.example.com")),
            change("displayName", Value::Null, json!("Kim Lee")),
            change("role", Value::Null, json!("member")),
            change("active", Value::Null, json!(true)),
        ]
    );
    assert_eq!((create["result"].clone(), create["upstream_status"].clone()), (json!("applied"), json!(200)));

    assert_who(rename, "okta", "okta-2", "replace_user");
    assert_eq!(scalars(rename), vec![change("displayName", json!("Kim Lee"), json!("Kimberly Lee"))]);
    assert_who(deactivate, "okta", "okta-3", "patch_user");
    assert_eq!(scalars(deactivate), vec![change("active", json!(true), json!(false))]);

    assert_who(group_create, "okta", "okta-4", "create_group");
    assert_eq!(group_create["target"], json!({"type": "Group", "id": gid, "address": "Engineering"}));
    assert_who(group_add, "okta", "okta-5", "patch_group");
    assert_eq!(
        group_add["changes"],
        json!([{"attribute": "members", "added": [hamlet.to_string()], "removed": []}])
    );
    assert_who(group_delete, "okta", "okta-6", "delete_group");
    assert_eq!(scalars(group_delete)[0], change("active", json!(true), json!(false)));
    h.stop().await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn entra_lifecycle_is_audited_and_partial_failures_say_what_was_applied() {
    let path = audit_path();
    let h = start(&path, "entra", true).await;

    let created = send(
        &h,
        Method::POST,
        "/Users?aadOptscim062020",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "externalId": "8f1c", "userName": "ana@zulip.example.com", "active": true,
            "displayName": "Ana Diaz", "name": {"formatted": "Ana Diaz"},
            "emails": [{"primary": true, "type": "work", "value": "ana@zulip.example.com"}]
        })),
        "entra-1",
    )
    .await;
    let id = created.assert_status(201)["id"].as_str().unwrap().to_string();
    // Entra's path-form PATCH with a string boolean; the deactivation fails upstream after
    // the rename went through.
    h.fake.fail_next(
        "DELETE",
        &format!("/api/v1/users/{id}"),
        Failure::Api { status: 400, code: "BAD_REQUEST".into(), msg: "nope".into() },
    );
    let failed = send(
        &h,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "displayName", "value": "Ana Díaz"},
                {"op": "Replace", "path": "active", "value": "False"}
            ]
        })),
        "entra-2",
    )
    .await;
    assert!(failed.status.is_client_error(), "{}", failed.raw);
    // A refusal before anything reached Zulip is not a change.
    send(
        &h,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "userName", "value": "not an address"}]
        })),
        "entra-3",
    )
    .await
    .assert_error(400, Some("invalidValue"));
    send(
        &h,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        })),
        "entra-4",
    )
    .await
    .assert_status(200);
    // Without an X-Request-Id the sidecar makes one.
    let reply =
        h.call(Method::DELETE, &format!("/Users/{}", h.user_id("hamlet@zulip.example.com")), None).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.raw);

    let log = records(&path);
    assert_eq!(log.len(), 4, "{log:#?}");
    assert_who(&log[0], "entra", "entra-1", "create_user");
    assert_eq!(scalars(&log[0])[1], change("displayName", Value::Null, json!("Ana Diaz")));

    assert_who(&log[1], "entra", "entra-2", "patch_user");
    assert_eq!(log[1]["result"], "partial");
    assert_eq!(log[1]["upstream_status"], 400);
    assert_eq!(scalars(&log[1]), vec![change("displayName", json!("Ana Diaz"), json!("Ana Díaz"))]);
    assert!(log[1]["detail"].as_str().unwrap().contains("changing active failed"), "{}", log[1]);

    assert_who(&log[2], "entra", "entra-4", "patch_user");
    assert_eq!(scalars(&log[2]), vec![change("active", json!(true), json!(false))]);
    assert_eq!(log[3]["operation"], "delete_user");
    assert_eq!(log[3]["target"]["address"], "hamlet@zulip.example.com");
    // The id the sidecar made is the one it answered with.
    assert_eq!(log[3]["request_id"].as_str(), reply.header("x-request-id"));
    // Nothing in the trail is a secret.
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [TOKEN, scim_sidecar::demo::DEMO_SERVICE_API_KEY] {
        assert!(!text.contains(secret));
    }
    assert!(!text.to_lowercase().contains("password"));
    h.stop().await;
    let _ = std::fs::remove_file(path);
}

/// A member change whose answer is lost after Zulip applied it is audited twice: once as
/// unknown when the answer is lost, then as applied once a re-read shows it. Each record
/// names the member change exactly once.
#[tokio::test]
async fn a_member_change_resolved_after_a_lost_answer_is_audited_once_as_applied() {
    let path = audit_path();
    let h = start(&path, "okta", false).await;
    let group = send(
        &h,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Auditors"})),
        "okta-g1",
    )
    .await;
    let gid = group.assert_status(201)["id"].as_str().unwrap().to_string();
    let hamlet = h.user_id("hamlet@zulip.example.com");
    h.fake.fail_next(
        "POST",
        &format!("/api/v1/user_groups/{gid}/members"),
        Failure::AfterApply(Box::new(Failure::Reset)),
    );
    send(
        &h,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": hamlet.to_string()}]}]
        })),
        "okta-g2",
    )
    .await
    .assert_status(200);
    assert!(h.fake.group(gid.parse().unwrap()).unwrap().members.contains(&hamlet));

    let patch: Vec<Value> = records(&path).into_iter().filter(|r| r["request_id"] == "okta-g2").collect();
    let results: Vec<&Value> = patch.iter().map(|r| &r["result"]).collect();
    assert_eq!(results, [&json!("unknown"), &json!("applied")], "{patch:#?}");
    for record in &patch {
        let members: Vec<&Value> =
            record["changes"].as_array().unwrap().iter().filter(|c| c["attribute"] == "members").collect();
        assert_eq!(members.len(), 1, "{record}");
        assert_eq!(members[0]["added"], json!([hamlet.to_string()]), "{record}");
    }
    let _ = std::fs::remove_file(&path);
    h.stop().await;
}
