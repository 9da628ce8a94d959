//! Attribute paths: `userName`, `name.givenName`, `urn:…:User:userName`,
//! `emails[type eq "work"].value`, `members[value eq "42"]` (RFC 7644 §3.10 attribute
//! notation and the §3.5.2 PATH grammar), and their resolution against a resource type.
//!
//! [`AttrPath`] names an attribute; [`PatchPath`] a PATCH target (with an optional value
//! filter).

use std::fmt;

use serde_json::{Map, Value};

use super::filter::Filter;
use super::schema::{AttributeDef, ResourceTypeDef, SchemaDef};
use super::{ScimError, ScimType};

/// `[urn ":"] attr ["." sub]`: an attribute, optionally qualified by its schema URN and
/// narrowed to a sub-attribute. Names keep the spelling they were given; every comparison
/// is case-insensitive (RFC 7643 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix (`urn:ietf:params:scim:schemas:core:2.0:User`), if any.
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

/// A PATCH target: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
/// `attr.sub` is always `None`; the sub-attribute lives in `sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

/// `externalId` (RFC 7643 §3.1): a common attribute the schema does not publish yet. We
/// resolve it anyway (string, caseExact) so filters and PATCH paths naming it work.
pub(crate) static EXTERNAL_ID: AttributeDef = AttributeDef::string(
    "externalId",
    "An identifier for the resource as defined by the provisioning client.",
)
.case_exact();

/// An attribute path resolved against a resource type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    /// `Some` when the attribute lives in an extension schema (its own JSON object).
    pub ext: Option<&'static SchemaDef>,
    pub def: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

// === impl AttrPath ===

impl AttrPath {
    /// Parse `[urn:]attr[.sub]`. The URN itself contains dots and colons, so it ends at the
    /// last colon; attribute names are `ALPHA *(ALPHA / DIGIT / "-" / "_")` or `$ref`.
    pub fn parse(s: &str) -> Result<AttrPath, ScimError> {
        let s = s.trim();
        let (urn, rest) = split_urn(s)?;
        let (attr, sub) = match rest.split_once('.') {
            Some((attr, sub)) => (attr, Some(sub)),
            None => (rest, None),
        };
        check_name(attr, s)?;
        if let Some(sub) = sub {
            check_name(sub, s)?;
        }
        Ok(AttrPath { urn: urn.map(str::to_owned), attr: attr.to_owned(), sub: sub.map(str::to_owned) })
    }

    /// Whether this path names the core attribute `attr` itself: same name
    /// (case-insensitively), no sub-attribute, and no URN or a core (User/Group) URN.
    pub fn is(&self, attr: &str) -> bool {
        self.sub.is_none() && self.attr.eq_ignore_ascii_case(attr) && self.has_core_urn()
    }

    /// No URN, or the core User or Group schema URN.
    pub(crate) fn has_core_urn(&self) -> bool {
        self.urn.as_deref().is_none_or(|u| {
            u.eq_ignore_ascii_case(super::USER_SCHEMA) || u.eq_ignore_ascii_case(super::GROUP_SCHEMA)
        })
    }

    /// Resolve against `rt`: core, common (plus `externalId`) or extension attribute.
    pub(crate) fn resolve(&self, rt: &ResourceTypeDef) -> Option<Resolved> {
        resolve(rt, self.urn.as_deref(), &self.attr, self.sub.as_deref())
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// === impl PatchPath ===

impl PatchPath {
    /// Parse a PATCH `path`. Every problem, including one inside the `[...]` filter, is an
    /// `invalidPath` error naming the path.
    pub fn parse(s: &str) -> Result<PatchPath, ScimError> {
        let s = s.trim();
        let Some(open) = s.find('[') else {
            let mut attr = AttrPath::parse(s)?;
            let sub = attr.sub.take();
            return Ok(PatchPath { attr, filter: None, sub });
        };
        let attr = AttrPath::parse(&s[..open])?;
        if attr.sub.is_some() {
            return Err(invalid_path(s, "a value filter must follow a top-level attribute"));
        }
        let close = closing_bracket(s, open + 1)
            .ok_or_else(|| invalid_path(s, "missing ']' after the value filter"))?;
        let filter = Filter::parse_value_filter(&s[open + 1..close])
            .map_err(|e| invalid_path(s, &format!("invalid value filter: {}", e.detail)))?;
        let rest = &s[close + 1..];
        let sub = if rest.is_empty() {
            None
        } else if let Some(sub) = rest.strip_prefix('.') {
            check_name(sub, s)?;
            Some(sub.to_owned())
        } else {
            return Err(invalid_path(s, "unexpected text after ']'"));
        };
        Ok(PatchPath { attr, filter: Some(filter), sub })
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// === helpers shared by filter and patch ===

/// Resolve `[urn:]attr[.sub]` against `rt`. The core schema's URN also reaches the common
/// attributes; `externalId` resolves even though the schema does not publish it yet; an
/// extension attribute resolves without its URN when no core attribute has its name.
pub(crate) fn resolve(
    rt: &ResourceTypeDef,
    urn: Option<&str>,
    attr: &str,
    sub: Option<&str>,
) -> Option<Resolved> {
    let (ext, def) = match urn {
        // Without a URN: the core and common attributes, then (as Entra writes `manager`)
        // an extension attribute whose name no core attribute has.
        None => match rt.find(None, attr, None).or_else(|| external_id(attr)) {
            Some(def) => (None, def),
            None => rt
                .extensions
                .iter()
                .find_map(|(schema, _)| schema.attribute(attr).map(|def| (Some(*schema), def)))?,
        },
        Some(urn) => {
            let schema = rt.schema_by_urn(urn)?;
            if std::ptr::eq(schema, rt.schema) {
                let def = rt.find(None, attr, None).or_else(|| external_id(attr))?;
                (None, def)
            } else {
                (Some(schema), schema.attribute(attr)?)
            }
        }
    };
    let sub = match sub {
        None => None,
        Some(sub) => Some(def.sub(sub)?),
    };
    Some(Resolved { ext, def, sub })
}

fn external_id(attr: &str) -> Option<&'static AttributeDef> {
    attr.eq_ignore_ascii_case(EXTERNAL_ID.name).then_some(&EXTERNAL_ID)
}

/// The value under `name` in `map`, matching the key case-insensitively (exact match first).
pub(crate) fn get_ci<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// The actual spelling of the key `name` in `map`, matched case-insensitively.
pub(crate) fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_owned());
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Split a leading schema URN off `s`: the URN runs to the last colon.
fn split_urn(s: &str) -> Result<(Option<&str>, &str), ScimError> {
    let is_urn = s.len() >= 4 && s.as_bytes()[..4].eq_ignore_ascii_case(b"urn:");
    if !is_urn {
        return Ok((None, s));
    }
    match s.rfind(':') {
        Some(i) if i >= 4 => Ok((Some(&s[..i]), &s[i + 1..])),
        _ => Err(invalid_path(s, "a schema URN must be followed by ':' and an attribute name")),
    }
}

fn check_name(name: &str, whole: &str) -> Result<(), ScimError> {
    if is_attr_name(name) {
        Ok(())
    } else if name.is_empty() {
        Err(invalid_path(whole, "empty attribute name"))
    } else {
        Err(invalid_path(whole, &format!("invalid attribute name \"{name}\"")))
    }
}

/// RFC 7644 §3.10 ATTRNAME, plus `$ref`.
pub(crate) fn is_attr_name(name: &str) -> bool {
    if name == "$ref" {
        return true;
    }
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Index of the `]` closing a value filter that starts at `from`, skipping string literals.
fn closing_bracket(s: &str, from: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut in_string = false;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b']' if !in_string => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn invalid_path(path: &str, problem: &str) -> ScimError {
    let shown: String = path.chars().take(200).collect();
    ScimError::new(ScimType::InvalidPath, format!("invalid path \"{shown}\": {problem}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::schema::{GROUP, USER};

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn attr_paths_parse() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("userName", None, "userName", None),
            (" name.givenName ", None, "name", Some("givenName")),
            ("members.$ref", None, "members", Some("$ref")),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName",
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                "userName",
                None,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                Some(ENT),
                "manager",
                Some("value"),
            ),
            ("URN:x:y:attr", Some("URN:x:y"), "attr", None),
        ];
        for (input, urn, attr, sub) in cases {
            let p = AttrPath::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.urn.as_deref(), *urn, "{input}");
            assert_eq!(p.attr, *attr, "{input}");
            assert_eq!(p.sub.as_deref(), *sub, "{input}");
            assert_eq!(AttrPath::parse(&p.to_string()).ok(), Some(p.clone()), "{input} round trip");
        }
    }

    #[test]
    fn bad_attr_paths_are_invalid_path() {
        for input in [
            "",
            "1abc",
            "name.",
            ".name",
            "a.b.c",
            "na me",
            "urn:",
            "urn:foo",
            "user_name!",
            "a[b]",
            "urn:a:b:",
        ] {
            let e = AttrPath::parse(input).expect_err(input);
            assert_eq!(e.scim_type, ScimType::InvalidPath, "{input}");
        }
    }

    #[test]
    fn is_compares_attr_case_insensitively_without_sub() {
        let p = AttrPath::parse("MEMBERS").unwrap();
        assert!(p.is("members"));
        assert!(!AttrPath::parse("members.value").unwrap().is("members"));
        assert!(AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:Group:members")
            .unwrap()
            .is("Members"));
    }

    #[test]
    fn patch_paths_parse() {
        let p = PatchPath::parse("members[value eq \"42\"]").unwrap();
        assert!(p.attr.is("members"));
        assert!(p.filter.is_some());
        assert_eq!(p.sub, None);

        let p = PatchPath::parse("emails[type eq \"work\" and value ew \"]x\"].value").unwrap();
        assert!(p.attr.is("emails"));
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(PatchPath::parse(&p.to_string()).unwrap(), p);

        let p = PatchPath::parse("name.givenName").unwrap();
        assert_eq!((p.attr.attr.as_str(), p.attr.sub.as_deref()), ("name", None));
        assert_eq!(p.sub.as_deref(), Some("givenName"));

        let p = PatchPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq \"a:b\"].value")
            .unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some("urn:ietf:params:scim:schemas:core:2.0:User"));
        assert_eq!(p.sub.as_deref(), Some("value"));
    }

    #[test]
    fn bad_patch_paths_are_invalid_path() {
        for input in [
            "members[value eq \"42\"",
            "members[value eq]",
            "members[]",
            "members[value eq \"1\"]x",
            "members[value eq \"1\"].",
            "name.givenName[value eq \"1\"]",
            "emails[value eq \"1\"].value.x",
            "emails[type[value eq \"x\"]]",
            "[value eq \"1\"]",
        ] {
            let e = PatchPath::parse(input).expect_err(input);
            assert_eq!(e.scim_type, ScimType::InvalidPath, "{input}");
        }
    }

    #[test]
    fn resolution_covers_core_common_external_id_and_urns() {
        let r = AttrPath::parse("USERNAME").unwrap().resolve(&USER).unwrap();
        assert_eq!(r.def.name, "userName");
        assert!(r.ext.is_none());
        let r =
            AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:id").unwrap().resolve(&USER).unwrap();
        assert_eq!(r.def.name, "id");
        let r = AttrPath::parse("externalid").unwrap().resolve(&GROUP).unwrap();
        assert!(r.def.case_exact);
        let r = AttrPath::parse("meta.lastModified").unwrap().resolve(&USER).unwrap();
        assert_eq!(r.sub.map(|s| s.name), Some("lastModified"));
        assert!(AttrPath::parse("nickName").unwrap().resolve(&USER).is_none());
        assert!(AttrPath::parse("name.middle").unwrap().resolve(&USER).is_none());
        assert!(AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:Group:displayName")
            .unwrap()
            .resolve(&USER)
            .is_none());
    }
}
