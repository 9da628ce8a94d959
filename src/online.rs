//! `check-config --online`: reaches each realm's Zulip with read-only calls and reports what
//! the sidecar will meet there — server version and feature level, whether the service
//! account authenticates and is an owner, the externalId field, the rate-limit headroom — and
//! every problem with its fix. Nothing is written to Zulip (the externalId field is created
//! only when the sidecar starts).

use std::ops::ControlFlow;

use zulip_client::{ProfileField, Role, ZulipClient};

use crate::app::zulip_client_for;
use crate::config::{Config, RealmConfig};
use crate::error::ErrorChain;
use crate::provision::realm::{FL_CHANGE_EMAIL, FL_DEACTIVATE_GROUP};

/// What was learned about one realm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealmReport {
    pub realm: String,
    /// Facts, one line each.
    pub facts: Vec<String>,
    /// Problems, each naming its fix.
    pub problems: Vec<String>,
}

/// Checks every realm (one after the other: a handful of calls each).
pub async fn check(config: &Config) -> Vec<RealmReport> {
    let mut reports = Vec::new();
    for realm in &config.realms {
        reports.push(check_realm(config, realm).await);
    }
    reports
}

async fn check_realm(config: &Config, realm: &RealmConfig) -> RealmReport {
    let mut report = RealmReport { realm: realm.name.clone(), ..RealmReport::default() };
    let realm = &with_fetched_jwks(realm, &mut report).await;
    access_facts(config, realm, &mut report);
    let key = format!("realms.{}.upstream", realm.name);
    let client = match zulip_client_for(config, realm) {
        Ok(client) => client,
        Err(e) => {
            report.problems.push(format!("{}: fix {key}", ErrorChain(&e)));
            return report;
        }
    };
    // Past an unreachable server or a refused account, every other call would fail alike.
    if server_version(&client, realm, &key, &mut report).await.is_break()
        || service_account(&client, realm, &key, &mut report).await.is_break()
    {
        return report;
    }
    permissions_fact(realm, &mut report);
    if let Some(label) = &realm.external_id_field {
        external_id_field(&client, label, &realm.name, &mut report).await;
    }
    rate_limit_headroom(&client, realm, &mut report);
    report
}

/// The realm with the JWT signing keys fetched from `jwks_url`, when it has one (a failed
/// fetch is a problem; the realm keeps no keys then).
async fn with_fetched_jwks(realm: &RealmConfig, report: &mut RealmReport) -> RealmConfig {
    let mut realm = realm.clone();
    if let Some(jwt) = realm.jwt.as_mut() {
        if let crate::config::JwksSource::Url(url) = &jwt.jwks_source {
            match crate::jwks::fetch(url).await {
                Ok(jwks) => jwt.jwks = jwks,
                Err(why) => report.problems.push(format!(
                    "cannot fetch the JWT signing keys: {why}: fix realms.{}.jwt.jwks_url (or the network path to it)",
                    realm.name
                )),
            }
        }
    }
    realm
}

/// The server's version and feature level, and the SCIM operations it is too old for.
/// `Break`: Zulip could not be reached.
async fn server_version(
    client: &ZulipClient,
    realm: &RealmConfig,
    key: &str,
    report: &mut RealmReport,
) -> ControlFlow<()> {
    let upstream = realm.upstream.url.as_str();
    match client.server_settings().await {
        Ok(settings) => {
            report.facts.push(format!(
                "Zulip {} (feature level {}) at {upstream}",
                settings.zulip_version, settings.zulip_feature_level
            ));
            let level = settings.zulip_feature_level;
            if level < FL_CHANGE_EMAIL {
                report.facts.push(format!("userName changes need Zulip 10.0 (feature level {FL_CHANGE_EMAIL}); this server refuses them"));
            }
            if level < FL_DEACTIVATE_GROUP {
                report.facts.push(format!(
                    "group deletes need feature level {FL_DEACTIVATE_GROUP}; this server refuses them"
                ));
            }
            ControlFlow::Continue(())
        }
        Err(e) => {
            report.problems.push(format!(
                "cannot reach Zulip at {upstream}: {}: fix {key}.url (and the network path to it)",
                ErrorChain(&e)
            ));
            ControlFlow::Break(())
        }
    }
}

/// Whether the service account authenticates, is an owner and is not a bot. `Break`: Zulip
/// refused its API key, or `/users/me` failed.
async fn service_account(
    client: &ZulipClient,
    realm: &RealmConfig,
    key: &str,
    report: &mut RealmReport,
) -> ControlFlow<()> {
    let email = realm.upstream.email.as_str();
    match client.get_own_user().await {
        Ok(me) => {
            report.facts.push(format!(
                "service account {email} authenticates (user id {}, role {})",
                me.user_id,
                me.role.scim_name()
            ));
            if me.role != Role::Owner {
                report.problems.push(format!(
                    "service account {email} is not an organization owner (role {}): make it an owner in Zulip (Organization settings → Users), else owner changes, deactivating owners and group management are refused",
                    me.role.scim_name()
                ));
            }
            if me.is_bot {
                report.problems.push(format!(
                    "service account {email} is a bot: Zulip's group endpoints refuse bots; use a human owner account's API key in {key}"
                ));
            }
            ControlFlow::Continue(())
        }
        Err(e) if e.is_unauthorized() => {
            report.problems.push(format!(
                "Zulip refuses the API key of {email}: set the account's current API key in {key}.api_key(_file) and check {key}.email"
            ));
            ControlFlow::Break(())
        }
        Err(e) => {
            report.problems.push(format!("GET /users/me failed: {}: check {key}", ErrorChain(&e)));
            ControlFlow::Break(())
        }
    }
}

/// The permissions Zulip's API does not show, and how to grant them.
fn permissions_fact(realm: &RealmConfig, report: &mut RealmReport) {
    let email = realm.upstream.email.as_str();
    report.facts.push(format!(
        "can_create_users and can_change_user_emails: not visible through Zulip's API; make sure {email} has them (self-hosted: `manage.py change_user_role {email} can_create_users` and `… can_change_user_emails`; Zulip Cloud: ask support)"
    ));
}

/// The rate-limit headroom Zulip reported on the calls above (an exhausted limit is a
/// problem).
fn rate_limit_headroom(client: &ZulipClient, realm: &RealmConfig, report: &mut RealmReport) {
    let email = realm.upstream.email.as_str();
    match client.rate_limit() {
        Some(rate) => {
            report.facts.push(format!(
                "rate limit: {} of {} requests left in the current window",
                rate.remaining, rate.limit
            ));
            if rate.remaining == 0 {
                report.problems.push(format!(
                    "the rate limit of {email} is exhausted right now: wait, or raise the account's limit (RATE_LIMITING_RULES / a Zulip Cloud exemption)"
                ));
            }
        }
        None => report
            .facts
            .push("rate limit: Zulip sent no X-RateLimit-* headers (limits not reported)".to_owned()),
    }
}

async fn external_id_field(client: &ZulipClient, label: &str, realm: &str, report: &mut RealmReport) {
    match client.get_custom_profile_fields().await {
        Ok(fields) => match fields.iter().find(|f| f.name == label) {
            Some(f) if f.field_type == ProfileField::SHORT_TEXT => {
                report.facts.push(format!("externalId field {label:?}: custom profile field {}", f.id))
            }
            Some(f) => report.problems.push(format!(
                "externalId field {label:?} is a {} field in Zulip, not short text: choose another label in realms.{realm}.external_id_field",
                ProfileField::type_name(f.field_type)
            )),
            None => report
                .facts
                .push(format!("externalId field {label:?}: not in Zulip yet; the sidecar creates it at start")),
        },
        Err(e) => report
            .problems
            .push(format!("cannot read custom profile fields: {}: check the service account's role", ErrorChain(&e))),
    }
}

/// How IdPs reach the realm: static tokens, JWTs, the allow-list.
fn access_facts(config: &Config, realm: &RealmConfig, report: &mut RealmReport) {
    report.facts.push(format!("static bearer tokens: {}", realm.bearer_token_sha256.len()));
    if let Some(jwt) = &realm.jwt {
        let verifier = crate::http::jwt::JwtVerifier::new(jwt);
        report.facts.push(format!(
            "JWTs from {} for {:?}: {} usable key(s) in {}",
            jwt.issuer,
            jwt.audiences,
            verifier.key_count(),
            jwt.jwks_source
        ));
        if verifier.key_count() == 0 {
            report.problems.push(format!(
                "no key in {} fits realms.{}.jwt.algorithms: every JWT would be refused; fix the JWKS file or the algorithms",
                jwt.jwks_source,
                realm.name
            ));
        }
    }
    if !realm.allow_ips.is_empty() {
        let nets: Vec<String> = realm.allow_ips.iter().map(ToString::to_string).collect();
        let via = match config.trusted_proxy_hops {
            0 => "the TCP peer".to_owned(),
            n => format!("X-Forwarded-For, {n} trusted proxy hop(s)"),
        };
        report.facts.push(format!("allow_ips: {} (client address from {via})", nets.join(", ")));
    }
}
