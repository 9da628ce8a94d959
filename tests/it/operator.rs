//! The operator's first hour, scripted: Zulip down then up, a refused PATCH, an import under a
//! tight rate limit, a request hyper cannot parse, a bad config. Each test captures the log
//! (JSON lines at `info`, as `serve` logs by default) and asserts that the lines an operator
//! needs are there, at the right level, with the fields that answer "why is it not ready",
//! "why was this refused", "what changed" and "how long will the import take".

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::subscriber::DefaultGuard;

use fake_zulip::RateLimitRules;
use scim_sidecar::app::{ReadyCheck, Sidecar, StartOptions};
use scim_sidecar::config::{Config, ConfigError};
use scim_sidecar::demo::demo_config;

use crate::support::{fake, Harness, Reply, TOKEN};

/// The log lines written while the guard lives, as JSON objects.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures this thread's log at `info` (the default level of `serve`), as `serve`'s JSON
    /// lines. The tests run on a current-thread runtime, so every task logs here.
    fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let buffer = logs.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(buffer.clone()))
            .finish();
        // tracing-core asks only the registering thread's default subscriber about a new
        // callsite while a single dispatcher is alive, so a callsite first reached by another
        // test's thread during this capture would be cached as "not interested" for good. A
        // second dispatcher that lives as long as the process (and wants nothing) makes it
        // ask every live dispatcher instead.
        static WITNESS: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        WITNESS.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).expect("a JSON log line")).collect()
    }

    fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.lines().into_iter().filter(|line| pred(line)).collect()
    }

    /// The first line `pred` accepts, waiting for it (bounded).
    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        // Above the readiness check's longest backoff (30 s): a retry always falls inside.
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| pred(line)) {
                return line;
            }
            assert!(Instant::now() < deadline, "no {what} line in:\n{}", self.dump());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn dump(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn text<'a>(line: &'a Value, field: &str) -> &'a str {
    line[field].as_str().unwrap_or("")
}

fn is(line: &Value, level: &str, message: &str) -> bool {
    text(line, "level") == level && text(line, "message") == message
}

/// Zulip is down when the sidecar starts: the warning, `/readyz` and a SCIM request's answer
/// say why (the whole cause chain) and since when; when Zulip comes up the realm turns ready.
/// Probes write nothing at `info`.
#[tokio::test(flavor = "current_thread")]
async fn zulip_down_then_up_says_why_and_since_when() {
    let (logs, _guard) = Logs::capture();
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let zulip_addr = reserved.local_addr().unwrap();
    drop(reserved); // nothing listens there: connection refused
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = url::Url::parse(&format!("http://{zulip_addr}")).unwrap();
    let config = demo_config(listener.local_addr().unwrap(), upstream, TOKEN).unwrap();
    let options = StartOptions { ready: ReadyCheck::Background, live: None };
    let running = Sidecar::start(&config, listener, options).await.unwrap();
    let base = format!("http://{}", running.addr());
    let http = reqwest::Client::new();

    let warning = logs.wait_for("realm not ready", |l| is(l, "WARN", "realm not ready")).await;
    assert_eq!(text(&warning, "realm"), "demo");
    let error = text(&warning, "error");
    assert!(error.starts_with("zulip unreachable: error sending request for url"), "{error}");
    assert!(error.contains("tcp connect error") && error.contains("refused"), "the cause is kept: {error}");

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.starts_with("not ready: demo\ndemo: not ready since "), "{body}");
    assert!(
        body.contains("; last upstream error at ") && body.contains("zulip unreachable: cannot connect: "),
        "{body}"
    );
    assert!(body.contains("refused") && !body.contains("http://"), "the cause, no URL: {body}");

    let reply =
        Reply::from(http.get(format!("{base}/scim/v2/Users")).bearer_auth(TOKEN).send().await.unwrap()).await;
    assert_eq!(reply.status.as_u16(), 502);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains("cannot connect") && detail.contains("refused"), "{detail}");
    assert!(detail.ends_with("nothing was changed") && !detail.contains("http://"), "{detail}");
    let access = logs.wait_for("502 access", |l| text(l, "message") == "request" && l["status"] == 502).await;
    assert_eq!(text(&access, "level"), "WARN");
    assert!(text(&access, "error").contains("tcp connect error"), "{access}");
    assert_eq!(text(&access, "reason"), detail);

    // Zulip comes up on that address: the next retry finds it.
    let fake =
        fake().feature_level(400).start_on(TcpListener::bind(zulip_addr).await.unwrap()).await.unwrap();
    let ready = logs.wait_for("realm ready", |l| is(l, "INFO", "realm ready")).await;
    assert_eq!(ready["feature_level"], 400);
    let body = http.get(format!("{base}/readyz")).send().await.unwrap().text().await.unwrap();
    assert!(body.starts_with("ready\ndemo: ready since "), "{body}");
    assert!(body.contains("last upstream error at"), "the last error stays visible: {body}");

    http.get(format!("{base}/livez")).send().await.unwrap();
    http.get(format!("{base}/metrics")).send().await.unwrap();
    let probes = logs.matching(|l| matches!(text(l, "route"), "livez" | "readyz" | "metrics"));
    assert!(probes.is_empty(), "probes and scrapes log at debug: {probes:?}");
    running.shutdown();
    running.join().await;
    fake.shutdown().await;
}

/// A refused PATCH is explained at `info` (scimType and the detail the IdP got), with the
/// IdP's request id and the client's name; the same refusal repeated is written once; an
/// accepted PATCH writes a change line naming the request, the user and what changed.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_patch_is_explained_and_a_change_says_what_changed() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start_with(fake(), |c| c.realms[0].scim_client_name = "okta".into()).await;
    let id = h.user_id("hamlet@zulip.example.com");
    let path = format!("/Users/{id}");
    let bad = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "userName[", "value": "x"}]});
    let headers = [("content-type", "application/scim+json"), ("x-request-id", "okta-req-1")];
    let reply = h.raw(Method::PATCH, &path, &headers, bad.to_string()).await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.raw);
    assert_eq!(reply.headers["x-request-id"], "okta-req-1", "the request id comes back");
    for _ in 0..3 {
        h.raw(Method::PATCH, &path, &headers, bad.to_string()).await;
    }
    let refused = logs.matching(|l| text(l, "message") == "request" && l["status"] == 400);
    assert_eq!(refused.len(), 1, "repeats are held back: {refused:#?}");
    let line = &refused[0];
    assert_eq!(text(line, "level"), "INFO");
    assert_eq!((text(line, "client"), text(line, "request_id")), ("okta", "okta-req-1"));
    assert_eq!(text(line, "route"), "patch_user");
    assert_eq!(text(line, "scim_type"), reply.body["scimType"].as_str().unwrap());
    assert_eq!(text(line, "reason"), reply.body["detail"].as_str().unwrap());
    assert!(line["latency_ms"].as_f64().is_some_and(|ms| (ms * 100.0).fract() == 0.0), "2 decimals: {line}");

    let good = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"displayName": "Prince Hamlet", "role": "moderator"}}]});
    let headers = [("content-type", "application/scim+json"), ("client-request-id", "entra-7")];
    let reply = h.raw(Method::PATCH, &path, &headers, good.to_string()).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.raw);
    let change = logs.wait_for("change", |l| text(l, "target") == "scim_sidecar::changes").await;
    assert_eq!(text(&change, "level"), "INFO");
    for (field, want) in [
        ("realm", "demo"),
        ("client", "okta"),
        ("request_id", "entra-7"),
        ("operation", "update"),
        ("resource", "User"),
        ("address", "hamlet@zulip.example.com"),
        ("attributes", "name,role"),
    ] {
        assert_eq!(text(&change, field), want, "{field} in {change}");
    }
    assert_eq!(change["id"], id);
    assert!(!logs.dump().contains("UserChanges"), "no Debug dumps");
    h.stop().await;
}

/// An import under a tight rate limit: while writes queue, progress lines say how many are
/// queued and done, the rate and the time left; the queue's end is logged; the gauges exist.
#[tokio::test(flavor = "current_thread")]
async fn an_import_under_a_tight_rate_limit_shows_its_progress() {
    let (logs, _guard) = Logs::capture();
    let limited = fake().rate_limit(RateLimitRules { rules: vec![(Duration::from_secs(1), 4)] });
    let h = Harness::start_with(limited, |c| c.progress_interval = Duration::from_millis(150)).await;
    let creates = (0..8).map(|i| {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("import{i}@zulip.example.com"), "name": {"givenName": "Im", "familyName": format!("Port {i}")}});
        let h = &h;
        async move { h.post("/Users", &body).await }
    });
    let metrics = async {
        let line =
            logs.wait_for("progress", |l| is(l, "INFO", "writes queued behind zulip's rate limit")).await;
        let text =
            h.http.get(format!("http://{}/metrics", h.addr)).send().await.unwrap().text().await.unwrap();
        (line, text)
    };
    let (replies, (progress, metrics)) = tokio::join!(futures_util::future::join_all(creates), metrics);
    assert!(replies.iter().all(|r| r.status.as_u16() == 201), "{replies:#?}");
    assert!(progress["queued_writes"].as_u64().is_some_and(|n| n > 0), "{progress}");
    for field in ["done", "writes_per_min", "rate_limit_wait_s", "zulip_budget", "rate_limited"] {
        assert!(progress.get(field).is_some(), "{field} in {progress}");
    }
    assert!(metrics.contains("scim_writes_queued{realm=\"demo\"}"), "{metrics}");
    assert!(metrics.contains("zulip_rate_limit_wait_seconds{realm=\"demo\"}"), "{metrics}");
    let end = logs.wait_for("queue end", |l| is(l, "INFO", "write queue empty again")).await;
    assert!(end["done"].as_u64().is_some_and(|n| n >= 1), "{end}");
    let created =
        logs.matching(|l| text(l, "target") == "scim_sidecar::changes" && text(l, "operation") == "create");
    assert_eq!(created.len(), 8, "a change line per created user");
    assert!(created.iter().all(|l| text(l, "address").starts_with("import")), "{created:#?}");
    h.stop().await;
}

/// `/Users/<id>` copied as printed: percent-encoded, a SCIM 400 naming the placeholder; raw,
/// hyper refuses the request line itself (400 without a body) and the log says so at `info`.
#[tokio::test(flavor = "current_thread")]
async fn placeholder_ids_get_an_answer_and_a_log_line() {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start().await;
    let reply = h.patch("/Users/%3Cid%3E", &json!({})).await;
    reply.assert_error(400, None);
    assert!(
        reply.body["detail"].as_str().unwrap().starts_with("<id> in the path is a placeholder"),
        "{}",
        reply.raw
    );

    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    stream.write_all(b"PATCH /scim/v2/Users/<id> HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"), "hyper answers itself");
    let line = logs
        .wait_for("parse error", |l| text(l, "message").starts_with("refused a request the HTTP parser"))
        .await;
    assert_eq!(text(&line, "level"), "INFO");
    h.stop().await;
}

/// A realm with five problems: `check-config` lists them all, in plain words.
#[test]
fn a_bad_config_lists_every_problem_at_once() {
    let yaml = format!(
        "realms:
  acme:
    url: acme.zulip.example.com
    bearer_token: \" {TOKEN}\"
    user_delete: deactivte
    reactivate_on_crate: false
    upstream:
      email: scim-bot@acme.example.com
      api_key: abcdefghijklmnopqrstuvwxyz012345
      timeout_ms: ten
"
    );
    use figment::providers::Format;
    let figment = figment::Figment::from(figment::providers::Yaml::string(&yaml));
    let Err(err @ ConfigError::Invalid(_)) = Config::from_figment(figment) else { panic!("invalid") };
    let printed = err.to_string();
    for want in [
        "realms.acme.reactivate_on_crate: unknown key (did you mean `reactivate_on_create`?)",
        "realms.acme.upstream.timeout_ms: must be a whole number, got \"ten\"",
        "realms.acme.user_delete: must be one of deactivate, reject, got \"deactivte\" (did you mean \"deactivate\"?)",
        "realms.acme.url: not a valid URL: it needs a scheme and a host",
        "realms.acme.bearer_token: the token starts or ends with whitespace",
    ] {
        assert!(printed.contains(want), "missing {want:?} in\n{printed}");
    }
    assert_eq!(printed.lines().count(), 6, "a heading and five problems:\n{printed}");
    assert!(!printed.contains(TOKEN), "no secret");
}
