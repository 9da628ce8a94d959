//! Config tests: everything from strings (YAML text, `Jail` files and variables); the process
//! environment is only touched through `figment::Jail`, which restores it.

// `Jail::expect_with` closures must return `figment::Error`, which is large; not ours to box.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;

const TOKEN_A: &str = "token-a-0123456789abcdef";
const TOKEN_B: &str = "token-b-0123456789abcdef";
const API_KEY: &str = "abcdefghijklmnopqrstuvwxyz012345";

/// Every secret-looking string used below; no message or redaction may contain one.
const SECRETS: &[&str] = &[TOKEN_A, TOKEN_B, API_KEY, "supersecret", "12345678901234567890"];

/// A minimal valid realm `acme`; `{}` is replaced by extra realm keys.
fn realm_yaml(extra: &str) -> String {
    format!(
        "realms:
  acme:
    url: https://acme.zulip.example.com
    bearer_token: {TOKEN_A}
    upstream:
      email: scim-bot@acme.example.com
      api_key: {API_KEY}
{extra}"
    )
}

fn load_str(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_figment(Figment::from(Yaml::string(yaml)))
}

fn problems(yaml: &str) -> Vec<String> {
    match load_str(yaml) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid(problems)) => problems,
        Err(other) => vec![format!("figment error: {other}")],
    }
}

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{text:?} contains a secret");
    }
}

fn digest_hex(token: &str) -> String {
    hex::encode(token_digest(token))
}

#[test]
fn minimal_config_gets_every_default() -> Result<(), ConfigError> {
    let config = load_str(&realm_yaml(""))?;
    assert_eq!(config.listen, "0.0.0.0:8080".parse::<SocketAddr>().ok().unwrap());
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    assert_eq!(config.max_connections, 1024);
    assert_eq!(config.max_body_bytes, 1_048_576);
    assert_eq!(config.request_deadline, Duration::from_secs(25));
    assert_eq!(config.snapshot_ttl, Duration::from_secs(60));
    let [realm] = &config.realms[..] else { panic!("one realm expected") };
    assert_eq!(realm.name, "acme");
    assert_eq!(realm.url.as_str(), "https://acme.zulip.example.com/");
    assert!(realm.hosts.is_empty());
    assert_eq!(realm.bearer_token_sha256, vec![token_digest(TOKEN_A)]);
    assert_eq!(realm.scim_client_name, "acme");
    assert!(!realm.name_formatted_included);
    assert!(!realm.create_guests_without_streams);
    assert_eq!(realm.user_delete, UserDelete::Deactivate);
    assert!(realm.reactivate_on_create);
    assert_eq!(realm.group_delete, GroupDelete::Deactivate);
    assert_eq!(realm.unknown_members, UnknownMembers::Reject);
    assert_eq!(realm.external_id_field, None);
    assert_eq!(realm.upstream.url, realm.url);
    assert_eq!(realm.upstream.email, "scim-bot@acme.example.com");
    assert_eq!(realm.upstream.api_key.expose(), API_KEY);
    assert_eq!(realm.upstream.timeout, Duration::from_secs(10));
    assert!(!realm.upstream.allow_insecure_upstream);
    assert_eq!(realm.upstream.max_in_flight, 8);
    Ok(())
}

#[test]
fn every_key_can_be_set() -> Result<(), ConfigError> {
    let yaml = format!(
        "listen: 127.0.0.1:9000
log_format: pretty
shutdown_grace_ms: 1
max_connections: 2
max_body_bytes: 3
request_deadline_ms: 4
snapshot_ttl_ms: 5
realms:
  root:
    url: http://localhost:9991
    hosts: [Zulip.Example.com, zulip.example.com:443]
    bearer_token: {TOKEN_A}
    scim_client_name: entra
    name_formatted_included: true
    create_guests_without_streams: true
    user_delete: reject
    reactivate_on_create: false
    group_delete: reject
    unknown_members: ignore
    external_id_field: \" SCIM external ID \"
    upstream:
      url: http://zulip.internal:9991
      email: scim-bot@example.com
      api_key: {API_KEY}
      timeout_ms: 6
      allow_insecure_upstream: true
      max_in_flight: 3
"
    );
    let config = load_str(&yaml)?;
    assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_eq!(config.shutdown_grace, Duration::from_millis(1));
    assert_eq!(config.max_connections, 2);
    assert_eq!(config.max_body_bytes, 3);
    assert_eq!(config.request_deadline, Duration::from_millis(4));
    assert_eq!(config.snapshot_ttl, Duration::from_millis(5));
    let realm = &config.realms[0];
    assert_eq!(realm.name, "root");
    assert_eq!(realm.hosts, ["zulip.example.com", "zulip.example.com:443"]);
    assert_eq!(realm.scim_client_name, "entra");
    assert!(realm.name_formatted_included);
    assert!(realm.create_guests_without_streams);
    assert_eq!(realm.user_delete, UserDelete::Reject);
    assert!(!realm.reactivate_on_create);
    assert_eq!(realm.group_delete, GroupDelete::Reject);
    assert_eq!(realm.unknown_members, UnknownMembers::Ignore);
    assert_eq!(realm.external_id_field.as_deref(), Some("SCIM external ID"));
    assert_eq!(realm.upstream.url.as_str(), "http://zulip.internal:9991/");
    assert_eq!(realm.upstream.timeout, Duration::from_millis(6));
    assert!(realm.upstream.allow_insecure_upstream);
    assert_eq!(realm.upstream.max_in_flight, 3);
    Ok(())
}

#[test]
fn list_form_tokens_are_all_accepted_in_order() -> Result<(), ConfigError> {
    let yaml = realm_yaml("").replace(
        &format!("bearer_token: {TOKEN_A}"),
        &format!(
            "bearer_token: [{TOKEN_A}, {TOKEN_B}]\n    bearer_token_sha256:\n      - {}",
            digest_hex("token-c-0123456789abcdef").to_uppercase()
        ),
    );
    let config = load_str(&yaml)?;
    assert_eq!(
        config.realms[0].bearer_token_sha256,
        vec![token_digest(TOKEN_A), token_digest(TOKEN_B), token_digest("token-c-0123456789abcdef"),]
    );
    Ok(())
}

#[test]
fn loopback_upstreams_may_use_plain_http() {
    for url in [
        "http://127.0.0.1:9991",
        "http://127.1.2.3",
        "http://[::1]:9991",
        "http://localhost:9991",
        "http://LOCALHOST",
    ] {
        let yaml = realm_yaml(&format!("      url: {url}\n"));
        assert_eq!(problems(&yaml), Vec::<String>::new(), "{url}");
    }
}

/// Each row: a config and the exact problems it must produce (prefix match only for the
/// unknown-key rows, whose messages end with the list of known keys).
#[test]
fn invalid_configs_report_every_problem_with_its_key_path() {
    let with = |from: &str, to: &str| realm_yaml("").replace(from, to);
    let token_line = format!("bearer_token: {TOKEN_A}");
    let api_key_line = format!("api_key: {API_KEY}");
    let table: Vec<(&str, String, Vec<String>)> = vec![
        ("no realms", "listen: 0.0.0.0:9000\n".into(), vec![NO_REALMS.into()]),
        ("empty realms", "realms: {}\n".into(), vec![NO_REALMS.into()]),
        (
            "blank externalId field label",
            realm_yaml("    external_id_field: \"  \"\n"),
            vec!["realms.acme.external_id_field: must not be empty (leave the key out to not store externalId)".into()],
        ),
        (
            "externalId field label longer than Zulip allows",
            realm_yaml(&format!("    external_id_field: {}\n", "x".repeat(41))),
            vec!["realms.acme.external_id_field: longer than Zulip's 40 characters for a profile field label".into()],
        ),
        (
            "custom_profile_field_map keys that name no storable attribute, and reused labels",
            realm_yaml(
                "    external_id_field: SCIM id\n    custom_profile_field_map:\n      userName: Login\n      nickName2: Nick\n      title: SCIM id\n      preferredLanguage: \"\"\n",
            ),
            vec![
                "realms.acme.custom_profile_field_map.\"nickName2\": not an attribute that can be stored; one of nickName, profileUrl, title, userType, preferredLanguage, locale, timezone, phoneNumbers[type eq \"…\"]…, addresses[type eq \"…\"]…, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".into(),
                "realms.acme.custom_profile_field_map.\"preferredLanguage\": the label of a Zulip custom profile field is required".into(),
                "realms.acme.custom_profile_field_map.\"title\": is the external_id_field's label: one field per attribute".into(),
                "realms.acme.custom_profile_field_map.\"userName\": userName is stored by the sidecar itself, not in a custom profile field".into(),
            ],
        ),
        (
            "empty realm name",
            realm_yaml("").replace("  acme:", "  \"\":"),
            vec!["realms.\"\": the empty realm name is not allowed: name the root-domain realm `root`".into()],
        ),
        (
            "uppercase realm name",
            realm_yaml("").replace("  acme:", "  Acme:"),
            vec!["realms.Acme: realm names may contain only lowercase letters, digits, `-` and `_` (environment overrides are lowercased)".into()],
        ),
        (
            "empty token",
            with(&token_line, "bearer_token: \"\""),
            vec!["realms.acme.bearer_token: empty token".into()],
        ),
        (
            "weak token",
            with(&token_line, "bearer_token: short-token"),
            vec!["realms.acme.bearer_token: token too short (weak): at least 16 characters required".into()],
        ),
        (
            "same token twice in a list",
            with(&token_line, &format!("bearer_token: [{TOKEN_A}, \"\", {TOKEN_A}]")),
            vec![
                "realms.acme.bearer_token[1]: empty token".into(),
                "realms.acme.bearer_token[2]: the same token is already configured at realms.acme.bearer_token[0]".into(),
            ],
        ),
        (
            "same token in clear and as digest",
            with(&token_line, &format!("{token_line}\n    bearer_token_sha256: {}", digest_hex(TOKEN_A))),
            vec!["realms.acme.bearer_token_sha256: the same token is already configured at realms.acme.bearer_token".into()],
        ),
        (
            "same token in two realms",
            realm_yaml(&realm_yaml("").replace("realms:\n", "").replace("acme", "beta")),
            vec!["realms.beta.bearer_token: the same token is already configured at realms.acme.bearer_token".into()],
        ),
        (
            "bad sha256",
            with(&token_line, "bearer_token_sha256: [abc, zz]"),
            vec![
                "realms.acme.bearer_token_sha256[0]: not a SHA-256 digest (expected 64 hex characters)".into(),
                "realms.acme.bearer_token_sha256[1]: not a SHA-256 digest (expected 64 hex characters)".into(),
            ],
        ),
        (
            "no token",
            with(&token_line, "scim_client_name: okta"),
            vec!["realms.acme: no bearer token: set bearer_token, bearer_token_file, bearer_token_sha256 or jwt".into()],
        ),
        (
            "unreadable token file",
            with(&token_line, "bearer_token_file: /nonexistent/token"),
            vec!["realms.acme.bearer_token_file: cannot read /nonexistent/token: No such file or directory (os error 2)".into()],
        ),
        (
            "missing url",
            with("    url: https://acme.zulip.example.com\n", ""),
            vec!["realms.acme.url: required".into()],
        ),
        (
            "relative url",
            with("https://acme.zulip.example.com", "acme.zulip.example.com"),
            vec!["realms.acme.url: not a valid URL: it needs a scheme and a host".into()],
        ),
        (
            "ftp url",
            with("https://acme.zulip.example.com", "ftp://acme.zulip.example.com"),
            vec!["realms.acme.url: must be an http:// or https:// URL".into()],
        ),
        (
            "url with path",
            with("https://acme.zulip.example.com", "https://acme.zulip.example.com/scim/v2"),
            vec!["realms.acme.url: must not have a path (found `/scim/v2`)".into()],
        ),
        (
            "url with query",
            with("https://acme.zulip.example.com", "https://acme.zulip.example.com/?a=b"),
            vec!["realms.acme.url: must not have a query or fragment".into()],
        ),
        (
            "url with credentials",
            realm_yaml("      url: https://bot:supersecret@zulip.example.com\n"),
            vec!["realms.acme.upstream.url: must not contain credentials".into()],
        ),
        (
            "plain http upstream",
            realm_yaml("      url: http://zulip.internal:9991\n"),
            vec!["realms.acme.upstream.url: plain http to a non-loopback host would send the API key in clear: use https, or set allow_insecure_upstream: true".into()],
        ),
        (
            "plain http realm url as upstream",
            with("https://acme.zulip.example.com", "http://acme.zulip.example.com"),
            vec!["realms.acme.upstream.url: plain http to a non-loopback host would send the API key in clear (defaulted from realms.acme.url): use https, or set allow_insecure_upstream: true".into()],
        ),
        (
            "missing upstream",
            "realms:\n  acme:\n    url: https://acme.zulip.example.com\n    bearer_token: token-a-0123456789abcdef\n".into(),
            vec!["realms.acme.upstream: required".into()],
        ),
        (
            "missing email",
            with("      email: scim-bot@acme.example.com\n", ""),
            vec!["realms.acme.upstream.email: required".into()],
        ),
        (
            "not an email",
            with("scim-bot@acme.example.com", "scim-bot"),
            vec!["realms.acme.upstream.email: not an e-mail address".into()],
        ),
        (
            "both api keys",
            with(&api_key_line, &format!("{api_key_line}\n      api_key_file: /run/secrets/key")),
            vec!["realms.acme.upstream: set only one of api_key and api_key_file".into()],
        ),
        (
            "no api key",
            with(&api_key_line, "timeout_ms: 100"),
            vec!["realms.acme.upstream: set api_key or api_key_file".into()],
        ),
        (
            "api key of the wrong shape",
            with(&api_key_line, "api_key: supersecret-but-not-a-zulip-key!"),
            vec!["realms.acme.upstream.api_key: not a Zulip API key (expected 32 letters and digits)".into()],
        ),
        (
            "unreadable api key file",
            with(&api_key_line, "api_key_file: /nonexistent/key"),
            vec!["realms.acme.upstream.api_key_file: cannot read /nonexistent/key: No such file or directory (os error 2)".into()],
        ),
        (
            "zero timeouts and limits",
            format!(
                "shutdown_grace_ms: 0\nrequest_deadline_ms: 0\nsnapshot_ttl_ms: 0\nmax_connections: 0\nmax_body_bytes: 0\n{}",
                realm_yaml("      timeout_ms: 0\n")
            ),
            vec![
                "realms.acme.upstream.timeout_ms: must be greater than 0".into(),
                "shutdown_grace_ms: must be greater than 0".into(),
                "request_deadline_ms: must be greater than 0".into(),
                "snapshot_ttl_ms: must be greater than 0".into(),
                "max_connections: must be greater than 0".into(),
                "max_body_bytes: must be greater than 0".into(),
            ],
        ),
        (
            "max_in_flight out of range",
            realm_yaml("      max_in_flight: 0\n"),
            vec!["realms.acme.upstream.max_in_flight: must be between 1 and 64".into()],
        ),
        (
            "max_in_flight above the limit",
            realm_yaml("      max_in_flight: 65\n"),
            vec!["realms.acme.upstream.max_in_flight: must be between 1 and 64".into()],
        ),
        (
            "bad listen address",
            format!("listen: localhost:8080\n{}", realm_yaml("")),
            vec!["listen: not an IP socket address (expected e.g. 0.0.0.0:8080 or [::]:8080)".into()],
        ),
        (
            "unknown keys at every level",
            format!("lisen: 1\n{}", realm_yaml("      apikey: x\n      tmeout: 1\n").replace("    url:", "    bearer_tokn: x\n    url:")),
            vec![
                "lisen: unknown key (did you mean `listen`?)".into(),
                "realms.acme.bearer_tokn: unknown key (did you mean `bearer_token`?)".into(),
                "realms.acme.upstream.apikey: unknown key (did you mean `api_key`?)".into(),
                "realms.acme.upstream.tmeout: unknown key (expected one of: url, email,".into(),
            ],
        ),
        (
            "wrong types, secrets not echoed",
            realm_yaml("")
                .replace(&token_line, "bearer_token: {nested: supersecret}")
                .replace("realms:", "max_connections: lots\nlog_format: xml\nrealms:"),
            vec![
                "log_format: must be one of json, pretty, got \"xml\"".into(),
                "max_connections: must be a whole number, got \"lots\"".into(),
                "realms.acme.bearer_token: must be text or a list of texts, got a map".into(),
            ],
        ),
        (
            "numeric secret not echoed",
            with(&api_key_line, "api_key: 12345678901234567890"),
            vec!["realms.acme.upstream.api_key: must be text, got a number".into()],
        ),
        (
            "problems of several realms at once",
            format!(
                "{}  beta:\n    url: nope\n    bearer_token: short\n    upstream:\n      email: x@y\n      api_key: {API_KEY}\n",
                with(&api_key_line, "api_key: tooshort")
            ),
            vec![
                "realms.acme.upstream.api_key: not a Zulip API key (expected 32 letters and digits)".into(),
                "realms.beta.url: not a valid URL: it needs a scheme and a host (expected e.g. https://zulip.example.com)".into(),
                "realms.beta.bearer_token: token too short (weak): at least 16 characters required".into(),
            ],
        ),
    ];

    for (name, yaml, expected) in table {
        let actual = problems(&yaml);
        assert_eq!(actual.len(), expected.len(), "{name}: {actual:#?}");
        for (actual, expected) in actual.iter().zip(&expected) {
            assert!(actual.starts_with(expected.as_str()), "{name}: {actual:?}\n  expected {expected:?}");
            assert_no_secret(actual);
        }
        if let Err(err) = load_str(&yaml) {
            assert_no_secret(&err.to_string());
            assert_no_secret(&format!("{err:?}"));
        }
    }
}

#[test]
fn five_problems_in_one_realm_are_all_reported_in_plain_words() {
    // A mistyped value no longer hides the realm's other problems.
    let yaml = realm_yaml("      timeout_ms: ten\n")
        .replace(&format!("bearer_token: {TOKEN_A}"), &format!("bearer_token: \" {TOKEN_A}\""))
        .replace("    url:", "    user_delete: deactivte\n    reactivate_on_crate: false\n    url: acme.zulip.example.com\n    ignored:");
    let actual = problems(&yaml);
    let expected = [
        "realms.acme.reactivate_on_crate: unknown key (did you mean `reactivate_on_create`?)",
        "realms.acme.ignored: unknown key (expected one of: url, hosts,",
        "realms.acme.upstream.timeout_ms: must be a whole number, got \"ten\"",
        "realms.acme.user_delete: must be one of deactivate, reject, got \"deactivte\" (did you mean \"deactivate\"?)",
        "realms.acme.url: not a valid URL: it needs a scheme and a host",
        "realms.acme.bearer_token: the token starts or ends with whitespace, which an Authorization header cannot carry: remove it",
    ];
    assert_eq!(actual.len(), expected.len(), "{actual:#?}");
    for want in expected {
        assert!(actual.iter().any(|got| got.starts_with(want)), "missing {want:?} in {actual:#?}");
    }
    actual.iter().for_each(|p| assert_no_secret(p));
}

#[test]
fn did_you_mean_suggests_only_close_names() {
    let keys = ["url", "hosts", "bearer_token", "bearer_token_file", "user_delete"];
    assert_eq!(did_you_mean("bearer_tokn", keys), Some("bearer_token"));
    assert_eq!(did_you_mean("Bearer_Token_Fil", keys), Some("bearer_token_file"));
    assert_eq!(did_you_mean("usr_delete", keys), Some("user_delete"));
    assert_eq!(did_you_mean("color", keys), None);
    assert_eq!(did_you_mean("", keys), None);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
fn unknown_key_lists_come_from_the_dtos() {
    assert!(fields_of::<RawConfig>().contains(&"snapshot_ttl_ms"));
    assert!(fields_of::<RawRealm>().contains(&"bearer_token_sha256"));
    assert_eq!(fields_of::<RawUpstream>().len(), 7);
    assert!(fields_of::<RawUpstream>().contains(&"max_in_flight"));
}

#[test]
fn yaml_syntax_error_is_a_figment_error() {
    assert!(matches!(load_str("realms: [\n"), Err(ConfigError::Figment(_))));
}

#[test]
fn secrets_are_read_from_files_without_the_trailing_newline() {
    Jail::expect_with(|jail| {
        jail.create_file("token", &format!("{TOKEN_A}\n"))?;
        jail.create_file("token-next", &format!("{TOKEN_B}\r\n"))?;
        jail.create_file("api-key", &format!("{API_KEY}\n"))?;
        let yaml = realm_yaml("")
            .replace(&format!("bearer_token: {TOKEN_A}"), "bearer_token_file: [token, token-next]")
            .replace(&format!("api_key: {API_KEY}"), "api_key_file: api-key");
        let config = load_str(&yaml).map_err(|e| e.to_string())?;
        let realm = &config.realms[0];
        assert_eq!(realm.bearer_token_sha256, vec![token_digest(TOKEN_A), token_digest(TOKEN_B)]);
        assert_eq!(realm.upstream.api_key.expose(), API_KEY);
        Ok(())
    });
}

#[test]
fn weak_token_in_a_file_names_the_file_not_the_content() {
    Jail::expect_with(|jail| {
        jail.create_file("token", "supersecret\n")?;
        let yaml = realm_yaml("").replace(&format!("bearer_token: {TOKEN_A}"), "bearer_token_file: token");
        assert_eq!(
            problems(&yaml),
            ["realms.acme.bearer_token_file: token: token too short (weak): at least 16 characters required"]
        );
        Ok(())
    });
}

#[test]
fn environment_overrides_the_file_with_double_underscore_nesting() {
    Jail::expect_with(|jail| {
        jail.create_file("sidecar.yaml", &realm_yaml(""))?;
        jail.set_env("SCIM_SIDECAR_CONFIG", "elsewhere.yaml"); // the CLI's, not a key
        jail.set_env("SCIM_SIDECAR_LISTEN", "127.0.0.1:9000");
        jail.set_env("SCIM_SIDECAR_LOG_FORMAT", "pretty");
        jail.set_env("SCIM_SIDECAR_REALMS__ACME__UPSTREAM__TIMEOUT_MS", "5000");
        jail.set_env("SCIM_SIDECAR_REALMS__ACME__SCIM_CLIENT_NAME", "okta");
        jail.set_env("SCIM_SIDECAR_REALMS__ACME__BEARER_TOKEN", format!("[{TOKEN_A}, {TOKEN_B}]"));
        jail.set_env("SCIM_SIDECAR_REALMS__ACME__HOSTS", "acme.zulip.example.com");
        let config = Config::load(Path::new("sidecar.yaml")).map_err(|e| e.to_string())?;
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.log_format, LogFormat::Pretty);
        let [realm] = &config.realms[..] else { panic!("the env realm must merge into `acme`") };
        assert_eq!(realm.upstream.timeout, Duration::from_secs(5));
        assert_eq!(realm.scim_client_name, "okta");
        assert_eq!(realm.hosts, ["acme.zulip.example.com"]);
        assert_eq!(realm.bearer_token_sha256, vec![token_digest(TOKEN_A), token_digest(TOKEN_B)]);
        Ok(())
    });
}

#[test]
fn environment_alone_can_configure_a_realm_and_keeps_secrets_verbatim() {
    Jail::expect_with(|jail| {
        jail.set_env("SCIM_SIDECAR_REALMS__BETA__URL", "https://beta.zulip.example.com");
        jail.set_env("SCIM_SIDECAR_REALMS__BETA__BEARER_TOKEN", "00012345678901234567");
        jail.set_env("SCIM_SIDECAR_REALMS__BETA__UPSTREAM__EMAIL", "bot@beta.example.com");
        jail.set_env("SCIM_SIDECAR_REALMS__BETA__UPSTREAM__API_KEY", "00000000001111111111222222222233");
        let config = Config::load(Path::new("missing.yaml")).map_err(|e| e.to_string())?;
        let realm = &config.realms[0];
        assert_eq!(realm.name, "beta");
        assert_eq!(realm.bearer_token_sha256, vec![token_digest("00012345678901234567")]);
        assert_eq!(realm.upstream.api_key.expose(), "00000000001111111111222222222233");
        Ok(())
    });
}

#[test]
fn problems_from_the_environment_name_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("sidecar.yaml", &realm_yaml(""))?;
        jail.set_env("SCIM_SIDECAR_BOGUS", "1");
        jail.set_env("SCIM_SIDECAR_REALMS__ACME__UPSTREAM__TIMEOUT_MS", "soon");
        let Err(ConfigError::Invalid(problems)) = Config::load(Path::new("sidecar.yaml")) else {
            panic!("expected problems");
        };
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with("bogus: unknown key (from SCIM_SIDECAR_BOGUS)"));
        assert!(problems[1].starts_with("realms.acme.upstream.timeout_ms: must be a whole number, got \"soon\" (from SCIM_SIDECAR_REALMS__ACME__UPSTREAM__TIMEOUT_MS)"), "{problems:#?}");
        Ok(())
    });
}

#[test]
fn problems_from_the_file_name_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("sidecar.yaml", &realm_yaml("      timeout_ms: soon\n"))?;
        let Err(ConfigError::Invalid(problems)) = Config::load(Path::new("sidecar.yaml")) else {
            panic!("expected problems");
        };
        assert_eq!(
            problems,
            ["realms.acme.upstream.timeout_ms: must be a whole number, got \"soon\" (in sidecar.yaml)"]
        );
        Ok(())
    });
}

#[test]
fn missing_file_without_env_realms_is_reported() {
    Jail::expect_with(|_jail| {
        let Err(ConfigError::Invalid(problems)) = Config::load(Path::new("missing.yaml")) else {
            panic!("expected problems");
        };
        assert_eq!(
            problems,
            ["missing.yaml: cannot read configuration file: No such file or directory (os error 2) \
              (and no realm is configured through SCIM_SIDECAR_REALMS__<NAME>__* variables)"]
        );
        Ok(())
    });
}

#[test]
fn redaction_shows_digest_prefixes_and_never_a_secret() -> Result<(), ConfigError> {
    let yaml = realm_yaml("")
        .replace(&format!("bearer_token: {TOKEN_A}"), &format!("bearer_token: [{TOKEN_A}, {TOKEN_B}]"));
    let config = load_str(&yaml)?;
    let redacted = config.redacted();
    let text = redacted.to_string();
    assert_no_secret(&text);
    assert_no_secret(&format!("{config:?}"));
    let tokens = &redacted["realms"]["acme"]["bearer_token_sha256"];
    assert_eq!(tokens["count"], 2);
    assert_eq!(tokens["prefixes"][0], digest_hex(TOKEN_A)[..8]);
    assert_eq!(tokens["prefixes"][1], digest_hex(TOKEN_B)[..8]);
    assert_eq!(redacted["realms"]["acme"]["upstream"]["api_key"], "***");
    assert_eq!(redacted["listen"], "0.0.0.0:8080");
    assert_eq!(redacted["log_format"], "json");
    assert_eq!(redacted["realms"]["acme"]["user_delete"], "deactivate");
    Ok(())
}

#[test]
fn example_sidecar_yaml_is_valid_except_for_its_secret_files() {
    Jail::expect_with(|_jail| {
        let problems = problems(include_str!("../../sidecar.yaml"));
        assert_eq!(
            problems,
            [
                "realms.acme.bearer_token_file: cannot read /run/secrets/scim-sidecar/acme-bearer-token: No such file or directory (os error 2)",
                "realms.acme.upstream.api_key_file: cannot read /run/secrets/scim-sidecar/acme-api-key: No such file or directory (os error 2)",
            ]
        );
        Ok(())
    });
}

#[test]
fn wrong_types_are_described_without_rust_names() {
    let realm = |line: &str| {
        problems(&realm_yaml("").replace("realms:\n  acme:\n", &format!("realms:\n  acme:\n{line}\n")))
    };
    assert_eq!(
        realm("    user_delete: 5"),
        ["realms.acme.user_delete: must be one of deactivate, reject, got 5"]
    );
    assert_eq!(
        realm("    name_formatted_included: yes"),
        ["realms.acme.name_formatted_included: must be true or false, got \"yes\""]
    );
    let upstream = problems(&realm_yaml("").replace(
        "    upstream:\n      email: scim-bot@acme.example.com\n",
        "    upstream: 5\n    other:\n      email: x\n",
    ));
    assert!(
        upstream.contains(&"realms.acme.upstream: must be a map of settings, got 5".to_owned()),
        "{upstream:#?}"
    );
    let top = problems(&format!("listen: [1]\nlog_format: 3\n{}", realm_yaml("")));
    assert_eq!(top, ["listen: must be text, got a list", "log_format: must be one of json, pretty, got 3"]);
}

#[test]
fn custom_profile_field_map_reads_every_kind_of_attribute() -> Result<(), ConfigError> {
    let yaml = realm_yaml(
        "    ignore_unmapped_attributes: true\n    create_missing_fields: true\n    custom_profile_field_map:\n      title: Job title\n      'phoneNumbers[type eq \"work\"].value': Work phone\n      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager: Manager\n",
    );
    let config = load_str(&yaml)?;
    let realm = &config.realms[0];
    assert!(realm.ignore_unmapped_attributes && realm.create_missing_fields);
    let map: Vec<(String, &str)> =
        realm.custom_profile_field_map.iter().map(|(a, l)| (a.to_string(), l.as_str())).collect();
    assert_eq!(
        map,
        [
            ("phoneNumbers[type eq \"work\"].value".to_string(), "Work phone"),
            ("title".to_string(), "Job title"),
            ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".to_string(), "Manager"),
        ]
    );
    Ok(())
}
