//! Zulip's REST API: [`ZulipClient`] (the crate's only reqwest user), its wire types and
//! [`ZulipError`]; [`fake::FakeZulip`] is an in-memory Zulip REST server for tests and `demo`.

pub mod client;
pub mod error;
pub mod fake;
pub mod pacing;
pub mod types;

pub use client::{ClientConfig, ZulipClient};
pub use error::ZulipError;
pub use types::{ProfileData, ProfileField, Role, ServerSettings, User, UserGroup, UserUpdate};
