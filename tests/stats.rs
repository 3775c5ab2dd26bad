//! Statistics: a known mix of requests through two shards, and `/stats` and
//! `/metrics` reporting exactly that, merged over both shards.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringlb::shard::Driver;
use serde_json::Value;
use support::*;

fn stats(h: &Harness, query: &str) -> Value {
    let r = get(h.server().admin_addr(), &format!("/stats{query}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("valid JSON")
}

fn requests(v: &Value) -> u64 {
    v["totals"]["requests"].as_u64().unwrap()
}

/// 24 requests delayed 20 ms, 4 × 404 and 2 × 503, each on its own connection so
/// the kernel spreads them over both shards. Returns the longest time the client
/// waited for one of them, in milliseconds: ringlb's own measure of a request
/// starts after the client connected and ends before the client read the last
/// byte, so no latency it reports may exceed it (whatever the machine's load).
fn send_known_mix(h: &Harness) -> f64 {
    let mut longest = Duration::ZERO;
    for _ in 0..24 {
        let started = Instant::now();
        assert_eq!(get(h.addr, "/delay/20ms").status, 200);
        longest = longest.max(started.elapsed());
    }
    for _ in 0..4 {
        assert_eq!(get(h.addr, "/status/404").status, 404);
    }
    for _ in 0..2 {
        assert_eq!(get(h.addr, "/status/503").status, 503);
    }
    longest.as_secs_f64() * 1000.0
}

/// The client's longest wait plus what the histogram may round a value up by
/// (three significant figures) and one microsecond of reporting resolution.
fn ceiling(client_ms: f64) -> f64 {
    client_ms * 1.001 + 0.001
}

both_drivers! {
    fn stats_report_exactly_the_known_mix_merged_over_shards(driver) {
        let h = Harness::start(driver, 2, |c| c.server.shards = 2);
        let client_ms = send_known_mix(&h);
        wait_until("all 30 requests reported", || requests(&stats(&h, "")) == 30);
        let s = stats(&h, "");
        assert_eq!(s["shards"], 2);
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s["strategy"], "round-robin");
        let totals = &s["totals"];
        assert_eq!(totals["status_codes"]["200"], 24);
        assert_eq!(totals["status_codes"]["404"], 4);
        assert_eq!(totals["status_codes"]["503"], 2);
        assert_eq!(totals["responses"]["2xx"], 24);
        assert_eq!(totals["responses"]["5xx"], 2);
        assert_eq!(totals["connections_accepted"], 30);
        assert_eq!(totals["errors"]["connect"], 0);
        assert_eq!(s["backends"][0]["errors"]["response_timeout"], 0);

        // Latency: 80% of requests waited 20 ms at the origin, so p50 and p99 are
        // at least that, and none exceeds what the client waited.
        for scope in ["window", "since_start"] {
            let l = &s["latency"][scope];
            assert_eq!(l["count"], 30, "{scope}");
            let (p50, p99) = (l["p50"].as_f64().unwrap(), l["p99"].as_f64().unwrap());
            let max = l["max"].as_f64().unwrap();
            assert!(p50 >= 20.0, "{scope} p50 {p50}");
            assert!(p99 >= p50, "{scope} p99 {p99} p50 {p50}");
            assert!(max >= p99, "{scope} max {max} p99 {p99}");
            assert!(max <= ceiling(client_ms), "{scope} max {max} ms, client waited {client_ms} ms");
        }

        // Per backend: the two origins shared the requests.
        let backends = s["backends"].as_array().unwrap();
        assert_eq!(backends.len(), 2);
        let mut total = 0;
        for b in backends {
            assert_eq!(b["healthy"], true);
            assert_eq!(b["breaker"], "closed");
            assert_eq!(b["requests"], b["selections"]);
            assert!(b["requests"].as_u64().unwrap() > 0, "{b}");
            assert!(b["latency"]["since_start"]["count"] == b["requests"]);
            total += b["requests"].as_u64().unwrap();
        }
        assert_eq!(total, 30);

        // Both shards served some, and their own figures add up.
        let per_shard: Vec<u64> = (0..2).map(|i| requests(&stats(&h, &format!("?shard={i}")))).collect();
        assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
        assert_eq!(per_shard.iter().sum::<u64>(), 30);
        let one = stats(&h, "?shard=0");
        assert_eq!(one["shard"], 0);
        assert!(one["backends"][0]["latency"].is_null(), "per-backend latency is global only");
        assert_eq!(get(h.server().admin_addr(), "/stats?shard=7").status, 404);
        assert_eq!(get(h.server().admin_addr(), "/stats?shard=x").status, 400);
    }
}

#[test]
fn metrics_are_valid_prometheus_text_and_agree_with_stats() {
    let h = Harness::start(Driver::IoUring, 2, |c| c.server.shards = 2);
    let client_ms = send_known_mix(&h);
    wait_until("all 30 requests reported", || {
        requests(&stats(&h, "")) == 30
    });
    let r = get(h.server().admin_addr(), "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    let text = r.text();
    // Every sample line belongs to a family announced with HELP and TYPE.
    let mut announced = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            announced.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .trim_end_matches("_bucket");
            assert!(
                announced.contains(family) || announced.contains(name),
                "{line}"
            );
        }
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("parses as exposition format");
    let mut by_code: HashMap<String, f64> = HashMap::new();
    let mut up = 0.0;
    let mut p99 = None;
    for sample in &scrape.samples {
        match (sample.metric.as_str(), &sample.value) {
            ("ringlb_requests_total", prometheus_parse::Value::Counter(v)) => {
                *by_code
                    .entry(sample.labels["code"].to_string())
                    .or_default() += v;
            }
            ("ringlb_backend_up", prometheus_parse::Value::Gauge(v)) => up += v,
            ("ringlb_request_duration_seconds", prometheus_parse::Value::Summary(qs)) => {
                p99 = qs.iter().find(|q| q.quantile == 0.99).map(|q| q.count);
            }
            _ => {}
        }
    }
    assert_eq!(by_code.get("200"), Some(&24.0));
    assert_eq!(by_code.get("404"), Some(&4.0));
    assert_eq!(by_code.get("503"), Some(&2.0));
    assert_eq!(up, 2.0);
    let p99 = p99.expect("a p99 quantile");
    assert!(p99 >= 0.020, "p99 {p99} s");
    assert!(
        p99 * 1000.0 <= ceiling(client_ms),
        "p99 {p99} s, client waited {client_ms} ms"
    );
    assert!(
        text.contains("ringlb_request_duration_seconds_count 30\n"),
        "{text}"
    );
    assert!(text.contains("ringlb_backend_breaker_state{backend=\"app1\",cluster=\"default\"} 0\n"));
}

#[test]
fn errors_are_counted_by_kind_and_backend() {
    let silent = SilentBackend::start();
    let address = silent.addr;
    let h = Harness::start(Driver::Epoll, 0, |c| {
        c.timeouts.backend_response = std::time::Duration::from_millis(100);
        c.clusters[0].backends.push(ringlb::config::BackendConfig {
            name: "silent".into(),
            address,
            weight: 1,
        });
    });
    let r = request(
        h.addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert_eq!(r.status, 504);
    let bad = exchange(h.addr, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert!(bad.starts_with(b"HTTP/1.1 400 "));
    wait_until("both reported", || {
        requests(&stats(&h, "")) == 1 && stats(&h, "")["totals"]["errors"]["bad_request"] == 1
    });
    let s = stats(&h, "");
    assert_eq!(s["totals"]["errors"]["response_timeout"], 1);
    assert_eq!(s["totals"]["status_codes"]["504"], 1);
    assert_eq!(s["totals"]["status_codes"]["400"], 1);
    assert_eq!(s["backends"][0]["errors"]["response_timeout"], 1);
    assert_eq!(s["backends"][0]["errors"]["bad_request"], 0);
    assert_eq!(s["backends"][0]["failures"], 1);
    let metrics = get(h.server().admin_addr(), "/metrics").text();
    assert!(
        metrics.contains("ringlb_errors_total{backend=\"silent\",cluster=\"default\",kind=\"response_timeout\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringlb_errors_total{backend=\"\",cluster=\"\",kind=\"bad_request\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringlb_requests_total{backend=\"\",cluster=\"\",code=\"400\"} 1\n"),
        "{metrics}"
    );
    silent.stop();
}
