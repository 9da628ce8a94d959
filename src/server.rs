//! The accept loop: hyper-util's auto builder (HTTP/1.1 and h2c), a connection limit, and a
//! graceful, bounded shutdown. Knows nothing of SCIM.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use arc_swap::ArcSwap;

use crate::app::App;

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    /// How long in-flight requests may run once shutdown begins.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, flips
/// `/readyz` to 503, lets in-flight requests (and writes whose client hung up) finish within
/// the grace period, and returns.
pub async fn run(
    listener: TcpListener,
    apps: Arc<ArcSwap<App>>,
    shutdown: impl Future<Output = ()>,
    limits: ServerLimits,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
        let apps = apps.clone();
        let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(crate::http::auth::PeerAddr(peer));
            // The configuration generation in force when the request arrived serves it to
            // its end, whatever a reload swaps in meanwhile.
            let app = apps.load_full();
            async move { Ok::<_, Infallible>(app.handle(request).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    let app = apps.load_full();
    app.set_draining();
    tracing::info!(
        grace_ms = limits.shutdown_grace.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    let drained = async {
        graceful.shutdown().await;
        // Writes whose IdP hung up run on without a connection: let them finish too.
        app.writes_finished().await;
    };
    match tokio::time::timeout(limits.shutdown_grace, drained).await {
        Ok(()) => tracing::info!("all connections and writes drained"),
        Err(_) => tracing::warn!("shutdown grace period ran out; closing remaining connections"),
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
