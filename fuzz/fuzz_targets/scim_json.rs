//! Any JSON document as a stored resource: filters and PATCHes evaluated against odd
//! shapes (wrong types, case variants, nulls, deep nesting) never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim::filter::Filter;
use scim::patch::PatchRequest;
use scim::schema::{GROUP, USER};
use serde_json::{json, Value};

const FILTERS: &[&str] = &[
    r#"userName eq "a@b.c""#,
    r#"emails[type eq "work" and primary eq true].value co "@""#,
    r#"members eq "1" or not (displayName sw "x")"#,
    r#"meta.lastModified gt "2024-01-01T00:00:00Z" and name.givenName pr"#,
    r#"active eq false or externalId ne "e""#,
    r#"groups[value eq "2"] and emails.value ew ".c""#,
];

fuzz_target!(|data: &[u8]| {
    let Ok(resource) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let filters: Vec<Filter> = FILTERS
        .iter()
        .filter_map(|f| Filter::parse(f).ok())
        .collect();
    let patches = [
        json!({"Operations": [{"op": "replace", "value": {"active": "False", "name.givenName": "X", "displayName": "D"}}]}),
        json!({"Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "x@y.z"}]}),
        json!({"Operations": [{"op": "add", "path": "members", "value": ["1", {"value": "4"}]}]}),
        json!({"Operations": [{"op": "Remove", "path": "members", "value": [{"value": "1"}]}]}),
        json!({"Operations": [{"op": "remove", "path": "members[value eq \"3\"]"}]}),
        json!({"Operations": [{"op": "remove", "path": "name.familyName"}, {"op": "add", "path": "emails", "value": [{"value": "q@r.s", "primary": true}]}]}),
    ];
    for rt in [&USER, &GROUP] {
        for f in &filters {
            let _ = f.matches(&resource, rt);
        }
        for body in &patches {
            if let Ok(request) = PatchRequest::parse(body) {
                let mut patched = resource.clone();
                if request.apply(&mut patched, rt).is_err() {
                    assert_eq!(patched, resource, "failed PATCH modified the resource");
                }
            }
        }
    }
});
