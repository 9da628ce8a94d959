//! The one place where an [`Error`] becomes an HTTP status and an RFC 7644 §3.12 body.

use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use crate::error::{upstream_cause, Error};
use scim;

/// The status, extra headers and SCIM error body for `error`. Exhaustive on purpose: a new
/// variant must be mapped here before the crate compiles.
pub fn error_parts(error: &Error) -> (StatusCode, Vec<(header::HeaderName, HeaderValue)>, Option<Value>) {
    let mut headers = Vec::new();
    let (status, scim_type, detail): (StatusCode, Option<&str>, String) = match error {
        Error::Invalid { scim_type, detail } => {
            let status = if *scim_type == scim::ScimType::Uniqueness {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, Some(scim_type.as_str()), detail.clone())
        }
        Error::BadRequest { detail } => (StatusCode::BAD_REQUEST, None, detail.clone()),
        Error::Unauthorized => {
            headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            (StatusCode::UNAUTHORIZED, None, "missing or invalid bearer token".to_string())
        }
        Error::Forbidden { detail } => (StatusCode::FORBIDDEN, None, detail.clone()),
        Error::NotFound { resource, id } => {
            (StatusCode::NOT_FOUND, None, format!("{resource} {id} not found"))
        }
        Error::Conflict { detail } => (StatusCode::CONFLICT, Some("uniqueness"), detail.clone()),
        Error::PreconditionFailed { detail } => (StatusCode::PRECONDITION_FAILED, None, detail.clone()),
        Error::NotModified { etag } => {
            if let Ok(v) = HeaderValue::from_str(etag) {
                headers.push((header::ETAG, v));
            }
            return (StatusCode::NOT_MODIFIED, headers, None);
        }
        Error::MethodNotAllowed { allow } => {
            headers.push((header::ALLOW, HeaderValue::from_static(allow)));
            (StatusCode::METHOD_NOT_ALLOWED, None, format!("method not allowed; allowed: {allow}"))
        }
        Error::PayloadTooLarge { limit } => {
            (StatusCode::PAYLOAD_TOO_LARGE, None, format!("request body larger than {limit} bytes"))
        }
        Error::UnsupportedMediaType { content_type } => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!(
                "unsupported content type {content_type:?}: send application/scim+json or application/json"
            ),
        ),
        Error::NotImplemented { detail } => (StatusCode::NOT_IMPLEMENTED, None, detail.clone()),
        Error::RateLimited { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                headers.push((header::RETRY_AFTER, v));
            }
            (
                StatusCode::TOO_MANY_REQUESTS,
                None,
                format!(
                    "Zulip is rate-limiting the sidecar's service account; retry after {} s",
                    secs.max(1)
                ),
            )
        }
        Error::TooManyRequests { retry_after, detail } => {
            let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
            headers.push((header::RETRY_AFTER, HeaderValue::from(secs)));
            (StatusCode::TOO_MANY_REQUESTS, None, format!("{detail}; retry after {secs} s"))
        }
        Error::RequestTimeout { limit } => {
            headers.push((header::CONNECTION, HeaderValue::from_static("close")));
            (
                StatusCode::REQUEST_TIMEOUT,
                None,
                format!("the request body was not received within {} ms", limit.as_millis()),
            )
        }
        Error::Unavailable { detail } => {
            headers.push((header::RETRY_AFTER, HeaderValue::from_static("5")));
            (StatusCode::SERVICE_UNAVAILABLE, None, detail.clone())
        }
        Error::Upstream { source, applied } => {
            let (status, what) = if source.is_timeout() {
                (StatusCode::GATEWAY_TIMEOUT, "Zulip did not answer in time")
            } else if source.is_unauthorized() {
                (StatusCode::BAD_GATEWAY, "Zulip rejected the sidecar's service account credentials")
            } else {
                (StatusCode::BAD_GATEWAY, "Zulip could not be reached or gave an unexpected answer")
            };
            // The cause chain names no URL and quotes no body (`upstream_cause`).
            let cause = upstream_cause(source);
            let detail = match applied {
                Some(applied) => format!("{what} ({cause}); already applied: {applied}"),
                None => format!("{what} ({cause}); nothing was changed"),
            };
            (status, None, detail)
        }
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, None, "internal error".to_string()),
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
