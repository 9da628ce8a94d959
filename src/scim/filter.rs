//! RFC 7644 §3.4.2.2 filters: parsed once into an AST, evaluated on SCIM JSON resources.
//!
//! CONTRACT (owned by the filter/PATCH helper; keep these names):
//! - `Filter::parse(&str) -> Result<Filter, ScimError>` (`InvalidFilter` on any problem,
//!   with length and depth caps `MAX_FILTER_LEN`, `MAX_FILTER_DEPTH`).
//! - `Filter::validate(&self, &ResourceTypeDef) -> Result<(), ScimError>`: every attribute
//!   known to the schema and every operator applicable to its type.
//! - `Filter::matches(&self, &serde_json::Value, &ResourceTypeDef) -> bool`.
//! - `Filter::eq_constraint(&self, attr: &str) -> Option<&str>`: the string a match must have
//!   `attr eq` (a top-level `eq` or a conjunct of top-level `and`s), for index lookups.

use crate::scim::schema::ResourceTypeDef;
use crate::scim::ScimError;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Stub,
}
impl Filter {
    pub fn parse(_input: &str) -> Result<Filter, ScimError> {
        unimplemented!()
    }
    pub fn validate(&self, _rt: &ResourceTypeDef) -> Result<(), ScimError> {
        unimplemented!()
    }
    pub fn matches(&self, _resource: &serde_json::Value, _rt: &ResourceTypeDef) -> bool {
        unimplemented!()
    }
    pub fn eq_constraint(&self, _attr: &str) -> Option<&str> {
        unimplemented!()
    }
}
