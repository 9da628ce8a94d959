//! The accept loop: hyper-util's auto builder (HTTP/1.1 and h2c, or h2 over TLS), connection
//! slots that a flood cannot starve ([`limits`]), a deadline on every phase of a connection,
//! optional TLS termination ([`tls`]), and a graceful, bounded shutdown. Knows nothing of
//! SCIM.

pub mod limits;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use tracing::instrument::WithSubscriber;

use arc_swap::ArcSwap;

use crate::app::App;
use crate::config::{ServerConfig, MIN_HEADER_BYTES};
use crate::error::ErrorChain;

use self::limits::{ConnInfo, Next, Slot, Slots};
use self::tls::Tls;

/// Limits of the accept loop and its connections.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// How long in-flight requests may run once shutdown begins.
    pub shutdown_grace: Duration,
    /// Timeouts and HTTP/2 bounds.
    pub server: ServerConfig,
}

/// What every connection task shares.
struct Shared {
    /// The configuration generation in force (swapped by a reload): each request is served
    /// to its end by the one in force when it arrived.
    apps: Arc<ArcSwap<App>>,
    builder: auto::Builder<TokioExecutor>,
    limits: ServerLimits,
    tls: Option<Arc<Tls>>,
    stopping: watch::Receiver<bool>,
    /// Connection tasks still running (shutdown waits for them).
    tasks: watch::Sender<usize>,
    /// 503 answers being written (see [`refuse`]).
    refusing: AtomicUsize,
}

/// 503 answers written at once at most; more newcomers are closed without one.
const MAX_REFUSING: usize = 256;

/// Counts one connection task until dropped.
struct Task(Arc<Shared>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.tasks.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves; then
/// stops accepting, flips `/readyz` to 503, lets in-flight requests (and writes whose client
/// hung up) finish within the grace period, and returns.
///
/// The loop never waits for a connection slot: every connection is accepted and given one
/// at once, evicting an idle anonymous connection when all are taken (see [`limits`]).
pub async fn run(
    listener: TcpListener,
    apps: Arc<ArcSwap<App>>,
    shutdown: impl Future<Output = ()>,
    limits: ServerLimits,
    tls: Option<Arc<Tls>>,
) {
    let slots = Slots::new(limits.max_connections, apps.load().metrics.clone());
    let (stop, stopping) = watch::channel(false);
    let shared = Arc::new(Shared {
        builder: builder(&limits.server),
        apps: apps.clone(),
        limits: limits.clone(),
        tls,
        stopping,
        tasks: watch::channel(0).0,
        refusing: AtomicUsize::new(0),
    });
    accept_until(shutdown, &listener, &slots, &shared).await;
    drain(&apps.load_full(), &shared, &stop, limits.shutdown_grace).await;
}

/// Accepts connections until `shutdown` resolves: each gets a slot and a task of its own, or
/// is turned away when every slot is taken.
async fn accept_until(
    shutdown: impl Future<Output = ()>,
    listener: &TcpListener,
    slots: &Arc<Slots>,
    shared: &Arc<Shared>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match slots.admit(peer) {
            Ok(slot) => {
                shared.tasks.send_modify(|n| *n += 1);
                tokio::spawn(connection(stream, slot, Task(shared.clone())).with_current_subscriber());
            }
            Err(limits::Full) => turn_away(stream, peer, shared),
        }
    }
}

/// A newcomer that found every slot taken: answered 503 by a task of its own (see
/// [`refuse`]), or closed at once over TLS or when [`MAX_REFUSING`] answers are being written.
fn turn_away(stream: TcpStream, peer: std::net::SocketAddr, shared: &Arc<Shared>) {
    tracing::debug!(%peer, "every connection slot is authenticated or busy: 503");
    // Each refusal holds its socket for at most a second; past the cap, close at once.
    let refusing = shared.refusing.fetch_add(1, Ordering::AcqRel);
    if shared.tls.is_none() && refusing < MAX_REFUSING {
        let shared = shared.clone();
        tokio::spawn(
            async move {
                refuse(stream).await;
                shared.refusing.fetch_sub(1, Ordering::AcqRel);
            }
            .with_current_subscriber(),
        );
    } else {
        shared.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Shuts down: flips `/readyz` to 503, tells every connection to stop, and waits up to
/// `grace` for the connection tasks and for writes whose client hung up.
async fn drain(app: &App, shared: &Shared, stop: &watch::Sender<bool>, grace: Duration) {
    app.set_draining();
    let _ = stop.send(true);
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: draining in-flight requests");
    let drained = async {
        let mut tasks = shared.tasks.subscribe();
        let _ = tasks.wait_for(|n| *n == 0).await;
        // Writes whose IdP hung up run on without a connection: let them finish too.
        app.writes_finished().await;
    };
    match tokio::time::timeout(grace, drained).await {
        Ok(()) => tracing::info!("all connections and writes drained"),
        Err(_) => tracing::warn!("shutdown grace period ran out; closing remaining connections"),
    }
}

/// hyper's HTTP/1.1 and HTTP/2 settings from the config.
fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_timeout)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256));
    builder
}

/// One connection: the TLS handshake if any, then HTTP until it ends, times out, is evicted
/// or the server stops.
async fn connection(stream: TcpStream, slot: Slot, task: Task) {
    let _ = stream.set_nodelay(true);
    let shared = task.0.clone();
    let Some(tls) = &shared.tls else {
        return serve(stream, slot, &shared).await;
    };
    tls.reload_if_changed();
    let handshake =
        tokio::time::timeout(shared.limits.server.header_read_timeout, tls.acceptor().accept(stream));
    let evicted = async {
        while !slot.state().is_evicted() {
            slot.state().changed().await;
        }
    };
    tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => serve(stream, slot, &shared).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => shared.apps.load().metrics.connection_closed("header_timeout"),
        },
        () = evicted => {}
    }
}

/// Serves HTTP on `io`, closing it when its slot's deadline passes (see [`limits`]).
async fn serve<I>(io: I, slot: Slot, shared: &Shared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = slot.info();
    let apps = shared.apps.clone();
    // The configuration generation in force when the request arrived serves it to its end,
    // whatever a reload swaps in meanwhile.
    let service = service_fn(move |request| serve_request(apps.load_full(), info.clone(), request));
    let conn = shared.builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let (header_timeout, idle_timeout) =
        (shared.limits.server.header_read_timeout, shared.limits.server.idle_timeout);
    let mut stopping = shared.stopping.clone();
    // Once shut down gracefully (a response asked to close, or the server stops), the
    // connection has `header_timeout` more to finish; then it is dropped.
    let mut shut_down_at: Option<tokio::time::Instant> = None;
    loop {
        let deadline = match (shut_down_at, slot.state().next(header_timeout, idle_timeout)) {
            (_, Next::Evicted) => return,
            (Some(at), _) => at.checked_add(header_timeout),
            (None, Next::Shutdown) => {
                shut_down_at = Some(tokio::time::Instant::now());
                conn.as_mut().graceful_shutdown();
                continue;
            }
            (None, Next::CloseAt(at)) => Some(at),
            (None, Next::Wait) => None,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    log_connection_error(&shared.apps.load(), slot.info().peer(), e.as_ref());
                }
                return;
            }
            () = slot.state().changed() => {}
            () = sleep_until(deadline) => {
                if let Some(reason) = expired(&slot, shut_down_at, (header_timeout, idle_timeout)) {
                    shared.apps.load().metrics.connection_closed(reason);
                    return;
                }
            }
            _ = stopping.wait_for(|stop| *stop), if shut_down_at.is_none() => {
                shut_down_at = Some(tokio::time::Instant::now());
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request on a connection, marked in flight while it runs (no deadline or eviction
/// closes a connection with a request in flight), with the connection's peer and state as
/// request extensions.
async fn serve_request(
    app: Arc<App>,
    info: ConnInfo,
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<crate::http::Body>, Infallible> {
    let _busy = info.state().begin();
    request.extensions_mut().insert(crate::http::auth::PeerAddr(info.peer()));
    request.extensions_mut().insert(info);
    Ok(app.handle(request).await)
}

/// Why a connection whose deadline came closes (`header_timeout` or `idle_timeout`), if its
/// deadline has indeed passed (its state may have moved it since): once shut down, the
/// deadline is final.
fn expired(
    slot: &Slot,
    shut_down_at: Option<tokio::time::Instant>,
    (header_timeout, idle_timeout): (Duration, Duration),
) -> Option<&'static str> {
    let now = tokio::time::Instant::now();
    let expired = match (shut_down_at, slot.state().next(header_timeout, idle_timeout)) {
        (Some(_), _) => true,
        (None, Next::CloseAt(at)) => at <= now,
        _ => false,
    };
    expired.then(|| if slot.state().is_authenticated() { "idle_timeout" } else { "header_timeout" })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Answers a connection that found every slot taken: a minimal HTTP/1.1 503 with
/// `Retry-After` and a SCIM error body, written at once (bounded), then closed.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"503","detail":"every connection slot is in use; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/scim+json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Write, half-close, then read what the client sent (bounded) so that closing does not
    // reset the connection before the client has read the answer.
    let answer = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// A connection that ended with an error. A request hyper could not parse (a request line
/// with a raw `<` or a space in its path, a malformed header) never reaches [`App::handle`]:
/// hyper answers it `400 Bad Request` itself, without a body, and closes the connection;
/// hyper has no hook for a body of ours. This line says what happened, at `info`, once per
/// 10 s for identical errors. Other connection errors (resets, timeouts) stay at `debug`.
fn log_connection_error(app: &App, peer: std::net::SocketAddr, e: &(dyn std::error::Error + 'static)) {
    let parse_error =
        e.downcast_ref::<hyper::Error>().is_some_and(|e| e.is_parse() || e.is_parse_too_large());
    if !parse_error {
        tracing::debug!(%peer, error = %ErrorChain(e), "connection ended with an error");
        return;
    }
    let error = ErrorChain(e).to_string();
    if let Some(held_back) =
        app.repeated_lines.admit(("unparsable request", &error), std::time::Instant::now())
    {
        tracing::info!(%peer, error, held_back = (held_back > 0).then_some(held_back),
            "refused a request the HTTP parser could not read (answered 400 without a body): percent-encode the path, e.g. a placeholder such as <id>");
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
