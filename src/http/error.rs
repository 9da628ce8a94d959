//! The one place where an [`Error`] becomes an HTTP status and an RFC 7644 §3.12 body.

use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use crate::error::{upstream_cause, Error};
use scim;

/// Extra response headers of an error.
type Headers = Vec<(header::HeaderName, HeaderValue)>;

/// What an error answers: status, `scimType`, `detail`.
type Answer = (StatusCode, Option<&'static str>, String);

/// The status, extra headers and SCIM error body for `error` (no body for 304).
pub fn error_parts(error: &Error) -> (StatusCode, Headers, Option<Value>) {
    let mut headers = Vec::new();
    let Some((status, scim_type, detail)) = answer(error, &mut headers) else {
        return (StatusCode::NOT_MODIFIED, headers, None);
    };
    let mut body = Map::new();
    body.insert("schemas".into(), json!([scim::ERROR_SCHEMA]));
    body.insert("status".into(), Value::from(status.as_str()));
    if let Some(t) = scim_type {
        body.insert("scimType".into(), Value::from(t));
    }
    body.insert("detail".into(), Value::from(detail));
    (status, headers, Some(Value::Object(body)))
}

/// Exhaustive on purpose: a new variant must be mapped here before the crate compiles.
/// `None`: 304 Not Modified, which has no body.
fn answer(error: &Error, headers: &mut Headers) -> Option<Answer> {
    let plain = |status: StatusCode, detail: &str| Some((status, None, detail.to_owned()));
    let mut with = |name: header::HeaderName, value: HeaderValue| headers.push((name, value));
    match error {
        Error::Invalid { scim_type, detail } => Some(invalid(*scim_type, detail)),
        Error::BadRequest { detail } => plain(StatusCode::BAD_REQUEST, detail),
        Error::Unauthorized => {
            with(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            plain(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
        }
        Error::Forbidden { detail } => plain(StatusCode::FORBIDDEN, detail),
        Error::NotFound { resource, id } => {
            plain(StatusCode::NOT_FOUND, &format!("{resource} {id} not found"))
        }
        Error::Conflict { detail } => Some((StatusCode::CONFLICT, Some("uniqueness"), detail.clone())),
        Error::PreconditionFailed { detail } => plain(StatusCode::PRECONDITION_FAILED, detail),
        Error::NotModified { etag } => HeaderValue::from_str(etag).ok().and_then(|v| {
            with(header::ETAG, v);
            None
        }),
        Error::MethodNotAllowed { allow } => {
            with(header::ALLOW, HeaderValue::from_static(allow));
            plain(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed; allowed: {allow}"))
        }
        Error::PayloadTooLarge { limit } => {
            plain(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body larger than {limit} bytes"))
        }
        Error::UnsupportedMediaType { content_type } => Some(unsupported_media_type(content_type)),
        Error::NotImplemented { detail } => plain(StatusCode::NOT_IMPLEMENTED, detail),
        Error::RateLimited { retry_after } => Some(too_many(*retry_after, ZULIP_RATE_LIMIT, headers)),
        Error::TooManyRequests { retry_after, detail } => Some(too_many(*retry_after, detail, headers)),
        Error::RequestTimeout { limit } => Some(request_timeout(*limit, headers)),
        Error::Unavailable { detail } => {
            with(header::RETRY_AFTER, HeaderValue::from_static("5"));
            plain(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
        Error::Upstream { source, applied } => Some(upstream(source, applied.as_deref())),
        Error::Internal(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

const ZULIP_RATE_LIMIT: &str = "Zulip is rate-limiting the sidecar's service account";

/// 415, naming the types accepted.
fn unsupported_media_type(content_type: &str) -> Answer {
    let detail =
        format!("unsupported content type {content_type:?}: send application/scim+json or application/json");
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, None, detail)
}

/// 408, and the connection closed (its body is still arriving).
fn request_timeout(limit: std::time::Duration, headers: &mut Headers) -> Answer {
    headers.push((header::CONNECTION, HeaderValue::from_static("close")));
    let detail = format!("the request body was not received within {} ms", limit.as_millis());
    (StatusCode::REQUEST_TIMEOUT, None, detail)
}

/// 400 with its `scimType`; `uniqueness` is 409 (RFC 7644 §3.12).
fn invalid(scim_type: scim::ScimType, detail: &str) -> Answer {
    let status =
        if scim_type == scim::ScimType::Uniqueness { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
    (status, Some(scim_type.as_str()), detail.to_owned())
}

/// 429 with `Retry-After` in whole seconds, rounded up (at least 1).
fn too_many(retry_after: std::time::Duration, what: &str, headers: &mut Headers) -> Answer {
    let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
    headers.push((header::RETRY_AFTER, HeaderValue::from(secs)));
    (StatusCode::TOO_MANY_REQUESTS, None, format!("{what}; retry after {secs} s"))
}

/// 502, or 504 for a timeout, saying what was already applied. The cause chain names no URL
/// and quotes no body (`upstream_cause`).
fn upstream(source: &zulip_client::ZulipError, applied: Option<&str>) -> Answer {
    let (status, what) = if source.is_timeout() {
        (StatusCode::GATEWAY_TIMEOUT, "Zulip did not answer in time")
    } else if source.is_unauthorized() {
        (StatusCode::BAD_GATEWAY, "Zulip rejected the sidecar's service account credentials")
    } else {
        (StatusCode::BAD_GATEWAY, "Zulip could not be reached or gave an unexpected answer")
    };
    let cause = upstream_cause(source);
    let detail = match applied {
        Some(applied) => format!("{what} ({cause}); already applied: {applied}"),
        None => format!("{what} ({cause}); nothing was changed"),
    };
    (status, None, detail)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use scim::ScimType;
    use zulip_client::ZulipError;

    fn api(status: u16) -> Arc<ZulipError> {
        Arc::new(ZulipError::Api { status, code: "X".into(), msg: "m".into(), retry_after: None })
    }

    #[test]
    fn every_variant_has_its_status_and_scim_type() {
        let table: Vec<(Error, u16, Option<&str>)> = vec![
            (Error::invalid(ScimType::InvalidFilter, "f"), 400, Some("invalidFilter")),
            (Error::invalid(ScimType::Uniqueness, "u"), 409, Some("uniqueness")),
            (Error::BadRequest { detail: "b".into() }, 400, None),
            (Error::Unauthorized, 401, None),
            (Error::Forbidden { detail: "f".into() }, 403, None),
            (Error::NotFound { resource: "User", id: "1".into() }, 404, None),
            (Error::Conflict { detail: "c".into() }, 409, Some("uniqueness")),
            (Error::PreconditionFailed { detail: "p".into() }, 412, None),
            (Error::MethodNotAllowed { allow: "GET" }, 405, None),
            (Error::PayloadTooLarge { limit: 1 }, 413, None),
            (Error::UnsupportedMediaType { content_type: "text/plain".into() }, 415, None),
            (Error::NotImplemented { detail: "n".into() }, 501, None),
            (Error::RateLimited { retry_after: Duration::from_millis(28_700) }, 429, None),
            (Error::TooManyRequests { retry_after: Duration::from_millis(200), detail: "t" }, 429, None),
            (Error::RequestTimeout { limit: Duration::from_secs(30) }, 408, None),
            (Error::Unavailable { detail: "u".into() }, 503, None),
            (Error::Upstream { source: api(500), applied: None }, 502, None),
            (Error::Internal("bug".into()), 500, None),
        ];
        for (error, status, scim_type) in table {
            let (got, _, body) = error_parts(&error);
            assert_eq!(got.as_u16(), status, "{error:?}");
            let body = body.unwrap();
            assert_eq!(body["schemas"], json!([scim::ERROR_SCHEMA]));
            assert_eq!(body["status"], status.to_string(), "status is a string");
            assert_eq!(body.get("scimType").and_then(Value::as_str), scim_type);
            assert!(!body["detail"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn headers_and_no_leaks() {
        let (_, h, _) = error_parts(&Error::Unauthorized);
        assert_eq!(h, vec![(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))]);
        let (_, h, _) = error_parts(&Error::RateLimited { retry_after: Duration::from_millis(28_700) });
        assert_eq!(h[0].1, "29");
        let (_, h, _) =
            error_parts(&Error::TooManyRequests { retry_after: Duration::from_millis(200), detail: "t" });
        assert_eq!(h[0], (header::RETRY_AFTER, HeaderValue::from_static("1")), "never Retry-After: 0");
        let (_, h, _) = error_parts(&Error::MethodNotAllowed { allow: "GET, POST" });
        assert_eq!(h[0], (header::ALLOW, HeaderValue::from_static("GET, POST")));
        let (_, _, body) = error_parts(&Error::Internal("secret invariant".into()));
        assert!(!body.unwrap().to_string().contains("secret"));
        let (status, _, body) = error_parts(&Error::NotModified { etag: "W/\"x\"".into() });
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_none());
    }
}
