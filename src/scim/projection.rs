//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) with the `returned` rules,
//! and `sortBy` / `sortOrder`.
//!
//! CONTRACT (owned by the discovery/projection helper; keep these names):
//! - `Projection::parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Projection, ScimError>`
//! - `Projection::apply(&self, resource: &serde_json::Value, rt: &ResourceTypeDef) -> serde_json::Value`
//! - `Projection::requests(&self, top_level_attr: &str, rt: &ResourceTypeDef) -> bool` (false when the
//!   response will not contain it: lets provision skip upstream work such as group members)
