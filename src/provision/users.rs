//! SCIM Users operations on a [`Realm`]: reads from the snapshot, writes as the fewest Zulip
//! calls, ordered so that a failure part-way leaves a state the IdP's retry repairs.

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{Map, Value};

use crate::audit::{self, AuditTarget, Outcome};
use crate::config::UserDelete;
use crate::directory::UserEdit;
use crate::error::Error;
use crate::provision::changes::{user_attributes, ChangeRecord, Operation};
use crate::provision::mapping::{user_name_of, NewUser, UserChanges};
use crate::provision::profile_fields::record_profile_update;
use crate::provision::realm::{check_if_match, Realm, FL_CHANGE_EMAIL};
use crate::provision::{parse_id, refusal, ListPage, ListQuery};
use scim::patch::PatchRequest;
use scim::version::Fingerprint;
use scim::ScimType;
use secret::Secret;
use zulip_client::client::ChannelQuery;
use zulip_client::{ProfileData, Role, User, UserUpdate, ZulipError};

/// Zulip's own answer to `DELETE /Users/{id}` (realms configured with `user_delete: reject`).
pub const USER_DELETE_REJECTED: &str =
    "DELETE operation not supported. Use PUT or PATCH to modify the \"active\" attribute instead.";

/// The longest a create's follow-up `PATCH` waits for the rate limit past the request
/// deadline (Zulip's default budget returns within a minute).
const MAX_FOLLOW_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(65);
/// Time left for the follow-up itself once the budget is back.
const FOLLOW_UP_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// Parses a SCIM User id: Zulip user ids are positive integers; anything else names no user.
/// What `POST /users` came to: a new account, or one that already had the address.
enum Posted {
    Created(u64),
    Exists(User),
}

/// A long random password for `POST /users`: Zulip requires one, SCIM users never use it
/// (they log in through SSO or a password reset); it is never stored or logged.
fn throwaway_password() -> Secret<String> {
    Secret::new(rand::thread_rng().sample_iter(&Alphanumeric).take(40).map(char::from).collect())
}

/// The version of a rendered User: a fingerprint of every field its rendering depends on.
fn user_version(
    user: &User,
    learned: Option<&str>,
    external_id: Option<&str>,
    mapped: &[(&scim::catalog::OptionalAttr, &str)],
) -> String {
    let mut fingerprint = Fingerprint::new();
    fingerprint
        .part(user.user_id.to_string().as_str())
        .part(user.email.as_str())
        .part(user.delivery_email.as_deref())
        .part(learned)
        .part(external_id)
        .part(user.full_name.as_str())
        .part(user.date_joined.as_str())
        .part(if user.is_active { "1" } else { "0" })
        .part(user.role.scim_name());
    for (attr, value) in mapped {
        fingerprint.part(attr.to_string().as_str()).part(*value);
    }
    fingerprint.tag()
}

/// Now, in Zulip's `date_joined` form (minute precision).
fn now_date_joined() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}+00:00",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}

// === impl Realm (Users) ===

impl Realm {
    /// The `externalId` stored for `user`, if the realm stores it.
    fn external_id_of<'u>(&self, user: &'u User) -> Option<&'u str> {
        self.external_id_field_id().and_then(|field| user.profile_data.get(field))
    }

    /// The attributes an audit record compares, as SCIM names them (never a secret).
    fn audit_state(&self, user: &User) -> Map<String, Value> {
        let learned = self.dir.learned.get(user.user_id);
        let mut state = Map::new();
        state.insert("userName".into(), Value::from(user_name_of(user, learned.as_deref()).0));
        state.insert("displayName".into(), Value::from(user.full_name.as_str()));
        state.insert("role".into(), Value::from(user.role.scim_name()));
        state.insert("active".into(), Value::from(user.is_active));
        if self.users.stores_external_id {
            state.insert("externalId".into(), self.external_id_of(user).map_or(Value::Null, Value::from));
        }
        state
    }

    /// Records the change from `before` (`None`: created) to `after` in the audit trail.
    fn audit_user(&self, before: Option<&User>, after: &User, outcome: Outcome) {
        let after_state = self.audit_state(after);
        let target = AuditTarget {
            kind: "User",
            id: after.user_id.to_string(),
            address: after_state.get("userName").and_then(Value::as_str).map(str::to_owned),
        };
        let changes = audit::diff(before.map(|b| self.audit_state(b)).as_ref(), &after_state);
        self.audit(target, changes, outcome);
    }

    fn render_user(&self, user: &User) -> Value {
        let learned = self.dir.learned.get(user.user_id);
        let external_id = self.external_id_of(user);
        let mapped = self.mapped.values(user);
        let mut resource = self.users.render(user, learned.as_deref(), external_id, &mapped);
        // The version is a digest of exactly what the rendering depends on: cheaper than
        // re-serialising the resource on every read, and it changes whenever the resource does.
        let version = user_version(user, learned.as_deref(), external_id, &mapped);
        if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
            meta.insert("version".into(), Value::from(version));
        }
        resource
    }

    /// `GET /Users` and `POST /Users/.search`.
    pub async fn list_users(&self, query: &ListQuery) -> Result<ListPage, Error> {
        if let Some(filter) = &query.filter {
            filter.validate(self.user_type)?;
        }
        let index = self.user_index().await?;
        let index = index.read();
        let offset = query.start_index.saturating_sub(1);
        if query.filter.is_none() && query.sort.is_none() {
            let resources =
                index.humans_from(offset).take(query.count).map(|u| self.render_user(u)).collect();
            return Ok(ListPage {
                total_results: index.human_count(),
                start_index: query.start_index,
                resources,
            });
        }
        let candidates: Vec<&User> = match &query.filter {
            Some(f) => {
                if let Some(id) = f.eq_constraint("id") {
                    id.parse::<u64>().ok().and_then(|id| index.get(id)).into_iter().collect()
                } else if let Some(address) = f.eq_constraint("userName").or_else(|| f.email_constraint()) {
                    // `emails` holds exactly the userName (when the address is known): the
                    // same index serves Entra's `emails[type eq "work"].value eq`.
                    index.by_email(address).into_iter().collect()
                } else if let Some(external_id) = f.eq_constraint("externalId") {
                    // caseExact: a plain comparison over the snapshot, before any rendering.
                    index.humans_from(0).filter(|u| self.external_id_of(u) == Some(external_id)).collect()
                } else if let Some((field, value)) = self.mapped.eq_constraint(f) {
                    // A mapped text attribute (caseExact false): its stored value, before
                    // any rendering.
                    let value = value.to_lowercase();
                    index
                        .humans_from(0)
                        .filter(|u| u.profile_data.get(field).is_some_and(|v| v.to_lowercase() == value))
                        .collect()
                } else {
                    index.humans_from(0).collect()
                }
            }
            None => index.humans_from(0).collect(),
        };
        let mut matched: Vec<Value> = candidates
            .into_iter()
            .filter(|u| !u.is_bot)
            .map(|u| self.render_user(u))
            .filter(|v| query.filter.as_ref().is_none_or(|f| f.matches(v, self.user_type)))
            .collect();
        if let Some(sort) = &query.sort {
            // Stable: equal keys keep id order, so pages never overlap.
            matched.sort_by(|a, b| sort.compare(a, b));
        }
        let total_results = matched.len();
        let resources = matched.into_iter().skip(offset).take(query.count).collect();
        Ok(ListPage { total_results, start_index: query.start_index, resources })
    }

    /// The Zulip account behind a SCIM User id: snapshot first, then `GET /users/{id}`.
    async fn find_user(&self, id: &str) -> Result<User, Error> {
        let user_id = parse_id("User", id)?;
        let not_found = || Error::NotFound { resource: "User", id: id.to_string() };
        let index = self.user_index().await?;
        let cached = index.read().get(user_id).cloned();
        let user = match cached {
            Some(user) => user,
            None => {
                match self.client.get_user_with_profile_fields(user_id, &self.profile_field_ids()).await {
                    // Events that arrived during the fetch are newer than it: the snapshot's copy wins.
                    Ok(user) => self.dir.insert_user_if_absent(user).await,
                    Err(e) if e.is_bad_request() => return Err(not_found()),
                    Err(e) => return Err(refusal(e)),
                }
            }
        };
        if user.is_bot {
            return Err(not_found());
        }
        Ok(user)
    }

    /// `GET /Users/{id}`
    pub async fn get_user(&self, id: &str) -> Result<Value, Error> {
        let user = self.find_user(id).await?;
        Ok(self.render_user(&user))
    }

    /// `POST /Users`: `POST /users`, then the role when not member, then — for a guest in a
    /// realm with `create_guests_without_streams` — the default channels removed again,
    /// then the deactivation when `active` is false. Only a creation does this, as in Zulip:
    /// a later change to guest, or a deactivated account brought back by a POST, keeps its
    /// channels.
    pub async fn create_user(&self, body: &Value) -> Result<Value, Error> {
        let new = self.users.new_user(body)?;
        // Resolved before anything is created, so a missing field never half-applies a POST.
        let external_id_field = match new.external_id {
            Some(_) => self.resolve_external_id_field(false).await?,
            None => None,
        };
        // So are the mapped attributes' fields and values (a bad value is a 400 before any
        // call).
        let mut mapped = UserUpdate::default();
        self.mapped_update(&new.profile, &mut mapped).await?;
        let existing = self.user_index().await?.read().by_email(&new.email).cloned();
        if let Some(existing) = existing {
            return self.create_over_existing(existing, new).await;
        }
        // Every call the create will make must fit the rate-limit budget within the deadline:
        // started and then cut by it, an account would be left without its role.
        let role = new.role.unwrap_or(Role::Member);
        let follow_ups = u32::from(role != Role::Member || external_id_field.is_some())
            + 2 * u32::from(role == Role::Guest && self.config.create_guests_without_streams)
            + u32::from(!new.active);
        if follow_ups > 0 {
            self.client.ensure_budget_for(1 + follow_ups).map_err(refusal)?;
        }
        let user_id = match self.post_user(&new).await? {
            Posted::Created(user_id) => user_id,
            Posted::Exists(user) => return self.create_over_existing(user, new).await,
        };
        self.dir.learn_email(user_id, &new.email);
        let mut user = new_account(user_id, &new);
        self.dir.upsert_user(user.clone()).await;

        // What `POST /users` cannot set — a role other than member, the externalId — in one
        // `PATCH /users/{id}`.
        let role = new.role.unwrap_or(Role::Member);
        let mut update = UserUpdate { role: (role != Role::Member).then_some(role), ..mapped };
        if let (Some(external_id), Some(field)) = (&new.external_id, external_id_field) {
            update.profile_data.push((field, Some(external_id.clone())));
        }
        if !update.is_empty() {
            user = self.create_follow_up(user, role, update).await?;
        }
        if role == Role::Guest && self.config.create_guests_without_streams {
            self.new_guest_without_channels(&user).await?;
        }
        if !new.active {
            user = self.deactivate_new_user(user).await?;
        }
        self.log_create(&new, user_id, external_id_field.is_some());
        self.audit_user(None, &user, Outcome::applied());
        Ok(self.render_user(&user))
    }

    /// A created guest taken out of the default channels (`create_guests_without_streams`).
    async fn new_guest_without_channels(&self, user: &User) -> Result<(), Error> {
        let user_id = user.user_id;
        if let Err(e) = self.unsubscribe_new_guest(user_id).await {
            // The account exists, as a guest; only its channels are left. A retry of
            // this POST answers 409 (the address is taken): the IdP's next GET finds
            // the user, and an admin removes the channels in Zulip.
            let applied = format!("created Zulip user {user_id} as a guest, but it is still subscribed to the organization's default channels (create_guests_without_streams): remove them in Zulip");
            self.audit_user(None, user, Outcome::partial(&e, applied.clone()));
            return Err(with_applied(refusal(e), applied));
        }
        Ok(())
    }

    /// A created account deactivated (`POST /Users` with `active: false`).
    async fn deactivate_new_user(&self, user: User) -> Result<User, Error> {
        let user_id = user.user_id;
        if let Err(e) = self.client.deactivate_user(user_id).await {
            let applied = format!("created Zulip user {user_id}; deactivating it failed");
            self.audit_user(None, &user, Outcome::partial(&e, applied.clone()));
            return Err(with_applied(refusal(e), applied));
        }
        Ok(self.record_edit(user, UserEdit { user_id, is_active: Some(false), ..UserEdit::default() }).await)
    }

    /// The change log line of a create.
    fn log_create(&self, new: &NewUser, user_id: u64, external_id_stored: bool) {
        let mut written = vec!["userName", "name"];
        written.extend(new.role.filter(|r| *r != Role::Member).map(|_| "role"));
        written.extend(new.external_id.as_ref().filter(|_| external_id_stored).map(|_| "externalId"));
        written.extend((!new.active).then_some("active"));
        ChangeRecord::new(self.name(), Operation::Create, "User", user_id)
            .address(new.email.as_str())
            .attributes(written)
            .log();
    }

    /// `POST /users` for a new account. A refusal or a lost answer is resolved by looking
    /// before answering: never a duplicate account, never a false error.
    async fn post_user(&self, new: &NewUser) -> Result<Posted, Error> {
        let password = throwaway_password();
        match self.client.create_user(&new.email, &password, &new.full_name).await {
            Ok(user_id) => Ok(Posted::Created(user_id)),
            Err(e) => {
                // Either the outcome is unknown (timeout, reset) or Zulip refused — possibly
                // because the address belongs to an account the snapshot did not show (new
                // since the snapshot, or hidden). Look before answering: never a duplicate,
                // never a false error.
                let unknown_outcome = !e.outcome_known();
                if !unknown_outcome && !e.is_bad_request() {
                    return Err(refusal(e));
                }
                self.dir.invalidate_users().await;
                let found = match self.user_index().await {
                    Ok(index) => index.read().by_email(&new.email).cloned(),
                    Err(_) if unknown_outcome => {
                        return Err(with_applied(
                            refusal(e),
                            format!("the creation of {} may have reached Zulip (its answer was lost and the users could not be read again): read the user by userName before retrying", new.email),
                        ))
                    }
                    Err(_) => return Err(refusal(e)),
                };
                match found {
                    Some(user) if unknown_outcome && user.is_active && user.full_name == new.full_name => {
                        tracing::info!(realm = %self.name(), user_id = user.user_id, "create outcome resolved: zulip created the user");
                        Ok(Posted::Created(user.user_id))
                    }
                    Some(user) => Ok(Posted::Exists(user)),
                    None if e.is_bad_request() => {
                        let hidden = self.user_index().await?.read().hidden_count();
                        let hint = if hidden > 0 {
                            format!(
                                " ({hidden} account(s) of this organization hide their address from the sidecar's service account; if this address is one of them, ask that user to change their e-mail visibility)"
                            )
                        } else {
                            String::new()
                        };
                        Err(Error::invalid(
                            ScimType::InvalidValue,
                            format!("Zulip refused to create the user: {}{hint}", e.message().unwrap_or("")),
                        ))
                    }
                    // Not there when looked at; but a request Zulip did not answer may still
                    // create it, so not "nothing was changed".
                    None if unknown_outcome => Err(with_applied(
                        refusal(e),
                        format!("none when the sidecar read Zulip's users again (no account with address {}), but Zulip did not answer and may still create it: read the user by userName before retrying (a retried POST answers 409 naming the account if Zulip created it)", new.email),
                    )),
                    None => Err(refusal(e)),
                }
            }
        }
    }

    /// What `POST /users` cannot set — a role other than member, the externalId, mapped
    /// attributes — in one `PATCH /users/{id}`. If it fails, the account is taken out again
    /// (the IdP's retry reactivates it with everything) and the error says what was applied.
    async fn create_follow_up(
        &self,
        mut user: User,
        role: Role,
        mut update: UserUpdate,
    ) -> Result<User, Error> {
        let user_id = user.user_id;
        let mut sent = self.send_user_update(user_id, &mut update).await;
        if let Some(wait) = sent.as_ref().err().and_then(ZulipError::rate_limited) {
            // The account exists: the follow-up is part of a write already begun, held
            // back (nothing sent) only because the budget returns after the deadline. It
            // runs to its end — a bounded wait — rather than leave a member behind.
            if wait <= MAX_FOLLOW_UP_WAIT {
                tracing::info!(realm = %self.name(), user_id, wait_ms = wait.as_millis() as u64, "create follow-up waits for the rate limit");
                sent = self.client.continuing(wait + FOLLOW_UP_SLACK).update_user(user_id, &update).await;
            }
        }
        if let Err(e) = sent {
            // Do not leave a member behind where the IdP asked for another role (or an
            // account its next lookup by externalId cannot find): take the account out
            // again; the IdP's retry reactivates it with everything.
            let undone = self.client.deactivate_user(user_id).await.is_ok();
            if undone {
                user = self
                    .record_edit(user, UserEdit { user_id, is_active: Some(false), ..UserEdit::default() })
                    .await;
            } else {
                self.dir.invalidate_users().await;
            }
            let what = update_summary(&update);
            let applied = if undone {
                format!("created Zulip user {user_id} and deactivated it again because setting {what} failed; retrying reactivates it with them")
            } else {
                format!("created Zulip user {user_id} as a member; setting {what} failed")
            };
            self.audit_user(None, &user, Outcome::partial(&e, applied.clone()));
            return Err(with_applied(refusal(e), applied));
        }
        let edit = UserEdit { role: Some(role), ..user_edit(&user, &update) };
        Ok(self.record_edit(user, edit).await)
    }

    /// `create_guests_without_streams`: Zulip's built-in SCIM creates such a guest without
    /// channels, but `POST /users` has just subscribed it to the organization's default
    /// channels — the only channels a new account is in. Zulip has no "get default
    /// channels" endpoint; `GET /streams` narrowed to them names them (on every feature
    /// level, and `DELETE /users/me/subscriptions` wants names, not ids), then one
    /// `DELETE` removes the guest from all of them. Two calls, whatever the realm's size;
    /// no default channels: one.
    async fn unsubscribe_new_guest(&self, user_id: u64) -> Result<(), ZulipError> {
        let channels = self.client.get_channels(&ChannelQuery::default_channels()).await?;
        let names: Vec<String> =
            channels.into_iter().filter(|c| c.is_default == Some(true)).map(|c| c.name).collect();
        let outcome = self.client.unsubscribe_users(&names, &[user_id]).await?;
        tracing::info!(realm = %self.name(), user_id, channels = %outcome.removed.join(", "), "new guest removed from the default channels");
        Ok(())
    }

    /// `POST /Users` with the address of an existing account: 409, or — for a deactivated
    /// account and `reactivate_on_create` — that account brought back with the posted values.
    async fn create_over_existing(&self, existing: User, new: NewUser) -> Result<Value, Error> {
        if existing.is_bot {
            return Err(Error::Conflict {
                detail: format!("userName {} is the address of a Zulip bot", new.email),
            });
        }
        if existing.is_active {
            return Err(Error::Conflict {
                detail: format!("userName {} is already used by user {}", new.email, existing.user_id),
            });
        }
        if !self.config.reactivate_on_create {
            return Err(Error::Conflict {
                detail: format!(
                    "userName {} belongs to deactivated user {}: reactivate it with PATCH active=true",
                    new.email, existing.user_id
                ),
            });
        }
        let mut changes = UserChanges { active: new.active.then_some(true), ..UserChanges::default() };
        if new.full_name != existing.full_name {
            changes.full_name = Some(new.full_name.clone());
        }
        if let Some(role) = new.role.filter(|r| *r != existing.role) {
            changes.role = Some(role);
        }
        if new.external_id.is_some() && new.external_id.as_deref() != self.external_id_of(&existing) {
            changes.external_id = Some(new.external_id.clone());
        }
        let current = self.render_user(&existing);
        changes.profile = new
            .profile
            .iter()
            .filter(|(attr, value)| attr.read(&current).and_then(Value::as_str) != value.as_deref())
            .cloned()
            .collect();
        let user = self.apply_user_changes(existing, changes).await?;
        Ok(self.render_user(&user))
    }

    /// `PUT /Users/{id}`: partial, as Zulip's built-in (attributes left out keep their values).
    pub async fn replace_user(&self, id: &str, body: &Value, if_match: Option<&str>) -> Result<Value, Error> {
        let user = self.find_user(id).await?;
        let before = self.render_user(&user);
        check_if_match(if_match, &before)?;
        let after = self.users.put_target(&before, body)?;
        let mentioned: Vec<&'static str> =
            body.as_object().map(|o| o.keys().map(|k| canonical_attr(k)).collect()).unwrap_or_default();
        let (user, before, after) = match self.refresh_if_asserted(&user, &before, &after, &mentioned).await?
        {
            Some(fresh) => {
                let before = self.render_user(&fresh);
                let after = self.users.put_target(&before, body)?;
                (fresh, before, after)
            }
            None => (user, before, after),
        };
        let changes = self.users.changes(&before, &after)?;
        let user = self.apply_user_changes(user, changes).await?;
        Ok(self.render_user(&user))
    }

    /// A write is diffed against the snapshot, which trails Zulip by the events latency: an
    /// attribute the request sets to the value the snapshot shows (an admin may just have
    /// changed it in Zulip) would be skipped, and the 2xx would claim what Zulip does not
    /// hold. In that case only, the account is read from Zulip first (one `GET`), and the
    /// fresh copy returned to diff against. `None`: nothing asserted unchanged. When that read
    /// fails the write is refused (nothing was sent): diffed against the snapshot, it could
    /// skip the asserted attribute and answer 2xx for a value Zulip does not hold (the soak,
    /// seed 1796230706301358577, sequence 69).
    async fn refresh_if_asserted(
        &self,
        user: &User,
        before: &Value,
        after: &Value,
        mentioned: &[&'static str],
    ) -> Result<Option<User>, Error> {
        let unchanged = |pointer: &str| before.pointer(pointer) == after.pointer(pointer);
        let asserted_unchanged = mentioned.iter().any(|attr| match *attr {
            "userName" => unchanged("/userName"),
            "name" => unchanged("/displayName") && unchanged("/name"),
            "role" => unchanged("/role"),
            "active" => unchanged("/active"),
            "externalId" => unchanged("/externalId"),
            _ => false,
        });
        if !asserted_unchanged {
            return Ok(None);
        }
        match self.client.get_user_with_profile_fields(user.user_id, &self.profile_field_ids()).await {
            Ok(fresh) => {
                self.dir.refresh_user(user, fresh.clone()).await;
                Ok(Some(fresh))
            }
            Err(e) => Err(refusal(e)),
        }
    }

    /// `PATCH /Users/{id}`: applied to the resource in memory, validated as a whole, then
    /// turned into the minimal Zulip calls.
    pub async fn patch_user(&self, id: &str, body: &Value, if_match: Option<&str>) -> Result<Value, Error> {
        let mut patch = PatchRequest::parse(body)?;
        let user = self.find_user(id).await?;
        let before = self.render_user(&user);
        check_if_match(if_match, &before)?;
        if self.config.ignore_unmapped_attributes {
            let dropped = patch.retain_known(self.user_type);
            if !dropped.is_empty() {
                tracing::debug!(realm = %self.name(), ?dropped, "ignored PATCH of unmapped attributes");
            }
        }
        let mut after = before.clone();
        patch.apply(&mut after, self.user_type)?;
        let mentioned = patched_attrs(&patch);
        let (user, before, after) = match self.refresh_if_asserted(&user, &before, &after, &mentioned).await?
        {
            Some(fresh) => {
                let before = self.render_user(&fresh);
                let mut after = before.clone();
                patch.apply(&mut after, self.user_type)?;
                (fresh, before, after)
            }
            None => (user, before, after),
        };
        let changes = self.users.changes(&before, &after)?;
        let user = self.apply_user_changes(user, changes).await?;
        Ok(self.render_user(&user))
    }

    /// `DELETE /Users/{id}`: Zulip cannot delete accounts over REST; the account is
    /// deactivated (its history stays) and remains visible as `active: false`.
    pub async fn delete_user(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        let user = self.find_user(id).await?;
        if self.config.user_delete == UserDelete::Reject {
            return Err(Error::BadRequest { detail: USER_DELETE_REJECTED.to_string() });
        }
        check_if_match(if_match, &self.render_user(&user))?;
        if !user.is_active {
            return Ok(());
        }
        self.apply_user_changes(user, UserChanges { active: Some(false), ..UserChanges::default() }).await?;
        Ok(())
    }

    /// Makes Zulip hold `changes`: one `PATCH /users/{id}` (Zulip applies name, role and
    /// address in one transaction), then the activation change. Reactivation goes last so
    /// that a failure leaves the account deactivated and a retry converges.
    async fn apply_user_changes(&self, mut user: User, changes: UserChanges) -> Result<User, Error> {
        if changes.is_empty() {
            return Ok(user);
        }
        let user_id = user.user_id;
        let was_active = user.is_active;
        let before = user.clone();
        self.check_user_changes(user_id, &changes).await?;
        let mut update = self.user_update(&changes).await?;
        if !update.is_empty() {
            user = self.patch_changes(user, &before, &mut update, changes.active).await?;
        }
        let applied = (!update_was_empty(&changes))
            .then(|| format!("updated Zulip user {user_id}'s name, role, address or profile fields"));
        if let Some(active) = changes.active {
            user = self.change_active(user, &before, active, applied).await?;
        }
        let operation = match changes.active {
            Some(false) => Operation::Deactivate,
            Some(true) if !was_active => Operation::Reactivate,
            _ => Operation::Update,
        };
        ChangeRecord::new(self.name(), operation, "User", user_id)
            .address(user.delivery_email.as_deref().unwrap_or(&user.email))
            .attributes(user_attributes(&changes))
            .log();
        self.audit_user(Some(&before), &user, Outcome::applied());
        Ok(user)
    }

    /// The one `PATCH /users/{id}` of a change, sent and recorded; a lost answer is resolved
    /// by looking (applied, or an error saying what the sidecar saw).
    async fn patch_changes(
        &self,
        user: User,
        before: &User,
        update: &mut UserUpdate,
        active: Option<bool>,
    ) -> Result<User, Error> {
        let user_id = user.user_id;
        if let Err(e) = self.send_user_update(user_id, update).await {
            let looked = self.look_if_unknown(&e, user_id, |u| update_held(u, update)).await;
            if looked != Some(true) {
                if looked.is_none() && !e.outcome_known() {
                    self.audit_user(Some(before), &intended(&user, update, active), Outcome::unknown(&e));
                }
                return Err(unresolved(e, None, looked, user_id));
            }
            tracing::info!(realm = %self.name(), user_id, "update outcome resolved: zulip applied it");
        }
        if let Some(email) = &update.new_email {
            self.dir.learn_email(user_id, email);
        }
        let edit = user_edit(&user, update);
        Ok(self.record_edit(user, edit).await)
    }

    /// Deactivates or reactivates the account (after the change's PATCH, whose summary is
    /// `applied`), resolving a lost answer by looking; a reactivated user's memberships are
    /// brought back into the snapshot.
    async fn change_active(
        &self,
        user: User,
        before: &User,
        active: bool,
        applied: Option<String>,
    ) -> Result<User, Error> {
        let user_id = user.user_id;
        let sent = match active {
            false => self.client.deactivate_user(user_id).await,
            true => self.client.reactivate_user(user_id).await,
        };
        if let Err(e) = sent {
            let looked = self.look_if_unknown(&e, user_id, |u| u.is_active == active).await;
            if looked != Some(true) {
                let (after, outcome) = match &applied {
                    _ if looked.is_none() && !e.outcome_known() => {
                        (User { is_active: active, ..user.clone() }, Outcome::unknown(&e))
                    }
                    Some(applied) => {
                        (user.clone(), Outcome::partial(&e, format!("{applied}; changing active failed")))
                    }
                    None => (user.clone(), Outcome::applied()),
                };
                self.audit_user(Some(before), &after, outcome);
                return Err(unresolved(e, applied, looked, user_id));
            }
            tracing::info!(realm = %self.name(), user_id, active, "activation outcome resolved: zulip applied it");
        }
        if active {
            self.reactivated(user_id).await;
        }
        Ok(self.record_edit(user, UserEdit { user_id, is_active: Some(active), ..UserEdit::default() }).await)
    }

    /// What a change may not do, refused before any call: demote or deactivate the
    /// sidecar's own account, change an address on a Zulip that cannot, or take an address
    /// another account has.
    async fn check_user_changes(&self, user_id: u64, changes: &UserChanges) -> Result<(), Error> {
        if Some(user_id) == self.service_account_id()
            && (changes.active == Some(false) || changes.role.is_some_and(|r| r != Role::Owner))
        {
            return Err(Error::invalid(
                ScimType::Mutability,
                "this account is the sidecar's own Zulip service account: deactivating or demoting it would stop provisioning",
            ));
        }
        if let Some(new_email) = &changes.new_email {
            let level = self.feature_level();
            if level != 0 && level < FL_CHANGE_EMAIL {
                return Err(Error::invalid(
                    ScimType::Mutability,
                    format!("this Zulip server (feature level {level}) cannot change e-mail addresses over its API; Zulip 10.0 (feature level {FL_CHANGE_EMAIL}) or newer is needed"),
                ));
            }
            let taken = self.user_index().await?.read().by_email(new_email).map(|u| u.user_id);
            if let Some(other) = taken.filter(|other| *other != user_id) {
                return Err(Error::Conflict {
                    detail: format!("userName {new_email} is already used by user {other}"),
                });
            }
        }
        Ok(())
    }

    /// The one `PATCH /users/{id}` a change needs: name, role, address, externalId and the
    /// mapped attributes (their fields resolved, their values checked).
    async fn user_update(&self, changes: &UserChanges) -> Result<UserUpdate, Error> {
        let mut update = UserUpdate {
            full_name: changes.full_name.clone(),
            role: changes.role,
            new_email: changes.new_email.clone(),
            ..UserUpdate::default()
        };
        if let Some(external_id) = &changes.external_id {
            if let Some(field) = self.resolve_external_id_field(false).await? {
                update.profile_data.push((field, external_id.clone()));
            }
        }
        self.mapped_update(&changes.profile, &mut update).await?;
        Ok(update)
    }

    /// `PATCH /users/{id}`. The externalId field may have been deleted in Zulip since it was
    /// resolved: Zulip then refuses the whole update with `BAD_REQUEST` (a code it also uses
    /// for other refusals, with a translated message that must not be matched). So after a
    /// `BAD_REQUEST` for an update that writes the field, the field is looked up afresh (found
    /// or created); when its id changed, the update is sent once more — Zulip applies a PATCH
    /// in one transaction, so the refused one changed nothing. `update` then names the field
    /// that was written.
    async fn send_user_update(&self, user_id: u64, update: &mut UserUpdate) -> Result<(), ZulipError> {
        let refused = match self.client.update_user(user_id, update).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Some(sent) =
            self.external_id_field_id().filter(|id| update.profile_data.iter().any(|(f, _)| f == id))
        else {
            return Err(refused);
        };
        if !refused.is_bad_request() {
            return Err(refused);
        }
        let field = match self.resolve_external_id_field(true).await {
            Ok(Some(field)) if field != sent => field,
            _ => return Err(refused),
        };
        for (id, _) in &mut update.profile_data {
            if *id == sent {
                *id = field;
            }
        }
        self.client.update_user(user_id, update).await
    }

    /// Records a write's changes in the snapshot field by field (never over a change an event
    /// brought meanwhile) and returns the account as the snapshot now holds it; without a
    /// snapshot entry, `user` with the changes, inserted.
    async fn record_edit(&self, mut user: User, edit: UserEdit) -> User {
        if let Some(current) = self.dir.edit_user(edit.clone()).await {
            return current;
        }
        edit.apply_to(&mut user);
        self.dir.upsert_user(user.clone()).await;
        user
    }

    /// After a failed write whose outcome is unknown (a timeout, a reset or a 5xx after
    /// sending), reads the account again: `Some(true)` when Zulip holds the change (the write
    /// happened), `Some(false)` when it does not, `None` when it could not be read (or the
    /// outcome was known: nothing to look at).
    async fn look_if_unknown(
        &self,
        e: &ZulipError,
        user_id: u64,
        held: impl Fn(&User) -> bool,
    ) -> Option<bool> {
        if e.outcome_known() {
            return Some(false);
        }
        self.dir.invalidate_users().await;
        let index = self.user_index().await.ok()?;
        let found = index.read().get(user_id).map(held);
        found
    }
}

/// `user` as it would be with `update` and `active` applied (for an audit record of a change
/// whose outcome is unknown).
fn intended(user: &User, update: &UserUpdate, active: Option<bool>) -> User {
    let mut user = user.clone();
    if let Some(name) = &update.full_name {
        user.full_name = name.clone();
    }
    if let Some(role) = update.role {
        user.role = role;
    }
    for (field, value) in &update.profile_data {
        user.profile_data.set(*field, value.clone());
    }
    if let Some(email) = &update.new_email {
        user.delivery_email = Some(email.clone());
    }
    if let Some(active) = active {
        user.is_active = active;
    }
    user
}

/// The error for a write that failed: what was applied before it, and — when its own
/// outcome stayed unknown (`looked` is `None`) — that it may have reached Zulip.
fn unresolved(e: ZulipError, applied: Option<String>, looked: Option<bool>, user_id: u64) -> Error {
    let unknown = match (e.outcome_known(), looked) {
        (true, _) | (false, Some(true)) => None,
        (false, None) => Some(format!("the change of Zulip user {user_id} may have reached Zulip (its answer was lost and the user could not be read again): read the user before retrying")),
        // Not there when looked at; but a request Zulip did not answer may still be applied.
        (false, Some(false)) => Some(format!("none when the sidecar read Zulip user {user_id} again, but Zulip did not answer and may still apply the change: read the user before retrying")),
    };
    let applied = match (applied, unknown) {
        (Some(a), Some(u)) => Some(format!("{a}; {u}")),
        (a, u) => a.or(u),
    };
    match applied {
        Some(applied) => with_applied(refusal(e), applied),
        None => refusal(e),
    }
}

/// The account `POST /users` just created, as the snapshot records it (a member, active).
fn new_account(user_id: u64, new: &NewUser) -> User {
    User {
        user_id,
        email: new.email.clone(),
        delivery_email: Some(new.email.clone()),
        full_name: new.full_name.clone(),
        date_joined: now_date_joined(),
        is_active: true,
        role: Role::Member,
        is_bot: false,
        profile_data: ProfileData::default(),
    }
}

/// What a `PATCH /users/{id}` of `user` changed, field by field, for the snapshot.
fn user_edit(user: &User, update: &UserUpdate) -> UserEdit {
    let mut written = user.clone();
    record_profile_update(&mut written, update);
    let fields =
        update.profile_data.iter().map(|(f, _)| *f).chain(update.profile_users.iter().map(|(f, _)| *f));
    UserEdit {
        user_id: user.user_id,
        full_name: update.full_name.clone(),
        role: update.role,
        delivery_email: update.new_email.clone(),
        is_active: None,
        profile_data: fields.map(|f| (f, written.profile_data.get(f).map(str::to_owned))).collect(),
    }
}

/// Whether `user` holds everything `update` sets.
fn update_held(user: &User, update: &UserUpdate) -> bool {
    update.full_name.as_ref().is_none_or(|n| *n == user.full_name)
        && update.role.is_none_or(|r| r == user.role)
        && update
            .new_email
            .as_ref()
            .is_none_or(|e| user.delivery_email.as_deref().unwrap_or(&user.email).eq_ignore_ascii_case(e))
        && update.profile_data.iter().all(|(field, value)| user.profile_data.get(*field) == value.as_deref())
}

fn update_was_empty(changes: &UserChanges) -> bool {
    changes.full_name.is_none()
        && changes.role.is_none()
        && changes.new_email.is_none()
        && changes.external_id.is_none()
        && changes.profile.is_empty()
}

/// What a create's follow-up `PATCH /users/{id}` sets, for messages.
fn update_summary(update: &UserUpdate) -> String {
    let mut parts = Vec::new();
    if let Some(role) = update.role {
        parts.push(format!("role {}", role.scim_name()));
    }
    if !update.profile_data.is_empty() || !update.profile_users.is_empty() {
        parts.push("profile fields (externalId, mapped attributes)".to_owned());
    }
    parts.join(" and ")
}

/// The attribute a body key or PATCH path names, in the groups a write maps to Zulip
/// (`name.givenName`, `displayName` → `name`); `""` for the others.
fn canonical_attr(key: &str) -> &'static str {
    let key = key.rsplit_once(':').map_or(key, |(_, k)| k);
    let head = key.split(['.', '[']).next().unwrap_or("");
    for (names, attr) in [
        (&["userName"][..], "userName"),
        (&["name", "displayName"][..], "name"),
        (&["role"][..], "role"),
        (&["active"][..], "active"),
        (&["externalId"][..], "externalId"),
    ] {
        if names.iter().any(|n| n.eq_ignore_ascii_case(head)) {
            return attr;
        }
    }
    ""
}

/// The attributes a PATCH's operations set (paths, and the keys of path-less values).
fn patched_attrs(patch: &PatchRequest) -> Vec<&'static str> {
    let mut out = Vec::new();
    for op in &patch.operations {
        match (&op.path, &op.value) {
            (Some(path), _) => out.push(canonical_attr(&path.attr.attr)),
            (None, Some(Value::Object(map))) => out.extend(map.keys().map(|k| canonical_attr(k))),
            (None, _) => {}
        }
    }
    out
}

/// Adds "what was already applied upstream" to an error's detail.
pub(crate) fn with_applied(error: Error, applied: String) -> Error {
    match error {
        Error::Upstream { source, .. } => Error::Upstream { source, applied: Some(applied) },
        Error::Invalid { scim_type, detail } => {
            Error::Invalid { scim_type, detail: format!("{detail} (already applied: {applied})") }
        }
        Error::BadRequest { detail } => {
            Error::BadRequest { detail: format!("{detail} (already applied: {applied})") }
        }
        Error::Forbidden { detail } => {
            Error::Forbidden { detail: format!("{detail} (already applied: {applied})") }
        }
        other => other,
    }
}
