//! Pure SCIM ⇄ Zulip mapping: render a Zulip user as a SCIM User, read the SCIM attributes
//! the sidecar honours from a request body, and turn "resource before" / "resource after"
//! into the Zulip calls that make the difference. No I/O: most domain logic is tested here.

use serde_json::{json, Map, Value};

use crate::error::Error;
use scim::catalog::OptionalAttr;
use scim::{self, ScimType};
use zulip_client::{Role, User};

/// Longest full name Zulip accepts.
pub const MAX_FULL_NAME_CHARS: usize = 100;

/// Longest value of a Zulip short text custom profile field, hence of a stored `externalId`.
pub const MAX_EXTERNAL_ID_CHARS: usize = 50;

/// What the mapping needs to know about the realm.
#[derive(Debug, Clone)]
pub struct UserMapping {
    /// `<realm url>/scim/v2`, no trailing slash.
    pub base_url: String,
    /// Entra style (`name.formatted`) rather than Okta style (`givenName` + `familyName`)
    /// is the preferred source of the full name on input.
    pub name_formatted_included: bool,
    /// The realm stores `externalId` (in a custom profile field); otherwise it is ignored on
    /// input and never rendered.
    pub stores_external_id: bool,
    /// Addresses (and, in PATCH, attributes) that Zulip cannot hold are dropped instead of
    /// refused (`ignore_unmapped_attributes`).
    pub ignore_unmapped: bool,
    /// The attributes kept in custom profile fields (`custom_profile_field_map`).
    pub mapped: Vec<OptionalAttr>,
}

/// The userName a Zulip user is shown under: the delivery e-mail if the service account can
/// see it, else an address the sidecar itself learned (it created the user or changed its
/// address), else the API e-mail (`user<id>@<host>`, see README "hidden addresses").
pub fn user_name_of<'a>(user: &'a User, learned: Option<&'a str>) -> (&'a str, bool) {
    match (&user.delivery_email, learned) {
        (Some(email), _) => (email.as_str(), true),
        (None, Some(email)) => (email, true),
        (None, None) => (user.email.as_str(), false),
    }
}

/// Splits a full name at the first space, as Zulip's built-in SCIM does.
pub fn split_full_name(full_name: &str) -> (&str, &str) {
    match full_name.split_once(' ') {
        Some((given, family)) => (given, family),
        None => (full_name, ""),
    }
}

/// Zulip's `date_joined` (`2025-03-04T10:15+00:00`, minute precision) as RFC 3339 with seconds.
pub fn scim_datetime(date_joined: &str) -> String {
    // `YYYY-MM-DDTHH:MM+00:00` (22 chars) lacks seconds; anything else is passed through.
    let b = date_joined.as_bytes();
    if b.len() == 22 && b.get(13) == Some(&b':') && matches!(b.get(16), Some(b'+') | Some(b'-')) {
        format!("{}:00{}", &date_joined[..16], &date_joined[16..])
    } else {
        date_joined.to_string()
    }
}

impl UserMapping {
    pub fn location(&self, user_id: u64) -> String {
        format!("{}/Users/{}", self.base_url, user_id)
    }

    /// The SCIM User for a Zulip user (without `meta.version`, which is computed over this).
    /// `external_id`: the stored `externalId`, if any; `mapped`: the stored values of the
    /// mapped attributes (a person picker's as Zulip keeps it, `[12]`).
    pub fn render(
        &self,
        user: &User,
        learned_email: Option<&str>,
        external_id: Option<&str>,
        mapped: &[(&OptionalAttr, &str)],
    ) -> Value {
        let (user_name, real_address) = user_name_of(user, learned_email);
        let (given, family) = split_full_name(&user.full_name);
        let mut name = Map::new();
        name.insert("formatted".into(), Value::from(user.full_name.as_str()));
        if !given.is_empty() {
            name.insert("givenName".into(), Value::from(given));
        }
        if !family.is_empty() {
            name.insert("familyName".into(), Value::from(family));
        }
        let created = scim_datetime(&user.date_joined);
        let mut out = Map::new();
        out.insert("schemas".into(), json!([scim::USER_SCHEMA]));
        out.insert("id".into(), Value::from(user.user_id.to_string()));
        if let Some(external_id) = external_id.filter(|_| self.stores_external_id) {
            out.insert("externalId".into(), Value::from(external_id));
        }
        out.insert("userName".into(), Value::from(user_name));
        out.insert("name".into(), Value::Object(name));
        out.insert("displayName".into(), Value::from(user.full_name.as_str()));
        out.insert("active".into(), Value::from(user.is_active));
        if real_address {
            out.insert("emails".into(), json!([{"value": user_name, "type": "work", "primary": true}]));
        }
        out.insert("role".into(), Value::from(user.role.scim_name()));
        for (attr, stored) in mapped {
            if attr.is_manager() {
                // Zulip keeps a person picker as JSON text: `[12]`.
                let id = serde_json::from_str::<Vec<u64>>(stored).ok().and_then(|ids| ids.first().copied());
                if let Some(id) = id {
                    attr.write(&mut out, json!({"value": id.to_string(), "$ref": self.location(id)}));
                }
            } else {
                attr.write(&mut out, Value::from(*stored));
            }
        }
        let mut meta = Map::new();
        meta.insert("resourceType".into(), Value::from("User"));
        if !created.is_empty() {
            meta.insert("created".into(), Value::from(created.clone()));
            meta.insert("lastModified".into(), Value::from(created));
        }
        meta.insert("location".into(), Value::from(self.location(user.user_id)));
        out.insert("meta".into(), Value::Object(meta));
        Value::Object(out)
    }

    /// The full name a SCIM User asks for. `before` is the current resource (None on create);
    /// the attribute that changed wins, so an Okta PUT that changes `givenName` and re-sends a
    /// stale `displayName` renames, and a PUT that changes only `displayName` renames too.
    pub fn full_name_of(&self, before: Option<&Value>, after: &Value) -> Option<String> {
        let display = str_at(after, &["displayName"]).map(str::trim).filter(|s| !s.is_empty());
        let formatted = str_at(after, &["name", "formatted"]).map(str::trim).filter(|s| !s.is_empty());
        let composed =
            compose_name(str_at(after, &["name", "givenName"]), str_at(after, &["name", "familyName"]));
        let Some(before) = before else {
            // Create: the configured name style first, then the other, then displayName.
            let from_name = if self.name_formatted_included {
                formatted.map(str::to_string).or(composed)
            } else {
                composed.or(formatted.map(str::to_string))
            };
            return from_name.or(display.map(str::to_string));
        };
        let changed = |path: &[&str]| str_at(before, path) != str_at(after, path);
        if changed(&["displayName"]) {
            if let Some(d) = display {
                return Some(d.to_string());
            }
        }
        let formatted = formatted.filter(|_| changed(&["name", "formatted"])).map(str::to_string);
        let parts_changed = changed(&["name", "givenName"]) || changed(&["name", "familyName"]);
        let composed = composed.filter(|_| parts_changed);
        // Both forms changed (and may disagree): the realm's configured style wins.
        if self.name_formatted_included {
            formatted.or(composed)
        } else {
            composed.or(formatted)
        }
    }
}

fn compose_name(given: Option<&str>, family: Option<&str>) -> Option<String> {
    let joined = format!("{} {}", given.unwrap_or("").trim(), family.unwrap_or("").trim());
    let joined = joined.trim();
    (!joined.is_empty()).then(|| joined.to_string())
}

/// The string at a path of object keys (case-insensitive keys, as IdPs vary).
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    value_at(value, path).and_then(Value::as_str)
}

/// The value at a path of object keys, matching keys case-insensitively.
pub fn value_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = value;
    for key in path {
        let obj = cur.as_object()?;
        cur = obj
            .get(*key)
            .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))?;
    }
    Some(cur)
}

/// A boolean, accepting the strings Entra sends without the `aadOptscim062020` flag.
pub fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Validates a SCIM `role` value.
pub fn parse_role(value: &Value) -> Result<Role, Error> {
    let invalid = |shown: String| {
        Error::invalid(
            ScimType::InvalidValue,
            format!("invalid role {shown}: valid values are {}", scim::schema::ROLE_VALUES.join(", ")),
        )
    };
    match value {
        Value::String(s) => {
            Role::from_scim_name(&s.trim().to_ascii_lowercase()).ok_or_else(|| invalid(format!("{s:?}")))
        }
        other => Err(invalid(other.to_string())),
    }
}

/// A syntactically plausible e-mail address (Zulip does the authoritative check).
pub fn is_plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@')
}

/// Checks a full name the way Zulip will, so the IdP gets a 400 before any call is made.
pub fn check_full_name(name: &str) -> Result<(), Error> {
    if name.chars().count() > MAX_FULL_NAME_CHARS {
        return Err(Error::invalid(
            ScimType::InvalidValue,
            format!("name is longer than Zulip's {MAX_FULL_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(ScimType::InvalidValue, "name contains control characters"));
    }
    Ok(())
}

/// Reads an `externalId` from a request: a string of at most [`MAX_EXTERNAL_ID_CHARS`]
/// characters (the limit of the short text field that stores it); `null` or `""` is none.
pub fn parse_external_id(value: Option<&Value>) -> Result<Option<String>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().count() > MAX_EXTERNAL_ID_CHARS {
                return Err(Error::invalid(
                    ScimType::InvalidValue,
                    format!("externalId is longer than {MAX_EXTERNAL_ID_CHARS} characters, the most the Zulip profile field that stores it holds"),
                ));
            }
            if s.chars().any(char::is_control) {
                return Err(Error::invalid(ScimType::InvalidValue, "externalId contains control characters"));
            }
            Ok(Some(s.clone()))
        }
        Some(other) => {
            Err(Error::invalid(ScimType::InvalidValue, format!("externalId must be a string, got {other}")))
        }
    }
}

/// The Zulip-side meaning of a SCIM User after a write, relative to the user before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    pub full_name: Option<String>,
    pub role: Option<Role>,
    pub new_email: Option<String>,
    pub active: Option<bool>,
    /// `Some(None)`: clear the stored `externalId`.
    pub external_id: Option<Option<String>>,
    /// Mapped attributes that change: the new SCIM value (for `manager`, the manager's id),
    /// `None` to clear.
    pub profile: Vec<(OptionalAttr, Option<String>)>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        *self == UserChanges::default()
    }
}

/// Every Zulip account has a role and is active or deactivated: neither can be removed.
fn check_kept(before: &Value, after: &Value) -> Result<(), Error> {
    for (attr, how) in [("role", "set role to member"), ("active", "set active to false to deactivate")] {
        let present = |v: &Value| value_at(v, &[attr]).is_some_and(|x| !x.is_null());
        if present(before) && !present(after) {
            return Err(Error::invalid(
                ScimType::Mutability,
                format!("{attr} cannot be removed from a Zulip account: {how}"),
            ));
        }
    }
    Ok(())
}

/// The new role, when `role` is given and differs (absent, `null` or blank: no change).
fn role_change(before: &Value, after: &Value) -> Result<Option<Role>, Error> {
    match value_at(after, &["role"]) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => {
            let role = parse_role(v)?;
            Ok((Some(role.scim_name()) != str_at(before, &["role"])).then_some(role))
        }
    }
}

/// The new `active`, when given and different.
fn active_change(before: &Value, after: &Value) -> Result<Option<bool>, Error> {
    match value_at(after, &["active"]) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let active = lenient_bool(v).ok_or_else(|| {
                Error::invalid(ScimType::InvalidValue, format!("active must be a boolean, got {v}"))
            })?;
            Ok((Some(active) != value_at(before, &["active"]).and_then(Value::as_bool)).then_some(active))
        }
    }
}

/// The stored `externalId`'s change, when it differs (`Some(None)`: clear it).
fn external_id_change(before: &Value, after: &Value) -> Result<Option<Option<String>>, Error> {
    let external_id = parse_external_id(value_at(after, &["externalId"]))?;
    Ok((external_id.as_deref() != str_at(before, &["externalId"])).then_some(external_id))
}

impl UserMapping {
    /// Compares the resource before and after a PUT/PATCH and lists the Zulip changes.
    /// `before` must be this mapping's rendering of the current user.
    pub fn changes(&self, before: &Value, after: &Value) -> Result<UserChanges, Error> {
        let new_email = self.address_change(before, after)?;
        let full_name = self.full_name_change(before, after)?;
        check_kept(before, after)?;
        let role = role_change(before, after)?;
        let active = active_change(before, after)?;
        let external_id = if self.stores_external_id { external_id_change(before, after)? } else { None };
        let profile = self.profile_changes(before, after)?;
        Ok(UserChanges { full_name, role, new_email, active, external_id, profile })
    }

    /// The new address, when `userName` or `emails` changes it; `emails` cannot be removed.
    fn address_change(&self, before: &Value, after: &Value) -> Result<Option<String>, Error> {
        let old_user_name = str_at(before, &["userName"]).unwrap_or("");
        let new_user_name = match value_at(after, &["userName"]) {
            Some(Value::String(s)) => s.trim(),
            Some(_) => return Err(Error::invalid(ScimType::InvalidValue, "userName must be a string")),
            None => return Err(Error::invalid(ScimType::InvalidValue, "userName is required")),
        };
        // What the request gave: a userName that differs from the current one, and an
        // `emails` value whose address differs from the current one (any PATCH form).
        let given_user_name = (!new_user_name.eq_ignore_ascii_case(old_user_name)).then_some(new_user_name);
        let emails_before = value_at(before, &["emails"]).filter(|v| !v.is_null());
        let emails_after = value_at(after, &["emails"]).filter(|v| !v.is_null());
        let names_address = match emails_after {
            Some(v) => address_of(v)?.is_some(),
            None => false,
        };
        if emails_before.is_some() && !names_address {
            return Err(Error::invalid(
                ScimType::Mutability,
                "emails cannot be removed: a Zulip account always has its one address (change it with userName or emails[type eq \"work\"].value)",
            ));
        }
        let given_emails = emails_after.filter(|_| emails_after != emails_before);
        let address = self.requested_address(Some(old_user_name), given_user_name, given_emails)?;
        Ok(address.filter(|address| !address.eq_ignore_ascii_case(old_user_name)))
    }

    /// The new full name, when the names give one that differs from `displayName` (checked
    /// the way Zulip will).
    fn full_name_change(&self, before: &Value, after: &Value) -> Result<Option<String>, Error> {
        match self.full_name_of(Some(before), after) {
            Some(full_name) if Some(full_name.as_str()) != str_at(before, &["displayName"]) => {
                check_full_name(&full_name)?;
                Ok(Some(full_name))
            }
            _ => Ok(None),
        }
    }

    /// The mapped attributes whose value changes (after checking that every typed value
    /// given has a field to store it).
    fn profile_changes(
        &self,
        before: &Value,
        after: &Value,
    ) -> Result<Vec<(OptionalAttr, Option<String>)>, Error> {
        self.check_stored(after)?;
        let mut profile = Vec::new();
        for attr in &self.mapped {
            let new = mapped_value(attr, after)?;
            if new.as_deref() != attr.read(before).and_then(Value::as_str) {
                profile.push((attr.clone(), new));
            }
        }
        Ok(profile)
    }

    /// Values of the typed attributes (`phoneNumbers[type eq "fax"]`) that no mapped field
    /// stores: `400 invalidValue` naming them, or dropped when the realm ignores them.
    fn check_stored(&self, resource: &Value) -> Result<(), Error> {
        let unstored = scim::catalog::unstored_values(resource, &self.mapped);
        if unstored.is_empty() || self.ignore_unmapped {
            return Ok(());
        }
        Err(Error::invalid(
            ScimType::InvalidValue,
            format!("this organization keeps no field for {} (custom_profile_field_map; ignore_unmapped_attributes: true drops such values)", unstored.join(", ")),
        ))
    }
}

/// The value of a mapped attribute in a request: a string, or a number or boolean (as IdPs
/// send some employee numbers), as text; `None` when unassigned.
fn mapped_value(attr: &OptionalAttr, resource: &Value) -> Result<Option<String>, Error> {
    match attr.read(resource) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(other) => {
            Err(Error::invalid(ScimType::InvalidValue, format!("{attr} must be a string, got {other}")))
        }
    }
}

impl UserMapping {
    /// The address a request asks for, from the `userName` and the `emails` it gave (either
    /// may be absent): `emails` names the address by its primary entry, or its only work
    /// entry, or its only entry. Both given with different addresses → `400 invalidValue`
    /// naming both. Other addresses in `emails` (a home address, a second work address)
    /// cannot be held by a Zulip account: `400 invalidValue`, or dropped when the realm
    /// ignores unmapped attributes; the current address (`current`) is tolerated, as an `add`
    /// of a new primary address leaves it in the list.
    pub fn requested_address(
        &self,
        current: Option<&str>,
        user_name: Option<&str>,
        emails: Option<&Value>,
    ) -> Result<Option<String>, Error> {
        let from_emails = match emails {
            Some(emails) => address_of(emails)?,
            None => None,
        };
        let address = match (user_name, from_emails.as_deref()) {
            (Some(u), Some(e)) if !u.eq_ignore_ascii_case(e) => {
                return Err(Error::invalid(
                    ScimType::InvalidValue,
                    format!("userName {u:?} and the primary e-mail {e:?} differ: a Zulip account has one address, which both name; send the same address in both (Entra: map both from mail)"),
                ))
            }
            (Some(u), _) => u.to_string(),
            (None, Some(e)) => e.to_string(),
            (None, None) => return Ok(None),
        };
        if !is_plausible_email(&address) {
            return Err(Error::invalid(
                ScimType::InvalidValue,
                format!(
                    "{address:?} is not an e-mail address: Zulip accounts are identified by their e-mail"
                ),
            ));
        }
        if let (Some(emails), false) = (emails, self.ignore_unmapped) {
            let others: Vec<String> = email_entries(emails)
                .filter(|(value, _)| {
                    !value.eq_ignore_ascii_case(&address)
                        && current.is_none_or(|c| !value.eq_ignore_ascii_case(c))
                })
                .map(|(value, kind)| match kind {
                    Some(kind) => format!("{value:?} ({kind})"),
                    None => format!("{value:?}"),
                })
                .collect();
            if !others.is_empty() {
                return Err(Error::invalid(
                    ScimType::InvalidValue,
                    format!("a Zulip account holds one address ({address}); emails also lists {} which it cannot store (ignore_unmapped_attributes: true drops such addresses)", others.join(", ")),
                ));
            }
        }
        Ok(Some(address))
    }
}

/// The `(value, type)` of every entry of an `emails` value (a list, or one entry).
fn email_entries(emails: &Value) -> impl Iterator<Item = (&str, Option<&str>)> {
    let items: &[Value] = match emails {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    };
    items.iter().filter_map(|item| match item {
        Value::String(s) => Some((s.as_str(), None)),
        Value::Object(_) => str_at(item, &["value"]).map(|v| (v, str_at(item, &["type"]))),
        _ => None,
    })
}

/// The address an `emails` value names: its primary entry, else its only `work` entry, else
/// its only entry (`None`: it names none; several candidates: `400 invalidValue`).
pub fn address_of(emails: &Value) -> Result<Option<String>, Error> {
    let items: &[Value] = match emails {
        Value::Array(items) => items,
        Value::Null => &[],
        other => std::slice::from_ref(other),
    };
    let value = |item: &Value| match item {
        Value::String(s) => Some(s.trim().to_string()),
        _ => str_at(item, &["value"]).map(|s| s.trim().to_string()),
    };
    let is_primary = |item: &Value| value_at(item, &["primary"]).and_then(lenient_bool) == Some(true);
    let primaries: Vec<&Value> = items.iter().filter(|i| is_primary(i)).collect();
    let candidates: Vec<&Value> = if !primaries.is_empty() {
        primaries
    } else {
        let work: Vec<&Value> = items
            .iter()
            .filter(|i| str_at(i, &["type"]).is_some_and(|t| t.eq_ignore_ascii_case("work")))
            .collect();
        if work.is_empty() {
            items.iter().collect()
        } else {
            work
        }
    };
    let mut addresses: Vec<String> =
        candidates.into_iter().filter_map(value).filter(|v| !v.is_empty()).collect();
    addresses.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    match addresses.len() {
        0 => Ok(None),
        1 => Ok(addresses.pop()),
        _ => Err(Error::invalid(
            ScimType::InvalidValue,
            format!("emails names several addresses ({}) and none is the primary one: a Zulip account has one address", addresses.join(", ")),
        )),
    }
}

/// What a `POST /Users` body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub full_name: String,
    /// `None`: the body did not say (a new account is a member; a reactivated one keeps its role).
    pub role: Option<Role>,
    pub active: bool,
    /// Only read when the realm stores `externalId`.
    pub external_id: Option<String>,
    /// The mapped attributes the body gives a value.
    pub profile: Vec<(OptionalAttr, Option<String>)>,
}

impl UserMapping {
    /// Reads a `POST /Users` body (lenient in: unknown attributes, `password`, `groups`,
    /// nulls, and `externalId` when the realm does not store it, are ignored; `active` may be
    /// `"True"`).
    pub fn new_user(&self, body: &Value) -> Result<NewUser, Error> {
        if !body.is_object() {
            return Err(Error::invalid(ScimType::InvalidSyntax, "the request body must be a JSON object"));
        }
        let email = match value_at(body, &["userName"]) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(Error::invalid(ScimType::InvalidValue, "userName is required"))
            }
            Some(_) => return Err(Error::invalid(ScimType::InvalidValue, "userName must be a string")),
        };
        if !is_plausible_email(&email) {
            return Err(Error::invalid(
                ScimType::InvalidValue,
                format!("userName {email:?} is not an e-mail address: Zulip accounts are identified by their e-mail"),
            ));
        }
        let emails = value_at(body, &["emails"]).filter(|v| !v.is_null());
        let email = self.requested_address(None, Some(&email), emails)?.unwrap_or(email);
        // Zulip needs a name; an IdP that sends none gets the address's local part, which
        // the admin (or a later update) can change.
        let full_name = self
            .full_name_of(None, body)
            .unwrap_or_else(|| email.rsplit_once('@').map(|(local, _)| local).unwrap_or(&email).to_string());
        check_full_name(&full_name)?;
        let role = match value_at(body, &["role"]) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(parse_role(v)?),
        };
        let active = match value_at(body, &["active"]) {
            None | Some(Value::Null) => true,
            Some(v) => lenient_bool(v).ok_or_else(|| {
                Error::invalid(ScimType::InvalidValue, format!("active must be a boolean, got {v}"))
            })?,
        };
        let external_id = match self.stores_external_id {
            true => parse_external_id(value_at(body, &["externalId"]))?,
            false => None,
        };
        self.check_stored(body)?;
        let mut profile = Vec::new();
        for attr in &self.mapped {
            if let Some(value) = mapped_value(attr, body)? {
                profile.push((attr.clone(), Some(value)));
            }
        }
        Ok(NewUser { email, full_name, role, active, external_id, profile })
    }

    /// The resource a PUT asks for: the current one with every attribute the body carries
    /// replaced. Attributes left out keep their values, as in Zulip's built-in SCIM (an Okta
    /// PUT without `role` must never demote an administrator). Read-only attributes in the
    /// body (`id`, `meta`, `groups`, …) are ignored.
    pub fn put_target(&self, before: &Value, body: &Value) -> Result<Value, Error> {
        let body = body.as_object().ok_or_else(|| {
            Error::invalid(ScimType::InvalidSyntax, "the request body must be a JSON object")
        })?;
        if !body.keys().any(|k| k.eq_ignore_ascii_case("userName")) {
            return Err(Error::invalid(ScimType::InvalidValue, "userName is required in a PUT"));
        }
        let mut after = before.clone();
        let Some(target) = after.as_object_mut() else {
            return Err(Error::Internal("rendered user is not an object".into()));
        };
        // `emails` is the address again: it must agree with `userName` (checked here, as both
        // were given), and then `userName` carries the change.
        if let (Some(Value::String(user_name)), Some(emails)) = (
            value_at(&Value::Object(body.clone()), &["userName"]),
            value_at(&Value::Object(body.clone()), &["emails"]).filter(|v| !v.is_null()),
        ) {
            let current = str_at(before, &["userName"]);
            self.requested_address(current, Some(user_name.trim()), Some(emails))?;
        }
        for (key, value) in body {
            let canonical = ["userName", "externalId", "name", "displayName", "active", "role"]
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(key));
            let Some(canonical) = canonical else {
                self.put_mapped(target, key, value);
                continue;
            };
            if value.is_null() {
                continue;
            }
            if canonical == "name" {
                // Name parts merge: a PUT with only givenName keeps nothing else stale.
                let Some(parts) = value.as_object() else {
                    return Err(Error::invalid(ScimType::InvalidValue, "name must be an object"));
                };
                let mut name = Map::new();
                for (k, v) in parts {
                    if let Some(c) = ["formatted", "givenName", "familyName"]
                        .into_iter()
                        .find(|c| c.eq_ignore_ascii_case(k))
                    {
                        name.insert(c.to_string(), v.clone());
                    }
                }
                target.insert("name".into(), Value::Object(name));
            } else {
                target.insert(canonical.to_string(), value.clone());
            }
        }
        Ok(after)
    }

    /// A PUT body's `key` when it holds mapped attributes: a core attribute (`title`,
    /// `phoneNumbers`: replaced; `null` clears), or the enterprise extension object (each
    /// mapped attribute it carries replaced; the others keep their values).
    fn put_mapped(&self, target: &mut Map<String, Value>, key: &str, value: &Value) {
        if key.eq_ignore_ascii_case(scim::ENTERPRISE_USER_SCHEMA) {
            let Some(given) = value.as_object() else { return };
            for attr in self.mapped.iter().filter(|a| a.enterprise) {
                let Some((_, v)) = given.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr.name)) else {
                    continue;
                };
                let ext =
                    target.entry(scim::ENTERPRISE_USER_SCHEMA).or_insert_with(|| Value::Object(Map::new()));
                if let Some(ext) = ext.as_object_mut() {
                    ext.insert(attr.name.to_owned(), v.clone());
                }
            }
            return;
        }
        if let Some(attr) = self.mapped.iter().find(|a| !a.enterprise && a.name.eq_ignore_ascii_case(key)) {
            target.insert(attr.name.to_owned(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests;
