//! `Error`: one SCIM request's failure, in SCIM terms. `http::error` turns it into a status
//! and an RFC 7644 §3.12 body; nothing below `http` builds a response.

use std::sync::Arc;
use std::time::Duration;

use scim::{ScimError, ScimType};
use zulip_client::ZulipError;

/// A SCIM request that failed. Variants are outcomes, not causes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400 with a `scimType`.
    #[error("{scim_type}: {detail}")]
    Invalid { scim_type: ScimType, detail: String },
    /// 400 without a `scimType` (a request Zulip refuses for its own reasons).
    #[error("bad request: {detail}")]
    BadRequest { detail: String },
    /// 401: no or wrong bearer token. The body never says which.
    #[error("unauthorized")]
    Unauthorized,
    /// 403: the service account lacks a Zulip permission the operation needs.
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    /// 404
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// 409 `uniqueness`
    #[error("conflict: {detail}")]
    Conflict { detail: String },
    /// 412: `If-Match` did not match.
    #[error("precondition failed: {detail}")]
    PreconditionFailed { detail: String },
    /// 304 for `If-None-Match` on GET (not an error to the client, but a short-circuit).
    #[error("not modified")]
    NotModified { etag: String },
    /// 405 with `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// 413
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415
    #[error("unsupported media type {content_type}")]
    UnsupportedMediaType { content_type: String },
    /// 501: a SCIM feature we do not offer (Bulk, a realm configured to refuse deletes).
    #[error("not implemented: {detail}")]
    NotImplemented { detail: String },
    /// 429 or 503 with `Retry-After`: Zulip is rate-limiting the service account and the
    /// wait does not fit in the request deadline.
    #[error("zulip rate limit: retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// 429 with `Retry-After`: the sidecar's own request-rate limit (per realm, or per client
    /// address for requests without a valid token).
    #[error("too many requests: {detail}")]
    TooManyRequests { retry_after: Duration, detail: &'static str },
    /// 408: the request body did not arrive within `server.body_read_timeout_ms`; the
    /// connection is closed.
    #[error("request body not received within {limit:?}")]
    RequestTimeout { limit: Duration },
    /// 503: the realm is not ready (upstream never answered yet).
    #[error("service unavailable: {detail}")]
    Unavailable { detail: String },
    /// 502, or 504 when the source is a timeout. `applied` says what was already done
    /// upstream when a multi-call operation failed part-way.
    #[error("upstream failure{}", applied.as_deref().map(|a| format!(" after {a}")).unwrap_or_default())]
    Upstream {
        #[source]
        source: Arc<ZulipError>,
        applied: Option<String>,
    },
    /// 500: a bug or a broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Error::Invalid { scim_type, detail: detail.into() }
    }

    pub fn upstream(source: impl Into<Arc<ZulipError>>) -> Self {
        Error::Upstream { source: source.into(), applied: None }
    }
}

impl From<ScimError> for Error {
    fn from(e: ScimError) -> Self {
        Error::Invalid { scim_type: e.scim_type, detail: e.detail }
    }
}

/// An error and its sources on one line, `outer: cause: root cause`, each cause printed once
/// (a message that already spells out its source does not get it twice). The one way this
/// crate prints an error chain: the binary, the log lines and the SCIM `detail`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut previous = self.0.to_string();
        f.write_str(&previous)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !previous.contains(&text) {
                write!(f, ": {text}")?;
            }
            previous = text;
            source = cause.source();
        }
        Ok(())
    }
}

/// What went wrong upstream, for readers outside the process (the SCIM `detail`, `/readyz`):
/// the whole cause chain, but never a URL (reqwest names the request's URL; an internal
/// address is nobody's business outside) and never a response body (Zulip's error `msg` is
/// Zulip's own words, meant to be shown). The log lines print [`ErrorChain`] instead.
pub fn upstream_cause(error: &ZulipError) -> String {
    match error {
        ZulipError::Transport(e) => {
            let what = if e.is_timeout() {
                "zulip did not answer in time"
            } else if e.is_connect() {
                "zulip unreachable: cannot connect"
            } else {
                "zulip unreachable: the request failed"
            };
            match std::error::Error::source(e) {
                Some(cause) => format!("{what}: {}", ErrorChain(cause)),
                None => what.to_owned(),
            }
        }
        other => ErrorChain(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Msg(&'static str, #[source] Option<Box<Msg>>);

    #[test]
    fn error_chain_prints_each_cause_once() {
        let root = Msg("connection refused", None);
        let mid = Msg("error sending request", Some(Box::new(root)));
        let top = Msg("zulip unreachable", Some(Box::new(mid)));
        assert_eq!(
            ErrorChain(&top).to_string(),
            "zulip unreachable: error sending request: connection refused"
        );
        let repeats = Msg("cannot listen: address in use", Some(Box::new(Msg("address in use", None))));
        assert_eq!(ErrorChain(&repeats).to_string(), "cannot listen: address in use");
    }
}
