//! Request-rate protection: an optional token bucket per realm (429 + `Retry-After`), and
//! requests without a valid token refused cheaply (before any routing or body read) and
//! rate-limited per client address, with sampled logging so that a token-guessing flood
//! neither slows the realms nor fills the logs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{Request, Response};

use crate::app::App;
use crate::config::{RateLimit, ServerConfig};
use crate::error::Error;
use crate::provision::Realm;
use crate::server::limits::ConnInfo;

use super::routes::{self, Route};
use super::{error_response, Body};

/// Client addresses tracked at once; past it, new addresses share one bucket.
const MAX_TRACKED_ADDRESSES: usize = 16 * 1024;

/// At most one log line per this interval for refused requests (the rest are counted).
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The rate limits of an [`App`].
#[derive(Debug)]
pub struct Guard {
    unauthenticated_rate: RateLimit,
    addresses: Mutex<Addresses>,
    realm_rate: Option<RateLimit>,
    realms: HashMap<String, Mutex<Bucket>>,
    refused_log: Sampler,
    limited_log: Sampler,
}

#[derive(Debug, Default)]
struct Addresses {
    buckets: HashMap<IpAddr, Bucket>,
    /// Shared by every address beyond [`MAX_TRACKED_ADDRESSES`].
    overflow: Option<Bucket>,
    /// When refilled buckets were last forgotten (at most once per second).
    pruned_at: Option<Instant>,
}

/// A token bucket; tokens are fractional so that low rates refill smoothly.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Lets one event through per [`LOG_INTERVAL`] and counts the rest.
#[derive(Debug, Default)]
struct Sampler(Mutex<(Option<Instant>, u64)>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl Bucket ===

impl Bucket {
    fn full(rate: RateLimit, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(rate.burst), at: now }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, rate: RateLimit, now: Instant) -> Result<(), Duration> {
        let per_second = f64::from(rate.per_second.max(1));
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * per_second;
        self.tokens = (self.tokens + refill).min(f64::from(rate.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }

    /// Would be full by now (nothing to remember).
    fn is_full(&self, rate: RateLimit, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(rate.per_second);
        self.tokens + refill >= f64::from(rate.burst)
    }
}

// === impl Sampler ===

impl Sampler {
    /// `Some(suppressed since the last line)` when this event should be logged.
    fn sample(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.0);
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < LOG_INTERVAL => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

/// The key of a client address: IPv6 clients are bucketed by their /64, which one host
/// usually owns whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

// === impl Guard ===

impl Guard {
    pub fn new<'a>(config: &ServerConfig, realms: impl IntoIterator<Item = &'a str>) -> Guard {
        let now = Instant::now();
        Guard {
            unauthenticated_rate: config.unauthenticated_rate,
            addresses: Mutex::new(Addresses::default()),
            realm_rate: config.realm_rate,
            realms: match config.realm_rate {
                Some(rate) => {
                    realms.into_iter().map(|r| (r.to_owned(), Mutex::new(Bucket::full(rate, now)))).collect()
                }
                None => HashMap::new(),
            },
            refused_log: Sampler::default(),
            limited_log: Sampler::default(),
        }
    }

    /// One authenticated request of `realm`: `Err(retry after)` when over its limit.
    fn realm(&self, realm: &str, now: Instant) -> Result<(), Duration> {
        match (self.realm_rate, self.realms.get(realm)) {
            (Some(rate), Some(bucket)) => lock(bucket).take(rate, now),
            _ => Ok(()),
        }
    }

    /// One request without a valid token from `ip` (`None`: unknown, shares the overflow
    /// bucket): `Err(retry after)` when that address is over its limit.
    fn unauthenticated(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let rate = self.unauthenticated_rate;
        let mut addresses = lock(&self.addresses);
        let addresses = &mut *addresses;
        let key = ip.map(address_key);
        if let Some(bucket) = key.and_then(|key| addresses.buckets.get_mut(&key)) {
            return bucket.take(rate, now);
        }
        let prune_due =
            addresses.pruned_at.is_none_or(|at| now.saturating_duration_since(at) >= LOG_INTERVAL);
        if addresses.buckets.len() >= MAX_TRACKED_ADDRESSES && prune_due {
            addresses.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            addresses.pruned_at = Some(now);
        }
        match key {
            Some(key) if addresses.buckets.len() < MAX_TRACKED_ADDRESSES => {
                addresses.buckets.entry(key).or_insert_with(|| Bucket::full(rate, now)).take(rate, now)
            }
            _ => addresses.overflow.get_or_insert_with(|| Bucket::full(rate, now)).take(rate, now),
        }
    }
}

// === impl App (admission) ===

impl App {
    /// Runs before routing: marks the connection authenticated, applies the realm's rate
    /// limit, and answers a SCIM request without a valid token at once (401, or 429 and
    /// closing the connection when its address is over the limit). `None`: serve it.
    pub(crate) fn admit<B>(
        &self,
        request: &Request<B>,
        authenticated: &Result<&Arc<Realm>, Error>,
        started: Instant,
    ) -> Option<Response<Body>> {
        let conn = request.extensions().get::<ConnInfo>();
        let realm = authenticated.as_ref().ok().copied();
        let error = match authenticated {
            Ok(realm) => {
                if let Some(conn) = conn {
                    conn.authenticated();
                }
                let retry_after = self.guard.realm(realm.name(), started).err()?;
                Error::TooManyRequests {
                    retry_after,
                    detail: "the request rate limit of this realm is reached",
                }
            }
            Err(Error::Unauthorized) if request.uri().path().starts_with(routes::SCIM_PREFIX) => {
                self.refuse_unauthenticated(conn, started)
            }
            // A valid credential from a forbidden address (403), or no token outside SCIM:
            // answered by routing, with its access line.
            Err(_) => return None,
        };
        Some(self.refusal(request, realm, conn, started, &error))
    }

    /// 401, or 429 (and the connection closed after it) past the address's limit.
    fn refuse_unauthenticated(&self, conn: Option<&ConnInfo>, now: Instant) -> Error {
        match self.guard.unauthenticated(conn.map(ConnInfo::peer_ip), now) {
            Ok(()) => {
                self.metrics.unauthenticated("refused");
                Error::Unauthorized
            }
            Err(retry_after) => {
                self.metrics.unauthenticated("rate_limited");
                if let Some(conn) = conn {
                    conn.close_after_response();
                }
                let detail = "too many requests without a valid bearer token from this address";
                Error::TooManyRequests { retry_after, detail }
            }
        }
    }

    /// The response for a refused request, counted, and logged at most once per second.
    fn refusal<B>(
        &self,
        request: &Request<B>,
        realm: Option<&Arc<Realm>>,
        conn: Option<&ConnInfo>,
        started: Instant,
        error: &Error,
    ) -> Response<Body> {
        let response = error_response(error);
        let (status, realm_name) = (response.status().as_u16(), realm.map_or("-", |r| r.name()));
        let client = realm.map_or("-", |r| r.config.scim_client_name.as_str());
        let route = Route::from_request(request.method(), request.uri().path())
            .as_ref()
            .map(Route::label)
            .unwrap_or("unrouted");
        self.metrics.observe_scim(
            (realm_name, client),
            request.method().as_str(),
            route,
            status,
            started.elapsed(),
        );
        let sampler = if realm.is_some() { &self.guard.limited_log } else { &self.guard.refused_log };
        if let Some(suppressed) = sampler.sample(started) {
            let peer = conn.map(|c| c.peer().to_string());
            tracing::info!(realm = realm_name, method = %request.method(), route, status, peer = peer.as_deref().unwrap_or("-"),
                suppressed, "request refused (one line per second; `suppressed` counts the refusals not logged since the last)");
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::full(rate(10, 3), start);
        for _ in 0..3 {
            assert_eq!(bucket.take(rate(10, 3), start), Ok(()));
        }
        let wait = bucket.take(rate(10, 3), start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(bucket.take(rate(10, 3), start + Duration::from_millis(100)), Ok(()));
        assert!(bucket.take(rate(10, 3), start + Duration::from_millis(100)).is_err());
        assert!(bucket.is_full(rate(10, 3), start + Duration::from_secs(1)));
    }

    #[test]
    fn unauthenticated_requests_are_limited_per_address() {
        let config = ServerConfig { unauthenticated_rate: rate(1, 2), ..ServerConfig::default() };
        let guard = Guard::new(&config, ["acme"]);
        let now = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(guard.unauthenticated(Some(a), now).is_ok());
        assert!(guard.unauthenticated(Some(a), now).is_ok());
        assert!(guard.unauthenticated(Some(a), now).is_err(), "a's burst is spent");
        assert!(guard.unauthenticated(Some(b), now).is_ok(), "b has its own bucket");
        assert!(guard.realm("acme", now).is_ok(), "no realm limit configured");
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(one), address_key(other));
        assert_ne!(address_key(one), address_key(elsewhere));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn past_the_tracked_addresses_newcomers_share_one_bucket() {
        let config = ServerConfig { unauthenticated_rate: rate(1, 1), ..ServerConfig::default() };
        let guard = Guard::new(&config, []);
        let now = Instant::now();
        for i in 0..MAX_TRACKED_ADDRESSES as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(guard.unauthenticated(Some(ip), now).is_ok());
        }
        let late: IpAddr = "198.51.100.1".parse().unwrap();
        let later: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(guard.unauthenticated(Some(late), now).is_ok(), "the overflow bucket has one token");
        assert!(guard.unauthenticated(Some(later), now).is_err(), "and shares it");
        // Once the tracked buckets have refilled, they are forgotten and newcomers tracked.
        assert!(guard.unauthenticated(Some(later), now + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn a_realm_limit_applies_to_each_realm_separately() {
        let config = ServerConfig { realm_rate: Some(rate(1, 1)), ..ServerConfig::default() };
        let guard = Guard::new(&config, ["acme", "beta"]);
        let now = Instant::now();
        assert!(guard.realm("acme", now).is_ok());
        assert!(guard.realm("acme", now).is_err());
        assert!(guard.realm("beta", now).is_ok());
    }

    #[test]
    fn the_sampler_logs_once_per_interval_and_counts_the_rest() {
        let sampler = Sampler::default();
        let now = Instant::now();
        assert_eq!(sampler.sample(now), Some(0));
        assert_eq!(sampler.sample(now + Duration::from_millis(10)), None);
        assert_eq!(sampler.sample(now + Duration::from_millis(20)), None);
        assert_eq!(sampler.sample(now + LOG_INTERVAL), Some(2));
    }
}
