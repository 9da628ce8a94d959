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
