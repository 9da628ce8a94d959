//! Unit tests (table-driven): accepted and rejected inputs with their scimType.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;

use serde_json::{json, Value};

use super::*;
use crate::schema::{ResourceTypeDef, SchemaDef, GROUP, USER, USER_SCHEMA_DEF};
use crate::ENTERPRISE_USER_SCHEMA;

const ENT: &str = ENTERPRISE_USER_SCHEMA;
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

static MANAGER_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "Manager id.").case_exact(),
    AttributeDef::string("$ref", "Manager URI.").of_type(AttrType::Reference).case_exact(),
    AttributeDef::string("displayName", "Manager name.").mutability(Mutability::ReadOnly),
];

/// The enterprise extension, as the lead may add it to schema.rs.
static ENTERPRISE: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        AttributeDef::string("employeeNumber", "Employee number."),
        AttributeDef::string("department", "Department."),
        AttributeDef::string("manager", "Manager.").complex(MANAGER_SUBS),
    ],
};

/// The engine is schema-driven. These tests exercise multi-valued e-mail editing in general,
/// which the sidecar's User schema narrows (there `emails` is required: it is the account's
/// one address), so they run on a copy of it where `emails` is optional and writable.
static USER_RW_SCHEMA: LazyLock<&'static SchemaDef> = LazyLock::new(|| {
    let attributes: Vec<AttributeDef> = USER_SCHEMA_DEF
        .attributes
        .iter()
        .map(|a| {
            let mut a = *a;
            if a.name == "emails" {
                a.mutability = Mutability::ReadWrite;
                a.required = false;
            }
            a
        })
        .collect();
    Box::leak(Box::new(SchemaDef { attributes: Box::leak(attributes.into_boxed_slice()), ..USER_SCHEMA_DEF }))
});

static USER_RW: LazyLock<ResourceTypeDef> =
    LazyLock::new(|| ResourceTypeDef { schema: *USER_RW_SCHEMA, ..USER });

static USER_ENT: LazyLock<ResourceTypeDef> = LazyLock::new(|| ResourceTypeDef {
    name: "User",
    endpoint: "/Users",
    description: "User Account",
    schema: *USER_RW_SCHEMA,
    extensions: ENTERPRISE_EXTENSIONS,
});

static ENTERPRISE_EXTENSIONS: &[(&SchemaDef, bool)] = &[(&ENTERPRISE, false)];

fn user() -> Value {
    json!({
        "schemas": [CORE],
        "id": "17",
        "userName": "ana@example.com",
        "name": {"formatted": "Ana Diaz", "givenName": "Ana", "familyName": "Diaz"},
        "displayName": "Ana Diaz",
        "active": true,
        "role": "member",
        "emails": [{"value": "ana@example.com", "type": "work", "primary": true}],
        "groups": [{"value": "31", "display": "Engineering"}],
        "meta": {"resourceType": "User", "created": "2024-01-02T03:04:05Z"}
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "31",
        "displayName": "Engineering",
        "members": [{"value": "u-17", "display": "Ana Diaz"}, {"value": "u-42"}],
        "meta": {"resourceType": "Group"}
    })
}

fn ops(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

fn patch(resource: &Value, body: &Value, rt: &ResourceTypeDef) -> Result<Value, ScimError> {
    let req = PatchRequest::parse(body)?;
    let mut out = resource.clone();
    match req.apply(&mut out, rt) {
        Ok(()) => Ok(out),
        Err(e) => {
            assert_eq!(&out, resource, "a failed PATCH must leave the resource untouched");
            Err(e)
        }
    }
}

fn ok(resource: &Value, body: Value, rt: &ResourceTypeDef) -> Value {
    patch(resource, &body, rt).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn members(g: &Value) -> Vec<&str> {
    g["members"].as_array().map_or(vec![], |m| m.iter().filter_map(|e| e["value"].as_str()).collect())
}

// --- parsing -------------------------------------------------------------------------

#[test]
fn parse_accepts_idp_dialects() {
    let bodies = [
        json!({"Operations": [{"op": "replace", "value": {"active": false}}]}),
        json!({"operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
        json!({"OPERATIONS": [{"OP": "ADD", "PATH": "displayName", "VALUE": "x"}]}),
        json!({"schemas": ["x"], "Operations": [{"op": "remove", "path": "members[value eq \"1\"]"}]}),
        json!({"Operations": [{"op": " remove ", "path": "members", "value": [{"value": "1"}]}]}),
        json!({"Operations": [{"op": "replace", "path": "", "value": {"active": true}}]}),
        json!({"Operations": [{"op": "replace", "path": null, "value": {"active": true}}]}),
        json!({"Operations": [{"op": "replace", "path": "title", "value": null}]}),
    ];
    for body in bodies {
        PatchRequest::parse(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    }
    let req = PatchRequest::parse(&json!({"Operations": [
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b"}]}))
    .unwrap();
    let op = &req.operations[0];
    assert_eq!(op.op, PatchOpKind::Add);
    assert_eq!(op.path.as_ref().map(|p| p.to_string()), Some("emails[type eq \"work\"].value".into()));
    assert_eq!(op.value, Some(json!("a@b")));
}

#[test]
fn parse_rejects_bad_bodies() {
    let cases: &[(Value, ScimType, &str)] = &[
        (json!([]), ScimType::InvalidSyntax, "must be a JSON object"),
        (json!({}), ScimType::InvalidSyntax, "no Operations"),
        (json!({"Operations": []}), ScimType::InvalidSyntax, "no Operations"),
        (json!({"Operations": null}), ScimType::InvalidSyntax, "no Operations"),
        (json!({"Operations": {"op": "add"}}), ScimType::InvalidSyntax, "must be an array"),
        (json!({"Operations": [1]}), ScimType::InvalidSyntax, "Operations[0] is not an object"),
        (json!({"Operations": [{"path": "x"}]}), ScimType::InvalidSyntax, "has no \"op\""),
        (json!({"Operations": [{"op": 1}]}), ScimType::InvalidSyntax, "\"op\" must be a string"),
        (
            json!({"Operations": [{"op": "move", "path": "a"}]}),
            ScimType::InvalidSyntax,
            "unknown PATCH op \"move\"",
        ),
        (json!({"Operations": [{"op": "remove"}]}), ScimType::NoTarget, "\"path\" must be specified"),
        (json!({"Operations": [{"op": "remove", "value": {"a": 1}}]}), ScimType::NoTarget, "\"path\""),
        (json!({"Operations": [{"op": "add", "path": "a"}]}), ScimType::InvalidSyntax, "has no \"value\""),
        (
            json!({"Operations": [{"op": "replace", "value": "x"}]}),
            ScimType::InvalidValue,
            "must be an object",
        ),
        (
            json!({"Operations": [{"op": "replace", "value": null}]}),
            ScimType::InvalidValue,
            "must be an object",
        ),
        (
            json!({"Operations": [{"op": "add", "path": 5, "value": 1}]}),
            ScimType::InvalidPath,
            "must be a string",
        ),
        (
            json!({"Operations": [{"op": "add", "path": "a b", "value": 1}]}),
            ScimType::InvalidPath,
            "invalid path",
        ),
        (
            json!({"Operations": [{"op": "add", "path": "emails[type eq]", "value": 1}]}),
            ScimType::InvalidPath,
            "invalid value filter",
        ),
        (
            json!({"Operations": [{"op": "add", "path": "a", "value": 1}, {"op": "nope"}]}),
            ScimType::InvalidSyntax,
            "Operations[1]",
        ),
    ];
    for (body, scim_type, needle) in cases {
        let e = PatchRequest::parse(body).expect_err(&body.to_string());
        assert_eq!(e.scim_type, *scim_type, "{body}: {e}");
        assert!(e.detail.contains(needle), "{body}: {:?} lacks {needle:?}", e.detail);
    }
}

// --- Okta -----------------------------------------------------------------------------

#[test]
fn okta_deactivate_reactivate_and_password_sync() {
    let u = ok(&user(), ops(json!([{"op": "replace", "value": {"active": false}}])), &USER_RW);
    assert_eq!(u["active"], json!(false));
    let u = ok(&u, ops(json!([{"op": "replace", "value": {"active": true}}])), &USER_RW);
    assert_eq!(u, user());
    let u = ok(&user(), ops(json!([{"op": "replace", "value": {"password": "x7Rq2pLm"}}])), &USER_RW);
    assert_eq!(u, user());
}

#[test]
fn okta_group_rename_with_id_and_membership() {
    let g =
        ok(&group(), ops(json!([{"op": "replace", "value": {"id": "31", "displayName": "Eng"}}])), &GROUP);
    assert_eq!(g["displayName"], "Eng");
    assert_eq!(g["id"], "31");
    // A different id in the value object is ignored too (Okta's body is informational).
    let g2 =
        ok(&group(), ops(json!([{"op": "replace", "value": {"id": "g-42", "displayName": "Eng"}}])), &GROUP);
    assert_eq!(g2, g);

    let g = ok(
        &group(),
        ops(json!([
            {"op": "remove", "path": "members[value eq \"u-17\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u-23", "display": "ana@example.com"}]}
        ])),
        &GROUP,
    );
    assert_eq!(members(&g), ["u-42", "u-23"]);
    // read-only `display` in the input is not stored
    assert_eq!(g["members"][1], json!({"value": "u-23"}));

    let g = ok(
        &group(),
        ops(json!([{"op": "replace", "path": "members", "value": [{"value": "a"}, {"value": "b"}]}])),
        &GROUP,
    );
    assert_eq!(members(&g), ["a", "b"]);
    let g = ok(&group(), ops(json!([{"op": "replace", "path": "members", "value": []}])), &GROUP);
    assert!(g.get("members").is_none());
}

// --- Entra ----------------------------------------------------------------------------

#[test]
fn entra_flag_on_update() {
    let body = ops(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ana.d@example.com"},
        {"op": "replace", "value": {
            "displayName": "Ana D.",
            "name.givenName": "Ana",
            "name.familyName": "D.",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName": "ana.d@example.com",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "E17"
        }}
    ]));
    let u = ok(&user(), body.clone(), &USER_ENT);
    assert_eq!(u["emails"], json!([{"value": "ana.d@example.com", "type": "work", "primary": true}]));
    assert_eq!(u["displayName"], "Ana D.");
    assert_eq!(u["name"], json!({"formatted": "Ana Diaz", "givenName": "Ana", "familyName": "D."}));
    assert_eq!(u["userName"], "ana.d@example.com");
    assert_eq!(u[ENT], json!({"employeeNumber": "E17"}));
    assert_eq!(u["schemas"], json!([CORE, ENT]));

    // Without the enterprise extension in the schema, the URN key is an unknown attribute.
    let e = patch(&user(), &body, &USER_RW).unwrap_err();
    assert_eq!(e.scim_type, ScimType::InvalidPath);
    assert!(e.detail.contains("employeeNumber"), "{}", e.detail);
}

#[test]
fn entra_work_email_is_created_when_missing() {
    let mut u = user();
    u["emails"] = json!([{"value": "ana@home.example", "type": "home", "primary": true}]);
    let u = ok(
        &u,
        ops(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ana@example.com"}])),
        &USER_RW,
    );
    assert_eq!(
        u["emails"],
        json!([{"value": "ana@home.example", "type": "home", "primary": true}, {"type": "work", "value": "ana@example.com"}])
    );
    let mut bare = user();
    bare.as_object_mut().unwrap().remove("emails");
    let u = ok(
        &bare,
        ops(
            json!([{"op": "replace", "path": "emails[type eq \"work\" and primary eq true].value", "value": "a@b.c"}]),
        ),
        &USER_RW,
    );
    assert_eq!(u["emails"], json!([{"type": "work", "primary": true, "value": "a@b.c"}]));
    // Replacing with null where nothing matches is a no-op.
    let u = ok(
        &bare,
        ops(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": null}])),
        &USER_RW,
    );
    assert_eq!(u, bare);
}

#[test]
fn entra_legacy_operations() {
    let u = ok(&user(), ops(json!([{"op": "Replace", "path": "active", "value": "False"}])), &USER_RW);
    assert_eq!(u["active"], json!(false));
    let u = ok(&u, ops(json!([{"op": "Add", "path": "active", "value": "True"}])), &USER_RW);
    assert_eq!(u["active"], json!(true));
    let u = ok(&user(), ops(json!([{"op": "Replace", "path": "name.familyName", "value": "D."}])), &USER_RW);
    assert_eq!(u["name"]["familyName"], "D.");
    // `Add` on a single-valued attribute replaces it.
    let u = ok(&user(), ops(json!([{"op": "Add", "path": "displayName", "value": "Ana"}])), &USER_RW);
    assert_eq!(u["displayName"], "Ana");
    let u = ok(
        &user(),
        ops(
            json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"}]),
        ),
        &USER_ENT,
    );
    assert_eq!(u[ENT]["department"], "Sales");
    let u = ok(
        &user(),
        ops(json!([{"op": "Replace", "path": "userName", "value": "ana.d@example.com"}])),
        &USER_RW,
    );
    assert_eq!(u["userName"], "ana.d@example.com");
    let u = ok(
        &user(),
        ops(
            json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": [{"$ref": "https://x/Users/9", "value": "9"}]}]),
        ),
        &USER_ENT,
    );
    assert_eq!(u[ENT]["manager"], json!({"$ref": "https://x/Users/9", "value": "9"}));
}

#[test]
fn entra_group_operations() {
    let g =
        ok(&group(), ops(json!([{"op": "Replace", "path": "displayName", "value": "Sales EMEA"}])), &GROUP);
    assert_eq!(g["displayName"], "Sales EMEA");
    let g = ok(
        &group(),
        ops(
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u-9"}, {"value": "u-42"}]}]),
        ),
        &GROUP,
    );
    assert_eq!(members(&g), ["u-17", "u-42", "u-9"]);
    assert_eq!(g["members"][2], json!({"value": "u-9"}));
    // legacy removal by value list, and the flag-on filter form
    let g = ok(
        &group(),
        ops(json!([{"op": "Remove", "path": "members", "value": [{"value": "u-17"}, {"value": "nope"}]}])),
        &GROUP,
    );
    assert_eq!(members(&g), ["u-42"]);
    let g = ok(&group(), ops(json!([{"op": "remove", "path": "members[value eq \"u-17\"]"}])), &GROUP);
    assert_eq!(members(&g), ["u-42"]);
    // removing a non-member is a no-op (idempotent retries)
    let g = ok(&group(), ops(json!([{"op": "remove", "path": "members[value eq \"u-99\"]"}])), &GROUP);
    assert_eq!(g, group());
    // an explicit empty list removes nothing; no value removes all
    let g = ok(&group(), ops(json!([{"op": "remove", "path": "members", "value": []}])), &GROUP);
    assert_eq!(g, group());
    let g = ok(&group(), ops(json!([{"op": "remove", "path": "members"}])), &GROUP);
    assert!(g.get("members").is_none());
    // bare strings (Microsoft's tests)
    let g = ok(&group(), ops(json!([{"op": "add", "path": "members", "value": ["u-1", "u-17"]}])), &GROUP);
    assert_eq!(members(&g), ["u-17", "u-42", "u-1"]);
    let g = ok(&group(), ops(json!([{"op": "remove", "path": "members", "value": ["u-17"]}])), &GROUP);
    assert_eq!(members(&g), ["u-42"]);
    // a single object where a list is expected
    let g = ok(&group(), ops(json!([{"op": "add", "path": "members", "value": {"value": "u-5"}}])), &GROUP);
    assert_eq!(members(&g), ["u-17", "u-42", "u-5"]);
}

#[test]
fn authentik_whole_group_replace() {
    let g = ok(
        &group(),
        ops(json!([{"op": "replace", "value": {
            "id": "31", "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Eng", "externalId": "ak-1", "members": [{"value": "u-1"}],
            "meta": {"resourceType": "Group"}
        }}])),
        &GROUP,
    );
    assert_eq!(g["displayName"], "Eng");
    assert_eq!(members(&g), ["u-1"]);
    // externalId is a schema attribute (RFC 7643 §3.1): the engine applies it; whether it
    // is stored is the provisioning layer's business.
    assert_eq!(g["externalId"], "ak-1");
}

// --- generic RFC semantics ----------------------------------------------------------

#[test]
fn add_replace_remove_table() {
    // (operations, expected JSON pointer, expected value at it; Value::Null = absent)
    let cases: &[(Value, &str, Value)] = &[
        (json!([{"op": "replace", "path": "displayName", "value": "X"}]), "/displayName", json!("X")),
        (json!([{"op": "replace", "path": "DISPLAYNAME", "value": "X"}]), "/displayName", json!("X")),
        (json!([{"op": "replace", "path": "role", "value": null}]), "/role", Value::Null),
        (json!([{"op": "replace", "path": "role", "value": ""}]), "/role", Value::Null),
        (json!([{"op": "remove", "path": "role", "value": "ignored"}]), "/role", Value::Null),
        (json!([{"op": "remove", "path": "role"}]), "/role", Value::Null),
        (json!([{"op": "add", "path": "role", "value": "guest"}]), "/role", json!("guest")),
        (
            json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:role", "value": "owner"}]),
            "/role",
            json!("owner"),
        ),
        (json!([{"op": "add", "path": "externalId", "value": "ext-1"}]), "/externalId", json!("ext-1")),
        (
            json!([{"op": "replace", "path": "name.givenName", "value": "Anna"}]),
            "/name/givenName",
            json!("Anna"),
        ),
        (json!([{"op": "replace", "path": "name.givenName", "value": null}]), "/name/givenName", Value::Null),
        (json!([{"op": "remove", "path": "name.givenName"}]), "/name/givenName", Value::Null),
        (json!([{"op": "remove", "path": "name.givenName"}]), "/name/familyName", json!("Diaz")),
        (json!([{"op": "remove", "path": "name.familyName"}]), "/name/familyName", Value::Null),
        // complex replace merges sub-attributes (RFC 7644 §3.5.2.3)
        (
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Anna"}}]),
            "/name/familyName",
            json!("Diaz"),
        ),
        (
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Anna", "familyName": null}}]),
            "/name",
            json!({"formatted": "Ana Diaz", "givenName": "Anna"}),
        ),
        (json!([{"op": "add", "value": {"name": {"givenName": "Anna"}}}]), "/name/givenName", json!("Anna")),
        (
            json!([{"op": "replace", "value": {"name.formatted": "A D", "active": "false"}}]),
            "/active",
            json!(false),
        ),
        (json!([{"op": "replace", "value": {"Name.Formatted": "A D"}}]), "/name/formatted", json!("A D")),
        (
            json!([{"op": "replace", "value": {"emails[type eq \"work\"].value": "w@x"}}]),
            "/emails/0/value",
            json!("w@x"),
        ),
        (
            json!([{"op": "replace", "value": {"roles": [], "title": null, "nickName": ""}}]),
            "/displayName",
            json!("Ana Diaz"),
        ),
        (
            json!([{"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:User": {"displayName": "Z"}}}]),
            "/displayName",
            json!("Z"),
        ),
        (
            json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User", "value": {"displayName": "Z"}}]),
            "/displayName",
            json!("Z"),
        ),
        // multi-valued
        (
            json!([{"op": "add", "path": "emails", "value": [{"value": "ANA@example.com", "type": "home"}]}]),
            "/emails/1",
            Value::Null,
        ),
        (
            json!([{"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home", "primary": true}]}]),
            "/emails/0/primary",
            json!(false),
        ),
        (
            json!([{"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "home", "primary": "True"}]}]),
            "/emails/1/primary",
            json!(true),
        ),
        (
            json!([{"op": "replace", "path": "emails", "value": [{"value": "b@x"}]}]),
            "/emails",
            json!([{"value": "b@x"}]),
        ),
        (json!([{"op": "replace", "path": "emails", "value": null}]), "/emails", Value::Null),
        (json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]), "/emails", Value::Null),
        (
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
            "/emails/0",
            json!({"value": "ana@example.com", "type": "work"}),
        ),
        (json!([{"op": "remove", "path": "emails.type"}]), "/emails/0/type", Value::Null),
        (
            json!([{"op": "replace", "path": "emails.type", "value": "other"}]),
            "/emails/0/type",
            json!("other"),
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"primary": false}}]),
            "/emails/0/primary",
            json!(false),
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": null}]),
            "/emails",
            Value::Null,
        ),
        (
            json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"value": "h@x"}}]),
            "/emails/1",
            json!({"type": "home", "value": "h@x"}),
        ),
        (
            json!([{"op": "add", "path": "emails", "value": [{"value": "a@x", "type": "work", "primary": true}]}, {"op": "replace", "path": "emails[value eq \"a@x\"].primary", "value": false}, {"op": "replace", "path": "emails[value eq \"ana@example.com\"].primary", "value": true}]),
            "/emails/1/primary",
            json!(false),
        ),
        // ops apply in order
        (
            json!([{"op": "replace", "path": "displayName", "value": "A"}, {"op": "replace", "path": "displayName", "value": "B"}]),
            "/displayName",
            json!("B"),
        ),
        (
            json!([{"op": "remove", "path": "emails"}, {"op": "add", "path": "emails", "value": [{"value": "n@x"}]}]),
            "/emails",
            json!([{"value": "n@x"}]),
        ),
    ];
    for (operations, pointer, expected) in cases {
        let u = ok(&user(), ops(operations.clone()), &USER_RW);
        let got = u.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(&got, expected, "{operations} at {pointer}: {u}");
    }
}

#[test]
fn extension_paths_and_schemas() {
    let u = ok(
        &user(),
        ops(
            json!([{"op": "add", "path": ENT, "value": {"employeeNumber": "1", "manager": {"value": "9", "displayName": "ignored"}}}]),
        ),
        &USER_ENT,
    );
    assert_eq!(u[ENT], json!({"employeeNumber": "1", "manager": {"value": "9"}}));
    assert_eq!(u["schemas"], json!([CORE, ENT]));
    let u = ok(&u, ops(json!([{"op": "replace", "value": {ENT: {"department": "D"}}}])), &USER_ENT);
    assert_eq!(u[ENT]["department"], "D");
    let u = ok(
        &u,
        ops(json!([{"op": "replace", "path": format!("{ENT}:manager.value"), "value": "10"}])),
        &USER_ENT,
    );
    assert_eq!(u[ENT]["manager"], json!({"value": "10"}));
    let u = ok(
        &u,
        ops(
            json!([{"op": "remove", "path": format!("{ENT}:employeeNumber")}, {"op": "remove", "path": format!("{ENT}:department")}, {"op": "remove", "path": format!("{ENT}:manager")}]),
        ),
        &USER_ENT,
    );
    assert!(u.get(ENT).is_none(), "{u}");
    assert_eq!(u["schemas"], json!([CORE]));
    let u = ok(
        &user(),
        ops(json!([{"op": "add", "path": ENT, "value": {"department": "D"}}, {"op": "remove", "path": ENT}])),
        &USER_ENT,
    );
    assert_eq!(u, user());
    let e = patch(&user(), &ops(json!([{"op": "remove", "path": CORE}])), &USER_ENT).unwrap_err();
    assert_eq!(e.scim_type, ScimType::Mutability);
}

#[test]
fn apply_errors_table() {
    let cases: &[(&Value, &ResourceTypeDef, Value, ScimType, &str)] = &[
        // unknown attributes
        (
            &user(),
            &USER_RW,
            json!([{"op": "add", "path": "nickName", "value": "A"}]),
            ScimType::InvalidPath,
            "unknown attribute \"nickName\"",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "add", "path": "name.middleName", "value": "A"}]),
            ScimType::InvalidPath,
            "unknown attribute \"name.middleName\"",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "value": {"nickName": "A"}}]),
            ScimType::InvalidPath,
            "unknown attribute \"nickName\" in value",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "value": {"bad key!": "A"}}]),
            ScimType::InvalidPath,
            "unknown attribute \"bad key!\"",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "password", "value": "x"}]),
            ScimType::InvalidPath,
            "password",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "add", "path": "emails", "value": [{"value": "a@b", "kind": "x"}]}]),
            ScimType::InvalidPath,
            "emails.kind",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "emails[kind eq \"x\"].value", "value": "a"}]),
            ScimType::InvalidPath,
            "unknown attribute",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": "a"}]),
            ScimType::InvalidPath,
            "not a complex attribute",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "remove", "path": "members"}]),
            ScimType::InvalidPath,
            "unknown attribute",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "replace", "path": "userName", "value": "x"}]),
            ScimType::InvalidPath,
            "unknown attribute",
        ),
        // mutability
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "id", "value": "18"}]),
            ScimType::Mutability,
            "\"id\" is readOnly",
        ),
        (&user(), &USER_RW, json!([{"op": "remove", "path": "meta"}]), ScimType::Mutability, "readOnly"),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "meta.lastModified", "value": "2024-01-01T00:00:00Z"}]),
            ScimType::Mutability,
            "readOnly",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "add", "path": "groups", "value": [{"value": "1"}]}]),
            ScimType::Mutability,
            "\"groups\" is readOnly",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "replace", "path": "members[value eq \"u-17\"].value", "value": "u-18"}]),
            ScimType::Mutability,
            "\"members.value\" is immutable",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "replace", "path": "members[value eq \"u-17\"]", "value": {"value": "u-18"}}]),
            ScimType::Mutability,
            "immutable",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "remove", "path": "members[value eq \"u-17\"].value"}]),
            ScimType::Mutability,
            "immutable",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "replace", "path": "members[value eq \"u-17\"].display", "value": "x"}]),
            ScimType::Mutability,
            "readOnly",
        ),
        // required attributes
        (
            &user(),
            &USER_RW,
            json!([{"op": "remove", "path": "userName"}]),
            ScimType::Mutability,
            "required attribute \"userName\"",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "userName", "value": null}]),
            ScimType::Mutability,
            "required",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "value": {"userName": ""}}]),
            ScimType::Mutability,
            "required",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "remove", "path": "displayName"}]),
            ScimType::Mutability,
            "required attribute \"displayName\"",
        ),
        // values
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "active", "value": "yes"}]),
            ScimType::InvalidValue,
            "\"active\" must be a boolean, not a string",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "active", "value": 0}]),
            ScimType::InvalidValue,
            "boolean",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "value": {"active": [true, false]}}]),
            ScimType::InvalidValue,
            "boolean",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "userName", "value": 42}]),
            ScimType::InvalidValue,
            "\"userName\" must be a string, not a number",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "name", "value": "Ana"}]),
            ScimType::InvalidValue,
            "object of sub-attributes",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "add", "path": "emails", "value": [{"value": "a", "primary": "maybe"}]}]),
            ScimType::InvalidValue,
            "emails.primary",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "add", "path": "members", "value": [{"value": 42}]}]),
            ScimType::InvalidValue,
            "members.value",
        ),
        (
            &group(),
            &GROUP,
            json!([{"op": "add", "path": "members", "value": [42]}]),
            ScimType::InvalidValue,
            "members.value",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "value": {CORE: "x"}}]),
            ScimType::InvalidValue,
            "must be an object",
        ),
        (
            &user(),
            &USER_ENT,
            json!([{"op": "replace", "path": ENT, "value": "x"}]),
            ScimType::InvalidValue,
            "must be an object",
        ),
        // noTarget: replace with a filter (no sub-attribute) that matches nothing
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@x"}}]),
            ScimType::NoTarget,
            "no value of \"emails\" matches [type eq \"home\"]",
        ),
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "emails[type co \"h\"].value", "value": "h@x"}]),
            ScimType::NoTarget,
            "no value",
        ),
        // atomicity: an error in a later operation
        (
            &user(),
            &USER_RW,
            json!([{"op": "replace", "path": "displayName", "value": "A"}, {"op": "replace", "path": "id", "value": "1"}]),
            ScimType::Mutability,
            "Operations[1]",
        ),
    ];
    for (resource, rt, operations, scim_type, needle) in cases {
        let e = patch(resource, &ops(operations.clone()), rt).expect_err(&operations.to_string());
        assert_eq!(e.scim_type, *scim_type, "{operations}: {e}");
        assert!(e.detail.contains(needle), "{operations}: {:?} lacks {needle:?}", e.detail);
    }
}

#[test]
fn pathless_ignores_what_clients_do_not_own() {
    let u = ok(
        &user(),
        ops(json!([{"op": "replace", "value": {
            "id": "99", "ID": "98", "schemas": ["x"], "meta": {"version": "1"}, "password": "p",
            "groups": [{"value": "1"}], "urn:ietf:params:scim:schemas:core:2.0:User:id": "5", "roles": [], "phoneNumbers": null
        }}])),
        &USER_RW,
    );
    assert_eq!(u, user());
}

#[test]
fn immutable_sub_attributes_can_be_set_on_new_elements() {
    let g = ok(
        &group(),
        ops(json!([{"op": "add", "path": "members", "value": [{"value": "u-1", "type": "User"}]}])),
        &GROUP,
    );
    assert_eq!(g["members"][2], json!({"value": "u-1", "type": "User"}));
    // same value: not a change
    let g = ok(
        &group(),
        ops(json!([{"op": "replace", "path": "members[value eq \"u-17\"].value", "value": "u-17"}])),
        &GROUP,
    );
    assert_eq!(g, group());
    // setting an immutable sub-attribute that has no value yet
    let g = ok(
        &group(),
        ops(json!([{"op": "add", "path": "members[value eq \"u-42\"].type", "value": "User"}])),
        &GROUP,
    );
    assert_eq!(g["members"][1], json!({"value": "u-42", "type": "User"}));
}

#[test]
fn case_variants_in_the_resource_are_canonicalised() {
    let odd = json!({"id": "1", "USERNAME": "a@b", "Name": {"GivenName": "A"}, "Emails": [{"Value": "a@b"}]});
    let u = ok(
        &odd,
        ops(
            json!([{"op": "replace", "path": "userName", "value": "c@d"}, {"op": "replace", "path": "name.givenName", "value": "C"}, {"op": "add", "path": "emails", "value": [{"value": "A@B"}]}]),
        ),
        &USER_RW,
    );
    assert_eq!(
        u,
        json!({"id": "1", "userName": "c@d", "name": {"givenName": "C"}, "emails": [{"Value": "a@b"}]})
    );
}

#[test]
fn garbage_never_panics() {
    let bodies = [
        json!(null),
        json!("x"),
        json!({"Operations": [{"op": "add", "value": {"": 1, "urn:": 2, "a.b.c": 3, "emails[": 4}}]}),
        json!({"Operations": [{"op": "add", "path": "emails[value eq \"x\"].", "value": 1}]}),
        json!({"Operations": [{"op": "add", "path": "emails", "value": [[[]], {}, null, "", 1, true, {"value": {"x": 1}}]}]}),
        json!({"Operations": [{"op": "replace", "path": "name", "value": {"givenName": {"a": [1]}}}]}),
        json!({"Operations": [{"op": "remove", "path": "emails", "value": [{}, [], 1]}]}),
        json!({"Operations": [{"op": "add", "value": {"urn:ietf:params:scim:schemas:core:2.0:User": {"urn:ietf:params:scim:schemas:core:2.0:User": {}}}}]}),
        json!({"Operations": [{"op": "replace", "path": "emails[not (not (type pr))].primary", "value": "TRUE"}]}),
    ];
    let resources = [
        user(),
        group(),
        json!({}),
        json!({"emails": 5, "name": "x", "members": {"value": 1}, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": 7}),
        json!([1]),
    ];
    for body in &bodies {
        for resource in &resources {
            for rt in [&USER_RW, &GROUP, &USER_ENT] {
                let _ = patch(resource, body, rt);
            }
        }
    }
}

#[test]
fn retain_known_drops_only_what_the_schema_does_not_publish() {
    let mut req = PatchRequest::parse(&ops(json!([
        {"op":"Add","path":"nickName","value":"Ham"},
        {"op":"replace","path":"emails[type eq \"work\"].value","value":"a@b.co"},
        {"op":"replace","path":"name.middleName","value":"M"},
        {"op":"replace","value":{"displayName":"D","title":"T","id":"1",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"X"}},
        {"op":"replace","value":{"title":"only unknown"}}
    ])))
    .unwrap();
    let dropped = req.retain_known(&USER);
    assert_eq!(
        dropped,
        vec![
            "nickName",
            "name.middleName",
            "title",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "title"
        ]
    );
    assert_eq!(req.operations.len(), 2);
    assert_eq!(req.operations[1].value, Some(json!({"displayName":"D","id":"1"})));
    // With the extension published, its attributes are kept.
    let mut req = PatchRequest::parse(&ops(json!([
        {"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"X"}},
        {"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter","value":"C"}
    ])))
    .unwrap();
    assert_eq!(
        req.retain_known(&USER_ENT),
        vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"]
    );
}
