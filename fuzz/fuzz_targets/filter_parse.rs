//! Any string: `Filter::parse` never panics, and what it accepts prints back to text
//! that parses to the same filter; validation and matching never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim::filter::Filter;
use scim::schema::{GROUP, USER};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Filter::parse(text) else {
        return;
    };
    let printed = filter.to_string();
    // Printing may lengthen a filter (quotes around bare words, `not (…)`, escapes): the round
    // trip is only owed while the printed form is itself within the length limit.
    if printed.len() <= scim::filter::MAX_FILTER_LEN {
        match Filter::parse(&printed) {
            Ok(again) => assert_eq!(again, filter, "{text:?} printed as {printed:?}"),
            Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
        }
    }
    let user = json!({
        "id": "1", "userName": "a@b.c", "active": true, "name": {"givenName": "A"},
        "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
        "meta": {"lastModified": "2024-01-01T00:00:00Z"}
    });
    let group = json!({"id": "2", "displayName": "G", "members": [{"value": "1"}]});
    for rt in [&USER, &GROUP] {
        let _ = filter.validate(rt);
        let _ = filter.matches(&user, rt);
        let _ = filter.matches(&group, rt);
    }
    let _ = filter.eq_constraint("userName");
});
