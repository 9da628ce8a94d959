//! The binary's `check-config --online` (against fakes) and `gen-token`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use fake_zulip::{FakeUser, FakeZulip, RateLimitRules};
use scim_sidecar::audit::new_request_id;
use scim_sidecar::config::token_digest;
use scim_sidecar::demo::{DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};

use crate::support::fake;

pub const BIN: &str = env!("CARGO_BIN_EXE_scim-sidecar");

/// A scratch directory for config and secret files.
pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scim-cli-{}", new_request_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `args` (and no `SCIM_SIDECAR_*` from the test's environment).
pub fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("RUST_LOG", "debug");
    for (key, _) in std::env::vars() {
        if key.starts_with("SCIM_SIDECAR_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().unwrap()
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One realm's YAML.
pub fn realm_yaml(name: &str, upstream: &url::Url, token: &str, email: &str, api_key: &str) -> String {
    format!(
        "  {name}:
    url: \"{upstream}\"
    bearer_token: \"{token}\"
    external_id_field: \"SCIM external ID\"
    upstream:
      email: \"{email}\"
      api_key: \"{api_key}\"
"
    )
}

#[tokio::test]
async fn check_config_online_reports_each_realm_and_names_every_problem_with_its_fix() {
    const ADMIN_KEY: &str = "adminkeyadminkeyadminkeyadmin123";
    let good = fake()
        .rate_limit(RateLimitRules { rules: vec![(Duration::from_secs(60), 200)] })
        .start()
        .await
        .unwrap();
    let admin_only = FakeZulip::builder()
        .with_user(FakeUser::new("admin-bot@zulip.example.com", "Admin").role(200).api_key(ADMIN_KEY))
        .start()
        .await
        .unwrap();
    let dir = scratch();
    let ok_path = dir.join("ok.yaml");
    std::fs::write(
        &ok_path,
        format!(
            "realms:\n{}",
            realm_yaml(
                "good",
                &good.base_url(),
                "good-token-0123456789",
                DEMO_SERVICE_EMAIL,
                DEMO_SERVICE_API_KEY
            )
        ),
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        run(&["check-config", "--online", "--config", ok_path.to_str().unwrap()])
    })
    .await
    .unwrap();
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for want in [
        "realm good: Zulip ",
        "(feature level ",
        &format!("realm good: service account {DEMO_SERVICE_EMAIL} authenticates"),
        "role owner",
        "can_create_users and can_change_user_emails: not visible through Zulip's API",
        "externalId field \"SCIM external ID\": not in Zulip yet",
        "realm good: rate limit: ",
        " of 200 requests left",
        "online check ok (1 realm(s))",
    ] {
        assert!(stderr.contains(want), "{want:?} missing in:\n{stderr}");
    }
    // Read-only: nothing was written to Zulip.
    assert!(good.requests().iter().all(|r| r.method == "GET"), "{:?}", good.requests());

    // Three realms, three problems: a wrong API key, an admin that is not an owner, and a
    // Zulip that does not answer.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        url::Url::parse(&format!("http://{addr}")).unwrap()
    };
    let bad_path = dir.join("bad.yaml");
    std::fs::write(
        &bad_path,
        format!(
            "realms:\n{}{}{}",
            realm_yaml(
                "wrongkey",
                &good.base_url(),
                "wrongkey-token-0123456789",
                DEMO_SERVICE_EMAIL,
                "wrongkeywrongkeywrongkeywrongkey"
            ),
            realm_yaml(
                "admin",
                &admin_only.base_url(),
                "admin-token-0123456789",
                "admin-bot@zulip.example.com",
                ADMIN_KEY
            ),
            realm_yaml("down", &closed, "down-token-0123456789", DEMO_SERVICE_EMAIL, DEMO_SERVICE_API_KEY),
        ),
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        run(&["check-config", "--online", "--config", bad_path.to_str().unwrap()])
    })
    .await
    .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for want in [
        &format!("realm wrongkey: PROBLEM: Zulip refuses the API key of {DEMO_SERVICE_EMAIL}: set the account's current API key in realms.wrongkey.upstream.api_key(_file)"),
        "realm admin: service account admin-bot@zulip.example.com authenticates",
        "realm admin: PROBLEM: service account admin-bot@zulip.example.com is not an organization owner (role administrator): make it an owner",
        "realm down: PROBLEM: cannot reach Zulip at",
        "fix realms.down.upstream.url",
        "online check found 3 problem(s)",
    ] {
        assert!(stderr.contains(want), "{want:?} missing in:\n{stderr}");
    }
    assert!(!stderr.contains("wrongkeywrongkeywrongkeywrongkey") && !stderr.contains(ADMIN_KEY), "{stderr}");
    good.shutdown().await;
    admin_only.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gen_token_prints_a_strong_token_and_its_digest() {
    let parse = || {
        let output = run(&["gen-token"]);
        assert!(output.status.success());
        let (stdout, _) = text(&output);
        let mut lines = stdout.lines();
        let token = lines.next().unwrap().strip_prefix("token:  ").unwrap().to_string();
        let digest = lines.next().unwrap().strip_prefix("sha256: ").unwrap().to_string();
        (token, digest)
    };
    let (token, digest) = parse();
    assert_eq!(token.len(), 48);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(scim_sidecar::config::token_problem(&token).is_none());
    assert_eq!(digest, hex::encode(token_digest(&token)));
    assert_ne!(parse().0, token);
}
