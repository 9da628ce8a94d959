//! The request being served, for every line logged on its behalf: its id (taken from the
//! IdP's `X-Request-Id` / `client-request-id` header, else generated) and the SCIM client's
//! name (`scim_client_name`). `http` sets it around each request; writes that run as tasks of
//! their own carry it along ([`RequestContext::scope`]); `provision::changes` reads it.

use std::future::Future;
use std::sync::Arc;

use http::HeaderMap;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Headers an IdP may send its own request id in: the common `X-Request-Id`, and Entra's
/// `client-request-id`.
pub const REQUEST_ID_HEADERS: [&str; 2] = ["x-request-id", "client-request-id"];

/// The header the sidecar returns the request id in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id taken from a header (longer ones are replaced by a generated id).
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request on whose behalf the current task works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    /// The realm's `scim_client_name` (`-` before authentication).
    pub client: Arc<str>,
}

impl RequestContext {
    /// The context of the request the current task serves, if any.
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with `context` as the current request (`None`: as it is).
    pub async fn scope<F: Future>(context: Option<RequestContext>, fut: F) -> F::Output {
        match context {
            Some(context) => CURRENT.scope(context, fut).await,
            None => fut.await,
        }
    }
}

/// The IdP's request id when it sent a usable one (printable ASCII without spaces, at most
/// 128 characters), else a new random one (16 hex digits).
pub fn request_id(headers: &HeaderMap) -> String {
    REQUEST_ID_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .map(str::trim)
        .find(|id| {
            !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn request_ids_come_from_the_idp_or_are_generated() {
        let mut headers = HeaderMap::new();
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 16);
        assert_ne!(generated, request_id(&headers), "random");
        headers.insert("client-request-id", HeaderValue::from_static("9f1c-entra"));
        assert_eq!(request_id(&headers), "9f1c-entra");
        headers.insert("x-request-id", HeaderValue::from_static(" okta-42 "));
        assert_eq!(request_id(&headers), "okta-42", "X-Request-Id first, trimmed");
        headers.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_eq!(request_id(&headers), "9f1c-entra", "an unusable id is skipped");
        let long = "x".repeat(200);
        headers.insert("client-request-id", HeaderValue::from_str(&long).unwrap());
        assert_eq!(request_id(&headers).len(), 16);
    }

    #[tokio::test]
    async fn the_context_is_scoped() {
        assert_eq!(RequestContext::current(), None);
        let ctx = RequestContext { request_id: "r1".into(), client: "okta".into() };
        let seen = RequestContext::scope(Some(ctx.clone()), async { RequestContext::current() }).await;
        assert_eq!(seen, Some(ctx));
        assert_eq!(RequestContext::scope(None, async { RequestContext::current() }).await, None);
    }
}
