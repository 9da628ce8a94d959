//! Attribute paths: `userName`, `name.givenName`, `urn:…:User:userName`,
//! `emails[type eq "work"].value`, `members[value eq "42"]` (RFC 7644 §3.5.2 PATH grammar).
//!
//! CONTRACT (owned by the filter/PATCH helper; keep these names):
//! - `AttrPath { urn: Option<String>, attr: String, sub: Option<String> }` and `AttrPath::parse(&str)`.
//! - `PatchPath { attr: AttrPath /* sub is None */, filter: Option<Filter>, sub: Option<String> }`
//!   and `PatchPath::parse(&str)`; errors are `ScimError` with `ScimType::InvalidPath`.
