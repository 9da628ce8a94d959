//! Convergence under chaos (issue 11): seeded random Okta- and Entra-shaped traffic, with
//! upstream faults, 429 storms, lost or silent event queues, edits in Zulip behind the
//! sidecar's back, restarts and 1–3 replicas, must end with Zulip holding exactly the IdP's
//! intended state — and no answer on the way may claim what Zulip does not hold.
//!
//! - [`model`]: the intended state and the generator (proptest strategies);
//! - [`idp`]: the IdP driver (dialects, retries, fault injection, the repair pass);
//! - [`check`]: the properties; [`cluster`]: the fake and the replicas;
//! - [`regressions`]: one test per divergence this search found.
//!
//! `CHAOS_CASES` (default 16) and `CHAOS_OPS` (default 32) bound the search;
//! `CHAOS_SEED=<n>` replays a run (a failure prints its seed and the shrunk sequence):
//! `CHAOS_SEED=… cargo test -p scim-sidecar --test it chaos::`. `tools/chaos.sh` runs the
//! long soak ([`soak`]).

mod check;
mod cluster;
mod idp;
mod model;
mod regressions;
mod soak;

use std::time::{Duration, Instant};

use proptest::test_runner::{
    Config as ProptestConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use reqwest::Method;

use cluster::Cluster;
use idp::{Idp, Stats};
use model::Case;

/// The events latency bound: how long a replica's reads may disagree with Zulip (and so with
/// another replica's write) before it is a divergence. One events round-trip normally (a few
/// ms); at worst a silent queue's poll timeout (`cluster::live_options`, 1.2 s), a lost
/// queue's register and two reloads, and polls held back by a 429 storm (`Retry-After` up
/// to 0.7 s) or the tightened 8 calls/s limit shared with the other replicas: 1.2 s plus a
/// 2.8 s margin for those and for the shared 2-core machine.
pub const EVENTS_BOUND: Duration = Duration::from_secs(4);

/// How long, after a run settled, every replica's reads may take to agree with Zulip.
const SETTLE_BOUND: Duration = EVENTS_BOUND;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `CHAOS_SEED`: a number, or `random` (the soak's default); CI runs a fixed seed so that a
/// red run is a regression, not a new search result.
fn seed() -> u64 {
    match std::env::var("CHAOS_SEED").ok().as_deref() {
        Some("random") => random_seed(),
        Some(v) => v.parse().unwrap_or(DEFAULT_SEED),
        None => DEFAULT_SEED,
    }
}

pub const DEFAULT_SEED: u64 = 20261202;

pub fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(11)
}

/// A case's divergences (one a line), with what the case did.
#[derive(Debug)]
pub struct Diverged {
    pub text: String,
    pub stats: Stats,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Runs one case end to end; `Err` lists the divergences.
pub async fn run_case(case: &Case, replicas: usize, external_id: bool) -> Result<Stats, Diverged> {
    let mut cluster = Cluster::start(case.dialect, replicas, external_id).await;
    let outcome = {
        let mut idp = Idp::new(&mut cluster);
        idp.measure_replicas = replicas > 1;
        for (i, step) in case.steps.iter().enumerate() {
            idp.step_no = i;
            idp.run(step).await;
        }
        idp.step_no = case.steps.len();
        settle(&mut idp).await;
        idp.stats.stale_reads = idp.stale_reads.len() as u64;
        idp.stats.stale_read_texts = idp.stale_reads.clone();
        (idp.divergences.clone(), idp.stats.clone())
    };
    cluster.stop().await;
    let (divergences, stats) = outcome;
    if std::env::var_os("CHAOS_VERBOSE").is_some() {
        eprintln!("chaos case: {} steps, {stats:?}, {} divergences", case.steps.len(), divergences.len());
    }
    if divergences.is_empty() {
        Ok(stats)
    } else {
        Err(Diverged { text: divergences.join("\n"), stats })
    }
}

/// The world calms down (rate limit off, faults gone), then: the entities whose last write
/// succeeded must already be right; the IdP's next pass repairs the rest; then everything
/// must be right, and every replica's reads must agree with Zulip within [`SETTLE_BOUND`].
async fn settle(idp: &mut Idp<'_>) {
    idp.cluster.fake.set_rate_limit(None);
    let field = idp.cluster.field_id;
    for problem in check::converged(&idp.cluster.fake, field, &idp.model, false) {
        idp.divergences.push(format!("after the run (before any repair): {problem}"));
    }
    // The IdP's next pass reads through the sidecar: let its reads catch up first.
    reads_agree(idp).await;
    idp.repair().await;
    idp.repair().await;
    for problem in check::converged(&idp.cluster.fake, field, &idp.model, true) {
        idp.divergences.push(format!("after the repair pass: {problem}"));
    }
    reads_agree(idp).await;
}

async fn reads_agree(idp: &mut Idp<'_>) {
    let http = reqwest::Client::new();
    let field = idp.cluster.field_id;
    let started = Instant::now();
    for r in 0..idp.cluster.len() {
        let base = idp.cluster.base(r);
        loop {
            let get = |path: &str| {
                http.request(Method::GET, format!("{base}{path}")).bearer_auth(crate::support::TOKEN).send()
            };
            let users = get("/Users?startIndex=1&count=1000").await;
            let groups = get("/Groups?startIndex=1&count=1000").await;
            let listing = match (users, groups) {
                (Ok(u), Ok(g)) if u.status().is_success() && g.status().is_success() => {
                    let u: serde_json::Value = u.json().await.unwrap_or_default();
                    let g: serde_json::Value = g.json().await.unwrap_or_default();
                    Some(check::sidecar_listing(&u, &g))
                }
                _ => None,
            };
            let zulip = check::zulip_listing(&idp.cluster.fake, field);
            if listing.as_ref() == Some(&zulip) {
                break;
            }
            if started.elapsed() > SETTLE_BOUND {
                let (zu, zg) = zulip;
                let (su, sg) = listing.unwrap_or_default();
                idp.divergences.push(format!(
                    "replica {r}'s reads disagree with Zulip {SETTLE_BOUND:?} after the run: users only in Zulip {:?}, only in the sidecar {:?}; groups only in Zulip {:?}, only in the sidecar {:?}",
                    zu.difference(&su).collect::<Vec<_>>(),
                    su.difference(&zu).collect::<Vec<_>>(),
                    zg.difference(&sg).collect::<Vec<_>>(),
                    sg.difference(&zg).collect::<Vec<_>>(),
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    idp.stats.max_settle = idp.stats.max_settle.max(started.elapsed());
}

/// The proptest search over `cases` cases of up to `max_ops` steps against `replicas`
/// replicas; panics with the seed and the shrunk sequence on a divergence.
fn search(replicas: usize, cases: usize, max_ops: usize) {
    let seed = seed();
    // The realm stores `externalId` in a profile field unless `CHAOS_EXTERNAL_ID=0`.
    let external_id = std::env::var("CHAOS_EXTERNAL_ID").map_or(true, |v| v != "0");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(replicas as u64).to_le_bytes());
    let config = ProptestConfig {
        cases: cases as u32,
        max_shrink_iters: env_usize("CHAOS_SHRINK", 48) as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let result = runner.run(&model::case(replicas, max_ops), |case| {
        rt.block_on(run_case(&case, replicas, external_id))
            .map(|_| ())
            .map_err(|d| TestCaseError::fail(d.text))
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "chaos divergence (replicas: {replicas}, seed {seed}): {reason}\nshrunk case: {case:#?}\nreplay: CHAOS_SEED={seed} cargo test -p scim-sidecar --test it chaos::"
        ),
        Err(TestError::Abort(reason)) => panic!("chaos search aborted (seed {seed}): {reason}"),
    }
}

#[test]
fn random_idp_traffic_under_faults_converges_on_one_replica() {
    search(1, env_usize("CHAOS_CASES", 16), env_usize("CHAOS_OPS", 32));
}

#[test]
fn random_idp_traffic_under_faults_converges_on_two_replicas() {
    search(2, env_usize("CHAOS_CASES", 16).div_ceil(4), env_usize("CHAOS_OPS", 32));
}

#[test]
fn random_idp_traffic_under_faults_converges_on_three_replicas() {
    search(3, env_usize("CHAOS_CASES", 16).div_ceil(4), env_usize("CHAOS_OPS", 32));
}
