//! `scim-sidecar demo`: the real server in front of the fake Zulip, and the config it runs
//! with. [`demo_config`] is also the integration harness's config, so tests run exactly what
//! the demo runs; only [`run`] needs the fake (feature `demo`, on by default).

use std::net::SocketAddr;
use std::time::Duration;

use crate::app::StartupError;
use crate::audit::AuditTargetConfig;
use crate::config::token_digest;
use crate::config::{
    Config, GroupDelete, LogFormat, RealmConfig, ServerConfig, UnknownMembers, UpstreamConfig, UserDelete,
};
use secret::Secret;

/// The demo realm's service account (as seeded by `FakeZulip::with_demo_data`).
pub const DEMO_SERVICE_EMAIL: &str = "scim-bot@zulip.example.com";
pub const DEMO_SERVICE_API_KEY: &str = "demoapikeydemoapikeydemoapikey12";

/// The custom profile field in which the demo realm stores `externalId` (created by the
/// sidecar at readiness).
pub const DEMO_EXTERNAL_ID_FIELD: &str = "SCIM external ID";

/// Options of `scim-sidecar demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub token: String,
}

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
        server: ServerConfig::default(),
        log_probes: false,
        progress_interval: Duration::from_secs(10),
        audit: AuditTargetConfig::Log,
        trusted_proxy_hops: 0,
        watch_interval: Duration::ZERO,
        files: Vec::new(),
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
            allow_ips: Vec::new(),
            jwt: None,
            ignore_unmapped_attributes: false,
            custom_profile_field_map: Vec::new(),
            create_missing_fields: false,
            upstream: UpstreamConfig {
                url: upstream,
                email: DEMO_SERVICE_EMAIL.into(),
                api_key: Secret::new(DEMO_SERVICE_API_KEY.into()),
                timeout: Duration::from_secs(10),
                allow_insecure_upstream: true,
                max_in_flight: 8,
            },
        }],
    })
}

/// Starts a seeded FakeZulip and the sidecar in front of it; prints the base URL, token and
/// curl examples; runs until SIGTERM/SIGINT.
#[cfg(feature = "demo")]
pub async fn run(options: DemoOptions) -> Result<(), StartupError> {
    use crate::app::{Sidecar, StartOptions};
    use tokio::net::TcpListener;

    let fake = fake_zulip::FakeZulip::builder()
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
    let running = Sidecar::start(&config, listener, StartOptions::default()).await?;
    print_banner(listen, &fake.base_url(), &options.token);
    running.until(crate::server::shutdown_signal()).await;
    fake.shutdown().await;
    Ok(())
}

#[cfg(feature = "demo")]
fn print_banner(listen: SocketAddr, upstream: &url::Url, token: &str) {
    let base = format!("http://{listen}/scim/v2");
    println!(
        "scim-sidecar demo: the real server in front of an in-process fake Zulip ({upstream})

  SCIM base URL : {base}
  Bearer token  : {token}
  externalId    : stored in Zulip's custom profile field \"{DEMO_EXTERNAL_ID_FIELD}\"

Try:
  curl -s -H 'Authorization: Bearer {token}' '{base}/Users?filter=userName%20eq%20%22hamlet@zulip.example.com%22'
  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' -X POST '{base}/Users' \\
       -d '{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"kim@zulip.example.com\",\"externalId\":\"00u1kim\",\"name\":{{\"givenName\":\"Kim\",\"familyName\":\"Lee\"}},\"active\":true}}'
  ID=$(curl -s -H 'Authorization: Bearer {token}' '{base}/Users?filter=userName%20eq%20%22kim@zulip.example.com%22' | grep -o '\"id\":\"[0-9]*\"' | head -1 | tr -dc 0-9)
  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/scim+json' -X PATCH \"{base}/Users/$ID\" \\
       -d '{{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{{\"op\":\"replace\",\"value\":{{\"active\":false}}}}]}}'

Press Ctrl-C to stop."
    );
}
