//! The long soak (`tools/chaos.sh`, not CI): random cases back to back against three
//! replicas for `CHAOS_SOAK_SECS` (default 1800), every fault of the mix on; it reports
//! sequences, operations, requests, faults, divergences (must be 0) and the process's RSS and
//! open fds at start and end (every case starts and stops its own fake and replicas, so
//! growth means a leak). A divergence prints its seed and case and the soak goes on.

use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

use super::{env_usize, model, random_seed, run_case};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[test]
#[ignore = "the long soak: tools/chaos.sh"]
fn soak() {
    let secs = env_usize("CHAOS_SOAK_SECS", 1800) as u64;
    let replicas = env_usize("CHAOS_REPLICAS", 3);
    let max_ops = env_usize("CHAOS_OPS", 40);
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(random_seed);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(Default::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (rss_start, fds_start) = (rss_kib(), open_fds());
    let started = Instant::now();
    let (mut sequences, mut ops, mut requests, mut faults, mut retries, mut gave_up, mut stale) =
        (0u64, 0, 0, 0, 0, 0, 0);
    let mut divergences = 0u64;
    let mut max_cross = Duration::ZERO;
    let mut max_settle = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs) {
        let case = model::case(replicas, max_ops).new_tree(&mut runner).expect("case").current();
        sequences += 1;
        ops += case.steps.len() as u64;
        match rt.block_on(run_case(&case, replicas, true)) {
            Ok(stats) => {
                for stale in &stats.stale_read_texts {
                    eprintln!("chaos soak: recorded stale read under the tightened rate limit (sequence {sequences}): {stale}");
                }
                requests += stats.requests;
                faults += stats.faults;
                retries += stats.retries;
                gave_up += stats.gave_up;
                stale += stats.stale_reads;
                max_cross = max_cross.max(stats.max_cross_replica);
                max_settle = max_settle.max(stats.max_settle);
            }
            Err(divergence) => {
                divergences += 1;
                stale += divergence.stats.stale_reads;
                max_cross = max_cross.max(divergence.stats.max_cross_replica);
                eprintln!("chaos soak: DIVERGENCE (seed {seed}, sequence {sequences}): {divergence}\ncase: {case:#?}");
            }
        }
        if sequences % 25 == 0 {
            eprintln!(
                "chaos soak: {:?} sequences {sequences} ops {ops} requests {requests} faults {faults} divergences {divergences} rss {} KiB fds {}",
                started.elapsed(),
                rss_kib(),
                open_fds()
            );
        }
    }
    let (rss_end, fds_end) = (rss_kib(), open_fds());
    println!(
        "chaos soak: seed {seed}, {replicas} replicas, {:?}\n  sequences {sequences}, operations {ops}, requests {requests}, faults injected {faults}, IdP retries {retries}, requests given up {gave_up}\n  sequences with a divergence {divergences}, cross-replica stale reads beyond {:?} {stale} (divergences, except while Zulip's rate limit was tightened: recorded)\n  longest cross-replica read-your-writes {max_cross:?}, longest settle {max_settle:?}\n  RSS {rss_start} KiB -> {rss_end} KiB, open fds {fds_start} -> {fds_end}",
        started.elapsed(),
        super::EVENTS_BOUND
    );
    assert_eq!(divergences, 0, "divergences (printed above)");
}

/// The read-your-writes window across replicas: after a write's 2xx from one replica, how
/// long until every other replica serves it (polled every 5 ms), over random cases with the
/// fault mix. `cargo test -p scim-sidecar --test it read_your_writes -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement for RELIABILITY.md"]
fn read_your_writes_window_across_replicas() {
    let cases = env_usize("CHAOS_CASES", 12);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for replicas in [2usize, 3] {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&super::DEFAULT_SEED.to_le_bytes());
        bytes[8] = replicas as u8;
        let mut runner =
            TestRunner::new_with_rng(Default::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
        let mut all: Vec<Duration> = Vec::new();
        for _ in 0..cases {
            let case = model::case(replicas, 32).new_tree(&mut runner).expect("case").current();
            if let Ok(stats) = rt.block_on(run_case(&case, replicas, true)) {
                all.extend(stats.cross_replica);
            }
        }
        all.sort();
        let at =
            |q: f64| all.get(((all.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
        println!(
            "read-your-writes across {replicas} replicas: {} writes, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
            all.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            all.last().copied().unwrap_or_default()
        );
    }
}
