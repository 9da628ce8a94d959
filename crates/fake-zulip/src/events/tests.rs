//! The fake's events API against the recorded transcripts, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::{FakeUser, FakeZulip, FakeZulipBuilder};

const EVENTS: &str = include_str!("../../../../tests/fixtures/zulip-transcripts/events.json");
const OWNER: &str = "owner@zulip.example.com";
const KEY: &str = "ownerkeyownerkeyownerkeyownerke1";
const OTHER: &str = "other@zulip.example.com";
const OTHER_KEY: &str = "otherkeyotherkeyotherkeyotherke1";

fn fake() -> FakeZulipBuilder {
    FakeZulip::builder()
        .service_account(OWNER, KEY)
        .with_system_groups()
        .with_user(FakeUser::new("hamlet@zulip.example.com", "King Hamlet"))
        .with_user(FakeUser::new(OTHER, "Other Admin").role(200).api_key(OTHER_KEY))
        .with_profile_field("Phone number", 1)
}

/// (method, path, form, transcript title)
type Step<'a> = (&'a str, String, Vec<(&'a str, String)>, &'a str);

struct Api {
    fake: FakeZulip,
    http: reqwest::Client,
}

impl Api {
    async fn start(builder: FakeZulipBuilder) -> Api {
        Api { fake: builder.start().await.unwrap(), http: reqwest::Client::new() }
    }

    async fn call_as(
        &self,
        who: (&str, &str),
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = format!("{}api/v1{path}", self.fake.base_url());
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method.clone(), url).basic_auth(who.0, Some(who.1));
        req = if method == reqwest::Method::GET { req.query(form) } else { req.form(form) };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn call(&self, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.call_as((OWNER, KEY), method, path, form).await
    }

    async fn register(&self) -> String {
        let (status, body) =
            self.call("POST", "/register", &[("event_types", "[\"realm_user\", \"user_group\"]")]).await;
        assert_eq!(status, 200, "{body}");
        body["queue_id"].as_str().unwrap().to_string()
    }

    /// Pending events (dont_block), acknowledging everything before `last`.
    async fn drain(&self, queue: &str, last: &mut i64) -> Vec<Value> {
        let last_text = last.to_string();
        let (status, body) = self
            .call(
                "GET",
                "/events",
                &[("queue_id", queue), ("last_event_id", &last_text), ("dont_block", "true")],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("queue_id").is_none(), "dont_block answers carry no queue_id");
        let events = body["events"].as_array().unwrap().clone();
        if let Some(id) = events.iter().filter_map(|e| e["id"].as_i64()).max() {
            *last = id;
        }
        events
    }
}

/// `type/op` plus the sorted keys of `person` or `data` (values and ids differ by server).
fn signature(event: &Value) -> String {
    let inner = event.get("person").or_else(|| event.get("data"));
    let mut keys: Vec<&str> =
        inner.and_then(Value::as_object).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.retain(|k| !matches!(*k, "is_imported_stub" | "is_billing_admin"));
    keys.sort_unstable();
    format!(
        "{}/{} {}",
        event["type"].as_str().unwrap_or(""),
        event["op"].as_str().unwrap_or(""),
        keys.join(",")
    )
}

fn signatures(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = events.iter().map(signature).collect();
    out.sort();
    out
}

/// The events recorded after the transcript action titled `GET /events after: {title}`.
fn recorded(title: &str) -> Vec<Value> {
    let all: Vec<Value> = serde_json::from_str(EVENTS).unwrap();
    let wanted = format!("GET /events after: {title}");
    let ex = all.iter().find(|ex| ex["title"] == wanted.as_str()).unwrap_or_else(|| panic!("{wanted}"));
    ex["response"]["body"]["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn rest_writes_generate_the_transcript_events() {
    let api = Api::start(fake()).await;
    let queue = api.register().await;
    let mut last = -1;
    let (_, created) = api
        .call(
            "POST",
            "/users",
            &[("email", "eve@zulip.example.com"), ("password", "secret-pw"), ("full_name", "Eve")],
        )
        .await;
    let eve = created["user_id"].as_u64().unwrap().to_string();
    let hamlet = api.fake.user_by_email("hamlet@zulip.example.com").unwrap().user_id.to_string();
    let user_path = format!("/users/{eve}");
    let steps: Vec<Step> = vec![
        ("PATCH", user_path.clone(), vec![("full_name", "Eve Renamed".into())], "PATCH full_name"),
        (
            "PATCH",
            user_path.clone(),
            vec![("role", "200".into())],
            "PATCH role=200 (member -> administrator)",
        ),
        ("PATCH", user_path.clone(), vec![("role", "400".into())], "PATCH role=400 (guest -> member)"),
        ("DELETE", user_path.clone(), vec![], "DELETE /users/{id} (deactivate)"),
        ("POST", format!("{user_path}/reactivate"), vec![], "POST /users/{id}/reactivate"),
        ("PATCH", user_path.clone(), vec![("new_email", "eve2@zulip.example.com".into())], "PATCH new_email"),
        (
            "PATCH",
            user_path.clone(),
            vec![("profile_data", r#"[{"id": 1, "value": "+1-555-0199"}]"#.into())],
            "PATCH profile_data",
        ),
        (
            "POST",
            "/user_groups/create".into(),
            vec![
                ("name", "evgroup".into()),
                ("description", "Events group".into()),
                ("members", format!("[{eve}, {hamlet}]")),
            ],
            "POST /user_groups/create",
        ),
    ];
    let first = api.drain(&queue, &mut last).await;
    assert_eq!(signatures(&first), signatures(&recorded("POST /users (create eve)")));
    for (method, path, form, title) in steps {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = api.call(method, &path, &form).await;
        assert_eq!(status, 200, "{title}: {body}");
        let got = api.drain(&queue, &mut last).await;
        let mut want = recorded(title);
        if title.starts_with("PATCH role=400") {
            // The transcript's user was a guest; ours an administrator: same shapes, one
            // fewer system group to leave.
            want.retain(|e| e["op"] != "remove_members" || e["group_id"] != 15);
            want.push(serde_json::json!({"type": "user_group", "op": "remove_members"}));
        }
        assert_eq!(signatures(&got), signatures(&want), "{title}: {got:?}");
    }
    let group = api.fake.group_by_name("evgroup").unwrap().id;
    let members = format!("/user_groups/{group}/members");
    let group_path = format!("/user_groups/{group}");
    let more: Vec<Step> = vec![
        ("POST", members.clone(), vec![("delete", format!("[{hamlet}]"))], "members delete"),
        ("POST", members.clone(), vec![("add", format!("[{hamlet}]"))], "members add"),
        (
            "PATCH",
            group_path.clone(),
            vec![("name", "evgroup-renamed".into())],
            "PATCH /user_groups/{id} rename",
        ),
        ("POST", format!("{group_path}/deactivate"), vec![], "POST /user_groups/{id}/deactivate"),
    ];
    for (method, path, form, title) in more {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = api.call(method, &path, &form).await;
        assert_eq!(status, 200, "{title}: {body}");
        let got = api.drain(&queue, &mut last).await;
        assert_eq!(signatures(&got), signatures(&recorded(title)), "{title}: {got:?}");
    }
    // Ids are consecutive from 0.
    assert_eq!(api.fake.event_queues()[0].newest_event_id, last);
    api.fake.shutdown().await;
}

#[tokio::test]
async fn out_of_band_changes_generate_events_and_wake_a_long_poll_at_once() {
    let api = Api::start(fake().event_heartbeat(Duration::from_secs(30))).await;
    let queue = api.register().await;
    let hamlet = api.fake.user_by_email("hamlet@zulip.example.com").unwrap().user_id;
    let poll = {
        let http = api.http.clone();
        let url = format!("{}api/v1/events", api.fake.base_url());
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = http
                .get(url)
                .basic_auth(OWNER, Some(KEY))
                .query(&[("queue_id", queue.as_str()), ("last_event_id", "-1")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), body)
        })
    };
    // Let the poll reach the fake before the change (it would answer at once otherwise too).
    while api.fake.requests().iter().all(|r| r.path != "/api/v1/events") {
        tokio::task::yield_now().await;
    }
    api.fake.modify_user(hamlet, |u| u.full_name = "Hamlet Renamed".into());
    let (elapsed, body) = poll.await.unwrap();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(body["queue_id"], queue.as_str(), "a blocking poll names its queue");
    assert_eq!(
        body["events"][0]["person"],
        serde_json::json!({"user_id": hamlet, "full_name": "Hamlet Renamed"})
    );

    let mut last = 0;
    api.fake.modify_user(hamlet, |u| u.is_active = false);
    let events = api.drain(&queue, &mut last).await;
    assert_eq!(signatures(&events), vec!["realm_user/update is_active,user_id"], "no remove_members");
    let id = api.fake.insert_user(FakeUser::new("new@zulip.example.com", "New Person"));
    let events = api.drain(&queue, &mut last).await;
    assert_eq!(events[0]["op"], "add");
    assert_eq!(events[0]["person"]["is_active"], true);
    assert!(events[1..].iter().all(|e| e["op"] == "add_members" && e["user_ids"] == serde_json::json!([id])));
    let g = api.fake.insert_group(super::super::FakeGroup::new("Ops", &[id]));
    api.fake.modify_group(g, |g| {
        g.members.push(hamlet);
        g.description = "Ops team".into();
    });
    let events = api.drain(&queue, &mut last).await;
    assert_eq!(
        signatures(&events),
        vec!["user_group/add ", "user_group/add_members ", "user_group/update description"]
    );
    api.fake.shutdown().await;
}

#[tokio::test]
async fn heartbeat_bad_queue_pruning_and_expiry() {
    let api = Api::start(fake().event_heartbeat(Duration::from_millis(100))).await;
    let queue = api.register().await;
    let (status, body) = api.call("GET", "/events", &[("queue_id", &queue), ("last_event_id", "-1")]).await;
    assert_eq!((status, body["events"][0]["type"].as_str()), (200, Some("heartbeat")));
    assert_eq!(body["events"][0]["id"], 0);

    // Acknowledged events are pruned; asking again for them fails like Zulip.
    let (status, _) = api
        .call("GET", "/events", &[("queue_id", &queue), ("last_event_id", "0"), ("dont_block", "true")])
        .await;
    assert_eq!(status, 200);
    let (status, body) = api
        .call("GET", "/events", &[("queue_id", &queue), ("last_event_id", "-1"), ("dont_block", "true")])
        .await;
    assert_eq!(
        (status, body["msg"].as_str()),
        (400, Some("An event newer than -1 has already been pruned!"))
    );

    // Another account's queue looks unknown.
    let (status, body) = api
        .call_as(
            (OTHER, OTHER_KEY),
            "GET",
            "/events",
            &[("queue_id", &queue), ("last_event_id", "0"), ("dont_block", "true")],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["queue_id"].as_str()),
        (400, Some("BAD_EVENT_QUEUE_ID"), Some(queue.as_str()))
    );

    // Expiry wakes a pending poll with BAD_EVENT_QUEUE_ID.
    api.fake.set_event_heartbeat(Duration::from_secs(30));
    let pending = {
        let http = api.http.clone();
        let url = format!("{}api/v1/events", api.fake.base_url());
        let queue = queue.clone();
        tokio::spawn(async move {
            let resp = http
                .get(url)
                .basic_auth(OWNER, Some(KEY))
                .query(&[("queue_id", queue.as_str()), ("last_event_id", "0")])
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    while api.fake.requests().iter().filter(|r| r.path == "/api/v1/events").count() < 5 {
        tokio::task::yield_now().await;
    }
    api.fake.expire_event_queues();
    let (status, body) = pending.await.unwrap();
    assert_eq!((status, body["code"].as_str()), (400, Some("BAD_EVENT_QUEUE_ID")), "{body}");

    // DELETE, then the queue is gone.
    let queue = api.register().await;
    assert_eq!(api.call("DELETE", "/events", &[("queue_id", &queue)]).await.0, 200);
    let (status, body) = api.call("DELETE", "/events", &[("queue_id", &queue)]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("BAD_EVENT_QUEUE_ID")));
    api.fake.shutdown().await;
}

#[tokio::test]
async fn register_returns_initial_state_only_when_asked() {
    let api = Api::start(fake()).await;
    let (_, bare) = api
        .call("POST", "/register", &[("event_types", "[\"realm_user\"]"), ("fetch_event_types", "[]")])
        .await;
    assert_eq!(bare["last_event_id"], -1);
    assert!(bare.get("realm_users").is_none());
    let (_, full) = api
        .call(
            "POST",
            "/register",
            &[
                ("event_types", "[\"realm_user\", \"user_group\"]"),
                ("fetch_event_types", "[\"realm_user\", \"realm_user_groups\"]"),
            ],
        )
        .await;
    let users = full["realm_users"].as_array().unwrap();
    assert!(
        !users.is_empty() && users.iter().all(|u| u.get("is_active").is_none()),
        "no is_active in realm_users"
    );
    assert!(full["realm_user_groups"].as_array().is_some_and(|g| !g.is_empty()));
    let (status, body) = api.call("POST", "/register", &[("event_types", "realm_user")]).await;
    assert_eq!((status, body["msg"].as_str()), (400, Some("event_types is not valid JSON")));
    api.fake.shutdown().await;
}

#[tokio::test]
async fn profile_field_events_reach_only_the_queues_that_asked() {
    let api = Api::start(fake()).await;
    let register = |types: Option<&'static str>| {
        let api = &api;
        async move {
            let form: Vec<(&str, &str)> = types.map(|t| vec![("event_types", t)]).unwrap_or_default();
            let (status, body) = api.call("POST", "/register", &form).await;
            assert_eq!(status, 200, "{body}");
            body["queue_id"].as_str().unwrap().to_string()
        }
    };
    let fields = register(Some(r#"["custom_profile_fields"]"#)).await;
    let users = register(Some(r#"["realm_user"]"#)).await;
    let all = register(None).await;
    let (mut f, mut u, mut a) = (-1, -1, -1);

    let (status, body) =
        api.call("POST", "/realm/profile_fields", &[("name", "External ID"), ("field_type", "1")]).await;
    assert_eq!((status, body["id"].as_u64()), (200, Some(2)), "{body}");
    let got = api.drain(&fields, &mut f).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "custom_profile_fields");
    let names: Vec<&str> =
        got[0]["fields"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Phone number", "External ID"], "the whole list, in order");
    assert_eq!(
        got[0]["fields"][1],
        serde_json::json!({"id": 2, "name": "External ID", "type": 1, "hint": "", "field_data": "",
                           "order": 2, "required": false, "editable_by_user": true})
    );
    assert!(api.drain(&users, &mut u).await.is_empty(), "realm_user queues do not get it");
    assert_eq!(api.drain(&all, &mut a).await.len(), 1, "queues without event_types get everything");

    // Values: a set carries rendered_value, a clear is {id, value: null}.
    let hamlet = api.fake.user_by_email("hamlet@zulip.example.com").unwrap().user_id;
    let path = format!("/users/{hamlet}");
    let (status, _) = api.call("PATCH", &path, &[("profile_data", r#"[{"id": 2, "value": "a<b"}]"#)]).await;
    assert_eq!(status, 200);
    let got = api.drain(&users, &mut u).await;
    assert_eq!(
        got[0]["person"],
        serde_json::json!({"user_id": hamlet, "custom_profile_field": {"id": 2, "value": "a<b", "rendered_value": "<p>a&lt;b</p>"}})
    );
    // The same value again changes nothing and sends nothing.
    api.call("PATCH", &path, &[("profile_data", r#"[{"id": 2, "value": "a<b"}]"#)]).await;
    assert!(api.drain(&users, &mut u).await.is_empty());
    api.fake.set_profile_value(hamlet, 2, None);
    let got = api.drain(&users, &mut u).await;
    assert_eq!(
        got[0]["person"],
        serde_json::json!({"user_id": hamlet, "custom_profile_field": {"id": 2, "value": null}})
    );
    // Clearing an unset field sends nothing.
    api.call("PATCH", &path, &[("profile_data", r#"[{"id": 2, "value": ""}]"#)]).await;
    assert!(api.drain(&users, &mut u).await.is_empty());

    // Rename and delete: the list again; deletion sends nothing per user.
    api.fake.set_profile_value(hamlet, 2, Some("x".into()));
    api.drain(&users, &mut u).await;
    api.fake.rename_profile_field(2, "Employee ID");
    let got = api.drain(&fields, &mut f).await;
    assert_eq!(got[0]["fields"][1]["name"], "Employee ID");
    api.fake.delete_profile_field(2);
    let got = api.drain(&fields, &mut f).await;
    assert_eq!(got[0]["fields"].as_array().unwrap().len(), 1);
    assert!(api.drain(&users, &mut u).await.is_empty());
    assert_eq!(api.fake.profile_value(hamlet, 2), None);
    let types: Vec<String> = api.drain(&all, &mut a).await.iter().map(|e| e["type"].to_string()).collect();
    assert_eq!(types.iter().filter(|t| t.contains("custom_profile_fields")).count(), 2);
    api.fake.shutdown().await;
}

#[tokio::test]
async fn register_returns_the_profile_fields_when_asked() {
    let api = Api::start(fake()).await;
    let (_, body) = api.call("POST", "/register", &[("event_types", r#"["custom_profile_fields"]"#)]).await;
    assert_eq!(body["custom_profile_fields"][0]["name"], "Phone number");
    assert_eq!(
        body["custom_profile_field_types"]["SHORT_TEXT"],
        serde_json::json!({"id": 1, "name": "Text (short)"})
    );
    assert!(body.get("realm_users").is_none());
    let (_, body) = api.call("POST", "/register", &[("event_types", r#"["realm_user"]"#)]).await;
    assert!(body.get("custom_profile_fields").is_none());
    api.fake.shutdown().await;
}
