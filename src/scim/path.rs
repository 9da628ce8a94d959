//! Attribute paths: `userName`, `name.givenName`, `urn:…:User:userName`,
//! `emails[type eq "work"].value`, `members[value eq "42"]` (RFC 7644 §3.5.2 PATH grammar).
//!
//! CONTRACT (owned by the filter/PATCH helper; keep these names):
//! - `AttrPath { urn: Option<String>, attr: String, sub: Option<String> }` and `AttrPath::parse(&str)`.
//! - `PatchPath { attr: AttrPath /* sub is None */, filter: Option<Filter>, sub: Option<String> }`
//!   and `PatchPath::parse(&str)`; errors are `ScimError` with `ScimType::InvalidPath`.

use crate::scim::filter::Filter;
use crate::scim::ScimError;

#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}
impl AttrPath {
    pub fn parse(_s: &str) -> Result<AttrPath, ScimError> {
        unimplemented!()
    }
    pub fn is(&self, attr: &str) -> bool {
        self.sub.is_none() && self.attr.eq_ignore_ascii_case(attr)
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}
