//! Bearer-token authentication: the token selects the realm. Tokens are compared as SHA-256
//! digests in constant time against every configured digest (no early exit), so neither
//! timing nor the response says which realm or token was close.

use crate::config::token_digest;
use subtle::ConstantTimeEq;

/// Every realm's accepted token digests.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], usize)>,
}

impl TokenTable {
    /// `realms[i]` is the digest list of realm `i`.
    pub fn new<'a>(realms: impl IntoIterator<Item = &'a [[u8; 32]]>) -> Self {
        let mut entries = Vec::new();
        for (i, digests) in realms.into_iter().enumerate() {
            entries.extend(digests.iter().map(|d| (*d, i)));
        }
        TokenTable { entries }
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
        found
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
