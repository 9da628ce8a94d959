//! RFC 7644 §3.5.2 PATCH: operations parsed leniently (IdP dialects) and applied to a
//! resource in memory, validated against the schema.
//!
//! [`PatchRequest::parse`] reads the body; [`PatchRequest::apply`] applies it to a resource.
//!
//! Dialects accepted (see `reference/idp-behaviour.md` §0):
//! - `Operations`, `op`, `path`, `value` keys in any case; `op` in any case (`Replace`);
//!   `schemas` optional.
//! - Path-less `add`/`replace` whose value object has plain (`active`), dotted
//!   (`name.givenName`), value-path (`emails[type eq "work"].value`) or URN-qualified keys,
//!   or a whole extension object under its URN. `id`, `schemas`, `meta`, `password`,
//!   read-only attributes (`groups`), and `externalId` (until the schema publishes it) are
//!   ignored there, as are unknown keys whose value is null or empty.
//! - Booleans as `"True"`/`"false"` strings; members as bare id strings; a single element
//!   where a list is expected; `null` (and `""`) meaning "unassign".
//! - Member removal by filter (`members[value eq "u1"]`) and by value list
//!   (`{"op":"Remove","path":"members","value":[{"value":"u1"}]}`).
//!
//! `apply` is atomic: it works on a copy and only writes it back when every operation
//! succeeded and the required attributes survived.

use serde_json::{Map, Value};

use super::filter::{parse_bool, parse_datetime, Filter};
use super::path::{get_ci, key_ci, resolve, PatchPath};
use super::schema::{AttrType, AttributeDef, Mutability, ResourceTypeDef, SchemaDef};
use super::{ScimError, ScimType};

/// RFC 7644 §3.5.2 operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    Add,
    Remove,
    Replace,
}

/// One operation. `path` is `None` for path-less `add`/`replace` (then `value` is an
/// object); `value` is `None` when the request had none, `Some(Value::Null)` for `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    pub op: PatchOpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// A parsed `PatchOp` request: at least one operation, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

// === impl PatchOpKind ===

impl PatchOpKind {
    fn parse(s: &str) -> Option<PatchOpKind> {
        if s.eq_ignore_ascii_case("add") {
            Some(PatchOpKind::Add)
        } else if s.eq_ignore_ascii_case("remove") {
            Some(PatchOpKind::Remove)
        } else if s.eq_ignore_ascii_case("replace") {
            Some(PatchOpKind::Replace)
        } else {
            None
        }
    }

    /// The lower-case wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

// === impl PatchRequest ===

impl PatchRequest {
    /// Parse a PATCH body. Missing or empty `Operations`, a missing or unknown `op`, or a
    /// missing `value` → `invalidSyntax`; `remove` without `path` → `noTarget`; a bad
    /// `path` → `invalidPath`; a path-less `value` that is not an object → `invalidValue`.
    pub fn parse(body: &Value) -> Result<PatchRequest, ScimError> {
        let Some(body) = body.as_object() else {
            return Err(syntax("PATCH body must be a JSON object"));
        };
        let ops = match get_ci(body, "Operations") {
            Some(Value::Array(ops)) if !ops.is_empty() => ops,
            Some(Value::Array(_)) | Some(Value::Null) | None => {
                return Err(syntax("PATCH request has no Operations"));
            }
            Some(_) => return Err(syntax("PATCH Operations must be an array")),
        };
        let operations =
            ops.iter().enumerate().map(|(i, op)| parse_operation(i, op)).collect::<Result<_, _>>()?;
        Ok(PatchRequest { operations })
    }

    /// Drops every operation (and every key of a path-less value) that names no attribute
    /// of `rt`, for a service provider told to accept and ignore what it does not store.
    /// Returns the paths dropped. Operations left without keys are dropped too.
    pub fn retain_known(&mut self, rt: &ResourceTypeDef) -> Vec<String> {
        let mut dropped = Vec::new();
        self.operations.retain_mut(|op| match &op.path {
            Some(path) => {
                let known = whole_schema(path, rt).is_some() || names_attribute(path, rt);
                if !known {
                    dropped.push(path.to_string());
                }
                known
            }
            None => match &mut op.value {
                Some(Value::Object(map)) => {
                    retain_known_keys(map, rt, None, &mut dropped);
                    !map.is_empty()
                }
                _ => true,
            },
        });
        dropped
    }

    /// Apply every operation in order to `resource`, a SCIM resource of type `rt`. On any
    /// error `resource` is left untouched.
    pub fn apply(&self, resource: &mut Value, rt: &ResourceTypeDef) -> Result<(), ScimError> {
        let mut work = resource.clone();
        if !work.is_object() {
            return Err(ScimError::new(ScimType::InvalidValue, "the resource is not a JSON object"));
        }
        for (i, op) in self.operations.iter().enumerate() {
            apply_operation(&mut work, rt, op)
                .map_err(|e| ScimError::new(e.scim_type, format!("Operations[{i}]: {}", e.detail)))?;
        }
        tidy_extensions(&mut work, rt);
        check_required(resource, &work, rt)?;
        *resource = work;
        Ok(())
    }
}

fn parse_operation(i: usize, op: &Value) -> Result<PatchOperation, ScimError> {
    let Some(op) = op.as_object() else {
        return Err(syntax(format!("Operations[{i}] is not an object")));
    };
    let kind = match get_ci(op, "op") {
        Some(Value::String(s)) => PatchOpKind::parse(s.trim()).ok_or_else(|| {
            syntax(format!("Operations[{i}]: unknown PATCH op {}", Value::String(short(s))))
        })?,
        Some(other) if !other.is_null() => {
            return Err(syntax(format!("Operations[{i}]: \"op\" must be a string")));
        }
        _ => return Err(syntax(format!("Operations[{i}] has no \"op\""))),
    };
    let path = match get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(PatchPath::parse(s)?),
        Some(_) => {
            return Err(ScimError::new(
                ScimType::InvalidPath,
                format!("Operations[{i}]: \"path\" must be a string"),
            ));
        }
    };
    let value = get_ci(op, "value").cloned();
    match (kind, &path, &value) {
        (PatchOpKind::Remove, None, _) => Err(ScimError::new(
            ScimType::NoTarget,
            format!("Operations[{i}]: \"path\" must be specified for remove operations"),
        )),
        (PatchOpKind::Add | PatchOpKind::Replace, _, None) => {
            Err(syntax(format!("Operations[{i}]: {} operation has no \"value\"", kind.as_str())))
        }
        (PatchOpKind::Add | PatchOpKind::Replace, None, Some(v)) if !v.is_object() => Err(ScimError::new(
            ScimType::InvalidValue,
            format!("Operations[{i}]: without a \"path\", \"value\" must be an object of attributes"),
        )),
        _ => Ok(PatchOperation { op: kind, path, value }),
    }
}

// === applying ===

/// A resolved PATCH target.
#[derive(Clone, Copy)]
struct Target<'p> {
    ext: Option<&'static SchemaDef>,
    def: &'static AttributeDef,
    filter: Option<&'p Filter>,
    sub: Option<&'static AttributeDef>,
}

impl<'p> Target<'p> {
    /// Resolve `path` against `rt`: unknown attributes → `invalidPath`.
    fn resolve(path: &'p PatchPath, rt: &ResourceTypeDef) -> Result<Self, ScimError> {
        let unknown = || ScimError::new(ScimType::InvalidPath, format!("unknown attribute \"{path}\""));
        let r = resolve(rt, path.attr.urn.as_deref(), &path.attr.attr, None).ok_or_else(unknown)?;
        let sub = match &path.sub {
            None => None,
            Some(sub) => Some(r.def.sub(sub).ok_or_else(unknown)?),
        };
        if let Some(filter) = &path.filter {
            if r.def.type_ != AttrType::Complex {
                return Err(ScimError::new(
                    ScimType::InvalidPath,
                    format!("\"{}\" is not a complex attribute and cannot take a value filter", path.attr),
                ));
            }
            filter.validate_element(r.def).map_err(|e| {
                ScimError::new(ScimType::InvalidPath, format!("invalid path \"{path}\": {}", e.detail))
            })?;
        }
        Ok(Target { ext: r.ext, def: r.def, filter: path.filter.as_ref(), sub })
    }

    fn read_only(&self) -> bool {
        self.def.mutability == Mutability::ReadOnly
            || self.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
    }

    fn name(&self) -> String {
        match self.sub {
            Some(sub) => format!("{}.{}", self.def.name, sub.name),
            None => self.def.name.to_owned(),
        }
    }
}

fn apply_operation(work: &mut Value, rt: &ResourceTypeDef, op: &PatchOperation) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        return match &op.value {
            Some(Value::Object(map)) => apply_pathless(work, rt, op.op, map, None),
            _ => {
                Err(ScimError::new(ScimType::InvalidValue, "without a \"path\", \"value\" must be an object"))
            }
        };
    };
    if let Some(schema) = whole_schema(path, rt) {
        return apply_to_schema(work, rt, op, schema);
    }
    let target = Target::resolve(path, rt)?;
    if target.read_only() {
        return Err(ScimError::new(
            ScimType::Mutability,
            format!("attribute \"{}\" is readOnly", target.name()),
        ));
    }
    let value = op.value.as_ref().unwrap_or(&Value::Null);
    match op.op {
        PatchOpKind::Add => set(work, &target, value, true),
        PatchOpKind::Replace => set(work, &target, value, false),
        PatchOpKind::Remove => remove(work, &target, op.value.as_ref()),
    }
}

/// A path that is a whole schema URN (`urn:…:extension:enterprise:2.0:User`).
fn whole_schema(path: &PatchPath, rt: &ResourceTypeDef) -> Option<&'static SchemaDef> {
    match (&path.attr.urn, &path.attr.sub, &path.filter, &path.sub) {
        (Some(urn), None, None, None) => rt.schema_by_urn(&format!("{urn}:{}", path.attr.attr)),
        _ => None,
    }
}

fn apply_to_schema(
    work: &mut Value,
    rt: &ResourceTypeDef,
    op: &PatchOperation,
    schema: &'static SchemaDef,
) -> Result<(), ScimError> {
    let is_core = std::ptr::eq(schema, rt.schema);
    match (op.op, &op.value) {
        (PatchOpKind::Remove, _) if is_core => Err(ScimError::new(
            ScimType::Mutability,
            format!("the core schema \"{}\" cannot be removed", schema.id),
        )),
        (PatchOpKind::Remove, _) => {
            if let Some(map) = work.as_object_mut() {
                remove_ci(map, schema.id);
            }
            Ok(())
        }
        (kind, Some(Value::Object(map))) => apply_pathless(work, rt, kind, map, (!is_core).then_some(schema)),
        _ => Err(ScimError::new(
            ScimType::InvalidValue,
            format!("the value for \"{}\" must be an object of attributes", schema.id),
        )),
    }
}

/// Keys of a path-less value object that are never applied (RFC 7643 §3.1 common
/// attributes the client does not own, and Okta's password sync).
const IGNORED_KEYS: &[&str] = &["id", "schemas", "meta", "password"];

/// Path-less `add`/`replace`: each key of `map` is a path (relative to `ext` if given).
fn apply_pathless(
    work: &mut Value,
    rt: &ResourceTypeDef,
    kind: PatchOpKind,
    map: &Map<String, Value>,
    ext: Option<&'static SchemaDef>,
) -> Result<(), ScimError> {
    for (key, value) in map {
        if ext.is_none() {
            if IGNORED_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
                || (key.eq_ignore_ascii_case("externalId") && rt.find(None, "externalId", None).is_none())
            {
                continue;
            }
            if let Some(schema) = rt.schema_by_urn(key) {
                match value {
                    Value::Object(inner) => {
                        let scope = (!std::ptr::eq(schema, rt.schema)).then_some(schema);
                        apply_pathless(work, rt, kind, inner, scope)?;
                    }
                    Value::Null => {
                        if !std::ptr::eq(schema, rt.schema) {
                            if let Some(top) = work.as_object_mut() {
                                remove_ci(top, schema.id);
                            }
                        }
                    }
                    _ => {
                        return Err(ScimError::new(
                            ScimType::InvalidValue,
                            format!("the value for \"{key}\" must be an object of attributes"),
                        ));
                    }
                }
                continue;
            }
        }
        let unknown = || {
            ScimError::new(ScimType::InvalidPath, format!("unknown attribute \"{}\" in value", short(key)))
        };
        let mut path = PatchPath::parse(key).map_err(|_| unknown())?;
        if let Some(ext) = ext {
            if path.attr.urn.is_some() {
                return Err(unknown());
            }
            path.attr.urn = Some(ext.id.to_owned());
        }
        let target = match Target::resolve(&path, rt) {
            Ok(t) => t,
            Err(_) if is_empty(value) => continue,
            Err(e) if e.scim_type == ScimType::InvalidPath && path.filter.is_none() => return Err(unknown()),
            Err(e) => return Err(e),
        };
        if target.read_only() {
            continue;
        }
        set(work, &target, value, kind == PatchOpKind::Add)?;
    }
    Ok(())
}

/// Whether `path` names an attribute (and sub-attribute) of `rt`.
fn names_attribute(path: &PatchPath, rt: &ResourceTypeDef) -> bool {
    resolve(rt, path.attr.urn.as_deref(), &path.attr.attr, None)
        .is_some_and(|r| path.sub.as_deref().is_none_or(|sub| r.def.sub(sub).is_some()))
}

/// [`PatchRequest::retain_known`] for the keys of one path-less value object.
fn retain_known_keys(
    map: &mut Map<String, Value>,
    rt: &ResourceTypeDef,
    ext: Option<&'static SchemaDef>,
    dropped: &mut Vec<String>,
) {
    map.retain(|key, value| {
        if ext.is_none() {
            if IGNORED_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                return true;
            }
            if let Some(schema) = rt.schema_by_urn(key) {
                if let Value::Object(inner) = value {
                    let scope = (!std::ptr::eq(schema, rt.schema)).then_some(schema);
                    retain_known_keys(inner, rt, scope, dropped);
                }
                return true;
            }
        }
        let Ok(mut path) = PatchPath::parse(key) else {
            dropped.push(short(key));
            return false;
        };
        if let Some(ext) = ext {
            if path.attr.urn.is_none() {
                path.attr.urn = Some(ext.id.to_owned());
            }
        }
        let known = names_attribute(&path, rt);
        if !known {
            dropped.push(short(key));
        }
        known
    });
}

/// `add` (`is_add`) or `replace` of `value` at `target`.
fn set(work: &mut Value, t: &Target<'_>, value: &Value, is_add: bool) -> Result<(), ScimError> {
    // Entra sends single-valued complex values (`manager`) as one-element lists.
    let single_target = t.sub.is_some() || !t.def.multi_valued;
    let value = match value {
        Value::Array(items) if single_target && items.len() <= 1 => items.first().unwrap_or(&Value::Null),
        v => v,
    };
    if let Some(filter) = t.filter {
        return set_filtered(work, t, filter, value, is_add);
    }
    let container = container_mut(work, t.ext, !value.is_null())?;
    let Some(container) = container else {
        return Ok(());
    };
    let def = t.def;
    match (def.multi_valued, t.sub) {
        (true, Some(sub)) => set_sub_of_every_element(container, t, sub, value)?,
        (true, None) if is_add => add_elements(container, def, value)?,
        (true, None) => put_list(container, def.name, coerce_multi(def, value)?),
        (false, Some(sub)) => set_sub_of_complex(container, t, sub, value)?,
        (false, None) if def.type_ == AttrType::Complex => set_complex(container, def, value)?,
        (false, None) => set_single(container, def, value)?,
    }
    Ok(())
}

/// `emails.primary`: `sub` of every element; a first element if there is none.
fn set_sub_of_every_element(
    container: &mut Map<String, Value>,
    t: &Target<'_>,
    sub: &'static AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    let def = t.def;
    let new = coerce_single(sub, value, &t.name())?;
    let mut items = take_list(container, def.name);
    if items.is_empty() {
        if let Some(new) = new {
            items.push(Value::Object(Map::from_iter([(sub.name.to_owned(), new)])));
        }
    } else {
        for item in &mut items {
            set_sub(item, sub, new.clone(), def)?;
        }
    }
    put_list(container, def.name, items);
    Ok(())
}

/// `add` to a multi-valued attribute: the elements not already there are appended, and
/// an added `primary` one clears the others' flag.
fn add_elements(
    container: &mut Map<String, Value>,
    def: &'static AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    let new = coerce_multi(def, value)?;
    let mut items = take_list(container, def.name);
    let mut added_primary = None;
    for n in new {
        if !items.iter().any(|e| same_element(def, e, &n)) {
            if is_primary(&n) {
                added_primary = Some(items.len());
            }
            items.push(n);
        }
    }
    if let Some(keep) = added_primary {
        clear_other_primaries(&mut items, keep);
    }
    put_list(container, def.name, items);
    Ok(())
}

/// `name.givenName`: one sub-attribute of a single-valued complex attribute.
fn set_sub_of_complex(
    container: &mut Map<String, Value>,
    t: &Target<'_>,
    sub: &'static AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    let def = t.def;
    let new = coerce_single(sub, value, &t.name())?;
    let mut obj = take_object(container, def.name);
    set_sub(&mut obj, sub, new, def)?;
    put_object(container, def.name, obj);
    Ok(())
}

/// A whole single-valued complex attribute: null removes it, a bare value sets its `value`
/// sub-attribute, an object is merged into it.
fn set_complex(
    container: &mut Map<String, Value>,
    def: &'static AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    match value {
        Value::Null => {
            remove_ci(container, def.name);
        }
        // A bare value for an attribute with a `value` sub-attribute (Entra's flag-on
        // `manager`): that sub-attribute, replacing the whole value.
        Value::String(_) | Value::Number(_) | Value::Bool(_) if def.sub("value").is_some() => {
            match coerce_single(def, value, def.name)? {
                Some(obj) => put_object(container, def.name, obj),
                None => {
                    remove_ci(container, def.name);
                }
            }
        }
        Value::Object(patch) => {
            let mut obj = take_object(container, def.name);
            merge_into(&mut obj, def, patch)?;
            put_object(container, def.name, obj);
        }
        _ => return Err(invalid_value(def.name, "an object of sub-attributes", value)),
    }
    Ok(())
}

/// A single-valued simple attribute; an `immutable` one may only be set when unset or to
/// its current value.
fn set_single(
    container: &mut Map<String, Value>,
    def: &'static AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    let new = coerce_single(def, value, def.name)?;
    let old = get_ci(container, def.name).filter(|v| !v.is_null());
    if def.mutability == Mutability::Immutable && old.is_some() && old != new.as_ref() {
        return Err(immutable(def.name));
    }
    match new {
        Some(new) => insert_ci(container, def.name, new),
        None => {
            remove_ci(container, def.name);
        }
    }
    Ok(())
}

/// `add`/`replace` at `attr[filter]` or `attr[filter].sub`: update the matching elements;
/// when none matches and the filter is made of `eq`s, add an element built from them
/// (Entra's `emails[type eq "work"].value` on a user without a work e-mail). A `replace`
/// without a sub-attribute that matches nothing is `noTarget` (RFC 7644 §3.5.2.3).
fn set_filtered(
    work: &mut Value,
    t: &Target<'_>,
    filter: &Filter,
    value: &Value,
    is_add: bool,
) -> Result<(), ScimError> {
    let def = t.def;
    let Some(container) = container_mut(work, t.ext, true)? else {
        return Ok(());
    };
    let mut items = take_list(container, def.name);
    let matching: Vec<usize> = (0..items.len()).filter(|&i| filter.matches_element(&items[i], def)).collect();
    if matching.is_empty() {
        let template = filter.element_template().filter(|_| t.sub.is_some() || is_add);
        let Some(template) = template else {
            put_list(container, def.name, items);
            return Err(ScimError::new(
                ScimType::NoTarget,
                format!("no value of \"{}\" matches [{filter}]", def.name),
            ));
        };
        if value.is_null() {
            put_list(container, def.name, items);
            return Ok(());
        }
        let element = element_from_template(t, template, value)?;
        let new_primary = is_primary(&element).then_some(items.len());
        items.push(element);
        if let Some(keep) = new_primary {
            clear_other_primaries(&mut items, keep);
        }
    } else {
        update_matching(&mut items, &matching, t, value)?;
    }
    items.retain(|e| !is_empty(e));
    put_list(container, def.name, items);
    Ok(())
}

/// The element a filtered `add`/`replace` that matched nothing adds: the filter's `eq`
/// pairs, with `value` set at the target's sub-attribute or merged in as an object.
fn element_from_template(
    t: &Target<'_>,
    template: Vec<(&str, Value)>,
    value: &Value,
) -> Result<Value, ScimError> {
    let def = t.def;
    let mut element = Value::Object(Map::new());
    for (name, v) in template {
        let Some(sub) = def.sub(name) else { continue };
        let v = coerce_single(sub, &v, &format!("{}.{}", def.name, sub.name))?;
        set_sub(&mut element, sub, v, def)?;
    }
    match (t.sub, value) {
        (Some(sub), v) => {
            let v = coerce_single(sub, v, &t.name())?;
            set_sub(&mut element, sub, v, def)?;
        }
        (None, Value::Object(patch)) => merge_into(&mut element, def, patch)?,
        (None, v) => return Err(invalid_value(def.name, "an object of sub-attributes", v)),
    }
    Ok(element)
}

/// A filtered `add`/`replace` on the `matching` elements: set the target's sub-attribute,
/// merge an object in, or (a null value) remove the element.
fn update_matching(
    items: &mut Vec<Value>,
    matching: &[usize],
    t: &Target<'_>,
    value: &Value,
) -> Result<(), ScimError> {
    let def = t.def;
    let new_sub = match t.sub {
        Some(sub) => Some((sub, coerce_single(sub, value, &t.name())?)),
        None => None,
    };
    let mut new_primary = None;
    let mut removed = Vec::new();
    for &i in matching {
        let item = &mut items[i];
        match (&new_sub, value) {
            (Some((sub, v)), _) => set_sub(item, sub, v.clone(), def)?,
            (None, Value::Null) => removed.push(i),
            (None, Value::Object(patch)) => merge_into(item, def, patch)?,
            (None, v) => return Err(invalid_value(def.name, "an object of sub-attributes", v)),
        }
        if is_primary(item) {
            new_primary = Some(i);
        }
    }
    if let Some(keep) = new_primary {
        clear_other_primaries(items, keep);
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !removed.contains(&(i - 1))
    });
    Ok(())
}

/// `remove` at `target`; `value` (Entra legacy, authentik) lists the elements of a
/// multi-valued attribute to remove.
fn remove(work: &mut Value, t: &Target<'_>, value: Option<&Value>) -> Result<(), ScimError> {
    let def = t.def;
    let Some(container) = container_mut(work, t.ext, false)? else {
        return Ok(());
    };
    if def.multi_valued {
        let mut items = take_list(container, def.name);
        match (t.filter, t.sub) {
            (Some(filter), None) => items.retain(|e| !filter.matches_element(e, def)),
            (filter, Some(sub)) => {
                for item in &mut items {
                    if filter.is_none_or(|f| f.matches_element(item, def)) {
                        set_sub(item, sub, None, def)?;
                    }
                }
                items.retain(|e| !is_empty(e));
            }
            // An explicit value list (even an empty one) removes only those elements;
            // no value removes them all.
            (None, None) => match value {
                Some(v) if !v.is_null() => {
                    let gone = coerce_multi(def, v)?;
                    items.retain(|e| !gone.iter().any(|g| same_element(def, e, g)));
                }
                _ => items.clear(),
            },
        }
        put_list(container, def.name, items);
        return Ok(());
    }
    match t.sub {
        Some(sub) => {
            if let Some(mut obj) = remove_ci(container, def.name) {
                set_sub(&mut obj, sub, None, def)?;
                if !is_empty(&obj) {
                    put_object(container, def.name, obj);
                }
            }
        }
        None => {
            if def.mutability == Mutability::Immutable
                && get_ci(container, def.name).is_some_and(|v| !is_empty(v))
            {
                return Err(immutable(def.name));
            }
            remove_ci(container, def.name);
        }
    }
    Ok(())
}

// === values ===

/// Coerce one value for `def` (a simple attribute, a sub-attribute, or one element of a
/// complex attribute). `Ok(None)` means "unassigned" (`null`, `""`, an empty object).
fn coerce_single(def: &'static AttributeDef, value: &Value, name: &str) -> Result<Option<Value>, ScimError> {
    match (def.type_, value) {
        (_, Value::Null) => Ok(None),
        (AttrType::Complex, Value::Object(map)) => {
            let mut obj = Value::Object(Map::new());
            merge_into(&mut obj, def, map)?;
            Ok((!is_empty(&obj)).then_some(obj))
        }
        // `"value": ["u1"]` (Microsoft's tests): a bare value of a complex attribute that
        // has a `value` sub-attribute.
        (AttrType::Complex, v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
            match def.sub("value") {
                Some(value_def) => {
                    let inner = coerce_single(value_def, v, &format!("{name}.value"))?;
                    Ok(inner.map(|inner| Value::Object(Map::from_iter([(value_def.name.to_owned(), inner)]))))
                }
                None => Err(invalid_value(name, "an object of sub-attributes", v)),
            }
        }
        (AttrType::Complex, v) => Err(invalid_value(name, "an object of sub-attributes", v)),
        (AttrType::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(*b))),
        (AttrType::Boolean, Value::String(s)) => match parse_bool(s.trim()) {
            Some(b) => Ok(Some(Value::Bool(b))),
            None => Err(invalid_value(name, "a boolean", value)),
        },
        (AttrType::Boolean, v) => Err(invalid_value(name, "a boolean", v)),
        (AttrType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(value.clone())),
        (AttrType::Integer, v) => Err(invalid_value(name, "an integer", v)),
        (AttrType::Decimal, Value::Number(_)) => Ok(Some(value.clone())),
        (AttrType::Decimal, v) => Err(invalid_value(name, "a number", v)),
        (AttrType::DateTime, Value::String(s)) if s.is_empty() => Ok(None),
        (AttrType::DateTime, Value::String(s)) if parse_datetime(s).is_some() => Ok(Some(value.clone())),
        (AttrType::DateTime, v) => Err(invalid_value(name, "an RFC 3339 date-time", v)),
        (AttrType::String | AttrType::Reference | AttrType::Binary, Value::String(s)) => {
            Ok((!s.is_empty()).then(|| value.clone()))
        }
        (AttrType::String | AttrType::Reference | AttrType::Binary, v) => {
            Err(invalid_value(name, "a string", v))
        }
    }
}

/// Coerce the value of a multi-valued attribute: a list (a single element is taken as a
/// one-element list); unassigned elements are dropped.
fn coerce_multi(def: &'static AttributeDef, value: &Value) -> Result<Vec<Value>, ScimError> {
    let items: &[Value] = match value {
        Value::Null => &[],
        Value::Array(items) => items,
        v => std::slice::from_ref(v),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(v) = coerce_single(def, item, def.name)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// Merge the sub-attributes of `patch` into the object `obj` (an element or a single
/// complex value of `def`): `null` removes a sub-attribute, read-only ones are ignored,
/// unknown ones are `invalidPath` (unless null or empty).
fn merge_into(
    obj: &mut Value,
    def: &'static AttributeDef,
    patch: &Map<String, Value>,
) -> Result<(), ScimError> {
    for (key, v) in patch {
        let Some(sub) = def.sub(key) else {
            if is_empty(v) {
                continue;
            }
            return Err(ScimError::new(
                ScimType::InvalidPath,
                format!("unknown attribute \"{}.{}\"", def.name, short(key)),
            ));
        };
        if sub.mutability == Mutability::ReadOnly {
            continue;
        }
        let v = coerce_single(sub, v, &format!("{}.{}", def.name, sub.name))?;
        set_sub(obj, sub, v, def)?;
    }
    Ok(())
}

/// Set (or, with `None`, remove) `sub` in the object `obj`, enforcing immutability: an
/// immutable sub-attribute may be set where it has no value, never changed.
fn set_sub(
    obj: &mut Value,
    sub: &'static AttributeDef,
    new: Option<Value>,
    parent: &AttributeDef,
) -> Result<(), ScimError> {
    let Value::Object(map) = obj else {
        *obj = Value::Object(Map::new());
        return set_sub(obj, sub, new, parent);
    };
    let old = get_ci(map, sub.name).filter(|v| !v.is_null());
    if sub.mutability == Mutability::Immutable && old.is_some() && old != new.as_ref() {
        return Err(immutable(&format!("{}.{}", parent.name, sub.name)));
    }
    match new {
        Some(new) => insert_ci(map, sub.name, new),
        None => {
            remove_ci(map, sub.name);
        }
    }
    Ok(())
}

/// Two elements of `def` are the same value: equal `value` sub-attributes (per its
/// caseExact) for complex attributes that have one, deep equality otherwise.
fn same_element(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    if let Some(value_def) = def.sub("value") {
        let va = a.as_object().and_then(|m| get_ci(m, "value"));
        let vb = b.as_object().and_then(|m| get_ci(m, "value"));
        if let (Some(va), Some(vb)) = (va, vb) {
            return match (va, vb) {
                (Value::String(x), Value::String(y)) if !value_def.case_exact => {
                    x.to_lowercase() == y.to_lowercase()
                }
                _ => va == vb,
            };
        }
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) if !def.case_exact => x.to_lowercase() == y.to_lowercase(),
        _ => a == b,
    }
}

fn is_primary(v: &Value) -> bool {
    v.as_object().and_then(|m| get_ci(m, "primary")) == Some(&Value::Bool(true))
}

/// RFC 7644 §3.5.2: setting `primary` to true on one value sets it to false on the others.
fn clear_other_primaries(items: &mut [Value], keep: usize) {
    for (i, item) in items.iter_mut().enumerate() {
        if i != keep && is_primary(item) {
            if let Some(map) = item.as_object_mut() {
                insert_ci(map, "primary", Value::Bool(false));
            }
        }
    }
}

/// Null, `""`, `[]`, `{}`, or an object/array of those: the RFC 7643 §2.5 "unassigned".
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.iter().all(is_empty),
        Value::Object(m) => m.values().all(is_empty),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

// === JSON plumbing ===

/// The object holding the target's attribute: the resource, or its extension object
/// (created when `create`; `None` when absent and not created).
fn container_mut<'a>(
    work: &'a mut Value,
    ext: Option<&SchemaDef>,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, ScimError> {
    let Some(top) = work.as_object_mut() else {
        return Err(ScimError::new(ScimType::InvalidValue, "the resource is not a JSON object"));
    };
    let Some(ext) = ext else {
        return Ok(Some(top));
    };
    let key = match key_ci(top, ext.id) {
        Some(key) if top.get(&key).is_some_and(Value::is_object) => key,
        Some(key) if create => {
            top.insert(key.clone(), Value::Object(Map::new()));
            key
        }
        None if create => {
            top.insert(ext.id.to_owned(), Value::Object(Map::new()));
            ext.id.to_owned()
        }
        _ => return Ok(None),
    };
    Ok(top.get_mut(&key).and_then(Value::as_object_mut))
}

fn remove_ci(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = key_ci(map, name)?;
    map.shift_remove(&key)
}

/// Insert under the canonical `name`, replacing a key spelled in another case in place.
fn insert_ci(map: &mut Map<String, Value>, name: &str, v: Value) {
    match key_ci(map, name) {
        Some(key) if key == name => {
            map.insert(key, v);
        }
        Some(key) => {
            map.shift_remove(&key);
            map.insert(name.to_owned(), v);
        }
        None => {
            map.insert(name.to_owned(), v);
        }
    }
}

fn take_list(map: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match remove_ci(map, name) {
        Some(Value::Array(items)) => items,
        Some(Value::Object(obj)) => vec![Value::Object(obj)],
        _ => Vec::new(),
    }
}

/// Removes `name` from `container` as an object (an empty one if it was absent or not one).
fn take_object(container: &mut Map<String, Value>, name: &str) -> Value {
    match remove_ci(container, name) {
        Some(Value::Object(m)) => Value::Object(m),
        _ => Value::Object(Map::new()),
    }
}

/// Store a list; an empty list leaves the attribute unassigned.
fn put_list(map: &mut Map<String, Value>, name: &str, items: Vec<Value>) {
    if items.is_empty() {
        remove_ci(map, name);
    } else {
        insert_ci(map, name, Value::Array(items));
    }
}

/// Store a complex value; an empty one leaves the attribute unassigned.
fn put_object(map: &mut Map<String, Value>, name: &str, obj: Value) {
    if is_empty(&obj) {
        remove_ci(map, name);
    } else {
        insert_ci(map, name, obj);
    }
}

/// Drop emptied extension objects and keep `schemas` in step with the extensions present.
fn tidy_extensions(work: &mut Value, rt: &ResourceTypeDef) {
    let Some(top) = work.as_object_mut() else {
        return;
    };
    for (ext, _) in rt.extensions {
        let present = match get_ci(top, ext.id) {
            Some(v) if !is_empty(v) => true,
            Some(_) => {
                remove_ci(top, ext.id);
                false
            }
            None => false,
        };
        let Some(Value::Array(schemas)) = top.get_mut("schemas") else {
            continue;
        };
        let listed = schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
        if present && !listed {
            schemas.push(Value::String(ext.id.to_owned()));
        } else if !present && listed {
            schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
        }
    }
}

/// RFC 7644 §3.5.2.2: a required attribute that the PATCH removed or emptied → mutability.
fn check_required(before: &Value, after: &Value, rt: &ResourceTypeDef) -> Result<(), ScimError> {
    let present =
        |v: &Value, name: &str| v.as_object().and_then(|m| get_ci(m, name)).is_some_and(|v| !is_empty(v));
    for def in rt.schema.attributes.iter().filter(|a| a.required) {
        if present(before, def.name) && !present(after, def.name) {
            return Err(ScimError::new(
                ScimType::Mutability,
                format!("required attribute \"{}\" cannot be removed", def.name),
            ));
        }
    }
    Ok(())
}

// === errors ===

fn syntax(detail: impl Into<String>) -> ScimError {
    ScimError::new(ScimType::InvalidSyntax, detail)
}

fn invalid_value(name: &str, expected: &str, got: &Value) -> ScimError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ScimError::new(ScimType::InvalidValue, format!("attribute \"{name}\" must be {expected}, not {kind}"))
}

fn immutable(name: &str) -> ScimError {
    ScimError::new(ScimType::Mutability, format!("attribute \"{name}\" is immutable and already has a value"))
}

/// At most 100 characters of client input, for error details.
fn short(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests;
