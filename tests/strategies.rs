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
            let h = Harness::start(driver, 3, |c| c.clusters[0].balancer.strategy = strategy);
            let got = counts(h.addr, 90);
            assert_eq!(got.len(), 3, "{strategy:?}: {got:?}");
        }
    }

    fn least_response_moves_traffic_away_from_a_slow_backend(driver) {
        let slow = ringlb::testkit::origin::spawn_with_delay(
            "127.0.0.1:0".parse().unwrap(),
            "slow",
            driver,
            Duration::from_millis(30),
        )
        .unwrap();
        let h = Harness::start(driver, 1, |c| {
            c.clusters[0].balancer.strategy = Strategy::LeastResponse;
            c.clusters[0].backends.push(BackendConfig { name: "slow".into(), address: slow.addr(), weight: 1 });
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
                c.clusters[0].balancer.strategy = Strategy::ConsistentHash;
                c.clusters[0].balancer.hash_algorithm = algorithm;
                c.clusters[0].balancer.hash_key = key.clone();
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
        c.clusters[0].balancer.strategy = Strategy::ConsistentHash;
        c.clusters[0].balancer.hash_key = HashKey::Path;
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
        c.clusters[0].balancer.strategy = Strategy::ConsistentHash;
    });
    let got = counts(h.addr, 12);
    assert_eq!(got.len(), 1, "{got:?}");
}

fn sticky_on(c: &mut ringlb::config::Config, secret: Option<&str>) {
    c.clusters[0].balancer.sticky = Some(ringlb::config::StickyConfig {
        cookie: "srv".into(),
        ttl: Duration::from_secs(3600),
        secret: secret.map(str::to_string),
    });
}

fn with_cookie(cookie: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: t\r\nCookie: a=1; srv={cookie}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// The token of a `Set-Cookie: srv=TOKEN; ...` header.
fn token_of(r: &Reply) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie header");
    assert!(set.ends_with("; Path=/; Max-Age=3600; HttpOnly"), "{set}");
    set.strip_prefix("srv=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn sticky_cookies_pin_a_client_to_its_backend() {
    let h = Harness::start(Driver::Epoll, 3, |c| sticky_on(c, None));
    let first = get(h.addr, "/");
    let token = token_of(&first);
    assert_eq!(token.len(), 32);
    for secret_part in ["app", "127.0.0.1", &h.origins[0].addr().port().to_string()] {
        assert!(!token.contains(secret_part), "the token is opaque: {token}");
    }
    // Round-robin would rotate; the cookie keeps the client where it was.
    for _ in 0..6 {
        let r = request(h.addr, &with_cookie(&token));
        assert_eq!(r.text(), first.text());
        assert_eq!(
            r.header("set-cookie"),
            None,
            "a valid cookie is not set again"
        );
    }
    // A cookie naming nothing is ignored: the client gets a backend and a cookie.
    let r = request(h.addr, &with_cookie("not-a-token"));
    assert_eq!(r.status, 200);
    assert_eq!(token_of(&r).len(), 32);
    // While its backend is drained, the client stays (as in HAProxy), but clients
    // without a cookie go elsewhere.
    let name = first.text().trim().to_string();
    let admin = h.server().admin_addr();
    let change = |action: &str| {
        let raw = format!(
            "POST /backends/{name}/{action} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(request(admin, raw.as_bytes()).status, 200);
    };
    change("drain");
    wait_until("new clients to avoid the drained backend", || {
        (0..3).all(|_| get(h.addr, "/").text() != first.text())
    });
    for _ in 0..4 {
        let r = request(h.addr, &with_cookie(&token));
        assert_eq!(
            r.text(),
            first.text(),
            "a stuck client stays while draining"
        );
        assert_eq!(r.header("set-cookie"), None);
    }
    // Disabled, it takes nothing new: the client moves and gets a new cookie.
    change("disable");
    wait_until("the client to move", || {
        request(h.addr, &with_cookie(&token)).text() != first.text()
    });
    let moved = request(h.addr, &with_cookie(&token));
    assert_ne!(token_of(&moved), token);
}

#[test]
fn instances_with_the_same_secret_honour_each_others_cookies() {
    let secret = Some("a shared secret of 32 characters");
    let one = Harness::start(Driver::Epoll, 3, |c| sticky_on(c, secret));
    // A second ringlb in front of the same origins, with the same secret.
    let backends = one.backend_table(1);
    let two = ringlb::start({
        let mut c = base_config(Driver::Epoll);
        c.clusters[0].backends = backends;
        sticky_on(&mut c, secret);
        c
    })
    .unwrap();
    let first = get(one.addr, "/");
    let token = token_of(&first);
    for _ in 0..4 {
        assert_eq!(
            request(two.local_addr(), &with_cookie(&token)).text(),
            first.text()
        );
    }
    two.shutdown();
}
