//! The integration harness: a FakeZulip and the sidecar, both on 127.0.0.1:0, real HTTP both
//! ways, configured in code exactly as `scim-sidecar demo` is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

use fake_zulip::{FakeUser, FakeZulip, FakeZulipBuilder, RecordedRequest};
use scim_sidecar::app::{App, ReadyCheck, Running, Sidecar, StartOptions};
use scim_sidecar::config::Config;
use scim_sidecar::demo::{demo_config, DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};
use scim_sidecar::provision::live::LiveOptions;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A running FakeZulip + sidecar pair.
pub struct Harness {
    pub fake: FakeZulip,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    /// The application the sidecar serves (its realms, for live-update tests).
    pub app: Arc<App>,
    /// The configuration it started with.
    pub config: Config,
    running: Option<Running>,
}

/// The fake every test starts from unless it builds its own: a service account (owner),
/// system groups and a few people.
pub fn fake() -> FakeZulipBuilder {
    FakeZulip::builder()
        .service_account(DEMO_SERVICE_EMAIL, DEMO_SERVICE_API_KEY)
        .with_system_groups()
        .with_user(FakeUser::new("hamlet@zulip.example.com", "King Hamlet"))
        .with_user(FakeUser::new("iago@zulip.example.com", "Iago Admin").role(200))
        .with_user(FakeUser::new("othello@zulip.example.com", "Othello Gone").deactivated())
        .with_user(FakeUser::new("welcome-bot@zulip.example.com", "Welcome Bot").bot())
}

impl Harness {
    /// Default fake, default config.
    pub async fn start() -> Harness {
        Harness::start_with(fake(), |_| {}).await
    }

    /// A given fake; `tweak` adjusts the demo config (timeouts, realm options).
    pub async fn start_with(fake: FakeZulipBuilder, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_inner(fake, tweak, false).await
    }

    /// Like [`Harness::start_with`], plus each realm's live task following the fake's events
    /// (as `serve` runs it). It does not wait for events to flow.
    pub async fn start_live(fake: FakeZulipBuilder, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_inner(fake, tweak, true).await
    }

    async fn start_inner(fake: FakeZulipBuilder, tweak: impl FnOnce(&mut Config), live: bool) -> Harness {
        let fake = fake.start().await.expect("fake zulip starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sidecar");
        let mut config = demo_config(listener.local_addr().expect("local addr"), fake.base_url(), TOKEN)
            .expect("demo config");
        config.max_connections = 64;
        tweak(&mut config);
        let options = StartOptions { ready: ReadyCheck::Awaited, live: None };
        let mut running = Sidecar::start(&config, listener, options).await.expect("sidecar starts");
        // Tests assert the upstream calls of what they do, not of the start.
        fake.clear_requests();
        if live {
            running.start_live(LiveOptions::default());
        }
        Harness {
            fake,
            addr: running.addr(),
            http: reqwest::Client::new(),
            app: running.app().clone(),
            config,
            running: Some(running),
        }
    }

    /// The handle that reloads the running configuration.
    pub fn reloader(&self) -> scim_sidecar::reload::Reloader {
        self.running.as_ref().expect("running").reloader()
    }

    /// `http://127.0.0.1:PORT/scim/v2` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/scim/v2{}", self.addr, path)
    }

    /// A request with the bearer token and a SCIM JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            req = req.header("content-type", "application/scim+json").body(body.to_string());
        }
        Reply::from(req.send().await.expect("sidecar answers")).await
    }

    /// A request with the bearer token, the given headers and a raw body (media-type, size,
    /// syntax and precondition tests).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<String>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Reply::from(req.body(body.into()).send().await.expect("sidecar answers")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Upstream requests the fake recorded since the last call (drained).
    pub fn upstream(&self) -> Vec<RecordedRequest> {
        self.fake.take_requests()
    }

    /// Upstream requests other than reads (`GET`).
    pub fn upstream_writes(&self) -> Vec<RecordedRequest> {
        self.upstream().into_iter().filter(|r| r.method != "GET").collect()
    }

    /// The Zulip id of the fake's user with this address.
    pub fn user_id(&self, email: &str) -> u64 {
        self.fake.user_by_email(email).unwrap_or_else(|| panic!("fake has {email}")).user_id
    }

    /// Stops the sidecar (graceful) and the fake; re-raises a panic from the server or a
    /// live task.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
            running.join().await;
        }
        self.fake.clone().shutdown().await;
    }

    /// Fires the shutdown signal without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }

    /// Waits for the server to finish (after [`Harness::begin_shutdown`]).
    pub async fn join(mut self) {
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }
}

/// A sidecar alone (no readiness check, no live task) in front of `upstream`, for tests of an
/// unreachable or unready Zulip. Stop it with [`BareSidecar::stop`].
pub struct BareSidecar {
    pub addr: SocketAddr,
    running: Running,
}

impl BareSidecar {
    pub async fn start(upstream: url::Url, tweak: impl FnOnce(&mut Config)) -> BareSidecar {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sidecar");
        let mut config =
            demo_config(listener.local_addr().expect("local addr"), upstream, TOKEN).expect("demo config");
        config.max_connections = 4;
        config.shutdown_grace = Duration::from_secs(1);
        tweak(&mut config);
        let options = StartOptions { ready: ReadyCheck::OnFirstRequest, live: None };
        let running = Sidecar::start(&config, listener, options).await.expect("sidecar starts");
        BareSidecar { addr: running.addr(), running }
    }

    pub async fn stop(self) {
        self.running.shutdown();
        self.running.join().await;
    }
}

/// A sidecar response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.text().await.expect("body");
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply { status, headers, body, raw }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a SCIM error with this status (and scimType when given).
    #[track_caller]
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "{}", self.raw);
        assert_eq!(self.header("content-type"), Some("application/scim+json"), "{}", self.raw);
        assert_eq!(self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{}", self.raw);
        assert_eq!(self.body["status"], status.to_string(), "{}", self.raw);
        assert_eq!(self.body.get("scimType").and_then(Value::as_str), scim_type, "{}", self.raw);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", self.raw);
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.raw);
        &self.body
    }
}

/// The `(method, path)` pairs of recorded requests, for compact assertions.
pub fn calls(requests: &[RecordedRequest]) -> Vec<(String, String)> {
    requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect()
}

/// `(method, path)` literal helper.
pub fn call(method: &str, path: impl Into<String>) -> (String, String) {
    (method.to_string(), path.into())
}
