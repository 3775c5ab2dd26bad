//! TCP listeners through the real proxy: bytes both ways, half-close, resets
//! passed on, balancing by open connections, connect failures tried elsewhere,
//! the tunnel idle timeout, graceful shutdown and reloads, and the counters.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use ringlb::config::{Config, Strategy};
use ringlb::observe::tunnels::TunnelEnd;
use ringlb::shard::Driver;
use support::*;

/// A proxy with TCP listener `pg` relaying to cluster `db` of `origins`.
fn start(driver: Driver, origins: &[&TcpOrigin], tune: impl FnOnce(&mut Config)) -> Harness {
    let backends: Vec<(String, SocketAddr)> =
        origins.iter().map(|o| (o.name.clone(), o.addr)).collect();
    Harness::start_full(driver, &["web"], |c, web| {
        // An HTTP listener beside it, as an operator would have.
        c.listeners.push(listener("web"));
        c.routes.push(route("web", "web", "web"));
        c.clusters.push(cluster("web", &[("web", web[0].addr())]));
        c.listeners.push(tcp_listener("pg", "db"));
        let named: Vec<(&str, SocketAddr)> =
            backends.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        c.clusters.push(cluster("db", &named));
        tune(c);
    })
}

fn tunnels(h: &Harness) -> ringlb::observe::tunnels::TunnelTotals {
    h.stats().tunnels
}

fn ended(h: &Harness, end: TunnelEnd) -> u64 {
    tunnels(h).ends[end as usize]
}

/// Returns once every shard has applied what the control thread decided so far:
/// a statistics request goes down the same command channel, after it.
fn applied(h: &Harness) {
    h.server()
        .handle()
        .report(None, WAIT)
        .expect("every shard answers");
}

/// Connects to the TCP listener and reads the origin's greeting (its name).
fn open(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = connect(addr);
    let name = read_text_line(&mut s);
    (s, name)
}

both_drivers! {
    fn bytes_go_both_ways_and_a_half_close_keeps_the_other_direction(driver) {
        let origin = TcpOrigin::start("db1");
        let h = start(driver, &[&origin], |_| {});
        let addr = h.listener_addr("pg");
        let (mut s, name) = open(addr);
        assert_eq!(name, "db1");
        s.write_all(b"hello\n").unwrap();
        assert_eq!(read_text_line(&mut s), "hello");
        // The client is done sending; the origin answers only after that FIN.
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_text_line(&mut s), "bye 6");
        assert!(read_to_close(&mut s).is_empty());
        wait_until("the tunnel to end", || tunnels(&h).counts.active == 0);
        assert_eq!(origin.ends(), vec![OriginEnd::Fin]);
        let t = tunnels(&h);
        assert_eq!(t.counts.opened, 1);
        assert_eq!(t.counts.bytes_up, 6);
        assert_eq!(t.counts.bytes_down, ("db1\n".len() + "hello\n".len() + "bye 6\n".len()) as u64);
        assert_eq!(t.ends[TunnelEnd::Closed as usize], 1);
        assert_eq!(t.durations.iter().sum::<u64>(), 1);
        let db1 = &h.server().handle().backend_counters().unwrap()["db1"];
        assert_eq!(db1.tunnels.opened, 1);
        assert_eq!(db1.tunnels.bytes_up, 6);
        // The HTTP listener beside it is unaffected.
        assert_eq!(get(h.listener_addr("web"), "/").status, 200);
        // The admin listener reports the same.
        let admin = h.server().admin_addr();
        let stats: serde_json::Value = serde_json::from_slice(&get(admin, "/stats").body).unwrap();
        let totals = &stats["tunnels"];
        assert_eq!(totals["opened"], 1);
        assert_eq!(totals["bytes_up"], 6);
        assert_eq!(totals["ends"]["closed"], 1);
        let db1 = stats["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "db1")
            .unwrap();
        assert_eq!(db1["tunnels"]["opened"], 1);
        let metrics = get(admin, "/metrics").text();
        let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
            .expect("valid exposition text");
        let value = |name: &str, label: Option<(&str, &str)>| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                    _ => panic!("{name} is not a counter or gauge"),
                })
                .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        };
        assert_eq!(value("ringlb_tunnels_total", None), 1.0);
        assert_eq!(value("ringlb_tunnel_bytes_total", Some(("direction", "up"))), 6.0);
        assert_eq!(value("ringlb_tunnel_ends_total", Some(("end", "closed"))), 1.0);
        assert_eq!(value("ringlb_backend_tunnels_total", Some(("backend", "db1"))), 1.0);
        assert!(metrics.contains("ringlb_tunnel_duration_seconds_count 1\n"), "{metrics}");
    }

    fn megabytes_relay_intact_both_ways(driver) {
        let origin = TcpOrigin::start("db1");
        let h = start(driver, &[&origin], |_| {});
        let (s, _) = open(h.listener_addr("pg"));
        let total = 8 * 1024 * 1024;
        let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut writer = s.try_clone().unwrap();
        let sent = payload.clone();
        let send = std::thread::spawn(move || {
            for chunk in sent.chunks(100_000) {
                writer.write_all(chunk).unwrap();
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = s;
        reader.set_read_timeout(Some(WAIT)).unwrap();
        let mut echoed = vec![0u8; total];
        reader.read_exact(&mut echoed).unwrap();
        send.join().unwrap();
        assert!(echoed == payload, "the echo differs from what was sent");
        assert_eq!(read_text_line(&mut reader), format!("bye {total}"));
    }

    fn a_backend_reset_resets_the_client(driver) {
        let origin = TcpOrigin::start("db1");
        let h = start(driver, &[&origin], |_| {});
        let (mut s, _) = open(h.listener_addr("pg"));
        s.write_all(b"reset\n").unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let err = s.read(&mut buf).expect_err("a reset, not a clean close");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        wait_until("the tunnel to end", || ended(&h, TunnelEnd::BackendReset) == 1);
    }

    fn a_client_reset_resets_the_backend(driver) {
        let origin = TcpOrigin::start("db1");
        let h = start(driver, &[&origin], |_| {});
        let (s, _) = open(h.listener_addr("pg"));
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        wait_until("the origin to see the end", || !origin.ends().is_empty());
        assert_eq!(origin.ends(), vec![OriginEnd::Reset]);
        wait_until("the tunnel to end", || ended(&h, TunnelEnd::ClientReset) == 1);
    }

    fn least_conn_counts_open_tunnels(driver) {
        let a = TcpOrigin::start("db1");
        let b = TcpOrigin::start("db2");
        let h = start(driver, &[&a, &b], |c| {
            c.clusters[1].balancer.strategy = Strategy::LeastConn;
        });
        let addr = h.listener_addr("pg");
        let (first, n1) = open(addr);
        let (_second, n2) = open(addr);
        assert_ne!(n1, n2, "the second connection goes to the backend with none open");
        drop(first);
        wait_until("the first tunnel to end", || tunnels(&h).counts.active == 1);
        let (_third, n3) = open(addr);
        assert_eq!(n3, n1, "the third goes where no tunnel is open");
    }

    fn consistent_hashing_by_client_address_keeps_a_client_on_one_backend(driver) {
        let origins: Vec<TcpOrigin> = (1..=3).map(|i| TcpOrigin::start(&format!("db{i}"))).collect();
        let refs: Vec<&TcpOrigin> = origins.iter().collect();
        let h = start(driver, &refs, |c| {
            c.clusters[1].balancer.strategy = Strategy::ConsistentHash;
        });
        let addr = h.listener_addr("pg");
        let first = open(addr).1;
        for _ in 0..8 {
            assert_eq!(open(addr).1, first, "one client address, one backend");
        }
    }

    fn a_failed_connect_tries_the_next_backend(driver) {
        let origin = TcpOrigin::start("db2");
        let h = Harness::start_full(driver, &[], |c, _| {
            c.listeners.push(tcp_listener("pg", "db"));
            c.clusters.push(cluster("db", &[("db1", closed_port()), ("db2", origin.addr)]));
            c.clusters[0].retry.max_retries = 1;
        });
        let addr = h.listener_addr("pg");
        for _ in 0..4 {
            let (_s, name) = open(addr);
            assert_eq!(name, "db2");
        }
        let counters = h.server().handle().backend_counters().unwrap();
        assert!(counters["db1"].failures >= 1, "{:?}", counters["db1"]);
        assert_eq!(counters["db2"].tunnels.opened, 4);
    }

    fn connect_failures_open_the_breaker_and_health_checks_take_a_backend_down(driver) {
        let live = TcpOrigin::start("db2");
        let h = Harness::start_full(driver, &[], |c, _| {
            c.listeners.push(tcp_listener("pg", "db"));
            c.clusters.push(cluster("db", &[("db1", closed_port()), ("db2", live.addr)]));
            let db = &mut c.clusters[0];
            db.retry.max_retries = 1;
            db.circuit_breaker.enabled = true;
            db.circuit_breaker.failure_threshold = 2;
            db.circuit_breaker.open_for = Duration::from_secs(600);
        });
        let addr = h.listener_addr("pg");
        // Round-robin sends every other connection to db1 first; each fails over.
        let mut opened = 0;
        while h.backend("db1").breaker != ringlb::control::breaker::BreakerState::Open {
            let (_s, name) = open(addr);
            assert_eq!(name, "db2");
            opened += 1;
            assert!(opened < 100, "the breaker never opened");
        }
        applied(&h);
        let failures = h.server().handle().backend_counters().unwrap()["db1"].failures;
        for _ in 0..6 {
            assert_eq!(open(addr).1, "db2");
        }
        let after = h.server().handle().backend_counters().unwrap()["db1"].failures;
        assert_eq!(after, failures, "an open breaker keeps connections off db1");

        // Health checks (TCP) take a dead backend down the same way.
        let checked = Harness::start_full(driver, &[], |c, _| {
            c.listeners.push(tcp_listener("pg", "db"));
            c.clusters.push(cluster("db", &[("db1", closed_port()), ("db2", live.addr)]));
            let db = &mut c.clusters[0];
            db.health_check.kind = ringlb::config::CheckType::Tcp;
            db.health_check.interval = Duration::from_millis(50);
            db.health_check.unhealthy_threshold = 1;
        });
        wait_until("db1 to be down", || !checked.backend("db1").healthy);
        applied(&checked);
        let addr = checked.listener_addr("pg");
        for _ in 0..4 {
            assert_eq!(open(addr).1, "db2");
        }
        assert_eq!(checked.server().handle().backend_counters().unwrap()["db1"].attempts, 0);
    }

    fn no_reachable_backend_closes_the_client(driver) {
        let h = Harness::start_full(driver, &[], |c, _| {
            c.listeners.push(tcp_listener("pg", "db"));
            c.clusters.push(cluster("db", &[("db1", closed_port()), ("db2", closed_port())]));
            c.clusters[0].retry.max_retries = 1;
        });
        let mut s = connect(h.listener_addr("pg"));
        assert!(read_to_close(&mut s).is_empty());
        wait_until("the failure to be counted", || ended(&h, TunnelEnd::Failed) == 1);
        let connect = ringlb::observe::stats::ERROR_KINDS.iter().position(|k| *k == "connect").unwrap();
        let connect_errors = h.stats().errors[connect];
        assert_eq!(connect_errors, 1, "one failed tunnel, counted as a connect error");
        assert_eq!(h.server().handle().backend_counters().unwrap()["db1"].failures, 1);
    }

    fn an_idle_tunnel_is_closed_and_a_busy_one_is_not(driver) {
        let origin = TcpOrigin::start("db1");
        let h = start(driver, &[&origin], |c| {
            c.timeouts.tunnel_idle = Duration::from_millis(1500);
        });
        let addr = h.listener_addr("pg");
        // Busy: a message every 200 ms for 3 s, twice the idle timeout in all.
        let (mut busy, _) = open(addr);
        for i in 0..15 {
            busy.write_all(format!("{i}\n").as_bytes()).unwrap();
            assert_eq!(read_text_line(&mut busy), i.to_string());
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(ended(&h, TunnelEnd::IdleTimeout), 0);
        // Idle: closed by the proxy, both sides.
        assert!(read_to_close(&mut busy).is_empty());
        wait_until("the idle timeout to be counted", || {
            ended(&h, TunnelEnd::IdleTimeout) == 1
        });
        wait_until("the origin to see the close", || origin.ends().len() == 1);
    }

    fn shutdown_lets_tunnels_run_for_the_grace_period_then_cuts_them(driver) {
        let origin = TcpOrigin::start("db1");
        let mut h = start(driver, &[&origin], |c| {
            c.timeouts.shutdown_grace = Duration::from_secs(2);
        });
        let addr = h.listener_addr("pg");
        let (mut s, _) = open(addr);
        let server = h.server.take().unwrap();
        server.handle().shutdown();
        wait_until("the listener to close", || TcpStream::connect(addr).is_err());
        // Still relaying during the grace period.
        s.write_all(b"still here\n").unwrap();
        assert_eq!(read_text_line(&mut s), "still here");
        // Then cut.
        assert!(read_to_close(&mut s).is_empty());
        server.wait();
        // (The probe above may have opened a tunnel of its own before the listener
        // closed.)
        wait_until("the origin to see the close", || origin.ends().len() == origin.accepted());
    }

    fn a_reload_keeps_tunnels_and_a_removed_listener_cuts_them_after_the_grace(driver) {
        let origin = TcpOrigin::start("db1");
        let h = start(driver, &[&origin], |c| {
            c.timeouts.shutdown_grace = Duration::from_secs(1);
        });
        let addr = h.listener_addr("pg");
        let (mut s, _) = open(addr);
        // A reload that keeps the listener: the tunnel carries on.
        let mut same = h.config.clone();
        same.timeouts.tunnel_idle = Duration::from_secs(600);
        same.listeners[1].address = addr;
        h.server().handle().reload(same.clone()).unwrap();
        s.write_all(b"after reload\n").unwrap();
        assert_eq!(read_text_line(&mut s), "after reload");
        // A reload that removes it: the tunnel runs for the grace, then is cut.
        let mut without = same;
        without.listeners.retain(|l| l.name != "pg");
        without.clusters.retain(|c| c.name != "db");
        let outcome = h.server().handle().reload(without).unwrap();
        assert_eq!(outcome.listeners_removed.len(), 1);
        s.write_all(b"in the grace\n").unwrap();
        assert_eq!(read_text_line(&mut s), "in the grace");
        assert!(read_to_close(&mut s).is_empty());
        wait_until("the cut to be counted", || ended(&h, TunnelEnd::Cut) == 1);
    }
}
