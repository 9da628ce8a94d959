//! Optional User attributes (RFC 7643 §4.1 core, §4.3 enterprise extension) that a service
//! provider may choose to store, and the User resource type that publishes a chosen set.
//!
//! - [`OptionalAttr::parse`]: `title`, `phoneNumbers[type eq "work"].value`,
//!   `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`, … (a typed value
//!   of a multi-valued attribute, or a single-valued attribute of the core schema or the
//!   enterprise extension).
//! - [`OptionalAttr::read`] / [`OptionalAttr::write`]: the attribute's value in a resource.
//! - [`user_type`]: the `User` [`ResourceTypeDef`] with the chosen attributes (and the
//!   enterprise extension when one of its attributes is chosen). Definitions are built once
//!   per distinct set and live for the process (the filter, PATCH and projection engines
//!   work from `'static` definitions).

use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use super::filter::Filter;
use super::path::get_ci;
use super::schema::{AttrType, AttributeDef, Mutability, ResourceTypeDef, SchemaDef, USER, USER_SCHEMA_DEF};
use super::{ENTERPRISE_USER_SCHEMA, USER_SCHEMA};

/// Single-valued core User attributes that may be stored (RFC 7643 §4.1.1).
static CORE_SIMPLE: &[AttributeDef] = &[
    AttributeDef::string("nickName", "The casual way to address the user."),
    AttributeDef::string("profileUrl", "A URI of the user's online profile.").of_type(AttrType::Reference),
    AttributeDef::string("title", "The user's title, such as \"Vice President\"."),
    AttributeDef::string("userType", "The relationship between the organization and the user."),
    AttributeDef::string("preferredLanguage", "The user's preferred written or spoken language."),
    AttributeDef::string("locale", "The user's default location for localization."),
    AttributeDef::string("timezone", "The user's time zone, in the IANA format."),
];

/// Multi-valued core attributes whose typed values may be stored: name, the sub-attributes
/// that may hold a value, the `type` values.
static CORE_TYPED: &[(&str, &[&str], &[&str], &str)] = &[
    (
        "phoneNumbers",
        &["value"],
        &["work", "home", "mobile", "fax", "pager", "other"],
        "Phone numbers for the user.",
    ),
    (
        "addresses",
        &["formatted", "streetAddress", "locality", "region", "postalCode", "country"],
        &["work", "home", "other"],
        "The user's physical mailing addresses.",
    ),
];

static ADDRESS_SUB_DEFS: &[AttributeDef] = &[
    AttributeDef::string("formatted", "The full mailing address."),
    AttributeDef::string("streetAddress", "The full street address component."),
    AttributeDef::string("locality", "The city or locality component."),
    AttributeDef::string("region", "The state or region component."),
    AttributeDef::string("postalCode", "The zip code or postal code component."),
    AttributeDef::string("country", "The country name component."),
    AttributeDef::string("value", "The phone number."),
];

static MANAGER_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The id of the manager's User (the manager's Zulip id).").case_exact(),
    AttributeDef::string("$ref", "The URI of the manager's User.")
        .of_type(AttrType::Reference)
        .references(&["User"])
        .case_exact()
        .mutability(Mutability::ReadOnly),
    AttributeDef::string("displayName", "The manager's name.").mutability(Mutability::ReadOnly),
];

/// The enterprise extension's attributes (RFC 7643 §4.3).
static ENTERPRISE_ATTRS: &[AttributeDef] = &[
    AttributeDef::string("employeeNumber", "A string identifier, typically numeric or alphanumeric."),
    AttributeDef::string("costCenter", "Identifies the name of a cost center."),
    AttributeDef::string("organization", "Identifies the name of an organization."),
    AttributeDef::string("division", "Identifies the name of a division."),
    AttributeDef::string("department", "Identifies the name of a department."),
    AttributeDef::string("manager", "The user's manager: a Zulip user of this organization.")
        .complex(MANAGER_SUBS),
];

/// One storable attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OptionalAttr {
    /// In the enterprise extension (else the core schema).
    pub enterprise: bool,
    /// The top-level attribute, canonically spelled (`title`, `phoneNumbers`, `manager`).
    pub name: &'static str,
    /// For a typed value of a multi-valued attribute: the `type` value (as listed in the
    /// catalog) and the sub-attribute (`value`, `locality`, …).
    pub typed: Option<(&'static str, &'static str)>,
}

// === impl OptionalAttr ===

impl OptionalAttr {
    /// Parses a configured attribute: `title`, `urn:…:core:2.0:User:title`,
    /// `phoneNumbers[type eq "work"].value`, `urn:…:enterprise:2.0:User:department`. The
    /// `Err` says why the text names no storable attribute.
    pub fn parse(key: &str) -> Result<OptionalAttr, String> {
        let key = key.trim();
        let (urn, rest) = split_urn(key);
        let enterprise = match urn {
            None => false,
            Some(u) if u.eq_ignore_ascii_case(USER_SCHEMA) => false,
            Some(u) if u.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) => true,
            Some(u) => {
                return Err(format!(
                    "unknown schema {u:?}: only the core User schema and the enterprise extension"
                ))
            }
        };
        if let Some(open) = rest.find('[') {
            if enterprise {
                return Err("the enterprise extension has no multi-valued attributes".into());
            }
            return Self::parse_typed(&rest[..open], &rest[open..]);
        }
        let list: &'static [AttributeDef] = if enterprise { ENTERPRISE_ATTRS } else { CORE_SIMPLE };
        if let Some(def) = list.iter().find(|a| a.name.eq_ignore_ascii_case(rest)) {
            return Ok(OptionalAttr { enterprise, name: def.name, typed: None });
        }
        let core_name =
            |n: &str| USER_SCHEMA_DEF.attribute(n).is_some() || n.eq_ignore_ascii_case("externalId");
        if !enterprise && core_name(rest) {
            return Err(format!("{rest} is stored by the sidecar itself, not in a custom profile field"));
        }
        if let Some((name, _, types, _)) = CORE_TYPED.iter().find(|(n, ..)| n.eq_ignore_ascii_case(rest)) {
            return Err(format!(
                "{name} is multi-valued: name one value, e.g. {name}[type eq \"{}\"].{}",
                types[0],
                if *name == "addresses" { "formatted" } else { "value" }
            ));
        }
        let known: Vec<String> = CORE_SIMPLE
            .iter()
            .map(|a| a.name.to_string())
            .chain(CORE_TYPED.iter().map(|(n, ..)| format!("{n}[type eq \"…\"]…")))
            .chain(ENTERPRISE_ATTRS.iter().map(|a| format!("{ENTERPRISE_USER_SCHEMA}:{}", a.name)))
            .collect();
        Err(format!("not an attribute that can be stored; one of {}", known.join(", ")))
    }

    /// `name[type eq "t"].sub`.
    fn parse_typed(name: &str, rest: &str) -> Result<OptionalAttr, String> {
        if USER_SCHEMA_DEF.attribute(name.trim()).is_some() {
            return Err(format!(
                "{} is stored by the sidecar itself, not in a custom profile field",
                name.trim()
            ));
        }
        let Some((attr, subs, types, _)) =
            CORE_TYPED.iter().find(|(n, ..)| n.eq_ignore_ascii_case(name.trim()))
        else {
            return Err(format!(
                "{name} is not a multi-valued attribute that can be stored (phoneNumbers, addresses)"
            ));
        };
        let close = rest.rfind(']').ok_or("missing ']'")?;
        let filter = Filter::parse_value_filter(&rest[1..close]).map_err(|e| e.detail)?;
        let template = filter.element_template().unwrap_or_default();
        let type_value = match template.as_slice() {
            [(t, Value::String(v))] if t.eq_ignore_ascii_case("type") => v.clone(),
            _ => return Err(format!("the filter must be [type eq \"…\"], one of {}", types.join(", "))),
        };
        let type_value = types
            .iter()
            .find(|t| t.eq_ignore_ascii_case(&type_value))
            .ok_or_else(|| format!("type {type_value:?} of {attr}: one of {}", types.join(", ")))?;
        let sub = rest[close + 1..]
            .strip_prefix('.')
            .ok_or_else(|| format!("name the sub-attribute: {attr}[type eq \"{type_value}\"].{}", subs[0]))?;
        let sub = subs
            .iter()
            .find(|s| s.eq_ignore_ascii_case(sub))
            .ok_or_else(|| format!("{attr} has no sub-attribute {sub:?}: one of {}", subs.join(", ")))?;
        Ok(OptionalAttr { enterprise: false, name: attr, typed: Some((type_value, sub)) })
    }

    /// The enterprise extension's `manager` (a reference to another User).
    pub fn is_manager(&self) -> bool {
        self.enterprise && self.name == "manager"
    }

    /// The attribute's value in `resource`: a string (for `manager`, its `value`), `None`
    /// when unassigned.
    pub fn read<'v>(&self, resource: &'v Value) -> Option<&'v Value> {
        let container = self.container(resource)?;
        let value = get_ci(container, self.name)?;
        let value = match self.typed {
            None => value,
            Some((type_value, sub)) => {
                let items: &[Value] = match value {
                    Value::Array(items) => items,
                    other => std::slice::from_ref(other),
                };
                let item = items.iter().find(|item| {
                    item.as_object()
                        .and_then(|m| get_ci(m, "type"))
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case(type_value))
                })?;
                get_ci(item.as_object()?, sub)?
            }
        };
        let value = match value {
            Value::Array(items) if self.is_manager() && items.len() <= 1 => items.first()?,
            v => v,
        };
        let value = match (self.is_manager(), value) {
            (true, Value::Object(m)) => get_ci(m, "value")?,
            (_, v) => v,
        };
        (!matches!(value, Value::Null) && value.as_str() != Some("")).then_some(value)
    }

    /// Writes `value` (a string; for `manager` the object with `value`, `$ref`) into
    /// `resource`, next to the attributes already there (typed values of one attribute share
    /// the element of their type). Adds the enterprise URN to `schemas` when needed.
    pub fn write(&self, resource: &mut Map<String, Value>, value: Value) {
        let container = if self.enterprise {
            if let Some(Value::Array(schemas)) = resource.get_mut("schemas") {
                if !schemas.iter().any(|s| s.as_str() == Some(ENTERPRISE_USER_SCHEMA)) {
                    schemas.push(Value::from(ENTERPRISE_USER_SCHEMA));
                }
            }
            let ext = resource.entry(ENTERPRISE_USER_SCHEMA).or_insert_with(|| Value::Object(Map::new()));
            match ext.as_object_mut() {
                Some(ext) => ext,
                None => return,
            }
        } else {
            resource
        };
        match self.typed {
            None => {
                container.insert(self.name.to_owned(), value);
            }
            Some((type_value, sub)) => {
                let list = container.entry(self.name).or_insert_with(|| Value::Array(Vec::new()));
                let Some(items) = list.as_array_mut() else { return };
                let at = items.iter().position(|i| i.get("type").and_then(Value::as_str) == Some(type_value));
                let at = match at {
                    Some(at) => at,
                    None => {
                        items.push(Value::Object(Map::from_iter([(
                            "type".to_owned(),
                            Value::from(type_value),
                        )])));
                        items.len() - 1
                    }
                };
                if let Some(item) = items[at].as_object_mut() {
                    item.insert(sub.to_owned(), value);
                }
            }
        }
    }

    fn container<'v>(&self, resource: &'v Value) -> Option<&'v Map<String, Value>> {
        let top = resource.as_object()?;
        match self.enterprise {
            false => Some(top),
            true => get_ci(top, ENTERPRISE_USER_SCHEMA)?.as_object(),
        }
    }
}

impl fmt::Display for OptionalAttr {
    /// The canonical spelling, as [`OptionalAttr::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.enterprise {
            write!(f, "{ENTERPRISE_USER_SCHEMA}:")?;
        }
        f.write_str(self.name)?;
        if let Some((type_value, sub)) = self.typed {
            write!(f, "[type eq \"{type_value}\"].{sub}")?;
        }
        Ok(())
    }
}

/// Elements of a typed attribute (`phoneNumbers`) in `resource` that none of `attrs` stores:
/// `(type, sub-attribute)` pairs, for a clear refusal of what Zulip cannot hold.
pub fn unstored_values(resource: &Value, attrs: &[OptionalAttr]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(top) = resource.as_object() else { return out };
    for (name, ..) in CORE_TYPED {
        let Some(Value::Array(items)) = get_ci(top, name) else { continue };
        for item in items {
            let Some(item) = item.as_object() else { continue };
            let type_value = get_ci(item, "type").and_then(Value::as_str).unwrap_or("");
            for (key, value) in item {
                if key.eq_ignore_ascii_case("type")
                    || key.eq_ignore_ascii_case("primary")
                    || value.is_null()
                    || value.as_str() == Some("")
                {
                    continue;
                }
                let stored = attrs.iter().any(|a| {
                    a.name == *name
                        && a.typed.is_some_and(|(t, s)| {
                            t.eq_ignore_ascii_case(type_value) && s.eq_ignore_ascii_case(key)
                        })
                });
                if !stored {
                    out.push(format!("{name}[type eq \"{type_value}\"].{key}"));
                }
            }
        }
    }
    out
}

/// The `User` resource type that publishes `attrs` besides the attributes every User has;
/// the enterprise extension is listed only when one of its attributes is among them. One
/// definition per distinct set, for the life of the process.
pub fn user_type(attrs: &[OptionalAttr]) -> &'static ResourceTypeDef {
    if attrs.is_empty() {
        return &USER;
    }
    let mut key: Vec<String> = attrs.iter().map(ToString::to_string).collect();
    key.sort();
    key.dedup();
    static BUILT: OnceLock<Mutex<Vec<Built>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, rt)) = built.iter().find(|(k, _)| *k == key) {
        return rt;
    }
    let rt = build_user_type(attrs);
    built.push((key, rt));
    rt
}

/// A built User type, by the sorted canonical keys of its attributes.
type Built = (Vec<String>, &'static ResourceTypeDef);

fn build_user_type(attrs: &[OptionalAttr]) -> &'static ResourceTypeDef {
    let mut core: Vec<AttributeDef> = USER_SCHEMA_DEF.attributes.to_vec();
    for def in CORE_SIMPLE {
        if attrs.iter().any(|a| !a.enterprise && a.typed.is_none() && a.name == def.name) {
            core.push(*def);
        }
    }
    for (name, _, _, description) in CORE_TYPED {
        let chosen: Vec<&OptionalAttr> = attrs.iter().filter(|a| a.name == *name).collect();
        if chosen.is_empty() {
            continue;
        }
        let mut types: Vec<&'static str> = chosen.iter().filter_map(|a| a.typed.map(|(t, _)| t)).collect();
        types.dedup();
        let mut subs: Vec<AttributeDef> = Vec::new();
        for a in &chosen {
            let Some((_, sub)) = a.typed else { continue };
            if subs.iter().any(|s| s.name == sub) {
                continue;
            }
            if let Some(def) = ADDRESS_SUB_DEFS.iter().find(|d| d.name == sub) {
                subs.push(*def);
            }
        }
        let types: &'static [&'static str] = Box::leak(types.into_boxed_slice());
        subs.push(
            AttributeDef::string("type", "The kind of value: the types stored are listed.").canonical(types),
        );
        let subs: &'static [AttributeDef] = Box::leak(subs.into_boxed_slice());
        core.push(AttributeDef::string(name, description).multi().complex(subs));
    }
    let schema: &'static SchemaDef =
        Box::leak(Box::new(SchemaDef { attributes: Box::leak(core.into_boxed_slice()), ..USER_SCHEMA_DEF }));
    let enterprise: Vec<AttributeDef> = ENTERPRISE_ATTRS
        .iter()
        .filter(|def| attrs.iter().any(|a| a.enterprise && a.name == def.name))
        .copied()
        .collect();
    let extensions: &'static [(&'static SchemaDef, bool)] = if enterprise.is_empty() {
        &[]
    } else {
        let ext: &'static SchemaDef = Box::leak(Box::new(SchemaDef {
            id: ENTERPRISE_USER_SCHEMA,
            name: "EnterpriseUser",
            description:
                "Enterprise User (the attributes this organization keeps in Zulip custom profile fields)",
            attributes: Box::leak(enterprise.into_boxed_slice()),
        }));
        Box::leak(Box::new([(ext, false)]))
    };
    Box::leak(Box::new(ResourceTypeDef { schema, extensions, ..USER }))
}

/// Splits a leading schema URN (up to the last colon before any `[`).
fn split_urn(s: &str) -> (Option<&str>, &str) {
    if !(s.len() >= 4 && s.as_bytes()[..4].eq_ignore_ascii_case(b"urn:")) {
        return (None, s);
    }
    let head = s.find('[').map_or(s, |open| &s[..open]);
    match head.rfind(':') {
        Some(colon) => (Some(&s[..colon]), &s[colon + 1..]),
        None => (None, s),
    }
}

#[cfg(test)]
mod tests;
