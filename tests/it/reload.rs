//! Hot reload: valid, invalid and token-rotation reloads driven through the `Reloader`, a
//! request in flight finishing on the configuration it started with, and a rotated secret
//! file picked up by the file watch. (SIGHUP is sent to the real binary in `leak.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_zulip::FakeZulip;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;

use scim_sidecar::app::{ReadyCheck, Sidecar, StartOptions};
use scim_sidecar::config::{token_digest, Config, ConfigError};
use scim_sidecar::demo::{DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};
use scim_sidecar::reload::{self, ReloadError};

use crate::cli::scratch;
use crate::support::{fake, Harness, TOKEN};

const ROTATED: &str = "rotated-token-0123456789abcdef";
const BETA: &str = "beta-reload-token-0123456789";

async fn status(h: &Harness, token: &str, path: &str) -> StatusCode {
    h.http.get(h.url(path)).bearer_auth(token).send().await.unwrap().status()
}

async fn metrics(h: &Harness) -> String {
    h.http.get(format!("http://{}/metrics", h.addr)).send().await.unwrap().text().await.unwrap()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test]
async fn a_valid_reload_adds_realms_rotates_tokens_and_keeps_unchanged_realms_warm() {
    let h = Harness::start_with(fake(), |_| {}).await;
    let beta_fake = fake().start().await.unwrap();
    assert_eq!(status(&h, TOKEN, "/Users").await, 200);
    let demo_before = h.reloader().current().realms()[0].clone();
    h.upstream();

    let mut next = h.config.clone();
    // Rotation: the old token and a new one overlap for a while...
    next.realms[0].bearer_token_sha256 = vec![token_digest(TOKEN), token_digest(ROTATED)];
    let mut beta = next.realms[0].clone();
    beta.name = "beta".into();
    beta.bearer_token_sha256 = vec![token_digest(BETA)];
    beta.upstream.url = beta_fake.base_url();
    next.realms.push(beta);
    next.max_body_bytes = 100;
    let summary = h.reloader().apply(next.clone()).await.unwrap();
    assert_eq!(summary.added, ["beta"]);
    assert_eq!(summary.kept, ["demo"]);
    assert!(summary.rebuilt.is_empty() && summary.removed.is_empty() && summary.need_restart.is_empty());

    // The realm is the same object: its warm snapshot answers without calling Zulip.
    assert!(Arc::ptr_eq(&h.reloader().current().realms()[0], &demo_before));
    assert_eq!(status(&h, TOKEN, "/Users").await, 200);
    assert_eq!(status(&h, ROTATED, "/Users").await, 200);
    assert!(h.upstream().is_empty(), "the kept realm reloaded its snapshot");
    assert_eq!(status(&h, BETA, "/Users").await, 200);
    assert!(!beta_fake.requests().is_empty(), "beta is served from its own Zulip");
    assert!(metrics(&h).await.contains("scim_realm_ready{realm=\"beta\"} 1"));
    // Options changed too: the body limit is now 100 bytes.
    let big = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("{}@zulip.example.com", "x".repeat(100))});
    let reply = h.http.post(h.url("/Users")).bearer_auth(TOKEN).body(big.to_string()).send().await.unwrap();
    assert_eq!(reply.status(), 413);

    // ...then the old token goes.
    next.realms[0].bearer_token_sha256 = vec![token_digest(ROTATED)];
    let summary = h.reloader().apply(next.clone()).await.unwrap();
    assert_eq!(summary.kept, ["demo", "beta"]);
    assert_eq!(status(&h, TOKEN, "/Users").await, 401);
    assert_eq!(status(&h, ROTATED, "/Users").await, 200);

    // A serving change rebuilds the realm; removing one refuses its token.
    next.realms[0].scim_client_name = "okta".into();
    next.realms.pop();
    let summary = h.reloader().apply(next).await.unwrap();
    assert_eq!((summary.rebuilt, summary.removed), (vec!["demo".to_string()], vec!["beta".to_string()]));
    assert!(!Arc::ptr_eq(&h.reloader().current().realms()[0], &demo_before));
    assert_eq!(status(&h, BETA, "/Users").await, 401);
    assert_eq!(status(&h, ROTATED, "/Users").await, 200);

    let text = metrics(&h).await;
    assert_eq!(metric(&text, "scim_config_reloads_total"), Some(3.0), "{text}");
    assert!(!text.contains("realm=\"beta\"} "), "a removed realm's series stayed:\n{text}");
    assert_eq!(metric(&text, "scim_config_last_reload_success"), Some(1.0), "{text}");
    h.stop().await;
    beta_fake.shutdown().await;
}

#[tokio::test]
async fn an_invalid_reload_keeps_the_configuration_in_force_and_says_so_in_metrics() {
    let h = Harness::start_with(fake(), |_| {}).await;
    let dir = scratch();
    let path = dir.join("sidecar.yaml");
    std::fs::write(
        &path,
        format!(
            "realms:\n  demo:\n    url: http://{}\n    bearer_token: short\n    upstream: {{email: x@y.example.com, api_key: nope}}\n",
            h.addr
        ),
    )
    .unwrap();
    let Err(ReloadError::Invalid(ConfigError::Invalid(problems))) = h.reloader().reload_from(&path).await
    else {
        panic!("an invalid configuration was applied");
    };
    assert!(
        problems.iter().any(|p| p.starts_with("realms.demo.bearer_token: token too short")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.starts_with("realms.demo.upstream.api_key")), "{problems:?}");
    assert_eq!(status(&h, TOKEN, "/Users").await, 200);
    let text = metrics(&h).await;
    assert_eq!(metric(&text, "scim_config_reload_failures_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "scim_config_last_reload_success"), Some(0.0), "{text}");

    // A config whose realm cannot be built (bad audit path) is refused as well.
    let mut next = h.config.clone();
    next.audit = scim_sidecar::audit::AuditTargetConfig::File(dir.join("no/such/dir/audit.jsonl"));
    assert!(matches!(h.reloader().apply(next).await, Err(ReloadError::Startup(_))));
    assert_eq!(status(&h, TOKEN, "/Users").await, 200);
    let text = metrics(&h).await;
    assert_eq!(metric(&text, "scim_config_reload_failures_total"), Some(2.0), "{text}");
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_configuration_it_started_with() {
    let h = Harness::start_with(fake(), |_| {}).await;
    h.fake.delay_next("POST", "/api/v1/users", Duration::from_millis(1500));
    let request = {
        let req = h
            .http
            .request(Method::POST, h.url("/Users"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "slow@zulip.example.com",
                       "name": {"givenName": "Slow", "familyName": "Poke"}})
                .to_string(),
            );
        tokio::spawn(req.send())
    };
    // Wait until Zulip has the call, then remove the token the request came with.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.fake.requests().iter().any(|r| r.method == "POST" && r.path == "/api/v1/users") {
        assert!(Instant::now() < deadline, "the create never reached Zulip");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut next = h.config.clone();
    next.realms[0].bearer_token_sha256 = vec![token_digest(ROTATED)];
    h.reloader().apply(next).await.unwrap();
    assert_eq!(status(&h, TOKEN, "/Users").await, 401);
    let reply = request.await.unwrap().unwrap();
    assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
    assert!(h.fake.user_by_email("slow@zulip.example.com").is_some());
    h.stop().await;
}

#[tokio::test]
async fn a_rotated_token_file_is_picked_up_by_the_file_watch() {
    let zulip: FakeZulip = fake().start().await.unwrap();
    let dir = scratch();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let path = dir.join("sidecar.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nconfig_watch_ms: 20\nrealms:\n  demo:\n    url: \"{}\"\n    bearer_token_file: \"{}\"\n    upstream: {{email: {DEMO_SERVICE_EMAIL}, api_key: {DEMO_SERVICE_API_KEY}}}\n",
            zulip.base_url(),
            token_file.display()
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.files, std::slice::from_ref(&token_file));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = Sidecar::start(&config, listener, StartOptions { ready: ReadyCheck::Awaited, live: None })
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher =
        tokio::spawn(reload::watch(running.reloader(), path.clone(), config.watch_interval, stopped));
    let url = format!("http://{}/scim/v2/Users", running.addr());
    let http = reqwest::Client::new();
    let get = |token: &'static str| http.get(&url).bearer_auth(token).send();
    assert_eq!(get(TOKEN).await.unwrap().status(), 200);

    // Kubernetes-style: the new secret replaces the file.
    let staged = dir.join("token.new");
    std::fs::write(&staged, format!("{ROTATED}\n")).unwrap();
    std::fs::rename(&staged, &token_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(ROTATED).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the rotated token file was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(TOKEN).await.unwrap().status(), 401);

    // A broken edit of the config file is refused; the rotated token keeps working.
    std::fs::write(&path, "realms: {demo: {url: 5}}\n").unwrap();
    let metrics_url = format!("http://{}/metrics", running.addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        if metric(&text, "scim_config_reload_failures_total") == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the broken config was not noticed:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(ROTATED).await.unwrap().status(), 200);
    let _ = stop.send(true);
    watcher.await.unwrap();
    running.shutdown();
    running.join().await;
    zulip.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
