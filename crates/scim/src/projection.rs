//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) with the `returned` rules of
//! RFC 7643 §7, and `sortBy` / `sortOrder` (RFC 7644 §3.4.2.3).
//!
//! Attribute paths are in standard attribute notation (RFC 7644 §3.10): `userName`,
//! `name.givenName`, `urn:ietf:params:scim:schemas:core:2.0:User:emails.value`, or a bare
//! schema URN naming a whole extension. Names are case-insensitive. A path naming no attribute
//! of the resource type is accepted and selects nothing (clients send generic lists such as
//! `attributes=userName,nickName`); a path that is not attribute notation at all is refused.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::schema::{AttrType, AttributeDef, ResourceTypeDef, Returned, SchemaDef};
use super::{ScimError, ScimType};

/// The most paths one `attributes` or `excludedAttributes` value may list (every schema we
/// serve has far fewer attributes and sub-attributes).
pub const MAX_PROJECTION_PATHS: usize = 100;

/// Which attributes a response carries: parsed once from the query (or `.search` body), then
/// applied to each resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    mode: Mode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Mode {
    /// Neither parameter: the default set (everything but `returned: never|request`).
    #[default]
    Default,
    /// `attributes`: the listed attributes plus those `returned: always`.
    Only(Vec<AttrPath>),
    /// `excludedAttributes`: the default set minus the listed attributes (not `always` ones).
    Except(Vec<AttrPath>),
}

/// `sortBy` / `sortOrder`, resolved against the resource type's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortSpec {
    /// The extension URN the attribute lives under; `None` for core and common attributes.
    extension: Option<&'static str>,
    attr: &'static str,
    sub: Option<&'static str>,
    /// From the schema: strings compare case-insensitively unless the attribute is caseExact.
    case_exact: bool,
    descending: bool,
}

/// One path in standard attribute notation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AttrPath {
    /// The path as given: when it is a bare schema URN, it names that whole schema.
    raw: String,
    urn: Option<String>,
    attr: String,
    sub: Option<String>,
}

/// Where a top-level attribute lives in a resource.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Directly in the resource: the common attributes and the core schema's.
    Core,
    /// Under the extension's URN key.
    Extension(&'static SchemaDef),
}

/// What one attribute's value keeps, decided once per attribute.
#[derive(Debug, PartialEq, Eq)]
enum Keep<'p> {
    Drop,
    /// Every sub-attribute in the default set, and with `request_subs` the `returned: request`
    /// ones too (the attribute was named as a whole).
    All {
        request_subs: bool,
    },
    /// Only these sub-attributes (plus `returned: always` ones).
    Only(Vec<&'p str>),
    /// The default set minus these sub-attributes.
    Except(Vec<&'p str>),
}

// === impl Projection ===

impl Projection {
    /// Parses the comma-separated `attributes` and `excludedAttributes` values. An empty or
    /// all-blank value counts as absent. The two are alternatives (RFC 7644 §3.9): when both
    /// are given, `attributes` wins and `excludedAttributes` is ignored, not even parsed.
    /// A path that is not attribute notation is `invalidValue`.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Projection, ScimError> {
        let only = parse_list(attributes, "attributes")?;
        if !only.is_empty() {
            return Ok(Projection { mode: Mode::Only(only) });
        }
        let except = parse_list(excluded, "excludedAttributes")?;
        if !except.is_empty() {
            return Ok(Projection { mode: Mode::Except(except) });
        }
        Ok(Projection::default())
    }

    /// True when neither parameter was given. [`Projection::apply`] then still drops
    /// `returned: never` and `returned: request` attributes, which resources built by the
    /// sidecar do not carry: a caller may skip `apply` for an identity projection.
    pub fn is_identity(&self) -> bool {
        self.mode == Mode::Default
    }

    /// The resource as the response carries it. `schemas` and `returned: always` attributes
    /// (`id`) are always kept, `returned: never` ones always dropped. A sub-attribute path
    /// (`name.givenName`, `emails.value`) keeps only the named sub-attributes, in every element
    /// of a multi-valued attribute; an element or attribute left empty by that is dropped.
    /// Extension attributes live under their schema URN key. Key order is preserved.
    pub fn apply(&self, resource: &Value, rt: &ResourceTypeDef) -> Value {
        match resource {
            Value::Object(members) => Value::Object(self.project_members(members, rt, Scope::Core)),
            other => other.clone(),
        }
    }

    /// Whether [`Projection::apply`] would keep any part of `top_level_attr` (a core or common
    /// attribute name, a URN-qualified name, or an extension's URN), so that the caller can skip
    /// upstream work whose result would be dropped (group members under
    /// `excludedAttributes=members`).
    pub fn requests(&self, top_level_attr: &str, rt: &ResourceTypeDef) -> bool {
        if top_level_attr.eq_ignore_ascii_case("schemas") {
            return true;
        }
        if let Some(ext) = extension(rt, top_level_attr) {
            let scope = Scope::Extension(ext);
            let any_path_names_it = match &self.mode {
                Mode::Only(paths) => {
                    paths.iter().any(|p| p.names_schema(scope, rt) || p.in_scope(scope, rt, &p.attr))
                }
                Mode::Default | Mode::Except(_) => false,
            };
            return any_path_names_it
                || ext.attributes.iter().any(|a| self.decide(rt, scope, a.name, Some(a)) != Keep::Drop);
        }
        let (scope, name) = match AttrPath::parse(top_level_attr, "attribute") {
            Ok(path) => match path.urn.as_deref().and_then(|urn| extension(rt, urn)) {
                Some(ext) => (Scope::Extension(ext), path.attr),
                None => (Scope::Core, path.attr),
            },
            Err(_) => (Scope::Core, top_level_attr.to_owned()),
        };
        let def = scope.attribute(rt, &name);
        self.decide(rt, scope, &name, def) != Keep::Drop
    }

    fn project_members(
        &self,
        members: &Map<String, Value>,
        rt: &ResourceTypeDef,
        scope: Scope,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, value) in members {
            if let Scope::Core = scope {
                if key.eq_ignore_ascii_case("schemas") {
                    out.insert(key.clone(), value.clone());
                    continue;
                }
                if let Some(ext) = extension(rt, key) {
                    if let Value::Object(inner) = value {
                        let projected = self.project_members(inner, rt, Scope::Extension(ext));
                        if !projected.is_empty() {
                            out.insert(key.clone(), Value::Object(projected));
                        }
                    }
                    continue;
                }
            }
            let def = scope.attribute(rt, key);
            let keep = self.decide(rt, scope, key, def);
            if let Some(projected) = project_value(value, def, &keep) {
                out.insert(key.clone(), projected);
            }
        }
        out
    }

    /// The `returned` rules (RFC 7643 §7) against the parameters (RFC 7644 §3.9). An attribute
    /// the schema does not know is treated as `returned: default`.
    fn decide<'p>(
        &'p self,
        rt: &ResourceTypeDef,
        scope: Scope,
        attr: &str,
        def: Option<&AttributeDef>,
    ) -> Keep<'p> {
        let returned = def.map_or(Returned::Default, |d| d.returned);
        if returned == Returned::Never {
            return Keep::Drop;
        }
        match &self.mode {
            Mode::Default if returned == Returned::Request => Keep::Drop,
            Mode::Default => Keep::All { request_subs: false },
            Mode::Only(paths) => {
                let (whole, subs) = named(paths, rt, scope, attr);
                if whole {
                    Keep::All { request_subs: true }
                } else if !subs.is_empty() {
                    Keep::Only(subs)
                } else if returned == Returned::Always {
                    Keep::All { request_subs: false }
                } else {
                    Keep::Drop
                }
            }
            Mode::Except(_) if returned == Returned::Always => Keep::All { request_subs: false },
            Mode::Except(paths) => {
                let (whole, subs) = named(paths, rt, scope, attr);
                if whole || returned == Returned::Request {
                    Keep::Drop
                } else if !subs.is_empty() {
                    Keep::Except(subs)
                } else {
                    Keep::All { request_subs: false }
                }
            }
        }
    }
}

/// Whether the paths name `attr` as a whole (or its whole schema), and which of its
/// sub-attributes they name.
fn named<'p>(paths: &'p [AttrPath], rt: &ResourceTypeDef, scope: Scope, attr: &str) -> (bool, Vec<&'p str>) {
    let mut whole = false;
    let mut subs = Vec::new();
    for path in paths {
        if path.names_schema(scope, rt) {
            whole = true;
        } else if path.attr.eq_ignore_ascii_case(attr) && path.in_scope(scope, rt, attr) {
            match &path.sub {
                None => whole = true,
                Some(sub) => subs.push(sub.as_str()),
            }
        }
    }
    (whole, subs)
}

fn project_value(value: &Value, def: Option<&AttributeDef>, keep: &Keep<'_>) -> Option<Value> {
    if *keep == Keep::Drop {
        return None;
    }
    match value {
        Value::Object(members) => project_complex(members, def, keep).map(Value::Object),
        Value::Array(items) => {
            let projected: Vec<Value> = items
                .iter()
                .filter_map(|item| match item {
                    Value::Object(members) => project_complex(members, def, keep).map(Value::Object),
                    other => Some(other.clone()),
                })
                .collect();
            (items.is_empty() || !projected.is_empty()).then_some(Value::Array(projected))
        }
        scalar => Some(scalar.clone()),
    }
}

/// The sub-attributes of one complex value that `keep` retains; `None` when that empties a
/// value that had some.
fn project_complex(
    members: &Map<String, Value>,
    def: Option<&AttributeDef>,
    keep: &Keep<'_>,
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for (key, value) in members {
        let returned = def.and_then(|d| d.sub(key)).map_or(Returned::Default, |s| s.returned);
        let kept = match returned {
            Returned::Never => false,
            Returned::Always => true,
            returned => match keep {
                Keep::Drop => false,
                Keep::All { request_subs } => returned != Returned::Request || *request_subs,
                Keep::Only(subs) => contains(subs, key),
                Keep::Except(subs) => returned != Returned::Request && !contains(subs, key),
            },
        };
        if kept {
            out.insert(key.clone(), value.clone());
        }
    }
    (members.is_empty() || !out.is_empty()).then_some(out)
}

fn contains(names: &[&str], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The extension of `rt` whose URN is `urn` (case-insensitive).
fn extension(rt: &ResourceTypeDef, urn: &str) -> Option<&'static SchemaDef> {
    rt.extensions.iter().map(|(s, _)| *s).find(|s| s.id.eq_ignore_ascii_case(urn))
}

fn parse_list(value: Option<&str>, param: &str) -> Result<Vec<AttrPath>, ScimError> {
    let paths = value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| AttrPath::parse(p, param))
        .collect::<Result<Vec<_>, _>>()?;
    if paths.len() > MAX_PROJECTION_PATHS {
        return Err(ScimError::new(
            ScimType::InvalidValue,
            format!("{param}: more than {MAX_PROJECTION_PATHS} attribute paths"),
        ));
    }
    Ok(paths)
}

// === impl AttrPath ===

impl AttrPath {
    /// `[URN ":"] ATTRNAME ["." subAttr]`; `param` names the parameter in the error detail.
    fn parse(raw: &str, param: &str) -> Result<AttrPath, ScimError> {
        let invalid =
            || ScimError::new(ScimType::InvalidValue, format!("{param}: {raw:?} is not an attribute path"));
        let has_urn = raw.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        let (urn, rest) = match raw.rfind(':') {
            Some(colon) if has_urn => (Some(&raw[..colon]), &raw[colon + 1..]),
            Some(_) => return Err(invalid()),
            None => (None, raw),
        };
        if urn.is_some_and(|u| u.chars().any(|c| c.is_whitespace() || "[]\"(),".contains(c))) {
            return Err(invalid());
        }
        let (attr, sub) = match rest.split_once('.') {
            Some((attr, sub)) => (attr, Some(sub)),
            None => (rest, None),
        };
        if !is_attr_name(attr) || sub.is_some_and(|s| !is_attr_name(s)) {
            return Err(invalid());
        }
        Ok(AttrPath {
            raw: raw.to_owned(),
            urn: urn.map(str::to_owned),
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    /// The path is the URN of the schema `scope` stands for.
    fn names_schema(&self, scope: Scope, rt: &ResourceTypeDef) -> bool {
        self.raw.eq_ignore_ascii_case(scope.urn(rt))
    }

    /// The path's URN (or lack of one) designates `attr` in `scope`. A bare name also reaches
    /// an extension attribute that no core or common attribute shadows (lenient in).
    fn in_scope(&self, scope: Scope, rt: &ResourceTypeDef, attr: &str) -> bool {
        match (&self.urn, scope) {
            (None, Scope::Core) => true,
            (Some(urn), Scope::Core) => urn.eq_ignore_ascii_case(rt.schema.id),
            (Some(urn), Scope::Extension(ext)) => urn.eq_ignore_ascii_case(ext.id),
            (None, Scope::Extension(ext)) => {
                rt.find(None, attr, None).is_none() && ext.attribute(attr).is_some()
            }
        }
    }
}

/// RFC 7643 §2.1 `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`.
fn is_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }
        _ => name.eq_ignore_ascii_case("$ref"),
    }
}

// === impl Scope ===

impl Scope {
    fn urn(self, rt: &ResourceTypeDef) -> &'static str {
        match self {
            Scope::Core => rt.schema.id,
            Scope::Extension(ext) => ext.id,
        }
    }

    fn attribute(self, rt: &ResourceTypeDef, name: &str) -> Option<&'static AttributeDef> {
        match self {
            Scope::Core => rt.find(None, name, None),
            Scope::Extension(ext) => ext.attribute(name),
        }
    }
}

// === impl SortSpec ===

impl SortSpec {
    /// `None` when `sort_by` is absent or blank (`sortOrder` alone is then ignored). The
    /// attribute must be one of the resource type's (`invalidValue` otherwise); a complex
    /// attribute needs a sub-attribute (`name.givenName`), except a multi-valued one, which
    /// sorts by its `value` (`emails` = `emails.value`). `sortOrder` is `ascending` (default) or
    /// `descending`, in any case.
    pub fn parse(
        sort_by: Option<&str>,
        sort_order: Option<&str>,
        rt: &ResourceTypeDef,
    ) -> Result<Option<SortSpec>, ScimError> {
        let descending = parse_sort_order(sort_order)?;
        let Some(sort_by) = sort_by.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let path = AttrPath::parse(sort_by, "sortBy")?;
        let (extension, top) = sort_attribute(&path, sort_by, rt)?;
        let sub = sort_sub_attribute(&path, sort_by, top, rt)?;
        Ok(Some(SortSpec {
            extension,
            attr: top.name,
            sub: sub.map(|s| s.name),
            case_exact: sub.unwrap_or(top).case_exact,
            descending,
        }))
    }

    /// Orders two resources by the attribute: strings by Unicode code points, folded to lower
    /// case unless caseExact; numbers numerically; `false` before `true`. A multi-valued
    /// attribute sorts by its primary value, else its first. Resources without a value sort
    /// last when ascending and first when descending (RFC 7644 §3.4.2.3). Equal keys compare
    /// `Equal`: the caller's stable sort (then id) settles ties.
    pub fn compare(&self, a: &Value, b: &Value) -> Ordering {
        let ascending = match (self.key(a), self.key(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => self.compare_values(x, y),
        };
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }

    fn key<'v>(&self, resource: &'v Value) -> Option<&'v Value> {
        let container = match self.extension {
            Some(urn) => member(resource, urn)?,
            None => resource,
        };
        let mut value = member(container, self.attr)?;
        if let Value::Array(items) = value {
            value = items
                .iter()
                .find(|item| member(item, "primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| items.first())?;
        }
        if let Some(sub) = self.sub {
            value = member(value, sub)?;
        }
        (!value.is_null()).then_some(value)
    }

    fn compare_values(&self, x: &Value, y: &Value) -> Ordering {
        match (x, y) {
            (Value::String(a), Value::String(b)) if self.case_exact => a.cmp(b),
            (Value::String(a), Value::String(b)) => {
                a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase))
            }
            (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => {
                    a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)).unwrap_or(Ordering::Equal)
                }
            },
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            _ => type_rank(x).cmp(&type_rank(y)),
        }
    }
}

/// Whether `sortOrder` is `descending` (absent or blank is `ascending`).
fn parse_sort_order(sort_order: Option<&str>) -> Result<bool, ScimError> {
    match sort_order.map(str::trim).filter(|o| !o.is_empty()) {
        None => Ok(false),
        Some(o) if o.eq_ignore_ascii_case("ascending") => Ok(false),
        Some(o) if o.eq_ignore_ascii_case("descending") => Ok(true),
        Some(o) => Err(ScimError::new(
            ScimType::InvalidValue,
            format!("sortOrder: {o:?} is neither \"ascending\" nor \"descending\""),
        )),
    }
}

fn unknown_sort_attribute(sort_by: &str, rt: &ResourceTypeDef) -> ScimError {
    ScimError::new(
        ScimType::InvalidValue,
        format!("sortBy: {sort_by:?} is not an attribute of {} resources", rt.name),
    )
}

/// The top-level attribute `sortBy` names, and the extension URN it lives under: a core
/// attribute, else the first extension that has one of that name when no URN is given.
fn sort_attribute(
    path: &AttrPath,
    sort_by: &str,
    rt: &ResourceTypeDef,
) -> Result<(Option<&'static str>, &'static AttributeDef), ScimError> {
    let (extension, top) = match path.urn.as_deref() {
        Some(urn) if urn.eq_ignore_ascii_case(rt.schema.id) => (None, rt.find(None, &path.attr, None)),
        Some(urn) => {
            let ext = extension(rt, urn).ok_or_else(|| unknown_sort_attribute(sort_by, rt))?;
            (Some(ext.id), ext.attribute(&path.attr))
        }
        None => match rt.find(None, &path.attr, None) {
            Some(def) => (None, Some(def)),
            None => rt
                .extensions
                .iter()
                .find_map(|(ext, _)| ext.attribute(&path.attr).map(|def| (Some(ext.id), Some(def))))
                .unwrap_or((None, None)),
        },
    };
    let top = top.ok_or_else(|| unknown_sort_attribute(sort_by, rt))?;
    Ok((extension, top))
}

/// The sub-attribute `sortBy` sorts by: the one it names, `value` for a multi-valued complex
/// attribute, none for a simple one; a single-valued complex one without is `invalidValue`.
fn sort_sub_attribute(
    path: &AttrPath,
    sort_by: &str,
    top: &'static AttributeDef,
    rt: &ResourceTypeDef,
) -> Result<Option<&'static AttributeDef>, ScimError> {
    match path.sub.as_deref() {
        Some(sub) => Ok(Some(top.sub(sub).ok_or_else(|| unknown_sort_attribute(sort_by, rt))?)),
        None if top.type_ == AttrType::Complex => {
            let value = top.sub("value").filter(|_| top.multi_valued);
            Ok(Some(value.ok_or_else(|| {
                ScimError::new(
                    ScimType::InvalidValue,
                    format!(
                        "sortBy: {sort_by:?} is complex: name one of its sub-attributes, e.g. {}.{}",
                        top.name,
                        top.sub_attributes.first().map_or("value", |s| s.name)
                    ),
                )
            })?))
        }
        None => Ok(None),
    }
}

/// Mixed types (which a schema-conforming resource never has) still order deterministically.
fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// An object member by name: exact first, then case-insensitively.
fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    let members = value.as_object()?;
    members
        .get(name)
        .or_else(|| members.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

#[cfg(test)]
mod tests;
