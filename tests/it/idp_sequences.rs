//! Okta- and Entra-shaped provisioning runs replayed from JSON fixtures
//! (`tests/fixtures/idp/*.json`): each step's SCIM answer and the upstream calls it made.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::Value;

use scim::catalog::OptionalAttr;
use scim_sidecar::config::Config;

use crate::support::{calls, fake, Harness, Reply, TOKEN};

/// Replaces `{name}` placeholders with captured values, in strings anywhere in `v`.
fn substitute(v: &Value, vars: &HashMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(subst_str(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), substitute(x, vars))).collect()),
        other => other.clone(),
    }
}

fn subst_str(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The realm a fixture describes (`realm`: `custom_profile_field_map`,
/// `ignore_unmapped_attributes`) applied to the harness config.
fn configure(config: &mut Config, script: &Value, name_formatted_included: bool) {
    let realm = &mut config.realms[0];
    realm.name_formatted_included = name_formatted_included;
    let Some(settings) = script.get("realm") else { return };
    if let Some(map) = settings["custom_profile_field_map"].as_object() {
        realm.custom_profile_field_map = map
            .iter()
            .map(|(k, v)| (OptionalAttr::parse(k).expect("mappable"), v.as_str().unwrap().to_string()))
            .collect();
    }
    realm.ignore_unmapped_attributes = settings["ignore_unmapped_attributes"].as_bool().unwrap_or(false);
}

async fn replay(fixture: &str, name_formatted_included: bool) {
    let script: Value = serde_json::from_str(fixture).expect("fixture is JSON");
    // `profile_fields`: `[label, Zulip field type]` the organization has.
    let mut builder = fake();
    for field in script["profile_fields"].as_array().into_iter().flatten() {
        builder = builder.with_profile_field(field[0].as_str().unwrap(), field[1].as_u64().unwrap() as u8);
    }
    let h = Harness::start_with(builder, |c| configure(c, &script, name_formatted_included)).await;
    let suffix = script["query_suffix"].as_str();
    let mut vars: HashMap<String, String> = HashMap::new();
    let labels: HashMap<u64, String> = h.fake.profile_fields().into_iter().map(|f| (f.id, f.name)).collect();
    for step in script["steps"].as_array().expect("steps") {
        let name = step["name"].as_str().unwrap_or("?");
        let method = Method::from_bytes(step["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut path = subst_str(step["path"].as_str().unwrap(), &vars);
        if let Some(flag) = suffix {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(flag);
        }
        let mut req = h.http.request(method, h.url(&path));
        if let Some(headers) = script["headers"].as_object() {
            for (k, v) in headers {
                req = req.header(k, v.as_str().unwrap());
            }
        }
        req = match step["authorization"].as_str() {
            Some(auth) => req.header("authorization", auth),
            None => req.bearer_auth(TOKEN),
        };
        if let Some(body) = step.get("body") {
            req = req.body(substitute(body, &vars).to_string());
        }
        h.upstream();
        let reply = Reply::from(req.send().await.unwrap()).await;
        assert_eq!(reply.status.as_u16() as u64, step["status"].as_u64().unwrap(), "{name}: {}", reply.raw);
        if reply.status.as_u16() != 204 {
            assert_eq!(reply.header("content-type"), Some("application/scim+json"), "{name}");
        }
        if let Some(expect) = step["expect"].as_object() {
            for (pointer, want) in expect {
                let want = substitute(want, &vars);
                assert_eq!(reply.body.pointer(pointer), Some(&want), "{name}: {pointer} in {}", reply.raw);
            }
        }
        if let Some(capture) = step["capture"].as_object() {
            for (var, pointer) in capture {
                let got = reply.body.pointer(pointer.as_str().unwrap()).and_then(Value::as_str).unwrap();
                vars.insert(var.clone(), got.to_string());
            }
        }
        if let Some(upstream) = step["upstream"].as_array() {
            let want: Vec<(String, String)> = upstream
                .iter()
                .map(|c| (c[0].as_str().unwrap().to_string(), subst_str(c[1].as_str().unwrap(), &vars)))
                .collect();
            let writes: Vec<_> = h.upstream().into_iter().filter(|r| r.method != "GET").collect();
            assert_eq!(calls(&writes), want, "{name}: upstream writes");
            // `upstream_form`: parameters of the last write; `upstream_profile`: its
            // `profile_data`, by field label (values as JSON text: `"Engineer"`, `[11]`, `null`).
            let last = writes.last();
            for (key, want) in step["upstream_form"].as_object().into_iter().flatten() {
                let want = substitute(want, &vars);
                assert_eq!(last.and_then(|w| w.param(key)), want.as_str(), "{name}: upstream {key}");
            }
            if let Some(profile) = step["upstream_profile"].as_object() {
                let sent: Value =
                    serde_json::from_str(last.and_then(|w| w.param("profile_data")).unwrap_or("[]"))
                        .expect("profile_data is JSON");
                let sent: HashMap<String, String> = sent
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| (labels[&item["id"].as_u64().unwrap()].clone(), item["value"].to_string()))
                    .collect();
                let want: HashMap<String, String> = profile
                    .iter()
                    .map(|(label, v)| (label.clone(), subst_str(v.as_str().unwrap(), &vars)))
                    .collect();
                assert_eq!(sent, want, "{name}: profile_data");
            }
        }
    }
    // The upstream state matches what the IdP was told.
    if let Some(id) = vars.get("id") {
        let user = h.fake.user(id.parse().unwrap()).unwrap();
        let last = h.get(&format!("/Users/{id}")).await.body;
        assert_eq!(last["userName"], user.delivery_email);
        assert_eq!(last["active"], user.is_active);
        assert_eq!(last["displayName"], user.full_name);
    }
    h.stop().await;
}

#[tokio::test]
async fn okta_user_lifecycle_replays() {
    replay(include_str!("../fixtures/idp/okta-user-lifecycle.json"), false).await;
}

#[tokio::test]
async fn entra_user_lifecycle_replays() {
    replay(include_str!("../fixtures/idp/entra-user-lifecycle.json"), true).await;
}

#[tokio::test]
async fn entra_with_its_default_mappings_replays() {
    replay(include_str!("../fixtures/idp/entra-default-mappings.json"), true).await;
}

#[tokio::test]
async fn okta_with_an_extended_profile_replays() {
    replay(include_str!("../fixtures/idp/okta-extended-profile.json"), false).await;
}
