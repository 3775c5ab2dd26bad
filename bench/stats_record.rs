//! Microbenchmark: what recording one request costs a shard. `ShardStats::record`
//! (counters, status, bytes, two HDR histogram records), and `AccessLog::write`
//! (formatting one line into the shard's buffer and handing full buffers to a
//! writer, here a thread that discards them). `cargo bench --bench stats_record`.
//! Prints nanoseconds per request, the median of 7 runs.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringlb::cluster::backend::Backend;
use ringlb::observe::access_log::{AccessLog, LogNames};
use ringlb::observe::stats::{RequestRecord, ShardStats};

/// Runs `body` N times, 7 times over; returns (median, min, max) ns per call.
fn measure(n: u32, mut body: impl FnMut(u32)) -> (f64, f64, f64) {
    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        for i in 0..n {
            body(i);
        }
        runs.push(t.elapsed().as_nanos() as f64 / f64::from(n));
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    (runs[3], runs[0], runs[6])
}

fn main() {
    let backend = Rc::new(Backend::new(
        0,
        "app1".into(),
        "127.0.0.1:9001".parse().unwrap(),
        1,
        8,
        Duration::from_secs(30),
    ));
    let stats = ShardStats::default();
    let start = Instant::now();
    const N: u32 = 2_000_000;
    let record_for = |i: u32| RequestRecord {
        // Latencies spread over 0.1-1.7 ms, like a small proxied request.
        started: start,
        status: if i.is_multiple_of(50) { 503 } else { 200 },
        attempts: 1,
        bytes_in: 80,
        bytes_out: 150,
        error: None,
    };
    let at = |i: u32| start + Duration::from_micros(100 + u64::from(i % 1600));
    let (median, min, max) = measure(N, |i| {
        stats.record(black_box(&record_for(i)), Some(&backend.stats), at(i))
    });
    println!(
        "ShardStats::record: {median:.1} ns per request (median of 7 runs of {N}; min {min:.1}, max {max:.1})"
    );

    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(256);
    let writer = std::thread::spawn(move || while rx.recv().is_ok() {});
    let log = AccessLog::new(tx);
    let client = "127.0.0.1:43210".parse().unwrap();
    let (median, min, max) = measure(N, |i| {
        log.write(
            client,
            black_box("GET /api/items?page=2"),
            &record_for(i),
            &LogNames {
                listener: "default",
                route: Some("default"),
                cluster: Some("default"),
                backend: Some(&backend.name),
                tls: None,
                http2: false,
            },
            at(i),
        )
    });
    println!(
        "AccessLog::write: {median:.1} ns per request (median of 7 runs of {N}; min {min:.1}, max {max:.1}; {} chunks dropped)",
        log.dropped()
    );
    drop(log);
    let _ = writer.join();
}
