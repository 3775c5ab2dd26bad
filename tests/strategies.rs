//! Every balancing strategy through the real proxy.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use ringlb::config::{BackendConfig, HashAlgorithm, HashKey, Strategy};
use ringlb::shard::Driver;
use support::*;

fn counts(addr: std::net::SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(get(addr, "/").text()).or_default() += 1;
    }
    counts
}

both_drivers! {
    fn random_and_p2c_use_every_backend(driver) {
        for strategy in [Strategy::Random, Strategy::P2c] {
            let h = Harness::start(driver, 3, |c| c.balancer.strategy = strategy);
            let got = counts(h.addr, 90);
            assert_eq!(got.len(), 3, "{strategy:?}: {got:?}");
        }
    }

    fn least_response_moves_traffic_away_from_a_slow_backend(driver) {
        let slow = ringlb::origin::spawn_with_delay(
            "127.0.0.1:0".parse().unwrap(),
            "slow",
            driver,
            Duration::from_millis(30),
        )
        .unwrap();
        let h = Harness::start(driver, 1, |c| {
            c.balancer.strategy = Strategy::LeastResponse;
            c.backends.push(BackendConfig { name: "slow".into(), address: slow.addr(), weight: 1 });
        });
        let got = counts(h.addr, 60);
        let to_slow = got.get("slow\n").copied().unwrap_or(0);
        assert!(to_slow <= 6, "the slow backend got {to_slow} of 60: {got:?}");
        assert!(to_slow >= 1, "it was measured at least once: {got:?}");
    }
}

fn user_request(user: &str) -> Vec<u8> {
    format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nX-User: {user}\r\nCookie: a=1; session={user}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn consistent_hashing_keeps_a_key_on_one_backend() {
    for algorithm in [HashAlgorithm::Ring, HashAlgorithm::Maglev] {
        for key in [
            HashKey::Header("x-user".into()),
            HashKey::Cookie("session".into()),
        ] {
            let h = Harness::start(Driver::Epoll, 3, |c| {
                c.balancer.strategy = Strategy::ConsistentHash;
                c.balancer.hash_algorithm = algorithm;
                c.balancer.hash_key = key.clone();
            });
            let mut used = std::collections::HashSet::new();
            for u in 0..30 {
                let user = format!("user{u}");
                let first = request(h.addr, &user_request(&user)).text();
                for _ in 0..3 {
                    assert_eq!(
                        request(h.addr, &user_request(&user)).text(),
                        first,
                        "{algorithm:?} {key:?}"
                    );
                }
                used.insert(first);
            }
            assert_eq!(
                used.len(),
                3,
                "{algorithm:?} {key:?}: keys spread over every backend"
            );
        }
    }
}

#[test]
fn path_and_client_ip_keys() {
    let h = Harness::start(Driver::IoUring, 3, |c| {
        c.balancer.strategy = Strategy::ConsistentHash;
        c.balancer.hash_key = HashKey::Path;
    });
    let mut used = std::collections::HashSet::new();
    for p in 0..30 {
        let path = format!("/item/{p}?q={p}");
        let first = get(h.addr, &path).text();
        // The query is not part of the key.
        assert_eq!(get(h.addr, &format!("/item/{p}?other")).text(), first);
        used.insert(first);
    }
    assert_eq!(used.len(), 3);
    // client-ip: every request from this test's address goes to one backend.
    let h = Harness::start(Driver::IoUring, 3, |c| {
        c.balancer.strategy = Strategy::ConsistentHash;
    });
    let got = counts(h.addr, 12);
    assert_eq!(got.len(), 1, "{got:?}");
}
