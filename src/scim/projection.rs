//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) with the `returned` rules,
//! and `sortBy` / `sortOrder`.
//!
//! CONTRACT (owned by the discovery/projection helper; keep these names):
//! - `Projection::parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Projection, ScimError>`
//! - `Projection::apply(&self, resource: &serde_json::Value, rt: &ResourceTypeDef) -> serde_json::Value`
//! - `Projection::requests(&self, top_level_attr: &str, rt: &ResourceTypeDef) -> bool` (false when the
//!   response will not contain it: lets provision skip upstream work such as group members)

use crate::scim::schema::ResourceTypeDef;
use crate::scim::ScimError;

#[derive(Debug, Clone, Default)]
pub struct Projection {}
impl Projection {
    pub fn parse(_a: Option<&str>, _e: Option<&str>) -> Result<Projection, ScimError> {
        unimplemented!()
    }
    pub fn apply(&self, _r: &serde_json::Value, _rt: &ResourceTypeDef) -> serde_json::Value {
        unimplemented!()
    }
    pub fn requests(&self, _a: &str, _rt: &ResourceTypeDef) -> bool {
        unimplemented!()
    }
    pub fn is_identity(&self) -> bool {
        unimplemented!()
    }
}
#[derive(Debug, Clone)]
pub struct SortSpec {}
impl SortSpec {
    pub fn parse(
        _b: Option<&str>,
        _o: Option<&str>,
        _rt: &ResourceTypeDef,
    ) -> Result<Option<SortSpec>, ScimError> {
        unimplemented!()
    }
    pub fn compare(&self, _a: &serde_json::Value, _b: &serde_json::Value) -> std::cmp::Ordering {
        unimplemented!()
    }
}
