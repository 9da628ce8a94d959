//! Secret-leak proof: every log line (RUST_LOG=debug, JSON), audit line and CLI output of a
//! full run of the real binary — two realms (tokens and API keys inline and from files, a JWT
//! realm), successes, refusals, upstream failures, config errors, `check-config` (offline and
//! online) — searched for every configured token, API key, and the throwaway password the
//! sidecar sent Zulip for each new account.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_zulip::{Failure, FakeUser, FakeZulip};
use reqwest::Method;
use serde_json::json;

use crate::cli::{realm_yaml, run, scratch, text, BIN};
use crate::support::fake;

const TOKEN_A: &str = "leak-token-alpha-0123456789";
const TOKEN_A_FILE: &str = "leak-token-alpha-file-0123456789";
const TOKEN_B: &str = "leak-token-beta-0123456789";
const TOKEN_B_ROTATED: &str = "leak-token-beta-rotated-0123456789";
const KEY_A: &str = scim_sidecar::demo::DEMO_SERVICE_API_KEY;
const KEY_B: &str = "betakeybetakeybetakeybetakey4567";
const EMAIL: &str = scim_sidecar::demo::DEMO_SERVICE_EMAIL;
const WEAK_TOKEN: &str = "weak-secret-9";
const BAD_KEY: &str = "not-an-api-key-but-still-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the sidecar did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_api_key_or_password_appears_in_any_log_audit_or_cli_output() {
    let a = fake().start().await.unwrap();
    let mut bot = FakeUser::new(EMAIL, "Beta Service").role(100).api_key(KEY_B);
    bot.can_create_users = true;
    let b = FakeZulip::builder()
        .with_system_groups()
        .with_user(bot)
        .with_user(FakeUser::new("bea@beta.example.com", "Bea Beta"))
        .start()
        .await
        .unwrap();
    let dir = scratch();
    std::fs::write(dir.join("token-a"), format!("{TOKEN_A_FILE}\n")).unwrap();
    std::fs::write(dir.join("key-b"), format!("{KEY_B}\n")).unwrap();
    let port = free_port();
    let audit = dir.join("audit.jsonl");
    let jwks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/realm-a-jwks.json");
    let config = format!(
        "listen: \"127.0.0.1:{port}\"
log_format: json
config_watch_ms: 0
audit: {{path: \"{audit}\"}}
realms:
{alpha}    bearer_token_file: \"{token_file}\"
    jwt: {{issuer: \"https://issuer.example\", audience: \"api://leak\", jwks_file: \"{jwks}\"}}
  beta:
    url: \"{b_url}\"
    bearer_token: \"{TOKEN_B}\"
    upstream:
      email: \"{EMAIL}\"
      api_key_file: \"{key_file}\"
",
        audit = audit.display(),
        alpha = realm_yaml("alpha", &a.base_url(), TOKEN_A, EMAIL, KEY_A),
        token_file = dir.join("token-a").display(),
        jwks = jwks.display(),
        b_url = b.base_url(),
        key_file = dir.join("key-b").display(),
    );
    // alpha accepts `bearer_token` and `bearer_token_file` both.
    let config_path = dir.join("sidecar.yaml");
    std::fs::write(&config_path, &config).unwrap();

    let mut captured = String::new();
    // check-config, offline and online.
    for args in [vec!["check-config"], vec!["check-config", "--online"]] {
        let mut args = args;
        let path = config_path.to_str().unwrap().to_string();
        args.extend(["--config", &path]);
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let output =
            tokio::task::spawn_blocking(move || run(&owned.iter().map(String::as_str).collect::<Vec<_>>()))
                .await
                .unwrap();
        let (stdout, stderr) = text(&output);
        captured.push_str(&stdout);
        captured.push_str(&stderr);
    }
    assert!(captured.contains("configuration ok"), "{captured}");
    assert!(
        captured
            .contains("realm alpha: JWTs from https://issuer.example for [\"api://leak\"]: 2 usable key(s)"),
        "{captured}"
    );
    assert!(captured.contains("realm alpha: static bearer tokens: 2"), "{captured}");
    // A broken config: a weak token and a malformed API key, inline and through the environment.
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        format!("realms:\n{}", realm_yaml("alpha", &a.base_url(), WEAK_TOKEN, EMAIL, BAD_KEY)),
    )
    .unwrap();
    let broken_path = broken.to_str().unwrap().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["check-config", "--config", &broken_path])
            .env("SCIM_SIDECAR_SHUTDOWN_GRACE_MS", BAD_KEY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let (stdout, stderr) = text(&output);
    assert!(stderr.contains("realms.alpha.bearer_token: token too short"), "{stderr}");
    captured.push_str(&stdout);
    captured.push_str(&stderr);

    // The server, logging everything at debug.
    let log_path = dir.join("serve.log");
    let out_path = dir.join("serve.out");
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config_path.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(File::create(&out_path).unwrap()))
        .stderr(Stdio::from(File::create(&log_path).unwrap()))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let scim = |method: Method, path: &str, token: &str, body: Option<serde_json::Value>| {
        let mut req = http.request(method, format!("{base}/scim/v2{path}")).bearer_auth(token);
        if let Some(body) = body {
            req = req.header("content-type", "application/scim+json").body(body.to_string());
        }
        req.send()
    };
    let user = |name: &str| {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("{name}@zulip.example.com"),
               "name": {"givenName": name, "familyName": "Leak"}, "externalId": format!("ext-{name}"), "active": true})
    };
    for (i, (token, realm)) in [(TOKEN_A, &a), (TOKEN_A_FILE, &a), (TOKEN_B, &b)].into_iter().enumerate() {
        let name = format!("leaker{i}");
        let created = scim(Method::POST, "/Users", token, Some(user(&name))).await.unwrap();
        assert_eq!(created.status().as_u16(), 201);
        let created: serde_json::Value = created.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        let deactivate = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                "Operations": [{"op": "replace", "value": {"active": false, "displayName": "Renamed Leak"}}]});
        realm.fail_next(
            "DELETE",
            &format!("/api/v1/users/{id}"),
            Failure::Api { status: 400, code: "BAD_REQUEST".into(), msg: "refused".into() },
        );
        let partial =
            scim(Method::PATCH, &format!("/Users/{id}"), token, Some(deactivate.clone())).await.unwrap();
        assert!(partial.status().is_client_error());
        realm.fail_next("DELETE", &format!("/api/v1/users/{id}"), Failure::Reset);
        let reset = scim(Method::PATCH, &format!("/Users/{id}"), token, Some(deactivate)).await.unwrap();
        assert!(reset.status().is_server_error() || reset.status().is_success(), "{}", reset.status());
        realm.fail_next("GET", "/api/v1/users", Failure::Html404);
        let _ =
            scim(Method::GET, "/Users?filter=userName%20eq%20%22nobody%40x%22", token, None).await.unwrap();
        let _ = scim(Method::GET, "/Users/999999", token, None).await.unwrap();
        let _ = scim(Method::POST, "/Users", token, Some(json!({"userName": 5}))).await.unwrap();
        let _ = scim(
            Method::POST,
            "/Groups",
            token,
            Some(json!({"displayName": "Leakers", "members": [{"value": id}]})),
        )
        .await
        .unwrap();
    }
    // Refusals: wrong and near-miss tokens, a bogus JWT, each realm's token on a bad path.
    for bad in [&TOKEN_A[..TOKEN_A.len() - 1], "x.y.z", KEY_A, KEY_B] {
        let r = scim(Method::GET, "/Users", bad, None).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let _ = scim(Method::GET, "/Widgets", TOKEN_B, None).await.unwrap();
    let _ = http.get(format!("{base}/metrics")).send().await.unwrap();

    // SIGHUP: a rotated beta token (and a broken edit before it, refused) take effect.
    std::fs::write(&config_path, config.replace(TOKEN_B, WEAK_TOKEN)).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let log_so_far = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log_so_far().contains("the previous configuration stays in force") {
        assert!(Instant::now() < deadline, "the refused reload was not logged:\n{}", log_so_far());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&config_path, config.replace(TOKEN_B, TOKEN_B_ROTATED)).unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while scim(Method::GET, "/Users", TOKEN_B_ROTATED, None).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload:\n{}", log_so_far());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scim(Method::GET, "/Users", TOKEN_B, None).await.unwrap().status(), 401);

    // Stop with SIGTERM (as Kubernetes does) and wait for the drain.
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "serve exited with {status}");

    let log = std::fs::read_to_string(&log_path).unwrap();
    let out = std::fs::read_to_string(&out_path).unwrap();
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(log.lines().count() > 30, "too little logged to prove anything:\n{log}");
    assert!(log.contains("\"status\":401") && log.contains("request failed"), "{log}");
    assert!(trail.lines().count() >= 6, "{trail}");
    assert!(
        trail.contains("leaker2@zulip.example.com") && trail.contains("\"result\":\"partial\""),
        "{trail}"
    );
    // Debug logging shows the upstream calls and their failures: a real haystack.
    assert!(log.contains("leaker0") || log.contains("/api/v1/users"), "{log}");
    captured.push_str(&log);
    captured.push_str(&out);
    captured.push_str(&trail);

    // The throwaway passwords the sidecar sent to Zulip for the new accounts.
    let passwords: Vec<String> = a
        .requests()
        .into_iter()
        .chain(b.requests())
        .filter(|r| r.method == "POST" && r.path == "/api/v1/users")
        .filter_map(|r| r.param("password").map(str::to_string))
        .collect();
    assert_eq!(passwords.len(), 3, "one POST /users per realm token");
    let mut secrets: Vec<String> = [TOKEN_A, TOKEN_A_FILE, TOKEN_B, KEY_A, KEY_B, WEAK_TOKEN, BAD_KEY]
        .iter()
        .map(|s| s.to_string())
        .collect();
    secrets.extend(passwords);
    for secret in &secrets {
        assert!(!captured.contains(secret.as_str()), "a secret ({}…) appears in the output", &secret[..4]);
        // Nor its Basic-auth form (email:key in base64).
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{secret}"));
        assert!(!captured.contains(&basic), "a Basic credential appears in the output");
    }
    a.shutdown().await;
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
