//! TLS to backends through the real proxy: backends that are themselves a
//! second ringlb with a TLS listener in front of an origin. Verified
//! certificates, pooled TLS connections, a backend whose certificate does not
//! verify (502, counted), large bodies, WebSocket and TCP tunnels to TLS
//! backends, a PROXY header ahead of the handshake, and health checks over TLS.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;

use ringlb::config::{ClusterConfig, ClusterTls, Config, Form, ListenerProtocol, UpstreamProtocol};
use ringlb::shard::Driver;
use ringlb::testkit::origin::OriginHandle;
use ringlb::Server;
use support::tls::*;
use support::*;

/// A TLS backend: a second ringlb whose TLS listener (certificate `cert`) serves
/// origin `name` (an `http` listener) or relays to `tcp` (a `tcp` listener).
struct TlsBackend {
    server: Option<Server>,
    _origin: Option<OriginHandle>,
    addr: SocketAddr,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.handle().abort();
            server.wait();
        }
    }
}

fn tls_backend(
    driver: Driver,
    cert: &TestCert,
    name: &str,
    tcp: Option<SocketAddr>,
    tune: impl FnOnce(&mut Config),
) -> TlsBackend {
    let mut config = base_config(driver);
    config.form = Form::Full;
    config.listeners.clear();
    config.routes.clear();
    config.clusters.clear();
    let mut listener = tls_listener("https", &[cert], None);
    let origin = match tcp {
        Some(address) => {
            listener.protocol = ListenerProtocol::Tcp;
            listener.cluster = Some("app".into());
            listener.tls.as_mut().unwrap().alpn.clear();
            config.clusters.push(cluster("app", &[(name, address)]));
            None
        }
        None => {
            let origin = spawn_origin(driver, name);
            config.routes.push(route("all", "https", "app"));
            config
                .clusters
                .push(cluster("app", &[(name, origin.addr())]));
            Some(origin)
        }
    };
    listener.tls.as_mut().unwrap().default = Some("backend.test".into());
    config.listeners.push(listener);
    tune(&mut config);
    let server = ringlb::start(config).expect("the TLS backend starts");
    let addr = server.listener_addr("https").unwrap();
    TlsBackend {
        server: Some(server),
        _origin: origin,
        addr,
    }
}

/// TLS to `ca`'s backends named `backend.test`, verified.
fn verified(ca: &TestCert) -> ClusterTls {
    ClusterTls {
        server_name: Some("backend.test".into()),
        ca: Some(ca.cert.clone()),
        verify: true,
        client_certificate: None,
    }
}

/// A proxy whose listener `web` (plain HTTP) routes everything to cluster
/// `secure` of `backends`, tuned by `tune`.
fn front(
    driver: Driver,
    backends: &[(&str, SocketAddr)],
    tune: impl FnOnce(&mut ClusterConfig),
) -> (Harness, SocketAddr) {
    let h = Harness::start_full(driver, &[], |config, _| {
        config.listeners.push(listener("web"));
        config.routes.push(route("all", "web", "secure"));
        let mut c = cluster("secure", backends);
        tune(&mut c);
        config.clusters.push(c);
    });
    let addr = h.listener_addr("web");
    (h, addr)
}

fn upstream_tls_errors(h: &Harness) -> u64 {
    let at = ringlb::observe::stats::ERROR_KINDS
        .iter()
        .position(|k| *k == "upstream_tls")
        .unwrap();
    h.stats().errors[at]
}

both_drivers! {
    fn requests_reach_a_tls_backend_over_pooled_connections(driver) {
        let dir = test_dir(&format!("upstream-{driver:?}"));
        let cert = make_cert(&dir, "backend", &["backend.test"]);
        let backend = tls_backend(driver, &cert, "secure1", None, |_| {});
        let (h, addr) = front(driver, &[("b1", backend.addr)], |c| c.tls = Some(verified(&cert)));
        let mut s = connect(addr);
        let mut pending = Vec::new();
        for _ in 0..50 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let reply = read_reply(&mut s, &mut pending, false);
            assert_eq!(reply.status, 200);
            assert_eq!(served_by(&reply), "secure1");
        }
        // One TLS connection to the backend, reused for every request after.
        let stats = h.stats();
        assert_eq!((stats.upstream_connects, stats.upstream_reuses), (1, 49));
        // A reload reads the CA again; unchanged, the pooled connection stays.
        h.server().handle().reload(h.config.clone()).expect("the reload is taken");
        wait_until("the reload applied", || {
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            read_reply(&mut s, &mut pending, false).status == 200 && h.stats().upstream_reuses >= 51
        });
        assert_eq!(h.stats().upstream_connects, 1);
        // Large bodies both ways over it.
        const SIZE: usize = 8 * 1024 * 1024 + 3;
        s.write_all(format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).body.len(), SIZE);
        let body: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
        s.write_all(format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let reply = read_reply(&mut s, &mut pending, false);
        assert_eq!(reply.status, 200);
        assert!(reply.body == body, "the echo differs");
        // The backend saw TLS from ringlb.
        let tls = backend.server.as_ref().unwrap().handle().stats().unwrap().tls;
        assert_eq!(tls.full, 1, "{tls:?}");
    }

    fn an_h2_cluster_speaks_http2_to_a_tls_backend_that_agrees_on_alpn_h2(driver) {
        let dir = test_dir(&format!("upstream-h2-{driver:?}"));
        let cert = make_cert(&dir, "backend", &["backend.test"]);
        // The backend is a ringlb whose TLS listener offers h2: it serves the
        // streams to its HTTP/1.1 origin.
        let backend = tls_backend(driver, &cert, "secure1", None, |c| {
            c.listeners[0].tls.as_mut().unwrap().alpn = vec!["h2".into(), "http/1.1".into()];
        });
        let (h, addr) = front(driver, &[("b1", backend.addr)], |c| {
            c.tls = Some(verified(&cert));
            c.upstream.protocol = UpstreamProtocol::H2;
        });
        let mut s = connect(addr);
        let mut pending = Vec::new();
        for _ in 0..20 {
            s.write_all(b"GET /bytes/100000 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let reply = read_reply(&mut s, &mut pending, false);
            assert_eq!((reply.status, reply.body.len()), (200, 100_000));
            assert_eq!(served_by(&reply), "secure1");
        }
        // One TLS connection, its streams counted by the backend as HTTP/2.
        let h2 = h.stats().h2;
        assert_eq!((h2.upstream_connections, h2.upstream_streams), (1, 20));
        let behind = backend.server.as_ref().unwrap().handle().stats().unwrap();
        assert_eq!((behind.tls.full, behind.h2.connections, behind.h2.streams), (1, 1, 20));

        // A backend that offers only HTTP/1.1: no HTTP/2 is spoken, a 502.
        let old = tls_backend(driver, &cert, "secure2", None, |_| {});
        let (h, addr) = front(driver, &[("b2", old.addr)], |c| {
            c.tls = Some(verified(&cert));
            c.upstream.protocol = UpstreamProtocol::H2;
        });
        assert_eq!(get(addr, "/").status, 502);
        assert!(upstream_tls_errors(&h) >= 1);
    }

    fn a_backend_certificate_that_does_not_verify_is_a_502(driver) {
        let dir = test_dir(&format!("unverified-{driver:?}"));
        let cert = make_cert(&dir, "backend", &["backend.test"]);
        let stranger = make_cert(&dir, "stranger", &["backend.test"]);
        let backend = tls_backend(driver, &cert, "secure1", None, |_| {});
        // Another CA.
        let (h, addr) = front(driver, &[("b1", backend.addr)], |c| c.tls = Some(verified(&stranger)));
        assert_eq!(get(addr, "/").status, 502);
        wait_until("the failure counted", || upstream_tls_errors(&h) == 1);
        drop(h);
        // The right CA, the wrong name.
        let (h, addr) = front(driver, &[("b1", backend.addr)], |c| {
            let mut tls = verified(&cert);
            tls.server_name = Some("other.test".into());
            c.tls = Some(tls);
        });
        assert_eq!(get(addr, "/").status, 502);
        wait_until("the failure counted", || upstream_tls_errors(&h) == 1);
        drop(h);
        // verify = false takes any certificate.
        let (_h, addr) = front(driver, &[("b1", backend.addr)], |c| {
            c.tls = Some(ClusterTls { ca: None, verify: false, ..verified(&stranger) });
        });
        let reply = get(addr, "/");
        assert_eq!((reply.status, served_by(&reply).as_str()), (200, "secure1"));
    }

    fn a_proxy_header_goes_ahead_of_the_handshake(driver) {
        let dir = test_dir(&format!("proxy-{driver:?}"));
        let cert = make_cert(&dir, "backend", &["backend.test"]);
        let backend = tls_backend(driver, &cert, "secure1", None, |config| {
            let l = &mut config.listeners[0];
            l.accept_proxy = true;
            l.proxy_trusted = vec![ringlb::config::Cidr::parse("127.0.0.1").unwrap()];
        });
        let (_h, addr) = front(driver, &[("b1", backend.addr)], |c| {
            c.tls = Some(verified(&cert));
            c.upstream.send_proxy = Some(ringlb::config::ProxyVersion::V2);
        });
        for _ in 0..3 {
            let reply = get(addr, "/headers");
            assert_eq!(reply.status, 200);
            assert!(reply.text().contains("X-Forwarded-For: 127.0.0.1"), "{}", reply.text());
        }
    }

    fn tunnels_reach_tls_backends(driver) {
        let dir = test_dir(&format!("tunnels-{driver:?}"));
        let cert = make_cert(&dir, "backend", &["backend.test"]);
        // WebSocket through an HTTP route to a TLS cluster.
        let backend = tls_backend(driver, &cert, "secure1", None, |_| {});
        let (_h, addr) = front(driver, &[("b1", backend.addr)], |c| c.tls = Some(verified(&cert)));
        let stream = connect(addr);
        let (mut ws, response) =
            tungstenite::client::client(format!("ws://{addr}/ws"), stream).expect("upgrade");
        assert_eq!(response.status(), 101);
        let binary: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        ws.send(tungstenite::Message::binary(binary.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::binary(binary));
        drop(ws);

        // A TCP listener to a TLS cluster.
        let echo = TcpOrigin::start("echo1");
        let backend = tls_backend(driver, &cert, "echo1", Some(echo.addr), |_| {});
        let h = Harness::start_full(driver, &[], |config, _| {
            config.listeners.push(tcp_listener("tcp", "secure"));
            let mut c = cluster("secure", &[("b1", backend.addr)]);
            c.tls = Some(verified(&cert));
            config.clusters.push(c);
        });
        let mut s = connect(h.listener_addr("tcp"));
        assert_eq!(read_text_line(&mut s), "echo1");
        s.write_all(b"through two TLS hops\n").unwrap();
        assert_eq!(read_text_line(&mut s), "through two TLS hops");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_text_line(&mut s), "bye 21");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        wait_until("the echo to see the end", || echo.ends() == vec![OriginEnd::Fin]);
    }

    fn health_checks_speak_tls(driver) {
        let dir = test_dir(&format!("health-{driver:?}"));
        let cert = make_cert(&dir, "backend", &["backend.test"]);
        let stranger = make_cert(&dir, "stranger", &["backend.test"]);
        let backend = tls_backend(driver, &cert, "secure1", None, |_| {});
        for (ca, healthy) in [(&cert, true), (&stranger, false)] {
            let (h, _) = front(driver, &[("b1", backend.addr)], |c| {
                c.tls = Some(verified(ca));
                c.health_check.kind = ringlb::config::CheckType::Http;
                c.health_check.interval = std::time::Duration::from_millis(50);
                c.health_check.start_up = !healthy;
                c.health_check.healthy_threshold = 1;
                c.health_check.unhealthy_threshold = 1;
            });
            wait_until(&format!("b1 healthy: {healthy}"), || h.backend("b1").healthy == healthy);
        }
    }
}
