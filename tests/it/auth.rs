//! The auth matrix: two realms, each with a static token, realm `demo` also accepting
//! Entra-shaped client-credentials JWTs (RS256 and ES256) and realm `beta` its own issuer's
//! JWTs from an IP allow-list behind one trusted proxy. No credential of one realm reaches
//! the other's data, and every refusal is a SCIM 401/403 with nothing sent upstream.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use fake_zulip::{FakeUser, FakeZulip};
use scim_sidecar::app::{ReadyCheck, Running, Sidecar, StartOptions};
use scim_sidecar::config::{read_jwks, token_digest, IpNet, JwksSource, JwtConfig};
use scim_sidecar::demo::{demo_config, DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};

use crate::support::{fake, Reply, TOKEN};

const TOKEN_B: &str = "beta-token-0123456789abcdef";
pub const ISSUER_A: &str = "https://login.microsoftonline.com/tenant-a/v2.0";
pub const AUDIENCE_A: &str = "api://scim-sidecar-demo";
pub const CLIENT_A: &str = "entra-provisioning-a";
const ISSUER_B: &str = "https://login.microsoftonline.com/tenant-b/v2.0";
const AUDIENCE_B: &str = "api://scim-sidecar-beta";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt").join(name)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A signed token; `claims` are merged over valid ones for realm `demo`.
pub fn jwt(key: &str, alg: Algorithm, kid: &str, claims: Value) -> String {
    let mut body = json!({
        "iss": ISSUER_A, "aud": AUDIENCE_A, "azp": CLIENT_A, "sub": "sp-object-id",
        "iat": now(), "nbf": now() - 5, "exp": now() + 600,
    });
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    let pem = std::fs::read(fixture(key)).unwrap();
    let encoding = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let header = Header { kid: Some(kid.to_string()), ..Header::new(alg) };
    jsonwebtoken::encode(&header, &body, &encoding).unwrap()
}

fn jwt_config(issuer: &str, audience: &str, jwks: &str, client_ids: &[&str]) -> JwtConfig {
    JwtConfig {
        issuer: issuer.into(),
        audiences: vec![audience.into()],
        jwks_source: JwksSource::File(fixture(jwks)),
        jwks: read_jwks(&fixture(jwks)).unwrap(),
        jwks_refresh: std::time::Duration::from_secs(3600),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        client_ids: client_ids.iter().map(|c| c.to_string()).collect(),
        leeway: std::time::Duration::from_secs(5),
    }
}

struct TwoRealms {
    addr: std::net::SocketAddr,
    a: FakeZulip,
    b: FakeZulip,
    running: Running,
}

impl TwoRealms {
    async fn start() -> TwoRealms {
        let a = fake().start().await.unwrap();
        let b = FakeZulip::builder()
            .service_account(DEMO_SERVICE_EMAIL, DEMO_SERVICE_API_KEY)
            .with_system_groups()
            .with_user(FakeUser::new("bianca@beta.example.com", "Bianca Beta"))
            .start()
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = demo_config(listener.local_addr().unwrap(), a.base_url(), TOKEN).unwrap();
        config.trusted_proxy_hops = 1;
        // The matrix sends more refused requests from one address than the default
        // unauthenticated burst allows: here every refusal must be the 401 or 403 itself.
        config.server.unauthenticated_rate.burst = 10_000;
        let mut beta = config.realms[0].clone();
        config.realms[0].jwt = Some(jwt_config(ISSUER_A, AUDIENCE_A, "realm-a-jwks.json", &[CLIENT_A]));
        beta.name = "beta".into();
        beta.scim_client_name = "beta".into();
        beta.bearer_token_sha256 = vec![token_digest(TOKEN_B)];
        beta.upstream.url = b.base_url();
        beta.jwt = Some(jwt_config(ISSUER_B, AUDIENCE_B, "realm-b-jwks.json", &[]));
        beta.allow_ips = vec![IpNet::parse("10.0.0.0/8").unwrap(), IpNet::parse("2001:db8::/32").unwrap()];
        config.realms.push(beta);
        let options = StartOptions { ready: ReadyCheck::Awaited, live: None };
        let running = Sidecar::start(&config, listener, options).await.unwrap();
        a.clear_requests();
        b.clear_requests();
        TwoRealms { addr: running.addr(), a, b, running }
    }

    async fn send(&self, method: Method, path: &str, auth: Option<&str>, xff: Option<&str>) -> Reply {
        let mut req =
            reqwest::Client::new().request(method.clone(), format!("http://{}/scim/v2{path}", self.addr));
        if let Some(auth) = auth {
            req = req.header("authorization", format!("Bearer {auth}"));
        }
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        if method == Method::POST {
            req = req.header("content-type", "application/scim+json").body(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                       "userName": "intruder@zulip.example.com", "name": {"formatted": "In Truder"}})
                .to_string(),
            );
        }
        Reply::from(req.send().await.unwrap()).await
    }

    /// The userNames a credential lists.
    async fn users(&self, auth: &str, xff: Option<&str>) -> Vec<String> {
        let reply = self.send(Method::GET, "/Users", Some(auth), xff).await;
        let body = reply.assert_status(200);
        let mut names: Vec<String> = body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    fn assert_nothing_upstream(&self, what: &str) {
        assert_eq!(self.a.take_requests().len(), 0, "{what}: realm demo's Zulip was called");
        assert_eq!(self.b.take_requests().len(), 0, "{what}: realm beta's Zulip was called");
    }

    async fn stop(self) {
        self.running.shutdown();
        self.running.join().await;
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

#[tokio::test]
async fn no_credential_of_one_realm_reaches_another_and_every_refusal_is_401_or_403() {
    let h = TwoRealms::start().await;
    let a_users = vec![
        "hamlet@zulip.example.com".to_string(),
        "iago@zulip.example.com".to_string(),
        "othello@zulip.example.com".to_string(),
        DEMO_SERVICE_EMAIL.to_string(),
    ];
    let mut a_users = a_users;
    a_users.sort();
    let b_users = {
        let mut v = vec!["bianca@beta.example.com".to_string(), DEMO_SERVICE_EMAIL.to_string()];
        v.sort();
        v
    };
    let inside = Some("10.20.30.40");

    // Accepted: each credential sees its own realm's people only.
    let jwt_a_rsa = jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({}));
    let jwt_a_ec = jwt("realm-a-ec.pem", Algorithm::ES256, "a-ec-1", json!({}));
    let jwt_a_v1 =
        jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"azp": null, "appid": CLIENT_A}));
    let jwt_b = jwt(
        "realm-b-rsa.pem",
        Algorithm::RS256,
        "b-rsa-1",
        json!({"iss": ISSUER_B, "aud": AUDIENCE_B, "azp": "any-client"}),
    );
    for (what, auth, xff, want) in [
        ("static token demo", TOKEN, None, &a_users),
        ("JWT demo RS256", &jwt_a_rsa, None, &a_users),
        ("JWT demo ES256", &jwt_a_ec, None, &a_users),
        ("JWT demo v1 appid", &jwt_a_v1, None, &a_users),
        ("static token beta from inside", TOKEN_B, inside, &b_users),
        ("static token beta over IPv6", TOKEN_B, Some("2001:db8::7"), &b_users),
        ("JWT beta from inside", &jwt_b, inside, &b_users),
    ] {
        assert_eq!(&h.users(auth, xff).await, want, "{what}");
    }
    h.a.clear_requests();
    h.b.clear_requests();

    // Refused with 401: wrong, forged, expired, misdirected or other-realm-shaped tokens.
    let refused_401 = [
        ("no credential", None),
        ("garbage", Some("not-a-token".to_string())),
        ("token of demo with one char off", Some(format!("{}x", &TOKEN[..TOKEN.len() - 1]))),
        ("expired", Some(jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"exp": now() - 60})))),
        (
            "not yet valid",
            Some(jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"nbf": now() + 600}))),
        ),
        ("no exp", Some(jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"exp": null})))),
        (
            "wrong audience",
            Some(jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"aud": "api://other"}))),
        ),
        (
            "wrong issuer",
            Some(jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"iss": "https://evil.example"}))),
        ),
        (
            "client not allowed",
            Some(jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({"azp": "someone-else"}))),
        ),
        (
            "forged signature with demo's kid",
            Some(jwt("stranger-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({}))),
        ),
        // Signed with beta's key but claiming demo's issuer and audience: demo has no such key.
        ("beta's key, demo's claims", Some(jwt("realm-b-rsa.pem", Algorithm::RS256, "b-rsa-1", json!({})))),
        // demo's key, beta's claims: beta has no such key.
        (
            "demo's key, beta's claims",
            Some(jwt(
                "realm-a-rsa.pem",
                Algorithm::RS256,
                "a-rsa-1",
                json!({"iss": ISSUER_B, "aud": AUDIENCE_B}),
            )),
        ),
        ("HS256 with the public JWKS as secret", Some(hs256_confusion())),
        ("alg none", Some(alg_none())),
    ];
    for (what, auth) in &refused_401 {
        for method in [Method::GET, Method::POST] {
            let reply = h.send(method.clone(), "/Users", auth.as_deref(), inside).await;
            reply.assert_error(401, None);
            assert!(reply.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{what}");
            h.assert_nothing_upstream(what);
        }
    }

    // Refused with 403: beta's valid credentials from outside its allow-list, or with a
    // spoofed X-Forwarded-For (the trusted proxy appends the real address last).
    for (what, auth, xff) in [
        ("beta token from outside", TOKEN_B, Some("192.0.2.1")),
        ("beta JWT from outside", jwt_b.as_str(), Some("192.0.2.1")),
        ("beta token, spoofed XFF", TOKEN_B, Some("10.0.0.1, 192.0.2.1")),
        ("beta token, no proxy hop", TOKEN_B, None),
        ("beta token, garbage XFF", TOKEN_B, Some("ten.zero")),
    ] {
        for method in [Method::GET, Method::POST] {
            let reply = h.send(method.clone(), "/Users", Some(auth), xff).await;
            reply.assert_error(403, None);
            h.assert_nothing_upstream(what);
        }
    }
    // Ids of one realm are not reachable through the other.
    let bianca = h.b.user_by_email("bianca@beta.example.com").unwrap().user_id;
    let reply = h.send(Method::GET, &format!("/Users/{bianca}"), Some(TOKEN), None).await;
    if reply.status.as_u16() == 200 {
        assert_ne!(reply.body["userName"], "bianca@beta.example.com", "beta's user seen through demo");
    }
    assert!(h.b.take_requests().is_empty(), "beta's Zulip was called for a demo request");
    h.stop().await;
}

/// An HS256 token whose "secret" is demo's public key: the classic key-confusion forgery.
fn hs256_confusion() -> String {
    let secret = std::fs::read(fixture("realm-a-jwks.json")).unwrap();
    let claims = json!({"iss": ISSUER_A, "aud": AUDIENCE_A, "azp": CLIENT_A, "exp": now() + 600});
    let header = Header { kid: Some("a-rsa-1".into()), ..Header::new(Algorithm::HS256) };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap()
}

/// `{"alg":"none"}` with valid claims and an empty signature.
fn alg_none() -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT","kid":"a-rsa-1"}"#);
    let claims = json!({"iss": ISSUER_A, "aud": AUDIENCE_A, "azp": CLIENT_A, "exp": now() + 600});
    format!("{header}.{}.", b64.encode(claims.to_string()))
}
