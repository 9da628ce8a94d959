//! Zulip's REST API as the sidecar uses it: [`ZulipClient`] (the workspace's only reqwest
//! user: pacing, retries, the per-realm write queue), its wire types and [`ZulipError`].
//!
//! The fake Zulip (crate `fake-zulip`) is a separate crate that does not depend on this one:
//! a serialisation bug cannot cancel itself out between the two.

pub mod client;
pub mod error;
pub mod pacing;
pub mod stats;
pub mod types;

pub use client::{ClientConfig, ZulipClient};
pub use error::ZulipError;
pub use stats::ClientStats;
pub use types::{ProfileData, ProfileField, Role, ServerSettings, User, UserGroup, UserUpdate};

pub use secret::Secret;
