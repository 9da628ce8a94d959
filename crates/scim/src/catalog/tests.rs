//! The catalog of storable attributes: parsing, reading and writing values, and the User
//! resource type that publishes a chosen set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;
use crate::discovery;
use crate::filter::Filter;
use crate::patch::PatchRequest;

const ENT: &str = ENTERPRISE_USER_SCHEMA;

fn attrs(keys: &[&str]) -> Vec<OptionalAttr> {
    keys.iter().map(|k| OptionalAttr::parse(k).unwrap()).collect()
}

#[test]
fn keys_parse_to_canonical_attributes_or_say_why_not() {
    for (key, canonical) in [
        ("title", "title"),
        ("TITLE", "title"),
        ("urn:ietf:params:scim:schemas:core:2.0:User:preferredLanguage", "preferredLanguage"),
        ("phoneNumbers[type eq \"work\"].value", "phoneNumbers[type eq \"work\"].value"),
        ("phonenumbers[Type EQ \"Mobile\"].Value", "phoneNumbers[type eq \"mobile\"].value"),
        ("addresses[type eq \"work\"].locality", "addresses[type eq \"work\"].locality"),
        (&format!("{ENT}:department"), &format!("{ENT}:department")),
        (&format!("{ENT}:manager"), &format!("{ENT}:manager")),
    ] {
        assert_eq!(OptionalAttr::parse(key).map(|a| a.to_string()), Ok(canonical.to_string()), "{key}");
    }
    for (key, says) in [
        ("userName", "stored by the sidecar"),
        ("emails[type eq \"work\"].value", "stored by the sidecar"),
        ("phoneNumbers", "multi-valued"),
        ("phoneNumbers[type eq \"car\"].value", "one of"),
        ("phoneNumbers[value eq \"1\"].value", "[type eq"),
        ("phoneNumbers[type eq \"work\"]", "sub-attribute"),
        ("nickname2", "one of"),
        ("urn:example:x:department", "unknown schema"),
        (&format!("{ENT}:nickName"), "one of"),
    ] {
        let err = OptionalAttr::parse(key).unwrap_err();
        assert!(err.contains(says), "{key}: {err}");
    }
    assert!(OptionalAttr::parse(&format!("{ENT}:manager")).unwrap().is_manager());
}

#[test]
fn values_are_read_and_written_where_the_schema_puts_them() {
    let a = attrs(&[
        "title",
        "phoneNumbers[type eq \"work\"].value",
        "phoneNumbers[type eq \"mobile\"].value",
        &format!("{ENT}:department"),
        &format!("{ENT}:manager"),
    ]);
    let mut user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1"});
    let map = user.as_object_mut().unwrap();
    a[0].write(map, json!("Prince"));
    a[1].write(map, json!("+1 555"));
    a[2].write(map, json!("+1 666"));
    a[3].write(map, json!("Royalty"));
    a[4].write(map, json!({"value": "7", "$ref": "https://x/Users/7"}));
    assert_eq!(
        user,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT], "id": "1", "title": "Prince",
            "phoneNumbers": [{"type": "work", "value": "+1 555"}, {"type": "mobile", "value": "+1 666"}],
            ENT: {"department": "Royalty", "manager": {"value": "7", "$ref": "https://x/Users/7"}}})
    );
    assert_eq!(a[1].read(&user), Some(&json!("+1 555")));
    assert_eq!(a[2].read(&user), Some(&json!("+1 666")));
    assert_eq!(a[4].read(&user), Some(&json!("7")));
    // Entra's list form of manager, a bare id, and unassigned values.
    assert_eq!(a[4].read(&json!({ENT: {"manager": [{"value": "8"}]}})), Some(&json!("8")));
    assert_eq!(a[4].read(&json!({ENT: {"manager": "9"}})), Some(&json!("9")));
    assert_eq!(a[0].read(&json!({"title": ""})), None);
    assert_eq!(a[0].read(&json!({"title": null})), None);
    assert_eq!(a[1].read(&json!({"phoneNumbers": [{"type": "WORK", "value": "1"}]})), Some(&json!("1")));
    // What no attribute stores.
    let other = json!({"phoneNumbers": [{"type": "work", "value": "1", "primary": true}, {"type": "fax", "value": "2"}]});
    assert_eq!(unstored_values(&other, &a), vec!["phoneNumbers[type eq \"fax\"].value"]);
}

#[test]
fn the_user_type_publishes_exactly_the_chosen_attributes() {
    assert!(std::ptr::eq(user_type(&[]), &USER));
    let core_only = user_type(&attrs(&["title"]));
    assert!(core_only.extensions.is_empty(), "no enterprise attribute: no extension");
    assert!(core_only.find(None, "title", None).is_some());
    assert!(core_only.find(None, "nickName", None).is_none());
    let keys = [
        "title",
        "phoneNumbers[type eq \"work\"].value",
        &format!("{ENT}:employeeNumber"),
        &format!("{ENT}:manager"),
    ];
    let rt = user_type(&attrs(&keys));
    assert!(std::ptr::eq(rt, user_type(&attrs(&keys))), "built once per set");
    assert_eq!(rt.extensions.len(), 1);
    assert!(rt.find(Some(ENT), "employeeNumber", None).is_some());
    assert!(rt.find(Some(ENT), "costCenter", None).is_none());
    let phones = rt.find(None, "phoneNumbers", None).unwrap();
    assert_eq!(phones.sub("type").unwrap().canonical_values, &["work"]);
    // Filters, PATCH and discovery work from it.
    let user = json!({"id": "1", "userName": "a@b.co", "title": "Vice President",
        "phoneNumbers": [{"type": "work", "value": "+1 555"}], ENT: {"employeeNumber": "E17", "manager": {"value": "7"}}});
    for (f, want) in [
        (format!("{ENT}:employeeNumber eq \"E17\""), true),
        ("title co \"president\"".to_string(), true),
        ("phoneNumbers[type eq \"work\"].value eq \"+1 555\"".to_string(), true),
        (format!("id eq \"1\" and {ENT}:manager eq \"7\""), true),
        (format!("{ENT}:employeeNumber eq \"e17\""), true), // caseExact false (RFC 7643 §4.3)
        (format!("{ENT}:employeeNumber eq \"E18\""), false),
    ] {
        let filter = Filter::parse(&f).unwrap();
        filter.validate(rt).unwrap();
        assert_eq!(filter.matches(&user, rt), want, "{f}");
    }
    assert!(Filter::parse(&format!("{ENT}:costCenter eq \"x\"")).unwrap().validate(rt).is_err());
    let mut patched = user.clone();
    PatchRequest::parse(&json!({"Operations": [
        {"op": "replace", "value": {format!("{ENT}:employeeNumber"): "E18", "title": "King"}},
        {"op": "Add", "path": "manager", "value": [{"value": "8"}]}]}))
    .unwrap()
    .apply(&mut patched, rt)
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(patched[ENT]["employeeNumber"], "E18");
    assert_eq!(patched["title"], "King");
    let docs = discovery::schemas("https://x/scim/v2", &[rt]);
    let ids: Vec<&str> = docs.iter().filter_map(|d| d["id"].as_str()).collect();
    assert!(ids.contains(&ENT), "{ids:?}");
    let types = discovery::resource_types("https://x/scim/v2", &[rt]);
    assert_eq!(types[0]["schemaExtensions"], json!([{"schema": ENT, "required": false}]));
}
