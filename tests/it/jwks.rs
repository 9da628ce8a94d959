//! JWT signing keys from a `jwks_url`: fetched at start, refreshed (rotated keys accepted,
//! retired ones refused), and kept when the IdP's endpoint fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use scim_sidecar::app::{ReadyCheck, Sidecar, StartOptions};
use scim_sidecar::config::{JwksSource, JwtConfig};
use scim_sidecar::demo::demo_config;

use crate::auth::{fixture, jwt, AUDIENCE_A, CLIENT_A, ISSUER_A};
use crate::support::{fake, TOKEN};

/// A one-document HTTP server: answers every request with `(status, body)` as set now.
async fn jwks_server(document: Arc<Mutex<(u16, String)>>) -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let document = document.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = document.lock().unwrap().clone();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    url::Url::parse(&format!("http://{addr}/tenant/discovery/v2.0/keys")).unwrap()
}

#[tokio::test]
async fn keys_from_a_url_are_fetched_rotated_and_kept_when_the_endpoint_fails() {
    let jwks_a = std::fs::read_to_string(fixture("realm-a-jwks.json")).unwrap();
    let jwks_b = std::fs::read_to_string(fixture("realm-b-jwks.json")).unwrap();
    let document = Arc::new(Mutex::new((200, jwks_a)));
    let url = jwks_server(document.clone()).await;
    let zulip = fake().start().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = demo_config(listener.local_addr().unwrap(), zulip.base_url(), TOKEN).unwrap();
    config.realms[0].jwt = Some(JwtConfig {
        issuer: ISSUER_A.into(),
        audiences: vec![AUDIENCE_A.into()],
        jwks_source: JwksSource::Url(url),
        jwks: jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        client_ids: vec![CLIENT_A.into()],
        leeway: Duration::from_secs(5),
        jwks_refresh: Duration::from_secs(3600),
    });
    let running = Sidecar::start(&config, listener, StartOptions { ready: ReadyCheck::Awaited, live: None })
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let users = format!("http://{}/scim/v2/Users", running.addr());
    let status = |token: String| {
        let req = http.get(&users).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let old_key = || jwt("realm-a-rsa.pem", Algorithm::RS256, "a-rsa-1", json!({}));
    // The IdP's next key, published under its own kid.
    let new_key = || jwt("realm-b-rsa.pem", Algorithm::RS256, "b-rsa-1", json!({}));
    assert_eq!(status(old_key()).await, 200);
    assert_eq!(status(new_key()).await, 401);
    let realm = running.app().realms()[0].clone();

    document.lock().unwrap().1 = jwks_b;
    let summary = running.reloader().refresh_jwks().await.expect("the keys changed").unwrap();
    assert_eq!(summary.kept, ["demo"]);
    assert!(Arc::ptr_eq(&running.app().realms()[0], &realm), "a key rotation rebuilt the realm");
    assert_eq!(status(new_key()).await, 200);
    assert_eq!(status(old_key()).await, 401);
    assert_eq!(status(TOKEN.to_string()).await, 200);

    // The endpoint fails: the keys in force stay.
    document.lock().unwrap().0 = 503;
    assert!(running.reloader().refresh_jwks().await.is_none());
    assert_eq!(status(new_key()).await, 200);
    running.shutdown();
    running.join().await;
    zulip.shutdown().await;
}
