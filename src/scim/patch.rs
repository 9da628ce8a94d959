//! RFC 7644 §3.5.2 PATCH: operations parsed leniently (IdP dialects) and applied to a
//! resource in memory, validated against the schema.
//!
//! CONTRACT (owned by the filter/PATCH helper; keep these names):
//! - `PatchRequest::parse(&serde_json::Value) -> Result<PatchRequest, ScimError>`
//! - `PatchRequest::apply(&self, resource: &mut serde_json::Value, rt: &ResourceTypeDef) -> Result<(), ScimError>`
