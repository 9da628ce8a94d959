//! scim-sidecar: a SCIM 2.0 server (RFC 7643/7644) in front of Zulip's REST API.
//!
//! # Request flow
//!
//! ```text
//! server (accept loop, graceful shutdown, connection limit)
//!   └─ http (route parsed first, bearer auth → realm, body limit, Error → SCIM error body)
//!        └─ provision::Realm (SCIM operation ⇄ Zulip calls; the only module knowing both)
//!             ├─ scim   (pure protocol: schema, filter, PATCH, projection, discovery, ETags)
//!             ├─ idmap  (per-realm snapshot of users and groups, indexes, single-flight)
//!             └─ zulip  (ZulipClient, the only reqwest user: pacing, retries, per-realm write
//!                        queue; FakeZulip for tests and `demo`)
//!
//! provision::live (one task per realm) ── GET /events long-poll ──> idmap (applied in place)
//! ```
//!
//! Reads are answered from the realm snapshot (no upstream call once warm). Writes go to
//! Zulip first and are then recorded in the snapshot; Zulip's events keep the snapshot current
//! with changes made elsewhere, and a TTL reload covers the time events are unavailable.
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
