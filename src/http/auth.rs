//! Bearer-token authentication: the token selects the realm. Static tokens are compared as
//! SHA-256 digests in constant time against every configured digest (no early exit), so
//! neither timing nor the response says which realm or token was close. A token that matches
//! no static token and has the shape of a JWT is then offered to the realms that accept JWTs
//! ([`super::jwt`]); issuer and audience pairs are unique per realm (checked at load), so at
//! most one realm accepts it.
//!
//! After the token, a realm's `allow_ips` is checked against the client address
//! ([`client_ip`]): a refusal there is 403, a bad or missing credential 401.

use std::net::IpAddr;

use http::HeaderMap;

use super::jwt::JwtVerifier;
use crate::config::{token_digest, IpNet};
use subtle::ConstantTimeEq;

/// Every realm's accepted token digests, and the JWT verifiers of the realms that accept JWTs.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], usize)>,
    jwt: Vec<(usize, JwtVerifier)>,
}

/// The TCP peer of a request, put in its extensions by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The client address of a request: the TCP peer, or — behind `trusted_proxy_hops` proxies —
/// the `X-Forwarded-For` entry that many hops from the right (the address the outermost
/// trusted proxy saw). `None` when the chain is shorter than the configured hops (the request
/// did not pass through them) or an entry is not an address: such a request matches no
/// allow-list.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted_proxy_hops: usize) -> Option<IpAddr> {
    if trusted_proxy_hops == 0 {
        return peer;
    }
    let chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let entry = chain.len().checked_sub(trusted_proxy_hops).and_then(|i| chain.get(i))?;
    entry.parse().ok()
}

/// Whether `ip` may reach a realm with this allow-list (empty: any address).
pub fn allowed(allow_ips: &[IpNet], ip: Option<IpAddr>) -> bool {
    allow_ips.is_empty() || ip.is_some_and(|ip| allow_ips.iter().any(|net| net.contains(ip)))
}

impl TokenTable {
    /// `realms[i]` is the digest list of realm `i`.
    pub fn new<'a>(realms: impl IntoIterator<Item = &'a [[u8; 32]]>) -> Self {
        let mut entries = Vec::new();
        for (i, digests) in realms.into_iter().enumerate() {
            entries.extend(digests.iter().map(|d| (*d, i)));
        }
        TokenTable { entries, jwt: Vec::new() }
    }

    /// Adds JWT verifiers: `(realm index, verifier)`.
    pub fn with_jwt(mut self, verifiers: Vec<(usize, JwtVerifier)>) -> Self {
        self.jwt = verifiers;
        self
    }

    /// The realm index for an `Authorization` header value, or `None`.
    /// Accepts `Bearer <token>` with the scheme in any case (RFC 6750 §2.1, RFC 7235 §2.1).
    pub fn realm_for(&self, authorization: Option<&[u8]>) -> Option<usize> {
        let value = std::str::from_utf8(authorization?).ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        let digest = token_digest(token);
        let mut found: Option<usize> = None;
        for (candidate, realm) in &self.entries {
            let hit: bool = candidate.ct_eq(&digest).into();
            if hit && found.is_none() {
                found = Some(*realm);
            }
        }
        if found.is_some() || self.jwt.is_empty() || !JwtVerifier::looks_like_jwt(token) {
            return found;
        }
        self.jwt.iter().find_map(|(realm, verifier)| match verifier.verify(token) {
            Ok(()) => Some(*realm),
            Err(why) => {
                tracing::debug!(realm_index = realm, reason = %why, "bearer JWT refused");
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_selects_its_realm() {
        let a = [token_digest("alpha-token-0123456789"), token_digest("alpha-rotated-0123456789")];
        let b = [token_digest("beta-token-0123456789")];
        let table = TokenTable::new([&a[..], &b[..]]);
        assert_eq!(table.realm_for(Some(b"Bearer alpha-token-0123456789")), Some(0));
        assert_eq!(table.realm_for(Some(b"Bearer alpha-rotated-0123456789")), Some(0));
        assert_eq!(table.realm_for(Some(b"bearer beta-token-0123456789")), Some(1));
        assert_eq!(table.realm_for(Some(b"BEARER  beta-token-0123456789 ")), Some(1));
    }

    #[test]
    fn client_ip_counts_trusted_hops_from_the_right() {
        let peer = Some("192.0.2.9".parse().unwrap());
        let mut headers = HeaderMap::new();
        assert_eq!(client_ip(peer, &headers, 0), peer);
        assert_eq!(client_ip(peer, &headers, 1), None);
        headers.append("x-forwarded-for", "198.51.100.1, 10.0.0.5".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.6".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, 0), peer);
        assert_eq!(client_ip(peer, &headers, 1), Some("10.0.0.6".parse().unwrap()));
        assert_eq!(client_ip(peer, &headers, 3), Some("198.51.100.1".parse().unwrap()));
        assert_eq!(client_ip(peer, &headers, 4), None);
        let mut bad = HeaderMap::new();
        bad.insert("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(client_ip(peer, &bad, 1), None);
    }

    #[test]
    fn allow_lists() {
        let nets = [IpNet::parse("10.0.0.0/8").unwrap(), IpNet::parse("2001:db8::/32").unwrap()];
        assert!(allowed(&[], None));
        assert!(allowed(&nets, Some("10.255.0.1".parse().unwrap())));
        assert!(allowed(&nets, Some("::ffff:10.1.1.1".parse().unwrap())));
        assert!(allowed(&nets, Some("2001:db8:1::1".parse().unwrap())));
        assert!(!allowed(&nets, Some("11.0.0.1".parse().unwrap())));
        assert!(!allowed(&nets, Some("2001:db9::1".parse().unwrap())));
        assert!(!allowed(&nets, None));
    }

    #[test]
    fn anything_else_is_refused() {
        let a = [token_digest("alpha-token-0123456789")];
        let table = TokenTable::new([&a[..]]);
        for bad in [
            None,
            Some(&b""[..]),
            Some(b"Bearer"),
            Some(b"Bearer "),
            Some(b"Basic YWxwaGE6dG9rZW4="),
            Some(b"non-token"),
            Some(b"alpha-token-0123456789"),
            Some(b"Bearer alpha-token-012345678"),
            Some(b"Bearer \xff\xfe"),
        ] {
            assert_eq!(table.realm_for(bad), None, "{bad:?}");
        }
    }
}
