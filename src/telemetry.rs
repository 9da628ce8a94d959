//! Telemetry: tracing subscriber setup ([`init`]) and the Prometheus metrics registry
//! ([`Metrics`], served as OpenMetrics text on `/metrics`).

pub mod context;
pub mod limiter;

use std::io::IsTerminal;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber: filter from `RUST_LOG` (default `info`), output on
/// stderr as JSON lines or human-readable lines. Calling it again is harmless (the first
/// subscriber stays).
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(err) => {
            let bad = std::env::var_os(EnvFilter::DEFAULT_ENV).map(|_| err.to_string());
            (EnvFilter::new("info"), bad)
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if let (Ok(()), Some(err)) = (installed, bad_filter) {
        tracing::warn!(error = %err, "ignoring invalid RUST_LOG, logging at info");
    }
}

/// Labels of `scim_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScimRequestLabels {
    realm: String,
    /// `scim_client_name` (from the config: bounded).
    client: String,
    method: String,
    route: String,
    status: u16,
}

/// Labels of `scim_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Labels of `zulip_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZulipRequestLabels {
    realm: String,
    endpoint: String,
    status: u16,
}

/// Labels of `zulip_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

/// Labels of `zulip_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RealmLabels {
    realm: String,
}

/// Labels of `scim_connections` (`anonymous`, `authenticated`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Labels of `scim_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Labels of `scim_unauthenticated_requests_total` (`refused`: 401, `rate_limited`: 429).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 5 ms to ~20 s (doubling): SCIM calls are one or a few Zulip calls.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// The process's metrics. Share it behind an `Arc`; every method takes `&self`.
///
/// Label values must come from small fixed sets (route *templates* such as `/Users/{id}`,
/// Zulip endpoint names, realm names from the config), never from request data, or the
/// number of series grows without bound.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    scim_requests: Family<ScimRequestLabels, Counter>,
    scim_request_duration: HistogramFamily<RouteLabels>,
    zulip_requests: Family<ZulipRequestLabels, Counter>,
    zulip_request_duration: HistogramFamily<EndpointLabels>,
    zulip_rate_limited: Family<RealmLabels, Counter>,
    realm_ready: Family<RealmLabels, Gauge>,
    realm_live: Family<RealmLabels, Gauge>,
    realm_users: Family<RealmLabels, Gauge>,
    connections: Family<StateLabels, Gauge>,
    connections_closed: Family<ReasonLabels, Counter>,
    unauthenticated: Family<OutcomeLabels, Counter>,
    writes_queued: Family<RealmLabels, Gauge>,
    rate_limit_wait: Family<RealmLabels, Gauge<f64, AtomicU64>>,
    config_reloads: Counter,
    config_reload_failures: Counter,
    config_last_reload_success: Gauge,
    audit_write_failures: Counter,
}

/// A realm's state, sampled when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RealmState {
    /// `/readyz` would count it ready.
    pub ready: bool,
    /// Zulip's events keep its snapshots current (else they expire by TTL).
    pub live: bool,
    /// SCIM Users (human accounts, deactivated included) in its last loaded snapshot; `None`:
    /// never loaded.
    pub users: Option<usize>,
    /// Writes waiting for their turn to Zulip (the realm's write queue), the one sending
    /// included.
    pub writes_queued: u64,
    /// How long a call sent now would wait for Zulip's rate limit.
    pub rate_limit_wait: Duration,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let scim_requests = Family::<ScimRequestLabels, Counter>::default();
        let scim_request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        let zulip_requests = Family::<ZulipRequestLabels, Counter>::default();
        let zulip_request_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        let zulip_rate_limited = Family::<RealmLabels, Counter>::default();
        let realm_ready = Family::<RealmLabels, Gauge>::default();
        let realm_live = Family::<RealmLabels, Gauge>::default();
        let realm_users = Family::<RealmLabels, Gauge>::default();
        let connections = Family::<StateLabels, Gauge>::default();
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        let unauthenticated = Family::<OutcomeLabels, Counter>::default();
        let writes_queued = Family::<RealmLabels, Gauge>::default();
        let rate_limit_wait = Family::<RealmLabels, Gauge<f64, AtomicU64>>::default();

        // Counters get `_total` and units their suffix from prometheus-client itself.
        registry.register(
            "scim_requests",
            "SCIM requests answered, by realm, SCIM client (scim_client_name), method, route and status",
            scim_requests.clone(),
        );
        registry.register_with_unit(
            "scim_request_duration",
            "Time to answer a SCIM request, by route",
            Unit::Seconds,
            scim_request_duration.clone(),
        );
        registry.register(
            "zulip_requests",
            "Requests made to Zulip's REST API, by realm, endpoint and status (0: no response)",
            zulip_requests.clone(),
        );
        registry.register_with_unit(
            "zulip_request_duration",
            "Time of one request to Zulip's REST API, by endpoint",
            Unit::Seconds,
            zulip_request_duration.clone(),
        );
        registry.register(
            "zulip_rate_limited",
            "Zulip answers 429 (rate limited), by realm",
            zulip_rate_limited.clone(),
        );
        registry.register(
            "scim_realm_ready",
            "1 when the realm answered its readiness check and, when followed live, its snapshots are loaded",
            realm_ready.clone(),
        );
        registry.register(
            "scim_realm_live",
            "1 while Zulip's events keep the realm's snapshots current; 0: snapshots refresh by TTL",
            realm_live.clone(),
        );
        registry.register(
            "scim_realm_snapshot_users",
            "SCIM Users (human accounts, deactivated ones included) in the realm's last loaded snapshot",
            realm_users.clone(),
        );
        registry.register(
            "scim_writes_queued",
            "Writes to Zulip waiting for their turn in the realm's write queue (the one being sent included)",
            writes_queued.clone(),
        );
        registry.register_with_unit(
            "zulip_rate_limit_wait",
            "How long a call to Zulip sent now would wait for the service account's rate limit",
            Unit::Seconds,
            rate_limit_wait.clone(),
        );

        registry.register(
            "scim_connections",
            "Open connections holding a slot: anonymous (no authenticated request yet) or authenticated",
            connections.clone(),
        );
        registry.register(
            "scim_connections_closed",
            "Connections closed by the server's limits: header_timeout, idle_timeout, evicted (for a newcomer), refused_full (503)",
            connections_closed.clone(),
        );
        registry.register(
            "scim_unauthenticated_requests",
            "SCIM requests without a valid bearer token: refused (401) or rate_limited (429, per client IP)",
            unauthenticated.clone(),
        );

        let config_reloads = Counter::default();
        let config_reload_failures = Counter::default();
        let config_last_reload_success = Gauge::default();
        config_last_reload_success.set(1);
        registry.register(
            "scim_config_reloads",
            "Configuration reloads applied (SIGHUP or a changed file)",
            config_reloads.clone(),
        );
        registry.register(
            "scim_config_reload_failures",
            "Configuration reloads refused (invalid configuration: the previous one stays in force)",
            config_reload_failures.clone(),
        );
        registry.register(
            "scim_config_last_reload_success",
            "1 when the last reload attempt (or the start) succeeded, 0 after a refused reload",
            config_last_reload_success.clone(),
        );

        let audit_write_failures = Counter::default();
        registry.register(
            "scim_audit_write_failures",
            "Audit records that could not be written (the changes themselves were applied)",
            audit_write_failures.clone(),
        );

        Metrics {
            registry,
            connections,
            connections_closed,
            unauthenticated,
            audit_write_failures,
            config_reloads,
            config_reload_failures,
            config_last_reload_success,
            scim_requests,
            scim_request_duration,
            zulip_requests,
            zulip_request_duration,
            zulip_rate_limited,
            realm_ready,
            realm_live,
            realm_users,
            writes_queued,
            rate_limit_wait,
        }
    }

    /// Records a realm's state (called for every realm just before encoding).
    pub fn set_realm_state(&self, realm: &str, state: RealmState) {
        let labels = RealmLabels { realm: realm.to_owned() };
        self.realm_ready.get_or_create(&labels).set(i64::from(state.ready));
        self.realm_live.get_or_create(&labels).set(i64::from(state.live));
        match state.users {
            Some(users) => {
                self.realm_users.get_or_create(&labels).set(i64::try_from(users).unwrap_or(i64::MAX));
            }
            None => {
                self.realm_users.remove(&labels);
            }
        }
        self.writes_queued.get_or_create(&labels).set(i64::try_from(state.writes_queued).unwrap_or(i64::MAX));
        self.rate_limit_wait.get_or_create(&labels).set(state.rate_limit_wait.as_secs_f64());
    }

    /// The counter of audit records that could not be written (shared with the audit sink).
    pub fn audit_write_failures(&self) -> Counter {
        self.audit_write_failures.clone()
    }

    /// Drops the per-realm series of a realm a reload removed.
    pub fn forget_realm(&self, realm: &str) {
        let labels = RealmLabels { realm: realm.to_owned() };
        self.realm_ready.remove(&labels);
        self.realm_live.remove(&labels);
        self.realm_users.remove(&labels);
        self.writes_queued.remove(&labels);
        self.rate_limit_wait.remove(&labels);
    }

    /// Records one answered SCIM request. `route` is the route template, e.g. `/Users/{id}`.
    pub fn observe_scim(
        &self,
        (realm, client): (&str, &str),
        method: &str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        self.scim_requests
            .get_or_create(&ScimRequestLabels {
                realm: realm.to_owned(),
                client: client.to_owned(),
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.scim_request_duration
            .get_or_create(&RouteLabels { route: route.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one request to Zulip. `endpoint` names the API call (e.g. `get_users`), not the
    /// path with ids; `status` is 0 when no response arrived (transport error, timeout).
    pub fn observe_zulip(&self, realm: &str, endpoint: &str, status: u16, elapsed: Duration) {
        self.zulip_requests
            .get_or_create(&ZulipRequestLabels {
                realm: realm.to_owned(),
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
        self.zulip_request_duration
            .get_or_create(&EndpointLabels { endpoint: endpoint.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// The connections holding a slot.
    pub fn set_connections(&self, anonymous: usize, authenticated: usize) {
        for (state, n) in [("anonymous", anonymous), ("authenticated", authenticated)] {
            self.connections.get_or_create(&StateLabels { state }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One connection closed (or refused) by a limit; `reason` is a fixed word.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// One request without a valid token: `refused` (401) or `rate_limited` (429).
    pub fn unauthenticated(&self, outcome: &'static str) {
        self.unauthenticated.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records a reload attempt's outcome.
    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.config_reloads.inc();
        } else {
            self.config_reload_failures.inc();
        }
        self.config_last_reload_success.set(i64::from(ok));
    }

    /// Records one 429 from Zulip.
    pub fn rate_limited(&self, realm: &str) {
        self.zulip_rate_limited.get_or_create(&RealmLabels { realm: realm.to_owned() }).inc();
    }

    /// Every series in the OpenMetrics text format (content type
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`), ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            // Writing to a String cannot fail; a label encoder could, in theory.
            tracing::error!(error = %err, "cannot encode metrics");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_contains_every_series_with_its_labels() {
        let metrics = Metrics::new();
        metrics.observe_scim(("acme", "okta"), "POST", "/Users", 201, Duration::from_millis(12));
        metrics.observe_zulip("acme", "create_user", 200, Duration::from_millis(8));
        metrics.rate_limited("acme");
        metrics.set_connections(3, 1);
        metrics.connection_closed("evicted");
        metrics.unauthenticated("rate_limited");
        metrics.set_realm_state(
            "acme",
            RealmState {
                ready: true,
                live: false,
                users: Some(12),
                writes_queued: 3,
                rate_limit_wait: Duration::from_millis(1500),
            },
        );
        metrics.set_realm_state(
            "beta",
            RealmState { ready: false, live: false, users: None, ..RealmState::default() },
        );
        let text = metrics.encode();

        assert!(
            !text.contains(r#"scim_realm_snapshot_users{realm="beta"}"#),
            "no snapshot, no series: {text}"
        );
        for expected in [
            "# TYPE scim_requests counter",
            r#"scim_requests_total{realm="acme",client="okta",method="POST",route="/Users",status="201"} 1"#,
            "# TYPE scim_request_duration_seconds histogram",
            "# UNIT scim_request_duration_seconds seconds",
            r#"scim_request_duration_seconds_count{route="/Users"} 1"#,
            r#"scim_request_duration_seconds_bucket{le="0.02",route="/Users"} 1"#,
            r#"zulip_requests_total{realm="acme",endpoint="create_user",status="200"} 1"#,
            r#"zulip_request_duration_seconds_count{endpoint="create_user"} 1"#,
            r#"zulip_rate_limited_total{realm="acme"} 1"#,
            "# TYPE scim_realm_ready gauge",
            r#"scim_realm_ready{realm="acme"} 1"#,
            r#"scim_realm_ready{realm="beta"} 0"#,
            r#"scim_realm_live{realm="acme"} 0"#,
            r#"scim_realm_snapshot_users{realm="acme"} 12"#,
            r#"scim_connections{state="anonymous"} 3"#,
            r#"scim_connections{state="authenticated"} 1"#,
            r#"scim_connections_closed_total{reason="evicted"} 1"#,
            r#"scim_unauthenticated_requests_total{outcome="rate_limited"} 1"#,
            r#"scim_writes_queued{realm="acme"} 3"#,
            "# UNIT zulip_rate_limit_wait_seconds seconds",
            r#"zulip_rate_limit_wait_seconds{realm="acme"} 1.5"#,
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn counters_accumulate_per_label_set() {
        let metrics = Metrics::default();
        for status in [200, 200, 404] {
            metrics.observe_scim(("acme", "acme"), "GET", "/Users/{id}", status, Duration::ZERO);
        }
        let text = metrics.encode();
        assert!(text.contains(r#"route="/Users/{id}",status="200"} 2"#), "{text}");
        assert!(text.contains(r#"route="/Users/{id}",status="404"} 1"#), "{text}");
    }
}
