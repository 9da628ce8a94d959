//! Config tests of the production keys (issue 9): `audit`, the per-realm allow-list and JWT
//! settings, `trusted_proxy_hops`.

use super::*;

const TOKEN: &str = "token-a-0123456789abcdef";
const API_KEY: &str = "abcdefghijklmnopqrstuvwxyz012345";

fn yaml(top: &str, realm: &str) -> String {
    format!(
        "{top}
realms:
  acme:
    url: https://acme.zulip.example.com
    bearer_token: {TOKEN}
    upstream:
      email: scim-bot@acme.example.com
      api_key: {API_KEY}
{realm}"
    )
}

fn load(text: &str) -> Result<Config, Vec<String>> {
    match Config::from_figment(Figment::from(Yaml::string(text))) {
        Ok(config) => Ok(config),
        Err(ConfigError::Invalid(problems)) => Err(problems),
        Err(other) => Err(vec![other.to_string()]),
    }
}

#[test]
fn audit_targets() {
    assert_eq!(load(&yaml("", "")).unwrap().audit, AuditTargetConfig::Log);
    let file = load(&yaml("audit: {path: /var/log/audit.jsonl, format: json}", "")).unwrap();
    assert_eq!(file.audit, AuditTargetConfig::File("/var/log/audit.jsonl".into()));
    assert_eq!(file.redacted()["audit"]["path"], "/var/log/audit.jsonl");
    assert_eq!(load(&yaml("audit: {path: \"-\"}", "")).unwrap().audit, AuditTargetConfig::Stdout);
    assert_eq!(
        load(&yaml("audit: {format: json}", "")).unwrap_err(),
        ["audit.path: required (a file, or \"-\" for stdout)"]
    );
    let problems = load(&yaml("audit: {path: x, colour: red}", "")).unwrap_err();
    assert_eq!(problems, ["audit.colour: unknown key (expected one of: path, format)"]);
    let problems = load(&yaml("audit: {path: x, format: xml}", "")).unwrap_err();
    assert_eq!(problems, ["audit.format: must be one of json, got \"xml\""]);
}

#[test]
fn ip_networks() {
    for (text, want) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("::/0", "::/0"),
        ("2001:db8::/32", "2001:db8::/32"),
    ] {
        assert_eq!(IpNet::parse(text).unwrap().to_string(), want);
    }
    assert_eq!(IpNet::parse("10.0.0.1/8").unwrap_err(), "host bits set: did you mean 10.0.0.0/8?");
    assert!(IpNet::parse("10.0.0.0/33").is_err());
    assert!(IpNet::parse("example.com").is_err());
    let all = IpNet::parse("0.0.0.0/0").unwrap();
    assert!(all.contains("203.0.113.1".parse().unwrap()));
    assert!(!all.contains("2001:db8::1".parse().unwrap()));
}

fn jwks_path() -> String {
    format!("{}/tests/fixtures/jwt/realm-a-jwks.json", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn allow_ips_jwt_and_proxy_hops() {
    let realm = format!(
        "    allow_ips: [10.0.0.0/8, \"2001:db8::/32\"]
    jwt:
      issuer: https://login.microsoftonline.com/t/v2.0
      audience: api://scim
      jwks_file: {}
      client_ids: app-1
",
        jwks_path()
    );
    let config = load(&yaml("trusted_proxy_hops: 1", &realm)).unwrap();
    assert_eq!(config.trusted_proxy_hops, 1);
    let acme = &config.realms[0];
    assert_eq!(acme.allow_ips.len(), 2);
    let jwt = acme.jwt.as_ref().unwrap();
    assert_eq!(jwt.audiences, ["api://scim"]);
    assert_eq!(jwt.client_ids, ["app-1"]);
    assert_eq!(jwt.jwks.keys.len(), 2);
    let redacted = config.redacted();
    assert_eq!(redacted["realms"]["acme"]["jwt"]["keys"], serde_json::json!(["a-rsa-1", "a-ec-1"]));
    assert_eq!(redacted["realms"]["acme"]["allow_ips"][0], "10.0.0.0/8");

    let problems = load(&yaml(
        "trusted_proxy_hops: 99",
        "    allow_ips: [10.0.0.1/8, nope]\n    jwt: {issuer: x, audience: y, jwks_file: /nonexistent/jwks.json}\n",
    ))
    .unwrap_err();
    assert!(problems.contains(&"trusted_proxy_hops: at most 16".to_owned()), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with("realms.acme.allow_ips[0]: host bits set")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("realms.acme.allow_ips[1]: not an IP network")),
        "{problems:?}"
    );
    let problems = load(&yaml("", "    jwt: {issuer: x, extra: 1}\n")).unwrap_err();
    assert!(problems.iter().any(|p| p.starts_with("realms.acme.jwt.extra: unknown key")), "{problems:?}");

    let problems =
        load(&yaml("", "    jwt: {issuer: x, jwks_file: /nonexistent/jwks.json, algorithms: [HS256]}\n"))
            .unwrap_err();
    assert!(
        problems.contains(&"realms.acme.jwt.audience: required (one value or a list)".to_owned()),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("unsupported algorithm `HS256`")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("realms.acme.jwt.jwks_file: cannot read")), "{problems:?}");
}

#[test]
fn a_jwt_realm_needs_no_static_token_but_two_realms_cannot_share_issuer_and_audience() {
    let realm = |name: &str| {
        format!(
            "  {name}:
    url: https://{name}.zulip.example.com
    jwt: {{issuer: https://issuer, audience: api://scim, jwks_file: {}}}
    upstream: {{email: bot@x.example.com, api_key: {API_KEY}}}
",
            jwks_path()
        )
    };
    let one = format!("realms:\n{}", realm("acme"));
    assert!(load(&one).is_ok(), "{:?}", load(&one).err());
    let two = format!("realms:\n{}{}", realm("acme"), realm("beta"));
    let problems = load(&two).unwrap_err();
    assert_eq!(
        problems,
        ["realms.beta.jwt.audience: issuer https://issuer with audience api://scim is already accepted at realms.acme.jwt"]
    );
}

#[test]
fn jwks_urls() {
    let jwt = |keys: &str| format!("    jwt: {{issuer: x, audience: y, {keys}}}\n");
    let config = load(&yaml(
        "",
        &jwt("jwks_url: \"https://login.example.com/t/discovery/v2.0/keys\", jwks_refresh_s: 600"),
    ))
    .unwrap();
    let acme = config.realms[0].jwt.as_ref().unwrap();
    assert_eq!(acme.jwks_source.to_string(), "https://login.example.com/t/discovery/v2.0/keys");
    assert_eq!(acme.jwks_refresh, Duration::from_secs(600));
    assert!(acme.jwks.keys.is_empty(), "fetched at start, not by validation");
    for (keys, want) in [
        (
            "jwks_url: \"http://login.example.com/keys\"",
            "realms.acme.jwt.jwks_url: must be an https:// URL (plain http only to loopback)",
        ),
        (
            "jwks_url: \"https://u:p@login.example.com/keys\"",
            "realms.acme.jwt.jwks_url: must not contain credentials",
        ),
        (
            "jwks_url: \"https://a/keys\", jwks_file: /x",
            "realms.acme.jwt: set only one of jwks_file and jwks_url",
        ),
        ("algorithms: [RS256]", "realms.acme.jwt: set jwks_file or jwks_url"),
        (
            "jwks_url: \"https://a/keys\", jwks_refresh_s: 0",
            "realms.acme.jwt.jwks_refresh_s: must be greater than 0",
        ),
    ] {
        assert_eq!(load(&yaml("", &jwt(keys))).unwrap_err(), [want], "{keys}");
    }
    assert!(load(&yaml("", &jwt("jwks_url: \"http://127.0.0.1:9/keys\""))).is_ok());
}
