//! Entry points used by the binary: `serve` (a real config) and `demo` (the same server in
//! front of the in-process FakeZulip). One code path; only the upstream differs. The test
//! harness uses [`build_app`] and [`crate::server::run`] exactly as these do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    Config, GroupDelete, LogFormat, RealmConfig, UnknownMembers, UpstreamConfig, UserDelete,
};
use crate::http::auth::token_digest;
use crate::http::App;
use crate::provision::live::{self, LiveOptions};
use crate::provision::Realm;
use crate::secret::Secret;
use crate::server::{self, ServerLimits};
use crate::telemetry::Metrics;
use crate::zulip::fake::FakeZulip;
use crate::zulip::{ClientConfig, ZulipClient};

/// Why the process could not start or run (printed by `main`).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Options of `scim-sidecar demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub token: String,
}

/// Builds the realms (one Zulip client each) and the HTTP application from a config.
pub fn build_app(config: &Config) -> Result<Arc<App>, StartupError> {
    let metrics = Arc::new(Metrics::new());
    let mut realms = Vec::with_capacity(config.realms.len());
    for realm in &config.realms {
        let host = realm_host_header(realm);
        let client = ZulipClient::new(ClientConfig {
            base_url: realm.upstream.url.clone(),
            host,
            email: realm.upstream.email.clone(),
            api_key: realm.upstream.api_key.clone(),
            timeout: realm.upstream.timeout,
            policy: crate::zulip::client::UpstreamPolicy {
                deadline: config.request_deadline,
                ..crate::zulip::client::UpstreamPolicy::default()
            },
        })
        .map_err(|e| {
            StartupError::Other(format!("realm {}: cannot build the Zulip client: {e}", realm.name))
        })?
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
        realms.push(Arc::new(Realm::new(realm.clone(), client, config.snapshot_ttl)));
    }
    Ok(Arc::new(App::new(realms, config.max_body_bytes, metrics)))
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

/// Checks every realm's upstream in the background until it answers; `/readyz` reports
/// ready once all have.
pub fn spawn_readiness(app: &Arc<App>) {
    for realm in app.realms() {
        let realm = realm.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(250);
            loop {
                match realm.check_ready().await {
                    Ok(r) => {
                        tracing::info!(realm = %realm.name(), zulip_version = %r.zulip_version, feature_level = r.feature_level,
                            service_account = r.service_account_id, role = r.service_account_role.scim_name(), external_id_field = ?r.external_id_field, "realm ready");
                        if r.service_account_role != crate::zulip::Role::Owner {
                            tracing::warn!(realm = %realm.name(), "the service account is not an organization owner: owner changes, deactivating owners and SCIM groups will be refused by Zulip");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(realm = %realm.name(), error = %e, retry_in_ms = wait.as_millis() as u64, "realm not ready");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
}

/// Starts one live task per realm (see [`crate::provision::live`]): each follows its realm's
/// Zulip events so that changes made in Zulip reach the snapshots at once. They stop when
/// `shutdown` turns true (or its sender is dropped); join the handles to wait for them.
pub fn spawn_live(app: &Arc<App>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    app.realms()
        .iter()
        .map(|realm| tokio::spawn(live::run(realm.clone(), shutdown.clone(), LiveOptions::default())))
        .collect()
}

/// Stops the live tasks and waits for them (they delete their queues) for a short while.
async fn stop_live(stop: watch::Sender<bool>, tasks: Vec<JoinHandle<()>>) {
    let _ = stop.send(true);
    let joined = tokio::time::timeout(Duration::from_secs(2), futures_util::future::join_all(tasks)).await;
    if joined.is_err() {
        tracing::warn!("live update tasks did not stop within 2 s");
    }
}

/// Runs the sidecar with `config` until SIGTERM/SIGINT, then drains within the grace period.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let app = build_app(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
    tracing::info!(listen = %config.listen, realms = config.realms.len(), "scim-sidecar listening");
    spawn_readiness(&app);
    let (stop, stopped) = watch::channel(false);
    let live_tasks = spawn_live(&app, stopped);
    server::run(listener, app, server::shutdown_signal(), limits(&config)).await;
    stop_live(stop, live_tasks).await;
    Ok(())
}

fn limits(config: &Config) -> ServerLimits {
    ServerLimits { max_connections: config.max_connections, shutdown_grace: config.shutdown_grace }
}

/// The demo realm's service account (as seeded by `FakeZulip::with_demo_data`).
pub const DEMO_SERVICE_EMAIL: &str = "scim-bot@zulip.example.com";
pub const DEMO_SERVICE_API_KEY: &str = "demoapikeydemoapikeydemoapikey12";

/// The custom profile field in which the demo realm stores `externalId` (created by the
/// sidecar at readiness).
pub const DEMO_EXTERNAL_ID_FIELD: &str = "SCIM external ID";

/// The config `demo` runs with: one realm `demo` whose public URL is the sidecar itself and
/// whose upstream is the fake.
pub fn demo_config(listen: SocketAddr, upstream: url::Url, token: &str) -> Result<Config, StartupError> {
    let url = url::Url::parse(&format!("http://{listen}"))
        .map_err(|e| StartupError::Other(format!("bad listen address {listen}: {e}")))?;
    Ok(Config {
        listen,
        log_format: LogFormat::Pretty,
        shutdown_grace: Duration::from_secs(5),
        max_connections: 1024,
        max_body_bytes: 1024 * 1024,
        request_deadline: Duration::from_secs(25),
        snapshot_ttl: Duration::from_secs(60),
        realms: vec![RealmConfig {
            name: "demo".into(),
            url,
            hosts: Vec::new(),
            bearer_token_sha256: vec![token_digest(token)],
            scim_client_name: "demo".into(),
            name_formatted_included: false,
            create_guests_without_streams: false,
            user_delete: UserDelete::Deactivate,
            reactivate_on_create: true,
            group_delete: GroupDelete::Deactivate,
            unknown_members: UnknownMembers::Reject,
            external_id_field: None,
            upstream: UpstreamConfig {
                url: upstream,
                email: DEMO_SERVICE_EMAIL.into(),
                api_key: Secret::new(DEMO_SERVICE_API_KEY.into()),
                timeout: Duration::from_secs(10),
                allow_insecure_upstream: true,
            },
        }],
    })
}

/// Starts a seeded FakeZulip and the sidecar in front of it; prints the base URL, token and
/// curl examples; runs until SIGTERM/SIGINT.
pub async fn demo(options: DemoOptions) -> Result<(), StartupError> {
    let fake = FakeZulip::builder()
        .with_demo_data()
        .start()
        .await
        .map_err(|e| StartupError::Other(format!("cannot start the fake Zulip: {e}")))?;
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| StartupError::Listen { addr: options.listen, source })?;
    let listen =
        listener.local_addr().map_err(|source| StartupError::Listen { addr: options.listen, source })?;
    let mut config = demo_config(listen, fake.base_url(), &options.token)?;
    // The demo shows externalId storage, which real realms opt into (the field is visible to
    // every member); the integration harness keeps the default (not stored).
    for realm in &mut config.realms {
        realm.external_id_field = Some(DEMO_EXTERNAL_ID_FIELD.into());
    }
    let app = build_app(&config)?;
    spawn_readiness(&app);
    let (stop, stopped) = watch::channel(false);
    let live_tasks = spawn_live(&app, stopped);
    let base = format!("http://{listen}/scim/v2");
    let token = &options.token;
    println!(
        "scim-sidecar demo: the real server in front of an in-process fake Zulip ({upstream})

  SCIM base URL : {base}
  Bearer token  : {token}
  externalId    : stored in Zulip's custom profile field \"{DEMO_EXTERNAL_ID_FIELD}\"

Try:
  curl -s -H 'Authorization: Bearer {token}' '{base}/Users?filter=userName%20eq%20%22hamlet@zulip.example.com%22'
  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' -X POST '{base}/Users' \\
       -d '{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"kim@zulip.example.com\",\"externalId\":\"00u1kim\",\"name\":{{\"givenName\":\"Kim\",\"familyName\":\"Lee\"}},\"active\":true}}'
  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' -X PATCH '{base}/Users/<id>' \\
       -d '{{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{{\"op\":\"replace\",\"value\":{{\"active\":false}}}}]}}'

Press Ctrl-C to stop.",
        upstream = fake.base_url()
    );
    server::run(listener, app, server::shutdown_signal(), limits(&config)).await;
    stop_live(stop, live_tasks).await;
    fake.shutdown().await;
    Ok(())
}
