//! Hostile and broken clients (issue 12), on loopback with short configured timeouts: each
//! test asserts that an authenticated `GET /scim/v2/Users?count=1` is still answered 200
//! within [`BOUND`] while the abuse runs, and that the offending connections are closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use scim_sidecar::config::{Config, RateLimit, TlsConfig};

use crate::support::{fake, Harness, TOKEN};

/// How long the legitimate IdP request may take under abuse.
const BOUND: Duration = Duration::from_secs(1);

/// The short header timeout of these tests.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// Upper bound for "closed after the timeout" (the timeout plus scheduling slack).
const CLOSE_BOUND: Duration = Duration::from_secs(3);

fn short_timeouts(config: &mut Config) {
    config.server.header_read_timeout = HEADER_TIMEOUT;
    config.server.body_read_timeout = HEADER_TIMEOUT;
    config.server.idle_timeout = Duration::from_secs(5);
}

/// The IdP's request on a new connection (a client of its own, so it needs a slot): 200
/// within [`BOUND`]. Returns the latency.
async fn idp_is_served(addr: SocketAddr) -> Duration {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    // Timed from here: building the client (it loads the root certificates) is not the server's.
    let started = Instant::now();
    let response = tokio::time::timeout(
        BOUND,
        client.get(format!("http://{addr}/scim/v2/Users?count=1")).bearer_auth(TOKEN).send(),
    )
    .await
    .expect("the IdP is answered within the bound")
    .expect("the IdP's request goes through");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["itemsPerPage"], 1, "{body}");
    let latency = started.elapsed();
    assert!(latency < BOUND, "{latency:?}");
    latency
}

/// Reads until the server closes the connection (EOF or reset); what it sent, or `None`
/// if it is still open after `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(bound, read).await.ok()?;
    Some(received)
}

/// A connection that sent the start of a request and then nothing.
async fn half_open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: sidecar\r\nAccept: */*\r\n").await.unwrap();
    stream
}

/// One HTTP/1.1 response read from a raw connection (headers, then Content-Length bytes).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if data.len() >= end + 4 + length {
                    return;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed mid-response: {}", String::from_utf8_lossy(&data));
            data.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(CLOSE_BOUND, read).await.expect("a response");
    String::from_utf8(data).unwrap()
}

/// The value of one series on `/metrics` (0 when absent).
async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_closed_after_the_header_timeout() {
    let h = Harness::start_with(fake(), short_timeouts).await;
    let started = Instant::now();
    let mut partial = half_open(h.addr).await;
    // Nothing at all: hyper's own timeout does not cover the protocol detection.
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    // The HTTP/2 preface, then nothing.
    let mut h2_silent = TcpStream::connect(h.addr).await.unwrap();
    h2_silent.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();

    idp_is_served(h.addr).await;
    for stream in [&mut partial, &mut silent, &mut h2_silent] {
        closed_within(stream, CLOSE_BOUND).await.expect("closed after the header timeout");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= HEADER_TIMEOUT - Duration::from_millis(50), "closed before the timeout: {elapsed:?}");
    assert!(metric(h.addr, r#"scim_connections_closed_total{reason="header_timeout"}"#).await >= 2.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_and_its_connection_is_closed() {
    let h = Harness::start_with(fake(), short_timeouts).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 200\r\n\r\n{{\"schemas\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    idp_is_served(h.addr).await;
    let answer = closed_within(&mut stream, CLOSE_BOUND).await.expect("closed after the body timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("urn:ietf:params:scim:api:messages:2.0:Error"), "{answer}");
    assert!(answer.contains(r#""status":"408""#), "{answer}");
    assert!(h.upstream_writes().is_empty(), "nothing reached Zulip");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_at_their_timeouts() {
    let idle = Duration::from_secs(1);
    let h = Harness::start_with(fake(), |config| {
        short_timeouts(config);
        config.server.idle_timeout = idle;
    })
    .await;
    // HTTP/1.1 keep-alive, authenticated: waiting for the next request's headers is bounded by
    // the header timeout.
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    closed_within(&mut stream, CLOSE_BOUND).await.expect("an idle HTTP/1.1 connection is closed");

    // HTTP/2, authenticated: closed after the idle timeout (not the shorter header timeout).
    let (client, connection) =
        h2::client::handshake(TcpStream::connect(h.addr).await.unwrap()).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let get = http::Request::get(format!("http://{}/scim/v2/Users?count=1", h.addr))
        .header("authorization", format!("Bearer {TOKEN}"));
    let (response, _) = client.send_request(get.body(()).unwrap(), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let answered = Instant::now();
    tokio::time::timeout(idle + CLOSE_BOUND, driver)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .unwrap()
        .ok();
    let waited = answered.elapsed();
    assert!(waited >= idle - Duration::from_millis(100), "closed after {waited:?}, before the idle timeout");
    drop(client);
    assert!(metric(h.addr, r#"scim_connections_closed_total{reason="idle_timeout"}"#).await >= 1.0);
    h.stop().await;
}

/// The issue's "done when": 2,000 half-open connections held (twice `max_connections`) and
/// a 401 flood running; the IdP is still answered within a second, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_connections_and_a_401_flood_do_not_stop_the_idp() {
    // 2,000 connections are 4,000 descriptors in this process (both ends) besides the other
    // tests': make sure the soft limit allows them.
    let limit = rlimit::increase_nofile_limit(16_384).unwrap();
    assert!(limit >= 5_000, "RLIMIT_NOFILE {limit} is too low for this test");
    // Long enough that none times out while the IdP is measured, even on a loaded machine.
    let header_timeout = Duration::from_secs(10);
    let h = Harness::start_with(fake(), |config| {
        config.max_connections = 1024;
        config.server.header_read_timeout = header_timeout;
    })
    .await;
    let mut held = Vec::with_capacity(2000);
    for _ in 0..2000 {
        held.push(half_open(h.addr).await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (refused, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let (stop, refused, limited, addr) = (stop.clone(), refused.clone(), limited.clone(), h.addr);
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(CLOSE_BOUND).build().unwrap();
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let url = format!("http://{addr}/scim/v2/Users");
                    let Ok(response) = client.get(url).bearer_auth("guessed-token-0123456789").send().await
                    else {
                        continue;
                    };
                    match response.status().as_u16() {
                        401 => refused.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("a guessed token got {other}"),
                    };
                }
            })
        })
        .collect();

    let mut latencies = Vec::new();
    for _ in 0..10 {
        latencies.push(idp_is_served(h.addr).await);
    }
    // The half-open connections were held all along: every slot but the IdP's is theirs.
    let held_now = metric(h.addr, r#"scim_connections{state="anonymous"}"#).await;
    assert!(held_now >= 1000.0, "the sidecar held {held_now} anonymous connections");
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let (refused, limited) = (refused.load(Ordering::Relaxed), limited.load(Ordering::Relaxed));
    assert!(refused >= 1 && limited > refused, "401: {refused}, 429: {limited}");
    assert!(
        metric(h.addr, r#"scim_unauthenticated_requests_total{outcome="rate_limited"}"#).await
            >= limited as f64
    );
    assert!(metric(h.addr, r#"scim_connections_closed_total{reason="evicted"}"#).await >= 900.0);

    // Every half-open connection is closed: evicted for a newcomer, or at its timeout.
    let closed = join_all(held.iter_mut().map(|s| closed_within(s, header_timeout + CLOSE_BOUND))).await;
    assert_eq!(closed.iter().filter(|c| c.is_none()).count(), 0, "connections still open");
    eprintln!("IdP latency under abuse: max {:?}", latencies.iter().max());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_beyond_max_connections_evicts_the_flood_not_the_idp() {
    let h = Harness::start_with(fake(), |config| {
        short_timeouts(config);
        config.server.header_read_timeout = Duration::from_secs(30);
        config.max_connections = 64;
    })
    .await;
    // The IdP's keep-alive connection, authenticated before the flood.
    let idp = reqwest::Client::new();
    let url = format!("http://{}/scim/v2/Users?count=1", h.addr);
    assert_eq!(idp.get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 200);

    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(h.addr).await.unwrap());
    }
    // Its established connection is still served...
    let started = Instant::now();
    assert_eq!(idp.get(&url).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    assert!(started.elapsed() < BOUND);
    // ...and so is a new one.
    idp_is_served(h.addr).await;
    // The oldest flood connections were closed at once (the header timeout is 30 s here).
    let closed = join_all(flood.iter_mut().take(200).map(|s| closed_within(s, CLOSE_BOUND))).await;
    assert!(closed.iter().all(Option::is_some), "evicted connections are closed");
    assert!(metric(h.addr, r#"scim_connections{state="authenticated"}"#).await >= 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_slot_is_authenticated_a_newcomer_gets_503_with_retry_after() {
    let h = Harness::start_with(fake(), |config| config.max_connections = 2).await;
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    let mut idps = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(h.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        idps.push(stream);
    }
    let mut newcomer = TcpStream::connect(h.addr).await.unwrap();
    newcomer.write_all(request.as_bytes()).await.unwrap();
    let answer = closed_within(&mut newcomer, CLOSE_BOUND).await.expect("refused and closed");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains(r#""status":"503""#), "{answer}");

    // The authenticated connections are still served.
    let started = Instant::now();
    idps[0].write_all(request.as_bytes()).await.unwrap();
    assert!(read_response(&mut idps[0]).await.starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < BOUND);
    // Once one closes, a newcomer gets in.
    drop(idps.pop());
    let deadline = Instant::now() + CLOSE_BOUND;
    loop {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let url = format!("http://{}/scim/v2/Users?count=1", h.addr);
        // Refused: 503, or an error when the refusal beat the request out.
        match client.get(url).bearer_auth(TOKEN).send().await.map(|r| r.status().as_u16()) {
            Ok(200) => break,
            Ok(status) => assert_eq!(status, 503),
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "the freed slot is never reused");
        tokio::task::yield_now().await;
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_flood_is_rate_limited_per_address_and_its_connections_closed() {
    let h = Harness::start_with(fake(), |config| {
        config.server.unauthenticated_rate = RateLimit { per_second: 1, burst: 3 };
    })
    .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    // New connection each time (a limited connection is closed).
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..20 {
        let reply = client.get(h.url("/Users")).bearer_auth("guessed-token-0123456789").send().await.unwrap();
        statuses.push(reply.status().as_u16());
        if reply.status() == 429 {
            limited = Some(crate::support::Reply::from(reply).await);
        }
    }
    assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
    // One more 401 per second the loop takes.
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 10, "{statuses:?}");
    let limited = limited.unwrap();
    limited.assert_error(429, None);
    assert!(limited.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);

    // A keep-alive connection stays open after a 401, and is closed after a 429.
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let mut refused_here = 0;
    let answer = loop {
        stream.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: sidecar\r\n\r\n").await.unwrap();
        let answer = read_response(&mut stream).await;
        if !answer.starts_with("HTTP/1.1 401") || refused_here == 5 {
            break answer;
        }
        refused_here += 1;
    };
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    closed_within(&mut stream, CLOSE_BOUND).await.expect("closed after the 429");

    // The IdP, from the same address, is not limited by the guesses.
    idp_is_served(h.addr).await;
    assert_eq!(
        metric(h.addr, r#"scim_unauthenticated_requests_total{outcome="refused"}"#).await,
        (statuses.iter().filter(|s| **s == 401).count() + refused_here) as f64
    );
    h.stop().await;
}

#[tokio::test]
async fn a_realm_over_its_rate_limit_gets_429_with_retry_after() {
    let h = Harness::start_with(fake(), |config| {
        config.server.realm_rate = Some(RateLimit { per_second: 1, burst: 2 });
    })
    .await;
    h.get("/Users?count=1").await.assert_status(200);
    h.get("/Users?count=1").await.assert_status(200);
    let limited = h.get("/Users?count=1").await;
    limited.assert_error(429, None);
    assert!(limited.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert!(limited.body["detail"].as_str().unwrap().contains("rate limit of this realm"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_with_431() {
    let h = Harness::start_with(fake(), |config| config.server.max_header_bytes = 8192).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let big = "x".repeat(20_000);
    let request = format!("GET /scim/v2/Users HTTP/1.1\r\nHost: sidecar\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = closed_within(&mut stream, CLOSE_BOUND).await.expect("closed");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // HTTP/2: the header list is bounded too.
    let (client, connection) =
        h2::client::handshake(TcpStream::connect(h.addr).await.unwrap()).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{}/scim/v2/Users", h.addr))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-big", &big)
        .body(())
        .unwrap();
    match client.send_request(request, true) {
        Ok((response, _)) => match response.await {
            Ok(response) => assert_eq!(response.status(), 431),
            Err(e) => assert!(e.is_reset() || e.is_go_away() || e.is_io(), "{e}"),
        },
        Err(e) => panic!("the client refused to send: {e}"),
    }
    idp_is_served(h.addr).await;
    h.stop().await;
}

/// An HTTP/2 client opening far more streams than allowed: the server's limit holds them
/// back, the streams that got in time out at the body deadline, and the IdP is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_flood_is_bounded_and_does_not_delay_the_idp() {
    let h = Harness::start_with(fake(), |config| {
        short_timeouts(config);
        config.server.http2_max_concurrent_streams = 4;
    })
    .await;
    let (client, connection) =
        h2::client::handshake(TcpStream::connect(h.addr).await.unwrap()).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let users = format!("http://{}/scim/v2/Users", h.addr);
    // One authenticated request first: the server's SETTINGS are in once it is answered.
    let get =
        http::Request::get(format!("{users}?count=1")).header("authorization", format!("Bearer {TOKEN}"));
    let (response, _) = client.send_request(get.body(()).unwrap(), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 4, "the server's max_concurrent_streams");

    // Uploads that never finish fill every stream the server allows (authenticated: they
    // reach the body read).
    let mut pending = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let post = http::Request::post(&users)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/scim+json");
        client = client.ready().await.unwrap();
        let (response, mut body) = client.send_request(post.body(()).unwrap(), false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{\"schemas\":"), false).unwrap();
        pending.push(response);
        bodies.push(body);
    }
    idp_is_served(h.addr).await;
    // The streams that got in are answered 408 at the body deadline.
    for response in pending {
        let response = tokio::time::timeout(CLOSE_BOUND, response).await.expect("answered").unwrap();
        assert_eq!(response.status(), 408);
    }
    assert!(h.upstream_writes().is_empty());
    drop(bodies);
    drop(client);
    driver.abort();

    // Unauthenticated streams on one connection: past the address's burst the answer is 429
    // and the connection is shut down (GOAWAY).
    let (client, connection) =
        h2::client::handshake(TcpStream::connect(h.addr).await.unwrap()).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let Ok(ready) = client.clone().ready().await else { break };
        client = ready;
        let get = http::Request::get(&users).header("authorization", "Bearer guessed-token-0123456789");
        let Ok((response, _)) = client.send_request(get.body(()).unwrap(), true) else { break };
        match response.await {
            Ok(response) => statuses.push(response.status().as_u16()),
            Err(_) => break,
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.len() < 100, "the connection was shut down: {statuses:?}");
    let ended = tokio::time::timeout(CLOSE_BOUND, driver).await.expect("the connection ends");
    drop(ended);
    idp_is_served(h.addr).await;
    h.stop().await;
}

/// HTTP/2 "rapid reset" (CVE-2023-44487): streams opened and cancelled at once cost the
/// server work but hold no stream slot; past a bound the connection is refused (GOAWAY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_flood_ends_its_connection() {
    // Timeouts long enough not to be what ends the connection.
    let h = Harness::start_with(fake(), |config| config.server.header_read_timeout = Duration::from_secs(30))
        .await;
    let (client, connection) =
        h2::client::handshake(TcpStream::connect(h.addr).await.unwrap()).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client;
    let mut sent = 0;
    for _ in 0..10_000 {
        let Ok(ready) = client.clone().ready().await else { break };
        client = ready;
        let get = http::Request::get(format!("http://{}/scim/v2/Users", h.addr))
            .header("authorization", format!("Bearer {TOKEN}"));
        let Ok((_, mut stream)) = client.send_request(get.body(()).unwrap(), false) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let ended =
        tokio::time::timeout(CLOSE_BOUND, driver).await.expect("the connection is ended by the server");
    assert!(sent < 10_000, "every reset was accepted ({sent})");
    drop(ended);
    idp_is_served(h.addr).await;
    h.stop().await;
}

/// A self-signed certificate for `localhost`, written as PEM files.
struct TestCert {
    pem: String,
}

fn write_cert(dir: &std::path::Path) -> TestCert {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = generated.cert.pem();
    std::fs::write(dir.join("cert.pem"), &pem).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    TestCert { pem }
}

fn tls_client(cert: &TestCert, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .pool_max_idle_per_host(0)
        .use_rustls_tls();
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

async fn tls_get(client: &reqwest::Client, addr: SocketAddr) -> reqwest::Result<reqwest::Response> {
    client
        .get(format!("https://localhost:{}/scim/v2/Users?count=1", addr.port()))
        .bearer_auth(TOKEN)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_with_h2_and_certificate_reload() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("scim-sidecar-tls-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = write_cert(&dir);
    let tls = TlsConfig {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
        reload_interval: Duration::from_millis(1),
    };
    let h = Harness::start_with(fake(), |config| {
        short_timeouts(config);
        config.server.tls = Some(tls);
    })
    .await;

    let response = tls_get(&tls_client(&first, h.addr, false), h.addr).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2, "ALPN h2");
    let response = tls_get(&tls_client(&first, h.addr, true), h.addr).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    // Plain HTTP is not served on a TLS listener.
    assert!(reqwest::get(format!("http://{}/livez", h.addr)).await.is_err());
    // A client that never starts the handshake is closed at the header timeout.
    let mut silent = TcpStream::connect(h.addr).await.unwrap();
    closed_within(&mut silent, CLOSE_BOUND).await.expect("closed");

    // New files: new connections get the new certificate.
    let second = write_cert(&dir);
    let deadline = Instant::now() + CLOSE_BOUND;
    while tls_get(&tls_client(&second, h.addr, false), h.addr).await.is_err() {
        assert!(Instant::now() < deadline, "the new certificate is never served");
        tokio::task::yield_now().await;
    }
    assert!(tls_get(&tls_client(&first, h.addr, false), h.addr).await.is_err(), "the old one is gone");

    // A broken file keeps the current certificate.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let response = tls_get(&tls_client(&second, h.addr, false), h.addr).await.unwrap();
    assert_eq!(response.status(), 200);
    h.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
