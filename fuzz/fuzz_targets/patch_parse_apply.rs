//! Any JSON body: `PatchRequest::parse` and `apply` never panic, and a failed `apply`
//! leaves the resource untouched (PATCH is atomic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim::patch::PatchRequest;
use scim::schema::{GROUP, USER};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(request) = PatchRequest::parse(&body) else {
        return;
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "1", "userName": "a@b.c", "displayName": "A B", "active": true,
        "name": {"givenName": "A", "familyName": "B"},
        "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
        "groups": [{"value": "2"}], "meta": {"resourceType": "User"}
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "2", "displayName": "G", "members": [{"value": "1"}, {"value": "3"}]
    });
    for (resource, rt) in [
        (&user, &USER),
        (&group, &GROUP),
        (&user, &GROUP),
        (&group, &USER),
    ] {
        let mut patched = resource.clone();
        if request.apply(&mut patched, rt).is_err() {
            assert_eq!(&patched, resource, "failed PATCH modified the resource");
        }
    }
});
