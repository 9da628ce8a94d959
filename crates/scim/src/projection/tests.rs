//! Projection and sorting tables, on the real User and Group types and on a test type with an
//! extension and `returned: never|request` attributes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;
use crate::schema::{Mutability, GROUP, USER};
use crate::{ENTERPRISE_USER_SCHEMA, USER_SCHEMA};

static ENTERPRISE: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "test extension",
    attributes: &[AttributeDef::string("employeeNumber", "n"), AttributeDef::string("department", "d")],
};

static SECRET_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "v"),
    AttributeDef::string("hint", "h").returned(Returned::Request),
    AttributeDef::string("salt", "s").returned(Returned::Never),
];

static TEST_CORE: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "test core",
    attributes: &[
        AttributeDef::string("userName", "u").required(),
        AttributeDef::string("password", "p").mutability(Mutability::WriteOnly).returned(Returned::Never),
        AttributeDef::string("nickName", "n").returned(Returned::Request),
        AttributeDef::string("secrets", "s").multi().complex(SECRET_SUBS),
    ],
};

static TEST_RT: ResourceTypeDef = ResourceTypeDef {
    name: "User",
    endpoint: "/Users",
    description: "test",
    schema: &TEST_CORE,
    extensions: &[(&ENTERPRISE, false)],
};

fn user() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "7",
        "externalId": "ext-7",
        "userName": "kim@example.com",
        "name": {"formatted": "Kim Lee", "givenName": "Kim", "familyName": "Lee"},
        "displayName": "Kim Lee",
        "active": true,
        "emails": [
            {"value": "kim@example.com", "type": "work", "primary": true},
            {"value": "kim@home.example", "type": "home"}
        ],
        "role": "member",
        "groups": [{"value": "3", "$ref": "https://x/scim/v2/Groups/3", "display": "eng"}],
        "meta": {"resourceType": "User", "lastModified": "2026-01-02T03:04:05Z", "location": "https://x/scim/v2/Users/7"}
    })
}

fn test_user() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "id": "8",
        "userName": "lee@example.com",
        "password": "hunter2",
        "nickName": "lee",
        "secrets": [{"value": "a", "hint": "h", "salt": "s"}],
        ENTERPRISE_USER_SCHEMA: {"employeeNumber": "42", "department": "R&D"},
        "meta": {"resourceType": "User"}
    })
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().expect("object").keys().map(String::as_str).collect()
}

fn project(
    attributes: Option<&str>,
    excluded: Option<&str>,
    resource: &Value,
    rt: &ResourceTypeDef,
) -> Value {
    Projection::parse(attributes, excluded)
        .unwrap_or_else(|e| panic!("{attributes:?} / {excluded:?}: {e}"))
        .apply(resource, rt)
}

#[test]
fn top_level_selection_table() {
    // `groups` is returned only on request.
    let all = keys(&user()).into_iter().filter(|k| *k != "groups").map(str::to_owned).collect::<Vec<_>>();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let cases: &[(Option<&str>, Option<&str>, &[&str])] = &[
        (None, None, &all),
        (Some(""), Some(" , "), &all),
        (Some("userName"), None, &["schemas", "id", "userName"]),
        (Some("USERNAME, displayname"), None, &["schemas", "id", "userName", "displayName"]),
        (Some("id"), None, &["schemas", "id"]),
        (Some("externalId"), None, &["schemas", "id", "externalId"]),
        (Some("nickName"), None, &["schemas", "id"]),
        (Some("urn:ietf:params:scim:schemas:core:2.0:User:userName"), None, &["schemas", "id", "userName"]),
        (Some("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:active"), None, &["schemas", "id", "active"]),
        (Some("urn:ietf:params:scim:schemas:core:2.0:Group:displayName"), None, &["schemas", "id"]),
        (Some("meta"), None, &["schemas", "id", "meta"]),
        // `attributes` wins over `excludedAttributes`, which is then not even parsed.
        (Some("userName"), Some("userName"), &["schemas", "id", "userName"]),
        (Some("userName"), Some("emails[type eq \"work\"]"), &["schemas", "id", "userName"]),
        (
            None,
            Some("emails,groups,meta"),
            &["schemas", "id", "externalId", "userName", "name", "displayName", "active", "role"],
        ),
        (None, Some("id,schemas"), &all),
        (
            None,
            Some("urn:ietf:params:scim:schemas:core:2.0:User:displayName"),
            &["schemas", "id", "externalId", "userName", "name", "active", "emails", "role", "meta"],
        ),
        (None, Some("nickName"), &all),
    ];
    for (attributes, excluded, expected) in cases {
        let out = project(*attributes, *excluded, &user(), &USER);
        assert_eq!(keys(&out), *expected, "attributes={attributes:?} excludedAttributes={excluded:?}");
    }
}

#[test]
fn sub_attribute_selection_table() {
    let cases: &[(Option<&str>, Option<&str>, Value)] = &[
        (
            Some("name.givenName"),
            None,
            json!({"schemas": [USER_SCHEMA], "id": "7", "name": {"givenName": "Kim"}}),
        ),
        (
            Some("NAME.GIVENNAME,name.familyName"),
            None,
            json!({"schemas": [USER_SCHEMA], "id": "7", "name": {"givenName": "Kim", "familyName": "Lee"}}),
        ),
        (
            Some("emails.value"),
            None,
            json!({"schemas": [USER_SCHEMA], "id": "7",
                   "emails": [{"value": "kim@example.com"}, {"value": "kim@home.example"}]}),
        ),
        // The whole attribute wins over one of its sub-attributes.
        (
            Some("name.givenName,name"),
            None,
            json!({"schemas": [USER_SCHEMA], "id": "7",
                   "name": {"formatted": "Kim Lee", "givenName": "Kim", "familyName": "Lee"}}),
        ),
        (
            Some("urn:ietf:params:scim:schemas:core:2.0:User:emails.type,meta.lastModified"),
            None,
            json!({"schemas": [USER_SCHEMA], "id": "7", "emails": [{"type": "work"}, {"type": "home"}],
                   "meta": {"lastModified": "2026-01-02T03:04:05Z"}}),
        ),
        // Elements without the named sub-attribute, then the attribute, disappear.
        (Some("emails.display"), None, json!({"schemas": [USER_SCHEMA], "id": "7"})),
        (
            Some("groups.$ref"),
            None,
            json!({"schemas": [USER_SCHEMA], "id": "7", "groups": [{"$ref": "https://x/scim/v2/Groups/3"}]}),
        ),
    ];
    for (attributes, excluded, expected) in cases {
        assert_eq!(&project(*attributes, *excluded, &user(), &USER), expected, "attributes={attributes:?}");
    }

    let out = project(None, Some("name.formatted,emails.primary"), &user(), &USER);
    assert_eq!(out["name"], json!({"givenName": "Kim", "familyName": "Lee"}));
    assert_eq!(
        out["emails"],
        json!([{"value": "kim@example.com", "type": "work"}, {"value": "kim@home.example", "type": "home"}])
    );
    assert_eq!(out["userName"], "kim@example.com");
}

#[test]
fn returned_characteristic_is_honoured() {
    // Default set: never and request attributes are absent; never sub-attributes too.
    let out = project(None, None, &test_user(), &TEST_RT);
    assert_eq!(keys(&out), ["schemas", "id", "userName", "secrets", ENTERPRISE_USER_SCHEMA, "meta"]);
    assert_eq!(out["secrets"], json!([{"value": "a"}]));

    // `request` attributes appear when asked for; `never` ones never do.
    let out = project(Some("nickName,password,secrets"), None, &test_user(), &TEST_RT);
    assert_eq!(keys(&out), ["schemas", "id", "nickName", "secrets"]);
    assert_eq!(out["secrets"], json!([{"value": "a", "hint": "h"}]));
    let out = project(Some("secrets.salt,secrets.hint"), None, &test_user(), &TEST_RT);
    assert_eq!(out["secrets"], json!([{"hint": "h"}]));

    // `always` survives exclusion; excluding a request attribute changes nothing.
    let out = project(None, Some("id,nickName,secrets.value"), &test_user(), &TEST_RT);
    assert_eq!(out["id"], "8");
    assert!(out.get("nickName").is_none());
    assert!(out.get("secrets").is_none(), "value was its only default sub-attribute");
}

#[test]
fn extension_attributes_live_under_their_urn() {
    let ext = ENTERPRISE_USER_SCHEMA;
    let cases: &[(Option<&str>, Option<&str>, Value)] = &[
        (
            Some(&format!("{ext}:employeeNumber")),
            None,
            json!({"schemas": [USER_SCHEMA, ext], "id": "8", ext: {"employeeNumber": "42"}}),
        ),
        (
            Some(&format!("{}:EMPLOYEENUMBER", ext.to_ascii_lowercase())),
            None,
            json!({"schemas": [USER_SCHEMA, ext], "id": "8", ext: {"employeeNumber": "42"}}),
        ),
        // A bare name reaches an extension attribute no core attribute shadows.
        (
            Some("department"),
            None,
            json!({"schemas": [USER_SCHEMA, ext], "id": "8", ext: {"department": "R&D"}}),
        ),
        // The URN alone names the whole extension.
        (
            Some(ext),
            None,
            json!({"schemas": [USER_SCHEMA, ext], "id": "8", ext: {"employeeNumber": "42", "department": "R&D"}}),
        ),
        (
            Some("userName"),
            None,
            json!({"schemas": [USER_SCHEMA, ext], "id": "8", "userName": "lee@example.com"}),
        ),
    ];
    for (attributes, excluded, expected) in cases {
        assert_eq!(&project(*attributes, *excluded, &test_user(), &TEST_RT), expected, "{attributes:?}");
    }

    let out = project(None, Some(ext), &test_user(), &TEST_RT);
    assert!(out.get(ext).is_none());
    let out = project(None, Some(&format!("{ext}:department")), &test_user(), &TEST_RT);
    assert_eq!(out[ext], json!({"employeeNumber": "42"}));
    let out = project(None, Some(&format!("{ext}:department,{ext}:employeeNumber")), &test_user(), &TEST_RT);
    assert!(out.get(ext).is_none(), "an emptied extension disappears");
}

#[test]
fn requests_tells_whether_an_attribute_survives() {
    let cases: &[(Option<&str>, Option<&str>, &str, bool)] = &[
        (None, None, "members", true),
        (None, Some("members"), "members", false),
        (None, Some("MEMBERS"), "members", false),
        (None, Some("members.display"), "members", true),
        (None, Some("displayName"), "members", true),
        (Some("displayName"), None, "members", false),
        (Some("members.value"), None, "members", true),
        (Some("urn:ietf:params:scim:schemas:core:2.0:Group:members"), None, "members", true),
        (Some("displayName"), Some("displayName"), "displayName", true),
        (Some("displayName"), None, "id", true),
        (None, Some("id"), "id", true),
        (Some("displayName"), None, "schemas", true),
        (Some("displayName"), None, "meta", false),
    ];
    for (attributes, excluded, attr, expected) in cases {
        let projection = Projection::parse(*attributes, *excluded).unwrap();
        assert_eq!(
            projection.requests(attr, &GROUP),
            *expected,
            "attributes={attributes:?} excludedAttributes={excluded:?} requests({attr})"
        );
    }

    let ext = ENTERPRISE_USER_SCHEMA;
    let cases: &[(Option<&str>, Option<&str>, &str, bool)] = &[
        (None, None, "password", false),
        (Some("password"), None, "password", false),
        (None, None, "nickName", false),
        (Some("nickName"), None, "nickName", true),
        (None, None, ext, true),
        (None, Some(ext), ext, false),
        (Some("userName"), None, ext, false),
        (Some(&format!("{ext}:department")), None, ext, true),
        (Some(&format!("{ext}:department")), None, &format!("{ext}:department"), true),
        (Some(&format!("{ext}:department")), None, &format!("{ext}:employeeNumber"), false),
    ];
    for (attributes, excluded, attr, expected) in cases {
        let projection = Projection::parse(*attributes, *excluded).unwrap();
        assert_eq!(
            projection.requests(attr, &TEST_RT),
            *expected,
            "attributes={attributes:?} excludedAttributes={excluded:?} requests({attr})"
        );
    }
}

#[test]
fn identity_and_parse_errors() {
    assert!(Projection::parse(None, None).unwrap().is_identity());
    assert!(Projection::parse(Some(""), Some("")).unwrap().is_identity());
    assert!(Projection::parse(Some(" ,, "), None).unwrap().is_identity());
    assert!(!Projection::parse(Some("userName"), None).unwrap().is_identity());
    assert!(!Projection::parse(None, Some("members")).unwrap().is_identity());
    assert_eq!(Projection::default(), Projection::parse(None, None).unwrap());

    for bad in [
        "emails[type eq \"work\"]",
        "emails[type eq \"work\"].value",
        "name.givenName.first",
        "name..givenName",
        "user name",
        "1userName",
        ".userName",
        "userName.",
        "user:name",
        "urn:ietf:params:scim:schemas:core:2.0:User:",
        "urn:x:(y):userName",
    ] {
        let err = Projection::parse(Some(bad), None).expect_err(bad);
        assert_eq!(err.scim_type, ScimType::InvalidValue, "{bad}");
        assert!(err.detail.starts_with("attributes: "), "{}", err.detail);
        let err = Projection::parse(None, Some(bad)).expect_err(bad);
        assert!(err.detail.starts_with("excludedAttributes: "), "{}", err.detail);
    }
    let many = vec!["userName"; MAX_PROJECTION_PATHS + 1].join(",");
    assert!(Projection::parse(Some(&many), None).is_err());
}

#[test]
fn non_object_resources_pass_through() {
    let projection = Projection::parse(Some("userName"), None).unwrap();
    assert_eq!(projection.apply(&json!("x"), &USER), json!("x"));
}

// === sorting ===

fn sorted_ids(spec: &SortSpec, mut resources: Vec<Value>) -> Vec<String> {
    resources.sort_by(|a, b| spec.compare(a, b));
    resources.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn spec(sort_by: &str, order: Option<&str>, rt: &ResourceTypeDef) -> SortSpec {
    SortSpec::parse(Some(sort_by), order, rt).unwrap_or_else(|e| panic!("{sort_by}: {e}")).expect("a sort")
}

#[test]
fn sort_parse_table() {
    assert_eq!(SortSpec::parse(None, Some("descending"), &USER), Ok(None));
    assert_eq!(SortSpec::parse(Some(" "), None, &USER), Ok(None));
    for ok in [
        "userName",
        "USERNAME",
        "name.familyName",
        "emails",
        "emails.value",
        "meta.lastModified",
        "id",
        "externalId",
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    ] {
        assert!(SortSpec::parse(Some(ok), None, &USER).is_ok_and(|s| s.is_some()), "{ok}");
    }
    for order in ["ascending", "DESCENDING", " Ascending "] {
        assert!(SortSpec::parse(Some("userName"), Some(order), &USER).is_ok(), "{order}");
    }
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("nickName", None, "sortBy: \"nickName\" is not an attribute of User resources"),
        ("name", None, "sortBy: \"name\" is complex: name one of its sub-attributes, e.g. name.formatted"),
        ("name.middleName", None, "not an attribute"),
        ("members", None, "not an attribute"),
        ("urn:ietf:params:scim:schemas:core:2.0:Group:displayName", None, "not an attribute"),
        ("emails[type eq \"work\"].value", None, "is not an attribute path"),
        ("userName", Some("up"), "sortOrder: \"up\" is neither"),
    ];
    for (sort_by, order, detail) in cases {
        let err = SortSpec::parse(Some(sort_by), *order, &USER).expect_err(sort_by);
        assert_eq!(err.scim_type, ScimType::InvalidValue);
        assert!(err.detail.contains(detail), "{sort_by}: {}", err.detail);
    }
    assert!(SortSpec::parse(Some("members.display"), None, &GROUP).is_ok());
    assert!(SortSpec::parse(Some(&format!("{ENTERPRISE_USER_SCHEMA}:department")), None, &TEST_RT).is_ok());
    assert!(SortSpec::parse(Some("department"), None, &TEST_RT).is_ok());
}

#[test]
fn strings_sort_case_insensitively_unless_case_exact() {
    let users = vec![
        json!({"id": "1", "userName": "bob@x", "externalId": "b"}),
        json!({"id": "2", "userName": "Alice@x", "externalId": "B"}),
        json!({"id": "3", "userName": "carol@x", "externalId": "a"}),
        json!({"id": "4", "userName": "ALICE@x", "externalId": "A"}),
    ];
    // Case-insensitive ties keep their input order (stable sort).
    assert_eq!(sorted_ids(&spec("userName", None, &USER), users.clone()), ["2", "4", "1", "3"]);
    assert_eq!(sorted_ids(&spec("username", Some("descending"), &USER), users.clone()), ["3", "1", "2", "4"]);
    // externalId is caseExact: code point order puts capitals first.
    assert_eq!(sorted_ids(&spec("externalId", None, &USER), users), ["4", "2", "3", "1"]);
}

#[test]
fn missing_values_sort_last_ascending_and_first_descending() {
    let users = vec![
        json!({"id": "1", "name": {"familyName": "Zed"}}),
        json!({"id": "2"}),
        json!({"id": "3", "name": {"familyName": "adams"}}),
        json!({"id": "4", "name": {"familyName": null}}),
        json!({"id": "5", "name": {"givenName": "Mo"}}),
    ];
    assert_eq!(sorted_ids(&spec("name.familyName", None, &USER), users.clone()), ["3", "1", "2", "4", "5"]);
    assert_eq!(
        sorted_ids(&spec("name.familyName", Some("descending"), &USER), users),
        ["2", "4", "5", "1", "3"]
    );
}

#[test]
fn multi_valued_attributes_sort_by_primary_else_first() {
    let users = vec![
        json!({"id": "1", "emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}]}),
        json!({"id": "2", "emails": [{"value": "m@x"}, {"value": "b@x"}]}),
        json!({"id": "3", "emails": []}),
        json!({"id": "4", "emails": [{"value": "c@x", "primary": false}, {"value": "D@x", "primary": true}]}),
    ];
    assert_eq!(sorted_ids(&spec("emails", None, &USER), users.clone()), ["1", "4", "2", "3"]);
    assert_eq!(sorted_ids(&spec("emails.value", None, &USER), users), ["1", "4", "2", "3"]);
}

#[test]
fn other_types_sort_by_value() {
    let users = vec![
        json!({"id": "1", "active": true, "meta": {"lastModified": "2026-03-01T00:00:00Z"}}),
        json!({"id": "2", "active": false, "meta": {"lastModified": "2025-12-31T23:59:59Z"}}),
        json!({"id": "3", "meta": {}}),
    ];
    assert_eq!(sorted_ids(&spec("active", None, &USER), users.clone()), ["2", "1", "3"]);
    assert_eq!(sorted_ids(&spec("meta.lastModified", None, &USER), users.clone()), ["2", "1", "3"]);
    assert_eq!(sorted_ids(&spec("meta.lastModified", Some("descending"), &USER), users), ["3", "1", "2"]);
    let numbered = SortSpec { extension: None, attr: "n", sub: None, case_exact: false, descending: false };
    let resources =
        vec![json!({"id": "a", "n": 10}), json!({"id": "b", "n": 9.5}), json!({"id": "c", "n": -3})];
    assert_eq!(sorted_ids(&numbered, resources), ["c", "b", "a"]);
}

#[test]
fn extension_attributes_sort_under_their_urn() {
    let users = vec![
        json!({"id": "1", ENTERPRISE_USER_SCHEMA: {"department": "ops"}}),
        json!({"id": "2", ENTERPRISE_USER_SCHEMA: {"department": "Eng"}}),
        json!({"id": "3"}),
    ];
    let by_department = spec(&format!("{ENTERPRISE_USER_SCHEMA}:department"), None, &TEST_RT);
    assert_eq!(sorted_ids(&by_department, users.clone()), ["2", "1", "3"]);
    assert_eq!(sorted_ids(&spec("department", None, &TEST_RT), users), ["2", "1", "3"]);
}
