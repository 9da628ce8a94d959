//! Hot reload: SIGHUP, or a change of the config file or of a file it names (bearer-token,
//! API-key and JWKS files; Kubernetes swaps mounted secrets through a symlink), re-reads and
//! validates the configuration and swaps it in atomically.
//!
//! - Invalid: the configuration in force stays; every problem is logged;
//!   `scim_config_reload_failures_total` counts it and `scim_config_last_reload_success` is 0.
//! - Valid: the next [`App`] generation is built. Realms whose serving configuration did not
//!   change are kept as they are (snapshots, live task, readiness); token, host and
//!   allow-list changes only change who may reach a realm, so they keep it too. Changed
//!   realms are rebuilt, added realms are started (readiness, live task), removed realms'
//!   live tasks are stopped. The server picks the generation per request: a request in flight
//!   finishes on the generation it started with.
//! - Keys the running process cannot change (`listen`, `max_connections`,
//!   `shutdown_grace_ms`, `log_format`, `config_watch_ms`) are logged as needing a restart and
//!   keep their running values.
//!
//! Files are watched by polling a digest of their contents every `config_watch_ms` (simple,
//! and it sees symlink swaps that inotify on the path would miss).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{build_realm, log_ready, spawn_readiness, App, ReadyCheck, StartupError};
use crate::audit::AuditSink;
use crate::config::{Config, ConfigError, RealmConfig};
use crate::error::ErrorChain;
use crate::jwks;
use crate::provision::live::{self, LiveOptions};
use crate::provision::progress;
use crate::provision::Realm;
use tracing::instrument::WithSubscriber;

/// Why a reload was refused (the configuration in force stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("the sidecar is shutting down")]
    ShuttingDown,
}

/// What a reload changed, by realm name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Realms rebuilt because their serving configuration changed.
    pub rebuilt: Vec<String>,
    /// Realms kept as they were (their access rules may have changed).
    pub kept: Vec<String>,
    /// Keys that changed but need a restart.
    pub need_restart: Vec<&'static str>,
}

/// A handle on the running configuration: the generation in force, the tasks that belong to
/// its realms, and the one-at-a-time reload.
#[derive(Debug, Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    apps: Arc<ArcSwap<App>>,
    /// The configuration in force; the lock serialises reloads.
    config: tokio::sync::Mutex<Config>,
    ready: ReadyCheck,
    /// How often a realm whose writes queue up logs its progress (taken at start: a reload
    /// does not change it).
    progress_interval: std::time::Duration,
    tasks: Mutex<Tasks>,
}

#[derive(Debug, Default)]
struct Tasks {
    live_options: Option<LiveOptions>,
    live: Vec<LiveTask>,
    /// Live tasks of realms a reload removed or rebuilt, stopping.
    retired: Vec<JoinHandle<()>>,
    /// Background readiness checks, by realm (a removed realm's is aborted).
    readiness: Vec<(Arc<Realm>, JoinHandle<()>)>,
    /// Progress reporters (quiet unless the realm's writes queue up), by realm.
    progress: Vec<(Arc<Realm>, JoinHandle<()>)>,
    stopped: bool,
}

#[derive(Debug)]
struct LiveTask {
    realm: Arc<Realm>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Reloader {
    pub(crate) fn new(app: Arc<App>, config: Config, ready: ReadyCheck) -> Reloader {
        Reloader {
            inner: Arc::new(Inner {
                apps: Arc::new(ArcSwap::new(app)),
                progress_interval: config.progress_interval,
                config: tokio::sync::Mutex::new(config),
                ready,
                tasks: Mutex::new(Tasks::default()),
            }),
        }
    }

    /// The generation in force.
    pub fn current(&self) -> Arc<App> {
        self.inner.apps.load_full()
    }

    pub(crate) fn apps(&self) -> Arc<ArcSwap<App>> {
        self.inner.apps.clone()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Tasks> {
        // A panic while holding the lock leaves nothing half-done worth refusing to read.
        self.inner.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Readiness of `realms` as the start options say (awaited: the first failure is the
    /// error).
    pub(crate) async fn make_ready(&self, realms: &[Arc<Realm>]) -> Result<(), StartupError> {
        match self.inner.ready {
            ReadyCheck::Background => {
                let handles: Vec<_> =
                    realms.iter().map(|r| (r.clone(), spawn_readiness(r.clone()))).collect();
                self.tasks().readiness.extend(handles);
            }
            ReadyCheck::Awaited => {
                for realm in realms {
                    let readiness = realm.check_ready().await.map_err(|source| StartupError::NotReady {
                        realm: realm.name().to_string(),
                        source,
                    })?;
                    log_ready(realm, &readiness);
                }
            }
            ReadyCheck::OnFirstRequest => {}
        }
        // Started once the realms are (or are being made) ready: a failed start leaves none.
        let interval = self.inner.progress_interval;
        let reporters: Vec<_> = realms
            .iter()
            .map(|r| (r.clone(), tokio::spawn(progress::run(r.clone(), interval).with_current_subscriber())))
            .collect();
        self.tasks().progress.extend(reporters);
        Ok(())
    }

    /// Follows every realm's events from now on (and those of realms added later).
    pub(crate) fn start_live(&self, options: LiveOptions) {
        let realms = self.current().realms().to_vec();
        let mut tasks = self.tasks();
        if tasks.stopped {
            return;
        }
        tasks.live_options = Some(options);
        for realm in realms {
            if !tasks.live.iter().any(|t| Arc::ptr_eq(&t.realm, &realm)) {
                tasks.live.push(spawn_live(realm, options));
            }
        }
    }

    /// Stops every live task (shutdown).
    pub(crate) fn stop_tasks(&self) {
        let mut tasks = self.tasks();
        tasks.stopped = true;
        for task in &tasks.live {
            let _ = task.stop.send(true);
        }
    }

    /// The live and readiness tasks, for the shutdown to join.
    pub(crate) fn take_tasks(&self) -> (Vec<JoinHandle<()>>, Vec<JoinHandle<()>>) {
        let mut tasks = self.tasks();
        let mut live: Vec<JoinHandle<()>> = tasks.live.drain(..).map(|t| t.task).collect();
        live.append(&mut tasks.retired);
        let tasks = &mut *tasks;
        let background = tasks.readiness.drain(..).chain(tasks.progress.drain(..)).map(|(_, task)| task);
        (live, background.collect())
    }

    /// Loads `path` (with the environment, as at start) and applies it; an invalid
    /// configuration is logged problem by problem and counted, and changes nothing.
    pub async fn reload_from(&self, path: &Path) -> Result<ReloadSummary, ReloadError> {
        match Config::load(path) {
            Ok(mut config) => {
                let previous = self.inner.config.lock().await.clone();
                for problem in jwks::resolve(&mut config, Some(&previous)).await {
                    tracing::warn!(problem = %problem, "cannot fetch JWT signing keys");
                }
                self.apply(config).await
            }
            Err(e) => {
                let e = ReloadError::Invalid(e);
                self.refused(&e);
                Err(e)
            }
        }
    }

    /// Fetches every `jwks_url` again; applies the keys when they changed (`None`: nothing
    /// changed).
    pub async fn refresh_jwks(&self) -> Option<Result<ReloadSummary, ReloadError>> {
        let current = self.inner.config.lock().await.clone();
        let mut next = current.clone();
        for problem in jwks::resolve(&mut next, Some(&current)).await {
            tracing::warn!(problem = %problem, "cannot refresh JWT signing keys");
        }
        if next == current {
            return None;
        }
        tracing::info!("JWT signing keys changed");
        Some(self.apply(next).await)
    }

    fn refused(&self, e: &ReloadError) {
        match e {
            ReloadError::Invalid(ConfigError::Invalid(problems)) => {
                for problem in problems {
                    tracing::error!(problem = %problem, "configuration reload refused: invalid configuration");
                }
            }
            other => tracing::error!(error = %ErrorChain(other), "configuration reload refused"),
        }
        tracing::warn!("the previous configuration stays in force");
        self.current().metrics().config_reloaded(false);
    }

    /// Applies a validated configuration: builds the next generation and swaps it in.
    pub async fn apply(&self, config: Config) -> Result<ReloadSummary, ReloadError> {
        let outcome = self.swap(config).await;
        match &outcome {
            Ok(summary) => {
                tracing::info!(added = ?summary.added, removed = ?summary.removed, rebuilt = ?summary.rebuilt,
                    kept = ?summary.kept, "configuration reloaded");
                for key in &summary.need_restart {
                    tracing::warn!(
                        key,
                        "changed in the configuration, but takes effect only after a restart"
                    );
                }
                self.current().metrics().config_reloaded(true);
            }
            Err(e) => self.refused(e),
        }
        outcome
    }

    async fn swap(&self, config: Config) -> Result<ReloadSummary, ReloadError> {
        let mut in_force = self.inner.config.lock().await;
        if self.tasks().stopped {
            return Err(ReloadError::ShuttingDown);
        }
        let old = self.current();
        let metrics = old.metrics_arc();
        let audit = if config.audit == in_force.audit {
            old.audit.clone()
        } else {
            Arc::new(
                AuditSink::open(&config.audit)
                    .map_err(StartupError::from)?
                    .counting_failures(metrics.audit_write_failures()),
            )
        };
        let mut summary =
            ReloadSummary { need_restart: need_restart(&in_force, &config), ..Default::default() };
        let mut realms = Vec::with_capacity(config.realms.len());
        let mut fresh = Vec::new();
        for realm_config in &config.realms {
            let kept = old.realms().iter().find(|r| {
                r.name() == realm_config.name && serves_alike(&in_force, &r.config, &config, realm_config)
            });
            match kept {
                Some(realm) => {
                    summary.kept.push(realm_config.name.clone());
                    realms.push(realm.clone());
                }
                None => {
                    let realm = Arc::new(build_realm(&config, realm_config, &metrics, &audit)?);
                    if old.realms().iter().any(|r| r.name() == realm_config.name) {
                        summary.rebuilt.push(realm_config.name.clone());
                    } else {
                        summary.added.push(realm_config.name.clone());
                    }
                    fresh.push(realm.clone());
                    realms.push(realm);
                }
            }
        }
        summary.removed = old
            .realms()
            .iter()
            .filter(|r| !config.realms.iter().any(|c| c.name == r.name()))
            .map(|r| r.name().to_string())
            .collect();
        self.make_ready(&fresh).await?;
        let next = App::assemble(realms, &config, metrics, audit, old.lifecycle());
        let live_realms = next.realms().to_vec();
        self.inner.apps.store(Arc::new(next));
        for name in &summary.removed {
            old.metrics().forget_realm(name);
        }
        self.restart_live(&live_realms);
        *in_force = config;
        Ok(summary)
    }

    /// Stops the live tasks of realms no longer served and starts those of new ones.
    fn restart_live(&self, realms: &[Arc<Realm>]) {
        let mut tasks = self.tasks();
        let tasks = &mut *tasks;
        for list in [&mut tasks.readiness, &mut tasks.progress] {
            list.retain(|(realm, task)| {
                let served = realms.iter().any(|r| Arc::ptr_eq(r, realm));
                if !served {
                    task.abort();
                }
                served && !task.is_finished()
            });
        }
        let Some(options) = tasks.live_options else {
            return;
        };
        let (keep, retire): (Vec<LiveTask>, Vec<LiveTask>) =
            tasks.live.drain(..).partition(|t| realms.iter().any(|r| Arc::ptr_eq(r, &t.realm)));
        tasks.live = keep;
        for task in retire {
            let _ = task.stop.send(true);
            tasks.retired.push(task.task);
        }
        for realm in realms {
            if !tasks.live.iter().any(|t| Arc::ptr_eq(&t.realm, realm)) {
                tasks.live.push(spawn_live(realm.clone(), options));
            }
        }
    }
}

fn spawn_live(realm: Arc<Realm>, options: LiveOptions) -> LiveTask {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(live::run(realm.clone(), stopped, options));
    LiveTask { realm, stop, task }
}

/// Whether a realm built for `old` serves `new` the same way: everything but who may reach
/// it (tokens, hosts, allow-list, JWT settings) is equal, and so are the global settings
/// its client and snapshots were built with.
fn serves_alike(old_config: &Config, old: &RealmConfig, new_config: &Config, new: &RealmConfig) -> bool {
    let serving = |r: &RealmConfig| RealmConfig {
        hosts: Vec::new(),
        bearer_token_sha256: Vec::new(),
        allow_ips: Vec::new(),
        jwt: None,
        ..r.clone()
    };
    serving(old) == serving(new)
        && old_config.snapshot_ttl == new_config.snapshot_ttl
        && old_config.request_deadline == new_config.request_deadline
        && old_config.audit == new_config.audit
}

/// The keys that changed but cannot change in a running process.
fn need_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen");
    }
    if old.max_connections != new.max_connections {
        keys.push("max_connections");
    }
    if old.shutdown_grace != new.shutdown_grace {
        keys.push("shutdown_grace_ms");
    }
    if old.log_format != new.log_format {
        keys.push("log_format");
    }
    if old.watch_interval != new.watch_interval {
        keys.push("config_watch_ms");
    }
    keys
}

/// A digest of each watched file's contents (`None`: unreadable), to notice changes.
fn stamps(config_path: &Path, files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    std::iter::once(config_path)
        .chain(files.iter().map(PathBuf::as_path))
        .map(|path| std::fs::read(path).ok().map(|bytes| Sha256::digest(&bytes).into()))
        .collect()
}

/// Reloads on SIGHUP and whenever the config file or a file it names changes (checked every
/// `interval`; zero: SIGHUP only), until `stop` turns true.
pub async fn watch(
    reloader: Reloader,
    config_path: PathBuf,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut hangup = hangup_signal();
    let mut files = reloader.inner.config.lock().await.files.clone();
    let mut seen = stamps(&config_path, &files);
    let mut tick =
        tokio::time::interval(if interval.is_zero() { Duration::from_secs(3600) } else { interval });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keys_every = jwks::refresh_interval(&*reloader.inner.config.lock().await);
    let mut keys_tick = keys_interval(keys_every);
    loop {
        let why = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = keys_tick.tick(), if keys_every.is_some() => "JWKS refresh",
            Some(()) = recv(&mut hangup) => "SIGHUP",
            _ = tick.tick(), if !interval.is_zero() => {
                let now = stamps(&config_path, &files);
                if now == seen {
                    continue;
                }
                "a configuration file changed"
            }
        };
        if why == "JWKS refresh" {
            let _ = reloader.refresh_jwks().await;
            continue;
        }
        tracing::info!(trigger = why, config = %config_path.display(), "reloading the configuration");
        let _ = reloader.reload_from(&config_path).await;
        let in_force = reloader.inner.config.lock().await;
        files = in_force.files.clone();
        if jwks::refresh_interval(&in_force) != keys_every {
            keys_every = jwks::refresh_interval(&in_force);
            keys_tick = keys_interval(keys_every);
        }
        drop(in_force);
        seen = stamps(&config_path, &files);
    }
}

/// Ticks every `every` (an hour when `None`; the tick is then disabled), first after one period.
fn keys_interval(every: Option<Duration>) -> tokio::time::Interval {
    let every = every.unwrap_or(Duration::from_secs(3600));
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; only file changes reload");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The next SIGHUP (never, without a handler).
async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}
