//! `scim-load abuse`: the IdP's latency while hostile clients hold connections and guess
//! tokens (issue 12). In-process FakeZulip + sidecar on 127.0.0.1, bounded in connections and
//! time; numbers go to RELIABILITY.md ("Abuse").
//!
//! 1. Baseline: `--samples` sequential authenticated `GET /scim/v2/Users?count=1`, each on a
//!    new connection (the worst case for the IdP: it needs a slot every time).
//! 2. Abuse: `--half-open` connections that sent the start of a request line and headers,
//!    then nothing; and `--flood-workers` clients sending requests with guessed tokens
//!    back to back. While both run (`--duration`), the same IdP requests are timed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{percentile_ms, seeded_fake, Result, Stack, TOKEN};

/// Upper bounds, so that a typo cannot exhaust the machine.
const MAX_HALF_OPEN: usize = 10_000;
const MAX_DURATION: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct AbuseArgs {
    /// Half-open connections opened before the measurement (at most 10,000; each costs two
    /// file descriptors in this process).
    #[arg(long, default_value_t = 2000)]
    half_open: usize,
    /// Clients sending requests with guessed tokens, back to back.
    #[arg(long, default_value_t = 4)]
    flood_workers: usize,
    /// How long the abuse runs while the IdP is timed (at most 60 s; keep it below the header
    /// timeout so that the half-open connections are still held at the end).
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    duration: Duration,
    /// Sequential IdP requests of the baseline.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The sidecar's `max_connections`.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Users seeded in the fake.
    #[arg(long, default_value_t = 1000)]
    users: u64,
}

/// What the IdP saw.
#[derive(Debug, Default)]
struct Idp {
    latencies_us: Vec<u32>,
    failures: u64,
}

pub async fn abuse(args: AbuseArgs) -> Result<()> {
    if args.half_open > MAX_HALF_OPEN || args.duration > MAX_DURATION {
        return Err(format!("at most {MAX_HALF_OPEN} half-open connections and {MAX_DURATION:?}").into());
    }
    let max_connections = args.max_connections;
    let stack =
        Stack::start(seeded_fake(args.users), |config| config.max_connections = max_connections).await?;
    let url = format!("{}/scim/v2/Users?count=1", stack.base());
    // No idle connection is kept: every request opens a new one.
    let idp = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build()?;

    let mut baseline = Idp::default();
    for _ in 0..args.samples {
        idp_request(&idp, &url, &mut baseline).await;
    }

    let opened = Instant::now();
    let held = hold_half_open(&stack, args.half_open).await?;
    let open_ms = opened.elapsed().as_secs_f64() * 1000.0;
    let flood = Flood::start(args.flood_workers, &url);

    let mut under_abuse = Idp::default();
    let deadline = Instant::now() + args.duration;
    while Instant::now() < deadline {
        idp_request(&idp, &url, &mut under_abuse).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", stack.base())).await?.text().await?;
    let flooded = flood.stop().await;
    drop(held);
    stack.stop().await;

    print_abuse(&args, open_ms, &metrics, flooded);
    println!();
    println!("| IdP GET /scim/v2/Users?count=1, new connection each | requests | failed | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    baseline.print_row("baseline (no abuse)");
    under_abuse.print_row("under abuse");
    Ok(())
}

/// Opens `count` connections to the sidecar that send the start of a request line and
/// headers, then nothing; they are held until dropped.
async fn hold_half_open(stack: &Stack, count: usize) -> Result<Vec<TcpStream>> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(stack.addr).await?;
        stream.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: sidecar\r\nAccept: */*\r\n").await?;
        held.push(stream);
    }
    Ok(held)
}

/// Clients sending requests with guessed tokens to one URL, back to back, counting the
/// answers: 401, 429, and anything else (or a failure).
struct Flood {
    stop: Arc<AtomicBool>,
    statuses: Arc<[AtomicU64; 3]>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(workers: usize, url: &str) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let workers = (0..workers)
            .map(|_| {
                let (stop, statuses, url) = (stop.clone(), statuses.clone(), url.to_string());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    // Bounded: stops at the end of the duration, or after this many requests.
                    for _ in 0..10_000_000u64 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let status = client.get(&url).bearer_auth("guessed-token-0123456789").send().await;
                        let slot = match status.map(|r| r.status().as_u16()) {
                            Ok(401) => 0,
                            Ok(429) => 1,
                            _ => 2,
                        };
                        statuses[slot].fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Flood { stop, statuses, workers }
    }

    /// Stops the clients and waits for them: the counts of 401s, 429s and others.
    async fn stop(self) -> [u64; 3] {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.workers {
            let _ = task.await;
        }
        [0, 1, 2].map(|i| self.statuses[i].load(Ordering::Relaxed))
    }
}

/// What the abuse was and what the sidecar held at the end (from its `/metrics` text).
fn print_abuse(args: &AbuseArgs, open_ms: f64, metrics: &str, [refused, limited, failed]: [u64; 3]) {
    let series = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    };
    println!(
        "half-open connections opened: {} in {open_ms:.0} ms; max_connections {}",
        args.half_open, args.max_connections
    );
    println!(
        "held by the sidecar at the end: {} anonymous, {} authenticated; evicted for newcomers: {}",
        series(r#"scim_connections{state="anonymous"}"#),
        series(r#"scim_connections{state="authenticated"}"#),
        series(r#"scim_connections_closed_total{reason="evicted"}"#),
    );
    println!(
        "guessed-token flood ({} workers, {:?}): {refused} × 401, {limited} × 429, {failed} other/failed ({:.0} req/s)",
        args.flood_workers,
        args.duration,
        (refused + limited + failed) as f64 / args.duration.as_secs_f64()
    );
}

impl Idp {
    /// One row of the IdP table (sorts the samples).
    fn print_row(&mut self, name: &str) {
        self.latencies_us.sort_unstable();
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |",
            self.latencies_us.len(),
            self.failures,
            percentile_ms(&self.latencies_us, 50.0),
            percentile_ms(&self.latencies_us, 99.0),
            self.latencies_us.last().map_or(f64::NAN, |us| f64::from(*us) / 1000.0),
        );
    }
}

/// One IdP request on a new connection; a failure or a non-200 counts as failed.
async fn idp_request(client: &reqwest::Client, url: &str, idp: &mut Idp) {
    let started = Instant::now();
    let ok = match client.get(url).bearer_auth(TOKEN).send().await {
        Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
        Err(_) => false,
    };
    if ok {
        idp.latencies_us.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    } else {
        idp.failures += 1;
    }
}
