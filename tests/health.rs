//! Active health checks: probes, rise and fall thresholds, and shards skipping
//! backends the control thread marked down.

mod support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringlb::config::{CheckType, Config};
use ringlb::control::health::{probe, CheckFailure, CheckKind, Probe};
use ringlb::shard::Driver;
use support::*;

const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(100);

fn fast_checks(c: &mut Config) {
    c.clusters[0].health_check.kind = CheckType::Http;
    c.clusters[0].health_check.interval = INTERVAL;
    c.clusters[0].health_check.timeout = TIMEOUT;
    c.clusters[0].health_check.unhealthy_threshold = 2;
    c.clusters[0].health_check.healthy_threshold = 2;
}

fn healthy(h: &Harness, name: &str) -> bool {
    h.backend(name).healthy
}

/// Stops origin `index` (app2 in these tests) and waits until health checks mark
/// it down. Returns its address, to restart it there. How soon is left to the
/// bounded wait, not to a clock a loaded machine would break; the thresholds
/// themselves are unit-tested in `control::health`.
fn kill_and_wait_down(h: &mut Harness, index: usize, name: &str) -> std::net::SocketAddr {
    let origin = h.origins.remove(index);
    let address = origin.addr();
    origin.stop();
    wait_until("marked down", || !healthy(h, name));
    address
}

/// Waits until `name` is marked up again, and checks it took the passes
/// `fast_checks` asks for: the restarted origin had answered at least
/// `healthy_threshold` probes by then (no proxied traffic reaches a down backend).
fn wait_back_up(h: &Harness, name: &str, restarted: &ringlb::testkit::origin::OriginHandle) {
    wait_until("marked up", || healthy(h, name));
    let probes = restarted.requests();
    assert!(probes >= 2, "marked up after {probes} probe(s)");
}

/// A check without a PROXY header.
fn plain(kind: CheckKind) -> Probe {
    Probe {
        kind,
        send_proxy: None,
        tls: None,
    }
}

fn http_check() -> CheckKind {
    CheckKind::Http {
        path: "/health".into(),
        expect: 200..=399,
    }
}

#[test]
fn probes_report_what_went_wrong() {
    let origin = spawn_origin(Driver::Epoll, "o");
    assert_eq!(probe(origin.addr(), &plain(http_check()), TIMEOUT), Ok(()));
    let server_error = CheckKind::Http {
        path: "/status/500".into(),
        expect: 200..=399,
    };
    assert_eq!(
        probe(origin.addr(), &plain(server_error), TIMEOUT),
        Err(CheckFailure::Status(500))
    );
    let hang = CheckKind::Http {
        path: "/hang".into(),
        expect: 200..=399,
    };
    assert_eq!(
        probe(origin.addr(), &plain(hang), TIMEOUT),
        Err(CheckFailure::Timeout)
    );
    assert!(matches!(
        probe(closed_port(), &plain(CheckKind::Tcp), TIMEOUT),
        Err(CheckFailure::Connect(_))
    ));
    assert_eq!(
        probe(origin.addr(), &plain(CheckKind::Tcp), TIMEOUT),
        Ok(())
    );
}

both_drivers! {
    fn a_dead_backend_is_taken_out_and_brought_back(driver) {
        let mut h = Harness::start(driver, 2, fast_checks);
        wait_until("both healthy", || healthy(&h, "app1") && healthy(&h, "app2"));
        let address = kill_and_wait_down(&mut h, 1, "app2");
        for _ in 0..10 {
            assert_eq!(get(h.addr, "/").text(), "app1\n");
        }
        let restarted = ringlb::testkit::origin::spawn(address, "app2", driver).unwrap();
        wait_back_up(&h, "app2", &restarted);
        wait_until("app2 to serve again", || get(h.addr, "/").text() == "app2\n");
        drop(restarted);
    }
}

#[test]
fn backends_can_start_down_until_they_pass() {
    let h = Harness::start(Driver::IoUring, 1, |c| {
        fast_checks(c);
        c.clusters[0].health_check.start_up = false;
    });
    // Before two passing checks nothing is available; after, traffic flows.
    wait_until("app1 marked up", || healthy(&h, "app1"));
    wait_until("app1 to serve", || get(h.addr, "/").status == 200);
}

#[test]
fn a_failing_status_takes_a_backend_down() {
    let h = Harness::start(Driver::Epoll, 1, |c| {
        fast_checks(c);
        c.clusters[0].health_check.path = "/status/503".into();
    });
    wait_until("app1 marked down", || !healthy(&h, "app1"));
    // Shards apply the decision at their next command poll.
    wait_until("ringlb's own 503", || {
        let r = get(h.addr, "/");
        r.status == 503 && r.header("server") == Some("ringlb")
    });
}

#[test]
fn tcp_checks_only_connect() {
    // A backend that accepts connections and never answers: up for TCP checks.
    let silent = SilentBackend::start();
    let (address, accepted) = (silent.addr, &silent.accepted);
    let h = Harness::start(Driver::Epoll, 0, |c| {
        fast_checks(c);
        c.clusters[0].health_check.kind = CheckType::Tcp;
        c.clusters[0].backends.push(ringlb::config::BackendConfig {
            name: "silent".into(),
            address,
            weight: 1,
        });
    });
    wait_until("four checks", || accepted.load(Ordering::SeqCst) >= 4);
    assert!(healthy(&h, "silent"));
}

both_drivers! {
    fn killing_an_origin_under_load_fails_no_request(driver) {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let mut h = Harness::start(driver, 3, |c| {
            fast_checks(c);
            c.clusters[0].circuit_breaker.enabled = true;
            c.clusters[0].circuit_breaker.open_for = Duration::from_millis(200);
        });
        wait_until("all healthy", || ["app1", "app2", "app3"].iter().all(|n| healthy(&h, n)));
        let addr = h.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        let progress = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&progress);
        // A steady stream of GETs over keep-alive connections, bounded in count.
        let load = std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut done = 0u32;
            let mut s = connect(addr);
            let mut pending = Vec::new();
            while !stopper.load(Ordering::SeqCst) && done < 200_000 {
                s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                let r = read_reply(&mut s, &mut pending, false);
                if r.status != 200 {
                    failures.push(r.status);
                }
                if r.header("connection") == Some("close") {
                    s = connect(addr);
                    pending.clear();
                }
                done += 1;
                counter.store(done, Ordering::SeqCst);
            }
            (done, failures)
        });
        // Kill app2 once the load is flowing through all three.
        wait_until("load to flow", || progress.load(Ordering::SeqCst) >= 30);
        let address = kill_and_wait_down(&mut h, 1, "app2");
        let restarted = ringlb::testkit::origin::spawn(address, "app2", driver).unwrap();
        // (Proxied load reaches it once it is up, so its request count says
        // nothing about probes here: `wait_back_up` is for the quiet test.)
        wait_until("marked up", || healthy(&h, "app2"));
        // Back in rotation: the restarted origin gets proxied traffic.
        wait_until("app2 to serve", || restarted.connections() > 2);
        stop.store(true, Ordering::SeqCst);
        let (done, failures) = load.join().unwrap();
        assert!(done > 100, "only {done} requests");
        assert!(failures.is_empty(), "{} of {done} failed: {failures:?}", failures.len());
    }
}

fn effective_weight(h: &Harness, name: &str) -> u32 {
    h.backend(name).effective_weight
}

#[test]
fn slow_start_ramps_a_returning_backend() {
    let mut h = Harness::start(Driver::Epoll, 2, |c| {
        fast_checks(c);
        c.clusters[0].balancer.strategy = ringlb::config::Strategy::WeightedRoundRobin;
        c.clusters[0].health_check.slow_start = Some(Duration::from_secs(2));
        for b in &mut c.clusters[0].backends {
            b.weight = 10;
        }
    });
    // Starting up is not coming back: full weight from launch.
    assert_eq!(
        (effective_weight(&h, "app1"), effective_weight(&h, "app2")),
        (10, 10)
    );
    let address = kill_and_wait_down(&mut h, 1, "app2");
    let _restarted = ringlb::testkit::origin::spawn(address, "app2", Driver::Epoll).unwrap();
    wait_until("app2 up", || healthy(&h, "app2"));
    let early = effective_weight(&h, "app2");
    assert!(
        early <= 5,
        "effective weight {early} right after coming back"
    );
    let mut app2_share = 0;
    for _ in 0..22 {
        if get(h.addr, "/").text() == "app2\n" {
            app2_share += 1;
        }
    }
    assert!(
        app2_share < 11,
        "a returning backend got {app2_share} of 22 requests"
    );
    wait_until("the ramp to finish", || effective_weight(&h, "app2") == 10);
}
