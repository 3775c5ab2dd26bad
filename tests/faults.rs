//! Backends that fail part-way, through the real proxy: each gives the client the
//! documented outcome (a 502 or 504 before any of the response; a closed
//! connection after part of it; never a hang past the configured timeout), and
//! each is counted. The first part of the fault suite of issue 13.

mod support;

use std::io::Write;
use std::time::Duration;

use ringlb::observe::stats::ERROR_KINDS;
use support::*;

/// A proxy whose one backend accepts and never answers nor reads, with no retries.
fn silent_only(
    driver: ringlb::shard::Driver,
    backend_response: Duration,
) -> (SilentBackend, Harness) {
    let silent = SilentBackend::start();
    let h = Harness::start(driver, 0, |c| {
        c.timeouts.backend_response = backend_response;
        c.clusters[0].retry.max_retries = 0;
        c.clusters[0].backends.push(ringlb::config::BackendConfig {
            name: "silent".into(),
            address: silent.addr,
            weight: 1,
        });
    });
    (silent, h)
}

fn errors(h: &Harness, kind: &str) -> u64 {
    let i = ERROR_KINDS.iter().position(|k| *k == kind).unwrap();
    h.stats().errors[i]
}

both_drivers! {
    fn a_head_cut_off_is_a_502(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let r = get(h.addr, "/fault/partial-head");
        assert_eq!(r.status, 502);
        assert_eq!(errors(&h, "upstream_io"), 1);
    }

    fn a_reset_mid_body_closes_the_client_after_what_arrived(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        s.write_all(b"GET /fault/reset-after/100000 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let raw = read_to_close(&mut s);
        let text = String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(text.contains("Content-Length: 200000\r\n"), "{text}");
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = raw.len() - head_end;
        assert!(body <= 100_000, "at most what the backend sent: {body}");
        assert_eq!(errors(&h, "upstream_io"), 1);
    }

    fn a_stalled_body_is_cut_at_the_backend_response_timeout(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.timeouts.backend_response = Duration::from_millis(300);
        });
        let mut s = connect(h.addr);
        s.write_all(b"GET /fault/stall-body/1000 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        // The proxy closes the connection (read_to_close would fail its bounded
        // wait if it hung).
        let raw = read_to_close(&mut s);
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(raw.len() - head_end, 1000, "what arrived, and no more");
        assert_eq!(errors(&h, "response_timeout"), 1);
    }

    fn a_slow_backend_within_its_timeout_is_served_whole(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.timeouts.backend_response = Duration::from_secs(5);
        });
        let r = get(h.addr, "/fault/slow/200");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 200);
        assert_eq!(h.stats().errors.iter().sum::<u64>(), 0);
    }

    fn a_backend_that_accepts_and_never_answers_is_a_504(driver) {
        let (silent, h) = silent_only(driver, Duration::from_millis(300));
        let r = get(h.addr, "/");
        assert_eq!(r.status, 504);
        assert_eq!(errors(&h, "response_timeout"), 1);
        assert!(silent.accepted() >= 1);
        silent.stop();
    }

    fn a_backend_that_never_reads_an_upload_is_a_504(driver) {
        // It accepts and reads nothing: once the socket buffers fill, the body's
        // writes stall for `backend_response`, which is the whole wait (the grace
        // for an early answer is short), and the outcome is a timeout, not an
        // I/O failure.
        let (silent, h) = silent_only(driver, Duration::from_millis(500));
        let total: usize = 64 * 1024 * 1024;
        let mut s = connect(h.addr);
        let upload = start_upload(&mut s, "/upload", total);
        let mut pending = Vec::new();
        let reply = read_reply(&mut s, &mut pending, false);
        assert_eq!(reply.status, 504);
        drop(s);
        assert!(upload.join().unwrap() < total, "the body did not all go");
        assert_eq!(errors(&h, "response_timeout"), 1);
        assert_eq!(errors(&h, "upstream_io"), 0);
        silent.stop();
    }
}
