//! `Realm`: one Zulip organization as the sidecar serves it — its config, its upstream client,
//! its directory snapshot, and what readiness learned about the server.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{watch, Mutex as AsyncMutex};

use crate::audit::{self, AttributeChange, AuditRecord, AuditSink, AuditTarget, Outcome};
use crate::config::{RealmConfig, UnknownMembers};
use crate::directory::{Directory, GroupIndex, Shared, UserIndex};
use crate::error::{upstream_cause, Error};
use crate::provision::health::{Health, HealthReport};
use crate::provision::live::LiveProgress;
use crate::provision::mapping::UserMapping;
use crate::provision::ordering::EntityLocks;
use crate::provision::profile_fields::MappedFields;
use crate::provision::query::Resource;
use crate::provision::refusal;
use scim;
use scim::schema::{ResourceTypeDef, GROUP};
use zulip_client::{ProfileField, UserGroup, ZulipClient, ZulipError};

/// Zulip feature level that added `new_email` to `PATCH /users/{id}` (Zulip 10.0).
pub const FL_CHANGE_EMAIL: u32 = 313;
/// Feature level that added `POST /user_groups/{id}/deactivate`.
pub const FL_DEACTIVATE_GROUP: u32 = 290;
/// Feature level from which `POST /user_groups/create` returns `group_id`.
pub const FL_CREATE_GROUP_RETURNS_ID: u32 = 317;

/// The hint Zulip shows under the custom profile field the sidecar creates for `externalId`.
pub const EXTERNAL_ID_FIELD_HINT: &str =
    "Set by SCIM provisioning: the identity provider's id for this account";

/// One realm served by the sidecar.
#[derive(Debug)]
pub struct Realm {
    pub config: RealmConfig,
    pub(crate) client: ZulipClient,
    pub(crate) dir: Directory,
    pub(crate) users: UserMapping,
    /// `<realm url>/scim/v2`
    pub base_url: String,
    /// Learned by the readiness check (`GET /server_settings`); 0 until then.
    feature_level: AtomicU32,
    /// The service account's own user id (`GET /users/me`); 0 until known.
    service_account_id: AtomicU64,
    ready: AtomicBool,
    /// Set once a live task follows this realm's events: from then on, readiness also needs
    /// the snapshots.
    live_task: AtomicBool,
    /// What the live task has applied; a `watch` so that tests and logs can wait for it.
    live: watch::Sender<LiveProgress>,
    /// Where `externalId` is stored, when the realm stores it (`external_id_field`).
    external_id: Option<ExternalIdField>,
    /// Since when the realm is (not) ready, and the last upstream failure (`/readyz`).
    pub(crate) health: Health,
    /// Where each change applied to Zulip is recorded ([`crate::audit`]).
    audit: Arc<AuditSink>,
    /// The attributes kept in custom profile fields (`custom_profile_field_map`).
    pub(crate) mapped: MappedFields,
    /// The User resource type as this realm publishes it (with its mapped attributes).
    pub(crate) user_type: &'static ResourceTypeDef,
    /// Per-entity write order ([`crate::provision::ordering`]).
    pub(crate) order: EntityLocks,
}

/// The custom profile field that stores `externalId`: configured by label, resolved to an id
/// (found, or created as an admin-only short text field) at readiness, on each full reload,
/// and again after Zulip loses it.
#[derive(Debug)]
struct ExternalIdField {
    label: String,
    /// The field's id; 0 until resolved, and after it was deleted or renamed in Zulip.
    id: AtomicU64,
    /// One resolution at a time, so concurrent first requests create the field once. tokio's
    /// `Mutex`, because it is held across the calls to Zulip.
    resolving: AsyncMutex<()>,
}

/// Why a realm cannot serve (yet).
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error(transparent)]
    Zulip(#[from] ZulipError),
    /// The realm's configuration does not fit its Zulip organization.
    #[error("{0}")]
    Config(String),
}

impl NotReady {
    /// The cause in words that name no URL (for `/readyz`).
    pub fn cause(&self) -> String {
        match self {
            NotReady::Zulip(e) => upstream_cause(e),
            NotReady::Config(detail) => detail.clone(),
        }
    }
}

impl From<NotReady> for Error {
    fn from(e: NotReady) -> Error {
        match e {
            NotReady::Zulip(e) => refusal(e),
            NotReady::Config(detail) => Error::Unavailable { detail },
        }
    }
}

/// What the readiness check learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub zulip_version: String,
    pub feature_level: u32,
    pub service_account_id: u64,
    pub service_account_role: zulip_client::Role,
    /// The id of the custom profile field that stores `externalId`, when configured.
    pub external_id_field: Option<u64>,
}

// === impl Realm ===

impl Realm {
    pub fn new(config: RealmConfig, client: ZulipClient, snapshot_ttl: std::time::Duration) -> Self {
        let base_url = format!("{}/scim/v2", config.url.as_str().trim_end_matches('/'));
        let mapped = MappedFields::new(&config);
        let user_type = scim::catalog::user_type(&mapped.attrs());
        let users = UserMapping {
            base_url: base_url.clone(),
            name_formatted_included: config.name_formatted_included,
            stores_external_id: config.external_id_field.is_some(),
            ignore_unmapped: config.ignore_unmapped_attributes,
            mapped: mapped.attrs(),
        };
        let external_id = config.external_id_field.clone().map(|label| ExternalIdField {
            label,
            id: AtomicU64::new(0),
            resolving: AsyncMutex::new(()),
        });
        Realm {
            config,
            client,
            dir: Directory::new(snapshot_ttl),
            users,
            base_url,
            feature_level: AtomicU32::new(0),
            service_account_id: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            live_task: AtomicBool::new(false),
            live: watch::channel(LiveProgress { queue_id: None, last_event_id: -1, live: false }).0,
            external_id,
            health: Health::default(),
            audit: Arc::new(AuditSink::LOG),
            mapped,
            user_type,
            order: EntityLocks::default(),
        }
    }

    /// The realm with its changes recorded to `sink` (shared by every realm of the app).
    pub fn with_audit(mut self, sink: Arc<AuditSink>) -> Self {
        self.audit = sink;
        self
    }

    /// Records one change applied to Zulip (nothing when an applied change changed nothing).
    pub(crate) fn audit(&self, target: AuditTarget, changes: Vec<AttributeChange>, outcome: Outcome) {
        if changes.is_empty() && outcome == Outcome::applied() {
            return;
        }
        let context = audit::current();
        let record = AuditRecord {
            time: audit::now(),
            realm: self.name().to_owned(),
            scim_client: self.config.scim_client_name.clone(),
            request_id: context.as_ref().map(|c| c.request_id.clone()),
            operation: context.map_or("-", |c| c.operation).to_owned(),
            target,
            changes,
            result: outcome.result,
            upstream_status: outcome.upstream_status,
            detail: outcome.detail,
        };
        self.audit.emit(&record);
    }

    /// The definition of `resource` as this realm serves it.
    pub fn definition(&self, resource: Resource) -> &'static ResourceTypeDef {
        match resource {
            Resource::User => self.user_type,
            Resource::Group => &GROUP,
        }
    }

    /// The resource types this realm publishes (`/ResourceTypes`, `/Schemas`).
    pub fn resource_types(&self) -> [&'static ResourceTypeDef; 2] {
        [self.user_type, &GROUP]
    }

    /// Whether the realm keeps attributes in custom profile fields (and so follows their
    /// changes).
    pub fn uses_profile_fields(&self) -> bool {
        self.external_id.is_some() || !self.mapped.is_empty()
    }

    /// The custom profile fields whose values the snapshot keeps.
    pub(crate) fn profile_field_ids(&self) -> Vec<u64> {
        self.external_id_field_id().into_iter().chain(self.mapped.ids()).collect()
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Asks Zulip for its version, checks the service account authenticates and, when the
    /// realm stores `externalId`, finds or creates its custom profile field. Marks the realm
    /// ready on success; either way the realm's health records it.
    pub async fn check_ready(&self) -> Result<Readiness, NotReady> {
        let outcome = self.check_upstream().await;
        match &outcome {
            Ok(_) => self.health.checked(),
            Err(e) => self.health.check_failed(e.cause()),
        }
        outcome
    }

    /// Whether the realm is ready, since when, and its last upstream failure.
    pub fn health(&self) -> HealthReport {
        self.health.report(self.is_ready())
    }

    async fn check_upstream(&self) -> Result<Readiness, NotReady> {
        let settings = self.client.server_settings().await?;
        let me = self.client.get_own_user().await?;
        self.feature_level.store(settings.zulip_feature_level, Ordering::Relaxed);
        self.service_account_id.store(me.user_id, Ordering::Relaxed);
        let external_id_field = self.resolve_external_id_field(true).await?;
        self.resolve_mapped_fields(true).await?;
        self.ready.store(true, Ordering::Release);
        Ok(Readiness {
            zulip_version: settings.zulip_version,
            feature_level: settings.zulip_feature_level,
            service_account_id: me.user_id,
            service_account_role: me.role,
            external_id_field,
        })
    }

    /// The id of the field that stores `externalId`, if it is known now (no I/O).
    pub(crate) fn external_id_field_id(&self) -> Option<u64> {
        match self.external_id.as_ref()?.id.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// The id of the field that stores `externalId` (`None`: the realm does not store it).
    /// `fresh`: ask Zulip even if an id is known (full reloads, readiness).
    pub(crate) async fn resolve_external_id_field(&self, fresh: bool) -> Result<Option<u64>, NotReady> {
        let Some(field) = &self.external_id else {
            return Ok(None);
        };
        if !fresh {
            if let Some(id) = self.external_id_field_id() {
                return Ok(Some(id));
            }
        }
        let _one_at_a_time = field.resolving.lock().await;
        if !fresh {
            if let Some(id) = self.external_id_field_id() {
                return Ok(Some(id));
            }
        }
        let label = field.label.as_str();
        let id = match find_short_text(&self.client.get_custom_profile_fields().await?, label)? {
            Some(id) => id,
            None => match self
                .client
                .create_custom_profile_field(label, EXTERNAL_ID_FIELD_HINT, ProfileField::SHORT_TEXT)
                .await
            {
                Ok(id) => {
                    tracing::info!(realm = %self.name(), field_id = id, label, "created the custom profile field that stores externalId");
                    id
                }
                // Created by another replica meanwhile, or by this very call before its
                // answer was lost: look again.
                Err(e) if e.is_bad_request() || !e.outcome_known() => {
                    match find_short_text(&self.client.get_custom_profile_fields().await?, label)? {
                        Some(id) => id,
                        None => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            },
        };
        let previous = field.id.swap(id, Ordering::AcqRel);
        if previous != 0 && previous != id {
            tracing::warn!(realm = %self.name(), label, field_id = id, previous_field_id = previous,
                "the externalId field changed in Zulip: values stored in the previous field are no longer read");
        }
        Ok(Some(id))
    }

    /// Zulip's custom profile fields changed (`custom_profile_fields` event): `Some(reason)`
    /// when the field that stores `externalId` is gone or renamed, which calls for a full
    /// reload (that resolves the field again).
    pub(crate) fn profile_fields_changed(&self, fields: &[ProfileField]) -> Option<String> {
        self.external_id_field_changed(fields).or_else(|| self.mapped_fields_changed(fields))
    }

    fn external_id_field_changed(&self, fields: &[ProfileField]) -> Option<String> {
        let field = self.external_id.as_ref()?;
        let id = self.external_id_field_id()?;
        match fields.iter().find(|f| f.id == id) {
            Some(f) if f.name == field.label && f.field_type == ProfileField::SHORT_TEXT => None,
            _ => {
                field.id.store(0, Ordering::Release);
                Some(format!("custom profile field {id} ({:?}), which stores externalId, was deleted or changed in Zulip", field.label))
            }
        }
    }

    /// Zulip answered the readiness check and, once a live task follows the realm, both
    /// snapshots are loaded (a realm without its snapshot would answer its first reads slowly
    /// or, with Zulip down, not at all).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && (!self.live_task.load(Ordering::Acquire) || self.dir.is_loaded())
    }

    /// What the realm's Zulip client is doing (writes queued and done, the rate-limit wait).
    pub fn upstream_stats(&self) -> zulip_client::ClientStats {
        self.client.stats()
    }

    /// SCIM Users (human accounts, deactivated ones included) in the last loaded snapshot.
    pub fn snapshot_user_count(&self) -> Option<usize> {
        self.dir.human_count()
    }

    /// Whether Zulip's events keep the snapshots current (else they expire by TTL).
    pub fn is_live(&self) -> bool {
        self.dir.is_live()
    }

    /// The id of the newest event applied from the current queue (`-1` when none).
    pub fn last_event_id(&self) -> i64 {
        self.live.borrow().last_event_id
    }

    /// Fields written by the sidecar whose confirming event has not arrived yet.
    pub fn pending_expectations(&self) -> usize {
        self.dir.pending_expectations()
    }

    /// The live task's progress, to wait on (e.g. until an event id has been applied).
    pub fn live_progress(&self) -> watch::Receiver<LiveProgress> {
        self.live.subscribe()
    }

    pub(crate) fn mark_live_task_started(&self) {
        self.live_task.store(true, Ordering::Release);
    }

    /// Records the live task's state: the queue and last applied event (`None`: no queue),
    /// and whether events flow (which suspends the snapshots' TTL).
    pub(crate) fn set_live(&self, queue: Option<(&str, i64)>, live: bool) {
        self.dir.set_live(live);
        let (queue_id, last_event_id) = match queue {
            Some((id, last)) => (Some(id.to_string()), last),
            None => (None, -1),
        };
        if queue_id.is_some() && queue_id != self.live.borrow().queue_id {
            self.dir.new_event_queue();
        }
        self.live.send_if_modified(|progress| {
            let next = LiveProgress { queue_id, last_event_id, live };
            let changed = *progress != next;
            *progress = next;
            changed
        });
    }

    /// Group `group_id` as Zulip holds it now (a groups snapshot loaded anew): for a write that
    /// has nothing to send, whose 2xx would otherwise rest on the snapshot alone — which
    /// trails Zulip by the events latency (another replica may just have deleted the group).
    pub(crate) async fn reread_group(&self, group_id: u64) -> Result<Option<UserGroup>, Error> {
        let groups =
            self.dir.reload_groups(|| self.client.get_user_groups(true)).await.map_err(shared_refusal)?;
        let group = groups.read().groups.get(&group_id).cloned();
        Ok(group)
    }

    /// Loads both snapshots anew, whatever is cached (right after registering a queue).
    pub(crate) async fn reload_snapshots(&self) -> Result<(), Error> {
        self.resolve_external_id_field(true).await?;
        self.resolve_mapped_fields(true).await?;
        let fields = self.profile_field_ids();
        self.dir
            .reload_users(|| self.client.get_users_with_profile_fields(&fields))
            .await
            .map_err(shared_refusal)?;
        self.dir.reload_groups(|| self.client.get_user_groups(true)).await.map_err(shared_refusal)?;
        Ok(())
    }

    pub fn feature_level(&self) -> u32 {
        self.feature_level.load(Ordering::Relaxed)
    }

    pub(crate) fn service_account_id(&self) -> Option<u64> {
        match self.service_account_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    pub(crate) fn rejects_unknown_members(&self) -> bool {
        self.config.unknown_members == UnknownMembers::Reject
    }

    /// The users snapshot (one `GET /users` on a miss, shared by concurrent callers).
    pub(crate) async fn user_index(&self) -> Result<Arc<Shared<UserIndex>>, Error> {
        // A known field id is one atomic load; only the first use (or one after Zulip lost the
        // field) asks Zulip.
        self.resolve_external_id_field(false).await?;
        self.resolve_mapped_fields(false).await?;
        let fields = self.profile_field_ids();
        self.dir.users(|| self.client.get_users_with_profile_fields(&fields)).await.map_err(shared_refusal)
    }

    /// The groups snapshot (one `GET /user_groups` with deactivated groups on a miss).
    pub(crate) async fn group_index(&self) -> Result<Arc<Shared<GroupIndex>>, Error> {
        self.dir.groups(|| self.client.get_user_groups(true)).await.map_err(shared_refusal)
    }
}

/// The id of the short text field labelled `label`; a field of another type is a
/// configuration error (externalId values must round-trip exactly).
fn find_short_text(fields: &[ProfileField], label: &str) -> Result<Option<u64>, NotReady> {
    match fields.iter().find(|f| f.name == label) {
        None => Ok(None),
        Some(f) if f.field_type == ProfileField::SHORT_TEXT => Ok(Some(f.id)),
        Some(f) => Err(NotReady::Config(format!(
            "external_id_field: Zulip's custom profile field {label:?} (id {}) is a {} field; externalId needs a short text field: choose another label, and the sidecar creates one",
            f.id,
            ProfileField::type_name(f.field_type)
        ))),
    }
}

/// A failed snapshot load (shared by every caller that waited for it) as a SCIM outcome.
fn shared_refusal(e: Arc<ZulipError>) -> Error {
    match e.rate_limited() {
        Some(retry_after) => Error::RateLimited { retry_after },
        None => Error::upstream(e),
    }
}

/// Checks an `If-Match` precondition against the current resource's `meta.version`.
pub(crate) fn check_if_match(if_match: Option<&str>, current: &Value) -> Result<(), Error> {
    let Some(if_match) = if_match else {
        return Ok(());
    };
    let version = current.pointer("/meta/version").and_then(Value::as_str).unwrap_or("");
    if scim::version::if_match_satisfied(if_match, version) {
        Ok(())
    } else {
        Err(Error::PreconditionFailed {
            detail: format!("If-Match {if_match} does not match the current version {version}"),
        })
    }
}
