//! OAuth 2.0 bearer JWTs (RFC 9068 access tokens; Microsoft Entra ID's client-credentials
//! tokens are the model): signature against the realm's JWKS (RS256/ES256), then `iss`, `aud`,
//! `exp` (required), `nbf`, and optionally the client (`azp`, Entra's `appid`, or `client_id`).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::JwtConfig;

/// One realm's JWT verifier, built from its `jwt:` config.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    issuer: String,
    audiences: Vec<String>,
    client_ids: Vec<String>,
    leeway_s: u64,
}

#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys.iter().map(|k| (k.kid.clone(), k.algorithm)).collect::<Vec<_>>())
            .finish()
    }
}

/// Why a JWT was refused (logged at debug; the IdP only ever sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    #[error("not a JWT")]
    Malformed,
    #[error("no key of this realm matches the token's kid and alg")]
    NoKey,
    #[error("rejected: {0}")]
    Invalid(String),
    #[error("client {0:?} is not one of the realm's client_ids")]
    Client(Option<String>),
}

/// The claims read beyond those jsonwebtoken validates.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// The algorithm a JWK is used with, if it is one the realm accepts.
fn key_algorithm(jwk: &Jwk, accepted: &[Algorithm]) -> Option<Algorithm> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    // A key that names another algorithm (`"alg": "RS512"`) is not used for this one.
    if let Some(named) = jwk.common.key_algorithm {
        if format!("{named:?}") != format!("{algorithm:?}") {
            return None;
        }
    }
    accepted.contains(&algorithm).then_some(algorithm)
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> JwtVerifier {
        let keys = config
            .jwks
            .keys
            .iter()
            .filter(|jwk| {
                !matches!(jwk.common.public_key_use, Some(ref u) if *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            })
            .filter_map(|jwk| {
                let algorithm = key_algorithm(jwk, &config.algorithms)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(VerifyingKey { kid: jwk.common.key_id.clone(), algorithm, key })
            })
            .collect();
        JwtVerifier {
            keys,
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            client_ids: config.client_ids.clone(),
            leeway_s: config.leeway.as_secs(),
        }
    }

    /// How many of the JWKS keys can verify tokens (right type, curve and algorithm).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Whether `token` has the shape of a JWS (three base64url parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3
            && parts.iter().all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    }

    /// Verifies `token` for this realm.
    pub fn verify(&self, token: &str) -> Result<(), JwtRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRefusal::Malformed)?;
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.algorithm == header.alg && (header.kid.is_none() || header.kid == k.kid));
        let mut last = JwtRefusal::NoKey;
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[self.issuer.as_str()]);
            validation.set_audience(&self.audiences);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.validate_nbf = true;
            validation.leeway = self.leeway_s;
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return self.check_client(&data.claims),
                Err(e) => last = JwtRefusal::Invalid(format!("{:?}", e.kind())),
            }
        }
        Err(last)
    }

    fn check_client(&self, claims: &Claims) -> Result<(), JwtRefusal> {
        if self.client_ids.is_empty() {
            return Ok(());
        }
        let client = claims.azp.as_ref().or(claims.appid.as_ref()).or(claims.client_id.as_ref());
        match client {
            Some(c) if self.client_ids.contains(c) => Ok(()),
            other => Err(JwtRefusal::Client(other.cloned())),
        }
    }
}
