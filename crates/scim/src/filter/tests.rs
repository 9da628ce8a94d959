//! Unit tests (table-driven): accepted and rejected inputs with their scimType.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::*;
use crate::schema::{GROUP, USER};

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "17",
        "externalId": "Ana-Ext",
        "userName": "Ana@Example.com",
        "name": {"formatted": "Ana Diaz", "givenName": "Ana", "familyName": "Diaz"},
        "displayName": "Ana Diaz",
        "active": true,
        "role": "member",
        "emails": [
            {"value": "ana@example.com", "type": "work", "primary": true},
            {"value": "ana@home.example", "type": "home", "primary": false}
        ],
        "groups": [{"value": "31", "display": "Engineering"}],
        "meta": {
            "resourceType": "User",
            "created": "2024-01-02T03:04:05Z",
            "lastModified": "2024-06-01T12:00:00+02:00"
        }
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "31",
        "displayName": "Engineering",
        "members": [{"value": "17", "display": "Ana Diaz"}, {"value": "42"}],
        "meta": {"resourceType": "Group"}
    })
}

fn eval(filter: &str, resource: &Value, rt: &ResourceTypeDef) -> bool {
    let f = Filter::parse(filter).unwrap_or_else(|e| panic!("parse {filter}: {e}"));
    f.validate(rt).unwrap_or_else(|e| panic!("validate {filter}: {e}"));
    // Display round-trips to an equal AST.
    let again = Filter::parse(&f.to_string()).unwrap_or_else(|e| panic!("reparse {f}: {e}"));
    assert_eq!(again, f, "display round trip of {filter}");
    f.matches(resource, rt)
}

#[test]
fn user_filters_match_as_expected() {
    let u = user();
    let cases: &[(&str, bool)] = &[
        // eq and case rules: userName is case-insensitive, id/externalId case-exact.
        (r#"userName eq "ana@example.com""#, true),
        (r#"USERNAME Eq "ANA@EXAMPLE.COM""#, true),
        (r#"userName eq "bob@example.com""#, false),
        (r#"id eq "17""#, true),
        (r#"externalId eq "Ana-Ext""#, true),
        (r#"externalId eq "ana-ext""#, false),
        ("externalId eq Ana-Ext", true),
        ("id eq 17", true),
        // ne
        (r#"userName ne "bob@example.com""#, true),
        (r#"userName ne "ANA@example.com""#, false),
        // co / sw / ew
        (r#"userName co "EXAMPLE""#, true),
        (r#"userName sw "ana@""#, true),
        (r#"userName ew ".com""#, true),
        (r#"userName ew ".org""#, false),
        (r#"externalId co "ext""#, false),
        // gt / ge / lt / le on strings (lexical, case-folded) and date-times (instants)
        (r#"userName gt "a""#, true),
        (r#"userName lt "b""#, true),
        (r#"userName ge "ANA@EXAMPLE.COM""#, true),
        (r#"userName le "ana@example.com""#, true),
        (r#"meta.lastModified gt "2024-06-01T09:59:59Z""#, true),
        (r#"meta.lastModified gt "2024-06-01T10:00:00Z""#, false),
        (r#"meta.lastModified ge "2024-06-01T10:00:00Z""#, true),
        (r#"meta.lastModified eq "2024-06-01T10:00:00Z""#, true),
        (r#"meta.created lt "2024-01-02T04:00:00+01:00""#, false),
        (r#"meta.created le "2024-01-02T04:04:05+01:00""#, true),
        (r#"meta.Created gt "2020-01-01T00:00:00Z""#, true),
        // pr
        ("userName pr", true),
        ("emails pr", true),
        ("name.formatted pr", true),
        ("groups pr", true),
        // booleans
        ("active eq true", true),
        ("active eq TRUE", true),
        (r#"active eq "True""#, true),
        ("active eq false", false),
        ("active ne false", true),
        ("emails[primary eq true].value eq \"ana@example.com\"", true),
        // sub-attributes and multi-valued
        (r#"name.familyName eq "diaz""#, true),
        (r#"emails.value eq "ana@home.example""#, true),
        (r#"emails.value eq "nobody@example.com""#, false),
        (r#"emails.type eq "home""#, true),
        (r#"emails eq "ANA@example.com""#, true),
        (r#"groups.value eq "31""#, true),
        (r#"groups eq "31""#, true),
        // value paths
        (r#"emails[type eq "work"]"#, true),
        (r#"emails[type eq "other"]"#, false),
        (r#"emails[type eq "work" and primary eq true].value eq "ana@example.com""#, true),
        (r#"emails[type eq "work"].value eq "ana@home.example""#, false),
        (r#"emails[type eq "home"].value eq "ana@home.example""#, true),
        (r#"emails[type eq "work" or type eq "home"].value ew "example""#, true),
        (r#"emails[not (type eq "work")].primary eq false"#, true),
        (r#"emails[type eq "work"].display pr"#, false),
        (r#"emails[value co "home"] and userName sw "ana""#, true),
        // URN-qualified names
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ana@example.com""#, true),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "Ana""#, true),
        (r#"URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:USERNAME eq "ana@example.com""#, true),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"].value pr"#, true),
        // precedence: not > and > or
        (r#"userName eq "x" or id eq "17" and active eq true"#, true),
        (r#"(userName eq "x" or id eq "17") and active eq false"#, false),
        (r#"userName eq "x" or id eq "17" and active eq false"#, false),
        (r#"id eq "17" and active eq false or userName pr"#, true),
        (r#"not (id eq "17") or active eq true"#, true),
        (r#"not (id eq "17") and active eq true"#, false),
        (r#"not id eq "18" and active eq true"#, true),
        (r#"not not (id eq "17")"#, true),
        (r#"not(id eq "17")"#, false),
        (r#"(id eq "17")and(active eq true)"#, true),
        ("id\teq\n\"17\"\r\nAND active Eq TRUE", true),
        (r#"((((id eq "17"))))"#, true),
        (
            r#"name.FamilyName eq "Diaz" and (emails.Value co "example.com" or emails.Value co "example.org")"#,
            true,
        ),
        // Entra's reference check
        (r#"id eq "17" and groups eq "31""#, true),
        // null literals
        ("name.formatted eq null", false),
        ("name.formatted ne null", true),
        ("userName eq null", false),
        ("userName ne null", true),
        // escapes in strings
        (r#"displayName eq "Ana\u0020Diaz""#, true),
        (r#"displayName eq "Ana \"Diaz\"""#, false),
    ];
    for (filter, expected) in cases {
        assert_eq!(eval(filter, &u, &USER), *expected, "{filter}");
    }
}

#[test]
fn group_filters_match_as_expected() {
    let g = group();
    let cases: &[(&str, bool)] = &[
        (r#"displayName eq "Engineering""#, true),
        // Group displayName is caseExact false (RFC 7643 §4.2).
        (r#"displayName eq "engineering""#, true),
        (r#"displayName eq "engineers""#, false),
        (r#"displayName co "GINEER""#, true),
        (r#"displayName sw "eng""#, true),
        (r#"displayName ew "RING""#, true),
        (r#"members eq "42""#, true),
        (r#"members eq "43""#, false),
        (r#"members.value eq "17""#, true),
        (r#"members[value eq "17"]"#, true),
        (r#"members[value eq "17"].display eq "ana diaz""#, true),
        (r#"id eq "31" and members eq "42""#, true),
        (r#"id eq "31" and members eq "99""#, false),
        ("members pr", true),
        (r#"meta.resourceType eq "Group""#, true),
        (r#"meta.resourceType eq "group""#, false),
        (r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName sw "Eng""#, true),
    ];
    for (filter, expected) in cases {
        assert_eq!(eval(filter, &g, &GROUP), *expected, "{filter}");
    }
    let empty = json!({"id": "1", "displayName": "E", "members": []});
    assert!(!eval("members pr", &empty, &GROUP));
    assert!(!eval(r#"members eq "1""#, &empty, &GROUP));
    assert!(eval(r#"members ne "1""#, &empty, &GROUP));
}

#[test]
fn precedence_builds_the_expected_tree() {
    let f = Filter::parse(r#"a pr or b pr and not (c pr) and d pr or e pr"#).unwrap();
    let p = |n: &str| Filter::Present(AttrPath::parse(n).unwrap());
    assert_eq!(
        f,
        Filter::Or(vec![p("a"), Filter::And(vec![p("b"), Filter::Not(Box::new(p("c"))), p("d")]), p("e"),])
    );
    assert_eq!(f.to_string(), "a pr or b pr and not (c pr) and d pr or e pr");
    let f = Filter::parse(r#"(a pr or b pr) and c pr"#).unwrap();
    assert_eq!(f.to_string(), "(a pr or b pr) and c pr");
}

#[test]
fn literals_parse_to_the_right_kind() {
    let value = |s: &str| match Filter::parse(s).unwrap() {
        Filter::Compare { value, .. } => value,
        other => panic!("{other:?}"),
    };
    assert_eq!(value(r#"a eq "x\ny""#), CompValue::String("x\ny".into()));
    assert_eq!(value(r#"a eq "\u00e9\ud83d\ude00""#), CompValue::String("é😀".into()));
    assert_eq!(value("a eq jyoung"), CompValue::String("jyoung".into()));
    assert_eq!(value("a eq 2011-05-13T04:42:34Z"), CompValue::String("2011-05-13T04:42:34Z".into()));
    assert_eq!(value("a eq -1.5e3"), CompValue::Number("-1.5e3".into()));
    assert_eq!(value("a eq 007"), CompValue::String("007".into()));
    assert_eq!(value("a eq False"), CompValue::Bool(false));
    assert_eq!(value("a eq NULL"), CompValue::Null);
    assert_eq!(value(r#"a eq"x""#), CompValue::String("x".into()));
}

#[test]
fn eq_constraint_finds_index_lookups() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (r#"userName eq "kim@example.com""#, "userName", Some("kim@example.com")),
        (r#"USERNAME EQ "Kim""#, "username", Some("Kim")),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "k""#, "userName", Some("k")),
        ("externalId eq jyoung", "externalId", Some("jyoung")),
        ("externalId eq 12345", "externalId", Some("12345")),
        (r#"id eq "g" and members eq "u""#, "id", Some("g")),
        (r#"id eq "g" and members eq "u""#, "members", Some("u")),
        (r#"(id eq "g" and active eq true) and userName eq "x""#, "id", Some("g")),
        (r#"displayName eq "Sales""#, "displayName", Some("Sales")),
        (r#"userName eq "a" or userName eq "b""#, "userName", None),
        (r#"userName ne "a""#, "userName", None),
        (r#"not (userName eq "a")"#, "userName", None),
        (r#"name.givenName eq "a""#, "name", None),
        (r#"emails[type eq "work"].value eq "a""#, "emails", None),
        (r#"userName eq null"#, "userName", None),
        ("active eq true", "active", None),
        (r#"urn:x:y:userName eq "a""#, "userName", None),
        (r#"userName eq "a""#, "id", None),
    ];
    for (filter, attr, expected) in cases {
        let f = Filter::parse(filter).unwrap();
        assert_eq!(f.eq_constraint(attr), *expected, "{filter} / {attr}");
    }
}

#[test]
fn email_constraint_finds_address_lookups() {
    let cases: &[(&str, Option<&str>)] = &[
        (r#"emails[type eq "work"].value eq "ana@example.com""#, Some("ana@example.com")),
        (r#"emails.value eq "Ana@Example.com""#, Some("Ana@Example.com")),
        (r#"EMAILS.VALUE eq "a@b.co""#, Some("a@b.co")),
        (r#"emails[type eq "work" and value eq "a@b.co"]"#, Some("a@b.co")),
        (r#"emails[value eq "a@b.co"]"#, Some("a@b.co")),
        (r#"urn:ietf:params:scim:schemas:core:2.0:User:emails.value eq "a@b.co""#, Some("a@b.co")),
        (r#"active eq true and emails[type eq "work"].value eq "a@b.co""#, Some("a@b.co")),
        (r#"emails[type eq "work"].value eq "a@b.co" or userName eq "x""#, None),
        (r#"emails[type eq "work"].value co "a@b.co""#, None),
        (r#"emails[type eq "work" or value eq "a@b.co"]"#, None),
        (r#"emails[type eq "work"]"#, None),
        (r#"emails.type eq "work""#, None),
        (r#"not (emails.value eq "a@b.co")"#, None),
        (r#"urn:x:y:emails.value eq "a@b.co""#, None),
        (r#"userName eq "a@b.co""#, None),
    ];
    for (filter, expected) in cases {
        let f = Filter::parse(filter).unwrap();
        assert_eq!(f.email_constraint(), *expected, "{filter}");
    }
}

#[test]
fn syntax_errors_are_invalid_filter_with_position() {
    let cases: &[(&str, &str)] = &[
        ("", "empty filter"),
        ("   ", "empty filter"),
        ("userName", "expected an operator"),
        ("userName eq", "expected a value after 'eq' at position 11"),
        (
            "userName xx \"a\"",
            "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after \"userName\" at position 9",
        ),
        ("userName eq \"a", "unterminated string at position 12"),
        ("userName eq \"a\\q\"", "invalid string literal"),
        ("(userName pr", "missing ')' for '(' at position 0"),
        ("userName pr)", "unexpected ')'"),
        ("userName pr and", "expected an expression"),
        ("userName pr userName pr", "unexpected \"userName\""),
        ("and userName pr", "expected an operator"),
        ("emails[type eq \"work\"", "missing ']'"),
        ("emails[type eq \"work\"] eq \"x\"", "unexpected \"eq\""),
        ("emails[type[value eq \"a\"] eq \"b\"]", "value filters cannot be nested"),
        ("name.givenName[value pr]", "must follow a top-level attribute"),
        ("1abc eq \"x\"", "invalid attribute path"),
        ("a.b.c eq \"x\"", "invalid attribute path"),
        ("emails[type eq \"work\"].1 eq \"x\"", "invalid sub-attribute"),
        ("()", "expected an attribute but found ')'"),
        ("\"x\" eq \"x\"", "expected an attribute but found string"),
        ("userName eq ) ", "expected a value"),
    ];
    for (filter, needle) in cases {
        let e = Filter::parse(filter).expect_err(filter);
        assert_eq!(e.scim_type, ScimType::InvalidFilter, "{filter}");
        assert!(e.detail.contains(needle), "{filter}: {:?} lacks {needle:?}", e.detail);
    }
}

#[test]
fn semantic_errors_are_invalid_filter() {
    let cases: &[(&str, &ResourceTypeDef, &str)] = &[
        (r#"nickName eq "x""#, &USER, "unknown attribute \"nickName\""),
        (r#"name.middleName eq "x""#, &USER, "unknown attribute \"name.middleName\""),
        (r#"members eq "1""#, &USER, "unknown attribute \"members\""),
        (r#"userName eq "x""#, &GROUP, "unknown attribute \"userName\""),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1""#,
            &USER,
            "unknown attribute",
        ),
        (r#"emails[kind eq "work"]"#, &USER, "unknown attribute \"emails.kind\""),
        (r#"emails[type eq "work"].nope eq "x""#, &USER, "unknown attribute \"emails.nope\""),
        (r#"emails[value.x eq "work"]"#, &USER, "unknown attribute"),
        (r#"userName[value eq "x"]"#, &USER, "not a complex attribute"),
        ("active gt true", &USER, "operator gt is not applicable to boolean attribute \"active\""),
        ("active co true", &USER, "not applicable to boolean"),
        (r#"active eq "yes""#, &USER, "is boolean"),
        ("active eq 1", &USER, "is boolean"),
        (r#"emails[primary lt true]"#, &USER, "not applicable to boolean"),
        (r#"name eq "Ana""#, &USER, "complex attribute"),
        (r#"meta.lastModified gt "yesterday""#, &USER, "not an RFC 3339 date-time"),
        (r#"meta.created eq 5"#, &USER, "not an RFC 3339 date-time"),
        ("userName gt null", &USER, "null can only be compared with eq or ne"),
    ];
    for (filter, rt, needle) in cases {
        let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let e = f.validate(rt).expect_err(filter);
        assert_eq!(e.scim_type, ScimType::InvalidFilter, "{filter}");
        assert!(e.detail.contains(needle), "{filter}: {:?} lacks {needle:?}", e.detail);
    }
}

#[test]
fn length_and_depth_caps() {
    let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LEN));
    let e = Filter::parse(&long).unwrap_err();
    assert_eq!(e.scim_type, ScimType::InvalidFilter);
    assert!(e.detail.contains("limit is 4096"), "{}", e.detail);

    let exactly = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LEN - 14));
    assert_eq!(exactly.len(), MAX_FILTER_LEN);
    assert!(Filter::parse(&exactly).is_ok());

    let nest = |n: usize| format!("{}userName pr{}", "(".repeat(n), ")".repeat(n));
    assert!(Filter::parse(&nest(MAX_FILTER_DEPTH)).is_ok());
    let e = Filter::parse(&nest(MAX_FILTER_DEPTH + 1)).unwrap_err();
    assert_eq!(e.scim_type, ScimType::InvalidFilter);
    assert!(e.detail.contains("deeper than 32"), "{}", e.detail);

    let nots = format!("{}userName pr", "not ".repeat(MAX_FILTER_DEPTH + 1));
    assert!(Filter::parse(&nots).is_err());
    let deep_open = "(".repeat(4000);
    assert!(Filter::parse(&deep_open).is_err());
    let deep_value =
        format!("emails[{}type pr{}]", "(".repeat(MAX_FILTER_DEPTH), ")".repeat(MAX_FILTER_DEPTH));
    assert!(Filter::parse(&deep_value).is_err());

    // Long flat chains are fine (no nesting) and evaluate without recursion blow-up.
    let chain = vec!["userName pr"; 200].join(" and ");
    let f = Filter::parse(&chain).unwrap();
    assert!(f.matches(&user(), &USER));
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "\"",
        "\\",
        "[",
        "]",
        "(",
        ")",
        "[]",
        "a[",
        "a]",
        "a[]",
        "a[b pr",
        "\"\\",
        "\"\\u12\"",
        "not",
        "not (",
        "a eq \"\u{0}\"",
        "é eq 1",
        "a eq é",
        "a\u{2003}eq\u{2003}1",
        "urn:a:b:c[",
        "a[b pr].",
        "a[b pr].c",
        "a[b pr]. eq 1",
        "a pr or",
        "or",
        "a eq \"x\" and (b pr or",
        "\u{feff}a pr",
    ];
    for input in inputs {
        if let Ok(f) = Filter::parse(input) {
            let _ = f.validate(&USER);
            let _ = f.matches(&user(), &USER);
            let _ = f.to_string();
        }
    }
}

#[test]
fn matching_tolerates_odd_resources() {
    let odd = json!({"userName": 5, "emails": "x", "name": [1, 2], "active": "False", "meta": null, "groups": [null, 1, {"value": null}]});
    let cases: &[(&str, bool)] = &[
        (r#"userName eq "5""#, true),
        (r#"emails.value eq "x""#, false),
        ("name.givenName pr", false),
        ("active eq false", true),
        (r#"meta.lastModified gt "2020-01-01T00:00:00Z""#, false),
        (r#"groups eq "1""#, false),
        ("groups pr", true),
        ("displayName eq null", true),
        ("displayName ne null", false),
        ("displayName pr", false),
        (r#"emails[type eq "work"]"#, false),
    ];
    for (filter, expected) in cases {
        assert_eq!(eval(filter, &odd, &USER), *expected, "{filter}");
    }
    assert!(!Filter::parse("userName pr").unwrap().matches(&json!([1, 2]), &USER));
    assert!(!Filter::parse("nope eq 1").unwrap().matches(&json!({"nope": "x"}), &USER));
    assert!(Filter::parse("nope eq 1").unwrap().matches(&json!({"NOPE": 1}), &USER));
}

#[test]
fn control_characters_are_only_allowed_escaped_in_strings() {
    for bad in ["userName eq ab\u{0}c", "z lt \u{1}\u{2}\u{3}", "user\u{7f}Name pr"] {
        let e = Filter::parse(bad).unwrap_err();
        assert_eq!(e.scim_type, ScimType::InvalidFilter, "{bad:?}");
        assert!(e.detail.contains("control character"), "{}", e.detail);
    }
    // Escaped inside a quoted string, a control character is a value like any other.
    assert!(Filter::parse("userName eq \"a\\u0000b\"").is_ok());
}

#[test]
fn not_counts_one_level_with_or_without_parentheses() {
    // Printing adds the RFC's parentheses after `not`; the depth cap must read the same.
    let deep = format!("{}userName pr", "not ".repeat(MAX_FILTER_DEPTH));
    let filter = Filter::parse(&deep).unwrap();
    let printed = filter.to_string();
    assert!(printed.starts_with("not (not ("), "{printed}");
    assert_eq!(Filter::parse(&printed).unwrap(), filter);
    let too_deep = format!("{}userName pr", "not ".repeat(MAX_FILTER_DEPTH + 1));
    assert!(Filter::parse(&too_deep).is_err());
    let too_deep =
        format!("{}userName pr{}", "not (".repeat(MAX_FILTER_DEPTH + 1), ")".repeat(MAX_FILTER_DEPTH + 1));
    assert!(Filter::parse(&too_deep).is_err());
}

#[test]
fn mentions_names_top_level_attributes_only() {
    let cases = [
        ("members pr", "members", true),
        ("MEMBERS.value eq \"7\"", "members", true),
        ("members[value eq \"7\"]", "members", true),
        ("displayName eq \"members\"", "members", false),
        ("displayName sw \"a\" and not (members pr)", "members", true),
        ("displayName sw \"a\" or externalId eq \"x\"", "members", false),
        ("emails[type eq \"work\" and value co \"members\"]", "members", false),
        ("urn:ietf:params:scim:schemas:core:2.0:Group:members pr", "members", true),
    ];
    for (text, attr, expected) in cases {
        let filter = Filter::parse(text).unwrap();
        assert_eq!(filter.mentions(attr), expected, "{text}");
    }
}
