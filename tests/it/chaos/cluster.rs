//! One fake Zulip and 1–3 sidecar replicas in front of it, each started through the one
//! start-up path (`Sidecar::start`) with its live task, as `serve` runs them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use fake_zulip::{FakeZulip, FakeZulipBuilder};
use scim_sidecar::app::{ReadyCheck, Running, Sidecar, StartOptions};
use scim_sidecar::config::Config;
use scim_sidecar::demo::demo_config;
use scim_sidecar::provision::live::LiveOptions;

use super::model::Dialect;
use crate::support::{fake, TOKEN};

/// The label of the custom profile field holding `externalId`.
pub const EXTERNAL_ID_FIELD: &str = "externalId";
/// `request_deadline_ms` of every replica.
pub const DEADLINE: Duration = Duration::from_millis(1500);
/// The upstream per-request timeout of every replica.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(250);
/// The fake's heartbeat; with [`live_options`]'s poll timeout it bounds how long a silent
/// event queue goes unnoticed.
pub const HEARTBEAT: Duration = Duration::from_millis(400);

pub fn live_options() -> LiveOptions {
    LiveOptions {
        poll_timeout: Duration::from_millis(1200),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        batch_window: Duration::from_millis(5),
    }
}

pub struct Cluster {
    pub fake: FakeZulip,
    pub dialect: Dialect,
    replicas: Vec<Option<Running>>,
    addrs: Vec<SocketAddr>,
    /// The id of the `externalId` profile field, when the realm stores `externalId` (the
    /// search's default; `CHAOS_EXTERNAL_ID=0` runs without).
    pub field_id: Option<u64>,
}

fn builder() -> FakeZulipBuilder {
    fake().with_profile_field(EXTERNAL_ID_FIELD, 1).event_heartbeat(HEARTBEAT)
}

impl Cluster {
    pub async fn start(dialect: Dialect, replicas: usize, external_id: bool) -> Cluster {
        let fake = builder().start().await.expect("fake zulip starts");
        let field_id = fake
            .profile_fields()
            .iter()
            .find(|f| f.name == EXTERNAL_ID_FIELD)
            .map(|f| f.id)
            .filter(|_| external_id);
        let mut cluster = Cluster { fake, dialect, replicas: Vec::new(), addrs: Vec::new(), field_id };
        for _ in 0..replicas {
            let (running, addr) = cluster.start_replica().await;
            cluster.replicas.push(Some(running));
            cluster.addrs.push(addr);
        }
        cluster
    }

    fn config(&self, listen: SocketAddr) -> Config {
        let mut config = demo_config(listen, self.fake.base_url(), TOKEN).expect("demo config");
        config.max_connections = 64;
        config.request_deadline = DEADLINE;
        config.shutdown_grace = Duration::from_secs(3);
        let realm = &mut config.realms[0];
        realm.upstream.timeout = UPSTREAM_TIMEOUT;
        realm.name_formatted_included = self.dialect == Dialect::Entra;
        realm.external_id_field = self.field_id.map(|_| EXTERNAL_ID_FIELD.to_string());
        config
    }

    async fn start_replica(&self) -> (Running, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sidecar");
        let mut listener = Some(listener);
        // A process that cannot get ready (Zulip is rate-limiting the account) exits and is
        // started again, as its supervisor would.
        for attempt in 0u32.. {
            let l = match listener.take() {
                Some(l) => l,
                None => TcpListener::bind("127.0.0.1:0").await.expect("bind sidecar"),
            };
            let config = self.config(l.local_addr().expect("local addr"));
            let options = StartOptions { ready: ReadyCheck::Awaited, live: Some(live_options()) };
            match Sidecar::start(&config, l, options).await {
                Ok(running) => {
                    let addr = running.addr();
                    return (running, addr);
                }
                Err(e) if attempt < 20 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("sidecar does not start: {e:?}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// `http://ADDR/scim/v2` of replica `i` (modulo the number of replicas).
    pub fn base(&self, i: usize) -> String {
        format!("http://{}/scim/v2", self.addrs[i % self.addrs.len()])
    }

    /// Graceful shutdown of replica `i` (in-flight writes finish), then a new process.
    pub async fn restart(&mut self, i: usize) {
        let i = i % self.addrs.len();
        if let Some(running) = self.replicas[i].take() {
            running.shutdown();
            running.join().await;
        }
        let (running, addr) = self.start_replica().await;
        self.replicas[i] = Some(running);
        self.addrs[i] = addr;
    }

    pub async fn stop(mut self) {
        for running in self.replicas.iter_mut().filter_map(Option::take) {
            running.shutdown();
            running.join().await;
        }
        self.fake.clone().shutdown().await;
    }
}
