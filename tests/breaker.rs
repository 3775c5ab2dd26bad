//! Circuit breakers: real request failures open a backend's breaker on the
//! control thread, every shard stops using it, and after `open_for` probe requests
//! decide whether it closes.

mod support;

use std::time::Duration;

use ringlb::config::{BackendConfig, Config};
use ringlb::control::breaker::BreakerState;
use support::*;

const OPEN_FOR: Duration = Duration::from_millis(300);

fn breaker_of(h: &Harness, name: &str) -> BreakerState {
    h.backend(name).breaker
}

fn breakers_on(c: &mut Config) {
    c.clusters[0].circuit_breaker.enabled = true;
    c.clusters[0].circuit_breaker.failure_threshold = 3;
    c.clusters[0].circuit_breaker.open_for = OPEN_FOR;
    c.clusters[0].circuit_breaker.half_open_probes = 1;
}

both_drivers! {
    fn a_silent_backend_opens_its_breaker_and_one_probe_closes_it(driver) {
        let silent = SilentBackend::start();
        let address = silent.addr;
        let h = Harness::start(driver, 1, |c| {
            breakers_on(c);
            c.timeouts.backend_response = Duration::from_millis(150);
            c.clusters[0].backends.insert(0, BackendConfig { name: "flaky".into(), address, weight: 1 });
        });
        // A POST whose turn is the silent backend gets a 504 and is not retried.
        let r = request(
            h.addr,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        );
        assert_eq!(r.status, 504);
        // GETs that time out there are retried on app1, until the breaker opens.
        let mut sent = 0;
        while breaker_of(&h, "flaky") != BreakerState::Open {
            let r = get(h.addr, "/");
            assert_eq!((r.status, r.text().as_str()), (200, "app1\n"));
            sent += 1;
            assert!(sent < 50, "breaker never opened");
        }
        // Open: once the shard has the decision (its next command poll), no
        // request goes there. Round-robin alternates, so two requests that leave
        // the silent backend alone show the shard skips it.
        wait_until("the shard to skip it", || {
            let before = silent.accepted();
            (0..2).all(|_| get(h.addr, "/").status == 200) && silent.accepted() == before
        });
        let accepted = silent.accepted();
        for _ in 0..6 {
            assert_eq!(get(h.addr, "/").text(), "app1\n");
        }
        assert_eq!(silent.accepted(), accepted);

        // The backend recovers; after open_for one probe request closes the breaker.
        silent.stop();
        let revived = ringlb::testkit::origin::spawn(address, "flaky", driver).unwrap();
        wait_until("half-open", || breaker_of(&h, "flaky") == BreakerState::HalfOpen);
        wait_until("the probe to close it", || {
            let r = get(h.addr, "/");
            assert_eq!(r.status, 200);
            breaker_of(&h, "flaky") == BreakerState::Closed
        });
        assert_eq!(revived.connections(), 1, "exactly one probe while half-open");
        wait_until("flaky back in rotation", || get(h.addr, "/").text() == "flaky\n");
    }
}

#[test]
fn server_errors_count_only_when_asked() {
    for (count_5xx, expected) in [(true, BreakerState::Open), (false, BreakerState::Closed)] {
        let h = Harness::start(ringlb::shard::Driver::Epoll, 1, |c| {
            breakers_on(c);
            c.clusters[0].circuit_breaker.count_5xx = count_5xx;
        });
        for _ in 0..3 {
            assert_eq!(get(h.addr, "/status/503").status, 503);
        }
        if count_5xx {
            wait_until("the breaker to open", || {
                breaker_of(&h, "app1") == BreakerState::Open
            });
            // The shard applies it at its next command poll.
            wait_until("ringlb's own 503", || {
                get(h.addr, "/").header("server") == Some("ringlb")
            });
        } else {
            // A success after the 503s is reported only if a failure was: nothing
            // was, so the breaker has nothing to count.
            assert_eq!(get(h.addr, "/").status, 200);
            assert_eq!(breaker_of(&h, "app1"), expected);
        }
    }
}
