//! Protocol-level errors: what a SCIM parser or evaluator objects to, with the RFC 7644
//! §3.12 `scimType` that names it.

use std::fmt;

/// RFC 7644 §3.12 `scimType` values (400 unless noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    /// 409
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCIM request the protocol layer refuses: always a 400 with `scim_type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scim_type}: {detail}")]
pub struct ScimError {
    pub scim_type: ScimType,
    pub detail: String,
}

impl ScimError {
    pub fn new(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError { scim_type, detail: detail.into() }
    }
}
