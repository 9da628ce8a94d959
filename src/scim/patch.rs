//! RFC 7644 §3.5.2 PATCH: operations parsed leniently (IdP dialects) and applied to a
//! resource in memory, validated against the schema.
//!
//! CONTRACT (owned by the filter/PATCH helper; keep these names):
//! - `PatchRequest::parse(&serde_json::Value) -> Result<PatchRequest, ScimError>`
//! - `PatchRequest::apply(&self, resource: &mut serde_json::Value, rt: &ResourceTypeDef) -> Result<(), ScimError>`

use crate::scim::schema::ResourceTypeDef;
use crate::scim::ScimError;

#[derive(Debug, Clone)]
pub struct PatchRequest {}
impl PatchRequest {
    pub fn parse(_body: &serde_json::Value) -> Result<PatchRequest, ScimError> {
        unimplemented!()
    }
    pub fn apply(
        &self,
        _r: &mut serde_json::Value,
        _rt: &ResourceTypeDef,
    ) -> Result<(), ScimError> {
        unimplemented!()
    }
}
