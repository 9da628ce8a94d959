//! The only module that knows both SCIM and Zulip: a [`Realm`] turns each SCIM operation into
//! Zulip REST calls, serving reads from the realm snapshot in [`crate::idmap`].

pub mod groups;
pub mod live;
pub mod mapping;
pub mod realm;
pub mod users;

pub use realm::{NotReady, Realm};

use serde_json::Value;

use crate::error::Error;
use crate::scim::filter::Filter;
use crate::scim::projection::SortSpec;
use crate::scim::ScimType;
use crate::zulip::ZulipError;

/// A list request, parsed.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub sort: Option<SortSpec>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub total_results: usize,
    pub start_index: usize,
    pub resources: Vec<Value>,
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
