//! A SCIM request's query, as RFC 7644 §3.4.2 defines it: `filter`, `startIndex`, `count`,
//! `attributes`, `excludedAttributes`, `sortBy`, `sortOrder`, taken from the URL or from a
//! `SearchRequest` body (§3.4.3), and what the answer looks like: paging, projection and the
//! `ListResponse` envelope. The HTTP layer only hands the raw pairs over.

use serde_json::{json, Value};

use crate::error::Error;
use scim::filter::Filter;
use scim::projection::{Projection, SortSpec};
use scim::schema::{ResourceTypeDef, GROUP};
use scim::ScimType;

/// Default page size.
pub const DEFAULT_COUNT: usize = 50;
/// Largest page size (published as `filter.maxResults`).
pub const MAX_COUNT: usize = 500;

/// The SCIM resource types with endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    User,
    Group,
}

/// The query parameters of a SCIM request, as given (parsed on use, so that a bad value is a
/// SCIM error of the request that carries it).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filter: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
}

/// A list request, parsed.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub sort: Option<SortSpec>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub total_results: usize,
    pub start_index: usize,
    pub resources: Vec<Value>,
}

// === impl Query ===

impl Query {
    /// From `key=value` pairs (a URL's query string); keys in any case, unknown keys ignored
    /// (Entra's `aadOptscim062020` among them).
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Query {
        let mut q = Query::default();
        for (key, value) in pairs {
            if let Some(slot) = q.slot(key.as_ref()) {
                *slot = Some(value.into());
            }
        }
        q
    }

    /// From a `SearchRequest` body (RFC 7644 §3.4.3). `attributes` may be an array.
    pub fn from_search_request(body: &Value) -> Result<Query, Error> {
        let obj = body.as_object().ok_or_else(|| {
            Error::invalid(ScimType::InvalidSyntax, "a SearchRequest must be a JSON object")
        })?;
        if let Some(schemas) = obj.get("schemas") {
            let ok = schemas.as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(scim::SEARCH_REQUEST_SCHEMA)))
            });
            if !ok {
                return Err(Error::invalid(
                    ScimType::InvalidValue,
                    format!("schemas must contain {}", scim::SEARCH_REQUEST_SCHEMA),
                ));
            }
        }
        let mut query = Query::default();
        for (key, value) in obj {
            let text = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Array(items) => {
                    Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                }
                Value::Null => None,
                _ => {
                    return Err(Error::invalid(
                        ScimType::InvalidValue,
                        format!("{key} has an unexpected type"),
                    ))
                }
            };
            if let Some(slot) = query.slot(key) {
                *slot = text;
            }
        }
        Ok(query)
    }

    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        Some(match key.to_ascii_lowercase().as_str() {
            "filter" => &mut self.filter,
            "startindex" => &mut self.start_index,
            "count" => &mut self.count,
            "attributes" => &mut self.attributes,
            "excludedattributes" => &mut self.excluded_attributes,
            "sortby" => &mut self.sort_by,
            "sortorder" => &mut self.sort_order,
            _ => return None,
        })
    }

    pub fn projection(&self) -> Result<Projection, Error> {
        Ok(Projection::parse(self.attributes.as_deref(), self.excluded_attributes.as_deref())?)
    }

    /// `startIndex`: 1-based; below 1 counts as 1 (RFC 7644 §3.4.2.4).
    pub fn start_index(&self) -> Result<usize, Error> {
        match self.start_index.as_deref().map(str::trim) {
            None | Some("") => Ok(1),
            Some(s) => s.parse::<i64>().map(|n| n.max(1) as usize).map_err(|_| {
                Error::invalid(ScimType::InvalidValue, format!("startIndex {s:?} is not an integer"))
            }),
        }
    }

    /// `count`: at most [`MAX_COUNT`]; negative counts as 0.
    pub fn count(&self) -> Result<usize, Error> {
        match self.count.as_deref().map(str::trim) {
            None | Some("") => Ok(DEFAULT_COUNT),
            Some(s) => s.parse::<i64>().map(|n| n.clamp(0, MAX_COUNT as i64) as usize).map_err(|_| {
                Error::invalid(ScimType::InvalidValue, format!("count {s:?} is not an integer"))
            }),
        }
    }

    /// The filter, parsed (not yet checked against a schema).
    pub fn parsed_filter(&self) -> Result<Option<Filter>, Error> {
        match self.filter.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(f) => Ok(Some(Filter::parse(f)?)),
        }
    }

    /// Filter, paging and sorting of a list of `rt`.
    pub fn list_query(&self, rt: &ResourceTypeDef) -> Result<ListQuery, Error> {
        Ok(ListQuery {
            filter: self.parsed_filter()?,
            start_index: self.start_index()?,
            count: self.count()?,
            sort: SortSpec::parse(self.sort_by.as_deref(), self.sort_order.as_deref(), rt)?,
        })
    }
}

// === rendering ===

/// A resource as the response carries it: projected, with the `ETag` and `Location` the
/// headers repeat.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: Value,
    pub version: Option<String>,
    pub location: Option<String>,
}

impl Rendered {
    /// `resource` projected for the response; version and location read before projecting
    /// (`meta` may be excluded from the body, never from the headers).
    pub fn new(resource: Value, projection: &Projection, rt: &ResourceTypeDef) -> Rendered {
        let version = resource.pointer("/meta/version").and_then(Value::as_str).map(str::to_string);
        let location = resource.pointer("/meta/location").and_then(Value::as_str).map(str::to_string);
        // The resources provision renders carry nothing a default projection would drop
        // (`returned: request` attributes are only attached on request), so the identity
        // projection is skipped: no copy of the resource on the hot path.
        let body = if projection.is_identity() { resource } else { projection.apply(&resource, rt) };
        Rendered { body, version, location }
    }
}

/// A `ListResponse` of one page, each resource projected for its own type (`user_type`: the
/// realm's User definition).
pub fn list_response(page: ListPage, projection: &Projection, user_type: &'static ResourceTypeDef) -> Value {
    let resources: Vec<Value> = if projection.is_identity() {
        page.resources
    } else {
        page.resources.iter().map(|r| projection.apply(r, resource_type_of(r, user_type))).collect()
    };
    list_body(page.total_results, page.start_index, resources)
}

/// A `ListResponse` of every item (the discovery endpoints).
pub fn list_all(resources: Vec<Value>) -> Value {
    let n = resources.len();
    list_body(n, 1, resources)
}

fn resource_type_of(resource: &Value, user_type: &'static ResourceTypeDef) -> &'static ResourceTypeDef {
    match resource.pointer("/meta/resourceType").and_then(Value::as_str) {
        Some("Group") => &GROUP,
        _ => user_type,
    }
}

fn list_body(total_results: usize, start_index: usize, resources: Vec<Value>) -> Value {
    // Built by hand: `json!` would serialise `resources` into a second copy.
    let mut body = serde_json::Map::new();
    body.insert("schemas".into(), json!([scim::LIST_RESPONSE_SCHEMA]));
    body.insert("totalResults".into(), Value::from(total_results));
    body.insert("itemsPerPage".into(), Value::from(resources.len()));
    body.insert("startIndex".into(), Value::from(start_index));
    body.insert("Resources".into(), Value::Array(resources));
    Value::Object(body)
}
