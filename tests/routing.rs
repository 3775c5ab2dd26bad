//! Routes through the real proxy: hosts (exact and wildcard), paths (exact,
//! prefixes, stripped), methods and headers, the most specific route whatever the
//! file order, 404 when nothing matches, header rewrites, two listeners, and
//! clusters that keep their own strategy, health and operator state.

mod support;

use std::collections::HashMap;

use ringlb::config::{CheckType, Config, PathRule, Strategy};
use ringlb::control::handle::AdminState;
use ringlb::shard::Driver;
use ringlb::testkit::origin::OriginHandle;
use support::*;

/// Clusters `a`, `b` and `c`, one origin each (`A`, `B`, `C`).
fn three_clusters(c: &mut Config, o: &[OriginHandle]) {
    c.listeners.push(listener("web"));
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let backend = format!("{name}1");
        c.clusters
            .push(cluster(name, &[(backend.as_str(), o[i].addr())]));
    }
}

both_drivers! {
    fn hosts_route_exact_then_wildcard_then_none(driver) {
        let h = Harness::start_full(driver, &["A", "B", "C"], |c, o| {
            three_clusters(c, o);
            // File order is the least specific first: it must not matter.
            c.routes.push(route("rest", "web", "c"));
            let mut wild = route("wild", "web", "b");
            wild.host = Some("*.example.com".into());
            c.routes.push(wild);
            let mut api = route("api", "web", "a");
            api.host = Some("api.example.com".into());
            c.routes.push(api);
        });
        let to = |host: &str| served_by(&get_host(h.addr, host, "/", ""));
        assert_eq!(to("api.example.com"), "A");
        assert_eq!(to("API.Example.COM:8080"), "A", "case and port are ignored");
        assert_eq!(to("api.example.com."), "A", "a trailing dot is ignored");
        assert_eq!(to("www.example.com"), "B");
        assert_eq!(to("a.b.example.com"), "B", "a wildcard takes several labels");
        assert_eq!(to("example.com"), "C", "a wildcard needs a label in front");
        assert_eq!(to("example.org"), "C");
        // An absolute-form target's authority is the host (RFC 9112 §3.2.2).
        let r = request(
            h.addr,
            b"GET http://api.example.com/ HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(served_by(&r), "A");
    }

    fn paths_route_exact_then_longest_prefix(driver) {
        let h = Harness::start_full(driver, &["A", "B", "C", "D"], |c, o| {
            three_clusters(c, o);
            c.clusters.push(cluster("d", &[("d1", o[3].addr())]));
            let mut api = route("api", "web", "b");
            api.path = Some(PathRule::Prefix("/api".into()));
            api.strip_prefix = true;
            c.routes.push(api);
            let mut v2 = route("v2", "web", "c");
            v2.path = Some(PathRule::Prefix("/api/v2".into()));
            c.routes.push(v2);
            let mut exact = route("exact", "web", "a");
            exact.path = Some(PathRule::Exact("/exact".into()));
            c.routes.push(exact);
            c.routes.push(route("rest", "web", "d"));
        });
        let to = |path: &str| served_by(&get_host(h.addr, "t", path, ""));
        assert_eq!(to("/exact"), "A");
        assert_eq!(to("/exact/more"), "D", "an exact path is exact");
        assert_eq!(to("/exact?q=1"), "A", "the query is not part of the path");
        assert_eq!(to("/api"), "B");
        assert_eq!(to("/api/x"), "B");
        assert_eq!(to("/apix"), "D", "prefixes end at a segment");
        assert_eq!(to("/api/v2"), "C");
        assert_eq!(to("/api/v2/users"), "C", "the longer prefix wins");
        assert_eq!(to("/api/v20"), "B");
        assert_eq!(to("/"), "D");
        // strip_prefix: the origin sees the rest of the path, query kept.
        let head = get_host(h.addr, "t", "/api/headers?x=1", "").text();
        assert!(head.starts_with("GET /headers?x=1 HTTP/1.1\r\n"), "{head}");
        let head = get_host(h.addr, "t", "/api", "").text();
        assert_eq!(head, "B\n", "`/api` stripped is `/`, the origin's name");
        // Not stripped on the route that does not ask for it: the origin sees
        // `/api/v2/headers`, not `/headers`, and answers with its name.
        assert_eq!(get_host(h.addr, "t", "/api/v2/headers", "").text(), "C\n");
    }

    fn methods_and_headers_filter_then_fall_through(driver) {
        let h = Harness::start_full(driver, &["A", "B", "C"], |c, o| {
            three_clusters(c, o);
            let mut posts = route("posts", "web", "a");
            posts.host = Some("app.test".into());
            posts.methods = vec!["POST".into(), "PUT".into()];
            c.routes.push(posts);
            let mut canary = route("canary", "web", "b");
            canary.host = Some("app.test".into());
            canary.headers = vec![("x-canary".into(), "1".into())];
            c.routes.push(canary);
            c.routes.push(route("rest", "web", "c"));
        });
        assert_eq!(served_by(&get_host(h.addr, "app.test", "/", "")), "C");
        let post = request(
            h.addr,
            b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        );
        assert_eq!((served_by(&post).as_str(), post.text().as_str()), ("A", "hi"));
        assert_eq!(served_by(&get_host(h.addr, "app.test", "/", "X-Canary: 1\r\n")), "B");
        assert_eq!(
            served_by(&get_host(h.addr, "app.test", "/", "X-Canary: 2\r\n")),
            "C",
            "the value must match exactly"
        );
        assert_eq!(
            served_by(&get_host(h.addr, "other.test", "/", "X-Canary: 1\r\n")),
            "C",
            "the header route is for its host only"
        );
    }

    fn a_request_no_route_matches_gets_404(driver) {
        let h = Harness::start_full(driver, &["A"], |c, o| {
            c.listeners.push(listener("web"));
            c.clusters.push(cluster("a", &[("a1", o[0].addr())]));
            let mut only = route("only", "web", "a");
            only.host = Some("only.test".into());
            c.routes.push(only);
        });
        assert_eq!(served_by(&get_host(h.addr, "only.test", "/", "")), "A");
        let r = get_host(h.addr, "elsewhere.test", "/", "");
        assert_eq!(r.status, 404);
        assert_eq!(r.text(), "404 Not Found: no route match\n");
        assert_eq!(r.header("server"), Some("ringlb"));
        assert_eq!(h.origins[0].requests(), 1, "the origin never saw it");
        let stats = h.stats();
        let no_route = ringlb::observe::stats::ERROR_KINDS
            .iter()
            .position(|k| *k == "no_route")
            .unwrap();
        assert_eq!(stats.errors[no_route], 1);
        assert_eq!(stats.client_errors, 1);
    }
}

#[test]
fn the_most_specific_route_wins_whatever_the_file_order() {
    // The same routes in two orders answer the same.
    let answers = |reverse: bool| {
        let h = Harness::start_full(Driver::Epoll, &["A", "B", "C", "D", "E"], |c, o| {
            c.listeners.push(listener("web"));
            for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
                let backend = format!("{name}1");
                c.clusters
                    .push(cluster(name, &[(backend.as_str(), o[i].addr())]));
            }
            let mut routes = Vec::new();
            let mut r = route("host-prefix", "web", "a");
            r.host = Some("x.test".into());
            r.path = Some(PathRule::Prefix("/p".into()));
            routes.push(r);
            let mut r = route("host", "web", "b");
            r.host = Some("x.test".into());
            routes.push(r);
            let mut r = route("wild-exact", "web", "c");
            r.host = Some("*.test".into());
            r.path = Some(PathRule::Exact("/p".into()));
            routes.push(r);
            let mut r = route("prefix", "web", "d");
            r.path = Some(PathRule::Prefix("/p".into()));
            routes.push(r);
            routes.push(route("rest", "web", "e"));
            if reverse {
                routes.reverse();
            }
            c.routes = routes;
        });
        [
            ("x.test", "/p/1"),
            ("x.test", "/q"),
            ("y.test", "/p"),
            ("y.test", "/p/1"),
            ("z.org", "/p"),
            ("z.org", "/"),
        ]
        .iter()
        .map(|(host, path)| served_by(&get_host(h.addr, host, path, "")))
        .collect::<Vec<_>>()
    };
    let forward = answers(false);
    assert_eq!(forward, ["A", "B", "C", "D", "D", "E"]);
    assert_eq!(answers(true), forward);
}

#[test]
fn routes_set_and_remove_request_headers() {
    let h = Harness::start_full(Driver::Epoll, &["A"], |c, o| {
        c.listeners.push(listener("web"));
        c.clusters.push(cluster("a", &[("a1", o[0].addr())]));
        let mut r = route("rewrite", "web", "a");
        r.set_request_headers = vec![
            ("x-served-by".into(), "ringlb".into()),
            ("host".into(), "internal.test".into()),
        ];
        r.remove_request_headers = vec!["cookie".into()];
        c.routes.push(r);
    });
    let head = get_host(
        h.addr,
        "public.test",
        "/headers",
        "Cookie: secret=1\r\nX-Served-By: client\r\nAccept: */*\r\n",
    )
    .text();
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nx-served-by: ringlb\r\n"), "{head}");
    assert!(!lower.contains("x-served-by: client"), "{head}");
    assert!(!lower.contains("cookie"), "{head}");
    assert!(lower.contains("\r\nhost: internal.test\r\n"), "{head}");
    assert!(!lower.contains("\r\nhost: public.test"), "{head}");
    assert!(lower.contains("\r\naccept: */*\r\n"), "{head}");
    assert!(
        lower.contains("x-forwarded-host: public.test"),
        "the client's host still goes in X-Forwarded-Host: {head}"
    );
}

#[test]
fn two_listeners_route_on_their_own() {
    let h = Harness::start_full(Driver::Epoll, &["A", "B"], |c, o| {
        c.listeners.push(listener("web"));
        c.listeners.push(listener("internal"));
        c.clusters.push(cluster("a", &[("a1", o[0].addr())]));
        c.clusters.push(cluster("b", &[("b1", o[1].addr())]));
        c.routes.push(route("web", "web", "a"));
        c.routes.push(route("internal", "internal", "b"));
    });
    let web = h.listener_addr("web");
    let internal = h.listener_addr("internal");
    assert_ne!(web, internal);
    assert_eq!(h.addr, web, "local_addr is the first listener's");
    for _ in 0..3 {
        assert_eq!(served_by(&get(web, "/")), "A");
        assert_eq!(served_by(&get(internal, "/")), "B");
    }
    // Per-route and per-cluster figures, in /stats and /metrics.
    let admin = h.server().admin_addr();
    let stats: serde_json::Value = serde_json::from_str(&get(admin, "/stats").text()).unwrap();
    let by_name = |list: &str| -> HashMap<String, serde_json::Value> {
        stats[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
            .collect()
    };
    let routes = by_name("routes");
    assert_eq!(routes["web"]["requests"], 3);
    assert_eq!(routes["internal"]["listener"], "internal");
    assert_eq!(routes["internal"]["requests"], 3);
    let clusters = by_name("clusters");
    assert_eq!(clusters["a"]["requests"], 3);
    assert_eq!(clusters["b"]["latency"]["since_start"]["count"], 3);
    let listeners = by_name("listeners");
    assert_eq!(listeners["internal"]["address"], internal.to_string());
    let backends = by_name("backends");
    assert_eq!(backends["b1"]["cluster"], "b");
    let metrics = get(admin, "/metrics").text();
    for line in [
        "ringlb_route_requests_total{route=\"web\",listener=\"web\",cluster=\"a\"} 3\n",
        "ringlb_cluster_requests_total{cluster=\"b\"} 3\n",
        "ringlb_cluster_request_duration_seconds_count{cluster=\"a\"} 3\n",
        "ringlb_backend_up{backend=\"a1\",cluster=\"a\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.contains(&format!(
        "ringlb_listener_info{{listener=\"internal\",address=\"{internal}\",protocol=\"http\"}} 1\n"
    )));
}

#[test]
fn clusters_keep_their_own_strategy_health_and_operator_state() {
    let dead = closed_port();
    let h = Harness::start_full(Driver::Epoll, &["A", "B"], |c, o| {
        c.listeners.push(listener("web"));
        // `a` checks its backends and has one that is down; `b` has none.
        let mut a = cluster(
            "a",
            &[("dead", dead), ("a1", o[0].addr()), ("a2", o[1].addr())],
        );
        a.health_check.kind = CheckType::Tcp;
        a.health_check.interval = std::time::Duration::from_millis(50);
        a.health_check.unhealthy_threshold = 1;
        c.clusters.push(a);
        // The same address as a2, under another name, in another cluster.
        let mut b = cluster("b", &[("b1", o[1].addr())]);
        b.balancer.strategy = Strategy::LeastConn;
        c.clusters.push(b);
        let mut to_b = route("b", "web", "b");
        to_b.path = Some(PathRule::Prefix("/b".into()));
        c.routes.push(to_b);
        c.routes.push(route("a", "web", "a"));
    });
    let handle = h.server().handle();
    wait_until("dead to be marked down", || {
        handle
            .backends()
            .unwrap()
            .iter()
            .any(|b| b.name == "dead" && !b.healthy)
    });
    let clusters = handle.clusters().unwrap();
    assert_eq!(clusters[0].strategy, "round-robin");
    assert_eq!(clusters[1].strategy, "least-conn");
    assert!(clusters[1]
        .backends
        .iter()
        .all(|b| b.healthy && b.cluster == "b"));
    // `a` skips its dead backend; `b` never notices.
    for _ in 0..4 {
        assert_ne!(served_by(&get(h.addr, "/")), "-");
        assert_eq!(served_by(&get(h.addr, "/b")), "B");
    }
    // Disabling a2 in `a` leaves b1, at the same address, in `b`.
    assert_eq!(
        handle
            .set_admin_state("a2", AdminState::Disabled)
            .unwrap()
            .state,
        AdminState::Disabled
    );
    wait_until("a to send everything to a1", || {
        (0..3).all(|_| served_by(&get(h.addr, "/")) == "A")
    });
    for _ in 0..3 {
        assert_eq!(served_by(&get(h.addr, "/b")), "B");
    }
}
