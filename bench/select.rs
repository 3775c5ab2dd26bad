//! Microbenchmark: nanoseconds per selection, for every strategy at 3, 10 and 100
//! backends (all available, consistent hashing with a new key each pick).
//! `cargo bench --bench select`. Each figure is the median of 5 runs. Two tables:
//! the pick alone (nothing in flight), and a request's whole share of balancing: the
//! pick, counting it in flight (`InFlight::start`) and ending it, with 8 requests
//! held in flight at any time so loads differ. least-conn keeps its index current in
//! those last two steps, so only the second table shows its full cost.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringlb::cluster::backend::{Backend, InFlight};
use ringlb::cluster::balancer::{hash_bytes, Balancer, RequestContext};
use ringlb::config::{BalancerConfig, HashAlgorithm, Strategy};

fn table(n: usize) -> Vec<Rc<Backend>> {
    (0..n)
        .map(|i| {
            Rc::new(Backend::new(
                i as u32,
                format!("backend-{i}").into(),
                format!("10.0.{}.{}:80", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap(),
                1,
                8,
                Duration::from_secs(30),
            ))
        })
        .collect()
}

const PICKS: u64 = 1_000_000;

/// The median of 5 timed runs of `PICKS` calls of `pick`, in ns per call.
fn median_ns(mut pick: impl FnMut(u64)) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..PICKS {
            pick(i);
        }
        runs.push(t.elapsed().as_nanos() as f64 / PICKS as f64);
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    runs[2]
}

fn main() {
    let variants: [(&str, Strategy, HashAlgorithm); 8] = [
        ("round-robin", Strategy::RoundRobin, HashAlgorithm::Ring),
        (
            "weighted-round-robin",
            Strategy::WeightedRoundRobin,
            HashAlgorithm::Ring,
        ),
        ("least-conn", Strategy::LeastConn, HashAlgorithm::Ring),
        ("random", Strategy::Random, HashAlgorithm::Ring),
        ("p2c", Strategy::P2c, HashAlgorithm::Ring),
        (
            "least-response",
            Strategy::LeastResponse,
            HashAlgorithm::Ring,
        ),
        (
            "consistent-hash (ring)",
            Strategy::ConsistentHash,
            HashAlgorithm::Ring,
        ),
        (
            "consistent-hash (maglev)",
            Strategy::ConsistentHash,
            HashAlgorithm::Maglev,
        ),
    ];
    let client_ip = "127.0.0.1".parse().unwrap();
    let now = Instant::now();
    let ctx = |i: u64| RequestContext {
        client_ip,
        key_hash: hash_bytes(&i.to_le_bytes()),
        now,
    };
    for whole_request in [false, true] {
        if whole_request {
            println!("\nPick, InFlight::start and its end (8 requests held in flight):\n");
        }
        println!("| strategy | 3 backends | 10 backends | 100 backends |");
        println!("| --- | --- | --- | --- |");
        for (name, strategy, algorithm) in variants {
            let mut row = format!("| {name} |");
            for n in [3, 10, 100] {
                let config = BalancerConfig {
                    strategy,
                    hash_algorithm: algorithm,
                    ..BalancerConfig::default()
                };
                let balancer = Balancer::with_config(&config, table(n), 0);
                let ns = if whole_request {
                    let mut held: [Option<InFlight>; 8] = Default::default();
                    median_ns(|i| {
                        let picked = balancer.select(black_box(&ctx(i)), &[]);
                        // Replacing the oldest guard ends that request.
                        held[i as usize % 8] = picked.map(|b| InFlight::start(&b));
                    })
                } else {
                    median_ns(|i| {
                        black_box(balancer.select(black_box(&ctx(i)), &[]));
                    })
                };
                row.push_str(&format!(" {ns:.1} ns |"));
            }
            println!("{row}");
        }
    }
    println!("\n(ns per pick, median of 5 runs of {PICKS}; each pick includes hashing an 8-byte key and cloning the picked backend's Rc)");
}
