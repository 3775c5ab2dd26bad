//! Live reconfiguration through the real proxy: reloads under load that change
//! routes, clusters and a listener lose no request and send none twice; removed
//! listeners finish what they serve; state survives where identity survives; a bad
//! configuration or an address in use is refused whole; `POST /reload` re-reads the
//! file.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringlb::config::{CheckType, Config, PathRule};
use ringlb::control::handle::ReloadError;
use ringlb::shard::Driver;
use ringlb::testkit::origin::OriginHandle;
use support::*;

/// Configuration A: listeners `web` and `extra`; `/a` → cluster `ca` (origin A),
/// everything else → `shared` (S); `extra` → `cx` (X).
fn config_a(base: &Config, o: &[OriginHandle]) -> Config {
    let mut c = base.clone();
    c.listeners = vec![listener("web"), listener("extra")];
    c.clusters = vec![
        cluster("ca", &[("a1", o[0].addr())]),
        cluster("shared", &[("s1", o[2].addr())]),
        cluster("cx", &[("x1", o[3].addr())]),
    ];
    let mut a = route("a", "web", "ca");
    a.path = Some(PathRule::Prefix("/a".into()));
    c.routes = vec![
        a,
        route("rest", "web", "shared"),
        route("extra", "extra", "cx"),
    ];
    c
}

/// Configuration B: only `web`; `/a` → cluster `cb` (origin B), `/b` and the rest
/// → `shared`.
fn config_b(base: &Config, o: &[OriginHandle]) -> Config {
    let mut c = base.clone();
    c.listeners = vec![listener("web")];
    c.clusters = vec![
        cluster("cb", &[("b1", o[1].addr())]),
        cluster("shared", &[("s1", o[2].addr())]),
    ];
    let mut a = route("a", "web", "cb");
    a.path = Some(PathRule::Prefix("/a".into()));
    let mut b = route("b", "web", "shared");
    b.path = Some(PathRule::Prefix("/b".into()));
    c.routes = vec![a, b, route("rest", "web", "shared")];
    c
}

/// The listener named `name` in a reload's outcome.
fn added(outcome: &ringlb::control::handle::ReloadOutcome, name: &str) -> Option<SocketAddr> {
    outcome
        .listeners_added
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| *a)
}

/// Whether nothing accepts connections at `addr` any more.
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr) {
        Err(_) => true,
        // Accepted by the kernel before the socket closed: a request there dies.
        Ok(mut s) => {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            read_to_close(&mut s).is_empty()
        }
    }
}

/// What load threads saw.
#[derive(Default)]
struct Tally {
    /// Requests answered as their route allowed.
    ok: AtomicU64,
    /// Anything else, described.
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn check(&self, what: &str, reply: &Reply, allowed: &[&str], body: Option<&str>) {
        let origin = served_by(reply);
        if reply.status == 200
            && allowed.contains(&origin.as_str())
            && body.is_none_or(|b| reply.text() == b)
        {
            self.ok.fetch_add(1, Ordering::SeqCst);
        } else {
            self.failures.lock().unwrap().push(format!(
                "{what}: {} from {origin}: {:?}",
                reply.status,
                reply.text()
            ));
        }
    }
}

/// Most requests one load thread sends: the loops stop by themselves.
const MAX_REQUESTS: usize = 200_000;

#[test]
fn twenty_reloads_under_load_lose_no_request_and_send_none_twice() {
    let h = Harness::start_full(Driver::Epoll, &["A", "B", "S", "X"], |c, o| {
        c.server.shards = 2;
        let a = config_a(c, o);
        *c = a;
    });
    let web = h.listener_addr("web");
    let handle = h.server().handle();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Keep-alive GETs on /a (A or B, by the configuration at the time).
    // Keep-alive GETs to the catch-all (always S), and POSTs (never retried).
    for (path, allowed, post) in [
        ("/a/x", &["A", "B"][..], false),
        ("/s", &["S"][..], false),
        ("/echo", &["S"][..], true),
    ] {
        let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            let mut s = connect(web);
            let mut pending = Vec::new();
            for i in 0..MAX_REQUESTS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let body = format!("post-{i}");
                let raw = if post {
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
                };
                s.write_all(raw.as_bytes()).unwrap();
                let reply = read_reply(&mut s, &mut pending, false);
                tally.check(path, &reply, allowed, post.then_some(body.as_str()));
            }
        }));
    }
    // A new connection per request.
    {
        let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
        threads.push(std::thread::spawn(move || {
            for _ in 0..MAX_REQUESTS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                tally.check("/a/new", &get(web, "/a/new"), &["A", "B"], None);
            }
        }));
    }
    let a = h.config.clone();
    let b = config_b(&h.config, &h.origins);
    let mut extra_checks = 0;
    for round in 0..20 {
        let before = tally.ok.load(Ordering::SeqCst);
        let to_b = round % 2 == 0;
        let outcome = handle
            .reload(if to_b { b.clone() } else { a.clone() })
            .expect("the reload is taken");
        if to_b {
            assert_eq!(outcome.listeners_removed.len(), 1, "{outcome:?}");
            let (name, address) = &outcome.listeners_removed[0];
            assert_eq!(name, "extra");
            wait_until("the removed listener to refuse", || refused(*address));
        } else {
            let extra = added(&outcome, "extra").expect("extra is bound again");
            assert_eq!(served_by(&get(extra, "/")), "X");
            extra_checks += 1;
        }
        // Traffic went on meanwhile.
        wait_until("requests after the reload", || {
            tally.ok.load(Ordering::SeqCst) >= before + 50
        });
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let failures = tally.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let answered = tally.ok.load(Ordering::SeqCst);
    let received: u64 = h.origins[..3].iter().map(OriginHandle::requests).sum();
    assert_eq!(received, answered, "every request reached one origin once");
    // X also answered the probes that reached `extra` before it closed.
    assert!(h.origins[3].requests() >= extra_checks);
    assert!(h.origins[0].requests() > 0 && h.origins[1].requests() > 0);
}

#[test]
fn a_removed_listener_finishes_its_requests_then_refuses() {
    let h = Harness::start_full(Driver::Epoll, &["A", "B", "S", "X"], |c, o| {
        let a = config_a(c, o);
        *c = a;
    });
    let extra = h.listener_addr("extra");
    let slow = std::thread::spawn(move || get(extra, "/delay/300ms"));
    wait_until("the slow request to reach X", || {
        h.origins[3].requests() == 1
    });
    let outcome = h
        .server()
        .handle()
        .reload(config_b(&h.config, &h.origins))
        .unwrap();
    assert_eq!(outcome.listeners_removed, [("extra".to_string(), extra)]);
    let reply = slow.join().unwrap();
    assert_eq!((reply.status, served_by(&reply).as_str()), (200, "X"));
    assert_eq!(reply.header("connection"), Some("close"));
    wait_until("extra to refuse", || refused(extra));
    // The listener that stayed serves the new routes.
    assert_eq!(served_by(&get(h.addr, "/a")), "B");
}

#[test]
fn state_survives_a_reload_where_identity_survives() {
    let dead = closed_port();
    let h = Harness::start(Driver::Epoll, 1, |c| {
        let cluster = &mut c.clusters[0];
        cluster.health_check.kind = CheckType::Tcp;
        cluster.health_check.interval = Duration::from_millis(50);
        // A backend that started afresh would stay up for two more checks, and
        // one that is down needs many passes to come back.
        cluster.health_check.unhealthy_threshold = 3;
        cluster.health_check.healthy_threshold = 100;
        cluster.backends.push(ringlb::config::BackendConfig {
            name: "dead".into(),
            address: dead,
            weight: 1,
        });
    });
    let handle = h.server().handle();
    let status = |name: &str| {
        handle
            .backends()
            .unwrap()
            .into_iter()
            .find(|b| b.name == name)
    };
    wait_until("dead to be down", || !status("dead").unwrap().healthy);
    // A reload that changes a route and a timeout keeps dead down (a new backend
    // would start up) and app1's pooled connection.
    assert_eq!(get(h.addr, "/").status, 200);
    let connections = h.origins[0].connections();
    let mut changed = h.config.clone();
    changed.timeouts.idle = Duration::from_secs(30);
    let mut exact = route("exact", "default", "default");
    exact.path = Some(PathRule::Exact("/x".into()));
    changed.routes.insert(0, exact);
    handle.reload(changed.clone()).unwrap();
    assert!(!status("dead").unwrap().healthy, "health was kept");
    for _ in 0..3 {
        assert_eq!(get(h.addr, "/").status, 200);
    }
    assert_eq!(h.origins[0].connections(), connections, "the pool was kept");
    // Moving dead to a live address makes it a new backend: it starts up at once
    // (the old one's state would keep it down for 100 passing checks).
    let revived = spawn_origin(Driver::Epoll, "revived");
    changed.clusters[0].backends[1].address = revived.addr();
    handle.reload(changed).unwrap();
    assert!(
        status("dead").unwrap().healthy,
        "a new identity starts afresh"
    );
}

#[test]
fn a_bad_configuration_or_an_address_in_use_is_refused_whole() {
    let h = Harness::start(Driver::Epoll, 2, |_| {});
    let handle = h.server().handle();
    let mut bad = h.config.clone();
    bad.routes[0].cluster = "nope".into();
    bad.clusters[0].backends[0].weight = 0;
    match handle.reload(bad) {
        Err(ReloadError::Invalid(errors)) => {
            let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
            assert!(keys.contains(&"routes[0].cluster"), "{keys:?}");
            assert!(keys.contains(&"backends[0].weight"), "{keys:?}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A new listener on an address something else holds: nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut clash = h.config.clone();
    clash.listeners.push(ringlb::config::ListenerConfig {
        name: "clash".into(),
        address: taken.local_addr().unwrap(),
        protocol: ringlb::config::ListenerProtocol::Http,
        cluster: None,
        accept_proxy: false,
        proxy_trusted: Vec::new(),
        tls: None,
    });
    clash.routes.push(route("clash", "clash", "default"));
    clash.clusters[0].backends.truncate(1);
    match handle.reload(clash) {
        Err(ReloadError::Bind { listener, .. }) => assert_eq!(listener, "clash"),
        other => panic!("expected Bind, got {other:?}"),
    }
    // Both backends still serve: the table did not change.
    let names: std::collections::HashSet<String> =
        (0..4).map(|_| get(h.addr, "/").text()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Settings only a restart applies are reported, and the rest is applied.
    let mut restart = h.config.clone();
    restart.server.shards = 2;
    restart.clusters[0].backends.truncate(1);
    let outcome = handle.reload(restart).unwrap();
    assert_eq!(outcome.restart_needed, ["server.shards"]);
    wait_until("one backend left", || {
        (0..3).all(|_| get(h.addr, "/").text() == "app1\n")
    });
}

#[test]
fn post_reload_rereads_the_file() {
    let a = spawn_origin(Driver::Epoll, "A");
    let b = spawn_origin(Driver::Epoll, "B");
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("post-reload.toml");
    let file = |origin: &OriginHandle, extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshards = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [health_check]\nkind = \"none\"\n{extra}[[backends]]\nname = \"only\"\naddress = \"{}\"\n",
            origin.addr()
        )
    };
    std::fs::write(&path, file(&a, "[logging]\nlevel = \"error\"\n")).unwrap();
    let config = ringlb::config::load(&path).unwrap();
    let server = ringlb::server::start_with_file(config, Some(path.clone())).unwrap();
    let addr = server.local_addr();
    let admin = server.admin_addr();
    let post = |path: &str| {
        request(
            admin,
            format!("POST {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    assert_eq!(served_by(&get(addr, "/")), "A");
    std::fs::write(&path, file(&b, "[logging]\nlevel = \"error\"\n")).unwrap();
    let r = post("/reload");
    assert_eq!(r.status, 200, "{}", r.text());
    let answer: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(answer["reloaded"], true);
    assert_eq!(answer["restart_needed"], serde_json::json!([]));
    wait_until("B to serve", || served_by(&get(addr, "/")) == "B");
    // A broken file is refused with every error, and B keeps serving.
    std::fs::write(
        &path,
        file(
            &a,
            "[balancer]\nstrategy = \"fastest\"\nvirtual_nodes = 0\n",
        ),
    )
    .unwrap();
    let r = post("/reload");
    assert_eq!(r.status, 400);
    let answer: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].as_str().unwrap().contains("balancer.strategy"));
    for _ in 0..3 {
        assert_eq!(served_by(&get(addr, "/")), "B");
    }
    server.handle().abort();
    server.wait();
}

#[test]
fn a_reload_moves_the_admin_listener() {
    let h = Harness::start(Driver::Epoll, 1, |_| {});
    let old = h.server().admin_addr();
    let new = free_port();
    let mut moved = h.config.clone();
    moved.admin.listen = new;
    let outcome = h.server().handle().reload(moved.clone()).unwrap();
    assert!(outcome.restart_needed.is_empty(), "{outcome:?}");
    assert_eq!(get(new, "/healthz").status, 200);
    wait_until("the old admin address to refuse", || refused(old));
    // Moving it onto an address in use is refused, and it stays where it is.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    moved.admin.listen = taken.local_addr().unwrap();
    match h.server().handle().reload(moved) {
        Err(ReloadError::Bind { listener, .. }) => assert_eq!(listener, "admin"),
        other => panic!("expected Bind, got {other:?}"),
    }
    assert_eq!(get(new, "/healthz").status, 200);
}

#[test]
fn turning_checks_or_breakers_off_lets_a_backend_back_in() {
    let dead = closed_port();
    let h = Harness::start(Driver::Epoll, 1, |c| {
        let cluster = &mut c.clusters[0];
        cluster.health_check.kind = CheckType::Tcp;
        cluster.health_check.interval = Duration::from_millis(50);
        cluster.health_check.unhealthy_threshold = 1;
        cluster.circuit_breaker.enabled = true;
        cluster.circuit_breaker.failure_threshold = 1;
        cluster.backends.push(ringlb::config::BackendConfig {
            name: "dead".into(),
            address: dead,
            weight: 1,
        });
    });
    let handle = h.server().handle();
    let dead_status = || {
        handle
            .backends()
            .unwrap()
            .into_iter()
            .find(|b| b.name == "dead")
            .unwrap()
    };
    wait_until("dead to be down", || !dead_status().healthy);
    // No check will ever pass again once checks are off: it must not stay down.
    let mut unchecked = h.config.clone();
    unchecked.clusters[0].health_check.kind = CheckType::None;
    handle.reload(unchecked.clone()).unwrap();
    assert!(dead_status().healthy);
    // Its breaker opens on the next failed request...
    wait_until("dead's breaker to open", || {
        get(h.addr, "/");
        dead_status().breaker == ringlb::control::breaker::BreakerState::Open
    });
    // ...and with breakers off, no outcome could ever close it: it is closed.
    unchecked.clusters[0].circuit_breaker.enabled = false;
    handle.reload(unchecked).unwrap();
    assert_eq!(
        dead_status().breaker,
        ringlb::control::breaker::BreakerState::Closed
    );
}
