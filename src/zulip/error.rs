//! `ZulipError`: an upstream call that did not succeed.

use std::time::Duration;

/// An upstream failure. `provision` inspects it only through the helper methods.
#[derive(Debug, thiserror::Error)]
pub enum ZulipError {
    /// Connect failure, reset or timeout.
    #[error("zulip unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// Zulip answered with its `{result:"error", msg, code}` envelope.
    #[error("zulip answered {status} {code}: {msg}")]
    Api {
        status: u16,
        code: String,
        msg: String,
        /// From `Retry-After` (fractional seconds) on a 429.
        retry_after: Option<Duration>,
    },
    /// A body that is not what the endpoint returns (HTML 404 page, truncated JSON, …).
    #[error("unexpected answer from zulip (http {status}): {detail}")]
    Decode { status: u16, detail: String },
    /// A [`ClientConfig`](super::ClientConfig) the client cannot be built from (a `host`
    /// that is not a valid header value, a base URL that cannot carry `/api/v1`, …).
    #[error("invalid zulip client configuration: {0}")]
    Config(String),
}

impl ZulipError {
    /// The call timed out: its outcome upstream is unknown.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ZulipError::Transport(e) if e.is_timeout())
    }

    /// `Some(wait)` for a 429 `RATE_LIMIT_HIT`.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self {
            ZulipError::Api { status: 429, retry_after, .. } => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            _ => None,
        }
    }

    /// The Zulip error `code` (`BAD_REQUEST`, `UNAUTHORIZED_PRINCIPAL`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            ZulipError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A 400-class application error (Zulip's refusal of the request itself).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, ZulipError::Api { status: 400, .. })
    }

    /// Zulip refused the service account's credentials (401).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ZulipError::Api { status: 401, .. })
    }

    /// `GET /events` or `DELETE /events` named a queue Zulip does not know (expired,
    /// deleted, another account's): register a new one.
    pub fn is_bad_event_queue(&self) -> bool {
        self.code() == Some("BAD_EVENT_QUEUE_ID")
    }

    /// Zulip's (localised) message, for a SCIM `detail` that carries Zulip's objection.
    pub fn message(&self) -> Option<&str> {
        match self {
            ZulipError::Api { msg, .. } => Some(msg),
            _ => None,
        }
    }
}
