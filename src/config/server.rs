//! The `server:` section: connection timeouts, HTTP/2 bounds, request-rate limits and TLS.
//! Extracted on its own (like each realm), so a problem here does not hide the others.

use std::path::PathBuf;
use std::time::Duration;

use figment::value::{Dict, Value};
use serde::Deserialize;
use serde_json::json;

use super::{fields_of, millis, Problems};

/// The smallest header buffer hyper accepts for HTTP/1.1 (it panics below it).
pub const MIN_HEADER_BYTES: usize = 8192;

/// How connections and requests are bounded (`server:` in `sidecar.yaml`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Time a client has to send a request's complete headers (HTTP/1.1: counted from the
    /// connection's start or the previous response, so it also bounds an idle keep-alive
    /// connection). A connection that has not yet sent an authenticated request is closed
    /// after this long without a request in flight, whatever its protocol.
    pub header_read_timeout: Duration,
    /// An authenticated connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Time to receive a request body once its headers are in (408 after it).
    pub body_read_timeout: Duration,
    /// Largest header section accepted (HTTP/1.1: 431; HTTP/2: header list size).
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    /// Interval of HTTP/2 keep-alive pings; `None`: no pings.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long a ping may stay unanswered before the connection is closed.
    pub http2_keep_alive_timeout: Duration,
    /// Requests without a valid token, per client IP.
    pub unauthenticated_rate: RateLimit,
    /// Authenticated requests per realm; `None`: not limited.
    pub realm_rate: Option<RateLimit>,
    pub tls: Option<TlsConfig>,
}

/// A token bucket: `per_second` tokens are added each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// TLS termination: PEM files, re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often, at most, the files' modification times are checked (on accept).
    pub reload_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_millis(defaults::header_read_timeout_ms()),
            idle_timeout: Duration::from_millis(defaults::idle_timeout_ms()),
            body_read_timeout: Duration::from_millis(defaults::body_read_timeout_ms()),
            max_header_bytes: defaults::max_header_bytes(),
            http2_max_concurrent_streams: defaults::http2_max_concurrent_streams(),
            http2_keep_alive_interval: Some(Duration::from_millis(defaults::http2_keep_alive_interval_ms())),
            http2_keep_alive_timeout: Duration::from_millis(defaults::http2_keep_alive_timeout_ms()),
            unauthenticated_rate: RateLimit {
                per_second: defaults::unauthenticated_requests_per_second(),
                burst: defaults::unauthenticated_burst(),
            },
            realm_rate: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// For `check-config` (no secrets here: the key file is a path).
    pub(super) fn redacted(&self) -> serde_json::Value {
        json!({
            "header_read_timeout_ms": millis(self.header_read_timeout),
            "idle_timeout_ms": millis(self.idle_timeout),
            "body_read_timeout_ms": millis(self.body_read_timeout),
            "max_header_bytes": self.max_header_bytes,
            "http2_max_concurrent_streams": self.http2_max_concurrent_streams,
            "http2_keep_alive_interval_ms": self.http2_keep_alive_interval.map_or(0, millis),
            "http2_keep_alive_timeout_ms": millis(self.http2_keep_alive_timeout),
            "unauthenticated_requests_per_second": self.unauthenticated_rate.per_second,
            "unauthenticated_burst": self.unauthenticated_rate.burst,
            "realm_requests_per_second": self.realm_rate.map_or(0, |r| r.per_second),
            "realm_burst": self.realm_rate.map_or(defaults::realm_burst(), |r| r.burst),
            "tls": self.tls.as_ref().map(|tls| json!({
                "cert_file": tls.cert_file.display().to_string(),
                "key_file": tls.key_file.display().to_string(),
                "reload_interval_ms": millis(tls.reload_interval),
            })),
        })
    }
}

/// `server:`, as written. Unknown keys are reported by `Problems::unknown_keys` (not by serde,
/// which would stop at the first and hide the other problems of the section).
#[derive(Debug, Deserialize)]
struct RawServer {
    #[serde(default = "defaults::header_read_timeout_ms")]
    header_read_timeout_ms: u64,
    #[serde(default = "defaults::idle_timeout_ms")]
    idle_timeout_ms: u64,
    #[serde(default = "defaults::body_read_timeout_ms")]
    body_read_timeout_ms: u64,
    #[serde(default = "defaults::max_header_bytes")]
    max_header_bytes: usize,
    #[serde(default = "defaults::http2_max_concurrent_streams")]
    http2_max_concurrent_streams: u32,
    /// 0: no keep-alive pings.
    #[serde(default = "defaults::http2_keep_alive_interval_ms")]
    http2_keep_alive_interval_ms: u64,
    #[serde(default = "defaults::http2_keep_alive_timeout_ms")]
    http2_keep_alive_timeout_ms: u64,
    #[serde(default = "defaults::unauthenticated_requests_per_second")]
    unauthenticated_requests_per_second: u32,
    #[serde(default = "defaults::unauthenticated_burst")]
    unauthenticated_burst: u32,
    /// 0: realms are not rate-limited.
    #[serde(default)]
    realm_requests_per_second: u32,
    #[serde(default = "defaults::realm_burst")]
    realm_burst: u32,
    #[serde(default)]
    tls: Option<RawTls>,
}

/// `server.tls:`, as written.
#[derive(Debug, Deserialize)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default = "defaults::tls_reload_interval_ms")]
    reload_interval_ms: u64,
}

mod defaults {
    pub(super) fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn idle_timeout_ms() -> u64 {
        60_000
    }
    pub(super) fn body_read_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn max_header_bytes() -> usize {
        16 * 1024
    }
    pub(super) fn http2_max_concurrent_streams() -> u32 {
        32
    }
    pub(super) fn http2_keep_alive_interval_ms() -> u64 {
        20_000
    }
    pub(super) fn http2_keep_alive_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn unauthenticated_requests_per_second() -> u32 {
        5
    }
    pub(super) fn unauthenticated_burst() -> u32 {
        20
    }
    pub(super) fn realm_burst() -> u32 {
        100
    }
    pub(super) fn tls_reload_interval_ms() -> u64 {
        10_000
    }
}

/// Validates `server:` (absent: every default); `None` when it has problems.
pub(super) fn extract(root: &Dict, problems: &mut Problems) -> Option<ServerConfig> {
    let dict = match root.get("server") {
        None => return Some(ServerConfig::default()),
        Some(Value::Dict(_, dict)) => {
            problems.unknown_keys("server", dict, fields_of::<RawServer>());
            if let Some(Value::Dict(_, tls)) = dict.get("tls") {
                problems.unknown_keys("server.tls", tls, fields_of::<RawTls>());
            }
            dict
        }
        Some(_) => {
            problems.push("server", "expected a map of server settings");
            return None;
        }
    };
    let before = problems.list.len();
    let raw: RawServer = problems.extract("server", dict.clone())?;
    let mut positive = |key: &str, ms: u64| {
        if ms == 0 {
            problems.push(&format!("server.{key}"), "must be greater than 0");
        }
        Duration::from_millis(ms)
    };
    let header_read_timeout = positive("header_read_timeout_ms", raw.header_read_timeout_ms);
    let idle_timeout = positive("idle_timeout_ms", raw.idle_timeout_ms);
    let body_read_timeout = positive("body_read_timeout_ms", raw.body_read_timeout_ms);
    let http2_keep_alive_timeout = positive("http2_keep_alive_timeout_ms", raw.http2_keep_alive_timeout_ms);
    check_limits(&raw, problems);
    let tls = raw.tls.and_then(|tls| tls_config(tls, problems));
    if problems.list.len() > before {
        return None;
    }
    Some(ServerConfig {
        header_read_timeout,
        idle_timeout,
        body_read_timeout,
        max_header_bytes: raw.max_header_bytes,
        http2_max_concurrent_streams: raw.http2_max_concurrent_streams,
        http2_keep_alive_interval: (raw.http2_keep_alive_interval_ms > 0)
            .then(|| Duration::from_millis(raw.http2_keep_alive_interval_ms)),
        http2_keep_alive_timeout,
        unauthenticated_rate: RateLimit {
            per_second: raw.unauthenticated_requests_per_second,
            burst: raw.unauthenticated_burst,
        },
        realm_rate: (raw.realm_requests_per_second > 0)
            .then_some(RateLimit { per_second: raw.realm_requests_per_second, burst: raw.realm_burst }),
        tls,
    })
}

/// The size and rate limits: headers big enough for real requests, no limit of 0.
fn check_limits(raw: &RawServer, problems: &mut Problems) {
    if raw.max_header_bytes < MIN_HEADER_BYTES {
        problems.push("server.max_header_bytes", &format!("must be at least {MIN_HEADER_BYTES}"));
    }
    for (key, value) in [
        ("http2_max_concurrent_streams", raw.http2_max_concurrent_streams),
        ("unauthenticated_requests_per_second", raw.unauthenticated_requests_per_second),
        ("unauthenticated_burst", raw.unauthenticated_burst),
        ("realm_burst", raw.realm_burst),
    ] {
        if value == 0 {
            problems.push(&format!("server.{key}"), "must be greater than 0");
        }
    }
}

/// `server.tls`: both files, a reload interval over 0.
fn tls_config(tls: RawTls, problems: &mut Problems) -> Option<TlsConfig> {
    let (Some(cert_file), Some(key_file)) = (tls.cert_file, tls.key_file) else {
        problems.push("server.tls", "set both cert_file and key_file");
        return None;
    };
    if tls.reload_interval_ms == 0 {
        problems.push("server.tls.reload_interval_ms", "must be greater than 0");
    }
    Some(TlsConfig { cert_file, key_file, reload_interval: Duration::from_millis(tls.reload_interval_ms) })
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Yaml};
    use figment::Figment;

    use super::*;
    use crate::config::{fields_of, Config, ConfigError};

    const REALM: &str = "realms:
  acme:
    url: https://acme.zulip.example.com
    bearer_token: token-a-0123456789abcdef
    upstream:
      email: scim-bot@acme.example.com
      api_key: abcdefghijklmnopqrstuvwxyz012345
";

    fn load(server: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::from(Yaml::string(&format!("{server}{REALM}"))))
    }

    fn problems(server: &str) -> Vec<String> {
        match load(server) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(problems)) => problems,
            Err(other) => vec![format!("figment error: {other}")],
        }
    }

    #[test]
    fn no_server_section_means_every_default() {
        let config = load("").unwrap();
        assert_eq!(config.server, ServerConfig::default());
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.server.realm_rate, None);
        assert_eq!(config.server.tls, None);
        assert_eq!(config.redacted()["server"]["header_read_timeout_ms"], 10_000);
    }

    #[test]
    fn every_key_is_read() {
        let config = load(
            "server:
  header_read_timeout_ms: 300
  idle_timeout_ms: 5000
  body_read_timeout_ms: 700
  max_header_bytes: 8192
  http2_max_concurrent_streams: 4
  http2_keep_alive_interval_ms: 0
  http2_keep_alive_timeout_ms: 900
  unauthenticated_requests_per_second: 2
  unauthenticated_burst: 3
  realm_requests_per_second: 50
  realm_burst: 60
  tls:
    cert_file: /tls/cert.pem
    key_file: /tls/key.pem
",
        )
        .unwrap();
        let expected = ServerConfig {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_millis(700),
            max_header_bytes: 8192,
            http2_max_concurrent_streams: 4,
            http2_keep_alive_interval: None,
            http2_keep_alive_timeout: Duration::from_millis(900),
            unauthenticated_rate: RateLimit { per_second: 2, burst: 3 },
            realm_rate: Some(RateLimit { per_second: 50, burst: 60 }),
            tls: Some(TlsConfig {
                cert_file: "/tls/cert.pem".into(),
                key_file: "/tls/key.pem".into(),
                reload_interval: Duration::from_secs(10),
            }),
        };
        assert_eq!(config.server, expected);
        assert_eq!(config.redacted()["server"]["tls"]["key_file"], "/tls/key.pem");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(
            "max_connections: 0
server:
  header_read_timeout_ms: 0
  max_header_bytes: 1024
  unauthenticated_burst: 0
  http2_max_concurent_streams: 8
  tls:
    cert_file: /tls/cert.pem
    reload_interval_ms: 0
",
        );
        for expected in [
            "max_connections: must be greater than 0",
            "server.header_read_timeout_ms: must be greater than 0",
            "server.max_header_bytes: must be at least 8192",
            "server.unauthenticated_burst: must be greater than 0",
            "server.http2_max_concurent_streams: unknown key",
            "server.tls: set both cert_file and key_file",
        ] {
            assert!(found.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {found:#?}");
        }
    }

    #[test]
    fn every_key_is_documented_in_the_example() {
        let example = include_str!("../../sidecar.yaml");
        for field in fields_of::<RawServer>() {
            assert!(example.contains(&format!("\n  {field}:")) || *field == "tls", "server.{field}");
        }
        for field in fields_of::<RawTls>() {
            assert!(example.contains(&format!("\n  #   {field}:")), "server.tls.{field}");
        }
        assert!(example.contains("\n  # tls:\n"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // `Jail::expect_with` closures return `figment::Error`
    fn environment_variables_override_nested_server_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("sidecar.yaml", &format!("server:\n  idle_timeout_ms: 5000\n{REALM}"))?;
            jail.set_env("SCIM_SIDECAR_SERVER__HEADER_READ_TIMEOUT_MS", "250");
            jail.set_env("SCIM_SIDECAR_SERVER__TLS__CERT_FILE", "/tls/cert.pem");
            jail.set_env("SCIM_SIDECAR_SERVER__TLS__KEY_FILE", "/tls/key.pem");
            let config = Config::load(std::path::Path::new("sidecar.yaml")).map_err(|e| e.to_string())?;
            assert_eq!(config.server.header_read_timeout, Duration::from_millis(250));
            assert_eq!(config.server.idle_timeout, Duration::from_secs(5));
            assert_eq!(config.server.tls.map(|tls| tls.key_file), Some(PathBuf::from("/tls/key.pem")));
            Ok(())
        });
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let found = problems("server:\n  idle_timeout_ms: soon\n");
        assert!(found.iter().any(|p| p.starts_with("server.idle_timeout_ms: ")), "{found:#?}");
    }
}
