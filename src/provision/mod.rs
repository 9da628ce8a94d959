//! The only module that knows both SCIM and Zulip: a [`Realm`] turns each SCIM operation into
//! Zulip REST calls, serving reads from the realm snapshot in [`crate::directory`].

pub mod changes;
pub mod groups;
pub mod health;
pub mod live;
pub mod mapping;
pub mod ordering;
mod profile_fields;
pub mod progress;
pub mod query;
pub mod realm;
mod resources;
pub mod users;

pub use query::{ListPage, ListQuery, Query, Rendered, Resource, DEFAULT_COUNT, MAX_COUNT};
pub use realm::{NotReady, Readiness, Realm};

use crate::error::Error;
use scim::ScimType;
use zulip_client::ZulipError;

/// A SCIM id as Zulip's: a positive decimal integer, as Zulip writes it. Anything else names
/// no resource (404, as for an id that no longer exists).
pub(crate) fn parse_id(resource: &'static str, id: &str) -> Result<u64, Error> {
    match id.parse::<u64>() {
        Ok(n) if n > 0 && !id.starts_with('+') => Ok(n),
        _ => Err(Error::NotFound { resource, id: id.to_string() }),
    }
}

/// Translates a Zulip failure into the SCIM outcome. Zulip answers 400 for most refusals
/// (`code` says little: branch on it, never on the translated `msg`, which is only carried
/// into the detail so that the admin reads Zulip's own objection).
pub(crate) fn refusal(e: ZulipError) -> Error {
    if let Some(retry_after) = e.rate_limited() {
        return Error::RateLimited { retry_after };
    }
    match &e {
        ZulipError::Api { status: 400, code, msg, .. } if code == "UNAUTHORIZED_PRINCIPAL" => {
            Error::Forbidden {
                detail: format!("Zulip refused: {msg} (the sidecar's service account lacks this permission)"),
            }
        }
        ZulipError::Api { status: 400, msg, .. } => {
            Error::invalid(ScimType::InvalidValue, format!("Zulip refused the change: {msg}"))
        }
        _ => Error::upstream(e),
    }
}
