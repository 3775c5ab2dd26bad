//! Microbenchmark: nanoseconds for a listener's router to pick a route, at 1,000
//! routes (300 exact hosts with three prefixes each, 50 wildcard hosts, 49
//! host-less prefixes and a catch-all) and with the short form's single catch-all.
//! Matching is what every request costs between its head and its cluster.
//! `cargo bench --bench route`. Each figure is the median of 5 runs.

use std::hint::black_box;
use std::time::Instant;

use ringlb::route::{HostMatch, PathMatch, RequestView, RouteMatch, Router};

const CALLS: u32 = 1_000_000;

fn rule(host: Option<HostMatch>, path: Option<PathMatch>) -> RouteMatch {
    RouteMatch {
        host,
        path,
        methods: Vec::new(),
        headers: Vec::new(),
    }
}

fn thousand_routes() -> Router<usize> {
    let mut routes = Vec::new();
    for i in 0..300 {
        for prefix in ["/api", "/api/v1", "/static/"] {
            routes.push(rule(
                Some(HostMatch::Exact(format!("svc{i}.example.com"))),
                Some(PathMatch::Prefix(prefix.into())),
            ));
        }
    }
    for i in 0..50 {
        let path = (i % 2 == 1).then(|| PathMatch::Prefix("/app".into()));
        routes.push(rule(
            Some(HostMatch::Wildcard(format!("*.tenant{i}.example.net"))),
            path,
        ));
    }
    for i in 0..49 {
        routes.push(rule(None, Some(PathMatch::Prefix(format!("/legacy{i}")))));
    }
    routes.push(rule(None, None));
    assert_eq!(routes.len(), 1000);
    Router::new(
        routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r, i))
            .collect(),
    )
}

/// Median ns per `route` call for one request, after checking its answer.
fn measure(name: &str, router: &Router<usize>, host: &str, path: &str, expected: usize) {
    let request = RequestView {
        method: b"GET".as_slice(),
        host: Some(host.as_bytes()),
        path: path.as_bytes(),
        header: |_: &str| None,
    };
    assert_eq!(
        router.route(&request).map(|(i, _)| i),
        Some(expected),
        "{name}"
    );
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..CALLS {
            black_box(black_box(router).route(black_box(&request)));
        }
        runs.push(t.elapsed().as_nanos() as f64 / f64::from(CALLS));
    }
    runs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| {name} | {:.1} ns | {:.1} | {:.1} |",
        runs[2], runs[0], runs[4]
    );
}

fn main() {
    let big = thousand_routes();
    let single = Router::new(vec![(rule(None, None), 0)]);
    println!("Router::route, median of 5 runs of {CALLS} calls:\n");
    println!("| request | median | min | max |\n| --- | --- | --- | --- |");
    // svc150's `/api/v1` prefix is route 150 * 3 + 1.
    measure(
        "1,000 routes: exact host, longest of three prefixes",
        &big,
        "SVC150.example.com:443",
        "/api/v1/users/42",
        451,
    );
    // Wildcards start at 900; tenant25 has the `/app` prefix.
    measure(
        "1,000 routes: wildcard host and prefix",
        &big,
        "eu.shop.tenant25.example.net",
        "/app/cart",
        925,
    );
    measure(
        "1,000 routes: no host or prefix matches, the catch-all",
        &big,
        "www.unknown.example.org",
        "/nothing/here/at/all",
        999,
    );
    measure(
        "one catch-all route (the short form)",
        &single,
        "anything",
        "/x",
        0,
    );
}
