use serde_json::json;

use super::*;

fn mapping(formatted: bool) -> UserMapping {
    UserMapping {
        base_url: "https://chat.example.com/scim/v2".into(),
        name_formatted_included: formatted,
        stores_external_id: false,
        ignore_unmapped: false,
        mapped: Vec::new(),
    }
}

/// A realm that stores `externalId`.
fn storing() -> UserMapping {
    UserMapping { stores_external_id: true, ..mapping(false) }
}

fn user(id: u64, email: Option<&str>, name: &str) -> User {
    User {
        user_id: id,
        email: format!("user{id}@chat.example.com"),
        delivery_email: email.map(str::to_string),
        full_name: name.into(),
        date_joined: "2026-11-24T01:27+00:00".into(),
        is_active: true,
        role: Role::Member,
        is_bot: false,
        profile_data: Default::default(),
    }
}

#[test]
fn render_matches_zulip_shape_with_both_name_styles() {
    let v = mapping(false).render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, None, &[]);
    assert_eq!(v["id"], "10");
    assert_eq!(v["userName"], "hamlet@zulip.com");
    assert_eq!(v["name"], json!({"formatted": "King Hamlet", "givenName": "King", "familyName": "Hamlet"}));
    assert_eq!(v["displayName"], "King Hamlet");
    assert_eq!(v["active"], true);
    assert_eq!(v["role"], "member");
    assert_eq!(v["emails"], json!([{"value": "hamlet@zulip.com", "type": "work", "primary": true}]));
    assert_eq!(v["meta"]["created"], "2026-11-24T01:27:00+00:00");
    assert_eq!(v["meta"]["location"], "https://chat.example.com/scim/v2/Users/10");
    assert_eq!(v["schemas"], json!([scim::USER_SCHEMA]));
}

#[test]
fn one_word_names_have_no_empty_family_name() {
    let v = mapping(false).render(&user(1, Some("a@b.co"), "Cher"), None, None, &[]);
    assert_eq!(v["name"], json!({"formatted": "Cher", "givenName": "Cher"}));
    let (g, f) = split_full_name("Mary Ann Lee");
    assert_eq!((g, f), ("Mary", "Ann Lee"));
}

#[test]
fn hidden_address_uses_learned_email_else_api_email_without_emails() {
    let u = user(7, None, "Hidden Person");
    let v = mapping(true).render(&u, Some("hidden@zulip.com"), None, &[]);
    assert_eq!(v["userName"], "hidden@zulip.com");
    assert!(v.get("emails").is_some());
    let v = mapping(true).render(&u, None, None, &[]);
    assert_eq!(v["userName"], "user7@chat.example.com");
    assert!(v.get("emails").is_none());
}

#[test]
fn new_user_reads_okta_and_entra_bodies() {
    let okta = json!({"schemas":[scim::USER_SCHEMA],"userName":"kim@example.com",
        "name":{"givenName":"Kim","familyName":"Lee"},"emails":[{"primary":true,"value":"kim@example.com","type":"work"}],
        "displayName":"Kim Lee","locale":"en-US","externalId":"00u1","groups":[],"password":"x7Rq2pLm","active":true});
    let n = mapping(false).new_user(&okta).unwrap();
    assert_eq!(
        n,
        NewUser {
            email: "kim@example.com".into(),
            full_name: "Kim Lee".into(),
            role: None,
            active: true,
            external_id: None,
            profile: Vec::new(),
        }
    );

    let entra = json!({"schemas":[scim::USER_SCHEMA, scim::ENTERPRISE_USER_SCHEMA],"externalId":"ana","userName":"ana@example.com",
        "active":"True","displayName":"Ana Diaz","meta":{"resourceType":"User"},
        "name":{"formatted":"Ana M. Diaz","familyName":"Diaz","givenName":"Ana"},"roles":[],"phoneNumbers":null,"title":null});
    let n = mapping(true).new_user(&entra).unwrap();
    assert_eq!(n.full_name, "Ana M. Diaz");
    assert!(n.active);
    // Okta style prefers the parts even when formatted is present.
    assert_eq!(mapping(false).new_user(&entra).unwrap().full_name, "Ana Diaz");
}

#[test]
fn new_user_rejects_bad_input_with_scim_types() {
    let cases = [
        (json!({"name":{"formatted":"X"}}), "userName is required"),
        (json!({"userName": 5, "name":{"formatted":"X"}}), "userName must be a string"),
        (json!({"userName": "not-an-email", "name":{"formatted":"X"}}), "not an e-mail"),
        (json!({"userName": "a@b.co", "displayName": "X", "role": "admin"}), "invalid role"),
        (json!({"userName": "a@b.co", "displayName": "X", "active": "yes"}), "active must be a boolean"),
        (json!({"userName": "a@b.co", "displayName": "X".repeat(101)}), "longer than"),
        (json!([1, 2]), "JSON object"),
    ];
    for (body, needle) in cases {
        match mapping(false).new_user(&body) {
            Err(Error::Invalid { scim_type, detail }) => {
                assert!(matches!(scim_type, ScimType::InvalidValue | ScimType::InvalidSyntax));
                assert!(detail.contains(needle), "{detail} should contain {needle}");
            }
            other => panic!("{body}: expected invalid, got {other:?}"),
        }
    }
}

#[test]
fn a_nameless_user_is_named_after_the_address() {
    let n = mapping(false).new_user(&json!({"userName":"kim.lee@b.co"})).unwrap();
    assert_eq!(n.full_name, "kim.lee");
}

#[test]
fn role_and_display_name_defaults() {
    let n =
        mapping(false).new_user(&json!({"userName":"a@b.co","displayName":"Solo","role":"Guest"})).unwrap();
    assert_eq!(n.role, Some(Role::Guest));
    assert_eq!(n.full_name, "Solo");
}

#[test]
fn changes_detect_each_kind_and_ignore_no_ops() {
    let m = mapping(false);
    let before = m.render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, None, &[]);

    let same = m.put_target(&before, &json!({"userName":"HAMLET@zulip.com","name":{"givenName":"King","familyName":"Hamlet"},"active":true})).unwrap();
    assert!(m.changes(&before, &same).unwrap().is_empty(), "case-only userName and same name are no-ops");

    let put = m
        .put_target(
            &before,
            &json!({"userName":"prince@zulip.com","name":{"givenName":"Prince","familyName":"Hamlet"},
        "displayName":"King Hamlet","role":"administrator","active":false,"id":"99","meta":{}}),
        )
        .unwrap();
    let c = m.changes(&before, &put).unwrap();
    assert_eq!(
        c,
        UserChanges {
            full_name: Some("Prince Hamlet".into()),
            role: Some(Role::Administrator),
            new_email: Some("prince@zulip.com".into()),
            active: Some(false),
            external_id: None,
            profile: Vec::new(),
        }
    );

    // scim-sanity: only displayName changed → it wins over unchanged name parts.
    let put = m.put_target(&before, &json!({"userName":"hamlet@zulip.com","name":{"givenName":"King","familyName":"Hamlet"},"displayName":"Hamlet of Denmark"})).unwrap();
    assert_eq!(m.changes(&before, &put).unwrap().full_name.as_deref(), Some("Hamlet of Denmark"));

    // a PUT without role keeps it
    let put = m.put_target(&before, &json!({"userName":"hamlet@zulip.com"})).unwrap();
    assert!(m.changes(&before, &put).unwrap().is_empty());
}

#[test]
fn changes_read_the_address_from_emails_and_reject_bad_values() {
    let m = mapping(true);
    let before = m.render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, None, &[]);
    let invalid = |r: Result<Value, Error>| match r {
        Err(Error::Invalid { scim_type: ScimType::InvalidValue, detail }) => detail,
        other => panic!("expected invalidValue, got {other:?}"),
    };
    // A PUT whose primary address disagrees with its userName names both.
    let detail = invalid(m.put_target(
        &before,
        &json!({"userName":"hamlet@zulip.com","emails":[{"value":"other@zulip.com","primary":true}]}),
    ));
    assert!(detail.contains("hamlet@zulip.com") && detail.contains("other@zulip.com"), "{detail}");
    // Agreeing: fine. A second address Zulip cannot hold: refused, unless ignored.
    let agreeing =
        json!({"userName":"prince@zulip.com","emails":[{"value":"Prince@zulip.com","type":"work"}]});
    let put = m.put_target(&before, &agreeing).unwrap();
    assert_eq!(m.changes(&before, &put).unwrap().new_email.as_deref(), Some("prince@zulip.com"));
    let two = json!({"userName":"hamlet@zulip.com","emails":[
        {"value":"hamlet@zulip.com","type":"work","primary":true},{"value":"h@home.example","type":"home"}]});
    let detail = invalid(m.put_target(&before, &two));
    assert!(detail.contains("h@home.example") && detail.contains("home"), "{detail}");
    let lenient = UserMapping { ignore_unmapped: true, ..mapping(true) };
    let put = lenient.put_target(&before, &two).unwrap();
    assert!(lenient.changes(&before, &put).unwrap().is_empty());

    // PATCH-shaped: only emails changed → the address changes; emails removed → mutability.
    let mut after = before.clone();
    after["emails"] = json!([{"value":"ophelia@zulip.com","type":"work","primary":true}]);
    assert_eq!(m.changes(&before, &after).unwrap().new_email.as_deref(), Some("ophelia@zulip.com"));
    // Both changed, to different addresses → both named.
    after["userName"] = json!("laertes@zulip.com");
    let Err(Error::Invalid { scim_type: ScimType::InvalidValue, detail }) = m.changes(&before, &after) else {
        panic!("userName and emails disagree");
    };
    assert!(detail.contains("laertes@zulip.com") && detail.contains("ophelia@zulip.com"), "{detail}");
    // An `add` of a new primary leaves the old address in the list: it is the one replaced.
    let mut after = before.clone();
    after["emails"] = json!([{"value":"hamlet@zulip.com","type":"work","primary":false},
        {"value":"ophelia@zulip.com","type":"work","primary":true}]);
    assert_eq!(m.changes(&before, &after).unwrap().new_email.as_deref(), Some("ophelia@zulip.com"));
    let mut after = before.clone();
    after.as_object_mut().unwrap().remove("emails");
    assert!(matches!(
        m.changes(&before, &after),
        Err(Error::Invalid { scim_type: ScimType::Mutability, .. })
    ));
    // POST: the same rules.
    let post =
        json!({"userName":"kim@example.com","emails":[{"value":"kim.lee@example.com","primary":true}]});
    assert!(m.new_user(&post).is_err());
    let post = json!({"userName":"kim@example.com","emails":[{"value":"KIM@example.com","type":"work"}]});
    assert_eq!(m.new_user(&post).unwrap().email, "kim@example.com");

    for attr in ["role", "active"] {
        let mut after = before.clone();
        after.as_object_mut().unwrap().remove(attr);
        assert!(matches!(
            m.changes(&before, &after),
            Err(Error::Invalid { scim_type: ScimType::Mutability, .. })
        ));
    }

    let mut after = before.clone();
    after["active"] = json!("False");
    assert_eq!(m.changes(&before, &after).unwrap().active, Some(false));

    let mut after = before.clone();
    after["role"] = json!("superuser");
    assert!(m.changes(&before, &after).is_err());

    let mut after = before.clone();
    after["userName"] = json!("no-at-sign");
    assert!(m.changes(&before, &after).is_err());
}

#[test]
fn email_plausibility() {
    for ok in ["a@b.co", "zt-4az4k5+tag@example.com", "ÄÖ@example.de"] {
        assert!(is_plausible_email(ok), "{ok}");
    }
    for bad in ["", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@.co", "a@b.co."] {
        assert!(!is_plausible_email(bad), "{bad}");
    }
}

#[test]
fn external_id_is_rendered_only_where_stored() {
    let u = user(10, Some("hamlet@zulip.com"), "King Hamlet");
    let v = storing().render(&u, None, Some("00u1abcd"), &[]);
    assert_eq!(v["externalId"], "00u1abcd");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys[..3], ["schemas", "id", "externalId"]);
    assert!(storing().render(&u, None, None, &[]).get("externalId").is_none());
    assert!(mapping(false).render(&u, None, Some("00u1abcd"), &[]).get("externalId").is_none());
}

#[test]
fn external_id_is_read_on_create_only_where_stored() {
    let body = json!({"userName": "kim@example.com", "externalId": "8c3e9a51-2d8b-4f0e-9a36-1f2d3c4b5a69"});
    assert_eq!(
        storing().new_user(&body).unwrap().external_id.as_deref(),
        Some("8c3e9a51-2d8b-4f0e-9a36-1f2d3c4b5a69")
    );
    assert_eq!(mapping(false).new_user(&body).unwrap().external_id, None);
    // Not stored: even a value the field could not hold is accepted and ignored.
    let long = json!({"userName": "kim@example.com", "externalId": "x".repeat(51)});
    assert_eq!(mapping(false).new_user(&long).unwrap().external_id, None);
    assert_eq!(
        storing().new_user(&json!({"userName": "kim@example.com", "externalId": ""})).unwrap().external_id,
        None
    );
}

#[test]
fn external_id_values_the_field_cannot_hold_are_refused() {
    for (value, why) in [
        (json!("x".repeat(51)), "longer than 50"),
        (json!(42), "must be a string"),
        (json!({"value": "a"}), "must be a string"),
        (json!("a\nb"), "control characters"),
    ] {
        let body = json!({"userName": "kim@example.com", "externalId": value});
        let err = storing().new_user(&body).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { scim_type: ScimType::InvalidValue, detail } if detail.contains(why)),
            "{value}: {err:?}"
        );
    }
    // 50 characters, multi-byte ones included, fit.
    let body = json!({"userName": "kim@example.com", "externalId": "é".repeat(50)});
    assert!(storing().new_user(&body).is_ok());
}

#[test]
fn external_id_changes_set_and_clear() {
    let m = storing();
    let before = m.render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, Some("old"), &[]);
    let mut after = before.clone();
    after["externalId"] = json!("new");
    assert_eq!(m.changes(&before, &after).unwrap().external_id, Some(Some("new".into())));
    after.as_object_mut().unwrap().remove("externalId");
    assert_eq!(m.changes(&before, &after).unwrap().external_id, Some(None));
    after["externalId"] = json!("old");
    assert!(m.changes(&before, &after).unwrap().is_empty());
    after["externalId"] = json!("x".repeat(51));
    assert!(m.changes(&before, &after).is_err());

    // A realm that does not store it ignores it.
    let before = mapping(false).render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, None, &[]);
    let mut after = before.clone();
    after["externalId"] = json!("new");
    assert!(mapping(false).changes(&before, &after).unwrap().is_empty());

    // PUT: an externalId in the body replaces; left out, it is kept.
    let put = m
        .put_target(
            &m.render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, Some("old"), &[]),
            &json!({"userName": "hamlet@zulip.com", "externalId": "new"}),
        )
        .unwrap();
    assert_eq!(put["externalId"], "new");
    let put = m
        .put_target(
            &m.render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, Some("old"), &[]),
            &json!({"userName": "hamlet@zulip.com"}),
        )
        .unwrap();
    assert_eq!(put["externalId"], "old");
}

#[test]
fn mapped_attributes_are_rendered_diffed_and_merged_by_put() {
    let ent = scim::ENTERPRISE_USER_SCHEMA;
    let attrs: Vec<OptionalAttr> = [
        "title",
        "phoneNumbers[type eq \"work\"].value",
        &format!("{ent}:department"),
        &format!("{ent}:manager"),
    ]
    .iter()
    .map(|k| OptionalAttr::parse(k).unwrap())
    .collect();
    let m = UserMapping { mapped: attrs.clone(), ..mapping(true) };
    let values = [(&attrs[0], "Prince"), (&attrs[2], "Royalty"), (&attrs[3], "[12]")];
    let before = m.render(&user(10, Some("hamlet@zulip.com"), "King Hamlet"), None, None, &values);
    assert_eq!(before["title"], "Prince");
    assert_eq!(
        before[ent]["manager"],
        json!({"value": "12", "$ref": "https://chat.example.com/scim/v2/Users/12"})
    );
    assert_eq!(before["schemas"], json!([scim::USER_SCHEMA, ent]));
    // A PUT: title replaced, the extension merged (manager left out: kept), a work phone set.
    let put = m
        .put_target(&before, &json!({"userName": "hamlet@zulip.com", "title": "King",
            "phoneNumbers": [{"type": "work", "value": "+45 1", "primary": true}], ent: {"department": null}}))
        .unwrap();
    let changes = m.changes(&before, &put).unwrap();
    assert_eq!(
        changes.profile,
        vec![
            (attrs[0].clone(), Some("King".to_string())),
            (attrs[1].clone(), Some("+45 1".to_string())),
            (attrs[2].clone(), None),
        ]
    );
    // A value no field stores: refused, or dropped when ignored.
    let fax = json!({"userName": "hamlet@zulip.com", "phoneNumbers": [{"type": "fax", "value": "1"}]});
    assert!(matches!(m.changes(&before, &m.put_target(&before, &fax).unwrap()), Err(Error::Invalid { .. })));
    let lenient = UserMapping { ignore_unmapped: true, ..m.clone() };
    assert!(lenient.changes(&before, &lenient.put_target(&before, &fax).unwrap()).is_ok());
    // POST reads them too; employee numbers sent as numbers become text.
    let post = json!({"userName": "kim@example.com", "title": "Designer", ent: {"department": 7}});
    let m2 = UserMapping { mapped: vec![attrs[0].clone(), attrs[2].clone()], ..mapping(false) };
    assert_eq!(
        m2.new_user(&post).unwrap().profile,
        vec![(attrs[0].clone(), Some("Designer".into())), (attrs[2].clone(), Some("7".into()))]
    );
}
