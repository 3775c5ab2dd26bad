//! Microbenchmark: nanoseconds per selection, for every strategy at 3, 10 and 100
//! backends (all available, nothing in flight, consistent hashing with a new key
//! each pick). `cargo bench --bench select`. Each figure is the median of 5 runs.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringlb::backend::Backend;
use ringlb::balancer::{hash_bytes, Balancer, RequestContext};
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

fn main() {
    const PICKS: u64 = 1_000_000;
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
            let now = Instant::now();
            let client_ip = "127.0.0.1".parse().unwrap();
            let mut runs = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                for i in 0..PICKS {
                    let ctx = RequestContext {
                        client_ip,
                        key_hash: hash_bytes(&i.to_le_bytes()),
                        now,
                    };
                    black_box(balancer.select(black_box(&ctx), &[]));
                }
                runs.push(t.elapsed().as_nanos() as f64 / PICKS as f64);
            }
            runs.sort_by(|a, b| a.total_cmp(b));
            row.push_str(&format!(" {:.1} ns |", runs[2]));
        }
        println!("{row}");
    }
    println!("\n(ns per pick, median of 5 runs of {PICKS}; each pick includes hashing an 8-byte key and cloning the picked backend's Rc)");
}
