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
use prometheus_client::registry::{Metric, Registry, Unit};
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
    scim: ScimMetrics,
    zulip: ZulipMetrics,
    realms: RealmGauges,
    connections: ConnectionMetrics,
    reloads: ReloadMetrics,
    audit_write_failures: Counter,
}

/// The SCIM requests answered: how many, and how long they took.
#[derive(Debug)]
struct ScimMetrics {
    requests: Family<ScimRequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
}

/// The calls made to Zulip: how many, how long they took, how many were rate limited.
#[derive(Debug)]
struct ZulipMetrics {
    requests: Family<ZulipRequestLabels, Counter>,
    request_duration: HistogramFamily<EndpointLabels>,
    rate_limited: Family<RealmLabels, Counter>,
}

/// The per-realm gauges of [`RealmState`] (set on every scrape, dropped with the realm).
#[derive(Debug)]
struct RealmGauges {
    ready: Family<RealmLabels, Gauge>,
    live: Family<RealmLabels, Gauge>,
    users: Family<RealmLabels, Gauge>,
    writes_queued: Family<RealmLabels, Gauge>,
    rate_limit_wait: Family<RealmLabels, Gauge<f64, AtomicU64>>,
}

/// The server's limits at work: connection slots, closed connections, requests without a
/// valid token.
#[derive(Debug)]
struct ConnectionMetrics {
    open: Family<StateLabels, Gauge>,
    closed: Family<ReasonLabels, Counter>,
    unauthenticated: Family<OutcomeLabels, Counter>,
}

/// Configuration reloads applied and refused, and whether the last attempt succeeded.
#[derive(Debug)]
struct ReloadMetrics {
    applied: Counter,
    refused: Counter,
    last_succeeded: Gauge,
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
        // Registered in this order, which is the order of the encoded text.
        let scim = ScimMetrics::register(&mut registry);
        let zulip = ZulipMetrics::register(&mut registry);
        let realms = RealmGauges::register(&mut registry);
        let connections = ConnectionMetrics::register(&mut registry);
        let reloads = ReloadMetrics::register(&mut registry);
        let audit_write_failures = register(
            &mut registry,
            "scim_audit_write_failures",
            "Audit records that could not be written (the changes themselves were applied)",
            Counter::default(),
        );
        Metrics { registry, scim, zulip, realms, connections, reloads, audit_write_failures }
    }

    /// Records a realm's state (called for every realm just before encoding).
    pub fn set_realm_state(&self, realm: &str, state: RealmState) {
        let labels = RealmLabels { realm: realm.to_owned() };
        self.realms.ready.get_or_create(&labels).set(i64::from(state.ready));
        self.realms.live.get_or_create(&labels).set(i64::from(state.live));
        match state.users {
            Some(users) => {
                self.realms.users.get_or_create(&labels).set(i64::try_from(users).unwrap_or(i64::MAX));
            }
            None => {
                self.realms.users.remove(&labels);
            }
        }
        self.realms
            .writes_queued
            .get_or_create(&labels)
            .set(i64::try_from(state.writes_queued).unwrap_or(i64::MAX));
        self.realms.rate_limit_wait.get_or_create(&labels).set(state.rate_limit_wait.as_secs_f64());
    }

    /// The counter of audit records that could not be written (shared with the audit sink).
    pub fn audit_write_failures(&self) -> Counter {
        self.audit_write_failures.clone()
    }

    /// Drops the per-realm series of a realm a reload removed.
    pub fn forget_realm(&self, realm: &str) {
        let labels = RealmLabels { realm: realm.to_owned() };
        self.realms.ready.remove(&labels);
        self.realms.live.remove(&labels);
        self.realms.users.remove(&labels);
        self.realms.writes_queued.remove(&labels);
        self.realms.rate_limit_wait.remove(&labels);
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
        self.scim
            .requests
            .get_or_create(&ScimRequestLabels {
                realm: realm.to_owned(),
                client: client.to_owned(),
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.scim
            .request_duration
            .get_or_create(&RouteLabels { route: route.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one request to Zulip. `endpoint` names the API call (e.g. `get_users`), not the
    /// path with ids; `status` is 0 when no response arrived (transport error, timeout).
    pub fn observe_zulip(&self, realm: &str, endpoint: &str, status: u16, elapsed: Duration) {
        self.zulip
            .requests
            .get_or_create(&ZulipRequestLabels {
                realm: realm.to_owned(),
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
        self.zulip
            .request_duration
            .get_or_create(&EndpointLabels { endpoint: endpoint.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// The connections holding a slot.
    pub fn set_connections(&self, anonymous: usize, authenticated: usize) {
        for (state, n) in [("anonymous", anonymous), ("authenticated", authenticated)] {
            self.connections
                .open
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One connection closed (or refused) by a limit; `reason` is a fixed word.
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections.closed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// One request without a valid token: `refused` (401) or `rate_limited` (429).
    pub fn unauthenticated(&self, outcome: &'static str) {
        self.connections.unauthenticated.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records a reload attempt's outcome.
    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.reloads.applied.inc();
        } else {
            self.reloads.refused.inc();
        }
        self.reloads.last_succeeded.set(i64::from(ok));
    }

    /// Records one 429 from Zulip.
    pub fn rate_limited(&self, realm: &str) {
        self.zulip.rate_limited.get_or_create(&RealmLabels { realm: realm.to_owned() }).inc();
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

/// Registers `metric` under `name` and hands it back: metrics are shared handles, so the
/// value kept and the one in the registry count the same. Counters get `_total` from
/// prometheus-client itself.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`register`] for a metric in seconds (prometheus-client adds the `_seconds` suffix).
fn register_seconds<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register_with_unit(name, help, Unit::Seconds, metric.clone());
    metric
}

impl ScimMetrics {
    fn register(registry: &mut Registry) -> ScimMetrics {
        ScimMetrics {
            requests: register(
                registry,
                "scim_requests",
                "SCIM requests answered, by realm, SCIM client (scim_client_name), method, route and status",
                Family::default(),
            ),
            request_duration: register_seconds(
                registry,
                "scim_request_duration",
                "Time to answer a SCIM request, by route",
                Family::new_with_constructor(latency_histogram),
            ),
        }
    }
}

impl ZulipMetrics {
    fn register(registry: &mut Registry) -> ZulipMetrics {
        ZulipMetrics {
            requests: register(
                registry,
                "zulip_requests",
                "Requests made to Zulip's REST API, by realm, endpoint and status (0: no response)",
                Family::default(),
            ),
            request_duration: register_seconds(
                registry,
                "zulip_request_duration",
                "Time of one request to Zulip's REST API, by endpoint",
                Family::new_with_constructor(latency_histogram),
            ),
            rate_limited: register(
                registry,
                "zulip_rate_limited",
                "Zulip answers 429 (rate limited), by realm",
                Family::default(),
            ),
        }
    }
}

impl RealmGauges {
    fn register(registry: &mut Registry) -> RealmGauges {
        RealmGauges {
            ready: register(
                registry,
                "scim_realm_ready",
                "1 when the realm answered its readiness check and, when followed live, its snapshots are loaded",
                Family::default(),
            ),
            live: register(
                registry,
                "scim_realm_live",
                "1 while Zulip's events keep the realm's snapshots current; 0: snapshots refresh by TTL",
                Family::default(),
            ),
            users: register(
                registry,
                "scim_realm_snapshot_users",
                "SCIM Users (human accounts, deactivated ones included) in the realm's last loaded snapshot",
                Family::default(),
            ),
            writes_queued: register(
                registry,
                "scim_writes_queued",
                "Writes to Zulip waiting for their turn in the realm's write queue (the one being sent included)",
                Family::default(),
            ),
            rate_limit_wait: register_seconds(
                registry,
                "zulip_rate_limit_wait",
                "How long a call to Zulip sent now would wait for the service account's rate limit",
                Family::default(),
            ),
        }
    }
}

impl ConnectionMetrics {
    fn register(registry: &mut Registry) -> ConnectionMetrics {
        ConnectionMetrics {
            open: register(
                registry,
                "scim_connections",
                "Open connections holding a slot: anonymous (no authenticated request yet) or authenticated",
                Family::default(),
            ),
            closed: register(
                registry,
                "scim_connections_closed",
                "Connections closed by the server's limits: header_timeout, idle_timeout, evicted (for a newcomer), refused_full (503)",
                Family::default(),
            ),
            unauthenticated: register(
                registry,
                "scim_unauthenticated_requests",
                "SCIM requests without a valid bearer token: refused (401) or rate_limited (429, per client IP)",
                Family::default(),
            ),
        }
    }
}

impl ReloadMetrics {
    fn register(registry: &mut Registry) -> ReloadMetrics {
        let last_succeeded = Gauge::default();
        last_succeeded.set(1);
        ReloadMetrics {
            applied: register(
                registry,
                "scim_config_reloads",
                "Configuration reloads applied (SIGHUP or a changed file)",
                Counter::default(),
            ),
            refused: register(
                registry,
                "scim_config_reload_failures",
                "Configuration reloads refused (invalid configuration: the previous one stays in force)",
                Counter::default(),
            ),
            last_succeeded: register(
                registry,
                "scim_config_last_reload_success",
                "1 when the last reload attempt (or the start) succeeded, 0 after a refused reload",
                last_succeeded,
            ),
        }
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
