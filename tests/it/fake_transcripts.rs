//! Replays real Zulip exchanges (tests/fixtures/zulip-transcripts) against `FakeZulip` over
//! real HTTP, asserting status, `result`, `code`, `msg`, key headers and success shapes.
//! Ids differ from the transcripts': users and groups each have a transcript→fake map.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use fake_zulip::{
    Failure, FakeGroup, FakeProfileField, FakeUser, FakeZulip, RateLimitRules, DEMO_API_KEY,
    DEMO_SERVICE_EMAIL,
};
use serde_json::{json, Map, Value};

const USERS: &str = include_str!("../fixtures/zulip-transcripts/users.json");
const GROUPS: &str = include_str!("../fixtures/zulip-transcripts/user-groups.json");
const AUTH: &str = include_str!("../fixtures/zulip-transcripts/auth-and-errors.json");
const RATE: &str = include_str!("../fixtures/zulip-transcripts/rate-limit.json");
const SETTINGS: &str = include_str!("../fixtures/zulip-transcripts/server-settings.json");
const PROFILE: &str = include_str!("../fixtures/zulip-transcripts/profile-fields.json");
const EVENTS: &str = include_str!("../fixtures/zulip-transcripts/events.json");

const OWNER_KEY: &str = "ownerkeyownerkeyownerkeyownerkey";
const ADMIN_KEY: &str = "adminkeyadminkeyadminkeyadminkey";
const MEMBER_KEY: &str = "memberkeymemberkeymemberkeymembe";
const ADMIN2_KEY: &str = "admin2keyadmin2keyadmin2keyadmin";
const BOT_KEY: &str = "botkeybotkeybotkeybotkeybotkey12";
const MEMBER2_KEY: &str = "member2keymember2keymember2keyme";
const DAVE_KEY: &str = "davekeydavekeydavekeydavekeydave";

const SYSTEM: [(u64, &str); 8] = [
    (9, "role:nobody"),
    (10, "role:owners"),
    (11, "role:administrators"),
    (12, "role:moderators"),
    (13, "role:fullmembers"),
    (14, "role:members"),
    (15, "role:everyone"),
    (16, "role:internet"),
];

/// The dev realm's custom profile fields (ids 1 to 9): name, type, hint, field_data.
const DEV_FIELDS: [(&str, u8, &str, &str); 9] = [
    ("Phone number", 1, "", ""),
    ("Biography", 2, "What are you known for?", ""),
    ("Favorite food", 1, "Or drink, if you'd prefer", ""),
    ("Favorite editor", 3, "", r#"{"0":{"text":"Vim","order":"1"},"1":{"text":"Emacs","order":"2"}}"#),
    ("Birthday", 4, "", ""),
    ("Favorite website", 5, "Or your personal blog's URL", ""),
    ("Mentor", 6, "", ""),
    ("GitHub username", 7, "", r#"{"subtype":"github"}"#),
    ("Pronouns", 8, "What pronouns should people use to refer to you?", ""),
];

fn load(text: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(text).expect("transcript parses")
}

/// A fake seeded like the transcripts' dev realm (FL 313, host zulipdev.com, visibility
/// "admins only"), plus the id maps and credentials of the `auth` labels.
struct Replay {
    fake: FakeZulip,
    http: reqwest::Client,
    users: HashMap<u64, u64>,
    groups: HashMap<u64, u64>,
    creds: HashMap<&'static str, (String, String)>,
}

impl Replay {
    async fn dev_realm() -> Replay {
        let mut owner = FakeUser::new("desdemona@zulip.com", "Desdemona").role(100).api_key(OWNER_KEY);
        owner.can_create_users = true;
        owner.can_change_user_emails = true;
        // The dev realm has several owners; a second one keeps "last owner" rules quiet.
        let fake = FakeZulip::builder()
            .feature_level(313)
            .realm_host("zulipdev.com")
            .with_system_groups()
            .with_user(owner)
            .with_user(FakeUser::new("othello@zulip.com", "Othello, the Moor of Venice").role(100))
            .with_user(FakeUser::new("iago@zulip.com", "Iago").role(200).api_key(ADMIN_KEY))
            .with_user(FakeUser::new("hamlet@zulip.com", "King Hamlet").api_key(MEMBER_KEY))
            .start()
            .await
            .expect("fake starts");
        let by = |e: &str| fake.user_by_email(e).expect("seeded").user_id;
        for (name, field_type, hint, data) in DEV_FIELDS {
            fake.insert_profile_field(FakeProfileField::new(name, field_type).hint(hint).field_data(data));
        }
        // King Hamlet's profile (users.json #21; the mentor is iago, 11).
        let mentor = format!("[{}]", by("iago@zulip.com"));
        fake.modify_user(by("hamlet@zulip.com"), |u| {
            let values = [
                "+0-11-23-456-7890",
                "I am:\n* The prince of Denmark\n* Nephew to the usurping Claudius",
                "Dark chocolate",
                "0",
                "1900-01-01",
                "https://blog.zulig.org",
                &mentor,
                "zulipbot",
                "he/him",
            ];
            u.profile_data = (1..).zip(values.map(str::to_string)).collect();
        });
        let mut bot = FakeUser::new("commit-bot@zulip.com", "Zulip Commit Bot").bot();
        bot.bot_owner_id = Some(by("desdemona@zulip.com"));
        let bot_id = fake.insert_user(bot);
        let mut users = HashMap::from([
            (9, by("desdemona@zulip.com")),
            (10, by("hamlet@zulip.com")),
            (11, by("iago@zulip.com")),
            (21, bot_id),
        ]);
        users.insert(999_999, 999_999);
        let groups = SYSTEM
            .iter()
            .map(|(tid, name)| (*tid, fake.group_by_name(name).expect("system group").id))
            .collect();
        let creds = HashMap::from([
            ("owner", ("desdemona@zulip.com".into(), OWNER_KEY.into())),
            ("admin", ("iago@zulip.com".into(), ADMIN_KEY.into())),
            ("member", ("hamlet@zulip.com".into(), MEMBER_KEY.into())),
        ]);
        Replay { fake, http: reqwest::Client::new(), users, groups, creds }
    }

    fn map_user(&self, id: u64) -> u64 {
        *self.users.get(&id).unwrap_or(&id)
    }

    fn map_group(&self, id: u64) -> u64 {
        *self.groups.get(&id).unwrap_or(&id)
    }

    fn rev_user(&self, id: u64) -> u64 {
        self.users.iter().find(|(_, f)| **f == id).map_or(id, |(t, _)| *t)
    }

    fn rev_group(&self, id: u64) -> u64 {
        self.groups.iter().find(|(_, f)| **f == id).map_or(id, |(t, _)| *t)
    }

    fn map_path(&self, path: &str) -> String {
        let segs: Vec<&str> = path.split('/').collect();
        let mut out = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let prev = if i > 0 { segs[i - 1] } else { "" };
            let prev2 = if i > 1 { segs[i - 2] } else { "" };
            let mapped = match s.parse::<u64>() {
                Ok(n) if prev == "users" || (prev == "members" && !prev2.is_empty()) => {
                    self.map_user(n).to_string()
                }
                Ok(n) if prev == "user_groups" => self.map_group(n).to_string(),
                // A dummy API email names a user id too.
                _ => match s
                    .strip_prefix("user")
                    .and_then(|r| r.strip_suffix("@zulipdev.com"))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    Some(n) => format!("user{}@zulipdev.com", self.map_user(n)),
                    None => (*s).to_string(),
                },
            };
            out.push(mapped);
        }
        out.join("/")
    }

    /// Group-setting value (transcript ids → fake ids, or the reverse with `rev`).
    fn map_setting(&self, v: &Value, rev: bool) -> Value {
        let g = |n: u64| {
            if rev {
                self.rev_group(n)
            } else {
                self.map_group(n)
            }
        };
        let u = |n: u64| {
            if rev {
                self.rev_user(n)
            } else {
                self.map_user(n)
            }
        };
        match v {
            Value::Number(n) => json!(g(n.as_u64().unwrap())),
            Value::Object(o) => {
                let mut m = Map::new();
                for (k, x) in o {
                    let mapped = match (k.as_str(), x) {
                        ("direct_members", Value::Array(a)) => {
                            json!(a.iter().map(|i| u(i.as_u64().unwrap())).collect::<Vec<_>>())
                        }
                        ("direct_subgroups", Value::Array(a)) => {
                            json!(a.iter().map(|i| g(i.as_u64().unwrap())).collect::<Vec<_>>())
                        }
                        _ => self.map_setting(x, rev),
                    };
                    m.insert(k.clone(), mapped);
                }
                Value::Object(m)
            }
            other => other.clone(),
        }
    }

    fn map_form_value(&self, key: &str, value: &str) -> String {
        let Ok(v) = serde_json::from_str::<Value>(value) else {
            return value.to_string();
        };
        let ids = |f: &dyn Fn(u64) -> u64| match &v {
            Value::Array(a) => {
                json!(a.iter().map(|i| i.as_u64().map_or(i.clone(), |n| json!(f(n)))).collect::<Vec<_>>())
                    .to_string()
            }
            _ => value.to_string(),
        };
        match key {
            "members" | "add" | "delete" | "user_ids" => ids(&|n| self.map_user(n)),
            // Person-picker values are user ids; field ids are the transcript's.
            "profile_data" => match &v {
                Value::Array(items) => {
                    let mapped: Vec<Value> = items
                        .iter()
                        .map(|item| {
                            let mut item = item.clone();
                            if let Some(Value::Array(ids)) = item.get_mut("value") {
                                for id in ids.iter_mut() {
                                    if let Some(n) = id.as_u64() {
                                        *id = json!(self.map_user(n));
                                    }
                                }
                            }
                            item
                        })
                        .collect();
                    Value::Array(mapped).to_string()
                }
                _ => value.to_string(),
            },
            "subgroups" | "add_subgroups" | "delete_subgroups" => ids(&|n| self.map_group(n)),
            k if k.starts_with("can_") => self.map_setting(&v, false).to_string(),
            _ => value.to_string(),
        }
    }

    /// Maps the user id inside the few messages that carry one.
    fn map_msg(&self, msg: &str) -> String {
        for prefix in
            ["Invalid user ID: ", "Invalid user IDs: ", "User with ID ", "User ", "There is no member '"]
        {
            if let Some(rest) = msg.strip_prefix(prefix) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(n) = digits.parse::<u64>() {
                    return format!("{prefix}{}{}", self.map_user(n), &rest[digits.len()..]);
                }
            }
        }
        msg.to_string()
    }

    async fn send(&self, ex: &Value) -> (u16, reqwest::header::HeaderMap, String) {
        let req = &ex["request"];
        let method = reqwest::Method::from_bytes(req["method"].as_str().unwrap().as_bytes()).expect("method");
        let url = format!(
            "{}{}",
            self.fake.base_url().as_str().trim_end_matches('/'),
            self.map_path(req["path"].as_str().unwrap())
        );
        let mut rb = self.http.request(method, url);
        if let Some(q) = req["query"].as_object() {
            let q: Vec<(String, String)> =
                q.iter().map(|(k, v)| (k.clone(), self.map_form_value(k, v.as_str().unwrap()))).collect();
            rb = rb.query(&q);
        }
        if let Some(f) = req["form"].as_object() {
            let f: Vec<(String, String)> =
                f.iter().map(|(k, v)| (k.clone(), self.map_form_value(k, v.as_str().unwrap()))).collect();
            rb = rb.form(&f);
        }
        if let Some((email, key)) = self.creds.get(req["auth"].as_str().unwrap_or("none")) {
            rb = rb.basic_auth(email, Some(key));
        }
        let resp = rb.send().await.expect("fake answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    }

    /// Sends `ex` and asserts what the transcript makes deterministic.
    async fn replay(&self, i: usize, ex: &Value) -> Value {
        let title = ex["title"].as_str().unwrap_or_default();
        let (status, headers, text) = self.send(ex).await;
        let want = &ex["response"];
        assert_eq!(status, want["status"].as_u64().unwrap() as u16, "#{i} {title}: {text}");
        let want_ct = want["headers"]["Content-Type"].as_str().unwrap_or_default();
        let got_ct = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert_eq!(got_ct, want_ct, "#{i} {title}: content type");
        for h in ["WWW-Authenticate", "Retry-After", "X-RateLimit-Limit"] {
            assert_eq!(headers.contains_key(h), want["headers"].get(h).is_some(), "#{i} {title}: header {h}");
        }
        let body = &want["body"];
        if body.get("non_json").is_some() {
            assert!(serde_json::from_str::<Value>(&text).is_err() || text.is_empty());
            return Value::Null;
        }
        let got: Value = serde_json::from_str(&text).expect("JSON body");
        assert_eq!(got["result"], body["result"], "#{i} {title}: {text}");
        assert_eq!(got.get("code"), body.get("code"), "#{i} {title}: {text}");
        if let Some(msg) = body["msg"].as_str() {
            assert_eq!(got["msg"], json!(self.map_msg(msg)), "#{i} {title}");
        }
        if let Some(want_objections) = body.get("objections") {
            let got_objections: Vec<Value> = got["objections"]
                .as_array()
                .expect("objections")
                .iter()
                .map(|o| {
                    let mut o = o.as_object().unwrap().clone();
                    if let Some(g) = o.get("group_id").and_then(Value::as_u64) {
                        o.insert("group_id".into(), json!(self.rev_group(g)));
                    }
                    if let Some(a) = o.get("supergroup_ids").and_then(Value::as_array) {
                        let ids: Vec<u64> = a.iter().map(|x| self.rev_group(x.as_u64().unwrap())).collect();
                        o.insert("supergroup_ids".into(), json!(ids));
                    }
                    Value::Object(o)
                })
                .collect();
            assert_eq!(&json!(got_objections), want_objections, "#{i} {title}: objections");
        }
        for extra in
            ["var_name", "allowed_methods", "ignored_parameters_unsupported", "is_last_owner", "entity"]
        {
            assert_eq!(got.get(extra), body.get(extra), "#{i} {title}: {extra}");
        }
        if body["result"] == "success" {
            assert_eq!(keys(&got), keys(body), "#{i} {title}: top-level keys");
            self.check_users(i, title, &got, body);
            self.check_groups(i, title, &got, body);
            if let Some(fields) = body.get("custom_fields") {
                // The fake numbers fields like the dev realm: the whole list, byte for byte.
                assert_eq!(got["custom_fields"].to_string(), fields.to_string(), "#{i} {title}");
            }
        }
        got
    }

    fn norm_user(&self, u: &Value) -> Value {
        let mut u = u.as_object().unwrap().clone();
        let id = self.rev_user(u["user_id"].as_u64().unwrap());
        u.insert("user_id".into(), json!(id));
        if let Some(email) = u["email"].as_str() {
            if let Some(n) = email
                .strip_prefix("user")
                .and_then(|r| r.strip_suffix("@zulipdev.com"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                u.insert("email".into(), json!(format!("user{}@zulipdev.com", self.rev_user(n))));
            }
        }
        if let Some(owner) = u.get("bot_owner_id").and_then(Value::as_u64) {
            u.insert("bot_owner_id".into(), json!(self.rev_user(owner)));
        }
        // Person-picker values ("[10,9]") name users.
        if let Some(Value::Object(profile)) = u.get_mut("profile_data") {
            for entry in profile.values_mut() {
                let ids = entry["value"].as_str().and_then(|v| serde_json::from_str::<Vec<u64>>(v).ok());
                if let Some(ids) = ids {
                    let ids: Vec<u64> = ids.into_iter().map(|n| self.rev_user(n)).collect();
                    entry["value"] = json!(json!(ids).to_string());
                }
            }
        }
        Value::Object(u)
    }

    fn check_user(&self, i: usize, title: &str, got: &Value, want: &Value) {
        let got = self.norm_user(got);
        assert_eq!(keys(&got), keys(want), "#{i} {title}: user keys");
        for f in [
            "user_id",
            "email",
            "role",
            "is_admin",
            "is_owner",
            "is_guest",
            "is_bot",
            "is_active",
            "delivery_email",
            "full_name",
            "bot_type",
            "bot_owner_id",
        ] {
            assert_eq!(got.get(f), want.get(f), "#{i} {title}: user field {f}");
        }
        assert_eq!(got["avatar_url"].is_null(), want["avatar_url"].is_null(), "#{i} avatar");
        if let Some(profile) = want.get("profile_data") {
            // Byte for byte: keys (field ids as strings) in order, rendered_value only for text.
            assert_eq!(got["profile_data"].to_string(), profile.to_string(), "#{i} {title}: profile_data");
        }
        let minute = got["date_joined"].as_str().unwrap();
        assert_eq!(minute.len(), "2026-11-24T01:27+00:00".len(), "#{i} date_joined {minute}");
    }

    fn check_users(&self, i: usize, title: &str, got: &Value, want: &Value) {
        if let Some(u) = want.get("user") {
            self.check_user(i, title, &got["user"], u);
        }
        if want.get("user_id").is_some() && want.get("full_name").is_some() {
            self.check_user(i, title, got, want); // GET /users/me
        }
        if let Some(list) = want["members"].as_array().filter(|l| l.iter().all(Value::is_object)) {
            for w in list {
                let tid = w["user_id"].as_u64().unwrap();
                let fid = self.map_user(tid);
                let g = got["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|u| u["user_id"] == json!(fid))
                    .unwrap_or_else(|| panic!("#{i} {title}: user {tid} missing"));
                self.check_user(i, title, g, w);
            }
        }
        if let Some(ids) = want["members"].as_array().filter(|l| l.iter().all(Value::is_u64)) {
            let w: BTreeSet<u64> = ids.iter().map(|v| v.as_u64().unwrap()).collect();
            let g: BTreeSet<u64> = got["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| self.rev_user(v.as_u64().unwrap()))
                .collect();
            assert_eq!(g, w, "#{i} {title}: member ids");
        }
    }

    fn norm_group(&self, g: &Value) -> Value {
        let mut g = g.as_object().unwrap().clone();
        for (k, v) in g.clone() {
            let mapped = match k.as_str() {
                "id" => json!(self.rev_group(v.as_u64().unwrap())),
                "creator_id" => v.as_u64().map_or(Value::Null, |n| json!(self.rev_user(n))),
                "members" => {
                    let mut m: Vec<u64> =
                        v.as_array().unwrap().iter().map(|x| self.rev_user(x.as_u64().unwrap())).collect();
                    m.sort_unstable();
                    json!(m)
                }
                "direct_subgroup_ids" => json!(v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| self.rev_group(x.as_u64().unwrap()))
                    .collect::<Vec<_>>()),
                k if k.starts_with("can_") => self.map_setting(&v, true),
                "date_created" => json!(v.is_number()),
                _ => v,
            };
            g.insert(k, mapped);
        }
        Value::Object(g)
    }

    fn check_groups(&self, i: usize, title: &str, got: &Value, want: &Value) {
        let Some(list) = want["user_groups"].as_array() else {
            return;
        };
        for w in list {
            let tid = w["id"].as_u64().unwrap();
            let fid = self.map_group(tid);
            let g = got["user_groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["id"] == json!(fid))
                .unwrap_or_else(|| panic!("#{i} {title}: group {tid} missing"));
            let g = self.norm_group(g);
            let mut w = w.as_object().unwrap().clone();
            w.remove("_trimmed_members");
            w.insert("date_created".into(), json!(w["date_created"].is_number()));
            if let Some(m) = w.get("members").and_then(Value::as_array) {
                let mut m: Vec<u64> = m.iter().map(|x| x.as_u64().unwrap()).collect();
                m.sort_unstable();
                w.insert("members".into(), json!(m));
            }
            if w["is_system_group"] == json!(true) {
                // The dev realm's system groups hold other people: compare the shape only.
                assert_eq!(keys(&g), keys(&Value::Object(w)), "#{i} {title}: system group");
            } else {
                assert_eq!(g, Value::Object(w), "#{i} {title}: group {tid}");
            }
        }
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().filter(|k| !k.starts_with('_')).cloned().collect()).unwrap_or_default()
}

fn form_field<'a>(ex: &'a Value, key: &str) -> &'a str {
    ex["request"]["form"][key].as_str().unwrap()
}

#[tokio::test]
async fn users_transcript_replays_against_the_fake() {
    let mut r = Replay::dev_realm().await;
    let ex = load(USERS);
    for (i, e) in ex.iter().enumerate() {
        match i {
            // Dev server accepted the weak password "abc"; production (and the fake) refuse it:
            // covered by `weak_password_is_refused_like_production`.
            9 => {
                r.users.insert(229, 229);
                continue;
            }
            // POST /bots is not part of the fake: add the bot out of band.
            84 => {
                let mut bot = FakeUser::new("zt-4az4k5-bot@zulipdev.com", "ZtBot 4az4k5").bot();
                bot.bot_owner_id = Some(r.map_user(9));
                let id = r.fake.insert_user(bot);
                r.users.insert(233, id);
                continue;
            }
            88 => {
                r.fake.modify_user(r.map_user(233), |u| u.is_active = false);
                continue;
            }
            // The sole-owner realm: `last_owner_rules_match_the_transcript`.
            96.. => continue,
            _ => {}
        }
        let got = r.replay(i, e).await;
        // Learn the ids the fake assigned.
        if let (Some(tid), Some(fid)) = (e["response"]["body"]["user_id"].as_u64(), got["user_id"].as_u64()) {
            if e["request"]["method"] == "POST" {
                r.users.insert(tid, fid);
            }
        }
        if i == 13 {
            // The promoted admin gets a key for the "admin-without-can-create-users" label.
            let id = r.map_user(231);
            r.fake.modify_user(id, |u| u.api_key = Some(ADMIN2_KEY.into()));
            let email = r.fake.user(id).unwrap().delivery_email;
            r.creds.insert("admin-without-can-create-users", (email, ADMIN2_KEY.into()));
        }
    }
    // The state the transcript ends in.
    let alice = r.fake.user(r.map_user(227)).unwrap();
    assert_eq!(alice.delivery_email, "zt-4az4k5-alice2@example.com");
    assert_eq!(alice.full_name, "Alice ByEmail Zt4az4k5");
    assert!(r.fake.user(r.map_user(232)).unwrap().is_active);
    assert!(!r.fake.user(r.map_user(228)).unwrap().is_active);
    r.fake.shutdown().await;
}

#[tokio::test]
async fn weak_password_is_refused_like_production() {
    let r = Replay::dev_realm().await;
    let ex = &load(USERS)[9];
    let resp = r
        .http
        .post(format!("{}api/v1/users", r.fake.base_url()))
        .basic_auth("desdemona@zulip.com", Some(OWNER_KEY))
        .form(&[
            ("email", form_field(ex, "email")),
            ("password", "abc"),
            ("full_name", form_field(ex, "full_name")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["msg"], "The password is too weak.");
    assert_eq!(body["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn last_owner_rules_match_the_transcript() {
    let fake = FakeZulip::builder()
        .feature_level(313)
        .realm_host("zt4az4k5.127.0.0.1")
        .service_account("solo-owner-4az4k5@example.com", OWNER_KEY)
        .start()
        .await
        .unwrap();
    let solo = fake.user_by_email("solo-owner-4az4k5@example.com").unwrap().user_id;
    let r = Replay {
        fake: fake.clone(),
        http: reqwest::Client::new(),
        users: HashMap::from([(234, solo)]),
        groups: HashMap::new(),
        creds: HashMap::from([("sole-owner", ("solo-owner-4az4k5@example.com".into(), OWNER_KEY.into()))]),
    };
    let ex = load(USERS);
    fake.modify_user(solo, |u| u.full_name = "Solo Owner".into());
    // 96 (GET /users/me) shows visibility "everyone" for this realm's owner.
    fake.modify_user(solo, |u| u.email_address_visibility = 1);
    for (i, e) in ex.iter().enumerate().take(100).skip(96) {
        r.replay(i, e).await;
    }
    fake.insert_user(FakeUser::new("second@example.com", "Second Member"));
    r.replay(100, &ex[100]).await;
    fake.shutdown().await;
}

#[tokio::test]
async fn profile_fields_transcript_replays_against_the_fake() {
    let mut r = Replay::dev_realm().await;
    // The transcript's users as users.json left them: alice (227) and bob (228, deactivated).
    let alice = r.fake.insert_user(FakeUser::new("zt-4az4k5-alice2@example.com", "Alice ByEmail Zt4az4k5"));
    let bob = r.fake.insert_user(FakeUser::new("zt-4az4k5-bob@example.com", "Bob Zt4az4k5").deactivated());
    r.users.insert(227, alice);
    r.users.insert(228, bob);
    for (i, e) in load(PROFILE).iter().enumerate() {
        let got = r.replay(i, e).await;
        if e["request"]["method"] == "POST" && e["response"]["status"] == 200 {
            assert_eq!(got["id"], e["response"]["body"]["id"], "#{i}: ids follow the dev realm's");
        }
    }
    // The state the transcript ends in: the three new fields are gone, with their values.
    let names: Vec<String> = r.fake.profile_fields().into_iter().map(|f| f.name).collect();
    assert_eq!(names, DEV_FIELDS.map(|(name, ..)| name.to_string()));
    assert!(r.fake.user(alice).unwrap().profile_data.is_empty());
    r.fake.shutdown().await;
}

#[tokio::test]
async fn profile_data_event_matches_the_transcript() {
    let mut r = Replay::dev_realm().await;
    let eve = r.fake.insert_user(FakeUser::new("zt-4az4k5m2j-eve@example.com", "Eve Zt4az4k5m2j"));
    r.users.insert(240, eve);
    let ex = load(EVENTS);
    assert_eq!(ex[0]["request"]["form"]["event_types"], r#"["realm_user", "user_group"]"#);
    let (status, _, text) = r.send(&ex[0]).await;
    assert_eq!(status, 200, "{text}");
    let queue = serde_json::from_str::<Value>(&text).unwrap()["queue_id"].as_str().unwrap().to_string();
    r.replay(21, &ex[21]).await;
    let events: Value = r
        .http
        .get(format!("{}api/v1/events", r.fake.base_url()))
        .basic_auth("desdemona@zulip.com", Some(OWNER_KEY))
        .query(&[("queue_id", queue.as_str()), ("last_event_id", "-1"), ("dont_block", "true")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = events["events"].as_array().unwrap();
    let want = ex[22]["response"]["body"]["events"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{events}");
    for (g, w) in got.iter().zip(want) {
        let mut g = g.clone();
        assert_eq!(g["person"]["user_id"], json!(eve));
        g["person"]["user_id"] = json!(240);
        g["id"] = w["id"].clone();
        assert_eq!(g.to_string(), w.to_string(), "byte for byte but the ids");
    }
    r.fake.shutdown().await;
}

#[tokio::test]
async fn user_groups_transcript_replays_against_the_fake() {
    let mut r = Replay::dev_realm().await;
    let ex = load(GROUPS);
    // Users the group transcript refers to, created the way users.json made them.
    let mut add = |tid: u64, email: &str, active: bool| {
        let mut u = FakeUser::new(email, email);
        u.is_active = active;
        let id = r.fake.insert_user(u);
        r.users.insert(tid, id);
    };
    add(227, "zt-4az4k5-alice@example.com", true);
    add(228, "zt-4az4k5-bob@example.com", false);
    add(232, "zt-4az4k5-carol@example.com", true);
    // Transcript group ids by name, learned from the listing bodies.
    let mut names: HashMap<String, u64> = HashMap::new();
    for e in &ex {
        for g in e["response"]["body"]["user_groups"].as_array().into_iter().flatten() {
            names.insert(g["name"].as_str().unwrap().to_string(), g["id"].as_u64().unwrap());
        }
    }
    names.insert("zt-4az4k5494-alpha".into(), 59);
    for (i, e) in ex.iter().enumerate() {
        if i == 0 {
            // POST /bots is not part of the fake: the generic bot caller, added out of band.
            let mut bot = FakeUser::new("ztg-4az4k5494-bot@zulipdev.com", "ZtGroupBot").bot();
            bot.api_key = Some(BOT_KEY.into());
            bot.bot_owner_id = Some(r.map_user(9));
            let id = r.fake.insert_user(bot);
            r.users.insert(237, id);
            r.creds.insert("bot", ("ztg-4az4k5494-bot@zulipdev.com".into(), BOT_KEY.into()));
            continue;
        }
        // GET …/members with subgroups: the dev realm's other members are not modelled,
        // but the ids here are all ours, so everything is compared.
        r.replay(i, e).await;
        if e["request"]["path"] == "/api/v1/user_groups/create" && e["response"]["status"] == 200 {
            let name = form_field(e, "name");
            let fid = r.fake.group_by_name(name).expect("created").id;
            if let Some(tid) = names.get(name) {
                r.groups.insert(*tid, fid);
            }
        }
    }
    let alpha = r.fake.group(r.map_group(59)).unwrap();
    assert_eq!(alpha.name, "zt-4az4k5494-alpha-renamed");
    assert!(r.fake.group(r.map_group(82)).unwrap().deactivated);
    r.fake.shutdown().await;
}

#[tokio::test]
async fn auth_failures_match_the_transcript() {
    let mut r = Replay::dev_realm().await;
    let ex = load(AUTH);
    let base = r.fake.base_url();
    let me = format!("{base}api/v1/users/me");
    let client = r.http.clone();
    let raw = |auth: &str| {
        let http = client.clone();
        let me = me.clone();
        let auth = auth.to_string();
        async move {
            let resp = http.get(&me).header("Authorization", auth).send().await.unwrap();
            (resp.headers().clone(), resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let check = |i: usize, got: (reqwest::header::HeaderMap, u16, Value)| {
        let want = &ex[i]["response"];
        assert_eq!(got.1, want["status"].as_u64().unwrap() as u16, "#{i}");
        assert_eq!(got.2["msg"], want["body"]["msg"], "#{i}");
        assert_eq!(got.2["code"], want["body"]["code"], "#{i}");
        assert_eq!(
            got.0.get("www-authenticate").map(|v| v.to_str().unwrap().to_string()),
            want["headers"]["WWW-Authenticate"].as_str().map(str::to_string),
            "#{i}"
        );
    };
    let basic = |email: &str, key: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{email}:{key}")))
    };
    r.replay(0, &ex[0]).await;
    r.replay(1, &ex[1]).await;
    check(3, raw(&basic("hamlet@zulip.com", &"A".repeat(32))).await);
    check(4, raw(&basic("hamlet@zulip.com", "abc")).await);
    check(5, raw(&basic("hamlet@zulip.com", "")).await);
    check(6, raw(&basic("desdemona@zulip.com", MEMBER_KEY)).await);
    check(7, raw(&basic("nobody@zulip.com", MEMBER_KEY)).await);
    let upper = raw(&basic("HAMLET@ZULIP.COM", MEMBER_KEY)).await;
    assert_eq!(upper.1, 200);
    assert!(upper.0.contains_key("x-ratelimit-remaining"));
    assert_eq!(upper.2["user_id"], json!(r.map_user(10)));
    let dummy = format!("user{}@zulipdev.com", r.map_user(10));
    check(9, raw(&basic(&dummy, MEMBER_KEY)).await);
    check(10, raw(&format!("Bearer {MEMBER_KEY}")).await);
    check(11, raw("Basic !!!not-base64!!!").await);
    check(12, raw("Basic bm8tY29sb24taGVyZQ==").await);
    check(13, raw("Digest username=hamlet").await);
    r.replay(14, &ex[14]).await;

    // dave: created, key, deactivated, then his key is refused.
    let got = r.replay(15, &ex[15]).await;
    r.users.insert(238, got["user_id"].as_u64().unwrap());
    r.fake.modify_user(r.map_user(238), |u| u.api_key = Some(DAVE_KEY.into()));
    r.replay(20, &ex[20]).await;
    check(21, raw(&basic(form_field(&ex[15], "email"), DAVE_KEY)).await);

    // Routing: HTML 404s, 405s before auth, /json/*, unknown params, JSON bodies ignored.
    r.users.insert(227, r.map_user(10));
    for i in [23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 34, 35, 37] {
        r.replay(i, &ex[i]).await;
    }
    let resp = r
        .http
        .patch(format!("{base}api/v1/users/{}", r.map_user(10)))
        .basic_auth("desdemona@zulip.com", Some(OWNER_KEY))
        .json(&json!({"full_name": "Json Body"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        r.fake.user(r.map_user(10)).unwrap().full_name,
        "Alice Query Zt4az4k5",
        "the JSON body was ignored; the query-string PATCH (#37) applied"
    );
    r.replay(33, &ex[33]).await;
    let allow = r.http.delete(format!("{base}api/v1/users")).send().await.unwrap();
    assert_eq!(allow.headers()["allow"], "GET, POST, HEAD");
    r.fake.shutdown().await;
}

#[tokio::test]
async fn browser_without_credentials_is_redirected_to_login() {
    let fake = FakeZulip::builder().start().await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http
        .get(format!("{}api/v1/users/me", fake.base_url()))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/login/?next=%2Fapi%2Fv1%2Fusers%2Fme");
    fake.shutdown().await;
}

#[tokio::test]
async fn server_settings_matches_the_transcript_shape() {
    let r = Replay::dev_realm().await;
    let ex = load(SETTINGS);
    let got = r.replay(0, &ex[0]).await;
    assert_eq!(got["zulip_feature_level"], 313);
    assert_eq!(got["zulip_version"], "10.0-dev+git");
    assert_eq!(got["realm_url"].as_str().unwrap(), r.fake.base_url().as_str().trim_end_matches('/'));
    r.replay(1, &ex[1]).await;
    r.replay(3, &ex[3]).await;
    let text = r
        .http
        .post(format!("{}api/v1/server_settings", r.fake.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "", "POST /server_settings has an empty 405 body");
    r.fake.set_feature_level(442);
    let later: Value = r
        .http
        .get(format!("{}api/v1/server_settings", r.fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(later["zulip_feature_level"], 442);
    assert_eq!(later["zulip_version"], "12.0-dev+git");
    r.fake.shutdown().await;
}

#[tokio::test]
async fn rate_limit_counts_down_then_answers_429_with_float_retry_after() {
    let fake = FakeZulip::builder()
        .feature_level(313)
        .realm_host("zulipdev.com")
        .rate_limit(RateLimitRules { rules: vec![(Duration::from_secs(60), 200)] })
        .with_user(FakeUser::new("member2@zulip.com", "Rate Limit").api_key(MEMBER2_KEY))
        .with_user(FakeUser::new("hamlet@zulip.com", "King Hamlet").api_key(MEMBER_KEY))
        .start()
        .await
        .unwrap();
    let ex = load(RATE);
    let http = reqwest::Client::new();
    let me = format!("{}api/v1/users/me", fake.base_url());
    let get = |email: &'static str, key: &'static str, url: String| {
        let http = http.clone();
        async move { http.get(url).basic_auth(email, Some(key)).send().await.unwrap() }
    };
    let header = |r: &reqwest::Response, h: &str| r.headers()[h].to_str().unwrap().to_string();
    for n in 1..=200u32 {
        let resp = get("member2@zulip.com", MEMBER2_KEY, me.clone()).await;
        assert_eq!(resp.status(), 200, "request #{n}");
        assert_eq!(header(&resp, "x-ratelimit-limit"), "200");
        assert_eq!(header(&resp, "x-ratelimit-remaining"), (200 - n).to_string());
        let want = match n {
            1 => Some(&ex[2]),
            2 => Some(&ex[3]),
            100 => Some(&ex[4]),
            200 => Some(&ex[5]),
            _ => None,
        };
        if let Some(want) = want {
            assert_eq!(
                header(&resp, "x-ratelimit-remaining"),
                want["response"]["headers"]["X-RateLimit-Remaining"].as_str().unwrap()
            );
        }
    }
    for (i, url) in [(6, me.clone()), (7, me.clone()), (8, format!("{}api/v1/user_groups", fake.base_url()))]
    {
        let resp = get("member2@zulip.com", MEMBER2_KEY, url).await;
        let want = &ex[i]["response"];
        assert_eq!(resp.status(), 429, "#{i}");
        let retry = header(&resp, "retry-after");
        assert!(retry.contains('.'), "float Retry-After: {retry}");
        let secs: f64 = retry.parse().unwrap();
        assert!(secs > 0.0 && secs <= 60.0);
        assert_eq!(header(&resp, "x-ratelimit-remaining"), "0");
        header(&resp, "x-ratelimit-reset").parse::<u64>().unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], want["body"]["code"]);
        assert_eq!(body["msg"], want["body"]["msg"]);
        assert_eq!(body["result"], "error");
        assert!((body["retry-after"].as_f64().unwrap() - secs).abs() < 1e-9);
    }
    // A different account has its own bucket (#9); a wrong key is a 401 without headers (#10).
    let other = get("hamlet@zulip.com", MEMBER_KEY, me.clone()).await;
    assert_eq!(other.status(), 200);
    assert_eq!(header(&other, "x-ratelimit-remaining"), "199");
    let bad = get("member2@zulip.com", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", me.clone()).await;
    assert_eq!(bad.status(), 401);
    assert!(!bad.headers().contains_key("x-ratelimit-limit"));
    // Lifting the limit out of band lets the account through again.
    fake.set_rate_limit(None);
    let ok = get("member2@zulip.com", MEMBER2_KEY, me).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "x-ratelimit-limit"), "100000");
    fake.shutdown().await;
}

// === fake-specific behaviour (not in the transcripts) ===

async fn demo() -> (FakeZulip, reqwest::Client) {
    let fake = FakeZulip::builder().with_demo_data().start().await.unwrap();
    (fake, reqwest::Client::new())
}

fn api(fake: &FakeZulip, path: &str) -> String {
    format!("{}api/v1/{path}", fake.base_url())
}

#[tokio::test]
async fn demo_data_lists_every_account_with_hidden_emails_null() {
    let (fake, http) = demo().await;
    let body: Value = http
        .get(api(&fake, "users"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let members = body["members"].as_array().unwrap();
    assert_eq!(members.len(), 10);
    let by = |e: &str| members.iter().find(|m| m["full_name"] == e).unwrap_or_else(|| panic!("{e}"));
    assert_eq!(by("Hidden Person")["delivery_email"], Value::Null);
    assert_eq!(by("Othello Gone")["is_active"], false);
    assert_eq!(by("Welcome Bot")["is_bot"], true);
    assert_eq!(by("Iago Admin")["delivery_email"], "iago@zulip.example.com");
    assert!(by("Iago Admin")["email"].as_str().unwrap().starts_with("user"));
    assert_eq!(by("Iago Admin")["is_imported_stub"], false, "FL 442 shape");
    let groups = fake.groups();
    let eng = fake.group_by_name("Engineering").unwrap();
    assert_eq!(eng.members.len(), 2);
    assert_eq!(groups.iter().filter(|g| g.is_system_group).count(), 8);
    fake.shutdown().await;
}

#[tokio::test]
async fn create_group_returns_group_id_from_feature_level_317() {
    let (fake, http) = demo().await;
    let hamlet = fake.user_by_email("hamlet@zulip.example.com").unwrap().user_id;
    let body: Value = http
        .post(api(&fake, "user_groups/create"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .form(&[("name", "QA"), ("description", ""), ("members", &format!("[{hamlet}]"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = body["group_id"].as_u64().expect("group_id at FL 442");
    let g = fake.group(id).unwrap();
    assert_eq!(g.members, vec![hamlet]);
    let creator = fake.user_by_email(DEMO_SERVICE_EMAIL).unwrap().user_id;
    assert_eq!(g.settings["can_manage_group"], json!({"direct_members": [creator], "direct_subgroups": []}));
    assert!(g.settings.contains_key("can_remove_members_group"));
    let del = http
        .delete(api(&fake, &format!("user_groups/{id}")))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 405, "DELETE /user_groups/{{id}} is gone at FL 294");
    fake.shutdown().await;
}

#[tokio::test]
async fn role_changes_keep_system_groups_current() {
    let (fake, http) = demo().await;
    let hamlet = fake.user_by_email("hamlet@zulip.example.com").unwrap().user_id;
    let resp = http
        .patch(api(&fake, &format!("users/{hamlet}")))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .form(&[("role", "200")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let admins = fake.group_by_name("role:administrators").unwrap();
    assert!(admins.members.contains(&hamlet));
    assert!(!fake.group_by_name("role:members").unwrap().members.contains(&hamlet));
    let rec: Value = http
        .get(api(&fake, &format!("user_groups/{}/members", admins.id)))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let owner = fake.user_by_email("desdemona@zulip.example.com").unwrap().user_id;
    let ids: Vec<u64> = rec["members"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(ids.contains(&hamlet) && ids.contains(&owner), "owners come in via role:owners");
    fake.shutdown().await;
}

#[tokio::test]
async fn injected_failure_changes_nothing_and_is_recorded() {
    let (fake, http) = demo().await;
    fake.fail_next(
        "POST",
        "/api/v1/users",
        Failure::Api { status: 500, code: "INTERNAL".into(), msg: "boom".into() },
    );
    let form = [("email", "new@example.com"), ("password", "long-enough-pw"), ("full_name", "New")];
    let resp = http
        .post(api(&fake, "users"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert!(fake.user_by_email("new@example.com").is_none());
    let log = fake.take_requests();
    assert_eq!(log.len(), 1);
    assert!(log[0].is("POST", "/api/v1/users"));
    assert_eq!(log[0].param("full_name"), Some("New"));
    assert_eq!(log[0].auth_email.as_deref(), Some(DEMO_SERVICE_EMAIL));
    // The failure was one-shot.
    let again = http
        .post(api(&fake, "users"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert!(fake.user_by_email("NEW@example.com").is_some());
    fake.shutdown().await;
}

#[tokio::test]
async fn after_apply_failure_applies_then_fails() {
    let (fake, http) = demo().await;
    fake.fail_next("POST", "/api/v1/users", Failure::AfterApply(Box::new(Failure::Reset)));
    let err = http
        .post(api(&fake, "users"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .form(&[("email", "lost@example.com"), ("password", "long-enough-pw"), ("full_name", "Lost")])
        .send()
        .await;
    assert!(err.is_err(), "connection closed without an answer");
    assert!(fake.user_by_email("lost@example.com").is_some(), "but the user exists");
    fake.shutdown().await;
}

#[tokio::test]
async fn hang_and_delay_trip_client_timeouts_and_shutdown_ends_them() {
    let (fake, _) = demo().await;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    fake.fail_next("GET", "/api/v1/users", Failure::Hang);
    let hung = http.get(api(&fake, "users")).basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY)).send().await;
    assert!(hung.unwrap_err().is_timeout());
    fake.delay_next("GET", "/api/v1/users", Duration::from_secs(5));
    let slow = http.get(api(&fake, "users")).basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY)).send().await;
    assert!(slow.unwrap_err().is_timeout());
    // Non-JSON and truncated bodies.
    fake.fail_next("GET", "/api/v1/users", Failure::TruncatedJson);
    fake.fail_next("GET", "/api/v1/users", Failure::Html404);
    fake.fail_next("GET", "/api/v1/users", Failure::RateLimited { retry_after_secs: 1.5 });
    let send = || http.get(api(&fake, "users")).basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY)).send();
    let t = send().await.unwrap();
    assert_eq!(t.status(), 200);
    assert!(serde_json::from_str::<Value>(&t.text().await.unwrap()).is_err());
    let h = send().await.unwrap();
    assert_eq!(h.status(), 404);
    assert!(h.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let rl = send().await.unwrap();
    assert_eq!(rl.status(), 429);
    assert_eq!(rl.headers()["retry-after"], "1.5");
    fake.shutdown().await;
}

#[tokio::test]
async fn enforce_host_refuses_other_subdomains() {
    let fake = FakeZulip::builder().with_demo_data().enforce_host(true).start().await.unwrap();
    let http = reqwest::Client::new();
    let wrong: Value = http
        .get(api(&fake, "users/me"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["msg"], "Account is not associated with this subdomain");
    let right = http
        .get(api(&fake, "users/me"))
        .header("Host", "zulip.example.com")
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    fake.shutdown().await;
}

#[tokio::test]
async fn out_of_band_changes_are_visible_over_http() {
    let (fake, http) = demo().await;
    let mut g = FakeGroup::new("Ops", &[]);
    g.description = "made in the UI".into();
    let gid = fake.insert_group(g);
    let hamlet = fake.user_by_email("hamlet@zulip.example.com").unwrap().user_id;
    fake.modify_group(gid, |g| g.members.push(hamlet));
    fake.modify_user(hamlet, |u| u.is_active = false);
    let list: Value = http
        .get(api(&fake, "user_groups"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ops = list["user_groups"].as_array().unwrap().iter().find(|g| g["id"] == json!(gid)).unwrap();
    assert_eq!(ops["members"], json!([]), "deactivated members are hidden");
    assert_eq!(fake.group(gid).unwrap().members, vec![hamlet], "but still stored");
    fake.shutdown().await;
}

#[tokio::test]
async fn odd_input_gets_an_answer_never_a_dropped_connection() {
    let (fake, http) = demo().await;
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case<'_>] = &[
        ("GET", "users/99999999999999999999999999", &[]),
        ("GET", "users/%FF%FE", &[]),
        ("PATCH", "users/%40", &[("full_name", "\u{0}")]),
        ("POST", "user_groups/create", &[("name", "x"), ("description", ""), ("members", "[1.5, -3]")]),
        (
            "POST",
            "user_groups/create",
            &[("name", "y"), ("description", ""), ("members", "[]"), ("can_manage_group", "[]")],
        ),
        ("POST", "user_groups/30/members", &[("add", "{\"a\":1}")]),
        ("GET", "users", &[("user_ids", "[-1, 18446744073709551615]")]),
        ("PATCH", "users/10", &[("role", "1e400")]),
        ("GET", "user_groups/18446744073709551615/members/0", &[]),
        ("DELETE", "users/me", &[]),
    ];
    for (method, path, form) in cases {
        let resp = http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), api(&fake, path))
            .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(resp.status().as_u16() < 500, "{method} {path}: {}", resp.status());
    }
    let ok = http
        .get(api(&fake, "users/me"))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_API_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 401, "DELETE /users/me deactivated the service account");
    fake.shutdown().await;
}
