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

use crate::config::{Config, RealmConfig};
use crate::error::{Error, ErrorChain};
use crate::http::auth::TokenTable;
use crate::provision::live::{self, LiveOptions};
use crate::provision::{Realm, MAX_COUNT};
use crate::server::{self, ServerLimits};
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
    #[error("{0}")]
    Other(String),
}

/// Everything a request needs: the realms and how to pick one. The HTTP side of it is in
/// [`crate::http`] (`App::handle`).
#[derive(Debug)]
pub struct App {
    pub(crate) realms: Vec<Arc<Realm>>,
    pub(crate) tokens: TokenTable,
    pub(crate) max_body_bytes: usize,
    pub(crate) capabilities: Capabilities,
    draining: AtomicBool,
    pub(crate) metrics: Arc<Metrics>,
    /// Writes in flight (each runs as a task of its own, see [`App::to_completion`]).
    writes: Arc<watch::Sender<usize>>,
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
        let realms = config
            .realms
            .iter()
            .map(|realm| build_realm(config, realm, &metrics).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(App::new(realms, config.max_body_bytes, metrics)))
    }

    pub fn new(realms: Vec<Arc<Realm>>, max_body_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let tokens = TokenTable::new(realms.iter().map(|r| r.config.bearer_token_sha256.as_slice()));
        App {
            realms,
            tokens,
            max_body_bytes,
            capabilities: Capabilities { max_results: MAX_COUNT, ..Capabilities::default() },
            draining: AtomicBool::new(false),
            metrics,
            writes: Arc::new(watch::channel(0).0),
        }
    }

    pub fn realms(&self) -> &[Arc<Realm>] {
        &self.realms
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Flips `/readyz` to 503 (shutdown has begun).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves once no write is in flight (shutdown waits for it within its grace period).
    pub async fn writes_finished(&self) {
        let mut writes = self.writes.subscribe();
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
        self.writes.send_modify(|n| *n += 1);
        let in_flight = WriteInFlight(self.writes.clone());
        let task = tokio::spawn(async move {
            let outcome = write.await;
            drop(in_flight);
            outcome
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(Error::Internal(format!("the write task failed: {e}"))),
        }
    }
}

fn build_realm(config: &Config, realm: &RealmConfig, metrics: &Arc<Metrics>) -> Result<Realm, StartupError> {
    let client = ZulipClient::new(ClientConfig {
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
    .map_err(|source| StartupError::Client { realm: realm.name.clone(), source })?
    .with_observer({
        let metrics = metrics.clone();
        let name = realm.name.clone();
        Arc::new(move |endpoint: &str, status: u16, elapsed: Duration| {
            metrics.observe_zulip(&name, endpoint, status, elapsed);
            if status == 429 {
                metrics.rate_limited(&name);
            }
        })
    });
    Ok(Realm::new(realm.clone(), client, config.snapshot_ttl))
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
    app: Arc<App>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    live: Vec<JoinHandle<()>>,
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
        let app = App::from_config(config)?;
        Sidecar::start_app(app, config, listener, options).await
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
        let mut background = Vec::new();
        match options.ready {
            ReadyCheck::Background => background.extend(app.realms().iter().cloned().map(spawn_readiness)),
            ReadyCheck::Awaited => {
                for realm in app.realms() {
                    let readiness = realm.check_ready().await.map_err(|source| StartupError::NotReady {
                        realm: realm.name().to_string(),
                        source,
                    })?;
                    log_ready(realm, &readiness);
                }
            }
            ReadyCheck::OnFirstRequest => {}
        }
        let (stop, stopped) = watch::channel(false);
        let limits =
            ServerLimits { max_connections: config.max_connections, shutdown_grace: config.shutdown_grace };
        let mut server_stopped = stopped.clone();
        let server = tokio::spawn(server::run(
            listener,
            app.clone(),
            async move {
                let _ = server_stopped.wait_for(|stop| *stop).await;
            },
            limits,
        ));
        let mut running = Running { addr, app, stop, server, background, live: Vec::new() };
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

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Starts one live task per realm (see [`crate::provision::live`]): each follows its
    /// realm's Zulip events so that changes made in Zulip reach the snapshots at once.
    pub fn start_live(&mut self, options: LiveOptions) {
        self.live.extend(live::spawn_all(self.app.realms(), &self.stop.subscribe(), options));
    }

    /// Begins the graceful shutdown: stop accepting, flip `/readyz`, drain in-flight
    /// requests and writes within `shutdown_grace`.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped (after [`Running::shutdown`]), then for the live
    /// tasks; re-raises a panic from either.
    pub async fn join(self) {
        for task in &self.background {
            task.abort();
        }
        reraise(self.server.await);
        join_within(self.live, Duration::from_secs(2), "live update tasks").await;
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

fn reraise(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Checks a realm's upstream in the background until it answers.
fn spawn_readiness(realm: Arc<Realm>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(250);
        loop {
            match realm.check_ready().await {
                Ok(readiness) => {
                    log_ready(&realm, &readiness);
                    break;
                }
                Err(e) => {
                    tracing::warn!(realm = %realm.name(), error = %ErrorChain(&e), retry_in_ms = wait.as_millis() as u64, "realm not ready");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    })
}

fn log_ready(realm: &Realm, r: &crate::provision::Readiness) {
    tracing::info!(realm = %realm.name(), zulip_version = %r.zulip_version, feature_level = r.feature_level,
        service_account = r.service_account_id, role = r.service_account_role.scim_name(),
        external_id_field = r.external_id_field.map(|id| id.to_string()).as_deref().unwrap_or("-"), "realm ready");
    if r.service_account_role != Role::Owner {
        tracing::warn!(realm = %realm.name(), "the service account is not an organization owner: owner changes, deactivating owners and SCIM groups will be refused by Zulip");
    }
}

/// Runs the sidecar with `config` until SIGTERM/SIGINT, then drains within the grace period.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
    let running = Sidecar::start(&config, listener, StartOptions::default()).await?;
    tracing::info!(listen = %running.addr(), realms = config.realms.len(), "scim-sidecar listening");
    running.until(server::shutdown_signal()).await;
    Ok(())
}
