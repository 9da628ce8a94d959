//! JWKS from a URL (`realms.<name>.jwt.jwks_url`): fetched when the sidecar starts, on each
//! reload, and every `jwks_refresh_s` by the reload watch ([`crate::reload`]). A fetch that
//! fails keeps the keys in force (logged); new keys reach the realms as a reload does — only
//! who may reach them changes, so their snapshots stay.
//!
//! The one HTTP client outside `zulip-client`: it fetches public keys from the IdP, nothing
//! else, with a bounded time and size.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use url::Url;

use crate::config::{parse_jwks, Config, JwksSource};

/// How long one JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JWKS document accepted (Entra's is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Fetches and checks one JWKS document.
pub async fn fetch(url: &Url) -> Result<JwkSet, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let response = client.get(url.clone()).send().await.map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
    }
    let bytes = response.bytes().await.map_err(|e| format!("cannot read {url}: {e}"))?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
    }
    parse_jwks(&bytes).map_err(|why| format!("{url}: {why}"))
}

/// Fetches the keys of every realm whose JWKS comes from a URL into `config`. On failure a
/// realm keeps the keys `previous` had for the same URL (none at start); the problems are
/// returned (and logged by the caller).
pub async fn resolve(config: &mut Config, previous: Option<&Config>) -> Vec<String> {
    let mut problems = Vec::new();
    for realm in &mut config.realms {
        let Some(jwt) = realm.jwt.as_mut() else { continue };
        let JwksSource::Url(url) = &jwt.jwks_source else { continue };
        match fetch(url).await {
            Ok(jwks) => jwt.jwks = jwks,
            Err(why) => {
                let kept = previous
                    .and_then(|p| p.realms.iter().find(|r| r.name == realm.name))
                    .and_then(|r| r.jwt.as_ref())
                    .filter(|old| old.jwks_source == jwt.jwks_source)
                    .map(|old| old.jwks.clone());
                let note = match &kept {
                    Some(old) => format!("keeping the {} key(s) fetched before", old.keys.len()),
                    None => "no JWT is accepted until a fetch succeeds".to_owned(),
                };
                jwt.jwks = kept.unwrap_or(JwkSet { keys: Vec::new() });
                problems.push(format!("realms.{}.jwt.jwks_url: {why}; {note}", realm.name));
            }
        }
    }
    problems
}

/// The shortest refresh interval of the realms with a `jwks_url` (`None`: no such realm).
pub fn refresh_interval(config: &Config) -> Option<Duration> {
    config
        .realms
        .iter()
        .filter_map(|r| r.jwt.as_ref())
        .filter(|jwt| matches!(jwt.jwks_source, JwksSource::Url(_)))
        .map(|jwt| jwt.jwks_refresh)
        .min()
}
