//! scim-sidecar: a SCIM 2.0 server (RFC 7643/7644) in front of Zulip's REST API.
//!
//! # Request flow
//!
//! ```text
//! server (accept loop, graceful shutdown, connection limit)
//!   └─ http (route parsed first, bearer auth → realm, body limit, Error → SCIM error body)
//!        └─ provision::Realm (SCIM operation ⇄ Zulip calls; the only module knowing both)
//!             ├─ scim   (pure protocol: schema, filter, PATCH, projection, discovery)
//!             ├─ idmap  (per-realm snapshot of users and groups, indexes, single-flight)
//!             └─ zulip  (ZulipClient, the only reqwest user; FakeZulip for tests/demo)
//! ```
//!
//! # Modules
//! - [`config`]: figment layering and validation into [`config::Config`].
//! - [`error`]: [`error::Error`], one request's failure in SCIM terms.
//! - [`scim`], [`zulip`], [`provision`], [`idmap`], [`http`], [`server`], [`telemetry`].
//! - [`secret`]: `Secret<T>`, which never prints its value.

pub mod app;
pub mod config;
pub mod error;
pub mod http;
pub mod idmap;
pub mod provision;
pub mod scim;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod zulip;
