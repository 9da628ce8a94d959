//! Unit tests of the fake's pieces: parameters, auth decoding, validation, rendering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::model::*;
use super::wire::*;
use super::*;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn form_body_wins_over_query_and_values_are_decoded() {
    let form = parse_form(b"full_name=Alice+B%C3%A9&members=%5B1%2C2%5D");
    let p = Params::new(&pairs(&[("full_name", "Query")]), &form);
    assert_eq!(p.get("full_name"), Some("Alice Bé"));
    assert_eq!(p.required_int_list("members"), Ok(vec![1, 2]));
    assert_eq!(p.unknown(&["members"]), vec!["full_name".to_string()]);
}

#[test]
fn json_typed_parameters_report_zulip_messages() {
    let p = Params::new(
        &pairs(&[
            ("role", "admin"),
            ("r2", "\"200\""),
            ("add", "232"),
            ("ok", "true"),
            ("ids", "[1, \"x\"]"),
        ]),
        &[],
    );
    assert_eq!(p.json_int("role").map_err(|e| e.msg), Err("role is not valid JSON".into()));
    assert_eq!(p.json_int("r2").map_err(|e| e.msg), Err("r2 is not an integer".into()));
    assert_eq!(p.json_int_list("add").map_err(|e| e.msg), Err("add is not a list".into()));
    assert_eq!(p.json_bool("ok"), Ok(Some(true)));
    assert_eq!(p.json_int_list("ids").map_err(|e| e.msg), Err("ids[1] is not an integer".into()));
    let missing = p.required_string("email").unwrap_err();
    assert_eq!(missing.code, "REQUEST_VARIABLE_MISSING");
    assert_eq!(missing.msg, "Missing 'email' argument");
    assert_eq!(missing.body()["var_name"], "email");
}

#[test]
fn basic_auth_header_decoding() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let basic = format!("Basic {}", b64("a@b.c: key "));
    assert_eq!(
        decode_auth(Some(basic.as_bytes())),
        AuthHeader::Basic { email: "a@b.c".into(), api_key: "key".into() }
    );
    assert_eq!(decode_auth(None), AuthHeader::Missing);
    assert_eq!(decode_auth(Some(b"Bearer abc")), AuthHeader::NotBasic);
    assert_eq!(decode_auth(Some(b"Digest username=x")), AuthHeader::NotBasic);
    assert_eq!(decode_auth(Some(b"Basic !!!not-base64!!!")), AuthHeader::Malformed);
    let no_colon = format!("Basic {}", b64("no-colon-here"));
    assert_eq!(decode_auth(Some(no_colon.as_bytes())), AuthHeader::Malformed);
    assert!(well_formed_key("abcdefghijklmnopqrstuvwxyz012345"));
    assert!(!well_formed_key("abc"));
    assert!(!well_formed_key("abcdefghijklmnopqrstuvwxyz01234-"));
}

#[test]
fn full_name_rules() {
    assert_eq!(check_full_name("  Alice  "), Ok("Alice".into()));
    assert_eq!(check_full_name(""), Err("Name too short!"));
    assert_eq!(check_full_name(&"B".repeat(101)), Err("Name too long!"));
    assert!(check_full_name(&"A".repeat(100)).is_ok());
    assert_eq!(check_full_name("Bad*Name"), Err("Invalid characters in name!"));
    assert_eq!(check_full_name("Name|123"), Err("Invalid format!"));
}

#[test]
fn email_and_group_name_rules() {
    assert!(valid_email("zt-4az4k5+tag@example.com"));
    assert!(!valid_email("not-an-email"));
    assert!(!valid_email("a@b"));
    assert!(!valid_email("a b@example.com"));
    assert_eq!(check_group_name(""), Err("User group name can't be empty!".into()));
    assert_eq!(check_group_name("role:x"), Err("User group name cannot start with 'role:'.".into()));
    assert_eq!(
        check_group_name(&"z".repeat(101)),
        Err("User group name cannot exceed 100 characters.".into())
    );
    assert!(check_group_name("ALPHA").is_ok());
}

#[test]
fn retry_after_is_always_a_float_string() {
    assert_eq!(float_secs(28.7068), "28.7068");
    assert_eq!(float_secs(50.0), "50.0");
}

fn demo_realm() -> Realm {
    FakeZulip::builder().with_demo_data().realm
}

#[test]
fn email_visibility_follows_the_viewer_role() {
    let realm = demo_realm();
    let by = |e: &str| realm.user_by_email(e).cloned().expect("demo user");
    let owner = by("desdemona@zulip.example.com");
    let member = by("hamlet@zulip.example.com");
    let hidden = by("hidden@zulip.example.com");
    let bot = by("welcome-bot@zulip.example.com");
    let iago = by("iago@zulip.example.com");

    let seen = realm.render_user(&owner, &iago, true, false);
    assert_eq!(seen["delivery_email"], "iago@zulip.example.com");
    assert_eq!(seen["email"], format!("user{}@zulip.example.com", iago.user_id));
    assert!(seen["avatar_url"].is_string());
    assert!(!seen.contains_key("is_billing_admin"));

    assert_eq!(realm.render_user(&member, &iago, true, false)["delivery_email"], Value::Null);
    assert_eq!(realm.render_user(&owner, &hidden, true, false)["delivery_email"], Value::Null);
    assert_eq!(
        realm.render_user(&hidden, &hidden, true, false)["delivery_email"],
        "hidden@zulip.example.com"
    );
    let b = realm.render_user(&member, &bot, true, true);
    assert_eq!(b["email"], "welcome-bot@zulip.example.com");
    assert_eq!(b["avatar_url"], Value::Null);
    assert!(!b.contains_key("profile_data"));

    // Lookup by real email only when visible; the dummy always works.
    assert!(realm.lookup_by_api_email(&owner, "IAGO@zulip.example.com").is_some());
    assert!(realm.lookup_by_api_email(&member, "iago@zulip.example.com").is_none());
    let dummy = realm.dummy_email(iago.user_id);
    assert!(realm.lookup_by_api_email(&member, &dummy).is_some());
    assert!(realm.lookup_by_api_email(&owner, "hidden@zulip.example.com").is_none());
}

#[test]
fn system_groups_follow_roles_and_nest() {
    let mut realm = demo_realm();
    let owners = realm.system_group_id("role:owners").expect("owners");
    let admins = realm.system_group_id("role:administrators").expect("admins");
    let iago = realm.user_by_email("iago@zulip.example.com").map(|u| u.user_id).expect("iago");
    let desdemona = realm.user_by_email("desdemona@zulip.example.com").map(|u| u.user_id).expect("desdemona");
    assert!(realm.recursive_members(admins).contains(&desdemona));
    assert!(!realm.groups[&admins].members.contains(&desdemona));
    assert!(!realm.recursive_members(owners).contains(&iago));
    if let Some(u) = realm.users.get_mut(&iago) {
        u.role = OWNER;
    }
    realm.sync_system_groups();
    assert!(realm.groups[&owners].members.contains(&iago));
    assert!(!realm.groups[&admins].members.contains(&iago));
}

#[test]
fn objections_and_cycles_are_safe() {
    let mut realm = Realm::new();
    let a = realm.insert_group(FakeGroup::new("a", &[]));
    let b = realm.insert_group(FakeGroup::new("b", &[]));
    if let Some(g) = realm.groups.get_mut(&a) {
        g.direct_subgroup_ids.push(b);
    }
    if let Some(g) = realm.groups.get_mut(&b) {
        g.direct_subgroup_ids.push(a);
    }
    // A cycle (only possible out of band) must not loop forever.
    assert_eq!(realm.recursive_subgroups(a, false).len(), 2);
    assert!(realm.recursive_members(a).is_empty());
}

#[test]
fn version_strings_follow_the_feature_level() {
    assert_eq!(version_for(313), "10.0-dev+git");
    assert_eq!(version_for(371), "10.0");
    assert_eq!(version_for(442), "12.0-dev+git");
}

// === channels ===

/// A realm with the starting channels, an owner (8), a member (9), a guest (10), a
/// deactivated member (11), and "secret", a private channel only the member is in.
fn channel_realm() -> (Realm, FakeUser, FakeUser) {
    let mut realm = Realm::new();
    realm.add_system_groups();
    realm.add_default_channels();
    let owner = FakeUser::new("owner@example.com", "Owner").role(OWNER);
    let member = FakeUser::new("member@example.com", "Member");
    let owner_id = realm.insert_user(owner);
    let member_id = realm.insert_user(member);
    realm.insert_user(FakeUser::new("guest@example.com", "Guest").role(GUEST));
    realm.insert_user(FakeUser::new("gone@example.com", "Gone").deactivated());
    realm.insert_channel(FakeChannel::new("secret").private().subscribers(&[member_id]));
    let owner = realm.users[&owner_id].clone();
    let member = realm.users[&member_id].clone();
    (realm, owner, member)
}

fn names(data: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    data["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn starting_channels_and_post_users_subscribes_to_the_default_ones() {
    let (mut realm, owner, _) = channel_realm();
    let defaults: Vec<&str> =
        realm.channels.values().filter(|c| c.is_default).map(|c| c.name.as_str()).collect();
    assert_eq!(defaults, ["general", "random"]);
    let form = pairs(&[("email", "new@example.com"), ("password", "a-long-password"), ("full_name", "New")]);
    let mut owner = owner;
    owner.can_create_users = true;
    let created = super::users::create(&mut realm, &owner, &Params::new(&[], &form)).unwrap();
    let id = created["user_id"].as_u64().unwrap();
    assert_eq!(realm.user_channel_names(id), ["general", "random"]);
    // Inserted "in the UI": no subscriptions.
    assert!(realm.user_channel_names(10).is_empty());
}

#[test]
fn get_streams_selects_the_sets_asked_for() {
    let (realm, owner, member) = channel_realm();
    let guest = realm.users[&10].clone();
    let q = |p: &[(&str, &str)]| Params::new(&pairs(p), &[]);
    let all = super::channels::list(&realm, &owner, &q(&[])).unwrap();
    assert_eq!(names(&all), ["engineering", "general", "random"], "public + subscribed, by name");
    assert!(all["streams"][0].get("is_default").is_none(), "only with include_default");
    assert_eq!(all["streams"][0]["stream_id"], 502);
    assert_eq!(
        names(&super::channels::list(&realm, &member, &q(&[])).unwrap()),
        ["engineering", "general", "random", "secret"]
    );
    let defaults = super::channels::list(
        &realm,
        &owner,
        &q(&[("include_public", "false"), ("include_subscribed", "false"), ("include_default", "true")]),
    )
    .unwrap();
    assert_eq!(names(&defaults), ["general", "random"]);
    assert!(defaults["streams"].as_array().unwrap().iter().all(|s| s["is_default"] == true));
    let every = super::channels::list(&realm, &owner, &q(&[("include_all_active", "true")])).unwrap();
    assert_eq!(names(&every).len(), 4);
    let refused = super::channels::list(&realm, &member, &q(&[("include_all_active", "true")])).unwrap_err();
    assert_eq!((refused.status, refused.msg.as_str()), (400, "User not authorized for this query"));
    assert!(
        names(&super::channels::list(&realm, &guest, &q(&[])).unwrap()).is_empty(),
        "guests see no public channels"
    );
    let bad = super::channels::list(&realm, &owner, &q(&[("include_default", "yes")])).unwrap_err();
    assert_eq!(bad.msg, "include_default is not valid JSON");
}

#[test]
fn channel_members_and_user_channels() {
    let (mut realm, owner, member) = channel_realm();
    for c in realm.channels.values_mut().filter(|c| c.name == "general") {
        c.subscribers.extend([8, 9, 11]);
    }
    let general = realm.channel_by_name("GENERAL").unwrap().stream_id;
    let secret = realm.channel_by_name("secret").unwrap().stream_id;
    let members = super::channels::members(&realm, &owner, general).unwrap();
    assert_eq!(members["subscribers"], serde_json::json!([8, 9]), "deactivated users are not listed");
    assert_eq!(super::channels::members(&realm, &owner, 9999).unwrap_err().msg, "Invalid channel ID");
    let guest = realm.users[&10].clone();
    assert_eq!(super::channels::members(&realm, &guest, secret).unwrap_err().msg, "Invalid channel ID");
    let of_member = super::channels::user_channels(&realm, &owner, member.user_id).unwrap();
    assert_eq!(of_member["subscribed_channel_ids"], serde_json::json!([general, secret]));
    assert_eq!(super::channels::user_channels(&realm, &owner, 9999).unwrap_err().msg, "No such user");
}

#[test]
fn unsubscribing_others_follows_zulips_rules() {
    let (mut realm, owner, member) = channel_realm();
    realm.subscribe_to_default_channels(9);
    realm.subscribe_to_default_channels(10);
    let form = |p: &[(&str, &str)]| Params::new(&[], &pairs(p));
    let done = super::channels::unsubscribe(
        &mut realm,
        &owner,
        &form(&[("subscriptions", r#"["general", "Random", "engineering"]"#), ("principals", "[10]")]),
    )
    .unwrap();
    assert_eq!(done["removed"], serde_json::json!(["general", "random"]), "canonical names");
    assert_eq!(done["not_removed"], serde_json::json!(["engineering"]));
    assert!(realm.user_channel_names(10).is_empty());
    assert_eq!(realm.user_channel_names(9), ["general", "random", "secret"], "others untouched");
    // By API e-mail too (the dummy address; visibility "admins").
    let dummy = realm.dummy_email(9);
    let by_email = format!(r#"["{dummy}"]"#);
    super::channels::unsubscribe(
        &mut realm,
        &owner,
        &form(&[("subscriptions", r#"["general"]"#), ("principals", &by_email)]),
    )
    .unwrap();
    assert_eq!(realm.user_channel_names(9), ["random", "secret"]);

    let err = |realm: &mut Realm, caller: &FakeUser, p: &[(&str, &str)]| {
        super::channels::unsubscribe(realm, caller, &form(p)).unwrap_err()
    };
    let missing = err(&mut realm, &owner, &[("principals", "[9]")]);
    assert_eq!(
        (missing.code.as_str(), missing.msg.as_str()),
        ("REQUEST_VARIABLE_MISSING", "Missing 'subscriptions' argument")
    );
    let unknown =
        err(&mut realm, &owner, &[("subscriptions", r#"["random", "nope"]"#), ("principals", "[9]")]);
    assert_eq!(
        (unknown.code.as_str(), unknown.msg.as_str()),
        ("STREAM_DOES_NOT_EXIST", "Channel 'nope' does not exist")
    );
    assert_eq!(unknown.body()["stream"], "nope");
    assert_eq!(
        realm.user_channel_names(9),
        ["random", "secret"],
        "an unknown name refuses the whole request"
    );
    let gone = err(&mut realm, &owner, &[("subscriptions", r#"["random"]"#), ("principals", "[11]")]);
    assert_eq!((gone.status, gone.msg.as_str()), (400, "No such user"));
    realm.feature_level = 207;
    let old = err(&mut realm, &owner, &[("subscriptions", r#"["random"]"#), ("principals", "[11]")]);
    assert_eq!((old.status, old.code.as_str()), (403, "UNAUTHORIZED_PRINCIPAL"));
    realm.feature_level = 442;
    let not_admin = err(&mut realm, &member, &[("subscriptions", r#"["general"]"#), ("principals", "[8]")]);
    assert_eq!(not_admin.msg, "Insufficient permission");
    assert_eq!(
        err(&mut realm, &owner, &[("subscriptions", r#""general""#)]).msg,
        "subscriptions is not a list"
    );
    // Without principals: the caller itself.
    let own = super::channels::unsubscribe(&mut realm, &member, &form(&[("subscriptions", r#"["random"]"#)]))
        .unwrap();
    assert_eq!(own["removed"], serde_json::json!(["random"]));
    assert_eq!(realm.user_channel_names(9), ["secret"]);
}

// === custom profile fields ===

/// A realm with an owner (8), a member (9), a deactivated member (10), a bot (11), and the
/// fields "Team" (short text, 1), "Bio" (long text, 2), "Shift" (select Day/Night, 3),
/// "Manager" (person picker, 4).
fn profile_realm() -> (Realm, FakeUser) {
    let mut realm = Realm::new();
    let owner = realm.insert_user(FakeUser::new("owner@example.com", "Owner").role(OWNER));
    realm.insert_user(FakeUser::new("member@example.com", "Member"));
    realm.insert_user(FakeUser::new("gone@example.com", "Gone").deactivated());
    realm.insert_user(FakeUser::new("bot@example.com", "Bot").bot());
    for field in [
        FakeProfileField::new("Team", 1),
        FakeProfileField::new("Bio", 2).hint("What are you known for?"),
        FakeProfileField::new("Shift", 3)
            .field_data(r#"{"0":{"text":"Day","order":"1"},"1":{"text":"Night","order":"2"}}"#),
        FakeProfileField::new("Manager", 6),
    ] {
        realm.insert_profile_field(field);
    }
    let owner = realm.users[&owner].clone();
    (realm, owner)
}

fn form(p: &[(&str, &str)]) -> Params {
    Params::new(&[], &pairs(p))
}

fn create_field(realm: &mut Realm, caller: &FakeUser, p: &[(&str, &str)]) -> Result<u64, ApiError> {
    super::profile_fields::create(realm, caller, &form(p)).map(|d| d["id"].as_u64().unwrap())
}

fn patch_profile(realm: &mut Realm, caller: &FakeUser, user: u64, data: &str) -> Result<(), String> {
    let target = super::users::UserRef::Id(user);
    super::users::update(realm, caller, &target, &form(&[("profile_data", data)]))
        .map(|_| ())
        .map_err(|e| e.msg)
}

#[test]
fn profile_fields_render_like_the_transcript() {
    let (mut realm, _) = profile_realm();
    let fields = super::profile_fields::list(&realm).unwrap();
    assert_eq!(
        fields["custom_fields"][1],
        serde_json::json!({"id": 2, "name": "Bio", "type": 2, "hint": "What are you known for?",
                           "field_data": "", "order": 2, "required": false, "editable_by_user": true})
    );
    let keys: Vec<&String> = fields["custom_fields"][0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "name", "type", "hint", "field_data", "order", "required", "editable_by_user"],
        "key order as Zulip's as_dict; display_in_profile_summary omitted when false"
    );
    if let Some(f) = realm.profile_fields.get_mut(&1) {
        f.display_in_profile_summary = true;
    }
    assert_eq!(realm.render_profile_fields()[0]["display_in_profile_summary"], true);
}

#[test]
fn creating_profile_fields_follows_zulips_checks() {
    let (mut realm, owner) = profile_realm();
    let member = realm.users[&9].clone();
    let err = |realm: &mut Realm, caller: &FakeUser, p: &[(&str, &str)]| {
        let e = create_field(realm, caller, p).unwrap_err();
        (e.code, e.msg)
    };
    let bad = |msg: &str| ("BAD_REQUEST".to_string(), msg.to_string());
    assert_eq!(
        err(&mut realm, &member, &[("name", "X"), ("field_type", "1")]),
        ("UNAUTHORIZED_PRINCIPAL".into(), "Must be an organization administrator".into())
    );
    let missing = create_field(&mut realm, &owner, &[("name", "X")]).unwrap_err();
    assert_eq!(
        (missing.code.as_str(), missing.msg.as_str()),
        ("REQUEST_VARIABLE_MISSING", "Missing 'field_type' argument")
    );
    assert_eq!(missing.body()["var_name"], "field_type");
    assert_eq!(
        err(&mut realm, &owner, &[("name", "  "), ("field_type", "1")]),
        bad("Label cannot be blank.")
    );
    assert_eq!(
        err(&mut realm, &owner, &[("name", "Team"), ("field_type", "1")]),
        bad("A field with that label already exists.")
    );
    assert_eq!(err(&mut realm, &owner, &[("name", "X"), ("field_type", "99")]), bad("Invalid field type."));
    assert_eq!(err(&mut realm, &owner, &[("name", "X"), ("field_type", "-1")]), bad("Invalid field type."));
    assert_eq!(
        err(&mut realm, &owner, &[("name", "X"), ("field_type", "3")]),
        bad("Field must have at least one choice.")
    );
    assert_eq!(
        err(&mut realm, &owner, &[("name", "X"), ("field_type", "one")]),
        bad("field_type is not valid JSON")
    );
    assert_eq!(
        err(&mut realm, &owner, &[("name", "X"), ("field_type", "1"), ("field_data", "[]")]),
        bad("field_data is not a dict")
    );
    assert_eq!(
        err(
            &mut realm,
            &owner,
            &[
                ("name", "X"),
                ("field_type", "3"),
                ("field_data", r#"{"a":{"text":"A","order":"1"},"b":{"text":"A","order":"2"}}"#)
            ]
        ),
        bad("Field must not have duplicate choices.")
    );
    assert_eq!(
        err(&mut realm, &owner, &[("name", "X"), ("field_type", "1"), ("hint", &"h".repeat(81))]),
        bad("hint is too long (limit: 80 characters)")
    );
    assert_eq!(
        err(
            &mut realm,
            &owner,
            &[("name", "X"), ("field_type", "2"), ("display_in_profile_summary", "true")]
        ),
        bad("Field type not supported for display in profile summary.")
    );
    assert_eq!(realm.profile_fields.len(), 4, "no error created anything");

    // Ids keep increasing; order = id; the name is stripped; field_data stored compact.
    let id = create_field(
        &mut realm,
        &owner,
        &[
            ("name", " Zt Shift "),
            ("hint", ""),
            ("field_type", "3"),
            ("field_data", r#"{"0": {"text": "Day", "order": "1"}, "1": {"text": "Night", "order": "2"}}"#),
        ],
    )
    .unwrap();
    assert_eq!(id, 5);
    let f = &realm.profile_fields[&5];
    assert_eq!((f.name.as_str(), f.order), ("Zt Shift", 5));
    assert_eq!(f.field_data, r#"{"0":{"text":"Day","order":"1"},"1":{"text":"Night","order":"2"}}"#);
    // field_data is kept only for list-of-options and external-account fields.
    let plain =
        create_field(&mut realm, &owner, &[("name", "Y"), ("field_type", "1"), ("field_data", r#"{"a":1}"#)])
            .unwrap();
    assert_eq!(realm.profile_fields[&plain].field_data, "");
    // A default external account takes Zulip's name; a second one collides.
    let gh = create_field(
        &mut realm,
        &owner,
        &[("name", "ignored"), ("field_type", "7"), ("field_data", r#"{"subtype":"github"}"#)],
    )
    .unwrap();
    assert_eq!(realm.profile_fields[&gh].name, "GitHub username");
    assert_eq!(realm.profile_fields[&gh].field_data, r#"{"subtype":"github"}"#);
    assert_eq!(
        err(&mut realm, &owner, &[("field_type", "7"), ("field_data", r#"{"subtype":"github"}"#)]),
        bad("A field with that label already exists.")
    );
    assert_eq!(
        err(
            &mut realm,
            &owner,
            &[("name", "Z"), ("field_type", "7"), ("field_data", r#"{"subtype":"myspace"}"#)]
        ),
        bad("Invalid external account type")
    );
    // At most two fields in the profile summary.
    for name in ["S1", "S2"] {
        create_field(
            &mut realm,
            &owner,
            &[("name", name), ("field_type", "1"), ("display_in_profile_summary", "true")],
        )
        .unwrap();
    }
    assert_eq!(
        err(
            &mut realm,
            &owner,
            &[("name", "S3"), ("field_type", "1"), ("display_in_profile_summary", "true")]
        ),
        bad("Only 2 custom profile fields can be displayed in the profile summary.")
    );
}

#[test]
fn updating_reordering_and_deleting_profile_fields() {
    let (mut realm, owner) = profile_realm();
    let update = |realm: &mut Realm, id: u64, p: &[(&str, &str)]| {
        super::profile_fields::update(realm, &owner, id, &form(p)).map(|_| ()).map_err(|e| e.msg)
    };
    let version = realm.profile_fields_version;
    update(&mut realm, 1, &[("name", "Team name"), ("hint", "Yours")]).unwrap();
    assert_eq!(
        (realm.profile_fields[&1].name.as_str(), realm.profile_fields[&1].hint.as_str()),
        ("Team name", "Yours")
    );
    update(&mut realm, 1, &[("name", "Team name")]).unwrap();
    assert_eq!(realm.profile_fields_version, version + 2, "every write counts, even without a change");
    assert_eq!(
        update(&mut realm, 1, &[("name", "Bio")]),
        Err("A field with that label already exists.".into())
    );
    assert_eq!(update(&mut realm, 99, &[("name", "x")]), Err("Field id 99 not found.".into()));
    // Dropping an option clears the values that used it.
    realm.users.get_mut(&9).unwrap().profile_data.insert(3, "1".into());
    update(&mut realm, 3, &[("field_data", r#"{"0":{"text":"Day","order":"1"}}"#)]).unwrap();
    assert!(realm.users[&9].profile_data.is_empty());

    let reorder = |realm: &mut Realm, order: &str| {
        super::profile_fields::reorder(realm, &owner, &form(&[("order", order)]))
            .map(|_| ())
            .map_err(|e| e.msg)
    };
    assert_eq!(reorder(&mut realm, "[4, 3, 2]"), Err("Invalid order mapping.".into()));
    reorder(&mut realm, "[4, 3, 2, 1, 77]").unwrap();
    let ids: Vec<u64> = realm.profile_fields_in_order().iter().map(|f| f.id).collect();
    assert_eq!(ids, [4, 3, 2, 1]);
    assert_eq!(realm.profile_fields[&4].order, 0, "Zulip's reorder stores positions from 0");

    // Deleting removes every user's value; the id is not reused.
    realm.users.get_mut(&9).unwrap().profile_data.insert(1, "x".into());
    super::profile_fields::delete(&mut realm, &owner, 1).unwrap();
    assert!(realm.users[&9].profile_data.is_empty());
    let again = super::profile_fields::delete(&mut realm, &owner, 1).unwrap_err();
    assert_eq!(again.msg, "Field id 1 not found.");
    assert_eq!(realm.insert_profile_field(FakeProfileField::new("New", 1)), 5);
    let member = realm.users[&9].clone();
    let refused = super::profile_fields::delete(&mut realm, &member, 2).unwrap_err();
    assert_eq!(refused.code, "UNAUTHORIZED_PRINCIPAL");
}

#[test]
fn profile_data_is_validated_per_field_type() {
    let (mut realm, owner) = profile_realm();
    let mut patch = |data: &str| patch_profile(&mut realm, &owner, 9, data);
    assert_eq!(patch("phone=123"), Err("profile_data is not valid JSON".into()));
    assert_eq!(patch(r#"{"id": 1, "value": "x"}"#), Err("profile_data is not a list".into()));
    assert_eq!(patch(r#"[1]"#), Err("profile_data[0] is not a dict".into()));
    assert_eq!(
        patch(r#"[{"id": 4, "value": 10}]"#),
        Err(r#"profile_data[0]["value"]["str"] is not a string"#.into())
    );
    assert_eq!(patch(r#"[{"id": 9999, "value": "x"}]"#), Err("Field id 9999 not found.".into()));
    assert_eq!(patch(r#"[{"id": 1, "value": [10]}]"#), Err("Team is not a string".into()));
    assert_eq!(
        patch(&format!(r#"[{{"id": 1, "value": "{}"}}]"#, "x".repeat(51))),
        Err("Team is too long (limit: 50 characters)".into())
    );
    assert_eq!(
        patch(&format!(r#"[{{"id": 2, "value": "{}"}}]"#, "x".repeat(501))),
        Err("Bio is too long (limit: 500 characters)".into())
    );
    assert_eq!(
        patch(r#"[{"id": 3, "value": "Night"}]"#),
        Err("'Night' is not a valid choice for 'Shift'.".into())
    );
    assert_eq!(patch(r#"[{"id": 4, "value": "10"}]"#), Err("User IDs is not a list".into()));
    assert_eq!(patch(r#"[{"id": 4, "value": [999999, 9, 4]}]"#), Err("Invalid user IDs: 999999, 4".into()));
    assert_eq!(patch(r#"[{"id": 4, "value": [10]}]"#), Err("User with ID 10 is deactivated".into()));
    assert_eq!(patch(r#"[{"id": 4, "value": [11]}]"#), Err("User with ID 11 is a bot".into()));
    assert!(realm.users[&9].profile_data.is_empty(), "no error applied anything");

    patch_profile(
        &mut realm,
        &owner,
        9,
        &format!(
            r#"[{{"id": 1, "value": "{}"}}, {{"id": 4, "value": [9, 8]}}, {{"id": 3, "value": "1"}}]"#,
            "x".repeat(50)
        ),
    )
    .unwrap();
    let stored = &realm.users[&9].profile_data;
    assert_eq!(stored[&4], "[9,8]", "compact JSON text, in the order sent");
    assert_eq!(stored[&3], "1");
    // A later error in the same request leaves everything as it was, clears included.
    let before = realm.users[&9].clone();
    let err = patch_profile(&mut realm, &owner, 9, r#"[{"id": 1, "value": ""}, {"id": 3, "value": "7"}]"#);
    assert_eq!(err, Err("'7' is not a valid choice for 'Shift'.".into()));
    let both = form(&[
        ("full_name", "Renamed"),
        ("profile_data", r#"[{"id": 4, "value": []}, {"id": 1, "value": [1]}]"#),
    ]);
    let err = super::users::update(&mut realm, &owner, &super::users::UserRef::Id(9), &both).unwrap_err();
    assert_eq!(err.msg, "Team is not a string");
    assert_eq!(realm.users[&9], before);
    // Falsy values clear; clears run before sets (a set wins over a clear of the same field).
    patch_profile(&mut realm, &owner, 9, r#"[{"id": 1, "value": "Infra"}, {"id": 1, "value": null}, {"id": 4, "value": []}, {"id": 3, "value": ""}]"#).unwrap();
    assert_eq!(realm.users[&9].profile_data, [(1, "Infra".to_string())].into_iter().collect());
    // An unknown field fails even when clearing.
    assert_eq!(
        patch_profile(&mut realm, &owner, 9, r#"[{"id": 77, "value": null}]"#),
        Err("Field id 77 not found.".into())
    );
}

#[test]
fn other_field_types_check_dates_and_links() {
    let (mut realm, owner) = profile_realm();
    let date = realm.insert_profile_field(FakeProfileField::new("Birthday", 4));
    let link = realm.insert_profile_field(FakeProfileField::new("Website", 5));
    let pronouns = realm.insert_profile_field(FakeProfileField::new("Pronouns", 8));
    let mut set = |id: u64, v: &str| {
        patch_profile(&mut realm, &owner, 9, &format!(r#"[{{"id": {id}, "value": {v}}}]"#))
    };
    assert_eq!(set(date, r#""1900-01-01""#), Ok(()));
    assert_eq!(set(date, r#""2023-02-29""#), Err("Birthday is not a date".into()));
    assert_eq!(set(date, r#""2024-2-1""#), Err("Birthday is not a date".into()));
    assert_eq!(set(link, r#""https://blog.zulig.org""#), Ok(()));
    assert_eq!(set(link, r#""blog.zulig.org""#), Err("Website is not a URL".into()));
    assert_eq!(set(pronouns, r#""he/him""#), Ok(()));
}

#[test]
fn profile_data_renders_for_humans_only() {
    let (mut realm, owner) = profile_realm();
    patch_profile(&mut realm, &owner, 9, r#"[{"id": 2, "value": "I am:\n* The prince of Denmark\n* Nephew to the usurping Claudius"}, {"id": 4, "value": [8]}, {"id": 1, "value": "R&D <3"}, {"id": 3, "value": "0"}]"#).unwrap();
    let member = realm.users[&9].clone();
    let user = realm.render_user(&owner, &member, true, true);
    assert_eq!(
        serde_json::Value::Object(user["profile_data"].as_object().unwrap().clone()).to_string(),
        r#"{"1":{"value":"R&D <3","rendered_value":"<p>R&amp;D &lt;3</p>"},"2":{"value":"I am:\n* The prince of Denmark\n* Nephew to the usurping Claudius","rendered_value":"<p>I am:</p>\n<ul>\n<li>The prince of Denmark</li>\n<li>Nephew to the usurping Claudius</li>\n</ul>"},"3":{"value":"0"},"4":{"value":"[8]"}}"#
    );
    assert!(!realm.render_user(&owner, &member, true, false).contains_key("profile_data"));
    let gone = realm.users[&10].clone();
    assert_eq!(realm.render_user(&owner, &gone, true, true)["profile_data"], serde_json::json!({}));
    let bot = realm.users[&11].clone();
    assert!(!realm.render_user(&owner, &bot, true, true).contains_key("profile_data"));
}

#[test]
fn markdown_subset_for_text_values() {
    assert_eq!(render_markdown("Platform"), "<p>Platform</p>");
    assert_eq!(render_markdown("a\nb\n\nc"), "<p>a<br>\nb</p>\n<p>c</p>");
    assert_eq!(render_markdown("- x\n- y\ntail"), "<ul>\n<li>x</li>\n<li>y</li>\n</ul>\n<p>tail</p>");
    assert_eq!(render_markdown("*not a list*"), "<p>*not a list*</p>");
}
