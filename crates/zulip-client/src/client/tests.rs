//! `ZulipClient` against the real transcripts: decoding of recorded bodies, and the exact
//! requests each method sends, checked by a tiny recording HTTP server.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::*;
use crate::types::{PersonUpdate, ProfileData, ProfileValueChange, Role, UserGroupChange};

const AUTH_AND_ERRORS: &str =
    include_str!("../../../../tests/fixtures/zulip-transcripts/auth-and-errors.json");
const EVENTS: &str = include_str!("../../../../tests/fixtures/zulip-transcripts/events.json");
const PROFILE_FIELDS: &str = include_str!("../../../../tests/fixtures/zulip-transcripts/profile-fields.json");
const RATE_LIMIT: &str = include_str!("../../../../tests/fixtures/zulip-transcripts/rate-limit.json");
const SERVER_SETTINGS: &str =
    include_str!("../../../../tests/fixtures/zulip-transcripts/server-settings.json");
const USER_GROUPS: &str = include_str!("../../../../tests/fixtures/zulip-transcripts/user-groups.json");
const USERS: &str = include_str!("../../../../tests/fixtures/zulip-transcripts/users.json");

const OWNER_EMAIL: &str = "desdemona@zulip.com";
const OWNER_KEY: &str = "0123456789abcdefABCDEF0123456789";

// === transcripts ===

/// One recorded exchange, as the transcripts' README describes it.
#[derive(Debug, Clone)]
struct Exchange {
    method: String,
    path: String,
    query: Option<String>,
    form: Option<String>,
    auth: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Exchange `index` of a transcript file; `title` guards against picking the wrong one.
fn exchange(file: &str, index: usize, title: &str) -> Exchange {
    let all: Vec<Value> = serde_json::from_str(file).expect("transcript is json");
    let ex = &all[index];
    let found = ex["title"].as_str().expect("title");
    assert!(found.contains(title), "exchange {index} is {found:?}, not {title:?}");
    let request = &ex["request"];
    let response = &ex["response"];
    // Form and query in the transcript's key order (serde_json has preserve_order).
    let pairs = |v: &Value| {
        v.as_object().map(|map| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in map {
                s.append_pair(k, v.as_str().expect("form values are strings"));
            }
            s.finish()
        })
    };
    let body = &response["body"];
    let body = match body.get("non_json") {
        Some(text) => text.as_str().expect("non_json is a string").as_bytes().to_vec(),
        None => serde_json::to_vec(body).expect("body"),
    };
    Exchange {
        method: request["method"].as_str().expect("method").to_owned(),
        path: request["path"].as_str().expect("path").to_owned(),
        query: pairs(&request["query"]),
        form: pairs(&request["form"]),
        auth: request["auth"].as_str().expect("auth").to_owned(),
        status: response["status"].as_u64().expect("status") as u16,
        headers: response["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("header").to_owned()))
            .collect(),
        body,
    }
}

impl Exchange {
    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    fn decode<T: DeserializeOwned>(&self) -> Result<T, ZulipError> {
        decode(StatusCode::from_u16(self.status).expect("status"), &self.header_map(), &self.body)
    }

    fn reply(&self) -> Reply {
        Reply::Canned { status: self.status, headers: self.headers.clone(), body: self.body.clone() }
    }
}

// === a recording upstream ===

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    body: String,
    content_type: Option<String>,
    authorization: Option<String>,
    host: Option<String>,
    user_agent: Option<String>,
    /// When the request (head and body) had arrived.
    at: std::time::Instant,
}

enum Reply {
    Canned {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answers (the client's timeout must fire).
    Hang,
    /// Answers after a delay (a server-side delay, never a wait in the test itself).
    Delayed(Duration, Box<Reply>),
    /// Reads the request, then drops the connection without answering.
    Reset,
}

/// A one-purpose HTTP/1 server on 127.0.0.1:0 that records each request and answers the
/// next queued [`Reply`].
struct Upstream {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    /// Requests being answered now, and the most there ever were at once.
    load: Arc<Load>,
    /// Counts arrived requests (to wait for one without sleeping).
    arrived: tokio::sync::watch::Receiver<usize>,
}

#[derive(Default)]
struct Load {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::new()));
        let load = Arc::new(Load::default());
        let (arrived_tx, arrived) = tokio::sync::watch::channel(0);
        let arrived_tx = Arc::new(arrived_tx);
        let (reqs, reps, ld) = (requests.clone(), replies.clone(), load.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (reqs, reps, ld, tx) = (reqs.clone(), reps.clone(), ld.clone(), arrived_tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (reqs, reps, ld, tx) = (reqs.clone(), reps.clone(), ld.clone(), tx.clone());
                        async move {
                            let header = |name: &str| {
                                req.headers().get(name).map(|v| v.to_str().expect("ascii header").to_owned())
                            };
                            let mut recorded = Recorded {
                                method: req.method().to_string(),
                                path: req.uri().path().to_owned(),
                                query: req.uri().query().map(str::to_owned),
                                body: String::new(),
                                content_type: header("content-type"),
                                authorization: header("authorization"),
                                host: header("host"),
                                user_agent: header("user-agent"),
                                at: std::time::Instant::now(),
                            };
                            let body = req.into_body().collect().await.expect("body").to_bytes();
                            recorded.body = String::from_utf8(body.to_vec()).expect("utf-8");
                            recorded.at = std::time::Instant::now();
                            let now = ld.now.fetch_add(1, Ordering::SeqCst) + 1;
                            ld.max.fetch_max(now, Ordering::SeqCst);
                            let count = {
                                let mut reqs = reqs.lock().expect("lock");
                                reqs.push(recorded);
                                reqs.len()
                            };
                            tx.send_replace(count);
                            let reply = reps.lock().expect("lock").pop_front();
                            let response = match reply {
                                Some(Reply::Reset) => Err(std::io::Error::other("scripted connection reset")),
                                reply => Ok(answer(reply).await),
                            };
                            ld.now.fetch_sub(1, Ordering::SeqCst);
                            response
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Upstream { addr, requests, replies, load, arrived }
    }

    /// Waits (on the server's own signal, never a sleep) until `n` requests have arrived.
    async fn arrived(&self, n: usize) {
        let mut arrived = self.arrived.clone();
        arrived.wait_for(|count| *count >= n).await.expect("server alive");
    }

    /// The most requests that were ever being answered at once.
    fn max_concurrent(&self) -> usize {
        self.load.max.load(Ordering::SeqCst)
    }

    /// A client with `policy` instead of the default one.
    fn client_with(&self, policy: UpstreamPolicy) -> ZulipClient {
        let mut config = self.config();
        config.policy = policy;
        ZulipClient::new(config).expect("client")
    }

    fn reply(&self, reply: Reply) {
        self.replies.lock().expect("lock").push_back(reply);
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }

    /// The only request made so far.
    fn sole_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request: {requests:#?}");
        requests[0].clone()
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            base_url: Url::parse(&format!("http://{}", self.addr)).expect("url"),
            host: None,
            email: OWNER_EMAIL.to_owned(),
            api_key: Secret::new(OWNER_KEY.to_owned()),
            timeout: Duration::from_secs(5),
            policy: UpstreamPolicy::default(),
        }
    }

    fn client(&self) -> ZulipClient {
        ZulipClient::new(self.config()).expect("client")
    }

    /// Queues the exchange's response, for a call that must send the exchange's request.
    fn serve(&self, ex: &Exchange) {
        self.reply(ex.reply());
    }
}

fn answer(
    reply: Option<Reply>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send>> {
    Box::pin(async move {
        match reply {
            None => hyper::Response::builder()
                .status(500)
                .body(Full::new(Bytes::from_static(b"no canned reply")))
                .expect("response"),
            Some(Reply::Hang) => std::future::pending().await,
            Some(Reply::Reset) => unreachable!("handled by the service"),
            Some(Reply::Delayed(delay, reply)) => {
                tokio::time::sleep(delay).await;
                answer(Some(*reply)).await
            }
            Some(Reply::Canned { status, headers, body }) => {
                let mut response = hyper::Response::builder().status(status);
                for (k, v) in headers {
                    response = response.header(k, v);
                }
                response.body(Full::new(Bytes::from(body))).expect("response")
            }
        }
    })
}

fn owner_authorization() -> String {
    let raw = format!("{OWNER_EMAIL}:{OWNER_KEY}");
    format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw))
}

/// The request is the transcript's, byte for byte: method, path, query, form body.
#[track_caller]
fn assert_sent(recorded: &Recorded, ex: &Exchange) {
    assert_eq!(recorded.method, ex.method);
    assert_eq!(recorded.path, ex.path);
    assert_eq!(recorded.query, ex.query, "query of {} {}", ex.method, ex.path);
    match &ex.form {
        Some(form) => {
            assert_eq!(&recorded.body, form, "form of {} {}", ex.method, ex.path);
            assert_eq!(recorded.content_type.as_deref(), Some(FORM_CONTENT_TYPE));
        }
        None => {
            assert_eq!(recorded.body, "", "no body for {} {}", ex.method, ex.path);
            assert_eq!(recorded.content_type, None);
        }
    }
    if ex.auth == "none" {
        assert_eq!(recorded.authorization, None);
    } else {
        assert_eq!(recorded.authorization, Some(owner_authorization()));
    }
    assert_eq!(recorded.user_agent.as_deref(), Some(USER_AGENT));
}

fn form_fields(recorded: &Recorded) -> Vec<(String, String)> {
    form_urlencoded::parse(recorded.body.as_bytes()).into_owned().collect()
}

// === decoding recorded bodies ===

#[test]
fn decodes_the_users_list_with_dummy_emails_bots_and_deactivated_users() {
    #[derive(Deserialize)]
    struct Users {
        members: Vec<User>,
    }
    let users = exchange(USERS, 18, "GET /users").decode::<Users>().expect("users").members;
    let ids: Vec<u64> = users.iter().map(|u| u.user_id).collect();
    assert_eq!(ids, [9, 227, 228]);
    assert_eq!(users[0].role, Role::Owner);
    assert_eq!(users[0].email, "user9@zulipdev.com");
    assert_eq!(users[0].delivery_email, None);
    assert!(!users[2].is_active);

    let with_fields = exchange(USERS, 17, "GET /users").decode::<Users>().expect("users").members;
    let bot = with_fields.iter().find(|u| u.user_id == 21).expect("commit bot");
    assert!(bot.is_bot);
    assert_eq!(with_fields[0].delivery_email.as_deref(), Some("hamlet@zulip.com"));
}

#[test]
fn decodes_single_users_and_the_own_user() {
    #[derive(Deserialize)]
    struct OneUser {
        user: User,
    }
    let alice = exchange(USERS, 20, "GET /users/{id}").decode::<OneUser>().expect("user").user;
    assert_eq!(alice.user_id, 227);
    assert_eq!(alice.full_name, "Alice Zt4az4k5");
    assert_eq!(alice.date_joined, "2026-11-24T02:03+00:00");
    assert_eq!(alice.role, Role::Member);

    let guest = exchange(USERS, 50, "role=600").decode::<OneUser>().expect("user").user;
    assert_eq!(guest.role, Role::Guest);

    // /users/me has the user's fields at the top level, not under "user".
    let me = exchange(USERS, 28, "GET /users/me").decode::<User>().expect("me");
    assert_eq!((me.user_id, me.delivery_email.as_deref()), (9, Some(OWNER_EMAIL)));
}

#[test]
fn decodes_server_settings() {
    let settings = exchange(SERVER_SETTINGS, 0, "no auth").decode::<ServerSettings>().expect("settings");
    assert_eq!(settings.zulip_feature_level, 313);
    assert_eq!(settings.zulip_version, "10.0-dev+git");
    assert_eq!(settings.realm_url.as_deref(), Some("http://127.0.0.1:9991"));
}

#[test]
fn decodes_groups_and_members() {
    #[derive(Deserialize)]
    struct Groups {
        user_groups: Vec<UserGroup>,
    }
    let groups = exchange(USER_GROUPS, 19, "GET /user_groups").decode::<Groups>().expect("groups");
    let groups = groups.user_groups;
    assert_eq!(groups.iter().map(|g| g.id).collect::<Vec<_>>(), [9, 11, 59, 77]);
    assert!(groups[0].is_system_group);
    assert_eq!(groups[1].direct_subgroup_ids, [10]);
    assert_eq!(groups[2].members, [10, 227]);
    assert!(!groups[2].deactivated);

    let deactivated =
        exchange(USER_GROUPS, 20, "include_deactivated_groups=true").decode::<Groups>().expect("groups");
    assert!(deactivated.user_groups[0].deactivated);

    #[derive(Deserialize)]
    struct Members {
        members: Vec<u64>,
    }
    let members = exchange(USER_GROUPS, 51, "gamma").decode::<Members>().expect("members");
    assert_eq!(members.members, [10, 232, 227, 237]);
}

#[test]
fn application_errors_keep_status_and_code() {
    let cases = [
        (exchange(USERS, 24, "GET /users/{id}"), 400, "BAD_REQUEST", "No such user"),
        (exchange(USERS, 7, "missing full_name"), 400, "REQUEST_VARIABLE_MISSING", "Missing"),
        (exchange(AUTH_AND_ERRORS, 0, "No Authorization header"), 401, "UNAUTHORIZED", "Not"),
        (exchange(AUTH_AND_ERRORS, 10, "Bearer"), 400, "BAD_REQUEST", "basic"),
        (exchange(USER_GROUPS, 61, "in use"), 400, "CANNOT_DEACTIVATE_GROUP_IN_USE", "in use"),
        // 405: JSON body labelled text/html, without `code`.
        (exchange(AUTH_AND_ERRORS, 27, "405"), 405, "BAD_REQUEST", "Method Not Allowed"),
        (exchange(EVENTS, 44, "bad queue id"), 400, "BAD_EVENT_QUEUE_ID", "Bad event queue"),
    ];
    for (ex, status, code, msg) in cases {
        let err = ex.decode::<IgnoredAny>().expect_err("an error");
        match &err {
            ZulipError::Api { status: s, code: c, msg: m, retry_after: None } => {
                assert_eq!((*s, c.as_str()), (status, code));
                assert!(m.contains(msg), "{m:?} lacks {msg:?}");
            }
            other => panic!("{} {}: expected Api, got {other:?}", ex.method, ex.path),
        }
        assert_eq!(err.is_bad_event_queue(), code == "BAD_EVENT_QUEUE_ID");
        assert_eq!(err.is_unauthorized(), status == 401);
    }
}

#[test]
fn rate_limit_hit_carries_the_fractional_retry_after() {
    let ex = exchange(RATE_LIMIT, 6, "first 429");
    let err = ex.decode::<User>().expect_err("429");
    assert_eq!(err.code(), Some("RATE_LIMIT_HIT"));
    assert_eq!(err.rate_limited(), Some(Duration::from_secs_f64(50.313318967819214)));

    // Without the header, the body's "retry-after" is used.
    let mut headers = ex.header_map();
    headers.remove("retry-after");
    let err = decode::<User>(StatusCode::TOO_MANY_REQUESTS, &headers, &ex.body).expect_err("429");
    assert_eq!(err.rate_limited(), Some(Duration::from_secs_f64(50.313318967819214)));

    let state = rate_limit_from_headers(&ex.header_map());
    assert_eq!(state, Some(RateLimitState { limit: 200, remaining: 0, reset: 1795486110 }));
}

#[test]
fn non_json_and_truncated_bodies_are_decode_errors() {
    let html_404 = exchange(AUTH_AND_ERRORS, 23, "Unknown endpoint under /api/v1");
    let empty_405 = exchange(SERVER_SETTINGS, 3, "POST /server_settings");
    let empty_200 = exchange(EVENTS, 49, "Django port");
    for (ex, status) in [(html_404, 404), (empty_405, 405), (empty_200, 200)] {
        match ex.decode::<IgnoredAny>() {
            Err(ZulipError::Decode { status: s, .. }) => assert_eq!(s, status),
            other => panic!("{} {}: expected Decode, got {other:?}", ex.method, ex.path),
        }
    }

    let user = exchange(USERS, 20, "GET /users/{id}");
    let truncated = &user.body[..user.body.len() / 2];
    let err = decode::<IgnoredAny>(StatusCode::OK, &user.header_map(), truncated);
    assert!(matches!(err, Err(ZulipError::Decode { status: 200, .. })), "{err:?}");

    // A success envelope without the expected data is not silently accepted.
    let err = exchange(USER_GROUPS, 1, "success with members").decode::<User>();
    assert!(matches!(err, Err(ZulipError::Decode { status: 200, .. })), "{err:?}");
    // JSON that is no envelope at all.
    let err = decode::<IgnoredAny>(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"{}");
    assert!(matches!(err, Err(ZulipError::Decode { status: 502, .. })), "{err:?}");
}

#[test]
fn rate_limit_headers_in_any_capitalisation() {
    let tornado = exchange(EVENTS, 8, "GET /events after: PATCH full_name").header_map();
    assert_eq!(
        rate_limit_from_headers(&tornado),
        Some(RateLimitState { limit: 100000, remaining: 99999, reset: 1795486190 })
    );
    let unauthenticated = exchange(AUTH_AND_ERRORS, 0, "No Authorization header").header_map();
    assert_eq!(rate_limit_from_headers(&unauthenticated), None);
}

#[test]
fn json_text_is_spelled_like_the_transcripts() {
    assert_eq!(json_ids(&[10, 227]), "[10, 227]");
    assert_eq!(json_ids(&[]), "[]");
    assert_eq!(json_text(&json!(true)), "true");
    assert_eq!(json_text(&json!(["realm_user", "user_group"])), r#"["realm_user", "user_group"]"#);
    assert_eq!(
        json_text(&json!({"direct_members": [227], "direct_subgroups": []})),
        r#"{"direct_members": [227], "direct_subgroups": []}"#
    );
    assert_eq!(json_text(&json!({"a\"b": "x\ny"})), r#"{"a\"b": "x\ny"}"#);
}

#[test]
fn decodes_every_recorded_event() {
    let all: Vec<Value> = serde_json::from_str(EVENTS).expect("json");
    let mut ids = Vec::new();
    for ex in all.iter().filter(|ex| ex["response"]["body"]["events"].is_array()) {
        for raw in ex["response"]["body"]["events"].as_array().expect("events") {
            let event = Event::from_value(raw.clone());
            assert!(!matches!(event, Event::Other(_)), "not typed: {raw}");
            ids.push(event.id().expect("id"));
        }
    }
    assert_eq!(ids, (0..=35).collect::<Vec<i64>>());
}

#[test]
fn decodes_event_shapes() {
    let events = |index: usize, title: &str| -> Vec<Event> {
        #[derive(Deserialize)]
        struct Events {
            events: Vec<Value>,
        }
        let raw = exchange(EVENTS, index, title).decode::<Events>().expect("events").events;
        raw.into_iter().map(Event::from_value).collect()
    };

    let created = events(6, "create eve");
    assert!(matches!(&created[0], Event::RealmUserAdd { id: 0, person } if person.user_id == 240));
    assert_eq!(created[1], Event::UserGroupAddMembers { id: 1, group_id: 14, user_ids: vec![240] });

    let renamed = events(8, "PATCH full_name");
    let Event::RealmUserUpdate { id: 3, person } = &renamed[0] else { panic!("{renamed:?}") };
    assert_eq!(person.user_id, 240);
    assert_eq!(person.full_name.as_deref(), Some("Eve Renamed Zt4az4k5m2j"));
    assert_eq!((person.role, person.is_active, &person.delivery_email), (None, None, &None));

    let role = events(10, "role=200");
    assert!(
        matches!(&role[0], Event::RealmUserUpdate { person, .. } if person.role == Some(Role::Administrator))
    );
    assert_eq!(role[1], Event::UserGroupRemoveMembers { id: 5, group_id: 14, user_ids: vec![240] });

    let deactivated = events(16, "deactivate");
    assert!(
        matches!(&deactivated[0], Event::RealmUserUpdate { person, .. } if person.is_active == Some(false))
    );

    let profile = events(22, "PATCH profile_data");
    let Event::RealmUserUpdate { person, .. } = &profile[0] else { panic!("{profile:?}") };
    assert_eq!(
        person.custom_profile_field,
        Some(ProfileValueChange { id: 1, value: Some("+1-555-0199".into()) })
    );
    assert!(person.other.is_empty(), "{:?}", person.other);

    let email = events(20, "new_email");
    let Event::RealmUserUpdate { person, .. } = &email[0] else { panic!("{email:?}") };
    assert_eq!(person.delivery_email, Some(Some("zt-4az4k5m2j-eve2@example.com".to_owned())));
    let Event::RealmUserUpdate { person, .. } = &email[1] else { panic!("{email:?}") };
    assert!(person.other.contains_key("avatar_url"));

    let group = events(26, "POST /user_groups/create");
    assert!(
        matches!(&group[0], Event::UserGroupAdd { id: 25, group } if group.id == 85 && group.members == [10, 240])
    );

    let update = events(36, "description");
    let Event::UserGroupUpdate { group_id: 85, data, .. } = &update[0] else { panic!("{update:?}") };
    assert_eq!(data.description.as_deref(), Some("Events group, edited"));
    let Event::UserGroupUpdate { data, .. } = &update[1] else { panic!("{update:?}") };
    assert_eq!(data.other.get("can_mention_group"), Some(&json!(14)));

    assert_eq!(events(38, "deactivate")[0], Event::UserGroupRemove { id: 33, group_id: 85 });
    assert_eq!(events(42, "heartbeat")[0], Event::Heartbeat { id: 35 });
}

#[test]
fn unknown_and_malformed_events_are_kept_whole() {
    let removed = json!({"type": "realm_user", "op": "remove", "person": {"user_id": 7, "full_name": "Unknown user"}, "id": 40});
    assert_eq!(Event::from_value(removed), Event::RealmUserRemove { id: 40, user_id: 7 });

    let stream = json!({"type": "stream", "op": "create", "streams": [], "id": 41});
    assert_eq!(Event::from_value(stream.clone()), Event::Other(stream));
    assert_eq!(Event::from_value(json!({"type": "x", "id": 41})).id(), Some(41));

    // A known type with an unexpected shape (role 250 does not exist) is not lost.
    let odd = json!({"type": "realm_user", "op": "update", "person": {"user_id": 1, "role": 250}, "id": 42});
    assert_eq!(Event::from_value(odd.clone()), Event::Other(odd));

    let change: UserGroupChange = serde_json::from_value(json!({"name": "x"})).expect("change");
    assert_eq!(change.name.as_deref(), Some("x"));
    let person: PersonUpdate =
        serde_json::from_value(json!({"user_id": 3, "delivery_email": null})).expect("person");
    assert_eq!(person.delivery_email, Some(None));
}

#[test]
fn debug_never_prints_the_api_key() {
    let config = ClientConfig {
        base_url: Url::parse("http://127.0.0.1:9991").expect("url"),
        host: Some("acme.zulip.example.com".into()),
        email: OWNER_EMAIL.into(),
        api_key: Secret::new(OWNER_KEY.into()),
        timeout: Duration::from_secs(1),
        policy: UpstreamPolicy::default(),
    };
    let client = ZulipClient::new(config).expect("client");
    let debug = format!("{client:?}");
    let encoded = owner_authorization();
    assert!(!debug.contains(OWNER_KEY) && !debug.contains(&encoded[6..]), "{debug}");
    assert!(debug.contains("acme.zulip.example.com"), "{debug}");
}

#[test]
fn rejects_unusable_configs() {
    let mut config = ClientConfig {
        base_url: Url::parse("ftp://zulip.example.com").expect("url"),
        host: None,
        email: OWNER_EMAIL.into(),
        api_key: Secret::new(OWNER_KEY.into()),
        timeout: Duration::from_secs(1),
        policy: UpstreamPolicy::default(),
    };
    assert!(matches!(ZulipClient::new(config.clone()), Err(ZulipError::Config(_))));
    config.base_url = Url::parse("https://zulip.example.com").expect("url");
    config.host = Some("bad\nhost".into());
    assert!(matches!(ZulipClient::new(config.clone()), Err(ZulipError::Config(_))));
    config.host = None;
    assert!(ZulipClient::new(config.clone()).is_ok());
    for policy in [
        UpstreamPolicy { max_in_flight: 0, ..UpstreamPolicy::default() },
        UpstreamPolicy { deadline: Duration::ZERO, ..UpstreamPolicy::default() },
    ] {
        config.policy = policy;
        assert!(matches!(ZulipClient::new(config.clone()), Err(ZulipError::Config(_))));
    }
}

// === requests, byte for byte ===

#[tokio::test]
async fn user_calls_send_what_the_transcripts_show() {
    let upstream = Upstream::start().await;
    let client = upstream.client();

    let ex = exchange(USERS, 28, "GET /users/me");
    upstream.serve(&ex);
    assert_eq!(client.get_own_user().await.expect("me").user_id, 9);
    assert_sent(&upstream.sole_request(), &ex);

    let calls: Vec<(Exchange, &str)> = vec![
        (exchange(USERS, 18, "GET /users"), "get_users"),
        (exchange(USERS, 20, "GET /users/{id}"), "get_user"),
        (exchange(USERS, 0, "POST /users: success"), "create_user"),
        (exchange(AUTH_AND_ERRORS, 39, "Restore alice's name"), "full_name"),
        (exchange(USERS, 46, "role=200"), "role"),
        (exchange(USERS, 63, "new_email success"), "new_email"),
        (exchange(USERS, 4, "DELETE /users/{id}"), "deactivate_user"),
        (exchange(USERS, 91, "reactivate: success"), "reactivate_user"),
    ];
    for (i, (ex, call)) in calls.iter().enumerate() {
        upstream.serve(ex);
        match *call {
            "get_users" => assert_eq!(client.get_users().await.expect("users").len(), 3),
            "get_user" => assert_eq!(client.get_user(227).await.expect("user").user_id, 227),
            "create_user" => {
                let password = Secret::new("<PASSWORD>".to_owned());
                let id = client
                    .create_user("zt-4az4k5-alice@example.com", &password, "Alice Zt4az4k5")
                    .await
                    .expect("create");
                assert_eq!(id, 227);
            }
            "full_name" => {
                let update =
                    UserUpdate { full_name: Some("Alice ByEmail Zt4az4k5".into()), ..UserUpdate::default() };
                client.update_user(227, &update).await.expect("patch")
            }
            "role" => {
                let update = UserUpdate { role: Some(Role::Administrator), ..UserUpdate::default() };
                client.update_user(227, &update).await.expect("patch")
            }
            "new_email" => {
                let update = UserUpdate {
                    new_email: Some("zt-4az4k5-alice2@example.com".into()),
                    ..UserUpdate::default()
                };
                client.update_user(227, &update).await.expect("patch")
            }
            "deactivate_user" => client.deactivate_user(228).await.expect("delete"),
            "reactivate_user" => client.reactivate_user(232).await.expect("reactivate"),
            other => unreachable!("{other}"),
        }
        assert_sent(&upstream.requests()[i + 1], ex);
    }
    assert_eq!(upstream.requests().len(), calls.len() + 1);
}

#[tokio::test]
async fn group_calls_send_what_the_transcripts_show() {
    let upstream = Upstream::start().await;
    let client = upstream.client();

    let calls: Vec<(Exchange, &str)> = vec![
        (exchange(USER_GROUPS, 19, "GET /user_groups"), "list"),
        (exchange(USER_GROUPS, 20, "include_deactivated_groups=true"), "list_all"),
        (exchange(USER_GROUPS, 1, "success with members"), "create"),
        (exchange(USER_GROUPS, 60, "epsilon with can_manage_group"), "create_managed"),
        (exchange(USER_GROUPS, 23, "rename"), "rename"),
        (exchange(USER_GROUPS, 27, "description"), "describe"),
        (exchange(USER_GROUPS, 35, "members: add"), "add"),
        (exchange(USER_GROUPS, 36, "members: delete"), "delete"),
        (exchange(USER_GROUPS, 37, "add and delete"), "add_delete"),
        (exchange(USER_GROUPS, 50, "GET /user_groups/{id}/members"), "members"),
        (exchange(USER_GROUPS, 52, "direct_member_only=true"), "direct_members"),
        (exchange(USER_GROUPS, 5, "deactivate: success"), "deactivate"),
    ];
    for (i, (ex, call)) in calls.iter().enumerate() {
        upstream.serve(ex);
        match *call {
            "list" => assert_eq!(client.get_user_groups(false).await.expect("groups").len(), 4),
            "list_all" => {
                assert!(client.get_user_groups(true).await.expect("groups")[0].deactivated)
            }
            "create" => {
                let group = NewUserGroup {
                    name: "zt-4az4k5494-alpha".into(),
                    description: "Alpha group".into(),
                    members: vec![10, 227],
                    ..NewUserGroup::default()
                };
                // Feature level 313 returns no id.
                assert_eq!(client.create_user_group(&group).await.expect("create"), None);
            }
            "create_managed" => {
                let group = NewUserGroup {
                    name: "zt-4az4k5494-epsilon".into(),
                    description: "Epsilon".into(),
                    members: vec![],
                    can_manage_group: Some(json!(80)),
                    can_add_members_group: None,
                };
                client.create_user_group(&group).await.expect("create");
            }
            "rename" => {
                client.update_user_group(59, Some("zt-4az4k5494-alpha-renamed"), None).await.expect("rename")
            }
            "describe" => client.update_user_group(59, None, Some("Alpha, renamed")).await.expect("describe"),
            "add" => client.update_user_group_members(59, &[232], &[]).await.expect("add"),
            "delete" => client.update_user_group_members(59, &[], &[227]).await.expect("delete"),
            "add_delete" => client.update_user_group_members(59, &[227], &[232]).await.expect("both"),
            "members" => {
                assert_eq!(client.get_user_group_members(59, false).await.expect("members"), [10, 227, 237])
            }
            "direct_members" => {
                assert_eq!(client.get_user_group_members(77, true).await.expect("members"), [232])
            }
            "deactivate" => client.deactivate_user_group(68).await.expect("deactivate"),
            other => unreachable!("{other}"),
        }
        assert_sent(&upstream.requests()[i], ex);
    }
    assert_eq!(upstream.requests().len(), calls.len());
}

#[tokio::test]
async fn group_id_is_returned_from_feature_level_317() {
    let upstream = Upstream::start().await;
    upstream.reply(Reply::Canned {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"result":"success","msg":"","group_id":91}"#.to_vec(),
    });
    let group = NewUserGroup {
        name: "engineering".into(),
        can_add_members_group: Some(json!({"direct_members": [9], "direct_subgroups": []})),
        ..NewUserGroup::default()
    };
    assert_eq!(upstream.client().create_user_group(&group).await.expect("create"), Some(91));
    let fields = form_fields(&upstream.sole_request());
    let expected = [
        ("name", "engineering"),
        ("description", ""),
        ("members", "[]"),
        ("can_add_members_group", r#"{"direct_members": [9], "direct_subgroups": []}"#),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(fields, expected);
}

#[tokio::test]
async fn nothing_to_change_sends_nothing() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    client.update_user(227, &UserUpdate::default()).await.expect("empty patch");
    client.update_user_group(59, None, None).await.expect("empty group patch");
    client.update_user_group_members(59, &[], &[]).await.expect("empty members");
    assert!(upstream.requests().is_empty(), "{:#?}", upstream.requests());
}

#[tokio::test]
async fn a_full_user_update_sends_every_field() {
    let upstream = Upstream::start().await;
    upstream.serve(&exchange(USERS, 46, "role=200"));
    let update = UserUpdate {
        full_name: Some("Ann Other".into()),
        role: Some(Role::Owner),
        profile_data: vec![(10, Some("00u1".into())), (11, None)],
        profile_users: vec![(12, vec![7]), (13, Vec::new())],
        new_email: Some("ann+x@example.com".into()),
    };
    upstream.client().update_user(5, &update).await.expect("patch");
    let sent = upstream.sole_request();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("PATCH", "/api/v1/users/5"));
    assert_eq!(
        form_fields(&sent),
        [
            ("full_name".to_owned(), "Ann Other".to_owned()),
            ("role".to_owned(), "100".to_owned()),
            (
                "profile_data".to_owned(),
                r#"[{"id":10,"value":"00u1"},{"id":11,"value":null},{"id":12,"value":[7]},{"id":13,"value":null}]"#
                    .to_owned()
            ),
            ("new_email".to_owned(), "ann+x@example.com".to_owned()),
        ]
    );
}

#[tokio::test]
async fn profile_fields_decode_from_the_transcript() {
    let upstream = Upstream::start().await;
    let ex = exchange(PROFILE_FIELDS, 0, "GET /realm/profile_fields (owner)");
    upstream.serve(&ex);
    let fields = upstream.client().get_custom_profile_fields().await.expect("fields");
    assert_sent(&upstream.sole_request(), &ex);
    assert_eq!(fields.len(), 9);
    assert_eq!(
        fields[0],
        ProfileField { id: 1, name: "Phone number".into(), field_type: 1, hint: String::new() }
    );
    assert_eq!((fields[3].name.as_str(), fields[3].field_type), ("Favorite editor", 3));
}

#[tokio::test]
async fn creating_a_profile_field_asks_for_an_admin_only_short_text_field() {
    let upstream = Upstream::start().await;
    upstream.serve(&exchange(PROFILE_FIELDS, 2, "short text field"));
    let id = upstream
        .client()
        .create_custom_profile_field("SCIM externalId", "set by SCIM", ProfileField::SHORT_TEXT)
        .await;
    assert_eq!(id.expect("created"), 10);
    let sent = upstream.sole_request();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/api/v1/realm/profile_fields"));
    assert_eq!(
        form_fields(&sent),
        [
            ("name".to_owned(), "SCIM externalId".to_owned()),
            ("hint".to_owned(), "set by SCIM".to_owned()),
            ("field_type".to_owned(), "1".to_owned()),
            ("editable_by_user".to_owned(), "false".to_owned()),
        ]
    );

    upstream.serve(&exchange(PROFILE_FIELDS, 5, "duplicate name"));
    let err = upstream
        .client()
        .create_custom_profile_field("SCIM externalId", "", ProfileField::SHORT_TEXT)
        .await
        .expect_err("dup");
    assert!(err.is_bad_request());
    assert_eq!(err.message(), Some("A field with that label already exists."));
}

#[tokio::test]
async fn users_with_a_profile_field_keep_only_that_field() {
    let upstream = Upstream::start().await;
    let ex = exchange(USERS, 17, "include_custom_profile_fields=true");
    upstream.serve(&ex);
    let users = upstream.client().get_users_with_profile_field(Some(3)).await.expect("users");
    assert_sent(&upstream.sole_request(), &ex);
    let hamlet = users.iter().find(|u| u.user_id == 10).expect("hamlet");
    assert_eq!(hamlet.profile_data.get(3), Some("Dark chocolate"));
    assert_eq!(hamlet.profile_data.get(1), None, "other fields are dropped");
    let bot = users.iter().find(|u| u.is_bot).expect("a bot");
    assert!(bot.profile_data.is_empty());

    // Without a field: no parameter, and nothing kept.
    upstream.serve(&exchange(USERS, 17, "include_custom_profile_fields=true"));
    upstream.client().get_users().await.expect("users");
    assert_eq!(upstream.requests()[1].query, None);

    let ex = exchange(PROFILE_FIELDS, 24, "(final)");
    upstream.serve(&ex);
    let user = upstream.client().get_user_with_profile_field(227, Some(10)).await.expect("user");
    assert_sent(&upstream.requests()[2], &ex);
    assert_eq!(user.profile_data.get(10), Some("Infra"));
    assert_eq!(user.profile_data.get(11), None);
}

#[tokio::test]
async fn server_settings_is_unauthenticated() {
    let upstream = Upstream::start().await;
    let ex = exchange(SERVER_SETTINGS, 0, "no auth");
    upstream.serve(&ex);
    let settings = upstream.client().server_settings().await.expect("settings");
    assert_eq!(settings.zulip_feature_level, 313);
    assert_sent(&upstream.sole_request(), &ex);
}

#[tokio::test]
async fn host_override_selects_the_realm() {
    let upstream = Upstream::start().await;
    upstream.serve(&exchange(USERS, 96, "sole owner"));
    upstream.serve(&exchange(USERS, 96, "sole owner"));

    let mut config = upstream.config();
    config.host = Some("zt4az4k5.127.0.0.1:9991".into());
    ZulipClient::new(config).expect("client").get_own_user().await.expect("me");
    upstream.client().get_own_user().await.expect("me");

    let requests = upstream.requests();
    assert_eq!(requests[0].host.as_deref(), Some("zt4az4k5.127.0.0.1:9991"));
    assert_eq!(requests[1].host, Some(upstream.addr.to_string()));
}

#[tokio::test]
async fn base_url_with_a_path_prefix_keeps_it() {
    let upstream = Upstream::start().await;
    upstream.serve(&exchange(USERS, 20, "GET /users/{id}"));
    let mut config = upstream.config();
    config.base_url = Url::parse(&format!("http://{}/zulip/", upstream.addr)).expect("url");
    ZulipClient::new(config).expect("client").get_user(227).await.expect("user");
    assert_eq!(upstream.sole_request().path, "/zulip/api/v1/users/227");
}

#[tokio::test]
async fn errors_over_the_wire() {
    let upstream = Upstream::start().await;
    let client = upstream.client();

    upstream.serve(&exchange(AUTH_AND_ERRORS, 23, "Unknown endpoint under /api/v1"));
    let err = client.get_user(1).await.expect_err("html 404");
    assert!(matches!(err, ZulipError::Decode { status: 404, .. }), "{err:?}");

    upstream.serve(&exchange(USERS, 80, "already deactivated"));
    let err = client.deactivate_user(232).await.expect_err("400");
    assert!(err.is_bad_request() && err.code() == Some("BAD_REQUEST"), "{err:?}");

    upstream.serve(&exchange(AUTH_AND_ERRORS, 3, "Wrong API key"));
    assert!(client.get_own_user().await.expect_err("401").is_unauthorized());
}

#[tokio::test]
async fn a_429_gives_the_fractional_retry_after_and_tracks_the_rate_limit() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    assert_eq!(client.rate_limit(), None);

    // (The transcript trims this success body, so decode it as a plain envelope.)
    upstream.serve(&exchange(RATE_LIMIT, 5, "last request before the limit"));
    client.reactivate_user(239).await.expect("ok");
    assert_eq!(client.rate_limit(), Some(RateLimitState { limit: 200, remaining: 0, reset: 1795486120 }));

    // A response without the headers (a 401) leaves the last state in place.
    upstream.serve(&exchange(RATE_LIMIT, 10, "Wrong key"));
    client.get_own_user().await.expect_err("401");
    assert_eq!(client.rate_limit().map(|s| s.reset), Some(1795486120));

    // 50 s is beyond the 25 s deadline: the 429 comes back at once, not retried.
    upstream.serve(&exchange(RATE_LIMIT, 6, "first 429"));
    let err = client.get_own_user().await.expect_err("429");
    assert!(
        matches!(err, ZulipError::Api { status: 429, ref code, .. } if code == "RATE_LIMIT_HIT"),
        "{err:?}"
    );
    assert_eq!(err.rate_limited(), Some(Duration::from_secs_f64(50.313318967819214)));
    assert_eq!(upstream.requests().len(), 3);
    // Clones share the record; the 429's own headers are recorded too.
    assert_eq!(
        client.clone().rate_limit(),
        Some(RateLimitState { limit: 200, remaining: 0, reset: 1795486110 })
    );

    // Zulip's Retry-After holds for every call of the account (clones too): the next
    // call is not sent, and says how long is left.
    let err = client.clone().get_users().await.expect_err("held back");
    assert!(matches!(err, ZulipError::Throttled { .. }), "{err:?}");
    let left = err.rate_limited().expect("retry after");
    assert!(left > Duration::from_secs(45) && left <= Duration::from_secs_f64(50.32), "{left:?}");
    assert!(err.outcome_known());
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn a_silent_upstream_is_a_timeout() {
    let upstream = Upstream::start().await;
    upstream.reply(Reply::Hang);
    let mut config = upstream.config();
    config.timeout = Duration::from_millis(200);
    config.policy.max_retries = 0;
    let err = ZulipClient::new(config).expect("client").get_users().await.expect_err("timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(err, ZulipError::Transport(_)));
}

#[tokio::test]
async fn refused_connections_are_transport_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let config = ClientConfig {
        base_url: Url::parse(&format!("http://{addr}")).expect("url"),
        host: None,
        email: OWNER_EMAIL.into(),
        api_key: Secret::new(OWNER_KEY.into()),
        timeout: Duration::from_secs(2),
        policy: UpstreamPolicy::default(),
    };
    let err = ZulipClient::new(config).expect("client").get_users().await.expect_err("refused");
    assert!(matches!(err, ZulipError::Transport(_)) && !err.is_timeout(), "{err:?}");
}

// === events ===

#[tokio::test]
async fn event_queue_calls_send_what_the_transcripts_show() {
    let upstream = Upstream::start().await;
    let client = upstream.client();

    let register = exchange(EVENTS, 0, "POST /register");
    upstream.serve(&register);
    let queue = client.register_event_queue(&["realm_user", "user_group"]).await.expect("queue");
    assert_eq!(
        queue,
        RegisteredQueue { queue_id: "0e9c6de2-3f78-4692-a1c2-1d07a71ecaad".into(), last_event_id: -1 }
    );
    let sent = upstream.sole_request();
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/api/v1/register"));
    assert_eq!(sent.content_type.as_deref(), Some(FORM_CONTENT_TYPE));
    let fields = form_fields(&sent);
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // event_types exactly as in the transcript; no initial state; plain text; gravatar hint.
    let transcript: Vec<(String, String)> =
        form_urlencoded::parse(register.form.as_deref().expect("form").as_bytes()).into_owned().collect();
    assert_eq!(field("event_types"), Some(transcript[0].1.as_str()));
    assert_eq!(field("fetch_event_types"), Some("[]"));
    assert_eq!(field("apply_markdown"), Some("false"));
    assert_eq!(field("client_gravatar"), Some("true"));
    assert_eq!(fields.len(), 4);

    let poll = exchange(EVENTS, 8, "GET /events after: PATCH full_name");
    upstream.serve(&poll);
    let events = client.get_events(&queue.queue_id, 2, true, Duration::from_secs(5)).await.expect("events");
    assert!(matches!(&events[..], [Event::RealmUserUpdate { id: 3, .. }]), "{events:?}");
    assert_sent(&upstream.requests()[1], &poll);

    let blocking = exchange(EVENTS, 42, "blocking");
    upstream.serve(&blocking);
    let events = client.get_events(&queue.queue_id, 34, false, Duration::from_secs(5)).await.expect("events");
    assert_eq!(events, [Event::Heartbeat { id: 35 }]);
    assert_sent(&upstream.requests()[2], &blocking);

    let delete = exchange(EVENTS, 50, "DELETE /events");
    upstream.serve(&delete);
    client.delete_event_queue(&queue.queue_id).await.expect("delete");
    assert_sent(&upstream.requests()[3], &delete);

    upstream.serve(&exchange(EVENTS, 51, "deleted queue"));
    let err = client.get_events(&queue.queue_id, 35, true, Duration::from_secs(5)).await.expect_err("gone");
    assert!(err.is_bad_event_queue(), "{err:?}");

    upstream.serve(&exchange(EVENTS, 52, "already deleted queue"));
    let err = client.delete_event_queue(&queue.queue_id).await.expect_err("gone");
    assert!(err.is_bad_event_queue(), "{err:?}");
}

#[tokio::test]
async fn long_polls_use_their_own_timeout() {
    let upstream = Upstream::start().await;
    let mut config = upstream.config();
    config.timeout = Duration::from_millis(100);
    let client = ZulipClient::new(config).expect("client");

    // Slower than the per-request timeout, well within the poll timeout.
    let heartbeat = exchange(EVENTS, 42, "blocking");
    upstream.reply(Reply::Delayed(Duration::from_millis(400), Box::new(heartbeat.reply())));
    let events = client.get_events("q", 34, false, Duration::from_secs(10)).await.expect("poll");
    assert_eq!(events, [Event::Heartbeat { id: 35 }]);

    // And the poll timeout itself applies.
    upstream.reply(Reply::Hang);
    let err = client.get_events("q", 35, false, Duration::from_millis(150)).await.expect_err("timeout");
    assert!(err.is_timeout(), "{err:?}");
}

// === pacing, retries and the realm's queue ===

const MS: fn(u64) -> Duration = Duration::from_millis;

fn json_reply(status: u16, extra: &[(&str, &str)], body: Value) -> Reply {
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    headers.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Reply::Canned { status, headers, body: serde_json::to_vec(&body).expect("json") }
}

/// A success envelope every method decodes (`user_id` for `create_user`, `members` for
/// `get_user_group_members`; the others ignore both).
fn success() -> Reply {
    json_reply(200, &[], json!({"result": "success", "msg": "", "user_id": 42, "members": [10, 227]}))
}

/// Zulip's 429, as in the transcripts, with a chosen `Retry-After`.
fn rate_limit_hit(retry_after: &str) -> Reply {
    json_reply(
        429,
        &[("Retry-After", retry_after)],
        json!({"result": "error", "msg": "API usage exceeded rate limit",
               "code": "RATE_LIMIT_HIT", "retry-after": retry_after.parse::<f64>().expect("float")}),
    )
}

/// A proxy's 503 page in front of Zulip.
fn unavailable_html() -> Reply {
    Reply::Canned {
        status: 503,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>".to_vec(),
    }
}

fn unavailable_json() -> Reply {
    json_reply(503, &[], json!({"result": "error", "msg": "Service unavailable", "code": "BAD_REQUEST"}))
}

fn gap(requests: &[Recorded], i: usize) -> Duration {
    requests[i].at.duration_since(requests[i - 1].at)
}

#[test]
fn zulips_date_header_is_its_clock() {
    let mut headers = HeaderMap::new();
    headers.insert(reqwest::header::DATE, HeaderValue::from_static("Tue, 24 Nov 2026 02:56:29 GMT"));
    assert_eq!(http_date(&headers), Some(1795488989));
    headers.insert(reqwest::header::DATE, HeaderValue::from_static("yesterday"));
    assert_eq!(http_date(&headers), None);
    assert_eq!(http_date(&HeaderMap::new()), None);
}

#[tokio::test]
async fn a_429_is_retried_once_its_retry_after_has_passed() {
    let upstream = Upstream::start().await;
    let client = upstream.client();

    // A read...
    upstream.reply(rate_limit_hit("0.05"));
    upstream.reply(success());
    let members = client.get_user_group_members(31, true).await.expect("ok");
    assert_eq!(members, [10, 227]);
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].query, requests[1].query);
    let waited = gap(&requests, 1);
    assert!(waited >= MS(50) && waited < MS(1000), "{waited:?}");

    // ...and a create: a 429 means Zulip did nothing, so even a create is sent again.
    upstream.reply(rate_limit_hit("0.05"));
    upstream.reply(success());
    let password = Secret::new("pw".to_owned());
    let id = client.create_user("a@example.com", &password, "A").await.expect("created");
    assert_eq!(id, 42);
    let requests = upstream.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[2].method, "POST");
    assert_eq!(requests[2].body, requests[3].body);
    assert!(gap(&requests, 3) >= MS(50), "{:?}", gap(&requests, 3));
}

#[tokio::test]
async fn a_429_beyond_the_deadline_is_returned_at_once() {
    let upstream = Upstream::start().await;
    let client = upstream
        .client_with(UpstreamPolicy { deadline: Duration::from_secs(2), ..UpstreamPolicy::default() });
    // 1.9 s fits in 2 s, but would leave no time to be answered: not waited either.
    upstream.reply(rate_limit_hit("1.9"));
    let started = std::time::Instant::now();
    let password = Secret::new("pw".to_owned());
    let err = client.create_user("a@example.com", &password, "A").await.expect_err("429");
    assert!(started.elapsed() < MS(1000), "{:?}", started.elapsed());
    assert!(
        matches!(err, ZulipError::Api { status: 429, retry_after: Some(after), .. } if after == MS(1900)),
        "{err:?}"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn reads_and_idempotent_writes_are_retried_after_a_reset() {
    let upstream = Upstream::start().await;
    let client = upstream.client();

    upstream.reply(Reply::Reset);
    upstream.reply(success());
    assert_eq!(client.get_user_group_members(31, false).await.expect("ok"), [10, 227]);
    assert_eq!(upstream.requests().len(), 2);

    let update = UserUpdate { role: Some(Role::Administrator), ..UserUpdate::default() };
    upstream.reply(Reply::Reset);
    upstream.reply(success());
    client.update_user(227, &update).await.expect("patched");
    upstream.reply(Reply::Reset);
    upstream.reply(success());
    client.reactivate_user(227).await.expect("reactivated");
    upstream.reply(Reply::Reset);
    upstream.reply(success());
    client.update_user_group(59, Some("alpha"), None).await.expect("renamed");

    let requests = upstream.requests();
    let sent: Vec<_> = requests.iter().map(|r| format!("{} {} {}", r.method, r.path, r.body)).collect();
    assert_eq!(
        sent[2..],
        [
            "PATCH /api/v1/users/227 role=200",
            "PATCH /api/v1/users/227 role=200",
            "POST /api/v1/users/227/reactivate ",
            "POST /api/v1/users/227/reactivate ",
            "PATCH /api/v1/user_groups/59 name=alpha",
            "PATCH /api/v1/user_groups/59 name=alpha",
        ]
    );
}

#[tokio::test]
async fn non_idempotent_writes_are_never_sent_twice_after_a_reset() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    let password = Secret::new("pw".to_owned());
    let group = NewUserGroup { name: "alpha".into(), ..NewUserGroup::default() };

    for (i, name) in [
        "create_user",
        "deactivate_user",
        "create_user_group",
        "update_user_group_members",
        "deactivate_user_group",
    ]
    .into_iter()
    .enumerate()
    {
        upstream.reply(Reply::Reset);
        upstream.reply(success()); // what a wrong retry would get
        let err = match name {
            "create_user" => client.create_user("a@example.com", &password, "A").await.map(drop),
            "deactivate_user" => client.deactivate_user(227).await,
            "create_user_group" => client.create_user_group(&group).await.map(drop),
            "update_user_group_members" => client.update_user_group_members(59, &[10], &[]).await,
            _ => client.deactivate_user_group(59).await,
        }
        .expect_err(name);
        assert!(matches!(err, ZulipError::Transport(_)) && !err.outcome_known(), "{name}: {err:?}");
        assert_eq!(upstream.requests().len(), i + 1, "{name} was sent again");
        upstream.replies.lock().expect("lock").clear();
    }
}

#[tokio::test]
async fn a_create_that_times_out_is_not_sent_again() {
    let upstream = Upstream::start().await;
    let mut config = upstream.config();
    config.timeout = MS(200);
    let client = ZulipClient::new(config).expect("client");
    upstream.reply(Reply::Hang);
    upstream.reply(success());
    let err = client.create_user("a@example.com", &Secret::new("pw".into()), "A").await.expect_err("timeout");
    assert!(err.is_timeout() && !err.outcome_known(), "{err:?}");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_read_that_times_out_is_sent_again() {
    let upstream = Upstream::start().await;
    let mut config = upstream.config();
    config.timeout = MS(200);
    let client = ZulipClient::new(config).expect("client");
    upstream.reply(Reply::Hang);
    upstream.reply(success());
    assert_eq!(client.get_user_group_members(31, false).await.expect("ok"), [10, 227]);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_read_survives_two_503s() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    upstream.reply(unavailable_html());
    upstream.reply(unavailable_json());
    upstream.reply(success());
    assert_eq!(client.get_user_group_members(31, false).await.expect("ok"), [10, 227]);
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn max_retries_is_respected() {
    let upstream = Upstream::start().await;
    for (max_retries, want) in [(2, 3), (0, 1)] {
        let client = upstream.client_with(UpstreamPolicy {
            max_retries,
            retry_base: MS(1),
            ..UpstreamPolicy::default()
        });
        let before = upstream.requests().len();
        for _ in 0..6 {
            upstream.reply(unavailable_json());
        }
        let err = client.get_users().await.expect_err("503");
        assert!(matches!(err, ZulipError::Api { status: 503, .. }), "{err:?}");
        assert_eq!(upstream.requests().len() - before, want, "max_retries {max_retries}");
        upstream.replies.lock().expect("lock").clear();
    }

    // 429s count too.
    let client = upstream.client_with(UpstreamPolicy { max_retries: 1, ..UpstreamPolicy::default() });
    let before = upstream.requests().len();
    for _ in 0..3 {
        upstream.reply(rate_limit_hit("0.01"));
    }
    let err = client.reactivate_user(9).await.expect_err("429");
    assert_eq!(err.rate_limited(), Some(MS(10)));
    assert_eq!(upstream.requests().len() - before, 2);
}

#[tokio::test]
async fn no_call_outlives_its_deadline() {
    let upstream = Upstream::start().await;
    // A 5 s request timeout, but a 600 ms deadline for the whole call.
    let client = upstream.client_with(UpstreamPolicy { deadline: MS(600), ..UpstreamPolicy::default() });
    for _ in 0..3 {
        upstream.reply(Reply::Hang);
    }
    let started = std::time::Instant::now();
    let err = client.get_users().await.expect_err("timeout");
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(took >= MS(550) && took < MS(2000), "{took:?}");
    // No time left for a retry.
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn with_one_in_flight_writes_reach_zulip_one_at_a_time_in_call_order() {
    let upstream = Upstream::start().await;
    let client = upstream.client_with(UpstreamPolicy { max_in_flight: 1, ..UpstreamPolicy::default() });
    for _ in 0..6 {
        upstream.reply(Reply::Delayed(MS(30), Box::new(success())));
    }
    let password = Secret::new("pw".to_owned());
    let rename = UserUpdate { full_name: Some("Alice".into()), ..UserUpdate::default() };
    type Call<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ZulipError>> + 'a>>;
    let calls: Vec<Call<'_>> = vec![
        Box::pin(async { client.create_user("a@example.com", &password, "A").await.map(drop) }),
        Box::pin(client.update_user(42, &rename)),
        Box::pin(client.update_user_group_members(59, &[42], &[])),
        Box::pin(client.deactivate_user(42)),
        Box::pin(client.reactivate_user(42)),
        Box::pin(client.update_user_group_members(59, &[], &[42])),
    ];
    for result in futures_util::future::join_all(calls).await {
        result.expect("write");
    }
    let sent: Vec<_> =
        upstream.requests().iter().map(|r| format!("{} {} {}", r.method, r.path, r.body)).collect();
    assert_eq!(
        sent,
        [
            "POST /api/v1/users email=a%40example.com&password=pw&full_name=A",
            "PATCH /api/v1/users/42 full_name=Alice",
            "POST /api/v1/user_groups/59/members add=%5B42%5D",
            "DELETE /api/v1/users/42 ",
            "POST /api/v1/users/42/reactivate ",
            "POST /api/v1/user_groups/59/members delete=%5B42%5D",
        ]
    );
    assert_eq!(upstream.max_concurrent(), 1);
}

#[tokio::test]
async fn writes_to_different_entities_run_side_by_side_up_to_max_in_flight() {
    let upstream = Upstream::start().await;
    let client = upstream.client_with(UpstreamPolicy { max_in_flight: 3, ..UpstreamPolicy::default() });
    for _ in 0..6 {
        upstream.reply(Reply::Delayed(MS(200), Box::new(success())));
    }
    let rename = UserUpdate { full_name: Some("Alice".into()), ..UserUpdate::default() };
    let writes = (0..6).map(|id| client.update_user(id + 1, &rename));
    for result in futures_util::future::join_all(writes).await {
        result.expect("write");
    }
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(upstream.max_concurrent(), 3);
}

#[tokio::test]
async fn reads_run_side_by_side_up_to_max_in_flight() {
    let upstream = Upstream::start().await;
    let client = upstream.client_with(UpstreamPolicy { max_in_flight: 2, ..UpstreamPolicy::default() });
    for _ in 0..5 {
        upstream.reply(Reply::Delayed(MS(200), Box::new(success())));
    }
    let reads = (0..5).map(|id| client.get_user_group_members(id, false));
    for result in futures_util::future::join_all(reads).await {
        result.expect("read");
    }
    assert_eq!(upstream.requests().len(), 5);
    assert_eq!(upstream.max_concurrent(), 2);
}

#[tokio::test]
async fn the_long_poll_bypasses_a_full_queue() {
    let upstream = Upstream::start().await;
    let client = upstream.client_with(UpstreamPolicy { max_in_flight: 1, ..UpstreamPolicy::default() });
    // A write that never returns holds the only permit.
    upstream.reply(Reply::Hang);
    let stuck = tokio::spawn({
        let client = client.clone();
        async move { client.deactivate_user(42).await }
    });
    upstream.arrived(1).await;

    upstream.serve(&exchange(EVENTS, 42, "blocking"));
    let events = client.get_events("q", 34, false, Duration::from_secs(5)).await.expect("poll");
    assert_eq!(events, [Event::Heartbeat { id: 35 }]);
    stuck.abort();
}

#[tokio::test]
async fn a_spent_budget_holds_calls_back_without_sending() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    // Zulip's clock (its Date header) is what the reset is read against, not ours.
    upstream.reply(json_reply(
        200,
        &[
            ("Date", "Sun, 01 Mar 2020 00:00:00 GMT"),
            ("X-RateLimit-Limit", "200"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1583020860"), // 60 s after that Date
        ],
        json!({"result": "success", "msg": ""}),
    ));
    client.reactivate_user(9).await.expect("ok");
    let err = client.get_users().await.expect_err("held back");
    assert!(matches!(err, ZulipError::Throttled { .. }), "{err:?}");
    let after = err.rate_limited().expect("retry after");
    assert!(after > Duration::from_secs(58) && after <= Duration::from_secs(60), "{after:?}");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_low_budget_spaces_calls_out() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    // 5 of 200 left, reset 1 s after Zulip's Date: one call every 200 ms.
    let low = || {
        json_reply(
            200,
            &[
                ("Date", "Sun, 01 Mar 2020 00:00:00 GMT"),
                ("X-RateLimit-Limit", "200"),
                ("X-RateLimit-Remaining", "5"),
                ("X-RateLimit-Reset", "1583020801"),
            ],
            json!({"result": "success", "msg": "", "members": []}),
        )
    };
    for _ in 0..3 {
        upstream.reply(low());
    }
    for _ in 0..3 {
        client.get_user_group_members(31, false).await.expect("ok");
    }
    let requests = upstream.requests();
    // The first report arrives with the first answer; the second call takes the first
    // slot at once, the third waits for the next one.
    assert!(gap(&requests, 2) >= MS(150), "{:?}", gap(&requests, 2));
    assert!(gap(&requests, 2) < MS(1000), "{:?}", gap(&requests, 2));
}

#[tokio::test]
async fn a_write_that_cannot_be_sent_in_time_is_not_sent() {
    let upstream = Upstream::start().await;
    let client = upstream.client_with(UpstreamPolicy {
        deadline: MS(600),
        max_in_flight: 1,
        ..UpstreamPolicy::default()
    });
    // The first write hangs until its own deadline, holding the only permit...
    upstream.reply(Reply::Hang);
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.deactivate_user(1).await }
    });
    upstream.arrived(1).await;
    upstream.reply(success());
    // ...so the second gets it too late to be answered: refused, never sent (rather
    // than sent with a few milliseconds left and its outcome made unknown).
    let err = client.deactivate_user(2).await.expect_err("not sent");
    assert!(matches!(err, ZulipError::Throttled { .. }) && err.outcome_known(), "{err:?}");
    assert!(err.rate_limited().is_some());
    assert!(first.await.expect("join").expect_err("timeout").is_timeout());
    assert_eq!(upstream.requests().len(), 1);
}

// === channels (no transcripts: shapes from the OpenAPI description, FL 313) ===

/// `GET /streams`' example response (zulip-openapi.yaml, "Get all channels"), trimmed to
/// the fields any decoder could need plus a few it must ignore.
fn channels_reply() -> Reply {
    json_reply(
        200,
        &[],
        json!({"msg": "", "result": "success", "streams": [
            {"can_remove_subscribers_group": 9, "creator_id": 12, "date_created": 1691057093,
             "description": "A default public channel", "first_message_id": 21,
             "history_public_to_subscribers": true, "invite_only": false,
             "is_announcement_only": false, "is_default": true, "is_web_public": false,
             "message_retention_days": null, "name": "welcome",
             "rendered_description": "<p>A default public channel</p>", "stream_id": 1,
             "stream_post_policy": 1, "stream_weekly_traffic": null},
            {"can_remove_subscribers_group": 10, "creator_id": null, "date_created": 1691057093,
             "description": "A private channel", "first_message_id": 18,
             "history_public_to_subscribers": false, "invite_only": true,
             "is_announcement_only": false, "is_web_public": false,
             "message_retention_days": null, "name": "management",
             "rendered_description": "<p>A private channel</p>", "stream_id": 2,
             "stream_post_policy": 1, "stream_weekly_traffic": null}
        ]}),
    )
}

#[tokio::test]
async fn get_channels_sends_only_what_differs_from_zulips_defaults() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    upstream.reply(channels_reply());
    let channels = client.get_channels(&ChannelQuery::default_channels()).await.expect("channels");
    assert_eq!(
        channels,
        [
            Channel { stream_id: 1, name: "welcome".into(), invite_only: false, is_default: Some(true) },
            Channel { stream_id: 2, name: "management".into(), invite_only: true, is_default: None },
        ]
    );
    upstream.reply(channels_reply());
    client.get_channels(&ChannelQuery::default()).await.expect("channels");
    let requests = upstream.requests();
    let sent: Vec<_> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.query.as_deref(), r.body.as_str()))
        .collect();
    assert_eq!(
        sent,
        [
            (
                "GET",
                "/api/v1/streams",
                Some("include_public=false&include_subscribed=false&include_default=true"),
                ""
            ),
            ("GET", "/api/v1/streams", None, ""),
        ]
    );
    assert!(requests.iter().all(|r| r.authorization == Some(owner_authorization())));
}

#[tokio::test]
async fn unsubscribe_users_sends_json_lists_of_names_and_ids() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    upstream.reply(json_reply(
        200,
        &[],
        json!({"msg": "", "result": "success", "removed": ["general"], "not_removed": ["Café \"ops\""]}),
    ));
    let names = vec!["general".to_owned(), "Café \"ops\"".to_owned()];
    let answer = client.unsubscribe_users(&names, &[42, 7]).await.expect("unsubscribed");
    assert_eq!(answer.removed, ["general"]);
    assert_eq!(answer.not_removed, ["Café \"ops\""]);
    let sent = upstream.sole_request();
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str(), sent.query.as_deref()),
        ("DELETE", "/api/v1/users/me/subscriptions", None)
    );
    assert_eq!(sent.content_type.as_deref(), Some(FORM_CONTENT_TYPE));
    assert_eq!(
        form_fields(&sent),
        [
            ("subscriptions".to_owned(), r#"["general", "Café \"ops\""]"#.to_owned()),
            ("principals".to_owned(), "[42, 7]".to_owned()),
        ]
    );

    // Nothing to remove, or nobody to remove it from: nothing is sent (no `principals`
    // would mean the service account itself).
    assert_eq!(client.unsubscribe_users(&[], &[42]).await.expect("noop"), Unsubscribed::default());
    assert_eq!(client.unsubscribe_users(&names, &[]).await.expect("noop"), Unsubscribed::default());
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn channel_errors_and_retries() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    // An unknown channel name: Zulip's STREAM_DOES_NOT_EXIST, kept by code.
    upstream.reply(json_reply(
        400,
        &[],
        json!({"code": "STREAM_DOES_NOT_EXIST", "msg": "Channel 'nonexistent' does not exist",
               "result": "error", "stream": "nonexistent"}),
    ));
    let err = client.unsubscribe_users(&["nonexistent".to_owned()], &[42]).await.expect_err("400");
    assert!(
        matches!(&err, ZulipError::Api { status: 400, code, .. } if code == "STREAM_DOES_NOT_EXIST"),
        "{err:?}"
    );
    // Idempotent: a reset is retried (the repeat finds nothing left: `not_removed`).
    upstream.reply(Reply::Reset);
    upstream.reply(json_reply(
        200,
        &[],
        json!({"msg": "", "result": "success", "removed": [], "not_removed": ["general"]}),
    ));
    let answer = client.unsubscribe_users(&["general".to_owned()], &[42]).await.expect("retried");
    assert_eq!(answer.not_removed, ["general"]);
    upstream.reply(Reply::Reset);
    upstream.reply(channels_reply());
    assert_eq!(client.get_channels(&ChannelQuery::default()).await.expect("retried").len(), 2);
    assert_eq!(upstream.requests().len(), 5);
}

#[test]
fn profile_data_keeps_string_values_by_field_id_and_skips_the_rest() {
    let user: User = serde_json::from_value(json!({
        "user_id": 5, "email": "a@b.co", "full_name": "A", "is_active": true, "role": 400, "is_bot": false,
        "profile_data": {
            "1": {"value": "x", "rendered_value": "<p>x</p>"},
            "2": {"value": ""},
            "3": {"value": 7},
            "not-an-id": {"value": "y"},
            "4": {"rendered_value": "<p>z</p>"},
            "5": {"value": "[11]"}
        }
    }))
    .expect("user");
    assert_eq!(user.profile_data.get(1), Some("x"));
    assert_eq!(
        (user.profile_data.get(2), user.profile_data.get(3), user.profile_data.get(4)),
        (None, None, None)
    );
    assert_eq!(user.profile_data.get(5), Some("[11]"));

    let mut data = user.profile_data.clone();
    data.set(1, Some("new".into()));
    data.set(5, None);
    data.set(9, Some(String::new()));
    assert_eq!((data.get(1), data.get(5), data.get(9)), (Some("new"), None, None));
    data.retain_only(1);
    assert_eq!(data, {
        let mut only = ProfileData::default();
        only.set(1, Some("new".into()));
        only
    });

    // A cleared value arrives as null.
    let person: PersonUpdate =
        serde_json::from_value(json!({"user_id": 5, "custom_profile_field": {"id": 10, "value": null}}))
            .expect("person");
    assert_eq!(person.custom_profile_field, Some(ProfileValueChange { id: 10, value: None }));
}

// === waits decided from a stale report (issue 15: concurrent writes under the rate limit) ===

/// A success whose report says `remaining` of 200 are left until 60 s after Zulip's `Date`.
fn reported(remaining: u32) -> Reply {
    json_reply(
        200,
        &[
            ("Date", "Sun, 01 Mar 2020 00:00:00 GMT"),
            ("X-RateLimit-Limit", "200"),
            ("X-RateLimit-Remaining", &remaining.to_string()),
            ("X-RateLimit-Reset", "1583020860"),
        ],
        json!({"result": "success", "msg": ""}),
    )
}

/// Three writes at once under a low budget (19 of 200 left for 60 s: one call every
/// 3.2 s), a deadline of 2 s: the first leaves, and its answer shows the budget back.
async fn three_writes_under_a_low_budget(
    upstream: &Upstream,
    client: &ZulipClient,
) -> Vec<Result<(), ZulipError>> {
    upstream.reply(reported(19));
    client.reactivate_user(9).await.expect("the report");
    upstream.reply(Reply::Delayed(MS(300), Box::new(reported(150))));
    upstream.reply(reported(149));
    upstream.reply(reported(148));
    let writes: Vec<_> = (1..=3)
        .map(|id| {
            let client = client.clone();
            tokio::spawn(async move { client.deactivate_user(id).await })
        })
        .collect();
    let mut results = Vec::new();
    for write in writes {
        results.push(write.await.expect("join"));
    }
    results
}

#[tokio::test]
async fn a_write_refused_a_slot_waits_for_the_next_report_while_one_is_coming() {
    let upstream = Upstream::start().await;
    let client = upstream
        .client_with(UpstreamPolicy { deadline: Duration::from_secs(2), ..UpstreamPolicy::default() });
    let results = three_writes_under_a_low_budget(&upstream, &client).await;
    // The second and third slots (3.2 s and 6.3 s away) were beyond the deadline; they
    // waited for the first write's report instead of sending the IdP away with a 429.
    for result in &results {
        assert!(result.is_ok(), "{result:?}");
    }
    assert_eq!(upstream.requests().len(), 4);
    assert!(upstream.requests()[3].at.duration_since(upstream.requests()[1].at) >= MS(250));
}

#[tokio::test]
async fn a_write_waiting_for_its_slot_leaves_when_a_report_shows_the_budget_back() {
    let upstream = Upstream::start().await;
    let client = upstream.client();
    let results = three_writes_under_a_low_budget(&upstream, &client).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let requests = upstream.requests();
    // Slots 3.2 s and 6.3 s away, but the first write's answer (after 300 ms) shows 150
    // left: the upstream is not left idle while they wait.
    let last = requests[3].at.duration_since(requests[1].at);
    assert!(last >= MS(250) && last < Duration::from_secs(2), "{last:?}");
}

#[tokio::test]
async fn a_write_is_refused_at_once_when_no_report_is_coming() {
    let upstream = Upstream::start().await;
    let client = upstream
        .client_with(UpstreamPolicy { deadline: Duration::from_secs(2), ..UpstreamPolicy::default() });
    upstream.reply(reported(1));
    client.reactivate_user(9).await.expect("the report");
    // One left for 60 s: the next slot is now, the one after 60 s away.
    upstream.reply(reported(0));
    client.deactivate_user(1).await.expect("the last call");
    let started = Instant::now();
    let err = client.deactivate_user(2).await.expect_err("held back");
    // Nothing on the wire, nobody waiting: no report can come, refused without waiting.
    assert!(started.elapsed() < MS(500), "{:?}", started.elapsed());
    let after = err.rate_limited().expect("retry after");
    assert!(after > Duration::from_secs(58) && after <= Duration::from_secs(60), "{after:?}");
    assert_eq!(upstream.requests().len(), 2);
}
