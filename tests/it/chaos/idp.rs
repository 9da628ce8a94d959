//! The IdP: interprets [`Step`]s against the [`Model`] as Okta or Entra would send them,
//! retries as they do (429 after `Retry-After`, 5xx and timeouts with backoff, bounded),
//! injects each step's fault upstream, and checks every answer against Zulip at that moment.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use fake_zulip::{Failure, RateLimitRules};

use super::check::{self, Expect, Snapshot};
use super::cluster::{Cluster, DEADLINE};
use super::model::{Dialect, Fault, FaultKind, Model, Op, Step, FAMILY, GIVEN, GROUP_NAMES, ROLES};
use crate::support::{Reply, TOKEN};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Attempts of one request before the IdP gives up until its next pass.
const ATTEMPTS: u32 = 6;

/// What one case did, for the report and the soak's totals.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: u64,
    pub faults: u64,
    pub retries: u64,
    pub gave_up: u64,
    /// Cross-replica stale reads: another replica still served something else
    /// [`super::EVENTS_BOUND`] after a write's 2xx (a divergence unless the rate limit was on).
    pub stale_reads: u64,
    /// Their descriptions.
    pub stale_read_texts: Vec<String>,
    /// Longest time a replica took to show another replica's write (multi-replica runs).
    pub max_cross_replica: Duration,
    /// Every such time (per write: until all other replicas showed it).
    pub cross_replica: Vec<Duration>,
    /// Longest time the sidecar's reads took to agree with Zulip after the run settled.
    pub max_settle: Duration,
}

pub struct Idp<'c> {
    pub cluster: &'c mut Cluster,
    pub model: Model,
    http: reqwest::Client,
    pub divergences: Vec<String>,
    /// Cross-replica stale reads: a replica that disagreed with Zulip for longer than
    /// [`super::EVENTS_BOUND`] after a write; each is also a divergence unless Zulip's rate
    /// limit was tightened at the time.
    pub stale_reads: Vec<String>,
    pub stats: Stats,
    /// Zulip's rate limit is tightened (a storm is on).
    rate_limited: bool,
    /// The replica the current step starts on.
    replica: usize,
    /// Index of the step being run (for messages).
    pub step_no: usize,
    /// Measure read-your-writes across replicas after every successful write.
    pub measure_replicas: bool,
}

/// An answer, or the IdP's HTTP client giving up.
pub enum Answer {
    Reply(Reply),
    GaveUp,
}

impl Answer {
    fn status(&self) -> u16 {
        match self {
            Answer::Reply(r) => r.status.as_u16(),
            Answer::GaveUp => 0,
        }
    }
    fn ok(&self) -> Option<&Value> {
        match self {
            Answer::Reply(r) if r.status.is_success() => Some(&r.body),
            _ => None,
        }
    }
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn quoted(v: &str) -> String {
    let filter = format!("\"{v}\"");
    form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

impl<'c> Idp<'c> {
    pub fn new(cluster: &'c mut Cluster) -> Idp<'c> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        Idp {
            cluster,
            model: Model::new(),
            http,
            divergences: Vec::new(),
            stale_reads: Vec::new(),
            stats: Stats::default(),
            replica: 0,
            rate_limited: false,
            step_no: 0,
            measure_replicas: false,
        }
    }

    fn dialect(&self) -> Dialect {
        self.cluster.dialect
    }

    fn diverged(&mut self, what: String) {
        self.divergences.push(format!("step {}: {what}", self.step_no));
    }

    // === requests ===

    async fn send_once(&self, replica: usize, method: &Method, path: &str, body: Option<&Value>) -> Answer {
        let url = format!("{}{path}", self.cluster.base(replica));
        let mut req = self.http.request(method.clone(), url).bearer_auth(TOKEN);
        if let Some(body) = body {
            req = req.header("content-type", "application/scim+json").body(body.to_string());
        }
        match req.send().await {
            Ok(response) => Answer::Reply(Reply::from(response).await),
            Err(_) => Answer::GaveUp,
        }
    }

    /// One IdP request with its retries; every answer is checked against Zulip.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Value>, expect: Expect) -> Answer {
        let mut attempt = 0;
        loop {
            let replica = self.replica + attempt as usize;
            let before = Snapshot::read(&self.cluster.fake);
            self.stats.requests += 1;
            let answer = self.send_once(replica, &method, path, body.as_ref()).await;
            if let Answer::Reply(reply) = &answer {
                let found = check::answer(&self.cluster.fake, self.cluster.field_id, &before, reply, &expect);
                for problem in found {
                    self.diverged(format!(
                        "{method} {path} -> {}: {problem}; body {}",
                        reply.status, reply.raw
                    ));
                }
                if reply.status.is_success() && method != Method::GET && self.measure_replicas {
                    self.measure_cross_replica(replica, reply, &expect).await;
                }
            }
            let status = answer.status();
            let retryable = status == 0 || status == 429 || status >= 500;
            attempt += 1;
            if !retryable || attempt >= ATTEMPTS {
                if retryable {
                    self.stats.gave_up += 1;
                }
                return answer;
            }
            self.stats.retries += 1;
            let wait = match &answer {
                Answer::Reply(r) if status == 429 => r
                    .header("retry-after")
                    .and_then(|v| v.parse::<f64>().ok())
                    .map_or(Duration::from_millis(200), |s| Duration::from_secs_f64(s.clamp(0.05, 1.5))),
                _ => Duration::from_millis(25 << attempt),
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// After a write on `replica`, how long until every replica's read of the resource agrees
    /// with Zulip (the write, and anything Zulip did meanwhile, such as an admin's edit the
    /// writer had not yet heard of when it answered); longer than [`super::EVENTS_BOUND`] is a
    /// divergence.
    async fn measure_cross_replica(&mut self, replica: usize, reply: &Reply, expect: &Expect) {
        let Some(path) = check::resource_path(reply, expect) else {
            return;
        };
        let started = Instant::now();
        let field = self.cluster.field_id;
        for other in 0..self.cluster.len() {
            loop {
                let Answer::Reply(read) = self.send_once(other, &Method::GET, &path, None).await else {
                    break;
                };
                if check::read_agrees(&self.cluster.fake, field, &path, read.status.as_u16(), &read.body) {
                    break;
                }
                if started.elapsed() > super::EVENTS_BOUND {
                    let limited = if self.rate_limited { " (rate limit on)" } else { "" };
                    let stale = format!(
                        "cross-replica stale read{limited}: replica {other} still serves {} {:?} after replica {replica}'s write {}; Zulip: {}",
                        read.raw,
                        super::EVENTS_BOUND,
                        reply.raw,
                        check::zulip_state(&self.cluster.fake, &path)
                    );
                    self.stale_reads.push(stale.clone());
                    // Under the tightened limit (8 calls/s for all replicas and the IdP's own
                    // writes) event polls wait for the budget like everything else: no events
                    // bound holds, so such a read is recorded, not a divergence.
                    if !self.rate_limited {
                        self.diverged(stale);
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.stats.max_cross_replica = self.stats.max_cross_replica.max(started.elapsed());
        self.stats.cross_replica.push(started.elapsed());
    }

    // === faults ===

    /// The Zulip calls `op` may make (a fault is injected on one of them).
    fn candidates(&self, op: &Op) -> Vec<(&'static str, String)> {
        let next_user = self.cluster.fake.users().iter().map(|u| u.user_id).max().unwrap_or(0) + 1;
        let user = |p: usize| self.model.people[p].id.or(self.model.people[p].account);
        let group = |g: usize| self.model.groups[g].id;
        let mut calls = Vec::new();
        let user_calls = |id: Option<u64>| {
            let mut v =
                vec![("POST", "/api/v1/users".to_string()), ("PATCH", format!("/api/v1/users/{next_user}"))];
            if let Some(id) = id {
                v = vec![
                    ("PATCH", format!("/api/v1/users/{id}")),
                    ("POST", format!("/api/v1/users/{id}/reactivate")),
                    ("DELETE", format!("/api/v1/users/{id}")),
                    ("GET", "/api/v1/users".to_string()),
                ];
            }
            v
        };
        match op {
            Op::Assign { p, .. }
            | Op::Rename { p, .. }
            | Op::ChangeAddress { p }
            | Op::ChangeRole { p, .. }
            | Op::ChangeExternalId { p }
            | Op::Deactivate { p }
            | Op::Reactivate { p }
            | Op::Delete { p }
            | Op::Read { p } => calls.extend(user_calls(user(*p))),
            Op::GroupCreate { .. } => calls.push(("POST", "/api/v1/user_groups/create".to_string())),
            Op::GroupRename { g, .. }
            | Op::GroupAdd { g, .. }
            | Op::GroupRemove { g, .. }
            | Op::GroupReplace { g, .. }
            | Op::GroupDelete { g } => {
                if let Some(id) = group(*g) {
                    calls.push(("POST", format!("/api/v1/user_groups/{id}/members")));
                    calls.push(("PATCH", format!("/api/v1/user_groups/{id}")));
                    calls.push(("POST", format!("/api/v1/user_groups/{id}/deactivate")));
                }
            }
            Op::Import { .. } => {
                calls.push(("GET", "/api/v1/users".to_string()));
                calls.push(("GET", "/api/v1/user_groups".to_string()));
            }
            _ => {}
        }
        calls
    }

    fn inject(&mut self, fault: &Fault, call: &(&'static str, String)) {
        let (method, path) = (call.0, call.1.as_str());
        let fake = &self.cluster.fake;
        let html = |status| Failure::NonJson { status, body: format!("<html><h1>{status}</h1></html>") };
        match fault.kind {
            FaultKind::ResetBefore => fake.fail_next(method, path, Failure::Reset),
            FaultKind::ResetAfter => {
                fake.fail_next(method, path, Failure::AfterApply(Box::new(Failure::Reset)))
            }
            FaultKind::TimeoutBefore => fake.fail_next(method, path, Failure::Hang),
            FaultKind::TimeoutAfter => {
                fake.fail_next(method, path, Failure::AfterApply(Box::new(Failure::Hang)))
            }
            FaultKind::Http500 => fake.fail_next(method, path, html(500)),
            FaultKind::Html502 => fake.fail_next(method, path, html(502)),
            FaultKind::Http500AfterApply => {
                fake.fail_next(method, path, Failure::AfterApply(Box::new(html(500))))
            }
            FaultKind::Storm429 { n, tenths } => {
                for _ in 0..n {
                    fake.fail_next(
                        method,
                        path,
                        Failure::RateLimited { retry_after_secs: f64::from(tenths) / 10.0 },
                    );
                }
            }
            FaultKind::SlowPastDeadline => {
                fake.delay_next(method, path, DEADLINE + Duration::from_millis(200))
            }
        }
        self.stats.faults += 1;
    }

    // === steps ===

    pub async fn run(&mut self, step: &Step) {
        self.replica = step.replica;
        let injected = match &step.fault {
            Some(fault) => {
                let calls = self.candidates(&step.op);
                match calls.get(fault.call % calls.len().max(1)) {
                    Some(call) => {
                        self.inject(fault, call);
                        Some(call.clone())
                    }
                    None => None,
                }
            }
            None => None,
        };
        self.op(&step.op).await;
        if let Some((method, path)) = injected {
            self.cluster.fake.clear_failures(method, &path);
        }
    }

    async fn op(&mut self, op: &Op) {
        match op.clone() {
            Op::Assign { p, lookup } => self.assign(p, lookup).await,
            Op::Rename { p, given, family } => {
                self.update(p, |m| {
                    m.given = GIVEN[given].to_string();
                    m.family = FAMILY[family].to_string();
                })
                .await
            }
            Op::ChangeAddress { p } => {
                let n = self.model.next_serial();
                self.update(p, |m| m.address = format!("p{p}.{n}@zulip.example.com")).await
            }
            Op::ChangeRole { p, role } => self.update(p, |m| m.role = ROLES[role]).await,
            Op::ChangeExternalId { p } => {
                let n = self.model.next_serial();
                self.update(p, |m| m.external_id = format!("ext-{p}-{n}")).await
            }
            Op::Deactivate { p } => self.set_active(p, false).await,
            Op::Reactivate { p } => {
                let m = &self.model.people[p];
                if m.id.is_none() && m.assigned {
                    self.assign(p, true).await;
                } else {
                    self.set_active(p, true).await;
                }
            }
            Op::Delete { p } => self.delete_user(p).await,
            Op::GroupCreate { g, name } => self.create_group(g, name).await,
            Op::GroupRename { g, name } => self.rename_group(g, name).await,
            Op::GroupAdd { g, people } => self.add_members(g, &people).await,
            Op::GroupRemove { g, p } => self.remove_member(g, p).await,
            Op::GroupReplace { g, people } => self.replace_members(g, &people).await,
            Op::GroupDelete { g } => self.delete_group(g).await,
            Op::Import { page } => self.import(page).await,
            Op::Read { p } => {
                if let Some(id) = self.model.people[p].id.or(self.model.people[p].account) {
                    self.send(Method::GET, &format!("/Users/{id}"), None, Expect::Read).await;
                }
            }
            Op::AdminEdit { p } => {
                if let Some(id) = self.model.people[p].account {
                    self.cluster.fake.modify_user(id, |u| {
                        u.full_name = "Edited In Zulip".into();
                        u.role = if u.role == 300 { 400 } else { 300 };
                    });
                    self.model.people[p].edited = true;
                }
            }
            Op::ExpireQueues => self.cluster.fake.expire_event_queues(),
            Op::SilenceEvents => self.cluster.fake.fail_next("GET", "/api/v1/events", Failure::Hang),
            Op::RateLimit { on } => {
                self.rate_limited = on;
                let rules = on.then(|| RateLimitRules { rules: vec![(Duration::from_secs(1), 8)] });
                self.cluster.fake.set_rate_limit(rules);
            }
            Op::Restart { replica } => self.cluster.restart(replica).await,
        }
    }

    // === users ===

    /// The whole user resource as this IdP sends it on POST and PUT.
    fn user_body(&self, p: usize) -> Value {
        let m = &self.model.people[p];
        match self.dialect() {
            Dialect::Okta => json!({
                "schemas": [USER],
                "userName": m.address,
                "name": {"givenName": m.given, "familyName": m.family},
                "emails": [{"primary": true, "value": m.address, "type": "work"}],
                "displayName": m.display(),
                "locale": "en-US",
                "externalId": m.external_id,
                "groups": [],
                "password": "x7Rq2pLm",
                "active": m.active,
                "role": m.role,
            }),
            Dialect::Entra => json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": m.external_id,
                "userName": m.address,
                "active": m.active,
                "displayName": m.display(),
                "emails": [{"primary": true, "type": "work", "value": m.address}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": m.display(), "familyName": m.family, "givenName": m.given},
                "roles": [],
                "role": m.role,
                "title": null,
            }),
        }
    }

    fn expect_user(&self, p: usize) -> Expect {
        let m = &self.model.people[p];
        let mut fields = vec![
            ("/userName", json!(m.address)),
            ("/displayName", json!(m.display())),
            ("/active", json!(m.active)),
            ("/role", json!(m.role)),
        ];
        if self.cluster.field_id.is_some() {
            fields.push(("/externalId", json!(m.external_id)));
        }
        Expect::User { id: m.id, fields }
    }

    /// Entra's PATCH of every attribute (its "update" of a matched user).
    fn entra_full_patch(&self, p: usize) -> Value {
        let m = &self.model.people[p];
        let active = if m.active { "True" } else { "False" };
        patch(json!([
            {"op": "Replace", "path": "userName", "value": m.address},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": m.address},
            {"op": "Replace", "path": "displayName", "value": m.display()},
            {"op": "Replace", "path": "name.formatted", "value": m.display()},
            {"op": "Replace", "path": "name.givenName", "value": m.given},
            {"op": "Replace", "path": "name.familyName", "value": m.family},
            {"op": "Replace", "path": "externalId", "value": m.external_id},
            {"op": "Replace", "path": "role", "value": m.role},
            {"op": "Replace", "path": "active", "value": active},
        ]))
    }

    /// Pushes the whole intended profile to a linked person: Okta `GET` + `PUT`, Entra one
    /// PATCH of every attribute.
    async fn push_profile(&mut self, p: usize) -> bool {
        let Some(id) = self.model.people[p].id else {
            return false;
        };
        let path = format!("/Users/{id}");
        let expect = self.expect_user(p);
        let answer = match self.dialect() {
            Dialect::Okta => {
                self.send(Method::GET, &path, None, Expect::Read).await;
                let body = self.user_body(p);
                self.send(Method::PUT, &path, Some(body), expect).await
            }
            Dialect::Entra => {
                let body = self.entra_full_patch(p);
                self.send(Method::PATCH, &path, Some(body), expect).await
            }
        };
        let ok = self.settle_person(p, &answer);
        if ok {
            self.model.people[p].edited = false;
        }
        ok
    }

    /// Records the outcome of a write for `p`; `true` on 2xx.
    fn settle_person(&mut self, p: usize, answer: &Answer) -> bool {
        let ok = answer.ok().is_some();
        let status = answer.status();
        if !ok && (400..500).contains(&status) && status != 429 {
            let raw = match answer {
                Answer::Reply(r) => r.raw.clone(),
                Answer::GaveUp => String::new(),
            };
            self.diverged(format!("a realistic write for person {p} was refused {status}: {raw}"));
        }
        self.model.people[p].dirty = !ok;
        ok
    }

    /// `GET /Users?filter=…` for the person: the found id, if exactly one.
    async fn lookup(&mut self, p: usize, by_external_id: bool) -> Option<u64> {
        let m = &self.model.people[p];
        let filter = if by_external_id {
            format!("externalId%20eq%20{}", quoted(&m.external_id))
        } else {
            format!("userName%20eq%20{}", quoted(&m.address))
        };
        let path = format!("/Users?filter={filter}&startIndex=1&count=100");
        let answer = self.send(Method::GET, &path, None, Expect::Read).await;
        let body = answer.ok()?;
        let found = body["Resources"].as_array()?;
        if found.len() > 1 {
            let raw = body.to_string();
            self.diverged(format!("lookup {filter} found {} users: {raw}", found.len()));
        }
        found.first().and_then(|u| u["id"].as_str()).and_then(|id| id.parse().ok())
    }

    fn link(&mut self, p: usize, id: u64) {
        let m = &self.model.people[p];
        if let Some(account) = m.account.filter(|a| *a != id) {
            // A new account is right only for a new address (a deleted person re-created
            // under another one); for the same address it is a duplicate.
            let address = m.address.clone();
            if self
                .cluster
                .fake
                .user(account)
                .is_some_and(|u| u.delivery_email.eq_ignore_ascii_case(&address))
            {
                self.diverged(format!(
                    "person {p} ({address}) got account {id} while its account {account} exists"
                ));
            }
        }
        let m = &mut self.model.people[p];
        m.id = Some(id);
        m.account = Some(id);
    }

    async fn assign(&mut self, p: usize, lookup: bool) {
        if self.model.people[p].id.is_some() {
            if !self.model.people[p].active {
                self.set_active(p, true).await;
            } else {
                self.push_profile(p).await;
            }
            return;
        }
        {
            let m = &mut self.model.people[p];
            m.assigned = true;
            m.active = true;
        }
        if lookup {
            let by_external_id = self.dialect() == Dialect::Entra && self.cluster.field_id.is_some();
            let found = self.lookup(p, by_external_id).await;
            let found = match found {
                Some(id) => Some(id),
                None if self.dialect() == Dialect::Entra => self.lookup(p, false).await,
                None => None,
            };
            if let Some(id) = found {
                self.link(p, id);
                self.push_profile(p).await;
                return;
            }
        }
        let body = self.user_body(p);
        let expect = self.expect_user(p);
        let answer = self.send(Method::POST, "/Users", Some(body), expect).await;
        if let Some(created) = answer.ok() {
            if let Some(id) = created["id"].as_str().and_then(|id| id.parse().ok()) {
                self.link(p, id);
            }
            self.model.people[p].dirty = false;
            return;
        }
        if answer.status() == 409 {
            // The address exists (an earlier attempt's account): find it and link, as Okta.
            for _ in 0..20 {
                if let Some(id) = self.lookup(p, false).await {
                    self.link(p, id);
                    self.push_profile(p).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.diverged(format!("POST /Users for person {p} was 409 but no lookup finds the account"));
            return;
        }
        self.settle_person(p, &answer);
    }

    /// A profile change of a provisioned, active person (others are provisioned first with
    /// it; the IdP pushes nothing to a deactivated person).
    async fn update(&mut self, p: usize, change: impl FnOnce(&mut super::model::Person)) {
        let m = &self.model.people[p];
        if m.id.is_some() && !m.active {
            return;
        }
        let before = m.clone();
        change(&mut self.model.people[p]);
        if self.model.people[p].id.is_none() {
            self.assign(p, true).await;
            return;
        }
        let id = self.model.people[p].id.unwrap_or_default();
        let path = format!("/Users/{id}");
        let m = self.model.people[p].clone();
        let answer = match self.dialect() {
            Dialect::Okta => {
                self.send(Method::GET, &path, None, Expect::Read).await;
                let body = self.user_body(p);
                let expect = self.expect_user(p);
                let answer = self.send(Method::PUT, &path, Some(body), expect).await;
                if answer.ok().is_some() {
                    self.model.people[p].edited = false;
                }
                answer
            }
            Dialect::Entra => {
                let mut ops = Vec::new();
                let mut fields = Vec::new();
                if m.given != before.given || m.family != before.family {
                    ops.push(json!({"op": "Replace", "path": "displayName", "value": m.display()}));
                    ops.push(json!({"op": "Replace", "path": "name.formatted", "value": m.display()}));
                    ops.push(json!({"op": "Replace", "path": "name.givenName", "value": m.given}));
                    ops.push(json!({"op": "Replace", "path": "name.familyName", "value": m.family}));
                    fields.push(("/displayName", json!(m.display())));
                }
                if m.address != before.address {
                    ops.push(json!({"op": "Replace", "path": "emails[type eq \"work\"].value", "value": m.address}));
                    ops.push(json!({"op": "Replace", "value": {"userName": m.address}}));
                    fields.push(("/userName", json!(m.address)));
                }
                if m.role != before.role {
                    ops.push(json!({"op": "Replace", "path": "role", "value": m.role}));
                    fields.push(("/role", json!(m.role)));
                }
                if m.external_id != before.external_id {
                    ops.push(json!({"op": "Replace", "path": "externalId", "value": m.external_id}));
                    if self.cluster.field_id.is_some() {
                        fields.push(("/externalId", json!(m.external_id)));
                    }
                }
                if ops.is_empty() {
                    return;
                }
                self.send(
                    Method::PATCH,
                    &path,
                    Some(patch(json!(ops))),
                    Expect::User { id: Some(id), fields },
                )
                .await
            }
        };
        self.settle_person(p, &answer);
        if !self.model.people[p].past_addresses.contains(&m.address) {
            self.model.people[p].past_addresses.push(m.address);
        }
    }

    async fn set_active(&mut self, p: usize, active: bool) {
        let m = &self.model.people[p];
        let Some(id) = m.id else {
            return;
        };
        if m.active == active {
            return;
        }
        self.model.people[p].active = active;
        let body = match (self.dialect(), active) {
            (Dialect::Okta, a) => patch(json!([{"op": "replace", "value": {"active": a}}])),
            (Dialect::Entra, true) => patch(json!([{"op": "Replace", "path": "active", "value": "True"}])),
            (Dialect::Entra, false) => patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        };
        let expect = Expect::User { id: Some(id), fields: vec![("/active", json!(active))] };
        let answer = self.send(Method::PATCH, &format!("/Users/{id}"), Some(body), expect).await;
        self.settle_person(p, &answer);
    }

    async fn delete_user(&mut self, p: usize) {
        if self.dialect() == Dialect::Okta {
            // Okta never deletes users: it deactivates.
            return self.set_active(p, false).await;
        }
        let Some(id) = self.model.people[p].id else {
            return;
        };
        self.model.people[p].active = false;
        let answer = self.send(Method::DELETE, &format!("/Users/{id}"), None, Expect::UserGone(id)).await;
        if answer.status() == 204 || answer.status() == 404 {
            // The IdP forgets the id; the account stays, deactivated.
            self.model.people[p].id = None;
            self.model.people[p].dirty = false;
        } else {
            self.settle_person(p, &answer);
        }
    }

    // === groups ===

    fn free_name(&self, g: usize, name: usize) -> String {
        (0..GROUP_NAMES.len())
            .map(|i| GROUP_NAMES[(name + i) % GROUP_NAMES.len()].to_string())
            .find(|n| !self.model.group_name_taken(n, g))
            .unwrap_or_else(|| format!("Group {g}"))
    }

    fn member_values(&self, people: &BTreeSet<usize>) -> Vec<Value> {
        people
            .iter()
            .filter_map(|p| {
                let m = &self.model.people[*p];
                m.id.filter(|_| m.active).map(|id| json!({"value": id.to_string(), "display": m.address}))
            })
            .collect()
    }

    fn expect_group(&self, g: usize) -> Expect {
        let group = &self.model.groups[g];
        let members: BTreeSet<u64> = group
            .members
            .iter()
            .filter_map(|p| {
                let m = &self.model.people[*p];
                m.account.filter(|_| m.active)
            })
            .collect();
        Expect::Group { id: group.id, name: group.name.clone(), members }
    }

    fn settle_group(&mut self, g: usize, answer: &Answer) -> bool {
        let ok = answer.ok().is_some();
        let status = answer.status();
        if !ok && (400..500).contains(&status) && status != 429 {
            let raw = match answer {
                Answer::Reply(r) => r.raw.clone(),
                Answer::GaveUp => String::new(),
            };
            self.diverged(format!("a realistic write for group {g} was refused {status}: {raw}"));
        }
        self.model.groups[g].dirty = !ok;
        ok
    }

    async fn lookup_group(&mut self, name: &str) -> Option<u64> {
        let path = format!("/Groups?filter=displayName%20eq%20{}&excludedAttributes=members", quoted(name));
        let answer = self.send(Method::GET, &path, None, Expect::Read).await;
        let found = answer.ok()?["Resources"].as_array()?.clone();
        found.first().and_then(|g| g["id"].as_str()).and_then(|id| id.parse().ok())
    }

    async fn create_group(&mut self, g: usize, name: usize) {
        if self.model.groups[g].id.is_some() {
            return;
        }
        let name = self.free_name(g, name);
        {
            let group = &mut self.model.groups[g];
            group.name = name.clone();
            group.members.clear();
        }
        if let Some(id) = self.lookup_group(&name).await {
            self.model.groups[g].id = Some(id);
            // Linked: push the (empty) membership and name, as Okta does when linking.
            let answer = self.send_push(g).await;
            if answer.status() != 404 {
                self.settle_group(g, &answer);
                return;
            }
            // The lookup was answered by a replica that had not yet applied another
            // replica's DELETE of that group (a read within the events bound): the push's 404
            // says it is gone, and the IdP creates the group, as after any 404.
            self.model.groups[g].id = None;
        }
        let body = json!({"schemas": [GROUP], "displayName": name, "members": []});
        let expect = self.expect_group(g);
        let answer = self.send(Method::POST, "/Groups", Some(body), expect).await;
        if let Some(created) = answer.ok() {
            self.model.groups[g].id = created["id"].as_str().and_then(|id| id.parse().ok());
            self.model.groups[g].dirty = false;
            return;
        }
        if answer.status() == 409 {
            for _ in 0..20 {
                if let Some(id) = self.lookup_group(&name).await {
                    self.model.groups[g].id = Some(id);
                    return self.push_group(g).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let raw = match &answer {
                Answer::Reply(r) => r.raw.clone(),
                Answer::GaveUp => String::new(),
            };
            self.diverged(format!("POST /Groups {name} was 409 but no lookup finds it: {raw}"));
            return;
        }
        self.settle_group(g, &answer);
    }

    /// The whole intended group: Okta `PATCH replace members` + rename, Entra `PUT`.
    async fn push_group(&mut self, g: usize) {
        if self.model.groups[g].id.is_none() {
            return;
        }
        let answer = self.send_push(g).await;
        self.settle_group(g, &answer);
    }

    /// The push of [`Idp::push_group`], unsettled.
    async fn send_push(&mut self, g: usize) -> Answer {
        let id = self.model.groups[g].id.unwrap_or_default();
        let name = self.model.groups[g].name.clone();
        let members = self.member_values(&self.model.groups[g].members.clone());
        let expect = self.expect_group(g);
        match self.dialect() {
            Dialect::Okta => {
                let body = patch(json!([
                    {"op": "replace", "value": {"id": id.to_string(), "displayName": name}},
                    {"op": "replace", "path": "members", "value": members},
                ]));
                self.send(Method::PATCH, &format!("/Groups/{id}"), Some(body), expect).await
            }
            Dialect::Entra => {
                let body = json!({"schemas": [GROUP], "displayName": name, "members": members});
                self.send(Method::PUT, &format!("/Groups/{id}"), Some(body), expect).await
            }
        }
    }

    async fn rename_group(&mut self, g: usize, name: usize) {
        let Some(id) = self.model.groups[g].id else {
            return;
        };
        let name = self.free_name(g, name);
        if name == self.model.groups[g].name {
            return;
        }
        self.model.groups[g].name = name.clone();
        let body = match self.dialect() {
            Dialect::Okta => {
                patch(json!([{"op": "replace", "value": {"id": id.to_string(), "displayName": name}}]))
            }
            Dialect::Entra => patch(json!([{"op": "Replace", "path": "displayName", "value": name}])),
        };
        let expect = self.expect_group(g);
        let answer = self.send(Method::PATCH, &format!("/Groups/{id}"), Some(body), expect).await;
        self.settle_group(g, &answer);
    }

    async fn add_members(&mut self, g: usize, people: &[usize]) {
        let Some(id) = self.model.groups[g].id else {
            return;
        };
        let new: BTreeSet<usize> = people
            .iter()
            .copied()
            .filter(|p| self.model.is_member_candidate(*p) && !self.model.groups[g].members.contains(p))
            .collect();
        if new.is_empty() {
            return;
        }
        let values = self.member_values(&new);
        self.model.groups[g].members.extend(new);
        let name = self.model.groups[g].name.clone();
        let body = match self.dialect() {
            Dialect::Okta => patch(json!([
                {"op": "replace", "value": {"id": id.to_string(), "displayName": name}},
                {"op": "add", "path": "members", "value": values},
            ])),
            Dialect::Entra => patch(json!([{"op": "Add", "path": "members", "value": values}])),
        };
        let expect = self.expect_group(g);
        let answer = self.send(Method::PATCH, &format!("/Groups/{id}"), Some(body), expect).await;
        self.settle_group(g, &answer);
    }

    async fn remove_member(&mut self, g: usize, p: usize) {
        let Some(id) = self.model.groups[g].id else {
            return;
        };
        if !self.model.groups[g].members.contains(&p) || !self.model.is_member_candidate(p) {
            return;
        }
        let member = self.model.people[p].id.unwrap_or_default().to_string();
        self.model.groups[g].members.remove(&p);
        let body = match self.dialect() {
            Dialect::Okta => {
                patch(json!([{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]))
            }
            Dialect::Entra => {
                patch(json!([{"op": "Remove", "path": "members", "value": [{"value": member}]}]))
            }
        };
        let expect = self.expect_group(g);
        let answer = self.send(Method::PATCH, &format!("/Groups/{id}"), Some(body), expect).await;
        self.settle_group(g, &answer);
    }

    async fn replace_members(&mut self, g: usize, people: &[usize]) {
        if self.model.groups[g].id.is_none() {
            return;
        }
        let wanted: BTreeSet<usize> =
            people.iter().copied().filter(|p| self.model.is_member_candidate(*p)).collect();
        // Zulip keeps deactivated members (SCIM does not show them, so no replace drops them).
        let kept: BTreeSet<usize> =
            self.model.groups[g].members.iter().copied().filter(|p| !self.model.people[*p].active).collect();
        self.model.groups[g].members = wanted.union(&kept).copied().collect();
        self.push_group(g).await;
    }

    async fn delete_group(&mut self, g: usize) {
        let Some(id) = self.model.groups[g].id else {
            return;
        };
        let answer = self.send(Method::DELETE, &format!("/Groups/{id}"), None, Expect::GroupGone(id)).await;
        if answer.status() == 204 || answer.status() == 404 {
            let group = &mut self.model.groups[g];
            group.id = None;
            group.deleted.push(id);
            group.members.clear();
            group.name.clear();
            group.dirty = false;
        } else {
            self.settle_group(g, &answer);
        }
    }

    // === reads ===

    /// An import: every page of `/Users` (and `/Groups`); pages must not overlap.
    async fn import(&mut self, page: usize) {
        let mut seen = BTreeSet::new();
        let mut start = 1;
        loop {
            let path = format!("/Users?startIndex={start}&count={page}");
            let answer = self.send(Method::GET, &path, None, Expect::Read).await;
            let Some(body) = answer.ok() else {
                return;
            };
            let total = body["totalResults"].as_u64().unwrap_or(0) as usize;
            let ids: Vec<String> = body["Resources"]
                .as_array()
                .map(|r| r.iter().filter_map(|u| u["id"].as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            for id in &ids {
                if !seen.insert(id.clone()) {
                    self.diverged(format!("import: user {id} on two pages"));
                }
            }
            start += page;
            if ids.is_empty() || start > total {
                break;
            }
        }
        self.send(Method::GET, "/Groups?startIndex=1&count=100", None, Expect::Read).await;
    }

    // === the IdP's next pass ===

    /// Re-reads everything it manages and pushes what differs, as an IdP's next sync does.
    pub async fn repair(&mut self) {
        for p in 0..self.model.people.len() {
            let m = self.model.people[p].clone();
            if !m.assigned {
                continue;
            }
            match m.id {
                None if m.active => self.assign(p, true).await,
                None => {}
                Some(id) => {
                    let answer = self.send(Method::GET, &format!("/Users/{id}"), None, Expect::Read).await;
                    let current = answer.ok().cloned().unwrap_or(Value::Null);
                    let expect = self.expect_user(p);
                    if !check::fields_match(&current, &expect) {
                        self.push_profile(p).await;
                    } else {
                        self.model.people[p].dirty = false;
                    }
                }
            }
        }
        for g in 0..self.model.groups.len() {
            if self.model.groups[g].id.is_none() {
                continue;
            }
            let id = self.model.groups[g].id.unwrap_or_default();
            let answer = self.send(Method::GET, &format!("/Groups/{id}"), None, Expect::Read).await;
            let current = answer.ok().cloned().unwrap_or(Value::Null);
            if !check::group_matches(&current, &self.expect_group(g)) {
                self.push_group(g).await;
            } else {
                self.model.groups[g].dirty = false;
            }
        }
    }
}
