//! Discovery documents: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7643 §5–7),
//! built from [`super::schema`] so that what we publish is what we honour.
//!
//! Every function takes the SCIM base URL (`https://chat.example.com/scim/v2`, no trailing
//! slash; one is tolerated) and renders `meta.location` under it. The documents are plain
//! `serde_json::Value`s in the canonical wire shape: camelCase keys, no nulls, and optional
//! characteristics (`canonicalValues`, `referenceTypes`, `subAttributes`) only where they
//! say something, as in the representations of RFC 7643 §8.7.

use serde_json::{json, Map, Value};

use super::schema::{
    self, AttrType, AttributeDef, Mutability, ResourceTypeDef, Returned, SchemaDef, Uniqueness,
};
use super::{RESOURCE_TYPE_SCHEMA, SCHEMA_SCHEMA, SERVICE_PROVIDER_CONFIG_SCHEMA};

/// What the service provider supports, as `/ServiceProviderConfig` announces it (RFC 7643 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `filter.maxResults`: the most resources one list response carries.
    pub max_results: usize,
    pub bulk_supported: bool,
    pub bulk_max_operations: usize,
    /// Bytes.
    pub bulk_max_payload: usize,
    pub sort_supported: bool,
    pub etag_supported: bool,
    pub change_password_supported: bool,
    pub patch_supported: bool,
    /// `documentationUri`, left out of the document when `None`.
    pub documentation_uri: Option<String>,
}

// === impl Capabilities ===

impl Default for Capabilities {
    /// PATCH, filters (500 results), sorting and ETags; no bulk, no password changes.
    fn default() -> Self {
        Capabilities {
            max_results: 500,
            bulk_supported: false,
            bulk_max_operations: 0,
            bulk_max_payload: 0,
            sort_supported: true,
            etag_supported: true,
            change_password_supported: false,
            patch_supported: true,
            documentation_uri: None,
        }
    }
}

/// `GET /ServiceProviderConfig`. The only authentication scheme is the realm's bearer token.
pub fn service_provider_config(base_url: &str, caps: &Capabilities) -> Value {
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([SERVICE_PROVIDER_CONFIG_SCHEMA]));
    if let Some(uri) = &caps.documentation_uri {
        doc.insert("documentationUri".into(), json!(uri));
    }
    doc.insert("patch".into(), json!({ "supported": caps.patch_supported }));
    doc.insert(
        "bulk".into(),
        json!({
            "supported": caps.bulk_supported,
            "maxOperations": caps.bulk_max_operations,
            "maxPayloadSize": caps.bulk_max_payload,
        }),
    );
    doc.insert("filter".into(), json!({ "supported": true, "maxResults": caps.max_results }));
    doc.insert("changePassword".into(), json!({ "supported": caps.change_password_supported }));
    doc.insert("sort".into(), json!({ "supported": caps.sort_supported }));
    doc.insert("etag".into(), json!({ "supported": caps.etag_supported }));
    doc.insert(
        "authenticationSchemes".into(),
        json!([{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with the realm's bearer token in the Authorization header.",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true,
        }]),
    );
    doc.insert(
        "meta".into(),
        meta("ServiceProviderConfig", format!("{}/ServiceProviderConfig", base(base_url))),
    );
    Value::Object(doc)
}

/// `GET /ResourceTypes`: every resource type served (`types`: the deployment's, e.g. a
/// [`crate::catalog::user_type`] and [`schema::GROUP`]; [`schema::resource_types`] by default).
pub fn resource_types(base_url: &str, types: &[&'static ResourceTypeDef]) -> Vec<Value> {
    types.iter().map(|rt| resource_type_doc(base_url, rt)).collect()
}

/// `GET /ResourceTypes/{name}`: the id is the resource type's name, matched exactly (`User`,
/// `Group`); `None` answers 404.
pub fn resource_type(base_url: &str, types: &[&'static ResourceTypeDef], name: &str) -> Option<Value> {
    types.iter().find(|rt| rt.name == name).map(|rt| resource_type_doc(base_url, rt))
}

/// `GET /Schemas`: the core schema and extensions of every resource type, then the three
/// meta-schemas (`ResourceType`, `ServiceProviderConfig`, `Schema`).
pub fn schemas(base_url: &str, types: &[&'static ResourceTypeDef]) -> Vec<Value> {
    published_schemas(types).into_iter().map(|s| schema_doc(base_url, s)).collect()
}

/// `GET /Schemas/{urn}`, the URN matched case-insensitively (RFC 8141 URNs compare their
/// namespace case-insensitively, and no two of ours differ only in case); `None` answers 404.
pub fn schema(base_url: &str, types: &[&'static ResourceTypeDef], urn: &str) -> Option<Value> {
    published_schemas(types)
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(urn))
        .map(|s| schema_doc(base_url, s))
}

/// Resource schemas first (each once, in resource-type order), then the meta-schemas.
fn published_schemas(types: &[&'static ResourceTypeDef]) -> Vec<&'static SchemaDef> {
    let mut out: Vec<&'static SchemaDef> = Vec::new();
    for rt in types {
        let schemas = std::iter::once(rt.schema).chain(rt.extensions.iter().map(|(s, _)| *s));
        for s in schemas {
            if !out.iter().any(|seen| seen.id == s.id) {
                out.push(s);
            }
        }
    }
    out.extend(schema::META_SCHEMAS.iter().copied());
    out
}

fn resource_type_doc(base_url: &str, rt: &ResourceTypeDef) -> Value {
    let extensions: Vec<Value> =
        rt.extensions.iter().map(|(s, required)| json!({ "schema": s.id, "required": required })).collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.schema.id,
        "schemaExtensions": extensions,
        "meta": meta("ResourceType", format!("{}/ResourceTypes/{}", base(base_url), rt.name)),
    })
}

fn schema_doc(base_url: &str, s: &SchemaDef) -> Value {
    let attributes: Vec<Value> = s.attributes.iter().map(attribute_doc).collect();
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": attributes,
        "meta": meta("Schema", format!("{}/Schemas/{}", base(base_url), s.id)),
    })
}

/// One attribute definition with all its characteristics (RFC 7643 §7).
fn attribute_doc(a: &AttributeDef) -> Value {
    let mut doc = Map::new();
    doc.insert("name".into(), json!(a.name));
    doc.insert("type".into(), json!(type_str(a.type_)));
    doc.insert("multiValued".into(), json!(a.multi_valued));
    doc.insert("description".into(), json!(a.description));
    doc.insert("required".into(), json!(a.required));
    if !a.canonical_values.is_empty() {
        doc.insert("canonicalValues".into(), json!(a.canonical_values));
    }
    doc.insert("caseExact".into(), json!(a.case_exact));
    doc.insert("mutability".into(), json!(mutability_str(a.mutability)));
    doc.insert("returned".into(), json!(returned_str(a.returned)));
    doc.insert("uniqueness".into(), json!(uniqueness_str(a.uniqueness)));
    if !a.reference_types.is_empty() {
        doc.insert("referenceTypes".into(), json!(a.reference_types));
    }
    if a.type_ == AttrType::Complex {
        let subs: Vec<Value> = a.sub_attributes.iter().map(attribute_doc).collect();
        doc.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(doc)
}

fn meta(resource_type: &str, location: String) -> Value {
    json!({ "resourceType": resource_type, "location": location })
}

fn base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

fn type_str(t: AttrType) -> &'static str {
    match t {
        AttrType::String => "string",
        AttrType::Boolean => "boolean",
        AttrType::Decimal => "decimal",
        AttrType::Integer => "integer",
        AttrType::DateTime => "dateTime",
        AttrType::Reference => "reference",
        AttrType::Complex => "complex",
        AttrType::Binary => "binary",
    }
}

fn mutability_str(m: Mutability) -> &'static str {
    match m {
        Mutability::ReadOnly => "readOnly",
        Mutability::ReadWrite => "readWrite",
        Mutability::Immutable => "immutable",
        Mutability::WriteOnly => "writeOnly",
    }
}

fn returned_str(r: Returned) -> &'static str {
    match r {
        Returned::Always => "always",
        Returned::Never => "never",
        Returned::Default => "default",
        Returned::Request => "request",
    }
}

fn uniqueness_str(u: Uniqueness) -> &'static str {
    match u {
        Uniqueness::None => "none",
        Uniqueness::Server => "server",
        Uniqueness::Global => "global",
    }
}

#[cfg(test)]
mod tests;
