//! Microbenchmark: nanoseconds to parse and rewrite a typical request head (a
//! browser-like GET with 9 header fields, 446 bytes), which is what every request
//! costs before a backend is chosen. `cargo bench --bench parse`. Each figure is
//! the median of 5 runs.

use std::hint::black_box;
use std::time::Instant;

use ringlb::protocol::h1::{parse_request, Forwarding, Limits};

const HEAD: &[u8] = b"GET /api/v1/items?page=2&sort=name HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://shop.example.com/items\r\n\
Cookie: session=4f1c2a9be07d43e8a1b2c3d4e5f60718; theme=dark\r\n\
Connection: keep-alive\r\n\
X-Request-Id: 0b6d2e7c-5a1f-4c3e-9d8b-7a6f5e4d3c2b\r\n\r\n";

fn main() {
    // Fewer under valgrind: RINGLB_BENCH_HEADS=20000.
    let heads: u64 = std::env::var("RINGLB_BENCH_HEADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let limits = Limits::default();
    let forwarding = Forwarding {
        client_ip: "192.0.2.10".parse().unwrap(),
        proto: "http",
    };
    let mut out = Vec::with_capacity(1024);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..heads {
            out.clear();
            let request = parse_request(black_box(HEAD), &limits, &forwarding, &mut out)
                .expect("a valid head")
                .expect("a whole head");
            black_box((&request, &out));
        }
        runs.push(t.elapsed().as_nanos() as f64 / heads as f64);
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "parse_request ({} bytes, 9 fields, rewritten with X-Forwarded-*): {:.1} ns per head \
         (median of 5 runs of {heads}; min {:.1}, max {:.1})",
        HEAD.len(),
        runs[2],
        runs[0],
        runs[4]
    );
}
