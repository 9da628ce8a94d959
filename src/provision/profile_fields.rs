//! `custom_profile_field_map`: the SCIM attributes a realm keeps in Zulip custom profile
//! fields (`title` → "Job title", the enterprise extension's `manager` → a person picker).
//!
//! Fields are named by label in the config and resolved to ids against
//! `GET /realm/profile_fields` at readiness and on every full reload: a missing label is a
//! readiness error naming it (or the field is created, with `create_missing_fields`), a field
//! of a type that cannot hold the attribute is always one. Values are read from the snapshot
//! (`include_custom_profile_fields` on the one `GET /users`), written in the same
//! `PATCH /users/{id}` as the other changes, and kept current by Zulip's events.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use tokio::sync::Mutex as AsyncMutex;

use crate::config::RealmConfig;
use crate::directory::UserIndex;
use crate::error::Error;
use crate::provision::realm::{NotReady, Realm};
use scim::catalog::OptionalAttr;
use scim::filter::Filter;
use scim::ScimType;
use zulip_client::{ProfileField, User, UserUpdate};

/// The hint Zulip shows under a field the sidecar creates.
const CREATED_FIELD_HINT: &str = "Set by SCIM provisioning from the identity provider";

/// Longest value of a short text or pronouns field (Zulip's limit).
const MAX_SHORT_TEXT: usize = 50;
/// Longest value of a long text (paragraph) field.
const MAX_LONG_TEXT: usize = 500;

/// The mapped fields of one realm.
#[derive(Debug)]
pub(crate) struct MappedFields {
    entries: Vec<MappedField>,
    create_missing: bool,
    /// One resolution at a time (it may create fields).
    resolving: AsyncMutex<()>,
}

#[derive(Debug)]
struct MappedField {
    attr: OptionalAttr,
    label: String,
    /// 0 until resolved, and after the field was deleted, renamed or retyped in Zulip.
    id: AtomicU64,
    field_type: AtomicU8,
}

/// The field types that can hold `attr`; the first is the one created.
fn compatible_types(attr: &OptionalAttr) -> &'static [u8] {
    if attr.is_manager() {
        &[ProfileField::PERSON_PICKER]
    } else if attr.name == "profileUrl" {
        &[ProfileField::LINK, ProfileField::SHORT_TEXT, ProfileField::LONG_TEXT]
    } else {
        &[ProfileField::SHORT_TEXT, ProfileField::LONG_TEXT, ProfileField::PRONOUNS]
    }
}

fn type_names(types: &[u8]) -> String {
    types.iter().map(|t| ProfileField::type_name(*t)).collect::<Vec<_>>().join(" or ")
}

// === impl MappedFields ===

impl MappedFields {
    pub(crate) fn new(config: &RealmConfig) -> Self {
        let entries = config
            .custom_profile_field_map
            .iter()
            .map(|(attr, label)| MappedField {
                attr: attr.clone(),
                label: label.clone(),
                id: AtomicU64::new(0),
                field_type: AtomicU8::new(0),
            })
            .collect();
        MappedFields { entries, create_missing: config.create_missing_fields, resolving: AsyncMutex::new(()) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The mapped attributes, in config order.
    pub(crate) fn attrs(&self) -> Vec<OptionalAttr> {
        self.entries.iter().map(|e| e.attr.clone()).collect()
    }

    /// The ids of the fields resolved so far.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.id.load(Ordering::Acquire)).filter(|id| *id != 0)
    }

    fn all_resolved(&self) -> bool {
        self.entries.iter().all(|e| e.id.load(Ordering::Acquire) != 0)
    }

    /// The stored values of `user`, by attribute (unset fields left out).
    pub(crate) fn values<'s, 'u>(&'s self, user: &'u User) -> Vec<(&'s OptionalAttr, &'u str)> {
        self.entries
            .iter()
            .filter_map(|e| match e.id.load(Ordering::Acquire) {
                0 => None,
                id => user.profile_data.get(id).map(|v| (&e.attr, v)),
            })
            .collect()
    }

    /// `Some((field id, v))` when `filter` demands `attr eq "v"` of a mapped single-valued
    /// text attribute: the candidates are then the users whose stored value equals `v`
    /// ignoring case (a superset of the matches: the whole filter still decides).
    pub(crate) fn eq_constraint<'f>(&self, filter: &'f Filter) -> Option<(u64, &'f str)> {
        self.entries.iter().find_map(|e| {
            if e.attr.typed.is_some() || e.attr.is_manager() {
                return None;
            }
            let id = e.id.load(Ordering::Acquire);
            let value = match e.attr.enterprise {
                true => filter.extension_eq_constraint(scim::ENTERPRISE_USER_SCHEMA, e.attr.name),
                false => filter.eq_constraint(e.attr.name),
            }?;
            (id != 0).then_some((id, value))
        })
    }

    /// Resolves every field against Zulip's list (creating the missing ones when allowed).
    /// `fresh`: even the fields already resolved (readiness, full reloads).
    async fn resolve(&self, realm: &Realm, fresh: bool) -> Result<(), NotReady> {
        if self.entries.is_empty() || (!fresh && self.all_resolved()) {
            return Ok(());
        }
        let _one_at_a_time = self.resolving.lock().await;
        if !fresh && self.all_resolved() {
            return Ok(());
        }
        let mut fields = realm.client.get_custom_profile_fields().await?;
        let mut problems = Vec::new();
        for entry in &self.entries {
            let (id, field_type) = match entry.locate(&fields, self.create_missing) {
                Ok(Some(found)) => found,
                Ok(None) => entry.create(realm, &mut fields).await?,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            entry.field_type.store(field_type, Ordering::Release);
            entry.id.store(id, Ordering::Release);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NotReady::Config(format!("custom_profile_field_map: {}", problems.join("; "))))
        }
    }
}

// === impl MappedField ===

impl MappedField {
    /// Finds this entry's field in Zulip's list `fields`: `Ok(Some((id, type)))`, `Ok(None)`
    /// when it is missing and may be created, `Err` the problem (a field of a type that cannot
    /// hold the attribute, or a missing one that may not be created).
    fn locate(&self, fields: &[ProfileField], create_missing: bool) -> Result<Option<(u64, u8)>, String> {
        let types = compatible_types(&self.attr);
        match fields.iter().find(|f| f.name == self.label) {
            Some(f) if types.contains(&f.field_type) => Ok(Some((f.id, f.field_type))),
            Some(f) => Err(format!(
                "{}: Zulip's custom profile field {:?} (id {}) is a {} field; {} needs a {} field",
                self.attr,
                self.label,
                f.id,
                ProfileField::type_name(f.field_type),
                self.attr,
                type_names(types)
            )),
            None if !create_missing => Err(format!(
                "{}: Zulip has no custom profile field labelled {:?}: create it (a {} field) or set create_missing_fields: true",
                self.attr,
                self.label,
                type_names(types)
            )),
            None => Ok(None),
        }
    }

    /// Creates this entry's field (of the first compatible type); when Zulip refuses or its
    /// answer is lost, `fields` is read again and a field created meanwhile is taken.
    async fn create(&self, realm: &Realm, fields: &mut Vec<ProfileField>) -> Result<(u64, u8), NotReady> {
        let field_type = compatible_types(&self.attr)[0];
        let id =
            match realm.client.create_custom_profile_field(&self.label, CREATED_FIELD_HINT, field_type).await
            {
                Ok(id) => id,
                // Created meanwhile (another replica, or this call before its answer was lost):
                // look again.
                Err(e) if e.is_bad_request() || !e.outcome_known() => {
                    *fields = realm.client.get_custom_profile_fields().await?;
                    match fields.iter().find(|f| f.name == self.label && f.field_type == field_type) {
                        Some(f) => f.id,
                        None => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
        tracing::info!(realm = %realm.name(), field_id = id, label = %self.label, attribute = %self.attr, "created a custom profile field for a mapped attribute");
        Ok((id, field_type))
    }
}

// === impl Realm (mapped fields) ===

impl Realm {
    /// Resolves the fields of `custom_profile_field_map` (no I/O when all are known and not
    /// `fresh`).
    pub(crate) async fn resolve_mapped_fields(&self, fresh: bool) -> Result<(), NotReady> {
        self.mapped.resolve(self, fresh).await
    }

    /// Zulip's custom profile fields changed: `Some(reason)` when a mapped field is gone,
    /// renamed or retyped (a full reload resolves them again).
    pub(crate) fn mapped_fields_changed(&self, fields: &[ProfileField]) -> Option<String> {
        for entry in &self.mapped.entries {
            let id = entry.id.load(Ordering::Acquire);
            if id == 0 {
                continue;
            }
            let fits = fields.iter().any(|f| {
                f.id == id && f.name == entry.label && compatible_types(&entry.attr).contains(&f.field_type)
            });
            if !fits {
                entry.id.store(0, Ordering::Release);
                return Some(format!(
                    "custom profile field {id} ({:?}), which stores {}, was deleted or changed in Zulip",
                    entry.label, entry.attr
                ));
            }
        }
        None
    }

    /// Adds the mapped attributes that change to the `PATCH /users/{id}` of `update`,
    /// validating each value as Zulip will (length, the manager an active user) so that a
    /// bad value is a 400 before any call.
    pub(crate) async fn mapped_update(
        &self,
        changes: &[(OptionalAttr, Option<String>)],
        update: &mut UserUpdate,
    ) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        self.resolve_mapped_fields(false).await?;
        let index = self.user_index().await?;
        let index = index.read();
        self.add_mapped(changes, update, &index)
    }

    fn add_mapped(
        &self,
        changes: &[(OptionalAttr, Option<String>)],
        update: &mut UserUpdate,
        index: &UserIndex,
    ) -> Result<(), Error> {
        for (attr, value) in changes {
            let Some(entry) = self.mapped.entries.iter().find(|e| e.attr == *attr) else {
                continue;
            };
            let id = entry.id.load(Ordering::Acquire);
            if id == 0 {
                return Err(Error::Unavailable {
                    detail: format!(
                        "the custom profile field {:?} for {attr} is not resolved yet",
                        entry.label
                    ),
                });
            }
            let field_type = entry.field_type.load(Ordering::Acquire);
            if field_type == ProfileField::PERSON_PICKER {
                let users = match value {
                    None => Vec::new(),
                    Some(v) => vec![manager_id(v, index, attr)?],
                };
                update.profile_users.push((id, users));
                continue;
            }
            if let Some(v) = value {
                let max = if field_type == ProfileField::LONG_TEXT { MAX_LONG_TEXT } else { MAX_SHORT_TEXT };
                if field_type != ProfileField::LINK && v.chars().count() > max {
                    return Err(Error::invalid(
                        ScimType::InvalidValue,
                        format!(
                            "{attr} is longer than {max} characters, the most the Zulip field {:?} holds",
                            entry.label
                        ),
                    ));
                }
                if v.chars().any(char::is_control) {
                    return Err(Error::invalid(
                        ScimType::InvalidValue,
                        format!("{attr} contains control characters"),
                    ));
                }
            }
            update.profile_data.push((id, value.clone()));
        }
        Ok(())
    }
}

/// Records in `user` (the snapshot's copy) what a successful `update` wrote.
pub(crate) fn record_profile_update(user: &mut User, update: &UserUpdate) {
    for (field, value) in &update.profile_data {
        user.profile_data.set(*field, value.clone());
    }
    for (field, users) in &update.profile_users {
        // As Zulip keeps a person picker: JSON text, `[12]`.
        let value = (!users.is_empty()).then(|| serde_json::Value::from(users.clone()).to_string());
        user.profile_data.set(*field, value);
    }
}

/// The Zulip id of the manager a SCIM `manager.value` names: an active human of the realm.
fn manager_id(value: &str, index: &UserIndex, attr: &OptionalAttr) -> Result<u64, Error> {
    let user = value.trim().parse::<u64>().ok().and_then(|id| index.get(id));
    match user {
        Some(u) if u.is_active && !u.is_bot => Ok(u.user_id),
        Some(u) if !u.is_active => Err(Error::invalid(
            ScimType::InvalidValue,
            format!("{attr}: user {value} is deactivated; Zulip's person picker holds active users only"),
        )),
        _ => Err(Error::invalid(
            ScimType::InvalidValue,
            format!("{attr}: {value:?} is not the id of a user of this organization"),
        )),
    }
}
