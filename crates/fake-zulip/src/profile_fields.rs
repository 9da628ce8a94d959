//! Custom profile fields (zulip-rest-api.md §11, transcripts `profile-fields.json`):
//! `GET`/`POST`/`PATCH /realm/profile_fields` (list, create, reorder),
//! `PATCH`/`DELETE /realm/profile_fields/{id}`, and the `profile_data` of `PATCH /users/{id}`
//! (parsed here, applied by [`super::users::update`]).
//!
//! Checks run in Zulip's order: the admin decorator, then the typed parameters in signature
//! order (alphabetical in Zulip's views), then the view's own checks. Every write to the
//! field list bumps [`Realm::profile_fields_version`], which makes a `custom_profile_fields`
//! event even when nothing changed, as Zulip sends one after each write.

use serde_json::{json, Map, Value};

use super::model::{
    FakeProfileField, FakeUser, Realm, FIELD_DATE, FIELD_EXTERNAL_ACCOUNT, FIELD_LONG_TEXT, FIELD_PRONOUNS,
    FIELD_SELECT, FIELD_SHORT_TEXT, FIELD_URL, FIELD_USER,
};
use super::users::Data;
use super::wire::{ApiError, ApiResult, Params};

pub(crate) const CREATE_PARAMS: &[&str] = &[
    "display_in_profile_summary",
    "editable_by_user",
    "field_data",
    "field_type",
    "hint",
    "name",
    "required",
];
pub(crate) const UPDATE_PARAMS: &[&str] =
    &["display_in_profile_summary", "editable_by_user", "field_data", "hint", "name", "required"];
pub(crate) const REORDER_PARAMS: &[&str] = &["order"];

/// `CustomProfileField.HINT_MAX_LENGTH` and `NAME_MAX_LENGTH`.
const HINT_MAX: usize = 80;
const NAME_MAX: usize = 40;
/// `MAX_DISPLAY_IN_PROFILE_SUMMARY_FIELDS`.
const SUMMARY_MAX: usize = 2;
/// Default external accounts (`subtype` → field name; the hint is empty): the two every
/// Zulip version has (newer servers have more; other subtypes are "Invalid external account
/// type" here).
const DEFAULT_EXTERNAL_ACCOUNTS: [(&str, &str); 2] =
    [("twitter", "Twitter username"), ("github", "GitHub username")];

fn require_admin(caller: &FakeUser) -> ApiResult<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::principal("Must be an organization administrator"))
    }
}

fn not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::bad(format!("Field id {id} not found."))
}

/// `GET /realm/profile_fields`: any account.
pub(crate) fn list(realm: &Realm) -> ApiResult<Data> {
    let mut d = Data::new();
    d.insert("custom_fields".into(), Value::Array(realm.render_profile_fields()));
    Ok(d)
}

/// `field_data`: a JSON object (`ProfileFieldData`).
fn field_data_param(params: &Params) -> ApiResult<Option<Map<String, Value>>> {
    match params.json_value("field_data")? {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(ApiError::bad("field_data is not a dict")),
    }
}

/// `name`, stripped (`StringConstraints(strip_whitespace=True)`).
fn name_param(params: &Params) -> Option<String> {
    params.get("name").map(|n| n.trim().to_string())
}

/// Zulip's `validate_select_field_data`: options `{key: {"text": …, "order": …}}`, no blank
/// key, no duplicate text.
fn validate_select_options(data: &Map<String, Value>) -> Result<(), String> {
    let mut texts = std::collections::BTreeSet::new();
    for (key, option) in data {
        if key.trim().is_empty() {
            return Err("'value' cannot be blank.".into());
        }
        let Value::Object(option) = option else {
            return Err("field_data is not a dict".into());
        };
        for k in ["text", "order"] {
            match option.get(k) {
                None => return Err(format!("{k} key is missing from field_data")),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    return Err(format!("field_data[\"{k}\"] cannot be blank."))
                }
                Some(Value::String(_)) => {}
                Some(_) => return Err(format!("field_data[\"{k}\"] is not a string")),
            }
        }
        if let Some(extra) = option.keys().find(|k| *k != "text" && *k != "order") {
            return Err(format!("Unexpected arguments: {extra}"));
        }
        texts.insert(option.get("text").and_then(Value::as_str).unwrap_or_default().to_string());
    }
    if texts.len() != data.len() {
        return Err("Field must not have duplicate choices.".into());
    }
    Ok(())
}

/// Zulip's `validate_external_account_field_data` (a default subtype, or `custom` with a
/// `url_pattern` naming `%(username)s` once).
fn validate_external_account(data: &Map<String, Value>) -> Result<(), String> {
    let subtype = match data.get("subtype") {
        None => return Err("subtype key is missing from field_data".into()),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err("field_data[\"subtype\"] cannot be blank.".into())
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("field_data[\"subtype\"] is not a string".into()),
    };
    match data.get("url_pattern") {
        None => {}
        Some(Value::String(p)) if p.matches("%(username)s").count() == 1 => {}
        Some(Value::String(_)) => return Err("URL pattern must contain '%(username)s'.".into()),
        Some(_) => return Err("field_data[\"url_pattern\"] is not a string".into()),
    }
    if let Some(extra) = data.keys().find(|k| *k != "subtype" && *k != "url_pattern") {
        return Err(format!("Unexpected arguments: {extra}"));
    }
    if DEFAULT_EXTERNAL_ACCOUNTS.iter().any(|(s, _)| *s == subtype) {
        return Ok(());
    }
    if subtype != "custom" {
        return Err("Invalid external account type".into());
    }
    if !data.contains_key("url_pattern") {
        return Err("Custom external account must define URL pattern".into());
    }
    Ok(())
}

/// The default external account a type-7 field stands for (`None`: not one).
fn default_external(field_type: u8, data: &Map<String, Value>) -> Option<(&'static str, &'static str)> {
    if field_type != FIELD_EXTERNAL_ACCOUNT {
        return None;
    }
    let subtype = data.get("subtype").and_then(Value::as_str)?;
    DEFAULT_EXTERNAL_ACCOUNTS.iter().find(|(s, _)| *s == subtype).copied()
}

/// Zulip's `validate_custom_profile_field`.
fn validate_field(
    name: &str,
    hint: &str,
    field_type: u8,
    data: &Map<String, Value>,
    in_summary: bool,
) -> ApiResult<()> {
    match field_type {
        FIELD_SELECT if data.is_empty() => return Err(ApiError::bad("Field must have at least one choice.")),
        FIELD_SELECT => validate_select_options(data).map_err(ApiError::bad)?,
        FIELD_EXTERNAL_ACCOUNT => validate_external_account(data).map_err(ApiError::bad)?,
        _ => {}
    }
    if default_external(field_type, data).is_none() {
        if name.trim().is_empty() {
            return Err(ApiError::bad("Label cannot be blank."));
        }
        if hint.chars().count() > HINT_MAX {
            return Err(ApiError::bad(format!("hint is too long (limit: {HINT_MAX} characters)")));
        }
        if name.chars().count() > NAME_MAX {
            return Err(ApiError::bad(format!("name is too long (limit: {NAME_MAX} characters)")));
        }
    }
    if !(FIELD_SHORT_TEXT..=FIELD_PRONOUNS).contains(&field_type) {
        return Err(ApiError::bad("Invalid field type."));
    }
    if in_summary && matches!(field_type, FIELD_LONG_TEXT | FIELD_USER) {
        return Err(ApiError::bad("Field type not supported for display in profile summary."));
    }
    Ok(())
}

/// Whether `SUMMARY_MAX` other fields are already shown in the profile summary.
fn summary_full(realm: &Realm, except: Option<u64>) -> ApiResult<()> {
    let shown = realm
        .profile_fields
        .values()
        .filter(|f| f.display_in_profile_summary && Some(f.id) != except)
        .count();
    if shown >= SUMMARY_MAX {
        return Err(ApiError::bad(format!(
            "Only {SUMMARY_MAX} custom profile fields can be displayed in the profile summary."
        )));
    }
    Ok(())
}

fn name_taken(realm: &Realm, name: &str, except: Option<u64>) -> ApiResult<()> {
    if realm.profile_fields.values().any(|f| f.name == name && Some(f.id) != except) {
        return Err(ApiError::bad("A field with that label already exists."));
    }
    Ok(())
}

/// `POST /realm/profile_fields`: `{"id": N}`.
pub(crate) fn create(realm: &mut Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    require_admin(caller)?;
    let in_summary = params.json_bool("display_in_profile_summary")?.unwrap_or(false);
    let editable_by_user = params.json_bool("editable_by_user")?.unwrap_or(true);
    let data = field_data_param(params)?.unwrap_or_default();
    let field_type = params.json_int("field_type")?.ok_or_else(|| ApiError::missing("field_type"))?;
    let hint = params.string("hint").unwrap_or_default();
    let name = name_param(params).unwrap_or_default();
    let required = params.json_bool("required")?.unwrap_or(false);
    if in_summary {
        summary_full(realm, None)?;
    }
    // Out-of-range types fail `validate_field` like 99 does.
    let field_type = u8::try_from(field_type).unwrap_or(u8::MAX);
    validate_field(&name, &hint, field_type, &data, in_summary)?;
    let mut field = match default_external(field_type, &data) {
        Some((subtype, default_name)) => FakeProfileField::new(default_name, field_type)
            .field_data(&json!({"subtype": subtype}).to_string()),
        None => {
            let mut f = FakeProfileField::new(&name, field_type).hint(&hint);
            if matches!(field_type, FIELD_SELECT | FIELD_EXTERNAL_ACCOUNT) {
                f.field_data = Value::Object(data).to_string();
            }
            f
        }
    };
    name_taken(realm, &field.name, None)?;
    field.required = required;
    field.editable_by_user = editable_by_user;
    field.display_in_profile_summary = in_summary;
    let id = realm.insert_profile_field(field);
    let mut d = Data::new();
    d.insert("id".into(), json!(id));
    Ok(d)
}

/// `PATCH /realm/profile_fields/{id}`: any of `name`, `hint`, `field_data`,
/// `display_in_profile_summary`, `required`, `editable_by_user`.
pub(crate) fn update(realm: &mut Realm, caller: &FakeUser, id: u64, params: &Params) -> ApiResult<Data> {
    require_admin(caller)?;
    let in_summary = params.json_bool("display_in_profile_summary")?;
    let editable_by_user = params.json_bool("editable_by_user")?;
    let data = field_data_param(params)?;
    let hint = params.string("hint");
    let name = name_param(params);
    let required = params.json_bool("required")?;
    let mut field = realm.profile_fields.get(&id).cloned().ok_or_else(|| not_found(id))?;
    if in_summary == Some(true) {
        summary_full(realm, Some(id))?;
    }
    let stored: Map<String, Value> = serde_json::from_str(&field.field_data).unwrap_or_default();
    if default_external(field.field_type, &stored).is_some() {
        // Only display_in_profile_summary may change on a default external account.
        let changes = name.as_ref().is_some_and(|n| *n != field.name)
            || hint.as_ref().is_some_and(|h| *h != field.hint)
            || data.as_ref().is_some_and(|d| *d != stored);
        if changes {
            return Err(ApiError::bad("Default custom field cannot be updated."));
        }
    }
    validate_field(
        name.as_deref().unwrap_or(&field.name),
        hint.as_deref().unwrap_or(&field.hint),
        field.field_type,
        data.as_ref().unwrap_or(&stored),
        in_summary.unwrap_or(field.display_in_profile_summary),
    )?;
    if let Some(name) = name {
        name_taken(realm, &name, Some(id))?;
        field.name = name;
    }
    if let Some(hint) = hint {
        field.hint = hint;
    }
    field.required = required.unwrap_or(field.required);
    field.editable_by_user = editable_by_user.unwrap_or(field.editable_by_user);
    field.display_in_profile_summary = in_summary.unwrap_or(field.display_in_profile_summary);
    if matches!(field.field_type, FIELD_SELECT | FIELD_EXTERNAL_ACCOUNT)
        && (data.is_some() || field.field_data.is_empty())
    {
        let data = data.unwrap_or_default();
        if field.field_type == FIELD_SELECT {
            // Users who had a removed option lose their value (no per-user events).
            for u in realm.users.values_mut() {
                if u.profile_data.get(&id).is_some_and(|v| !data.contains_key(v)) {
                    u.profile_data.remove(&id);
                }
            }
        }
        field.field_data = Value::Object(data).to_string();
    }
    realm.profile_fields.insert(id, field);
    realm.profile_fields_version += 1;
    Ok(Data::new())
}

/// `DELETE /realm/profile_fields/{id}`: the field and every user's value for it.
pub(crate) fn delete(realm: &mut Realm, caller: &FakeUser, id: u64) -> ApiResult<Data> {
    require_admin(caller)?;
    if !realm.remove_profile_field(id) {
        return Err(not_found(id));
    }
    Ok(Data::new())
}

/// `PATCH /realm/profile_fields` (`order`: every field id, in the new order; `order`
/// becomes the position, from 0).
pub(crate) fn reorder(realm: &mut Realm, caller: &FakeUser, params: &Params) -> ApiResult<Data> {
    require_admin(caller)?;
    let order = params.required_int_list("order")?;
    // Like Zulip's dict comprehension: the last position of a repeated id wins.
    let position = |id: u64| order.iter().rposition(|x| *x == id);
    if realm.profile_fields.keys().any(|id| position(*id).is_none()) {
        return Err(ApiError::bad("Invalid order mapping."));
    }
    let positions: Vec<(u64, usize)> =
        realm.profile_fields.keys().map(|id| (*id, position(*id).unwrap_or_default())).collect();
    for (id, pos) in positions {
        if let Some(f) = realm.profile_fields.get_mut(&id) {
            f.order = i64::try_from(pos).unwrap_or(i64::MAX);
        }
    }
    realm.profile_fields_version += 1;
    Ok(Data::new())
}

// === profile_data of PATCH /users/{id} ===

/// One item of `profile_data` after the typed-parameter stage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProfileItem {
    pub id: i64,
    pub value: ProfileValue,
}

/// A `profile_data` value: `str | list[int] | None`, falsy ones (`""`, `[]`, `null`) as
/// `Clear`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProfileValue {
    Clear,
    Text(String),
    Ids(Vec<i64>),
}

/// The typed-parameter stage (pydantic, strict): a list of `{"id": int, "value": str |
/// list[int] | null}`. A value of another type fails on the union's first member, hence
/// Zulip's odd `profile_data[0]["value"]["str"] is not a string`.
pub(crate) fn parse_profile_data(v: Value) -> ApiResult<Vec<ProfileItem>> {
    let Value::Array(items) = v else {
        return Err(ApiError::bad("profile_data is not a list"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let var = format!("profile_data[{i}]");
        let Value::Object(mut item) = item else {
            return Err(ApiError::bad(format!("{var} is not a dict")));
        };
        // Zulip has no message for a missing key (its validator asserts); these are the fake's.
        let id = match item.get("id") {
            None => return Err(ApiError::bad(format!("{var}[\"id\"] field is missing"))),
            Some(id) => {
                id.as_i64().ok_or_else(|| ApiError::bad(format!("{var}[\"id\"] is not an integer")))?
            }
        };
        let value = match item.remove("value") {
            None => return Err(ApiError::bad(format!("{var}[\"value\"] field is missing"))),
            Some(Value::Null) => ProfileValue::Clear,
            Some(Value::String(s)) if s.is_empty() => ProfileValue::Clear,
            Some(Value::String(s)) => ProfileValue::Text(s),
            Some(Value::Array(a)) if a.iter().all(Value::is_i64) => {
                let ids: Vec<i64> = a.iter().filter_map(Value::as_i64).collect();
                if ids.is_empty() {
                    ProfileValue::Clear
                } else {
                    ProfileValue::Ids(ids)
                }
            }
            Some(_) => return Err(ApiError::bad(format!("{var}[\"value\"][\"str\"] is not a string"))),
        };
        out.push(ProfileItem { id, value });
    }
    Ok(out)
}

fn field_of(realm: &Realm, id: i64) -> ApiResult<&FakeProfileField> {
    u64::try_from(id).ok().and_then(|id| realm.profile_fields.get(&id)).ok_or_else(|| not_found(id))
}

/// `YYYY-MM-DD` exactly, a real calendar date (Python's `date.fromisoformat` round trip).
fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u16>().ok()).unwrap_or(0);
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let Ok(month) = time::Month::try_from(u8::try_from(month).unwrap_or(0)) else {
        return false;
    };
    year >= 1
        && time::Date::from_calendar_date(i32::from(year), month, u8::try_from(day).unwrap_or(0)).is_ok()
}

/// Roughly Django's `URLValidator`: http(s)/ftp(s), a host, no spaces.
fn is_url(s: &str) -> bool {
    !s.chars().any(char::is_whitespace)
        && url::Url::parse(s).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https" | "ftp" | "ftps")
                && u.host_str().is_some_and(|h| !h.is_empty() && (h.contains('.') || h == "localhost"))
        })
}

/// Zulip's `validate_user_custom_profile_field`: the value as stored, or the message.
fn check_value(realm: &Realm, field: &FakeProfileField, value: &ProfileValue) -> Result<String, String> {
    let name = &field.name;
    let text = || match value {
        ProfileValue::Text(s) => Ok(s.clone()),
        _ => Err(format!("{name} is not a string")),
    };
    let capped = |max: usize| {
        let s = text()?;
        if s.chars().count() > max {
            return Err(format!("{name} is too long (limit: {max} characters)"));
        }
        Ok(s)
    };
    match field.field_type {
        FIELD_SHORT_TEXT | FIELD_EXTERNAL_ACCOUNT | FIELD_PRONOUNS => capped(50),
        FIELD_LONG_TEXT => capped(500),
        FIELD_DATE => {
            text().and_then(|s| if is_iso_date(&s) { Ok(s) } else { Err(format!("{name} is not a date")) })
        }
        FIELD_URL => {
            text().and_then(|s| if is_url(&s) { Ok(s) } else { Err(format!("{name} is not a URL")) })
        }
        FIELD_SELECT => {
            let s = text()?;
            let options: Map<String, Value> = serde_json::from_str(&field.field_data).unwrap_or_default();
            if options.contains_key(&s) {
                Ok(s)
            } else {
                Err(format!("'{s}' is not a valid choice for '{name}'."))
            }
        }
        FIELD_USER => {
            let ProfileValue::Ids(ids) = value else {
                return Err("User IDs is not a list".into());
            };
            let user = |id: &i64| u64::try_from(*id).ok().and_then(|id| realm.users.get(&id));
            let invalid: Vec<String> =
                ids.iter().filter(|id| user(id).is_none()).map(i64::to_string).collect();
            if !invalid.is_empty() {
                return Err(format!("Invalid user IDs: {}", invalid.join(", ")));
            }
            let mut known: Vec<&FakeUser> = ids.iter().filter_map(user).collect();
            known.sort_by_key(|u| u.user_id);
            for u in known {
                if !u.is_active {
                    return Err(format!("User with ID {} is deactivated", u.user_id));
                }
                if u.is_bot {
                    return Err(format!("User with ID {} is a bot", u.user_id));
                }
            }
            // orjson's compact form, in the order sent.
            Ok(json!(ids).to_string())
        }
        // A type the fake does not know: stored as given.
        _ => text(),
    }
}

/// Applies `profile_data` to `user` (a copy the caller commits only on success), in
/// Zulip's order: every clear first (an unknown field fails), then every other item is
/// validated, then set. Clearing an unset field is a no-op.
pub(crate) fn apply_profile_data(realm: &Realm, user: &mut FakeUser, items: &[ProfileItem]) -> ApiResult<()> {
    let clear = |item: &&ProfileItem| item.value == ProfileValue::Clear;
    for item in items.iter().filter(clear) {
        user.profile_data.remove(&field_of(realm, item.id)?.id);
    }
    let mut values = Vec::new();
    for item in items.iter().filter(|i| !clear(i)) {
        let field = field_of(realm, item.id)?;
        values.push((field.id, check_value(realm, field, &item.value).map_err(ApiError::bad)?));
    }
    for (id, value) in values {
        user.profile_data.insert(id, value);
    }
    Ok(())
}
