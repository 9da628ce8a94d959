//! The access line: one per request, saying who asked (realm, SCIM client, request id), what
//! for, the outcome and, for a refusal, why (`scimType` and the SCIM `detail`) or, for a
//! failure, the whole cause chain. Refusals at `info`, 5xx and upstream failures at `warn`,
//! probes and scrapes at `debug` (`log_probes: true`: `info`); an identical refusal or
//! failure line is written once per 10 s at most, the next one counting those held back.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tracing::Level;

use crate::app::App;
use crate::error::{Error, ErrorChain};
use crate::telemetry::context::RequestContext;

/// One answered request, as logged.
pub(crate) struct Access<'a> {
    pub realm: &'a str,
    pub context: &'a RequestContext,
    pub method: &'a Method,
    pub route: &'static str,
    pub status: StatusCode,
    pub elapsed: Duration,
    pub error: Option<&'a Error>,
}

/// `tracing` wants its level at compile time: one arm per level.
macro_rules! event_at {
    ($level:expr, $($args:tt)+) => {
        match $level {
            Level::WARN => tracing::warn!($($args)+),
            Level::INFO => tracing::info!($($args)+),
            _ => tracing::debug!($($args)+),
        }
    };
}

impl Access<'_> {
    pub(crate) fn log(&self, app: &App) {
        let level = self.level(app.log_probes);
        if !level_enabled(level) {
            return;
        }
        let (scim_type, reason, chain) = self.why();
        let held_back = match self.error {
            None => None,
            Some(_) => {
                let key = (self.realm, self.route, self.status.as_u16(), &reason, &chain);
                match app.repeated_lines.admit(key, Instant::now()) {
                    None => return,
                    Some(n) => (n > 0).then_some(n),
                }
            }
        };
        let latency_ms = (self.elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
        event_at!(level, realm = self.realm, client = %self.context.client, request_id = %self.context.request_id,
            method = %self.method, route = self.route, status = self.status.as_u16(), latency_ms,
            scim_type, reason = reason.as_deref(), error = chain.as_deref(), held_back, "request");
    }

    fn level(&self, log_probes: bool) -> Level {
        let probe = matches!(self.route, "livez" | "readyz" | "metrics");
        if probe && !log_probes {
            Level::DEBUG
        } else if self.status.is_server_error() || matches!(self.error, Some(Error::Upstream { .. })) {
            Level::WARN
        } else {
            Level::INFO
        }
    }

    /// `scimType` and `detail` of the SCIM error sent; for a failure of ours or Zulip's, the
    /// whole cause chain (which the SCIM `detail` only summarises).
    fn why(&self) -> (Option<&'static str>, Option<String>, Option<String>) {
        let Some(error) = self.error else {
            return (None, None, None);
        };
        let (_, _, body) = super::error::error_parts(error);
        let detail = body.as_ref().and_then(|b| b["detail"].as_str()).map(str::to_owned);
        let scim_type = match error {
            Error::Invalid { scim_type, .. } => Some(scim_type.as_str()),
            Error::Conflict { .. } => Some("uniqueness"),
            _ => None,
        };
        let chain = matches!(error, Error::Upstream { .. } | Error::Internal(_) | Error::Unavailable { .. })
            .then(|| ErrorChain(error).to_string());
        (scim_type, detail, chain)
    }
}

fn level_enabled(level: Level) -> bool {
    match level {
        Level::WARN => tracing::enabled!(Level::WARN),
        Level::INFO => tracing::enabled!(Level::INFO),
        _ => tracing::enabled!(Level::DEBUG),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use zulip_client::ZulipError;

    #[test]
    fn refusals_at_info_failures_at_warn_probes_at_debug_unless_asked() {
        let context = RequestContext { request_id: "r".into(), client: "okta".into() };
        let upstream = Error::upstream(Arc::new(ZulipError::Decode { status: 200, detail: "x".into() }));
        let refused = Error::invalid(scim::ScimType::InvalidFilter, "bad filter");
        let level = |route, status: u16, error: Option<&Error>, log_probes| {
            let access = Access {
                realm: "acme",
                context: &context,
                method: &Method::GET,
                route,
                status: StatusCode::from_u16(status).unwrap(),
                elapsed: Duration::ZERO,
                error,
            };
            access.level(log_probes)
        };
        assert_eq!(level("list_users", 200, None, false), Level::INFO);
        assert_eq!(level("list_users", 400, Some(&refused), false), Level::INFO);
        assert_eq!(level("list_users", 502, Some(&upstream), false), Level::WARN);
        assert_eq!(level("list_users", 500, None, false), Level::WARN);
        assert_eq!(level("readyz", 503, None, false), Level::DEBUG);
        assert_eq!(level("metrics", 200, None, false), Level::DEBUG);
        assert_eq!(level("livez", 200, None, true), Level::INFO);

        let access = Access {
            realm: "acme",
            context: &context,
            method: &Method::GET,
            route: "list_users",
            status: StatusCode::BAD_REQUEST,
            elapsed: Duration::ZERO,
            error: Some(&refused),
        };
        assert_eq!(access.why(), (Some("invalidFilter"), Some("bad filter".to_owned()), None));
    }
}
