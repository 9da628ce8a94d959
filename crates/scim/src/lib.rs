//! The SCIM 2.0 protocol, pure: no I/O, no Zulip. Resources are `serde_json::Value`s
//! shaped per RFC 7643; this module parses, evaluates and renders them.
//!
//! - [`schema`]: attribute definitions of the resource types we serve (drives case
//!   sensitivity, mutability, `returned`, discovery documents).
//! - [`path`]: attribute paths (`name.givenName`, `emails[type eq "work"].value`, URN prefixes).
//! - [`filter`]: RFC 7644 §3.4.2.2 filter grammar, parsed once to an AST, evaluated on JSON.
//! - [`patch`]: RFC 7644 §3.5.2 PATCH operations applied to a resource in memory.
//! - [`projection`]: `attributes` / `excludedAttributes`, sorting.
//! - [`catalog`]: optional User attributes (core and the enterprise extension) a deployment
//!   may store, and the User resource type that publishes a chosen set.
//! - [`discovery`]: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` documents.
//! - [`version`]: weak ETags over resource content, `If-Match` / `If-None-Match`.
//! - [`error`]: `ScimType` and the protocol-level error.

pub mod catalog;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod patch;
pub mod path;
pub mod projection;
pub mod schema;
pub mod version;

pub use error::{ScimError, ScimType};

/// `urn:ietf:params:scim:schemas:core:2.0:User`
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// `urn:ietf:params:scim:schemas:core:2.0:Group`
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// `urn:ietf:params:scim:api:messages:2.0:ListResponse`
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// `urn:ietf:params:scim:api:messages:2.0:Error`
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// `urn:ietf:params:scim:api:messages:2.0:PatchOp`
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// `urn:ietf:params:scim:api:messages:2.0:SearchRequest`
pub const SEARCH_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// `urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig`
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// `urn:ietf:params:scim:schemas:core:2.0:ResourceType`
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// `urn:ietf:params:scim:schemas:core:2.0:Schema`
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// Zulip's role attribute lives in the core User schema namespace (as Zulip's help tells
/// Okta admins to configure it); we publish it in our own extension too for discovery.
pub const ZULIP_USER_SCHEMA: &str = "urn:zulip:params:scim:schemas:extension:zulip:2.0:User";
