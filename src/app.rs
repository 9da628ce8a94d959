//! Entry points used by the binary: `serve` (a real config) and `demo` (the same server in
//! front of the in-process FakeZulip). One code path; only the upstream differs.

use std::net::SocketAddr;

use crate::config::Config;

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

/// Runs the sidecar with `config` until SIGTERM/SIGINT, then drains within the grace period.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let _ = config;
    Err(StartupError::Other("not yet implemented".into()))
}

/// Starts a seeded FakeZulip and the sidecar in front of it; prints the base URL, token and
/// curl examples; runs until SIGTERM/SIGINT.
pub async fn demo(options: DemoOptions) -> Result<(), StartupError> {
    let _ = options;
    Err(StartupError::Other("not yet implemented".into()))
}
