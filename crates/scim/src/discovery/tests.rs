//! Discovery documents checked against the schema definitions they are rendered from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

use super::*;
use crate::schema::{GROUP, USER};
use crate::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

const BASE: &str = "https://chat.example.com/scim/v2";
/// The deployment without optional attributes: what `schema::resource_types` lists.
static ALL: &[&ResourceTypeDef] = &[&USER, &GROUP];

fn str_at<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// Walks a rendered attribute list and its definition side by side.
fn assert_attributes_match(rendered: &Value, defs: &[AttributeDef], path: &str) {
    let rendered = rendered.as_array().expect("attributes is an array");
    let names: Vec<&str> = rendered.iter().map(|a| str_at(a, "name")).collect();
    let expected: Vec<&str> = defs.iter().map(|d| d.name).collect();
    assert_eq!(names, expected, "attribute names under {path}");
    for (a, d) in rendered.iter().zip(defs) {
        let at = format!("{path}.{}", d.name);
        assert_eq!(str_at(a, "type"), type_str(d.type_), "{at}");
        assert_eq!(a["multiValued"], d.multi_valued, "{at}");
        assert_eq!(a["required"], d.required, "{at}");
        assert_eq!(a["caseExact"], d.case_exact, "{at}");
        assert_eq!(str_at(a, "mutability"), mutability_str(d.mutability), "{at}");
        assert_eq!(str_at(a, "returned"), returned_str(d.returned), "{at}");
        assert_eq!(str_at(a, "uniqueness"), uniqueness_str(d.uniqueness), "{at}");
        assert_eq!(str_at(a, "description"), d.description, "{at}");
        let canonical: Vec<&str> = a
            .get("canonicalValues")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(canonical, d.canonical_values, "{at}");
        let refs: Vec<&str> = a
            .get("referenceTypes")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(refs, d.reference_types, "{at}");
        if d.type_ == AttrType::Reference {
            assert!(!refs.is_empty(), "{at}: a reference attribute names its referenceTypes");
        }
        match a.get("subAttributes") {
            Some(subs) => {
                assert_eq!(d.type_, AttrType::Complex, "{at}");
                assert_attributes_match(subs, d.sub_attributes, &at);
            }
            None => assert_ne!(d.type_, AttrType::Complex, "{at}: complex without subAttributes"),
        }
        for (key, value) in a.as_object().expect("attribute is an object") {
            assert!(!value.is_null(), "{at}.{key} is null");
        }
    }
}

#[test]
fn service_provider_config_announces_the_capabilities() {
    let doc = service_provider_config(BASE, &Capabilities::default());
    assert_eq!(doc["schemas"], json!([SERVICE_PROVIDER_CONFIG_SCHEMA]));
    assert_eq!(doc["patch"], json!({"supported": true}));
    assert_eq!(doc["bulk"], json!({"supported": false, "maxOperations": 0, "maxPayloadSize": 0}));
    assert_eq!(doc["filter"], json!({"supported": true, "maxResults": 500}));
    assert_eq!(doc["changePassword"], json!({"supported": false}));
    assert_eq!(doc["sort"], json!({"supported": true}));
    assert_eq!(doc["etag"], json!({"supported": true}));
    let schemes = doc["authenticationSchemes"].as_array().expect("array");
    assert_eq!(schemes.len(), 1);
    assert_eq!(schemes[0]["type"], "oauthbearertoken");
    assert_eq!(schemes[0]["primary"], true);
    for key in ["name", "description"] {
        assert!(schemes[0][key].is_string(), "{key}");
    }
    assert_eq!(
        doc["meta"],
        json!({"resourceType": "ServiceProviderConfig", "location": format!("{BASE}/ServiceProviderConfig")})
    );
    assert!(doc.get("documentationUri").is_none(), "no null documentationUri");
    assert!(doc.get("id").is_none(), "the service provider config has no id");
}

#[test]
fn service_provider_config_follows_the_capabilities() {
    let caps = Capabilities {
        max_results: 100,
        bulk_supported: true,
        bulk_max_operations: 10,
        bulk_max_payload: 1 << 20,
        sort_supported: false,
        etag_supported: false,
        change_password_supported: true,
        patch_supported: false,
        documentation_uri: Some("https://docs.example.com/scim".into()),
    };
    let doc = service_provider_config(&format!("{BASE}/"), &caps);
    assert_eq!(doc["documentationUri"], "https://docs.example.com/scim");
    assert_eq!(doc["patch"]["supported"], false);
    assert_eq!(doc["bulk"], json!({"supported": true, "maxOperations": 10, "maxPayloadSize": 1048576}));
    assert_eq!(doc["filter"]["maxResults"], 100);
    assert_eq!(doc["changePassword"]["supported"], true);
    assert_eq!(doc["sort"]["supported"], false);
    assert_eq!(doc["etag"]["supported"], false);
    assert_eq!(doc["meta"]["location"], format!("{BASE}/ServiceProviderConfig"), "trailing slash");
}

#[test]
fn resource_types_describe_users_and_groups() {
    let docs = resource_types(BASE, ALL);
    let names: Vec<&str> = docs.iter().map(|d| str_at(d, "name")).collect();
    assert_eq!(names, ["User", "Group"]);
    for (doc, rt) in docs.iter().zip([&USER, &GROUP]) {
        assert_eq!(doc["schemas"], json!([RESOURCE_TYPE_SCHEMA]));
        assert_eq!(doc["id"], rt.name);
        assert_eq!(doc["endpoint"], rt.endpoint);
        assert_eq!(doc["description"], rt.description);
        assert_eq!(doc["schema"], rt.schema.id);
        assert_eq!(doc["schemaExtensions"].as_array().map(Vec::len), Some(rt.extensions.len()));
        assert_eq!(
            doc["meta"],
            json!({"resourceType": "ResourceType", "location": format!("{BASE}/ResourceTypes/{}", rt.name)})
        );
        assert_eq!(resource_type(BASE, ALL, rt.name).as_ref(), Some(doc));
    }
    assert_eq!(docs[0]["schema"], USER_SCHEMA);
    assert_eq!(docs[1]["schema"], GROUP_SCHEMA);
}

#[test]
fn resource_type_lookup_is_exact() {
    assert!(resource_type(BASE, ALL, "User").is_some());
    assert!(resource_type(BASE, ALL, "Group").is_some());
    for unknown in ["user", "Users", "", "Schema", "9b2f0e3c-2f7a-4a55-8d1e-4c2e0f0c1a11"] {
        assert!(resource_type(BASE, ALL, unknown).is_none(), "{unknown:?}");
    }
}

#[test]
fn schemas_cover_resources_and_the_three_meta_schemas() {
    let docs = schemas(BASE, ALL);
    let ids: Vec<&str> = docs.iter().map(|d| str_at(d, "id")).collect();
    assert_eq!(
        ids,
        [USER_SCHEMA, GROUP_SCHEMA, RESOURCE_TYPE_SCHEMA, SERVICE_PROVIDER_CONFIG_SCHEMA, SCHEMA_SCHEMA]
    );
    let names: Vec<&str> = docs.iter().map(|d| str_at(d, "name")).collect();
    for meta_schema in ["ResourceType", "ServiceProviderConfig", "Schema"] {
        assert!(names.contains(&meta_schema), "{meta_schema} missing from {names:?}");
    }
    for doc in &docs {
        assert_eq!(doc["schemas"], json!([SCHEMA_SCHEMA]));
        assert!(doc["description"].is_string());
        let id = str_at(doc, "id");
        assert_eq!(
            doc["meta"],
            json!({"resourceType": "Schema", "location": format!("{BASE}/Schemas/{id}")})
        );
        assert_eq!(schema(BASE, ALL, id).as_ref(), Some(doc), "lookup of {id}");
    }
}

#[test]
fn every_schema_attribute_is_published_with_its_characteristics() {
    let mut defs: Vec<&SchemaDef> = vec![USER.schema, GROUP.schema];
    defs.extend(schema::META_SCHEMAS.iter().copied());
    for def in defs {
        let doc = schema(BASE, ALL, def.id).expect("published");
        assert_eq!(doc["name"], def.name);
        assert_eq!(doc["description"], def.description);
        assert_attributes_match(&doc["attributes"], def.attributes, def.name);
    }
}

#[test]
fn user_schema_spells_characteristics_as_the_rfc_does() {
    let doc = schema(BASE, ALL, USER_SCHEMA).expect("user schema");
    let user_name = &doc["attributes"][0];
    assert_eq!(
        user_name,
        &json!({
            "name": "userName",
            "type": "string",
            "multiValued": false,
            "description": USER.schema.attributes[0].description,
            "required": true,
            "caseExact": false,
            "mutability": "readWrite",
            "returned": "default",
            "uniqueness": "server",
        })
    );
    let groups =
        doc["attributes"].as_array().and_then(|a| a.iter().find(|a| a["name"] == "groups")).expect("groups");
    assert_eq!(groups["type"], "complex");
    assert_eq!(groups["multiValued"], true);
    assert_eq!(groups["mutability"], "readOnly");
    let reference = groups["subAttributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "$ref"))
        .expect("$ref");
    assert_eq!(reference["type"], "reference");
    assert_eq!(reference["referenceTypes"], json!(["Group"]));
}

#[test]
fn schema_meta_schema_nests_sub_attributes_one_level() {
    let doc = schema(BASE, ALL, SCHEMA_SCHEMA).expect("Schema meta-schema");
    let attributes = doc["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "attributes"))
        .expect("attributes");
    let subs = attributes["subAttributes"].as_array().expect("subAttributes");
    let nested = subs.iter().find(|a| a["name"] == "subAttributes").expect("attributes.subAttributes");
    let nested_names: Vec<&str> = nested["subAttributes"]
        .as_array()
        .expect("leaf characteristics")
        .iter()
        .map(|a| str_at(a, "name"))
        .collect();
    assert!(nested_names.contains(&"caseExact"));
    assert!(!nested_names.contains(&"subAttributes"), "no third level");
    let type_attr = subs.iter().find(|a| a["name"] == "type").expect("type");
    assert_eq!(
        type_attr["canonicalValues"],
        json!(["string", "complex", "boolean", "decimal", "integer", "dateTime", "reference", "binary"])
    );
}

#[test]
fn schema_lookup_is_case_insensitive_and_unknown_is_none() {
    let upper = USER_SCHEMA.to_ascii_uppercase();
    assert_eq!(schema(BASE, ALL, &upper).map(|d| d["id"].clone()), Some(json!(USER_SCHEMA)));
    assert!(schema(BASE, ALL, SCHEMA_SCHEMA).is_some());
    assert!(schema(BASE, ALL, RESOURCE_TYPE_SCHEMA).is_some());
    assert!(schema(BASE, ALL, SERVICE_PROVIDER_CONFIG_SCHEMA).is_some());
    for unknown in [ENTERPRISE_USER_SCHEMA, "", "User", "urn:ietf:params:scim:schemas:core:2.0"] {
        assert!(schema(BASE, ALL, unknown).is_none(), "{unknown:?}");
    }
}
