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
    assert!(problems.iter().any(|p| p.starts_with("audit.format: unknown value `xml`")), "{problems:?}");
}
