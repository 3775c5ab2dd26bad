//! Retries: idempotent requests move to another backend when an attempt fails
//! before any response byte; other requests never are sent twice; the budget and
//! `retry.max_retries` bound them.

mod support;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringlb::config::BackendConfig;
use ringlb::shard::Driver;
use support::*;

fn backend(name: &str, address: std::net::SocketAddr) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        address,
        weight: 1,
    }
}

both_drivers! {
    fn idempotent_requests_move_to_another_backend(driver) {
        // Round-robin starts at the refusing backend for every other request.
        let h = Harness::start(driver, 1, |c| {
            c.clusters[0].backends.insert(0, backend("refusing", closed_port()));
        });
        for _ in 0..10 {
            let r = get(h.addr, "/");
            assert_eq!((r.status, r.text().as_str()), (200, "app1\n"));
        }
        let stats = h.stats();
        assert!(stats.upstream_retries >= 5);
        // Per backend: every retry landed on app1; every failure was the refuser's.
        let per_backend = h.server().handle().backend_counters().unwrap();
        let refusing = &per_backend["refusing"];
        let app1 = &per_backend["app1"];
        assert_eq!(refusing.failures, refusing.attempts);
        assert_eq!(app1.retries, stats.upstream_retries);
        assert_eq!(app1.attempts, 10);
    }

    fn a_backend_that_never_answers_costs_a_timeout_then_a_retry(driver) {
        let silent_backend = SilentBackend::start();
        let (silent, accepted) = (silent_backend.addr, &silent_backend.accepted);
        let h = Harness::start(driver, 1, |c| {
            c.timeouts.backend_response = Duration::from_millis(200);
            c.clusters[0].backends.insert(0, backend("silent", silent));
        });
        // GET: times out on the silent backend, then succeeds on app1.
        let r = get(h.addr, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "app1\n"));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // POST: the round-robin turn is the silent backend again; never retried.
        let r = request(
            h.addr,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        );
        assert_eq!(r.status, 504);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(h.origins[0].connections(), 1, "the POST never reached app1");
    }

    fn a_post_on_a_broken_pooled_connection_is_not_sent_again(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
        s.write_all(b"POST /fail-reused HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
            .unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 502);
        assert_eq!(h.origins[0].connections(), 1, "no second connection for the POST");
        assert_eq!(h.stats().upstream_retries, 0);
    }

    fn a_post_whose_connect_failed_was_never_sent_and_moves_on(driver) {
        // Round-robin starts at the refusing backend for every other request: a
        // refused connect sent nothing, so any request may go elsewhere, its body
        // (held or still to stream) untouched.
        let h = Harness::start(driver, 1, |c| {
            c.clusters[0].backends.insert(0, backend("refusing", closed_port()));
        });
        for i in 0..6 {
            let mut s = connect(h.addr);
            let body = format!("body {i}");
            let head = |extra: &str| {
                format!(
                    "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    body.len()
                )
            };
            let mut pending = Vec::new();
            if i % 2 == 0 {
                s.write_all(format!("{}{body}", head("")).as_bytes()).unwrap();
            } else {
                // The body waits for the 100, which comes once a backend is
                // connected: it is streamed, not held.
                s.write_all(head("Expect: 100-continue\r\n").as_bytes()).unwrap();
                let mut byte = [0u8; 1];
                while !pending.ends_with(b"\r\n\r\n") {
                    s.read_exact(&mut byte).unwrap();
                    pending.push(byte[0]);
                }
                assert!(pending.starts_with(b"HTTP/1.1 100 "));
                pending.clear();
                s.write_all(body.as_bytes()).unwrap();
            }
            let r = read_reply(&mut s, &mut pending, false);
            assert_eq!((r.status, r.text()), (200, body));
        }
        assert!(h.stats().upstream_retries >= 3);
    }

    fn small_bodies_are_held_so_puts_can_be_retried(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.clusters[0].backends.insert(0, backend("refusing", closed_port()));
        });
        // Head and body in separate writes: ringlb reads the body in before trying.
        let mut s = connect(h.addr);
        s.write_all(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n").unwrap();
        s.write_all(b"hello").unwrap();
        let mut pending = Vec::new();
        let r = read_reply(&mut s, &mut pending, false);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    }
}

#[test]
fn max_retries_zero_means_no_retry() {
    let h = Harness::start(Driver::Epoll, 1, |c| {
        c.clusters[0].retry.max_retries = 0;
        c.clusters[0]
            .backends
            .insert(0, backend("refusing", closed_port()));
    });
    assert_eq!(get(h.addr, "/").status, 502);
    assert_eq!(get(h.addr, "/").status, 200);
}

#[test]
fn the_retry_budget_stops_retry_storms() {
    // No budget from traffic: only the shard's reserve.
    let h = Harness::start(Driver::Epoll, 1, |c| {
        c.clusters[0].retry.budget_percent = 0;
        c.clusters[0]
            .backends
            .insert(0, backend("refusing", closed_port()));
    });
    // While the budget lasts every request starts on the refusing backend (the
    // retry moves the turn past the good one). Once it is spent, a request that
    // starts there fails, and the turn alternates.
    let reserve = ringlb::cluster::RETRY_TOKENS_RESERVE as usize;
    let statuses: Vec<u16> = (0..reserve + 4).map(|_| get(h.addr, "/").status).collect();
    assert!(
        statuses[..reserve].iter().all(|&s| s == 200),
        "{statuses:?}"
    );
    assert_eq!(&statuses[reserve..], &[502, 200, 502, 200]);
    let stats = h.stats();
    assert_eq!(stats.upstream_retries, reserve as u64);
    assert_eq!(stats.retries_over_budget, 2);
}
