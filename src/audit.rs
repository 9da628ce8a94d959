//! The audit trail: one JSON line per change applied to Zulip — who (realm, SCIM client,
//! request id, operation), what (target, each changed attribute before → after), when, and
//! how it ended (`applied`, `partial` with what was applied, `unknown` when Zulip's answer was
//! lost), with the upstream status.
//!
//! Records go to their own target ([`AuditSink`]): a file (`audit.path`), stdout
//! (`audit.path: "-"`, logs stay on stderr), or, without `audit:`, the log stream as events
//! of the tracing target `audit`. A record never carries a secret: its values are SCIM
//! attributes the sidecar itself renders (names, addresses, roles, ids), never a token, an API
//! key or the throwaway password of a new account.
//!
//! The request id and the operation reach `provision` through a tokio task-local
//! ([`scope`]), set by `App::handle` and carried into the write task by `App::to_completion`.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

/// The tracing target of audit records when they go to the log stream.
pub const LOG_TARGET: &str = "audit";

/// Longest `X-Request-Id` taken from a request (longer or odd ones are replaced).
pub const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// Who asked for the change: the request id and the SCIM operation (route label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    pub operation: &'static str,
}

impl RequestContext {
    /// The request's own `X-Request-Id` when it is a sane token (visible ASCII, at most
    /// [`MAX_REQUEST_ID`] characters), else a new random one.
    pub fn new(given: Option<&str>, operation: &'static str) -> Self {
        let request_id = given
            .map(str::trim)
            .filter(|id| {
                !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map_or_else(new_request_id, str::to_owned);
        RequestContext { request_id, operation }
    }
}

/// A random request id: 32 hex digits (128 bits), UUID-sized.
pub fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// Runs `future` with `context` as the current request (seen by [`current`]).
pub async fn scope<F: Future>(context: RequestContext, future: F) -> F::Output {
    CONTEXT.scope(context, future).await
}

/// The current request, if the caller runs inside [`scope`].
pub fn current() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// How a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    /// Everything asked for was applied.
    Applied,
    /// Part was applied (listed in `changes`), then a Zulip call failed (`detail`).
    Partial,
    /// Zulip's answer was lost (timeout, reset): `changes` is what was asked, and may or may
    /// not have been applied.
    Unknown,
}

/// What was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditTarget {
    /// `User` or `Group`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    /// The user's userName (address) or the group's displayName.
    pub address: Option<String>,
}

/// One attribute's change. Scalars carry `before` and `after`; `members` carries `added` and
/// `removed` (user ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttributeChange {
    pub attribute: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<String>>,
}

impl AttributeChange {
    pub fn scalar(attribute: &str, before: Value, after: Value) -> Self {
        AttributeChange {
            attribute: attribute.to_owned(),
            before: Some(before),
            after: Some(after),
            added: None,
            removed: None,
        }
    }

    pub fn members(added: &[u64], removed: &[u64]) -> Self {
        let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect();
        AttributeChange {
            attribute: "members".to_owned(),
            before: None,
            after: None,
            added: Some(ids(added)),
            removed: Some(ids(removed)),
        }
    }
}

/// Every attribute whose value differs between two flat states (`before: None`: created).
pub fn diff(before: Option<&Map<String, Value>>, after: &Map<String, Value>) -> Vec<AttributeChange> {
    after
        .iter()
        .filter_map(|(key, value)| {
            let old = before.map_or(Value::Null, |b| b.get(key).cloned().unwrap_or(Value::Null));
            (old != *value).then(|| AttributeChange::scalar(key, old, value.clone()))
        })
        .collect()
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, when the change was recorded (right after Zulip's answer).
    pub time: String,
    pub realm: String,
    /// The realm's `scim_client_name`.
    pub scim_client: String,
    pub request_id: Option<String>,
    /// The SCIM operation (`create_user`, `patch_group`, …).
    pub operation: String,
    pub target: AuditTarget,
    pub changes: Vec<AttributeChange>,
    pub result: AuditResult,
    /// HTTP status of Zulip's last answer (200 when applied; the failing call's status for
    /// `partial`; `null` when none arrived).
    pub upstream_status: Option<u16>,
    /// For `partial` and `unknown`: what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How a change ended, as `provision` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: AuditResult,
    pub upstream_status: Option<u16>,
    pub detail: Option<String>,
}

impl Outcome {
    pub fn applied() -> Self {
        Outcome { result: AuditResult::Applied, upstream_status: Some(200), detail: None }
    }

    /// Part applied, then `error`.
    pub fn partial(error: &zulip_client::ZulipError, detail: String) -> Self {
        Outcome {
            result: AuditResult::Partial,
            upstream_status: upstream_status(error),
            detail: Some(detail),
        }
    }

    /// Zulip's answer to a change was lost.
    pub fn unknown(error: &zulip_client::ZulipError) -> Self {
        Outcome {
            result: AuditResult::Unknown,
            upstream_status: upstream_status(error),
            detail: Some(format!("the outcome is unknown: {error}")),
        }
    }
}

/// The HTTP status Zulip answered with, if it answered.
pub fn upstream_status(error: &zulip_client::ZulipError) -> Option<u16> {
    match error {
        zulip_client::ZulipError::Api { status, .. } | zulip_client::ZulipError::Decode { status, .. } => {
            Some(*status)
        }
        _ => None,
    }
}

/// Where audit records go (`audit:` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuditTargetConfig {
    /// Events of tracing target `audit` in the log stream (no `audit:` key).
    #[default]
    Log,
    /// JSON lines on stdout (`path: "-"`).
    Stdout,
    /// JSON lines appended to a file.
    File(PathBuf),
}

/// Why the audit file cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit file {}", path.display())]
pub struct AuditOpenError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The open audit target. One line is written in one `write` call under a lock, so lines of
/// concurrent requests never interleave. Failed writes are logged and counted
/// (`scim_audit_write_failures_total`).
#[derive(Debug)]
pub struct AuditSink {
    target: Target,
    failures: Option<prometheus_client::metrics::counter::Counter>,
}

#[derive(Debug)]
enum Target {
    Log,
    Stdout,
    File { path: PathBuf, file: Mutex<File> },
}

impl AuditSink {
    /// Records go to the log stream (tracing target [`LOG_TARGET`]).
    pub const LOG: AuditSink = AuditSink { target: Target::Log, failures: None };

    pub fn open(target: &AuditTargetConfig) -> Result<AuditSink, AuditOpenError> {
        let target = match target {
            AuditTargetConfig::Log => Target::Log,
            AuditTargetConfig::Stdout => Target::Stdout,
            AuditTargetConfig::File(path) => {
                Target::File { path: path.clone(), file: Mutex::new(open(path)?) }
            }
        };
        Ok(AuditSink { target, failures: None })
    }

    /// Counts failed writes in `counter`.
    pub fn counting_failures(mut self, counter: prometheus_client::metrics::counter::Counter) -> Self {
        self.failures = Some(counter);
        self
    }

    /// Writes one record. A failure to write is logged (the change itself stands).
    pub fn emit(&self, record: &AuditRecord) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an audit record");
                return;
            }
        };
        let written = match &self.target {
            Target::Log => {
                tracing::info!(target: LOG_TARGET, audit = %line, "audit");
                Ok(())
            }
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(format!("{line}\n").as_bytes()).and_then(|()| out.flush())
            }
            Target::File { file, .. } => match file.lock() {
                Ok(mut file) => file.write_all(format!("{line}\n").as_bytes()),
                Err(_) => Err(std::io::Error::other("audit file lock poisoned")),
            },
        };
        if let Err(e) = written {
            if let Some(failures) = &self.failures {
                failures.inc();
            }
            let path = match &self.target {
                Target::File { path, .. } => path.display().to_string(),
                _ => "stdout".to_owned(),
            };
            tracing::error!(audit_target = %path, error = %e, realm = %record.realm, request_id = record.request_id.as_deref().unwrap_or("-"), "cannot write an audit record");
        }
    }
}

fn open(path: &Path) -> Result<File, AuditOpenError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AuditOpenError { path: path.to_path_buf(), source })
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(now.millisecond() as u32 * 1_000_000).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        assert_eq!(RequestContext::new(Some("abc-123"), "get_user").request_id, "abc-123");
        for bad in [None, Some(""), Some("has space"), Some("ünï"), Some(&*"x".repeat(129))] {
            let id = RequestContext::new(bad, "get_user").request_id;
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn diff_lists_changed_attributes_only() {
        let before = json!({"userName": "a@x", "active": true, "role": "member"});
        let after = json!({"userName": "b@x", "active": true, "role": "admin"});
        let changes = diff(before.as_object(), after.as_object().unwrap());
        assert_eq!(
            changes,
            vec![
                AttributeChange::scalar("userName", json!("a@x"), json!("b@x")),
                AttributeChange::scalar("role", json!("member"), json!("admin")),
            ]
        );
        let created = diff(None, after.as_object().unwrap());
        assert_eq!(created.len(), 3);
        assert!(created.iter().all(|c| c.before == Some(Value::Null)));
    }

    #[tokio::test]
    async fn the_context_is_seen_inside_its_scope_only() {
        assert_eq!(current(), None);
        let ctx = RequestContext::new(Some("r1"), "patch_user");
        let seen = scope(ctx.clone(), async { current() }).await;
        assert_eq!(seen, Some(ctx));
    }

    fn record() -> AuditRecord {
        AuditRecord {
            time: now(),
            realm: "acme".into(),
            scim_client: "okta".into(),
            request_id: Some("r1".into()),
            operation: "create_user".into(),
            target: AuditTarget { kind: "User", id: "7".into(), address: Some("a@x".into()) },
            changes: vec![AttributeChange::members(&[1, 2], &[])],
            result: AuditResult::Applied,
            upstream_status: Some(200),
            detail: None,
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn failed_writes_are_counted() {
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        let Ok(sink) = AuditSink::open(&AuditTargetConfig::File("/dev/full".into())) else {
            return; // no /dev/full here
        };
        let sink = sink.counting_failures(counter.clone());
        sink.emit(&record());
        sink.emit(&record());
        assert_eq!(counter.get(), 2);
    }

    #[test]
    fn file_sink_appends_one_json_line_per_record() {
        let path = std::env::temp_dir().join(format!("scim-audit-unit-{}.jsonl", new_request_id()));
        let sink = AuditSink::open(&AuditTargetConfig::File(path.clone())).unwrap();
        let record = record();
        sink.emit(&record);
        sink.emit(&record);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0]["changes"][0],
            json!({"attribute": "members", "added": ["1", "2"], "removed": []})
        );
        assert_eq!(lines[0]["result"], "applied");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        let _ = std::fs::remove_file(path);
    }
}
