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
    /// Not sent: the realm's rate-limit budget, or its queue of calls, would not let the
    /// call through within the deadline. Zulip did nothing; retry after `retry_after`.
    #[error("zulip call not sent: {reason}; retry after {retry_after:?}")]
    Throttled { reason: &'static str, retry_after: Duration },
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

    /// `Some(wait)` for a 429 `RATE_LIMIT_HIT`, and for a call the sidecar held back
    /// ([`ZulipError::Throttled`]): answer the IdP 429 with `Retry-After`.
    pub fn rate_limited(&self) -> Option<Duration> {
        match self {
            ZulipError::Api { status: 429, retry_after, .. } => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            ZulipError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Zulip certainly did not act on the call: it answered with an error envelope, the
    /// connection was never made, or the sidecar never sent it. When false (a timeout, a
    /// reset after sending, an undecodable answer) the outcome is unknown: look before
    /// repeating a non-idempotent call.
    pub fn outcome_known(&self) -> bool {
        match self {
            ZulipError::Api { .. } | ZulipError::Throttled { .. } | ZulipError::Config(_) => true,
            ZulipError::Transport(e) => e.is_connect(),
            ZulipError::Decode { .. } => false,
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
