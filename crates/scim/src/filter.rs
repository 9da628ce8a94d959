//! RFC 7644 §3.4.2.2 filters: parsed once into an AST, evaluated on SCIM JSON resources.
//!
//! Parse once with [`Filter::parse`], check it against a resource type with
//! [`Filter::validate`], then evaluate with [`Filter::matches`]; [`Filter::eq_constraint`],
//! [`Filter::email_constraint`] and [`Filter::mentions`] let callers use an index or skip work.
//!
//! Grammar accepted (RFC 7644 §3.4.2.2, plus what IdPs send):
//!
//! ```text
//! filter   = or
//! or       = and *("or" and)
//! and      = unary *("and" unary)
//! unary    = "not" unary / "(" filter ")" / valuePath / attrExp
//! attrExp  = attrPath "pr" / attrPath compareOp value
//! valuePath= attrPath "[" valFilter "]" [ "." subAttr ( "pr" / compareOp value ) ]
//! value    = JSON string / true / false / null / JSON number / bare word (taken as a string)
//! ```
//!
//! Keywords and attribute names are case-insensitive; `and`/`or` chains are flattened into
//! one node, so only parentheses, `not` and `[` nest (capped at [`MAX_FILTER_DEPTH`]).
//! Parsing is a single pass over at most [`MAX_FILTER_LEN`] bytes; recursion is bounded by
//! the depth cap, so no input can exhaust the stack.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::path::{get_ci, is_attr_name, AttrPath, Resolved};
use super::schema::{AttrType, AttributeDef, ResourceTypeDef};
use super::{ScimError, ScimType};

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and value filters accepted.
pub const MAX_FILTER_DEPTH: usize = 32;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `path pr`
    Present(AttrPath),
    /// `attr[filter]`, optionally followed by `.sub op value` (`then`): some element of
    /// `attr` satisfies `filter` (and `then`, evaluated on that same element). Attribute
    /// paths inside are relative to the element.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
        then: Option<Box<Filter>>,
    },
    /// Every operand matches (two or more).
    And(Vec<Filter>),
    /// Some operand matches (two or more).
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// RFC 7644 Table 3 comparison operators (`pr` is [`Filter::Present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A comparison literal.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    /// A JSON number, kept as written (`007` stays `007` when compared with a string).
    Number(String),
    /// A JSON string, or a bare word (`externalId eq jyoung`).
    String(String),
}

// === impl Filter ===

impl Filter {
    /// Parse a filter expression. Errors are `invalidFilter`, naming the problem and its
    /// (0-based, in characters) position.
    pub fn parse(input: &str) -> Result<Filter, ScimError> {
        Parser::new(input, false)?.parse_all()
    }

    /// Parse the inside of a value filter (`type eq "work"` in `emails[type eq "work"]`):
    /// nested value filters are refused.
    pub(crate) fn parse_value_filter(input: &str) -> Result<Filter, ScimError> {
        Parser::new(input, true)?.parse_all()
    }

    /// Check every attribute against `rt` (core, extensions, common attributes and
    /// `externalId`) and every operator and literal against the attribute's type.
    pub fn validate(&self, rt: &ResourceTypeDef) -> Result<(), ScimError> {
        self.validate_in(Scope::Resource(rt))
    }

    /// Whether `resource` satisfies the filter. Multi-valued attributes match if any value
    /// does; case sensitivity follows each attribute's `caseExact`.
    pub fn matches(&self, resource: &Value, rt: &ResourceTypeDef) -> bool {
        self.eval(Scope::Resource(rt), resource)
    }

    /// Whether `element` (one value of the multi-valued complex attribute `parent`)
    /// satisfies this value filter.
    pub(crate) fn matches_element(&self, element: &Value, parent: &'static AttributeDef) -> bool {
        self.eval(Scope::Element(parent), element)
    }

    /// Validate a value filter whose attribute paths are sub-attributes of `parent`.
    pub(crate) fn validate_element(&self, parent: &'static AttributeDef) -> Result<(), ScimError> {
        self.validate_in(Scope::Element(parent))
    }

    /// Whether the filter refers to the top-level attribute `attr` anywhere (case-insensitive,
    /// as attribute names are). Paths inside a value filter are relative to their element and
    /// do not count, except the value path's own attribute.
    pub fn mentions(&self, attr: &str) -> bool {
        match self {
            Filter::Compare { path, .. } | Filter::Present(path) => path.attr.eq_ignore_ascii_case(attr),
            Filter::ValuePath { attr: path, .. } => path.attr.eq_ignore_ascii_case(attr),
            Filter::And(operands) | Filter::Or(operands) => operands.iter().any(|f| f.mentions(attr)),
            Filter::Not(inner) => inner.mentions(attr),
        }
    }

    /// `Some(v)` if every match must satisfy `attr eq "v"`: the filter is that comparison,
    /// or an `and` with it among its operands. `attr` is compared case-insensitively; paths
    /// with a sub-attribute or a non-core URN never qualify.
    pub fn eq_constraint(&self, attr: &str) -> Option<&str> {
        match self {
            Filter::Compare { path, op: CompareOp::Eq, value } if path.is(attr) => value.index_key(),
            Filter::And(operands) => operands.iter().find_map(|f| f.eq_constraint(attr)),
            _ => None,
        }
    }

    /// [`eq_constraint`](Self::eq_constraint) for an attribute of the extension `urn`:
    /// `urn:…:attr eq "v"`, or `attr eq "v"` without the URN.
    pub fn extension_eq_constraint(&self, urn: &str, attr: &str) -> Option<&str> {
        match self {
            Filter::Compare { path, op: CompareOp::Eq, value }
                if path.sub.is_none()
                    && path.attr.eq_ignore_ascii_case(attr)
                    && path.urn.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(urn)) =>
            {
                value.index_key()
            }
            Filter::And(operands) => operands.iter().find_map(|f| f.extension_eq_constraint(urn, attr)),
            _ => None,
        }
    }

    /// `Some(v)` if every match must have an `emails` element whose `value` equals `v`:
    /// `emails.value eq "v"`, `emails[value eq "v" …]`, Entra's `emails[type eq "work"].value
    /// eq "v"`, or an `and` with one of those among its operands. Like
    /// [`eq_constraint`](Self::eq_constraint), it only narrows candidates; the whole filter
    /// still decides.
    pub fn email_constraint(&self) -> Option<&str> {
        let is_emails = |path: &AttrPath| path.attr.eq_ignore_ascii_case("emails") && path.has_core_urn();
        match self {
            Filter::Compare { path, op: CompareOp::Eq, value }
                if is_emails(path)
                    && path.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("value")) =>
            {
                value.index_key()
            }
            Filter::ValuePath { attr, filter, then } if is_emails(attr) && attr.sub.is_none() => match then {
                Some(then) => then.eq_constraint("value").or_else(|| filter.eq_constraint("value")),
                None => filter.eq_constraint("value"),
            },
            Filter::And(operands) => operands.iter().find_map(Filter::email_constraint),
            _ => None,
        }
    }

    /// For a value filter made only of `sub eq value` conjuncts, those pairs as JSON: the
    /// element a PATCH `replace` creates when no element matches (what Entra expects for
    /// `emails[type eq "work"].value`).
    pub(crate) fn element_template(&self) -> Option<Vec<(&str, Value)>> {
        match self {
            Filter::Compare { path, op: CompareOp::Eq, value }
                if path.urn.is_none() && path.sub.is_none() =>
            {
                let v = match value {
                    CompValue::Null => return None,
                    CompValue::Bool(b) => Value::Bool(*b),
                    CompValue::Number(n) | CompValue::String(n) => Value::String(n.clone()),
                };
                Some(vec![(path.attr.as_str(), v)])
            }
            Filter::And(operands) => {
                let mut pairs = Vec::new();
                for f in operands {
                    pairs.extend(f.element_template()?);
                }
                Some(pairs)
            }
            _ => None,
        }
    }

    fn validate_in(&self, scope: Scope<'_>) -> Result<(), ScimError> {
        match self {
            Filter::Compare { path, op, value } => {
                let def = scope.leaf_def(path, true)?;
                check_comparison(path, *op, value, def)
            }
            Filter::Present(path) => scope.leaf_def(path, false).map(|_| ()),
            Filter::ValuePath { attr, filter, then } => {
                let Scope::Resource(rt) = scope else {
                    return Err(invalid_filter(format!("nested value filter on \"{attr}\"")));
                };
                let resolved = resolve_top(attr, rt)?;
                if resolved.def.type_ != AttrType::Complex {
                    return Err(invalid_filter(format!(
                        "\"{attr}\" is not a complex attribute and cannot take a value filter"
                    )));
                }
                filter.validate_in(Scope::Element(resolved.def))?;
                match then {
                    Some(then) => then.validate_in(Scope::Element(resolved.def)),
                    None => Ok(()),
                }
            }
            Filter::And(fs) | Filter::Or(fs) => fs.iter().try_for_each(|f| f.validate_in(scope)),
            Filter::Not(f) => f.validate_in(scope),
        }
    }

    fn eval(&self, scope: Scope<'_>, node: &Value) -> bool {
        match self {
            Filter::Compare { path, op, value } => {
                let (leaves, def) = scope.leaves(path, node, true);
                compare_leaves(&leaves, *op, value, def)
            }
            Filter::Present(path) => {
                let (leaves, _) = scope.leaves(path, node, false);
                leaves.iter().any(|v| is_present(v))
            }
            Filter::ValuePath { attr, filter, then } => {
                let Scope::Resource(rt) = scope else {
                    return false;
                };
                let Some(resolved) = attr.resolve(rt) else {
                    return false;
                };
                let Some(value) = lookup_top(node, &resolved) else {
                    return false;
                };
                let parent = resolved.def;
                let elements: &[Value] = match value {
                    Value::Array(items) => items,
                    Value::Object(_) => std::slice::from_ref(value),
                    _ => &[],
                };
                elements.iter().any(|e| {
                    filter.eval(Scope::Element(parent), e)
                        && then.as_ref().is_none_or(|t| t.eval(Scope::Element(parent), e))
                })
            }
            Filter::And(fs) => fs.iter().all(|f| f.eval(scope, node)),
            Filter::Or(fs) => fs.iter().any(|f| f.eval(scope, node)),
            Filter::Not(f) => !f.eval(scope, node),
        }
    }

    /// Writes `self` as an operand of a parent with `parent_prec` (or 0 at top level).
    fn fmt_prec(&self, f: &mut fmt::Formatter<'_>, parent_prec: u8) -> fmt::Result {
        let (prec, sep, operands) = match self {
            Filter::Or(fs) => (1, " or ", fs),
            Filter::And(fs) => (2, " and ", fs),
            Filter::Compare { path, op, value } => return write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(path) => return write!(f, "{path} pr"),
            Filter::Not(inner) => {
                f.write_str("not (")?;
                inner.fmt_prec(f, 0)?;
                return f.write_str(")");
            }
            Filter::ValuePath { attr, filter, then } => {
                write!(f, "{attr}[")?;
                filter.fmt_prec(f, 0)?;
                f.write_str("]")?;
                if let Some(then) = then {
                    f.write_str(".")?;
                    then.fmt_prec(f, 3)?;
                }
                return Ok(());
            }
        };
        let paren = prec <= parent_prec;
        if paren {
            f.write_str("(")?;
        }
        for (i, operand) in operands.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            operand.fmt_prec(f, prec)?;
        }
        if paren {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Canonical text: lower-case keywords, JSON-quoted strings, parentheses only where needed.
/// Parsing the output gives back an equal filter.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_prec(f, 0)
    }
}

// === impl CompareOp ===

impl CompareOp {
    fn from_keyword(word: &str) -> Option<CompareOp> {
        const OPS: [(&str, CompareOp); 9] = [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ];
        OPS.iter().find(|(k, _)| k.eq_ignore_ascii_case(word)).map(|(_, op)| *op)
    }

    /// The lower-case keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le)
    }

    fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

// === impl CompValue ===

impl CompValue {
    /// A string or number literal as an index key (`null` and booleans are no key).
    fn index_key(&self) -> Option<&str> {
        match self {
            CompValue::String(s) | CompValue::Number(s) => Some(s),
            CompValue::Null | CompValue::Bool(_) => None,
        }
    }

    /// The literal as text, for string comparisons (`None` for `null`).
    fn as_text(&self) -> Option<&str> {
        match self {
            CompValue::Null => None,
            CompValue::Bool(true) => Some("true"),
            CompValue::Bool(false) => Some("false"),
            CompValue::Number(s) | CompValue::String(s) => Some(s),
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            CompValue::Bool(b) => Some(*b),
            CompValue::String(s) => parse_bool(s),
            CompValue::Null | CompValue::Number(_) => None,
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => f.write_str(n),
            CompValue::String(s) => f.write_str(&Value::String(s.clone()).to_string()),
        }
    }
}

// === evaluation ===

/// Where attribute paths are resolved: against the resource type, or (inside `[...]`)
/// against the sub-attributes of a multi-valued complex attribute.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(&'a ResourceTypeDef),
    Element(&'static AttributeDef),
}

impl Scope<'_> {
    /// The definition a comparison on `path` compares against (validating the path).
    fn leaf_def(self, path: &AttrPath, implicit_value: bool) -> Result<&'static AttributeDef, ScimError> {
        match self {
            Scope::Resource(rt) => {
                let r = resolve_top(path, rt)?;
                Ok(match (r.sub, r.def.sub("value")) {
                    (Some(sub), _) => sub,
                    (None, Some(value)) if implicit_value => value,
                    (None, _) => r.def,
                })
            }
            Scope::Element(parent) => {
                let sub = match (&path.urn, &path.sub) {
                    (None, None) => parent.sub(&path.attr),
                    _ => None,
                };
                sub.ok_or_else(|| invalid_filter(format!("unknown attribute \"{}.{}\"", parent.name, path)))
            }
        }
    }

    /// The values `path` selects in `node` (arrays flattened, nulls dropped), and the
    /// definition they follow. With `implicit_value`, a complex attribute named without a
    /// sub-attribute (`members eq "42"`, Entra's `manager eq "7"`) means its `value`
    /// sub-attribute.
    fn leaves<'v>(
        self,
        path: &AttrPath,
        node: &'v Value,
        implicit_value: bool,
    ) -> (Vec<&'v Value>, Option<&'static AttributeDef>) {
        let mut out = Vec::new();
        match self {
            Scope::Resource(rt) => {
                let Some(resolved) = path.resolve(rt) else {
                    // Not validated: follow the JSON by name, compare case-insensitively.
                    if let Some(top) = node.as_object().and_then(|m| get_ci(m, &path.attr)) {
                        collect(top, path.sub.as_deref(), &mut out);
                    }
                    return (out, None);
                };
                let (sub_name, def) = match resolved.sub {
                    Some(sub) => (Some(sub.name), sub),
                    None => match resolved.def.sub("value") {
                        Some(value) if implicit_value => (Some(value.name), value),
                        _ => (None, resolved.def),
                    },
                };
                if let Some(top) = lookup_top(node, &resolved) {
                    collect(top, sub_name, &mut out);
                }
                (out, Some(def))
            }
            Scope::Element(parent) => {
                if path.urn.is_some() || path.sub.is_some() {
                    return (out, None);
                }
                if let Some(v) = node.as_object().and_then(|m| get_ci(m, &path.attr)) {
                    collect(v, None, &mut out);
                }
                (out, parent.sub(&path.attr))
            }
        }
    }
}

fn resolve_top(path: &AttrPath, rt: &ResourceTypeDef) -> Result<Resolved, ScimError> {
    path.resolve(rt).ok_or_else(|| invalid_filter(format!("unknown attribute \"{path}\"")))
}

/// The value of a resolved top-level attribute in `resource` (inside the extension's
/// object for extension attributes).
pub(crate) fn lookup_top<'v>(resource: &'v Value, resolved: &Resolved) -> Option<&'v Value> {
    let mut container = resource.as_object()?;
    if let Some(ext) = resolved.ext {
        container = get_ci(container, ext.id)?.as_object()?;
    }
    get_ci(container, resolved.def.name)
}

fn collect<'v>(value: &'v Value, sub: Option<&str>, out: &mut Vec<&'v Value>) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                match (sub, item) {
                    (Some(sub), Value::Object(m)) => {
                        if let Some(v) = get_ci(m, sub) {
                            flatten(v, out);
                        }
                    }
                    (Some(_), _) | (None, Value::Null) => {}
                    (None, v) => out.push(v),
                }
            }
        }
        Value::Object(m) => match sub {
            Some(sub) => {
                if let Some(v) = get_ci(m, sub) {
                    flatten(v, out);
                }
            }
            None => out.push(value),
        },
        v => {
            if sub.is_none() {
                out.push(v);
            }
        }
    }
}

fn flatten<'v>(value: &'v Value, out: &mut Vec<&'v Value>) {
    match value {
        Value::Null => {}
        Value::Array(items) => out.extend(items.iter().filter(|v| !v.is_null())),
        v => out.push(v),
    }
}

/// `pr`: present and not null, `""`, `[]` or `{}` (nor an array/object of those).
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(|v| match v {
            Value::Object(m) => m.values().any(is_scalar_present),
            v => is_scalar_present(v),
        }),
        Value::Object(m) => m.values().any(is_scalar_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn is_scalar_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare_leaves(leaves: &[&Value], op: CompareOp, lit: &CompValue, def: Option<&AttributeDef>) -> bool {
    match (op, lit) {
        (CompareOp::Eq, CompValue::Null) => !leaves.iter().any(|v| is_present(v)),
        (CompareOp::Ne, CompValue::Null) => leaves.iter().any(|v| is_present(v)),
        (_, CompValue::Null) => false,
        // `ne` holds when no value equals the literal (an absent attribute included).
        (CompareOp::Ne, _) => !leaves.iter().any(|v| compare(v, CompareOp::Eq, lit, def)),
        _ => leaves.iter().any(|v| compare(v, op, lit, def)),
    }
}

/// One value against one literal, by the attribute's type (or the JSON type when the
/// attribute is unknown).
fn compare(value: &Value, op: CompareOp, lit: &CompValue, def: Option<&AttributeDef>) -> bool {
    let type_ = def.map(|d| d.type_).unwrap_or(match value {
        Value::Bool(_) => AttrType::Boolean,
        Value::Number(_) => AttrType::Decimal,
        _ => AttrType::String,
    });
    match type_ {
        AttrType::Boolean => {
            let (Some(a), Some(b)) = (json_bool(value), lit.as_bool()) else {
                return false;
            };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                _ => false,
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            let a = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            let b = lit.as_text().and_then(|s| s.trim().parse::<f64>().ok());
            match (a, b) {
                (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|ord| ordering_holds(op, ord)),
                _ => false,
            }
        }
        AttrType::DateTime => {
            let (Some(a), Some(b)) = (value.as_str(), lit.as_text()) else {
                return false;
            };
            match (parse_datetime(a), parse_datetime(b)) {
                (Some(a), Some(b)) if !op.is_substring() => ordering_holds(op, a.cmp(&b)),
                _ => compare_text(a, b, op, true),
            }
        }
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::Complex => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return false,
            };
            let Some(lit) = lit.as_text() else {
                return false;
            };
            compare_text(&text, lit, op, def.is_some_and(|d| d.case_exact))
        }
    }
}

fn compare_text(a: &str, b: &str, op: CompareOp, case_exact: bool) -> bool {
    let (a, b) = if case_exact { (a.to_owned(), b.to_owned()) } else { (a.to_lowercase(), b.to_lowercase()) };
    match op {
        CompareOp::Co => a.contains(&b),
        CompareOp::Sw => a.starts_with(&b),
        CompareOp::Ew => a.ends_with(&b),
        _ => ordering_holds(op, a.cmp(&b)),
    }
}

fn ordering_holds(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn json_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

/// `true`/`false` in any case (Entra sends `"True"`/`"False"`).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// An RFC 3339 date-time (xsd:dateTime as RFC 7643 §2.3.5 requires), as an instant.
pub(crate) fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Type checks for `path op value` once `path` resolved to `def`.
fn check_comparison(
    path: &AttrPath,
    op: CompareOp,
    value: &CompValue,
    def: &AttributeDef,
) -> Result<(), ScimError> {
    let not_applicable = |what: &str| {
        Err(invalid_filter(format!(
            "operator {} is not applicable to {what} attribute \"{path}\"",
            op.as_str()
        )))
    };
    if *value == CompValue::Null {
        return match op {
            CompareOp::Eq | CompareOp::Ne => Ok(()),
            _ => Err(invalid_filter(format!(
                "null can only be compared with eq or ne (\"{path} {} null\")",
                op.as_str()
            ))),
        };
    }
    match def.type_ {
        AttrType::Boolean => {
            if op.is_ordering() || op.is_substring() {
                return not_applicable("boolean");
            }
            if value.as_bool().is_none() {
                return Err(invalid_filter(format!(
                    "\"{path}\" is boolean: compare it with true or false, not {value}"
                )));
            }
        }
        AttrType::Binary if op.is_ordering() => return not_applicable("binary"),
        AttrType::Complex => {
            // Only reached for complex attributes without a `value` sub-attribute.
            return Err(invalid_filter(format!(
                "\"{path}\" is a complex attribute: compare one of its sub-attributes (e.g. \"{path}.{}\")",
                def.sub_attributes.first().map_or("value", |s| s.name)
            )));
        }
        AttrType::Integer | AttrType::Decimal => {
            if op.is_substring() {
                return not_applicable("numeric");
            }
            if value.as_text().and_then(|s| s.parse::<f64>().ok()).is_none() {
                return Err(invalid_filter(format!("\"{path}\" is numeric: {value} is not a number")));
            }
        }
        AttrType::DateTime => {
            if !op.is_substring() && value.as_text().and_then(parse_datetime).is_none() {
                return Err(invalid_filter(format!(
                    "\"{path}\" is a date-time: {value} is not an RFC 3339 date-time"
                )));
            }
        }
        AttrType::String | AttrType::Reference | AttrType::Binary => {}
    }
    Ok(())
}

fn invalid_filter(detail: String) -> ScimError {
    ScimError::new(ScimType::InvalidFilter, detail)
}

// === parsing ===

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(&'a str),
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Str(s) => format!("string {}", Value::String(s.chars().take(40).collect())),
            Tok::Word(w) => format!("\"{}\"", w.chars().take(40).collect::<String>()),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    toks: Vec<(Tok<'a>, usize)>,
    pos: usize,
    /// Parsing the inside of `[...]`: nested value filters are refused.
    value_filter: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, value_filter: bool) -> Result<Self, ScimError> {
        if input.len() > MAX_FILTER_LEN {
            return Err(invalid_filter(format!(
                "filter is {} bytes long; the limit is {MAX_FILTER_LEN}",
                input.len()
            )));
        }
        let toks = tokenize(input)?;
        Ok(Parser { input, toks, pos: 0, value_filter })
    }

    fn parse_all(mut self) -> Result<Filter, ScimError> {
        if self.toks.is_empty() {
            return Err(invalid_filter("empty filter".into()));
        }
        let f = self.parse_or(0)?;
        match self.toks.get(self.pos) {
            None => Ok(f),
            Some((tok, at)) => {
                Err(self
                    .error(*at, &format!("unexpected {} (expected 'and', 'or' or the end)", tok.describe())))
            }
        }
    }

    fn error(&self, byte: usize, problem: &str) -> ScimError {
        let at = self.input.get(..byte).map_or(0, |s| s.chars().count());
        invalid_filter(format!("{problem} at position {at}"))
    }

    fn end_pos(&self) -> usize {
        self.input.len()
    }

    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn peek_at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_pos(), |(_, at)| *at)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn next(&mut self) -> Option<(Tok<'a>, usize)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn enter(&self, depth: usize) -> Result<usize, ScimError> {
        if depth >= MAX_FILTER_DEPTH {
            Err(self.error(self.peek_at(), &format!("filter nests deeper than {MAX_FILTER_DEPTH} levels")))
        } else {
            Ok(depth + 1)
        }
    }

    fn parse_or(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let mut operands = vec![self.parse_and(depth)?];
        while self.peek_keyword("or") {
            self.pos += 1;
            operands.push(self.parse_and(depth)?);
        }
        Ok(if operands.len() == 1 { operands.swap_remove(0) } else { Filter::Or(operands) })
    }

    fn parse_and(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let mut operands = vec![self.parse_unary(depth)?];
        while self.peek_keyword("and") {
            self.pos += 1;
            operands.push(self.parse_unary(depth)?);
        }
        Ok(if operands.len() == 1 { operands.swap_remove(0) } else { Filter::And(operands) })
    }

    fn parse_unary(&mut self, depth: usize) -> Result<Filter, ScimError> {
        let at = self.peek_at();
        match self.next() {
            None => Err(self.error(at, "expected an expression")),
            Some((Tok::LParen, _)) => {
                let depth = self.enter(depth)?;
                let inner = self.parse_or(depth)?;
                match self.next() {
                    Some((Tok::RParen, _)) => Ok(inner),
                    Some((tok, at)) => {
                        Err(self.error(at, &format!("expected ')' but found {}", tok.describe())))
                    }
                    None => Err(self.error(
                        self.end_pos(),
                        &format!("missing ')' for '(' at position {}", self.char_pos(at)),
                    )),
                }
            }
            Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("not") && self.not_follows() => {
                let depth = self.enter(depth)?;
                // `not (…)` (the RFC form, and how filters print) is one level, like the
                // lenient `not …`: the depth cap means the same for both spellings.
                if matches!(self.toks.get(self.pos), Some((Tok::LParen, _))) {
                    let (_, open) = self.next().ok_or_else(|| self.error(at, "expected '('"))?;
                    let inner = self.parse_or(depth)?;
                    return match self.next() {
                        Some((Tok::RParen, _)) => Ok(Filter::Not(Box::new(inner))),
                        Some((tok, at)) => {
                            Err(self.error(at, &format!("expected ')' but found {}", tok.describe())))
                        }
                        None => Err(self.error(
                            self.end_pos(),
                            &format!("missing ')' for '(' at position {}", self.char_pos(open)),
                        )),
                    };
                }
                Ok(Filter::Not(Box::new(self.parse_unary(depth)?)))
            }
            Some((Tok::Word(w), at)) => self.parse_attr_exp(w, at, depth),
            Some((tok, at)) => {
                Err(self.error(at, &format!("expected an attribute but found {}", tok.describe())))
            }
        }
    }

    fn char_pos(&self, byte: usize) -> usize {
        self.input.get(..byte).map_or(0, |s| s.chars().count())
    }

    /// After the word `not`: it is the operator unless it is an attribute named `not`
    /// (followed by a comparison operator or `pr`).
    fn not_follows(&self) -> bool {
        match self.peek() {
            Some(Tok::LParen) => true,
            Some(Tok::Word(w)) => CompareOp::from_keyword(w).is_none() && !w.eq_ignore_ascii_case("pr"),
            _ => false,
        }
    }

    fn attr_path(&self, word: &str, at: usize) -> Result<AttrPath, ScimError> {
        AttrPath::parse(word).map_err(|_| {
            self.error(
                at,
                &format!("invalid attribute path \"{}\"", word.chars().take(80).collect::<String>()),
            )
        })
    }

    fn parse_attr_exp(&mut self, word: &'a str, at: usize, depth: usize) -> Result<Filter, ScimError> {
        let path = self.attr_path(word, at)?;
        if self.peek() != Some(&Tok::LBracket) {
            return self.parse_comparison(path);
        }
        if self.value_filter {
            return Err(self.error(self.peek_at(), "value filters cannot be nested"));
        }
        if path.sub.is_some() {
            return Err(self.error(self.peek_at(), "a value filter must follow a top-level attribute"));
        }
        let open = self.peek_at();
        self.pos += 1;
        let depth = self.enter(depth)?;
        self.value_filter = true;
        let inner = self.parse_or(depth);
        self.value_filter = false;
        let inner = inner?;
        match self.next() {
            Some((Tok::RBracket, _)) => {}
            Some((tok, at)) => {
                return Err(self.error(at, &format!("expected ']' but found {}", tok.describe())))
            }
            None => {
                return Err(self.error(
                    self.end_pos(),
                    &format!("missing ']' for '[' at position {}", self.char_pos(open)),
                ))
            }
        }
        let then = match self.peek() {
            Some(Tok::Word(w)) if w.starts_with('.') => {
                let (w, at) = (*w, self.peek_at());
                self.pos += 1;
                let sub = &w[1..];
                if !is_attr_name(sub) {
                    return Err(self.error(at, &format!("invalid sub-attribute \"{w}\" after ']'")));
                }
                let sub_path = AttrPath { urn: None, attr: sub.to_owned(), sub: None };
                Some(Box::new(self.parse_comparison(sub_path)?))
            }
            _ => None,
        };
        Ok(Filter::ValuePath { attr: path, filter: Box::new(inner), then })
    }

    fn parse_comparison(&mut self, path: AttrPath) -> Result<Filter, ScimError> {
        let op_at = self.peek_at();
        let op = match self.next() {
            Some((Tok::Word(w), _)) if w.eq_ignore_ascii_case("pr") => return Ok(Filter::Present(path)),
            Some((Tok::Word(w), _)) => CompareOp::from_keyword(w),
            _ => None,
        };
        let Some(op) = op else {
            return Err(self.error(
                op_at,
                &format!("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after \"{path}\""),
            ));
        };
        let value_at = self.peek_at();
        let value = match self.next() {
            Some((Tok::Str(s), _)) => CompValue::String(s),
            Some((Tok::Word(w), _)) => bare_value(w),
            _ => return Err(self.error(value_at, &format!("expected a value after '{}'", op.as_str()))),
        };
        Ok(Filter::Compare { path, op, value })
    }
}

/// An unquoted literal: `true`/`false`/`null` (any case), a JSON number, else a string.
fn bare_value(word: &str) -> CompValue {
    if word.eq_ignore_ascii_case("true") {
        CompValue::Bool(true)
    } else if word.eq_ignore_ascii_case("false") {
        CompValue::Bool(false)
    } else if word.eq_ignore_ascii_case("null") {
        CompValue::Null
    } else if serde_json::from_str::<serde_json::Number>(word).is_ok() {
        CompValue::Number(word.to_owned())
    } else {
        CompValue::String(word.to_owned())
    }
}

fn tokenize(input: &str) -> Result<Vec<(Tok<'_>, usize)>, ScimError> {
    let bytes = input.as_bytes();
    let mut toks = Vec::new();
    let mut chars = input.char_indices().peekable();
    let err = |byte: usize, problem: String| {
        let at = input.get(..byte).map_or(0, |s| s.chars().count());
        invalid_filter(format!("{problem} at position {at}"))
    };
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => toks.push((Tok::LParen, i)),
            ')' => toks.push((Tok::RParen, i)),
            '[' => toks.push((Tok::LBracket, i)),
            ']' => toks.push((Tok::RBracket, i)),
            '"' => {
                let mut j = i + 1;
                let end = loop {
                    match bytes.get(j) {
                        None => return Err(err(i, "unterminated string".into())),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break j,
                        Some(_) => j += 1,
                    }
                };
                let raw = &input[i..=end];
                let s: String =
                    serde_json::from_str(raw).map_err(|e| err(i, format!("invalid string literal ({e})")))?;
                toks.push((Tok::Str(s), i));
                while chars.peek().is_some_and(|(k, _)| *k <= end) {
                    chars.next();
                }
            }
            _ => {
                let mut end = input.len();
                while let Some(&(k, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        end = k;
                        break;
                    }
                    if c.is_control() {
                        // Not part of any SCIM token; only a quoted string may carry one, escaped.
                        return Err(err(k, "control character outside a quoted string".to_string()));
                    }
                    chars.next();
                }
                toks.push((Tok::Word(&input[i..end]), i));
            }
        }
    }
    Ok(toks)
}

#[cfg(test)]
mod tests;
