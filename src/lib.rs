//! scim-sidecar: a SCIM 2.0 server (RFC 7643/7644) in front of Zulip's REST API.
//!
//! # Request flow
//!
//! ```text
//! server (accept loop, connection slots and deadlines, optional TLS, graceful shutdown)
//!   └─ http (route parsed first, bearer auth → realm, rate limits, body limit and deadline,
//!            Error → SCIM error body)
//!        └─ provision::Realm (SCIM operation ⇄ Zulip calls; the only module knowing both)
//!             ├─ scim       crate: pure protocol (schema, filter, PATCH, projection, ETags)
//!             ├─ directory  per-realm snapshot of users and groups, indexes, single-flight
//!             └─ zulip_client crate: ZulipClient, the only reqwest user (pacing, retries,
//!                           max_in_flight per realm; writes ordered per entity by provision)
//!
//! provision::live (one task per realm) ── GET /events long-poll ──> directory (applied in place)
//! ```
//!
//! Reads are answered from the realm snapshot (no upstream call once warm). Writes go to
//! Zulip first and are then recorded in the snapshot; Zulip's events keep the snapshot current
//! with changes made elsewhere, and a TTL reload covers the time events are unavailable.
//! ARCHITECTURE.md at the repository root describes the crates and their rules.
//!
//! # Modules
//! - [`app`]: [`app::App`] and the one start-up path, [`app::Sidecar::start`].
//! - [`audit`]: the audit trail (one JSON line per change applied to Zulip).
//! - [`config`]: figment layering and validation into [`config::Config`].
//! - [`demo`]: the `demo` config (also the test harness's) and, with feature `demo`, the run.
//! - [`error`]: [`error::Error`], one request's failure in SCIM terms; [`error::ErrorChain`].
//! - [`jwks`]: JWT signing keys fetched from a `jwks_url`.
//! - [`online`]: `check-config --online`, read-only checks of each realm's Zulip.
//! - [`reload`]: SIGHUP / file-change reloads, swapped in atomically.
//! - [`http`], [`provision`], [`directory`], [`server`], [`telemetry`].

pub mod app;
pub mod audit;
pub mod config;
pub mod demo;
pub mod directory;
pub mod error;
pub mod http;
pub mod jwks;
pub mod online;
pub mod provision;
pub mod reload;
pub mod server;
pub mod telemetry;
