//! SCIM Groups operations on a [`Realm`]: Zulip user groups, with membership changes computed
//! as a diff against current members so that Zulip never sees an add of a member or a remove
//! of a non-member (it answers 400 to those), and one members call per operation.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::audit::{AttributeChange, AuditTarget, Outcome};
use crate::config::GroupDelete;
use crate::directory::{GroupWrite, UserIndex};
use crate::error::{Error, ErrorChain};
use crate::provision::changes::{ChangeRecord, Operation};
use crate::provision::mapping::{str_at, value_at};
use crate::provision::realm::{check_if_match, Realm, FL_CREATE_GROUP_RETURNS_ID, FL_DEACTIVATE_GROUP};
use crate::provision::users::with_applied;
use crate::provision::{parse_id, refusal, ListPage, ListQuery};
use scim::filter::Filter;
use scim::patch::PatchRequest;
use scim::schema::GROUP;
use scim::version::Fingerprint;
use scim::{self, ScimType};
use zulip_client::client::NewUserGroup;
use zulip_client::{UserGroup, ZulipError};

/// Description given to groups created over SCIM (as Zulip's built-in SCIM does).
pub const SCIM_GROUP_DESCRIPTION: &str = "Created from SCIM";
/// Longest group name Zulip accepts.
pub const MAX_GROUP_NAME_CHARS: usize = 100;
const RESERVED_PREFIXES: [&str; 5] = ["@", "role:", "user:", "stream:", "channel:"];

/// The version of a rendered Group: its name and its members (active people), whether or not
/// the response shows them, so that every representation of one state has one tag.
fn group_version(group: &UserGroup, users: &UserIndex) -> String {
    let mut members: Vec<u64> = group
        .members
        .iter()
        .copied()
        .filter(|id| users.get(*id).is_some_and(|u| !u.is_bot && u.is_active))
        .collect();
    members.sort_unstable();
    members.dedup();
    let mut fingerprint = Fingerprint::new();
    fingerprint.part(group.id.to_string().as_str()).part(group.name.as_str());
    for id in members {
        fingerprint.part(id.to_string().as_str());
    }
    fingerprint.tag()
}

/// Checks a group name the way Zulip will.
pub fn check_group_name(name: &str) -> Result<(), Error> {
    let invalid = |d: String| Error::invalid(ScimType::InvalidValue, d);
    if name.trim().is_empty() {
        return Err(invalid("displayName must not be empty".into()));
    }
    if name.chars().count() > MAX_GROUP_NAME_CHARS {
        return Err(invalid(format!("displayName is longer than Zulip's {MAX_GROUP_NAME_CHARS} characters")));
    }
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
        return Err(invalid(format!("displayName cannot start with {p:?} in Zulip")));
    }
    Ok(())
}

/// Member ids named in a SCIM `members` value (objects with `value`, or bare strings).
fn member_ids(members: &Value) -> Result<Vec<String>, Error> {
    let items = match members {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(Error::invalid(ScimType::InvalidValue, "members must be a list")),
    };
    items
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Object(_) => match value_at(m, &["value"]) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(Error::invalid(ScimType::InvalidValue, "every member needs a string value")),
            },
            _ => Err(Error::invalid(ScimType::InvalidValue, "every member must be an object with a value")),
        })
        .collect()
}

/// The `displayName` and member ids of a POST/PUT Group body.
fn read_group_body(body: &Value) -> Result<(String, Vec<String>), Error> {
    if !body.is_object() {
        return Err(Error::invalid(ScimType::InvalidSyntax, "the request body must be a JSON object"));
    }
    let name = match value_at(body, &["displayName"]) {
        Some(Value::String(s)) => s.trim().to_string(),
        None | Some(Value::Null) => {
            return Err(Error::invalid(ScimType::InvalidValue, "displayName is required"))
        }
        Some(_) => return Err(Error::invalid(ScimType::InvalidValue, "displayName must be a string")),
    };
    let ids = member_ids(value_at(body, &["members"]).unwrap_or(&Value::Null))?;
    Ok((name, ids))
}

// === impl Realm (Groups) ===

impl Realm {
    fn render_group(&self, group: &UserGroup, users: &UserIndex, with_members: bool) -> Value {
        let mut out = Map::new();
        out.insert("schemas".into(), json!([scim::GROUP_SCHEMA]));
        out.insert("id".into(), Value::from(group.id.to_string()));
        out.insert("displayName".into(), Value::from(group.name.as_str()));
        if with_members {
            let mut ids: Vec<u64> = group.members.clone();
            ids.sort_unstable();
            ids.dedup();
            let members: Vec<Value> = ids
                .into_iter()
                .filter_map(|id| users.get(id))
                .filter(|u| !u.is_bot && u.is_active)
                .map(|u| {
                    json!({
                        "value": u.user_id.to_string(),
                        "$ref": self.users.location(u.user_id),
                        "display": u.full_name,
                        "type": "User",
                    })
                })
                .collect();
            out.insert("members".into(), Value::Array(members));
        }
        let mut meta = Map::new();
        meta.insert("resourceType".into(), Value::from("Group"));
        // Zulip records when a group was created, not when it last changed.
        if let Some(created) = group.date_created.and_then(rfc3339_from_unix) {
            meta.insert("created".into(), Value::from(created.clone()));
            meta.insert("lastModified".into(), Value::from(created));
        }
        meta.insert("location".into(), Value::from(format!("{}/Groups/{}", self.base_url, group.id)));
        meta.insert("version".into(), Value::from(group_version(group, users)));
        out.insert("meta".into(), Value::Object(meta));
        Value::Object(out)
    }

    /// Adds the read-only `groups` attribute (direct memberships in active groups) to
    /// rendered users; called only when a response asks for it.
    pub async fn attach_groups(&self, users: &mut [Value]) -> Result<(), Error> {
        let groups = self.group_index().await?;
        let groups = groups.read();
        for user in users.iter_mut() {
            let Some(id) = user.get("id").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            // Zulip keeps a deactivated user's memberships but shows none while deactivated.
            let active = user.get("active").and_then(Value::as_bool) != Some(false);
            let refs: Vec<Value> = groups
                .groups
                .values()
                .filter(|g| active && !g.deactivated && g.members.contains(&id))
                .map(|g| {
                    json!({
                        "value": g.id.to_string(),
                        "$ref": format!("{}/Groups/{}", self.base_url, g.id),
                        "display": g.name,
                        "type": "direct",
                    })
                })
                .collect();
            if let Some(o) = user.as_object_mut() {
                o.insert("groups".into(), Value::Array(refs));
            }
        }
        Ok(())
    }

    /// After the sidecar reactivated `user_id`: Zulip shows the user's kept memberships
    /// again. The groups snapshot holds them unless it was loaded while the user was
    /// deactivated (Zulip did not list them then): it is loaded again, so that the next read
    /// shows them without waiting for Zulip's `add_members` events. A failed reload drops the
    /// snapshot, so the next read loads it (the reactivation itself succeeded).
    pub(crate) async fn reactivated(&self, user_id: u64) {
        if self.dir.memberships_known(user_id) {
            return;
        }
        if let Err(e) = self.dir.reload_groups(|| self.client.get_user_groups(true)).await {
            tracing::debug!(realm = %self.name(), user_id, error = %e, "groups not reloaded after a reactivation");
            self.dir.invalidate_groups().await;
        }
    }

    /// Whether a filter needs members to be evaluated.
    fn filter_needs_members(filter: Option<&Filter>) -> bool {
        filter.is_some_and(|f| f.mentions("members"))
    }

    /// `GET /Groups` and `POST /Groups/.search`. Deactivated groups are invisible.
    pub async fn list_groups(&self, query: &ListQuery, with_members: bool) -> Result<ListPage, Error> {
        if let Some(filter) = &query.filter {
            filter.validate(&GROUP)?;
        }
        let needs_members =
            with_members || Self::filter_needs_members(query.filter.as_ref()) || query.sort.is_some();
        let groups = self.group_index().await?;
        let users = self.user_index().await?;
        let (groups, users) = (groups.read(), users.read());
        let active = groups.groups.values().filter(|g| !g.deactivated);
        let candidates: Vec<&UserGroup> = match &query.filter {
            Some(f) => match (f.eq_constraint("id"), f.eq_constraint("displayName")) {
                (Some(id), _) => active.filter(|g| g.id.to_string() == id).collect(),
                // caseExact false: "Sales" finds "sales" (Zulip may hold both).
                (None, Some(name)) => {
                    let name = name.to_lowercase();
                    active.filter(|g| g.name.to_lowercase() == name).collect()
                }
                (None, None) => active.collect(),
            },
            None => active.collect(),
        };
        let mut matched: Vec<Value> = candidates
            .into_iter()
            .map(|g| self.render_group(g, &users, needs_members))
            .filter(|v| query.filter.as_ref().is_none_or(|f| f.matches(v, &GROUP)))
            .collect();
        if let Some(sort) = &query.sort {
            matched.sort_by(|a, b| sort.compare(a, b));
        }
        if needs_members && !with_members {
            for v in &mut matched {
                if let Some(o) = v.as_object_mut() {
                    o.remove("members");
                }
            }
        }
        let total_results = matched.len();
        let resources =
            matched.into_iter().skip(query.start_index.saturating_sub(1)).take(query.count).collect();
        Ok(ListPage { total_results, start_index: query.start_index, resources })
    }

    /// `POST /.search`: users, then groups, filtered by whichever schema the filter fits.
    pub async fn search_all(
        &self,
        filter: Option<Filter>,
        start_index: usize,
        count: usize,
    ) -> Result<ListPage, Error> {
        let fits_users = filter.as_ref().map(|f| f.validate(self.user_type));
        let fits_groups = filter.as_ref().map(|f| f.validate(&GROUP));
        if let (Some(Err(e)), Some(Err(_))) = (&fits_users, &fits_groups) {
            return Err(e.clone().into());
        }
        let all = ListQuery { filter: filter.clone(), start_index: 1, count: usize::MAX, sort: None };
        let mut resources = Vec::new();
        if !matches!(fits_users, Some(Err(_))) {
            resources.extend(self.list_users(&all).await?.resources);
        }
        if !matches!(fits_groups, Some(Err(_))) {
            resources.extend(self.list_groups(&all, true).await?.resources);
        }
        let total_results = resources.len();
        let resources = resources.into_iter().skip(start_index.saturating_sub(1)).take(count).collect();
        Ok(ListPage { total_results, start_index, resources })
    }

    /// The active group behind a SCIM Group id.
    async fn find_group(&self, id: &str) -> Result<UserGroup, Error> {
        let group_id = parse_id("Group", id)?;
        let mut reloaded = false;
        loop {
            let found = self.group_index().await?.read().groups.get(&group_id).cloned();
            match found {
                Some(g) if !g.deactivated => return Ok(g),
                Some(_) => return Err(Error::NotFound { resource: "Group", id: id.to_string() }),
                None if !reloaded => {
                    // Perhaps created in Zulip since the snapshot.
                    self.dir.invalidate_groups().await;
                    reloaded = true;
                }
                None => return Err(Error::NotFound { resource: "Group", id: id.to_string() }),
            }
        }
    }

    /// `GET /Groups/{id}`
    pub async fn get_group(&self, id: &str, with_members: bool) -> Result<Value, Error> {
        let group = self.find_group(id).await?;
        let users = self.user_index().await?;
        let rendered = self.render_group(&group, &users.read(), with_members);
        Ok(rendered)
    }

    fn check_writable(group: &UserGroup) -> Result<(), Error> {
        if group.is_system_group {
            return Err(Error::invalid(
                ScimType::Mutability,
                format!("group {} is a Zulip system group (roles): it is read-only over SCIM", group.name),
            ));
        }
        Ok(())
    }

    /// Resolves SCIM member ids to active human users of the realm; others are rejected
    /// (400 naming them) or, with `unknown_members: ignore`, dropped.
    async fn resolve_members(&self, ids: &[String]) -> Result<BTreeSet<u64>, Error> {
        let users = self.user_index().await?;
        let users = users.read();
        let mut ok = BTreeSet::new();
        let mut bad = Vec::new();
        for id in ids {
            match id.trim().parse::<u64>().ok().and_then(|n| users.get(n)) {
                Some(u) if u.is_active && !u.is_bot => {
                    ok.insert(u.user_id);
                }
                Some(u) if u.is_bot => bad.push(format!("{id} (a bot)")),
                Some(_) => bad.push(format!("{id} (deactivated)")),
                None => bad.push(format!("{id} (no such user)")),
            }
        }
        if !bad.is_empty() && self.rejects_unknown_members() {
            return Err(Error::invalid(
                ScimType::InvalidValue,
                format!("members must be active users of this organization: {}", bad.join(", ")),
            ));
        }
        Ok(ok)
    }

    /// `POST /Groups`
    pub async fn create_group(&self, body: &Value) -> Result<Value, Error> {
        let (name, ids) = read_group_body(body)?;
        check_group_name(&name)?;
        let members = self.resolve_members(&ids).await?;
        let (taken, nobody) = {
            let groups = self.group_index().await?;
            let groups = groups.read();
            (
                groups.by_name(&name).map(|g| (g.id, g.deactivated)),
                groups.by_name("role:nobody").map(|g| g.id),
            )
        };
        if taken.is_some() {
            // The snapshot trails Zulip by the events latency (another replica may just have
            // deleted that group and freed its name): a 409 is only answered after a fresh
            // read agrees.
            self.dir.invalidate_groups().await;
            if let Some(g) = self.group_index().await?.read().by_name(&name) {
                return Err(group_name_taken(&name, g.id, g.deactivated));
            }
        }
        let new = NewUserGroup {
            name: name.clone(),
            description: SCIM_GROUP_DESCRIPTION.to_string(),
            members: members.iter().copied().collect(),
            can_manage_group: nobody.map(Value::from),
            can_add_members_group: nobody.map(Value::from),
        };
        let group_id = self.post_group(&new, &members).await?;
        self.record_created_group(group_id, &name, &members).await
    }

    /// The one create call. `Ok` holds the new group's id when Zulip's answer gives it; a 400
    /// is a 409 when the name is taken meanwhile, and an unknown outcome is looked at before
    /// answering (the group found under its name with exactly `members` was created).
    async fn post_group(&self, new: &NewUserGroup, members: &BTreeSet<u64>) -> Result<Option<u64>, Error> {
        let name = &new.name;
        match self.client.create_user_group(new).await {
            Ok(Some(id)) if self.feature_level() >= FL_CREATE_GROUP_RETURNS_ID || id > 0 => Ok(Some(id)),
            Ok(_) => Ok(None),
            Err(e) => {
                self.dir.invalidate_groups().await;
                if let ZulipError::Api { status: 400, .. } = e {
                    if let Some(g) = self.group_index().await?.read().by_name(name) {
                        return Err(group_name_taken(name, g.id, g.deactivated));
                    }
                    return Err(refusal(e));
                }
                // Unknown outcome: look before answering.
                let found = self.group_index().await?.read().by_name(name).cloned();
                match found {
                    Some(g)
                        if !g.deactivated
                            && g.members.iter().copied().collect::<BTreeSet<_>>() == *members =>
                    {
                        Ok(Some(g.id))
                    }
                    _ => Err(refusal(e)),
                }
            }
        }
    }

    /// After a create: reads the new group (by `group_id`, else by `name`) from a fresh
    /// snapshot, logs and audits its creation with `members`, and renders it.
    async fn record_created_group(
        &self,
        group_id: Option<u64>,
        name: &str,
        members: &BTreeSet<u64>,
    ) -> Result<Value, Error> {
        self.dir.invalidate_groups().await;
        let group = match group_id {
            Some(id) => self.group_index().await?.read().groups.get(&id).cloned(),
            None => self.group_index().await?.read().by_name(name).cloned(),
        };
        let group = group.ok_or_else(|| Error::Internal(format!("group {name} not found after creation")))?;
        ChangeRecord::new(self.name(), Operation::Create, "Group", group.id)
            .address(group.name.as_str())
            .attributes(["displayName"])
            .members(&group.members, &[])
            .log();
        let added: Vec<u64> = members.iter().copied().collect();
        self.audit(
            group_target(group.id, &group.name),
            vec![
                AttributeChange::scalar("displayName", Value::Null, Value::from(group.name.as_str())),
                AttributeChange::members(&added, &[]),
            ],
            Outcome::applied(),
        );
        let users = self.user_index().await?;
        let rendered = self.render_group(&group, &users.read(), true);
        Ok(rendered)
    }

    /// `PUT /Groups/{id}`: replaces `displayName` and `members` (RFC 7644 §3.5.1; an absent
    /// or empty `members` empties the group — unlike Zulip's built-in, which keeps them).
    pub async fn replace_group(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, Error> {
        let group = self.find_group(id).await?;
        Self::check_writable(&group)?;
        let before = self.get_group(id, true).await?;
        check_if_match(if_match, &before)?;
        let (name, ids) = read_group_body(body)?;
        self.apply_group(group, name, ids).await
    }

    /// `PATCH /Groups/{id}`: the patch is applied to the group in memory, then the rename
    /// and the member diff are sent (at most one rename and one members call).
    pub async fn patch_group(&self, id: &str, body: &Value, if_match: Option<&str>) -> Result<Value, Error> {
        let patch = PatchRequest::parse(body)?;
        let group = self.find_group(id).await?;
        Self::check_writable(&group)?;
        let before = self.get_group(id, true).await?;
        check_if_match(if_match, &before)?;
        let mut after = before.clone();
        patch.apply(&mut after, &GROUP)?;
        let name = str_at(&after, &["displayName"]).unwrap_or(&group.name).trim().to_string();
        let ids = member_ids(value_at(&after, &["members"]).unwrap_or(&Value::Null))?;
        self.apply_group(group, name, ids).await
    }

    /// Applies a PUT or PATCH to `group` (the caller holds the group's write order): plans
    /// the change against the snapshot, checks it against Zulip's rules, then sends at most
    /// one rename and one members call, in that order; a failure after the rename says so.
    async fn apply_group(&self, group: UserGroup, name: String, ids: Vec<String>) -> Result<Value, Error> {
        let wanted = self.resolve_members(&ids).await?;
        let current = active_members(&group, &self.user_index().await?.read());
        let change = GroupChange::plan(&group, name, &current, wanted);
        if change.is_empty() {
            if let Some(fresh) = self.confirm_unchanged(&group).await? {
                let name = group.name.clone();
                return Box::pin(self.apply_group(fresh, name, ids)).await;
            }
        }
        self.check_group_rename(&change).await?;
        let target = change.target();
        let mut changes: Vec<AttributeChange> = change.rename_change().into_iter().collect();
        let applied = self.apply_rename(&change, &target, &changes).await?;
        if change.changes_members() {
            self.apply_members(&change, applied, &target, &changes).await?;
            changes.push(change.members_change());
        }
        self.audit(target, changes, Outcome::applied());
        self.record_group_change(change).await
    }

    /// A change with nothing to send is confirmed against Zulip before a 2xx claims the group
    /// as the snapshot shows it: a group that another replica (or an admin) deactivated is a
    /// 404; one that changed meanwhile comes back (`Some`) to be diffed again.
    async fn confirm_unchanged(&self, group: &UserGroup) -> Result<Option<UserGroup>, Error> {
        let not_found = || Error::NotFound { resource: "Group", id: group.id.to_string() };
        match self.reread_group(group.id).await? {
            Some(fresh) if fresh.deactivated => Err(not_found()),
            Some(fresh) if fresh != *group => Ok(Some(fresh)),
            Some(_) => Ok(None),
            None => Err(not_found()),
        }
    }

    /// Checks a planned rename against Zulip's rules: a valid name that no other group
    /// (active or deactivated) holds in the snapshot.
    async fn check_group_rename(&self, change: &GroupChange) -> Result<(), Error> {
        let Some(new_name) = &change.rename else {
            return Ok(());
        };
        check_group_name(new_name)?;
        if let Some(other) = self.group_index().await?.read().by_name(new_name) {
            return Err(group_name_taken(new_name, other.id, other.deactivated));
        }
        Ok(())
    }

    /// Sends the planned rename, if any. `Ok` holds what was applied (for a later failure
    /// to report); a refusal is a 409 when Zulip's 400 was the name being taken meanwhile.
    async fn apply_rename(
        &self,
        change: &GroupChange,
        target: &AuditTarget,
        changes: &[AttributeChange],
    ) -> Result<Option<String>, Error> {
        let Some(new_name) = &change.rename else {
            return Ok(None);
        };
        let group_id = change.group_id;
        if let Err(e) = self.rename_group(group_id, new_name).await {
            if !e.outcome_known() {
                self.audit(target.clone(), changes.to_vec(), Outcome::unknown(&e));
            }
            self.dir.invalidate_groups().await;
            if e.is_bad_request() {
                if let Some(other) = self.group_index().await?.read().by_name(new_name) {
                    return Err(group_name_taken(new_name, other.id, other.deactivated));
                }
            }
            return Err(refusal(e));
        }
        Ok(Some(format!("renamed group {group_id} to {new_name}")))
    }

    /// One rename call; a lost answer (a 5xx after sending) is looked at before answering:
    /// the group read again under the new name means Zulip applied it.
    async fn rename_group(&self, group_id: u64, new_name: &str) -> Result<(), ZulipError> {
        match self.client.update_user_group(group_id, Some(new_name), None).await {
            Ok(()) => Ok(()),
            Err(e) if !e.outcome_known() => {
                self.dir.invalidate_groups().await;
                let now = self
                    .group_index()
                    .await
                    .ok()
                    .and_then(|g| g.read().groups.get(&group_id).map(|g| g.name.clone()));
                if now.as_deref() == Some(new_name) {
                    tracing::info!(realm = %self.name(), group_id, "rename outcome resolved: zulip applied it");
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Sends the planned member diff (after the rename, whose result is `applied`). A failure
    /// is audited (an unknown outcome, or a partial apply after a rename) and answered with
    /// [`members_failure`], unless a re-read shows Zulip holds the wanted members.
    async fn apply_members(
        &self,
        change: &GroupChange,
        applied: Option<String>,
        target: &AuditTarget,
        changes: &[AttributeChange],
    ) -> Result<(), Error> {
        let group_id = change.group_id;
        let Err(e) = self.client.update_user_group_members(group_id, &change.add, &change.delete).await
        else {
            return Ok(());
        };
        match &applied {
            _ if !e.outcome_known() => {
                let tried = changes.iter().cloned().chain([change.members_change()]).collect();
                self.audit(target.clone(), tried, Outcome::unknown(&e));
            }
            Some(a) => self.audit(
                target.clone(),
                changes.to_vec(),
                Outcome::partial(&e, format!("{a}; changing its members failed")),
            ),
            None => {}
        }
        self.dir.invalidate_groups().await;
        // A diff is not idempotent: when its outcome is unknown (a timeout, a reset or a 5xx
        // after sending), look before answering — never "nothing was changed" for a change
        // Zulip made, never an error for one it completed.
        let outcome =
            if e.outcome_known() { Some(false) } else { self.members_are(group_id, &change.wanted).await };
        if outcome != Some(true) {
            return Err(members_failure(e, applied, outcome, group_id));
        }
        tracing::info!(realm = %self.name(), group_id, "member change outcome resolved: zulip applied it");
        Ok(())
    }

    /// Records what Zulip now holds after `change` in the snapshot, logs the change and
    /// renders the group.
    async fn record_group_change(&self, change: GroupChange) -> Result<Value, Error> {
        let GroupChange { group_id, rename, add, delete, .. } = change;
        let renamed = rename.is_some();
        let write = GroupWrite {
            group_id,
            name: rename,
            add: add.clone(),
            delete: delete.clone(),
            deactivated: None,
        };
        self.dir.record_group_write(write);
        let updated = self.group_index().await?.read().groups.get(&group_id).cloned();
        let group =
            updated.ok_or_else(|| Error::Internal(format!("group {group_id} vanished from the snapshot")))?;
        ChangeRecord::new(self.name(), Operation::Update, "Group", group_id)
            .address(group.name.as_str())
            .attributes(renamed.then_some("displayName"))
            .members(&add, &delete)
            .log();
        let users = self.user_index().await?;
        let rendered = self.render_group(&group, &users.read(), true);
        Ok(rendered)
    }

    /// Whether Zulip's group `group_id` now has exactly `wanted` as its active human members
    /// (re-read; `None`: it could not be read).
    async fn members_are(&self, group_id: u64, wanted: &BTreeSet<u64>) -> Option<bool> {
        let groups = self.group_index().await.ok()?;
        let users = self.user_index().await.ok()?;
        let members: Option<BTreeSet<u64>> =
            groups.read().groups.get(&group_id).map(|g| active_members(g, &users.read()));
        members.map(|m| &m == wanted)
    }

    /// `DELETE /Groups/{id}`: deactivates the Zulip group and renames it so that its name is
    /// free again (Zulip reserves deactivated groups' names); afterwards 404 (RFC 7644 §3.6).
    /// If the rename fails the DELETE fails (saying the group is deactivated), and its retry
    /// finishes the rename: a 204 never leaves the name reserved, which would turn the IdP's
    /// re-create of the group into a 409 for good.
    pub async fn delete_group(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        let group_id = parse_id("Group", id)?;
        let unfinished = self
            .group_index()
            .await?
            .read()
            .groups
            .get(&group_id)
            .filter(|g| g.deactivated && !g.name.ends_with(&retired_suffix(group_id)))
            .cloned();
        if let Some(group) = unfinished {
            return self.free_group_name(&group, Vec::new()).await;
        }
        let group = self.find_group(id).await?;
        Self::check_writable(&group)?;
        if self.config.group_delete == GroupDelete::Reject {
            return Err(Error::NotImplemented {
                detail: "deleting groups is disabled for this organization".into(),
            });
        }
        let level = self.feature_level();
        if level != 0 && level < FL_DEACTIVATE_GROUP {
            return Err(Error::NotImplemented {
                detail: format!("this Zulip server (feature level {level}) cannot deactivate groups; Zulip 10.0 or newer is needed"),
            });
        }
        check_if_match(if_match, &self.get_group(id, true).await?)?;
        let target = group_target(group.id, &group.name);
        let deactivated = AttributeChange::scalar("active", Value::Bool(true), Value::Bool(false));
        if let Err(e) = self.client.deactivate_user_group(group.id).await {
            if !e.outcome_known() {
                self.audit(target.clone(), vec![deactivated.clone()], Outcome::unknown(&e));
            }
            self.dir.invalidate_groups().await;
            // Not idempotent: when the outcome is unknown, look before answering.
            let deactivated = !e.outcome_known()
                && self
                    .group_index()
                    .await
                    .ok()
                    .and_then(|g| g.read().groups.get(&group.id).map(|g| g.deactivated))
                    == Some(true);
            if !deactivated {
                return Err(match &e {
                    ZulipError::Api { status: 400, code, msg, .. } if code == "CANNOT_DEACTIVATE_GROUP_IN_USE" => Error::BadRequest {
                        detail: format!("Zulip refused to delete group {}: {msg} (it is used by a permission setting or as a subgroup; change that in Zulip first)", group.name),
                    },
                    _ => refusal(e),
                });
            }
        }
        self.dir.record_group_write(GroupWrite {
            group_id: group.id,
            deactivated: Some(true),
            ..GroupWrite::default()
        });
        self.free_group_name(&group, vec![deactivated]).await
    }

    /// Renames a deactivated group to `<name> (deleted <id>)`, freeing its name; one audit
    /// record holds `applied` (the deactivation, when this DELETE made it) and the rename.
    async fn free_group_name(
        &self,
        group: &UserGroup,
        mut applied: Vec<AttributeChange>,
    ) -> Result<(), Error> {
        let target = group_target(group.id, &group.name);
        let suffix = retired_suffix(group.id);
        let keep = MAX_GROUP_NAME_CHARS.saturating_sub(suffix.chars().count());
        let retired: String = group.name.chars().take(keep).collect::<String>() + &suffix;
        if let Err(e) = self.client.update_user_group(group.id, Some(&retired), None).await {
            self.dir.invalidate_groups().await;
            tracing::warn!(realm = %self.name(), group_id = group.id, error = %ErrorChain(&e), "group deactivated but its name could not be freed");
            let done = format!("deactivated group {}, but its name {} is still reserved in Zulip: retrying the DELETE frees it", group.id, group.name);
            if !applied.is_empty() {
                self.audit(target, applied, Outcome::partial(&e, done.clone()));
            }
            return Err(with_applied(refusal(e), done));
        }
        applied.push(AttributeChange::scalar(
            "displayName",
            Value::from(group.name.as_str()),
            Value::from(retired.as_str()),
        ));
        self.audit(target, applied, Outcome::applied());
        self.dir.record_group_write(GroupWrite {
            group_id: group.id,
            name: Some(retired),
            deactivated: Some(true),
            ..GroupWrite::default()
        });
        ChangeRecord::new(self.name(), Operation::Deactivate, "Group", group.id)
            .address(group.name.as_str())
            .log();
        Ok(())
    }
}

/// One PUT or PATCH of a group, planned by diffing the target state against the snapshot:
/// at most one rename and one diff of its active human members.
struct GroupChange {
    group_id: u64,
    /// The group's name before the change.
    name: String,
    rename: Option<String>,
    wanted: BTreeSet<u64>,
    add: Vec<u64>,
    delete: Vec<u64>,
}

impl GroupChange {
    /// Nothing to send: no rename and no member to add or remove.
    fn is_empty(&self) -> bool {
        self.rename.is_none() && !self.changes_members()
    }

    /// The change that takes `group` (whose active human members are `current`) to `name`
    /// and `wanted`. Zulip never sees an add of a member or a remove of a non-member.
    fn plan(group: &UserGroup, name: String, current: &BTreeSet<u64>, wanted: BTreeSet<u64>) -> Self {
        let add = wanted.difference(current).copied().collect();
        let delete = current.difference(&wanted).copied().collect();
        let rename = (name != group.name).then_some(name);
        GroupChange { group_id: group.id, name: group.name.clone(), rename, wanted, add, delete }
    }

    fn changes_members(&self) -> bool {
        !self.add.is_empty() || !self.delete.is_empty()
    }

    /// The audit target: the group under the name the change gives it.
    fn target(&self) -> AuditTarget {
        group_target(self.group_id, self.rename.as_deref().unwrap_or(&self.name))
    }

    fn rename_change(&self) -> Option<AttributeChange> {
        self.rename.as_ref().map(|new_name| {
            AttributeChange::scalar(
                "displayName",
                Value::from(self.name.as_str()),
                Value::from(new_name.as_str()),
            )
        })
    }

    fn members_change(&self) -> AttributeChange {
        AttributeChange::members(&self.add, &self.delete)
    }
}

/// The error for a failed members call: Zulip's refusal, saying what was `applied` before it
/// (the rename) and, when Zulip's answer was lost, that the member change may still be there
/// (`outcome`: what reading the group again showed; `None`: it could not be read).
fn members_failure(e: ZulipError, applied: Option<String>, outcome: Option<bool>, group_id: u64) -> Error {
    let unknown = match outcome {
        None => Some(format!("the member change of group {group_id} may have reached Zulip (its answer was lost and the group could not be read again): read the group before retrying")),
        // Not there when looked at; a request Zulip did not answer may still be applied.
        Some(false) if !e.outcome_known() => Some(format!("no member change when the sidecar read group {group_id} again, but Zulip did not answer and may still apply it: read the group before retrying")),
        Some(_) => None,
    };
    let applied = match (applied, unknown) {
        (Some(a), Some(unknown)) => Some(format!("{a}; {unknown}")),
        (applied, None) => applied,
        (None, unknown) => unknown,
    };
    let e = refusal(e);
    match applied {
        Some(a) => with_applied(e, a),
        None => e,
    }
}

/// The active human members of `group` (the ones SCIM shows).
fn active_members(group: &UserGroup, users: &UserIndex) -> BTreeSet<u64> {
    group
        .members
        .iter()
        .copied()
        .filter(|id| users.get(*id).is_some_and(|u| u.is_active && !u.is_bot))
        .collect()
}

/// The suffix a deleted group's name gets.
fn retired_suffix(group_id: u64) -> String {
    format!(" (deleted {group_id})")
}

/// UNIX seconds as RFC 3339 (`2026-11-24T01:27:00Z`).
fn rfc3339_from_unix(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

fn group_target(id: u64, name: &str) -> AuditTarget {
    AuditTarget { kind: "Group", id: id.to_string(), address: Some(name.to_owned()) }
}

fn group_name_taken(name: &str, id: u64, deactivated: bool) -> Error {
    Error::Conflict {
        detail: if deactivated {
            format!("displayName {name} is reserved by deactivated Zulip group {id}; rename that group in Zulip to reuse the name")
        } else {
            format!("displayName {name} is already used by group {id}")
        },
    }
}
