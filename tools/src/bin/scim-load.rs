//! `scim-load`: a small HTTP load generator for scim-sidecar, and self-contained benchmarks that
//! start a FakeZulip (N users) and the sidecar in this process, exactly as the integration
//! harness does (`demo_config` + `build_app` + `server::run` on 127.0.0.1:0).
//!
//! ```text
//! scim-load --url URL --token T --path '/scim/v2/Users/{i}' --vary-start 9 --vary 1000 \
//!           --concurrency 8 --duration 10s          # any server; `{i}` cycles through the range
//! scim-load bench --users 10000                     # read scenarios vs /livez, RSS, lookups
//! scim-load import --users 1000                     # Okta-shaped import: upstream calls per user
//! scim-load import --users 2000 --rate-limit-scaled # Zulip's limits ×10 faster: wall vs floor
//! scim-load import --users 1000 --latency realistic --concurrency 1,4 --max-in-flight 1,8
//!                                                   # serial vs concurrent writes, one summary
//! scim-load event-latency --users 1000              # Zulip change → visible over SCIM
//! scim-load abuse --half-open 2000 --duration 5s    # IdP latency under connection/401 floods
//! ```
//!
//! Not used by the tests; numbers go to BENCHMARKS.md.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use fake_zulip::{FakeUser, FakeZulip, FakeZulipBuilder, LatencyProfile, RateLimitRules, RecordedRequest};
use scim_sidecar::app::{ReadyCheck, Running, Sidecar, StartOptions};
use scim_sidecar::config::Config;
use scim_sidecar::demo::{demo_config, DEMO_SERVICE_API_KEY, DEMO_SERVICE_EMAIL};
use scim_sidecar::provision::live::LiveOptions;

#[path = "scim-load/abuse.rs"]
mod abuse;

type BoxError = Box<dyn StdError + Send + Sync>;
/// Request number → path (and query).
type PathFn = Arc<dyn Fn(u64) -> String + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const TOKEN: &str = "bench-token-0123456789abcdef";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

#[derive(Debug, Parser)]
#[command(name = "scim-load", about = "Load generator and benchmarks for scim-sidecar")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// In-process FakeZulip (N users) + sidecar: snapshot load, RSS, lookup latency, and the
    /// read scenarios side by side with /livez.
    Bench(BenchArgs),
    /// Okta-shaped import (page through all users) + creation (filter, then POST) of N users;
    /// counts the upstream calls in the fake's request log.
    Import(ImportArgs),
    /// Latency from a change made directly in Zulip to the change being visible over SCIM.
    EventLatency(EventArgs),
    /// Only the FakeZulip with N users, in this process, until Ctrl-C: lets a real
    /// `scim-sidecar serve` run in its own process, so its memory is measured alone.
    Fake(FakeArgs),
    /// IdP latency while half-open connections are held and a guessed-token flood runs
    /// (in-process, loopback, bounded): RELIABILITY.md "Abuse".
    Abuse(abuse::AbuseArgs),
}

#[derive(Debug, Args)]
struct FakeArgs {
    /// Human users seeded in the fake (besides the service account).
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9991")]
    listen: std::net::SocketAddr,
}

/// `scim-load fake`: serves the seeded fake until interrupted.
async fn fake_only(args: FakeArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("bind: {e}"))?;
    let fake = seeded_fake(args.users).start_on(listener).await.map_err(|e| format!("fake: {e}"))?;
    println!(
        "fake Zulip with {} users at {} (service account {DEMO_SERVICE_EMAIL})",
        args.users,
        fake.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    fake.shutdown().await;
    Ok(())
}

/// Load against any running server.
#[derive(Debug, Args)]
struct RunArgs {
    /// Base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: Option<String>,
    /// Bearer token (omit for /livez).
    #[arg(long)]
    token: Option<String>,
    /// Request path (and query); `{i}` is replaced by vary-start + (n mod vary).
    #[arg(long, default_value = "/livez")]
    path: String,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1)]
    vary: u64,
    #[arg(long, default_value_t = 0)]
    vary_start: u64,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Human users seeded in the fake (besides the service account).
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Concurrency levels of the load scenarios.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    concurrency: Vec<usize>,
    /// Duration of each load scenario.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Skip the load scenarios (memory, snapshot load and lookup latencies only).
    #[arg(long)]
    no_load: bool,
    /// Sequential requests per lookup-latency row.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Exit right after the snapshot load without freeing anything, so that a heap profiler
    /// (`heaptrack scim-load bench --exit-after-snapshot`) reports the live heap as "leaked".
    #[arg(long, hide = true)]
    exit_after_snapshot: bool,
    /// Give every user a title, an employee number and a department in custom profile
    /// fields mapped by `custom_profile_field_map`, and measure filters on them.
    #[arg(long)]
    mapped: bool,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Users the IdP creates.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Users already in Zulip (the IdP's import pages through them first).
    #[arg(long, default_value_t = 100)]
    existing: u64,
    /// Users provisioned in parallel (each: filter, then POST); a list runs each in turn
    /// (`1,4,5`: Okta's 1–5; Entra sends its batches about this wide).
    #[arg(long, default_value = "4", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// The sidecar's `upstream.max_in_flight`; a list runs each in turn (`1,8`: the serial
    /// path and the concurrent one, compared in the summary).
    #[arg(long, default_value = "8", value_delimiter = ',')]
    max_in_flight: Vec<usize>,
    /// FakeZulip's answer times: `none`, or `realistic` (POST /users 200–300 ms, other writes
    /// 50–100 ms, reads 5–40 ms; seeded, so runs are comparable).
    #[arg(long, default_value = "none")]
    latency: String,
    /// Enforce Zulip's per-account limits time-scaled ×10: 200 per 6 s and 2,000 per 360 s.
    #[arg(long)]
    rate_limit_scaled: bool,
    /// The sidecar's snapshot TTL.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    snapshot_ttl: Duration,
    /// Store each user's `externalId` in the custom profile field with this label.
    #[arg(long)]
    external_id_field: Option<String>,
}

#[derive(Debug, Args)]
struct EventArgs {
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Give up on one sample after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| c.is_ascii_alphabetic()).map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scim-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Some(Command::Bench(args)) => bench(args).await,
            Some(Command::Import(args)) => import(args).await,
            Some(Command::EventLatency(args)) => event_latency(args).await,
            Some(Command::Fake(args)) => fake_only(args).await,
            Some(Command::Abuse(args)) => abuse::abuse(args).await,
            None => run_external(cli.run).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scim-load: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

// === load loop ===

/// What one load run measured.
#[derive(Debug, Default)]
struct Stats {
    ok: u64,
    errors: u64,
    /// Non-2xx statuses (0 = transport error) and how often.
    statuses: BTreeMap<u16, u64>,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

impl Stats {
    fn rps(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }
    /// Counts one request that took `us` microseconds and answered `status` (0: transport error).
    fn record(&mut self, status: u16, us: u32) {
        self.latencies_us.push(us);
        if (200..300).contains(&status) {
            self.ok += 1;
        } else {
            self.errors += 1;
            *self.statuses.entry(status).or_default() += 1;
        }
    }
    /// Adds one worker's counts and samples (unsorted) to these.
    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// `p`-th percentile of sorted microsecond samples, in ms.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted_us.len() as f64 - 1.0) * p / 100.0).round() as usize;
    f64::from(sorted_us[rank.min(sorted_us.len() - 1)]) / 1000.0
}

/// `concurrency` workers send GET `base + path(n)` back to back for `duration`.
async fn load(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    path: PathFn,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (client, base, token, path, counter) =
            (client.clone(), base.to_string(), token.map(str::to_string), path.clone(), counter.clone());
        workers.push(tokio::spawn(async move {
            load_worker(&client, &base, token.as_deref(), &path, &counter, deadline).await
        }));
    }
    let mut total = Stats::default();
    for w in workers {
        if let Ok(s) = w.await {
            total.merge(s);
        }
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}

/// One worker of [`load`]: GETs the next path until `deadline`, one request at a time.
async fn load_worker(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    path: &PathFn,
    counter: &AtomicU64,
    deadline: Instant,
) -> Stats {
    let mut stats = Stats::default();
    while Instant::now() < deadline {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let mut req = client.get(format!("{base}{}", path(n)));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let t0 = Instant::now();
        let status = response_status(req).await;
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        stats.record(status, us);
    }
    stats
}

/// Sends `req` and reads its whole body: the status, or 0 for a transport error.
async fn response_status(req: reqwest::RequestBuilder) -> u16 {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn run_external(args: RunArgs) -> Result<()> {
    let Some(url) = args.url else {
        return Err("--url is required (or use a subcommand: bench, import, event-latency)".into());
    };
    let client = http_client()?;
    let template = args.path.clone();
    let (vary, start) = (args.vary.max(1), args.vary_start);
    let path: PathFn = Arc::new(move |n| template.replace("{i}", &(start + n % vary).to_string()));
    let stats = load(
        &client,
        url.trim_end_matches('/'),
        args.token.as_deref(),
        path,
        args.concurrency,
        args.duration,
    )
    .await;
    println!("| path | concurrency | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    print_row(&args.path, args.concurrency, &stats, None);
    Ok(())
}

fn print_row(name: &str, concurrency: usize, s: &Stats, baseline: Option<f64>) {
    let ratio = baseline.map(|b| format!(" {:.2} |", s.rps() / b)).unwrap_or_default();
    let errors =
        if s.statuses.is_empty() { s.errors.to_string() } else { format!("{} {:?}", s.errors, s.statuses) };
    println!(
        "| {name} | {concurrency} | {:.0} | {:.2} | {:.2} | {errors} |{ratio}",
        s.rps(),
        s.percentile_ms(50.0),
        s.percentile_ms(99.0)
    );
}

// === in-process stack ===

/// A FakeZulip and the sidecar in front of it, both on 127.0.0.1:0, with each realm's live
/// task following the fake's events, as `serve` and `demo` run them.
struct Stack {
    fake: FakeZulip,
    addr: SocketAddr,
    running: Running,
    /// Calls made by the readiness check (before the live task starts).
    readiness_calls: u64,
}

impl Stack {
    async fn start(fake: FakeZulipBuilder, tweak: impl FnOnce(&mut Config)) -> Result<Stack> {
        let fake = fake.start().await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut config = demo_config(listener.local_addr()?, fake.base_url(), TOKEN)?;
        tweak(&mut config);
        let options = StartOptions { ready: ReadyCheck::Awaited, live: None };
        let mut running = Sidecar::start(&config, listener, options).await?;
        let readiness_calls = fake.take_requests().len() as u64;
        running.start_live(LiveOptions::default());
        Ok(Stack { fake, addr: running.addr(), running, readiness_calls })
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `/readyz` answers 200 (every realm's snapshot is loaded).
    async fn wait_ready(&self, client: &reqwest::Client, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let ready = client.get(format!("{}/readyz", self.base())).send().await?.status().is_success();
            if ready {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                return Err(format!("/readyz not ready after {limit:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.running.shutdown();
        self.running.join().await;
        self.fake.clone().shutdown().await;
    }
}

/// The fake every benchmark starts from: a service account (owner), system groups, `n` people.
fn seeded_fake(n: u64) -> FakeZulipBuilder {
    let mut b =
        FakeZulip::builder().service_account(DEMO_SERVICE_EMAIL, DEMO_SERVICE_API_KEY).with_system_groups();
    for i in 0..n {
        b = b.with_user(FakeUser::new(&person_email(i), &format!("Person{i} Surname{i}")));
    }
    b
}

/// The enterprise extension's URN.
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The custom profile fields of `bench --mapped`, in the order the fake assigns ids 1, 2, 3.
const MAPPED_FIELDS: [(&str, &str); 3] = [
    ("title", "Job title"),
    ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "Employee number"),
    ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "Department"),
];

/// [`seeded_fake`] plus three short text fields and a value in each for every person: title
/// `Title{i % 50}`, employee number `E{i}`, department `Dept{i % 20}`.
fn seeded_fake_with_profiles(n: u64) -> FakeZulipBuilder {
    let mut b =
        FakeZulip::builder().service_account(DEMO_SERVICE_EMAIL, DEMO_SERVICE_API_KEY).with_system_groups();
    for (_, label) in MAPPED_FIELDS {
        b = b.with_profile_field(label, 1);
    }
    for i in 0..n {
        let mut u = FakeUser::new(&person_email(i), &format!("Person{i} Surname{i}"));
        u.profile_data.insert(1, format!("Title{}", i % 50));
        u.profile_data.insert(2, format!("E{i}"));
        u.profile_data.insert(3, format!("Dept{}", i % 20));
        b = b.with_user(u);
    }
    b
}

fn map_profile_fields(config: &mut Config) {
    config.realms[0].custom_profile_field_map = MAPPED_FIELDS
        .iter()
        .filter_map(|(attr, label)| Some((scim::catalog::OptionalAttr::parse(attr).ok()?, label.to_string())))
        .collect();
}

/// Filters and sorting on mapped attributes (each a scan of the snapshot).
async fn mapped_filters(client: &reqwest::Client, base: &str, samples: usize, m: usize) -> Result<()> {
    let encode = |f: &str| -> String { url::form_urlencoded::byte_serialize(f.as_bytes()).collect() };
    type Row = (String, Box<dyn Fn(usize) -> String>, Option<u64>);
    let rows: Vec<Row> = vec![
        (
            format!("{ENTERPRISE}:employeeNumber eq \"E…\" (1 match)"),
            Box::new(move |k| format!("{ENTERPRISE}:employeeNumber eq \"E{}\"", (k * 7919) % m)),
            Some(1),
        ),
        (
            "title co \"itle7\" (Title7: 1 in 50 users)".into(),
            Box::new(|_| "title co \"itle7\"".into()),
            None,
        ),
        (
            format!("{ENTERPRISE}:department eq \"Dept3\" and title sw \"title1\""),
            Box::new(move |_| format!("{ENTERPRISE}:department eq \"Dept3\" and title sw \"title1\"")),
            None,
        ),
    ];
    for (label, filter, want) in rows {
        let (lat, body) =
            sequential(client, base, samples, |k| format!("/scim/v2/Users?filter={}", encode(&filter(k))))
                .await?;
        if want.is_some() && body["totalResults"].as_u64() != want {
            return Err(format!("{label}: unexpected {body}").into());
        }
        let total = body["totalResults"].as_u64().unwrap_or(0);
        print_latency(&format!("GET /Users?filter={label} ({total} results; {samples} requests)"), &lat);
    }
    let filter = encode(&format!("{ENTERPRISE}:department eq \"Dept3\""));
    let sort = encode(&format!("{ENTERPRISE}:employeeNumber"));
    let (lat, body) = sequential(client, base, samples, |_| {
        format!("/scim/v2/Users?filter={filter}&sortBy={sort}&count=100")
    })
    .await?;
    print_latency(
        &format!(
            "GET /Users?filter=department eq \"Dept3\"&sortBy=employeeNumber ({} sorted; {samples} requests)",
            body["totalResults"]
        ),
        &lat,
    );
    Ok(())
}

fn person_email(i: u64) -> String {
    format!("person{i}@zulip.example.com")
}

/// VmRSS and VmHWM of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<(u16, Value)> {
    let resp = client.get(url).bearer_auth(TOKEN).send().await?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn filter_path(email: &str) -> String {
    let filter = format!("userName eq \"{email}\"");
    let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/scim/v2/Users?filter={encoded}")
}

/// Sequential latency of `samples` requests, `path(k)` for k = 0..samples.
async fn sequential(
    client: &reqwest::Client,
    base: &str,
    samples: usize,
    path: impl Fn(usize) -> String,
) -> Result<(Vec<u32>, Value)> {
    let mut lat = Vec::with_capacity(samples);
    let mut last = Value::Null;
    for k in 0..samples {
        let t0 = Instant::now();
        let (status, body) = get_json(client, &format!("{base}{}", path(k))).await?;
        lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
        if status != 200 {
            return Err(format!("{} answered {status}: {body}", path(k)).into());
        }
        last = body;
    }
    lat.sort_unstable();
    Ok((lat, last))
}

// === bench ===

/// `scim-load bench`: the cold start (seeding, snapshot load, memory), lookup latencies,
/// throughput under load, and the upstream calls all of it made.
async fn bench(args: BenchArgs) -> Result<()> {
    let n = args.users;
    let (stack, client, cold) = start_cold(&args).await?;
    if args.exit_after_snapshot {
        println!(
            "rss after fake {:.1} MiB, after snapshot {:.1} MiB; exiting",
            cold.rss_fake, cold.rss_sidecar
        );
        std::process::exit(0);
    }
    let base = stack.base();
    let ids = Arc::new(seeded_ids(&stack.fake));
    print_cold(n, &cold);

    // Lookup latency, sequential (concurrency 1).
    println!("\n### lookup latency at {n} users (sequential, {} requests per row)\n", args.samples);
    println!("| request | p50 ms | p99 ms | max ms |\n|---|---|---|---|");
    page_latency(&client, &base, args.samples, cold.total).await?;
    if !ids.is_empty() {
        lookup_latency(&client, &base, &args, &ids).await?;
    }

    if !args.no_load && !ids.is_empty() {
        throughput(&client, &base, &args, &ids).await;
    }
    let warm_calls = stack.fake.take_requests();
    println!(
        "\nupstream calls after the first read (all lookups and load above; events long-polls included): {} {}",
        warm_calls.len(),
        summarize(&warm_calls)
    );
    fake_users_cost(&client, &stack.fake).await?;
    stack.stop().await;
    Ok(())
}

/// What the cold start of a bench measured.
struct Cold {
    seed_time: Duration,
    snapshot_load: Duration,
    /// `totalResults` of the first read: the human users in the snapshot.
    total: u64,
    /// RSS at start, after the fake is built and after the snapshot load, and peak RSS (MiB).
    rss0: f64,
    rss_fake: f64,
    rss_sidecar: f64,
    hwm: f64,
    /// The upstream calls up to the first read.
    cold_calls: Vec<RecordedRequest>,
}

/// Seeds the fake with `args.users` people, starts the sidecar on it and makes the first
/// read, measuring each step; the client that made it is warm for the rest of the bench.
async fn start_cold(args: &BenchArgs) -> Result<(Stack, reqwest::Client, Cold)> {
    let n = args.users;
    let (rss0, _) = rss_mib();
    let t = Instant::now();
    let builder = if args.mapped { seeded_fake_with_profiles(n) } else { seeded_fake(n) };
    let seed_time = t.elapsed();
    let stack = Stack::start(builder, |c| {
        if args.mapped {
            map_profile_fields(c)
        }
    })
    .await?;
    let (rss_fake, _) = rss_mib();
    let client = http_client()?;
    let base = stack.base();

    // Cold: the live task registers an event queue and loads the snapshot (GET /users);
    // `/readyz` turns 200 once it is in.
    let snapshot_load = stack.wait_ready(&client, Duration::from_secs(600)).await?;
    let (status, body) = get_json(&client, &format!("{base}/scim/v2/Users?startIndex=1&count=1")).await?;
    if status != 200 {
        return Err(format!("first read answered {status}: {body}").into());
    }
    let total = body["totalResults"].as_u64().unwrap_or(0);
    let (rss_sidecar, hwm) = rss_mib();
    let cold_calls = stack.fake.take_requests();
    let cold = Cold { seed_time, snapshot_load, total, rss0, rss_fake, rss_sidecar, hwm, cold_calls };
    Ok((stack, client, cold))
}

/// The ids of the seeded people (the fake assigns them in insertion order).
fn seeded_ids(fake: &FakeZulip) -> Vec<u64> {
    let mut users: Vec<FakeUser> =
        fake.users().into_iter().filter(|u| u.delivery_email.starts_with("person")).collect();
    users.sort_by_key(|u| u.user_id);
    users.iter().map(|u| u.user_id).collect()
}

/// The report's heading and its cold-start table.
fn print_cold(n: u64, cold: &Cold) {
    let Cold { seed_time, snapshot_load, total, rss0, rss_fake, rss_sidecar, hwm, cold_calls } = cold;
    println!("## scim-load bench --users {n}\n");
    println!("| measure | value |\n|---|---|");
    println!("| machine load (1/5/15 min) | {} |", loadavg());
    println!("| human users in snapshot (totalResults) | {total} |");
    println!("| seeding the fake (builder, {n} × with_user) | {:.2} s |", seed_time.as_secs_f64());
    println!(
        "| snapshot load (live task start → /readyz 200: register + GET /users + decode + index) | {:.0} ms |",
        snapshot_load.as_secs_f64() * 1000.0
    );
    println!("| upstream calls up to the first read | {} ({}) |", cold_calls.len(), summarize(cold_calls));
    println!("| RSS at start | {rss0:.1} MiB |");
    println!("| RSS after the fake is built (fake's share) | {rss_fake:.1} MiB (+{:.1}) |", rss_fake - rss0);
    println!(
        "| RSS after the sidecar's snapshot load (sidecar's share) | {rss_sidecar:.1} MiB (+{:.1}) |",
        rss_sidecar - rss_fake
    );
    println!("| peak RSS (VmHWM) | {hwm:.1} MiB |");
}

/// Latency rows of the first, middle and last page of 100 of `total` users.
async fn page_latency(client: &reqwest::Client, base: &str, samples: usize, total: u64) -> Result<()> {
    let human_total = usize::try_from(total).unwrap_or(usize::MAX).max(1);
    let pages: [(&str, usize); 3] =
        [("first", 1), ("middle", (human_total / 2).max(1)), ("last", human_total.saturating_sub(99).max(1))];
    for (label, start) in pages {
        let (lat, body) =
            sequential(client, base, samples, |_| format!("/scim/v2/Users?startIndex={start}&count=100"))
                .await?;
        let items = body["itemsPerPage"].as_u64().unwrap_or(0);
        print_latency(
            &format!("GET /Users?startIndex={start}&count=100 ({label} page, {items} items)"),
            &lat,
        );
    }
    Ok(())
}

/// Latency rows of single-user lookups over the seeded people `ids`: by userName (indexed),
/// by id, by displayName (a scan), and with `--mapped` by mapped profile fields.
async fn lookup_latency(client: &reqwest::Client, base: &str, args: &BenchArgs, ids: &[u64]) -> Result<()> {
    let m = ids.len();
    let (lat, body) =
        sequential(client, base, args.samples, |k| filter_path(&person_email(((k * 7919) % m) as u64)))
            .await?;
    if body["totalResults"].as_u64() != Some(1) {
        return Err(format!("userName eq filter did not find one user: {body}").into());
    }
    print_latency("GET /Users?filter=userName eq \"…\" (varying users)", &lat);
    let (lat, _) =
        sequential(client, base, args.samples, |k| format!("/scim/v2/Users/{}", ids[(k * 7919) % m])).await?;
    print_latency("GET /Users/{id} (varying users)", &lat);
    let scan_samples = if args.users >= 50_000 { 10 } else { args.samples.min(50) };
    let (lat, body) = sequential(client, base, scan_samples, |k| {
        let i = (k * 7919) % m;
        let filter = format!("displayName eq \"Person{i} Surname{i}\"");
        let encoded: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        format!("/scim/v2/Users?filter={encoded}")
    })
    .await?;
    if body["totalResults"].as_u64() != Some(1) {
        return Err(format!("displayName eq filter did not find one user: {body}").into());
    }
    print_latency(
        &format!("GET /Users?filter=displayName eq \"…\" (not indexed; {scan_samples} requests)"),
        &lat,
    );
    if args.mapped {
        mapped_filters(client, base, scan_samples, m).await?;
    }
    Ok(())
}

/// The throughput table: at each concurrency, `/livez` as the baseline, then the
/// [`throughput_scenarios`] over the seeded people `ids`.
async fn throughput(client: &reqwest::Client, base: &str, args: &BenchArgs, ids: &Arc<Vec<u64>>) {
    println!(
        "\n### throughput at {} users ({} s per row; ratio = req/s ÷ /livez req/s at the same concurrency)\n",
        args.users,
        args.duration.as_secs_f64()
    );
    println!("| scenario | concurrency | req/s | p50 ms | p99 ms | errors | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for &c in &args.concurrency {
        let livez = load(client, base, None, Arc::new(|_| "/livez".to_string()), c, args.duration).await;
        let baseline = livez.rps();
        print_row("GET /livez", c, &livez, Some(baseline));
        for (name, path) in throughput_scenarios(ids) {
            let stats = load(client, base, Some(TOKEN), path, c, args.duration).await;
            print_row(name, c, &stats, Some(baseline));
        }
    }
}

/// The authenticated load scenarios, each spreading its requests over the seeded people `ids`.
fn throughput_scenarios(ids: &Arc<Vec<u64>>) -> Vec<(&'static str, PathFn)> {
    let m = ids.len();
    let ids = ids.clone();
    vec![
        (
            "GET /Users/{id} (cached)",
            Arc::new(move |k| format!("/scim/v2/Users/{}", ids[(k as usize * 7919) % m])),
        ),
        (
            "GET /Users?filter=userName eq (varying)",
            Arc::new(move |k| filter_path(&person_email((k * 7919) % m as u64))),
        ),
        (
            "GET /Users?startIndex=K&count=100",
            Arc::new(move |k| {
                let start = 1 + (k * 7919) % (m as u64);
                format!("/scim/v2/Users?startIndex={start}&count=100")
            }),
        ),
    ]
}

/// The upstream's own cost of GET /users, to split the cold load into fake vs sidecar.
async fn fake_users_cost(client: &reqwest::Client, fake: &FakeZulip) -> Result<()> {
    let t = Instant::now();
    let resp = client
        .get(format!("{}api/v1/users", fake.base_url()))
        .basic_auth(DEMO_SERVICE_EMAIL, Some(DEMO_SERVICE_API_KEY))
        .send()
        .await?;
    let bytes = resp.bytes().await?;
    println!(
        "fake's own GET /users (render + transfer, no decode): {:.0} ms, {:.1} MiB of JSON",
        t.elapsed().as_secs_f64() * 1000.0,
        bytes.len() as f64 / 1_048_576.0
    );
    Ok(())
}

fn print_latency(name: &str, sorted_us: &[u32]) {
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} |",
        percentile_ms(sorted_us, 50.0),
        percentile_ms(sorted_us, 99.0),
        percentile_ms(sorted_us, 100.0)
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `GET /users ×1, POST /users ×1000` with numeric path segments folded into `{id}`.
fn summarize(requests: &[RecordedRequest]) -> String {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for r in requests {
        let path: Vec<&str> =
            r.path.split('/').map(|s| if s.parse::<u64>().is_ok() { "{id}" } else { s }).collect();
        *by.entry(format!("{} {}", r.method, path.join("/").trim_start_matches("/api/v1"))).or_default() += 1;
    }
    by.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
}

// === import ===

/// What the IdP saw for one request after honouring 429s.
#[derive(Debug, Default)]
struct IdpTally {
    ok: u64,
    /// 429 answers that carried Retry-After (the IdP waited and retried).
    retried_429: u64,
    /// 429 answers without Retry-After.
    bare_429: u64,
    /// Other non-2xx (status → count), 0 = transport error.
    failures: BTreeMap<u16, u64>,
    retry_wait: Duration,
    /// Each 429: seconds since the run started, and its `Retry-After` (`None`: absent).
    held: Vec<(f64, Option<f64>)>,
}

/// When the current import run started (the 429 timeline's origin).
static RUN_START: std::sync::OnceLock<std::sync::Mutex<Option<Instant>>> = std::sync::OnceLock::new();

fn run_clock() -> f64 {
    let start = RUN_START.get_or_init(Default::default);
    let start = *start.lock().unwrap_or_else(|p| p.into_inner());
    start.map_or(0.0, |s| s.elapsed().as_secs_f64())
}

fn restart_run_clock() {
    let start = RUN_START.get_or_init(Default::default);
    *start.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
}

impl IdpTally {
    fn merge(&mut self, o: IdpTally) {
        self.ok += o.ok;
        self.retried_429 += o.retried_429;
        self.bare_429 += o.bare_429;
        self.retry_wait += o.retry_wait;
        self.held.extend(o.held);
        for (k, v) in o.failures {
            *self.failures.entry(k).or_default() += v;
        }
    }
}

/// Sends a request as an IdP would: on 429 with Retry-After, waits and retries (Okta does).
async fn idp_send(
    tally: &mut IdpTally,
    make: impl Fn() -> reqwest::RequestBuilder,
    expect: &[u16],
) -> Option<Value> {
    for _ in 0..100 {
        let status_body = match make().bearer_auth(TOKEN).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                let body = resp.bytes().await.ok();
                (status, retry_after, body)
            }
            Err(_) => (0, None, None),
        };
        match status_body {
            (429, Some(secs), _) => {
                tally.retried_429 += 1;
                tally.held.push((run_clock(), Some(secs)));
                let wait = Duration::from_secs_f64(secs.clamp(0.0, 60.0));
                tally.retry_wait += wait;
                tokio::time::sleep(wait).await;
            }
            (429, None, _) => {
                tally.bare_429 += 1;
                tally.held.push((run_clock(), None));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (status, _, body) if expect.contains(&status) => {
                tally.ok += 1;
                return Some(body.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null));
            }
            (status, _, _) => {
                *tally.failures.entry(status).or_default() += 1;
                return None;
            }
        }
    }
    None
}

fn okta_user(i: u64) -> Value {
    let email = format!("new{i}@zulip.example.com");
    json!({
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": format!("New{i}"), "familyName": format!("Hire{i}")},
        "emails": [{"primary": true, "value": email, "type": "work"}],
        "displayName": format!("New{i} Hire{i}"),
        "locale": "en-US",
        "externalId": format!("00u{i:017}"),
        "groups": [],
        "active": true
    })
}

/// Floor wall time for `calls` requests under sliding-window `rules`, starting with a full
/// budget and sending each call as early as the rules allow: call k goes no earlier than
/// `window` after call k − `max`, for every rule.
fn rate_limit_floor(calls: u64, rules: &[(Duration, u32)]) -> Duration {
    let n = usize::try_from(calls).unwrap_or(usize::MAX);
    let mut at: Vec<Duration> = Vec::with_capacity(n);
    for k in 0..n {
        let t = rules
            .iter()
            .filter_map(|(window, max)| {
                let back = usize::try_from(*max).ok()?;
                k.checked_sub(back).and_then(|j| at.get(j)).map(|t| *t + *window)
            })
            .max()
            .unwrap_or(Duration::ZERO);
        at.push(t);
    }
    at.last().copied().unwrap_or(Duration::ZERO)
}

/// One import run's headline figures, for the summary table.
#[derive(Debug, Clone)]
struct ImportRun {
    concurrency: usize,
    max_in_flight: usize,
    created: u64,
    creation: Duration,
    wall: Duration,
    idp_429: u64,
    failures: u64,
    floor_ratio: Option<f64>,
}

/// `SCIM_LOAD_LOG=zulip_client=debug` (an `EnvFilter`): the in-process sidecar's logs on
/// stderr, seconds since start, for a run's pacing decisions.
fn init_import_log() {
    if let Ok(filter) = std::env::var("SCIM_LOAD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    }
}

async fn import(args: ImportArgs) -> Result<()> {
    init_import_log();
    let latency = match args.latency.as_str() {
        "none" => None,
        "realistic" => Some(LatencyProfile::realistic()),
        other => return Err(format!("--latency {other}: expected none or realistic").into()),
    };
    let mut runs = Vec::new();
    for &concurrency in &args.concurrency {
        for &max_in_flight in &args.max_in_flight {
            runs.push(import_once(&args, concurrency, max_in_flight, latency.clone()).await?);
        }
    }
    println!(
        "## summary: --users {}{}{}{}\n",
        args.users,
        if args.external_id_field.is_some() { " --external-id-field" } else { "" },
        if args.rate_limit_scaled { " --rate-limit-scaled" } else { "" },
        if latency.is_some() { " --latency realistic" } else { "" },
    );
    println!("| IdP concurrency | max_in_flight | creation phase s | creations/s | × max_in_flight 1 | wall s | IdP 429s | other failures | wall ÷ floor |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for run in &runs {
        let rate = run.created as f64 / run.creation.as_secs_f64().max(1e-9);
        let serial = runs
            .iter()
            .find(|r| r.concurrency == run.concurrency && r.max_in_flight == 1)
            .map(|r| r.created as f64 / r.creation.as_secs_f64().max(1e-9));
        let speedup = serial.map_or("–".to_owned(), |s| format!("{:.2}", rate / s.max(1e-9)));
        let floor = run.floor_ratio.map_or("–".to_owned(), |f| format!("{f:.3}"));
        println!(
            "| {} | {} | {:.2} | {rate:.1} | {speedup} | {:.2} | {} | {} | {floor} |",
            run.concurrency,
            run.max_in_flight,
            run.creation.as_secs_f64(),
            run.wall.as_secs_f64(),
            run.idp_429,
            run.failures
        );
    }
    Ok(())
}

/// Zulip's per-account limits (200/60 s, 2,000/3,600 s) time-scaled ×10.
fn scaled_rate_limit_rules() -> Vec<(Duration, u32)> {
    vec![(Duration::from_secs(6), 200), (Duration::from_secs(360), 2000)]
}

/// What the fake recorded during one run: its calls, and the users created.
struct Upstream {
    requests: Vec<RecordedRequest>,
    /// REST calls only (the events API, `POST /register` and the long-polls, apart).
    rest_calls: u64,
    events_calls: u64,
    /// Accounts whose address starts with `new` (the run's creations) now in the fake.
    in_fake: usize,
}

impl Upstream {
    fn of(fake: &FakeZulip) -> Upstream {
        let requests = fake.requests();
        let is_events = |r: &RecordedRequest| r.path.ends_with("/register") || r.path.ends_with("/events");
        let events_calls = requests.iter().filter(|r| is_events(r)).count() as u64;
        let rest_calls = requests.len() as u64 - events_calls;
        let in_fake = fake.users().iter().filter(|u| u.delivery_email.starts_with("new")).count();
        Upstream { requests, rest_calls, events_calls, in_fake }
    }

    fn all_calls(&self) -> u64 {
        self.requests.len() as u64
    }
}

/// What the IdP did in one run, and how long each phase took.
struct IdpSide {
    tally: IdpTally,
    imported: u64,
    created: u64,
    import_time: Duration,
    wall: Duration,
}

async fn import_once(
    args: &ImportArgs,
    concurrency: usize,
    max_in_flight: usize,
    latency: Option<LatencyProfile>,
) -> Result<ImportRun> {
    let rules = scaled_rate_limit_rules();
    let stack = start_import_stack(args, max_in_flight, latency.clone(), &rules).await?;
    let client = http_client()?;
    let base = stack.base();
    let start = Instant::now();
    restart_run_clock();
    stack.wait_ready(&client, Duration::from_secs(600)).await?;
    let mut tally = IdpTally::default();
    let imported = page_through_users(&client, &base, &mut tally).await?;
    let import_time = start.elapsed();
    let (created_tally, created) = create_users(&client, &base, args.users, concurrency).await?;
    tally.merge(created_tally);
    let idp = IdpSide { tally, imported, created, import_time, wall: start.elapsed() };
    let upstream = Upstream::of(&stack.fake);
    print_import_report(args, concurrency, max_in_flight, latency.is_some(), &idp, &upstream);
    let mut floor_ratio = None;
    if args.rate_limit_scaled {
        floor_ratio = Some(print_rate_limit_report(&idp, &upstream, stack.readiness_calls, &rules));
    }
    stack.stop().await;
    println!();
    Ok(ImportRun {
        concurrency,
        max_in_flight,
        created: idp.created,
        creation: idp.wall - idp.import_time,
        wall: idp.wall,
        idp_429: idp.tally.retried_429 + idp.tally.bare_429,
        failures: idp.tally.failures.values().sum(),
        floor_ratio,
    })
}

/// The seeded fake (`--existing` people; `rules` enforced with `--rate-limit-scaled`;
/// `latency`) and the sidecar in front of it, with the run's `max_in_flight`.
async fn start_import_stack(
    args: &ImportArgs,
    max_in_flight: usize,
    latency: Option<LatencyProfile>,
    rules: &[(Duration, u32)],
) -> Result<Stack> {
    let mut builder = seeded_fake(args.existing);
    if args.rate_limit_scaled {
        builder = builder.rate_limit(RateLimitRules { rules: rules.to_vec() });
    }
    if let Some(latency) = latency {
        builder = builder.latency(latency);
    }
    let ttl = args.snapshot_ttl;
    let field = args.external_id_field.clone();
    Stack::start(builder, |c| {
        c.snapshot_ttl = ttl;
        for realm in &mut c.realms {
            realm.external_id_field = field.clone();
            realm.upstream.max_in_flight = max_in_flight;
        }
    })
    .await
}

/// Okta's "Import Now": pages through every user, 100 at a time. Returns the users seen.
async fn page_through_users(client: &reqwest::Client, base: &str, tally: &mut IdpTally) -> Result<u64> {
    let mut start_index = 1u64;
    let mut imported = 0u64;
    loop {
        let url = format!("{base}/scim/v2/Users?startIndex={start_index}&count=100");
        let Some(page) = idp_send(tally, || client.get(&url), &[200]).await else {
            return Err("the import page request failed".into());
        };
        let items = page["Resources"].as_array().map_or(0, Vec::len) as u64;
        imported += items;
        let total = page["totalResults"].as_u64().unwrap_or(0);
        if items == 0 || start_index + items > total {
            return Ok(imported);
        }
        start_index += items;
    }
}

/// Creates users `new0` … `new{n-1}` with `concurrency` IdP workers, each taking the next
/// number: what the workers saw, and how many were created.
async fn create_users(
    client: &reqwest::Client,
    base: &str,
    n: u64,
    concurrency: usize,
) -> Result<(IdpTally, u64)> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, base, next) = (client.clone(), base.to_owned(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = IdpTally::default();
            let mut created = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if create_user(&client, &base, i, &mut tally).await {
                    created += 1;
                }
            }
            (tally, created)
        }));
    }
    let mut tally = IdpTally::default();
    let mut created = 0;
    for w in workers {
        let (t, c) = w.await?;
        tally.merge(t);
        created += c;
    }
    Ok((tally, created))
}

/// One Okta-shaped creation: the user is looked up by `userName`, then posted. Whether it
/// was created (a user found by the lookup counts as failure `1`).
async fn create_user(client: &reqwest::Client, base: &str, i: u64, tally: &mut IdpTally) -> bool {
    let lookup = format!("{base}{}", filter_path(&format!("new{i}@zulip.example.com")));
    let Some(found) = idp_send(tally, || client.get(&lookup), &[200]).await else {
        return false;
    };
    if found["totalResults"].as_u64() != Some(0) {
        *tally.failures.entry(1).or_default() += 1;
        return false;
    }
    let body = okta_user(i).to_string();
    let post = format!("{base}/scim/v2/Users");
    idp_send(
        tally,
        || client.post(&post).header("content-type", "application/scim+json").body(body.clone()),
        &[201],
    )
    .await
    .is_some()
}

/// The run's table: phases, creations, upstream calls and their economy, IdP-visible answers.
fn print_import_report(
    args: &ImportArgs,
    concurrency: usize,
    max_in_flight: usize,
    latency: bool,
    idp: &IdpSide,
    upstream: &Upstream,
) {
    let IdpSide { tally, imported, created, import_time, wall } = idp;
    println!(
        "## scim-load import --users {} --existing {}{} --concurrency {concurrency} --max-in-flight {max_in_flight}{}\n",
        args.users,
        args.existing,
        if args.rate_limit_scaled { " --rate-limit-scaled" } else { "" },
        if latency { " --latency realistic" } else { "" },
    );
    println!("| measure | value |\n|---|---|");
    println!("| machine load (1/5/15 min) | {} |", loadavg());
    println!("| IdP concurrency / upstream max_in_flight | {concurrency} / {max_in_flight} |");
    println!("| creation phase | {:.2} s |", (*wall - *import_time).as_secs_f64());
    println!("| import: users paged through | {imported} in {:.2} s |", import_time.as_secs_f64());
    println!("| users created (201) | {created} (fake now holds {}) |", upstream.in_fake);
    println!("| wall time (import + creation) | {:.2} s |", wall.as_secs_f64());
    println!(
        "| upstream calls (after readiness) | {}: {} |",
        upstream.all_calls(),
        summarize(&upstream.requests)
    );
    println!("| of which events API (POST /register, GET /events long-polls) | {} |", upstream.events_calls);
    // The economy target counts REST calls; the events API (register, long-polls) is shown apart.
    let calls = upstream.rest_calls;
    let per_user = if *created > 0 { calls as f64 / *created as f64 } else { f64::NAN };
    // Storing externalId costs one `PATCH /users/{id}` per creation (POST /users cannot carry
    // profile data) and one `GET /realm/profile_fields` per snapshot load.
    let (budget, rule) = match &args.external_id_field {
        None => (created + 2, "creations + 2"),
        Some(_) => (2 * created + 3, "2 × creations + 3, externalId stored"),
    };
    let verdict = if calls <= budget { "meets" } else { "misses" };
    println!("| REST calls per created user (events API excluded) | {per_user:.4} ({verdict} ≤ {rule}) |");
    println!(
        "| IdP-visible: 2xx / 429 with Retry-After (retried) / 429 without / other failures | {} / {} / {} / {:?} |",
        tally.ok, tally.retried_429, tally.bare_429, tally.failures
    );
}

/// The rate-limited run's rows: Retry-After waits, each 429, and the wall time against the
/// floor `rules` impose. Returns wall ÷ floor.
fn print_rate_limit_report(
    idp: &IdpSide,
    upstream: &Upstream,
    readiness_calls: u64,
    rules: &[(Duration, u32)],
) -> f64 {
    // Every authenticated call counts against the account's limits, events included.
    let calls = upstream.all_calls() + readiness_calls;
    let floor = rate_limit_floor(calls, rules);
    let ratio = idp.wall.as_secs_f64() / floor.as_secs_f64().max(1e-9);
    println!(
        "| time waited on Retry-After (summed over workers) | {:.1} s |",
        idp.tally.retry_wait.as_secs_f64()
    );
    let mut held = idp.tally.held.clone();
    held.sort_by(|a, b| a.0.total_cmp(&b.0));
    let held: Vec<String> = held
        .iter()
        .map(|(at, after)| match after {
            Some(after) => format!("{at:.1} s: {after}"),
            None => format!("{at:.1} s: none"),
        })
        .collect();
    println!("| 429s (s since start: Retry-After) | {} |", held.join(", "));
    println!(
        "| floor imposed by 200/6 s + 2,000/360 s for {calls} calls (incl. {readiness_calls} readiness) | {:.1} s |",
        floor.as_secs_f64()
    );
    println!("| wall ÷ floor | {ratio:.3} (target ≤ 1.10) |");
    ratio
}

// === event latency ===

async fn event_latency(args: EventArgs) -> Result<()> {
    let stack = Stack::start(seeded_fake(args.users), |_| {}).await?;
    let client = http_client()?;
    let base = stack.base();
    let Some(target) = stack.fake.user_by_email(&person_email(0)) else {
        return Err("the seeded user is missing".into());
    };
    let url = format!("{base}/scim/v2/Users/{}", target.user_id);
    stack.wait_ready(&client, Duration::from_secs(600)).await?;
    get_json(&client, &url).await?;
    let mut seen = Vec::new();
    let mut missed = 0;
    for k in 0..args.samples {
        let name = format!("Renamed{k} Directly");
        let t0 = Instant::now();
        stack.fake.modify_user(target.user_id, |u| u.full_name = name.clone());
        loop {
            let (_, body) = get_json(&client, &url).await?;
            if body["displayName"].as_str() == Some(name.as_str()) {
                seen.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                break;
            }
            if t0.elapsed() > args.timeout {
                missed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    seen.sort_unstable();
    println!("## scim-load event-latency --users {}\n", args.users);
    println!("| measure | value |\n|---|---|");
    println!("| machine load (1/5/15 min) | {} |", loadavg());
    println!(
        "| samples visible / not visible within {:.1} s | {} / {missed} |",
        args.timeout.as_secs_f64(),
        seen.len()
    );
    println!(
        "| change → SCIM-visible p50 / max | {:.1} ms / {:.1} ms (target ≤ 2000 ms) |",
        percentile_ms(&seen, 50.0),
        percentile_ms(&seen, 100.0)
    );
    stack.stop().await;
    Ok(())
}
