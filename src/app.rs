//! The application and its one start-up path.
//!
//! [`App`] is what every request sees: the realms, the token table, the limits, the metrics
//! and the count of writes in flight. [`Sidecar::start`] is the only way to run it: it builds
//! the realms from a [`Config`], binds nothing itself (it is given a listener), starts the
//! readiness checks and the live tasks as asked, and serves until [`Running::shutdown`].
//! `serve`, `demo`, the integration harness and the load tool all go through it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;
use tracing::Instrument;

use crate::audit::{self, AuditSink};
use crate::config::{Config, RealmConfig};
use crate::error::{Error, ErrorChain};
use crate::http::auth::TokenTable;
use crate::http::jwt::JwtVerifier;
use crate::http::ratelimit::Guard;
use crate::provision::live::LiveOptions;
use crate::provision::{Realm, MAX_COUNT};
use crate::reload::Reloader;
use crate::server::tls::{Tls, TlsError};
use crate::server::{self, ServerLimits};
use crate::telemetry::context::RequestContext;
use crate::telemetry::limiter::LineLimiter;
use crate::telemetry::Metrics;
use scim::discovery::Capabilities;
use zulip_client::client::UpstreamPolicy;
use zulip_client::{ClientConfig, Role, ZulipClient};

/// Why the process could not start or run (printed by `main`).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("realm {realm}: cannot build the Zulip client")]
    Client {
        realm: String,
        #[source]
        source: zulip_client::ZulipError,
    },
    #[error("realm {realm} is not ready")]
    NotReady {
        realm: String,
        #[source]
        source: crate::provision::NotReady,
    },
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditOpenError),
    #[error("cannot set up TLS")]
    Tls(#[source] TlsError),
    #[error("{0}")]
    Other(String),
}

/// Everything a request needs: the realms and how to pick one. The HTTP side of it is in
/// [`crate::http`] (`App::handle`).
///
/// One `App` is one generation of the configuration: a reload ([`crate::reload`]) builds the
/// next one (keeping the realms whose configuration did not change) and swaps it in; a
/// request runs to its end on the generation it started with.
#[derive(Debug)]
pub struct App {
    pub(crate) realms: Vec<Arc<Realm>>,
    /// Who may reach each realm (same index as `realms`), from the configuration in force: a
    /// reload that rotates tokens or changes an allow-list keeps the realm itself.
    pub(crate) access: Vec<RealmAccess>,
    pub(crate) tokens: TokenTable,
    pub(crate) max_body_bytes: usize,
    /// Proxies trusted to append to `X-Forwarded-For` (realms' `allow_ips`).
    pub(crate) trusted_proxy_hops: usize,
    /// How long a request body may take to arrive (408 after it).
    pub(crate) body_read_timeout: Duration,
    /// Request-rate limits (per realm, and per address for requests without a token).
    pub(crate) guard: Guard,
    /// `log_probes`: `/livez`, `/readyz`, `/metrics` at `info` (else `debug`).
    pub(crate) log_probes: bool,
    /// Holds back repeated identical refusal and failure lines.
    pub(crate) repeated_lines: LineLimiter,
    pub(crate) capabilities: Capabilities,
    pub(crate) metrics: Arc<Metrics>,
    /// Where the realms' changes are recorded (kept across reloads unless `audit` changes).
    pub(crate) audit: Arc<AuditSink>,
    /// Shared by every generation: draining, and the writes in flight.
    lifecycle: Arc<Lifecycle>,
}

/// Identical refusal or failure lines are written at most once per this window.
pub(crate) const REPEATED_LINE_WINDOW: Duration = Duration::from_secs(10);

/// The access rules of one realm.
#[derive(Debug, Clone)]
pub(crate) struct RealmAccess {
    pub(crate) hosts: Vec<String>,
    pub(crate) allow_ips: Vec<crate::config::IpNet>,
}

/// What outlives a configuration generation.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    draining: AtomicBool,
    /// Writes in flight (each runs as a task of its own, see [`App::to_completion`]).
    writes: Arc<watch::Sender<usize>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { draining: AtomicBool::new(false), writes: Arc::new(watch::channel(0).0) }
    }
}

/// Counts one write in flight until dropped (at the end of its task).
struct WriteInFlight(Arc<watch::Sender<usize>>);

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

// === impl App ===

impl App {
    /// Builds the realms (one Zulip client each) from a config.
    pub fn from_config(config: &Config) -> Result<Arc<App>, StartupError> {
        let metrics = Arc::new(Metrics::new());
        let audit =
            Arc::new(AuditSink::open(&config.audit)?.counting_failures(metrics.audit_write_failures()));
        let realms = config
            .realms
            .iter()
            .map(|realm| build_realm(config, realm, &metrics, &audit).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(App::assemble(realms, config, metrics, audit, Arc::default())))
    }

    pub fn new(realms: Vec<Arc<Realm>>, max_body_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let configs: Vec<RealmConfig> = realms.iter().map(|r| r.config.clone()).collect();
        let mut app = App::with_access(realms, &configs, metrics, Arc::new(AuditSink::LOG), Arc::default());
        app.max_body_bytes = max_body_bytes;
        app
    }

    /// One generation: `realms[i]` serves `config.realms[i]`, whose access rules apply.
    pub(crate) fn assemble(
        realms: Vec<Arc<Realm>>,
        config: &Config,
        metrics: Arc<Metrics>,
        audit: Arc<AuditSink>,
        lifecycle: Arc<Lifecycle>,
    ) -> App {
        let mut app = App::with_access(realms, &config.realms, metrics, audit, lifecycle);
        app.max_body_bytes = config.max_body_bytes;
        app.trusted_proxy_hops = config.trusted_proxy_hops;
        app.body_read_timeout = config.server.body_read_timeout;
        app.guard = Guard::new(&config.server, config.realms.iter().map(|r| r.name.as_str()));
        app.log_probes = config.log_probes;
        app
    }

    fn with_access(
        realms: Vec<Arc<Realm>>,
        configs: &[RealmConfig],
        metrics: Arc<Metrics>,
        audit: Arc<AuditSink>,
        lifecycle: Arc<Lifecycle>,
    ) -> App {
        let jwt = configs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.jwt.as_ref().map(|jwt| (i, JwtVerifier::new(jwt))))
            .collect();
        let tokens = TokenTable::new(configs.iter().map(|r| r.bearer_token_sha256.as_slice())).with_jwt(jwt);
        let access = configs
            .iter()
            .map(|r| RealmAccess { hosts: r.hosts.clone(), allow_ips: r.allow_ips.clone() })
            .collect();
        let server = crate::config::ServerConfig::default();
        App {
            guard: Guard::new(&server, realms.iter().map(|r| r.name())),
            realms,
            access,
            tokens,
            max_body_bytes: 1024 * 1024,
            trusted_proxy_hops: 0,
            body_read_timeout: server.body_read_timeout,
            log_probes: false,
            repeated_lines: LineLimiter::new(REPEATED_LINE_WINDOW),
            capabilities: Capabilities { max_results: MAX_COUNT, ..Capabilities::default() },
            metrics,
            audit,
            lifecycle,
        }
    }

    /// What outlives this generation (handed to the next by a reload).
    pub(crate) fn lifecycle(&self) -> Arc<Lifecycle> {
        self.lifecycle.clone()
    }

    pub(crate) fn metrics_arc(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn realms(&self) -> &[Arc<Realm>] {
        &self.realms
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Flips `/readyz` to 503 (shutdown has begun).
    pub fn set_draining(&self) {
        self.lifecycle.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.lifecycle.draining.load(Ordering::Acquire)
    }

    /// Resolves once no write is in flight (shutdown waits for it within its grace period).
    pub async fn writes_finished(&self) {
        let mut writes = self.lifecycle.writes.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _ = writes.wait_for(|n| *n == 0).await;
    }

    /// Runs a write to its end even if the IdP hangs up. hyper drops a request's future when
    /// its connection closes; a write cut between its Zulip calls (`POST /users`, then the
    /// `PATCH` with the role and `externalId`; a group's rename, then its members) would leave
    /// a half-made change that nobody reports. The write runs as a task of its own, which the
    /// request merely awaits, and shutdown waits for it. A panic in it is a 500.
    pub(crate) async fn to_completion<T: Send + 'static>(
        &self,
        write: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.lifecycle.writes.send_modify(|n| *n += 1);
        let in_flight = WriteInFlight(self.lifecycle.writes.clone());
        // The request's context (its id and client for the log lines, its id and operation
        // for the audit records), span and subscriber follow the write into its task.
        let (context, audited) = (RequestContext::current(), audit::current());
        let task = tokio::spawn(
            RequestContext::scope(context, async move {
                let outcome = match audited {
                    Some(audited) => audit::scope(audited, write).await,
                    None => write.await,
                };
                drop(in_flight);
                outcome
            })
            .in_current_span()
            .with_current_subscriber(),
        );
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(Error::Internal(format!("the write task failed: {e}"))),
        }
    }
}

/// The Zulip client of a realm, as the sidecar configures it (also `check-config --online`).
pub fn zulip_client_for(config: &Config, realm: &RealmConfig) -> Result<ZulipClient, StartupError> {
    ZulipClient::new(ClientConfig {
        base_url: realm.upstream.url.clone(),
        host: realm_host_header(realm),
        email: realm.upstream.email.clone(),
        api_key: realm.upstream.api_key.clone(),
        timeout: realm.upstream.timeout,
        policy: UpstreamPolicy {
            deadline: config.request_deadline,
            max_in_flight: realm.upstream.max_in_flight,
            ..UpstreamPolicy::default()
        },
    })
    .map_err(|source| StartupError::Client { realm: realm.name.clone(), source })
}

/// A realm as `config` serves it, recording its changes to `audit`.
pub(crate) fn build_realm(
    config: &Config,
    realm: &RealmConfig,
    metrics: &Arc<Metrics>,
    audit: &Arc<AuditSink>,
) -> Result<Realm, StartupError> {
    let client = zulip_client_for(config, realm)?.with_observer({
        let metrics = metrics.clone();
        let name = realm.name.clone();
        Arc::new(move |endpoint: &str, status: u16, elapsed: Duration| {
            metrics.observe_zulip(&name, endpoint, status, elapsed);
            if status == 429 {
                metrics.rate_limited(&name);
            }
        })
    });
    Ok(Realm::new(realm.clone(), client, config.snapshot_ttl).with_audit(audit.clone()))
}

/// The Host header Zulip must see when the API is reached at another address than the
/// realm's public URL (Zulip picks the realm by Host).
fn realm_host_header(realm: &RealmConfig) -> Option<String> {
    let public = realm.url.host_str()?;
    let public = match realm.url.port() {
        Some(port) => format!("{public}:{port}"),
        None => public.to_string(),
    };
    let upstream = realm.upstream.url.host_str().map(|h| match realm.upstream.url.port() {
        Some(port) => format!("{h}:{port}"),
        None => h.to_string(),
    });
    (upstream.as_deref() != Some(public.as_str())).then_some(public)
}

/// How the realms become ready when the sidecar starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyCheck {
    /// Checked in the background, retried with backoff until Zulip answers; `/readyz` says
    /// when (`serve`, `demo`).
    Background,
    /// Checked before serving; a realm that is not ready fails the start (the integration
    /// harness and the load tool, which need a ready realm to measure).
    Awaited,
    /// Not checked at start: the first request that needs the realm checks it (tests of an
    /// unreachable or unready Zulip).
    OnFirstRequest,
}

/// What [`Sidecar::start`] starts besides the server.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub ready: ReadyCheck,
    /// Follow each realm's Zulip events (the live task); `None` leaves the snapshot to its
    /// TTL.
    pub live: Option<LiveOptions>,
}

impl Default for StartOptions {
    /// As `serve` runs: readiness in the background, live tasks on.
    fn default() -> Self {
        StartOptions { ready: ReadyCheck::Background, live: Some(LiveOptions::default()) }
    }
}

/// The one start-up path: build → readiness → live tasks → serve → shutdown.
#[derive(Debug)]
pub struct Sidecar;

/// A started sidecar. Dropping it does not stop the server: call [`Running::shutdown`]
/// and [`Running::join`].
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    reloader: Reloader,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

// === impl Sidecar ===

impl Sidecar {
    /// Builds the app from `config` and serves it on `listener` (already bound: `serve`
    /// binds the configured address, tests bind `127.0.0.1:0`).
    pub async fn start(
        config: &Config,
        listener: TcpListener,
        options: StartOptions,
    ) -> Result<Running, StartupError> {
        let mut config = config.clone();
        for problem in crate::jwks::resolve(&mut config, None).await {
            tracing::error!(problem = %problem, "cannot fetch JWT signing keys");
        }
        let app = App::from_config(&config)?;
        Sidecar::start_app(app, &config, listener, options).await
    }

    /// Like [`Sidecar::start`], with an app already built (tests that inspect realms).
    pub async fn start_app(
        app: Arc<App>,
        config: &Config,
        listener: TcpListener,
        options: StartOptions,
    ) -> Result<Running, StartupError> {
        let addr =
            listener.local_addr().map_err(|source| StartupError::Listen { addr: config.listen, source })?;
        let tls = match &config.server.tls {
            Some(tls) => Some(Arc::new(Tls::new(tls).map_err(StartupError::Tls)?)),
            None => None,
        };
        let reloader = Reloader::new(app.clone(), config.clone(), options.ready);
        reloader.make_ready(app.realms()).await?;
        let (stop, stopped) = watch::channel(false);
        let limits = ServerLimits {
            max_connections: config.max_connections,
            shutdown_grace: config.shutdown_grace,
            server: config.server.clone(),
        };
        let mut server_stopped = stopped.clone();
        let server = tokio::spawn(server::run(
            listener,
            reloader.apps(),
            async move {
                let _ = server_stopped.wait_for(|stop| *stop).await;
            },
            limits,
            tls,
        ));
        let mut running = Running { addr, reloader, stop, server };
        if let Some(options) = options.live {
            running.start_live(options);
        }
        Ok(running)
    }
}

// === impl Running ===

impl Running {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration generation in force.
    pub fn app(&self) -> Arc<App> {
        self.reloader.current()
    }

    /// The handle that reloads the configuration ([`crate::reload`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Starts one live task per realm (see [`crate::provision::live`]): each follows its
    /// realm's Zulip events so that changes made in Zulip reach the snapshots at once. Realms
    /// added by a later reload get theirs too.
    pub fn start_live(&mut self, options: LiveOptions) {
        self.reloader.start_live(options);
    }

    /// Begins the graceful shutdown: stop accepting, flip `/readyz`, drain in-flight
    /// requests and writes within `shutdown_grace`.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        self.reloader.stop_tasks();
    }

    /// Waits until the server has stopped (after [`Running::shutdown`]), then for the live
    /// tasks; re-raises a panic from either.
    pub async fn join(self) {
        let (live, readiness) = self.reloader.take_tasks();
        for task in &readiness {
            task.abort();
        }
        reraise(self.server.await);
        join_within(live, Duration::from_secs(2), "live update tasks").await;
    }

    /// Serves until `signal` resolves (SIGTERM/SIGINT for `serve`), then shuts down.
    pub async fn until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown();
        self.join().await;
    }
}

/// Joins `tasks` for at most `limit`; re-raises a panic from one, logs if time runs out.
async fn join_within(tasks: Vec<JoinHandle<()>>, limit: Duration, what: &str) {
    match tokio::time::timeout(limit, futures_util::future::join_all(tasks)).await {
        Ok(results) => results.into_iter().for_each(reraise),
        Err(_) => tracing::warn!(limit_ms = limit.as_millis() as u64, "{what} did not stop in time"),
    }
}

pub(crate) fn reraise(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Checks a realm's upstream in the background until it answers.
pub(crate) fn spawn_readiness(realm: Arc<Realm>) -> JoinHandle<()> {
    let check = async move {
        let limiter = LineLimiter::new(REPEATED_LINE_WINDOW);
        let mut wait = Duration::from_millis(250);
        loop {
            match realm.check_ready().await {
                Ok(readiness) => {
                    log_ready(&realm, &readiness);
                    break;
                }
                Err(e) => {
                    // Identical failures are written once per 10 s at most; `held_back`
                    // counts the retries in between.
                    let key = (realm.name().to_owned(), e.to_string());
                    if let Some(held_back) = limiter.admit(key, std::time::Instant::now()) {
                        tracing::warn!(realm = %realm.name(), error = %ErrorChain(&e),
                            retry_in_ms = wait.as_millis() as u64, held_back = (held_back > 0).then_some(held_back), "realm not ready");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    };
    tokio::spawn(check.with_current_subscriber())
}

pub(crate) fn log_ready(realm: &Realm, r: &crate::provision::Readiness) {
    tracing::info!(realm = %realm.name(), zulip_version = %r.zulip_version, feature_level = r.feature_level,
        service_account = r.service_account_id, role = r.service_account_role.scim_name(),
        external_id_field = r.external_id_field, "realm ready");
    if r.service_account_role != Role::Owner {
        tracing::warn!(realm = %realm.name(), "the service account is not an organization owner: owner changes, deactivating owners and SCIM groups will be refused by Zulip");
    }
}

/// Runs the sidecar with `config` (loaded from `config_path`) until SIGTERM/SIGINT, then
/// drains within the grace period. SIGHUP, and a change of the config file or of a file it
/// names, reload the configuration ([`crate::reload::watch`]).
pub async fn serve(config: Config, config_path: &std::path::Path) -> Result<(), StartupError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
    let running = Sidecar::start(&config, listener, StartOptions::default()).await?;
    tracing::info!(listen = %running.addr(), realms = config.realms.len(), "scim-sidecar listening");
    let (stop_watch, watch_stopped) = watch::channel(false);
    let watcher = tokio::spawn(crate::reload::watch(
        running.reloader(),
        config_path.to_path_buf(),
        config.watch_interval,
        watch_stopped,
    ));
    running.until(server::shutdown_signal()).await;
    let _ = stop_watch.send(true);
    reraise(watcher.await);
    Ok(())
}
