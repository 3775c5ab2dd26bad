//! TLS termination through the real proxy with a real client (rustls, blocking):
//! certificates by SNI, the default certificate, versions, resumption, ALPN,
//! handshakes that stall, garbage and plain HTTP on a TLS port, keep-alive
//! across parking, large bodies both ways, connections cut at every stage,
//! certificate reload, WebSocket over TLS and TLS on a TCP listener.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;

use ringlb::observe::tls::{TlsFailure, TlsTotals};
use rustls::version::{TLS12, TLS13};
use rustls::HandshakeKind;
use support::tls::*;
use support::*;

/// An HTTPS listener `https` with `certs` in front of origin app1, and `tune`.
fn https(
    driver: ringlb::shard::Driver,
    certs: &[&TestCert],
    default: Option<&str>,
    tune: impl FnOnce(&mut ringlb::config::Config),
) -> (Harness, SocketAddr) {
    let h = Harness::start_full(driver, &["app1"], |config, origins| {
        config.listeners.push(tls_listener("https", certs, default));
        config.routes.push(route("all", "https", "app"));
        config
            .clusters
            .push(cluster("app", &[("app1", origins[0].addr())]));
        tune(config);
    });
    let addr = h.listener_addr("https");
    (h, addr)
}

fn tls(h: &Harness) -> TlsTotals {
    h.stats().tls
}

fn failures(h: &Harness, why: TlsFailure) -> u64 {
    tls(h).failures[why as usize]
}

both_drivers! {
    fn requests_are_proxied_over_tls_1_2_and_1_3_with_forwarded_proto(driver) {
        let dir = test_dir(&format!("proxied-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        for (version, name) in [(&TLS13, "TLSv1_3"), (&TLS12, "TLSv1_2")] {
            let config = client_config(&[&cert], &[version], &["http/1.1"]);
            let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
            set_timeouts(&client);
            assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            // Two requests on one connection: keep-alive over TLS.
            for _ in 0..2 {
                let reply = tls_get(&mut client, "/headers");
                assert_eq!(reply.status, 200, "{name}");
                let head = reply.text().to_ascii_lowercase();
                assert!(head.contains("x-forwarded-proto: https"), "{name}: {head}");
            }
            let reply = tls_get(&mut client, "/bytes/100000");
            assert_eq!(reply.body.len(), 100_000);
            let totals = tls(&h);
            let at = ringlb::observe::tls::TLS_VERSIONS.iter().position(|v| *v == name).unwrap();
            assert_eq!(totals.versions[at], 1, "{name}: {totals:?}");
        }
        assert_eq!(tls(&h).full, 2);
    }

    fn certificates_are_chosen_by_sni_with_a_default(driver) {
        let dir = test_dir(&format!("sni-{driver:?}"));
        let main = make_cert(&dir, "main", &["example.test", "www.example.test"]);
        let shop = make_cert(&dir, "shop", &["*.shop.test"]);
        let (h, addr) = https(driver, &[&main, &shop], Some("example.test"), |_| {});
        let any = any_cert_config(&[&TLS13, &TLS12]);
        for (name, expected) in [
            ("example.test", &main),
            ("www.example.test", &main),
            ("a.shop.test", &shop),
            // A wildcard covers one label only.
            ("a.b.shop.test", &main),
            // No SNI (an address) and an unknown name get the default.
            ("127.0.0.1", &main),
            ("unknown.test", &main),
        ] {
            let client = tls_connect(addr, name, &any).expect(name);
            assert!(presented(&client) == expected.der, "{name} got the wrong certificate");
        }
        // A real client that checks the name is happy with each.
        let verified = client_config(&[&main, &shop], &[&TLS13], &[]);
        for name in ["example.test", "a.shop.test"] {
            let mut client = tls_connect(addr, name, &verified).expect(name);
            set_timeouts(&client);
            assert_eq!(tls_get(&mut client, "/").status, 200);
        }
        // Counted by how SNI chose: exact, wildcard, none, unknown.
        wait_until("SNI counted", || tls(&h).sni == [3, 2, 1, 2]);
        // Each certificate's days left, by listener and file.
        let report = h.server().handle().report(None, std::time::Duration::ZERO).unwrap();
        let days: Vec<(String, i64)> = report
            .certificates
            .iter()
            .map(|c| (c.file.clone(), c.days_left))
            .collect();
        assert_eq!(days.len(), 2, "{days:?}");
        // rcgen's default validity runs to 4096.
        assert!(days.iter().all(|(_, d)| *d > 365 * 100), "{days:?}");
        assert!(days[0].0.ends_with("main.pem") && days[1].0.ends_with("shop.pem"));
        let metrics = get(h.server().admin_addr(), "/metrics").text();
        for line in [
            "ringlb_tls_sni_total{match=\"wildcard\"} 2",
            "ringlb_tls_handshakes_total{kind=\"full\"} 8",
            "ringlb_tls_certificate_days_left{listener=\"https\",certificate=\"",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
        drop(h);

        // Without a default, an unknown name or none is refused in the handshake.
        let (h, addr) = https(driver, &[&main, &shop], None, |_| {});
        for name in ["unknown.test", "127.0.0.1"] {
            let e = tls_connect(addr, name, &any).expect_err("refused");
            assert!(
                matches!(
                    tls_error(&e),
                    Some(rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied))
                ),
                "{name}: {e}"
            );
        }
        wait_until("failures counted", || failures(&h, TlsFailure::NoCertificate) == 2);
    }

    fn sessions_resume_with_tickets_and_session_ids(driver) {
        let dir = test_dir(&format!("resume-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        for version in [&TLS13, &TLS12] {
            let config = client_config(&[&cert], &[version], &["http/1.1"]);
            for round in 0..3 {
                let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
                set_timeouts(&client);
                let kind = client.conn.handshake_kind();
                let expected = if round == 0 { HandshakeKind::Full } else { HandshakeKind::Resumed };
                assert_eq!(kind, Some(expected), "{version:?} round {round}");
                // Reading the reply takes in the session tickets that come after
                // a TLS 1.3 handshake.
                assert_eq!(tls_get(&mut client, "/").status, 200);
            }
        }
        let totals = tls(&h);
        assert_eq!((totals.full, totals.resumed), (2, 4));
    }

    fn alpn_agrees_on_http_1_1_and_refuses_h2_only_clients(driver) {
        let dir = test_dir(&format!("alpn-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        let both = client_config(&[&cert], &[&TLS13], &["h2", "http/1.1"]);
        let client = tls_connect(addr, "example.test", &both).expect("handshake");
        assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // No ALPN at all is fine too.
        let none = client_config(&[&cert], &[&TLS13], &[]);
        let client = tls_connect(addr, "example.test", &none).expect("handshake");
        assert_eq!(client.conn.alpn_protocol(), None);
        let h2 = client_config(&[&cert], &[&TLS13], &["h2"]);
        let e = tls_connect(addr, "example.test", &h2).expect_err("refused");
        assert!(
            matches!(
                tls_error(&e),
                Some(rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol))
            ),
            "{e}"
        );
        wait_until("the failure counted", || failures(&h, TlsFailure::NoAlpn) == 1);
    }

    fn stalled_garbage_and_plain_http_handshakes_are_closed_and_counted(driver) {
        let dir = test_dir(&format!("garbage-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |c| {
            c.timeouts.header_read = std::time::Duration::from_millis(300);
        });
        // Half a ClientHello record header, then nothing: cut at header_read.
        let mut s = connect(addr);
        s.write_all(&[0x16, 0x03, 0x01]).unwrap();
        assert!(read_to_close(&mut s).is_empty());
        wait_until("the timeout counted", || failures(&h, TlsFailure::Timeout) == 1);

        // Plain HTTP to the TLS port: a plain 400 saying so.
        let out = exchange(addr, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 ") && text.contains("speaks HTTPS"), "{text}");
        wait_until("not_tls counted", || failures(&h, TlsFailure::NotTls) == 1);

        // A handshake record full of garbage: closed, with at most an alert.
        let mut record = vec![0x16, 0x03, 0x01, 0x00, 0x40];
        record.extend_from_slice(&[0xAB; 0x40]);
        let out = exchange(addr, &record);
        assert!(out.is_empty() || out[0] == 0x15, "an alert record or nothing: {out:?}");
        wait_until("bad_message counted", || failures(&h, TlsFailure::BadMessage) == 1);

        // A client that closes mid-handshake.
        let mut s = connect(addr);
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(read_to_close(&mut s).is_empty());
        wait_until("closed counted", || failures(&h, TlsFailure::Closed) == 1);

        // A connection closed before a byte (a TCP health check): counted apart.
        drop(connect(addr));
        wait_until("empty counted", || failures(&h, TlsFailure::Empty) == 1);
        assert_eq!(failures(&h, TlsFailure::Closed), 1);

        // The listener serves on.
        let config = client_config(&[&cert], &[&TLS13], &[]);
        let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        assert_eq!(tls_get(&mut client, "/").status, 200);
    }

    fn a_parked_tls_connection_serves_its_next_request(driver) {
        let dir = test_dir(&format!("park-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        let config = client_config(&[&cert], &[&TLS13, &TLS12], &[]);
        let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        assert_eq!(tls_get(&mut client, "/").status, 200);
        wait_until("the connection to park", || h.stats().parked_connections == 1);
        assert_eq!(tls_get(&mut client, "/bytes/5000").body.len(), 5000);
        // Pipelined requests in one record.
        client
            .write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes/20 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut pending = Vec::new();
        assert_eq!(read_reply(&mut client, &mut pending, false).body.len(), 10);
        assert_eq!(read_reply(&mut client, &mut pending, false).body.len(), 20);
        // The client says goodbye properly; ringlb answers in kind (rustls reads
        // a bare EOF as an error) and closes.
        client.conn.send_close_notify();
        client.flush().unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("a close_notify back");
        assert!(rest.is_empty());
        wait_until("the connection to close", || h.stats().active_connections == 0);
    }

    fn large_bodies_go_both_ways(driver) {
        let dir = test_dir(&format!("large-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (_h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        let config = client_config(&[&cert], &[&TLS13], &[]);
        let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        const SIZE: usize = 16 * 1024 * 1024 + 7;
        let reply = tls_get(&mut client, &format!("/bytes/{SIZE}"));
        assert_eq!(reply.body.len(), SIZE);
        // Up: 16 MiB to /sink, which answers the length and hash it read.
        let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let head = format!("POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: {SIZE}\r\n\r\n");
        client.write_all(head.as_bytes()).unwrap();
        client.write_all(&body).unwrap();
        client.flush().unwrap();
        let mut pending = Vec::new();
        let reply = read_reply(&mut client, &mut pending, false);
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains(&SIZE.to_string()), "{}", reply.text());
        assert!(reply.text().contains(&format!("{:016x}", fnv1a(&body))), "{}", reply.text());
    }

    fn connections_cut_at_every_stage_leave_the_listener_serving(driver) {
        let dir = test_dir(&format!("cuts-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        let config = client_config(&[&cert], &[&TLS13, &TLS12], &[]);
        let stages: [&dyn Fn(&mut TlsClient); 5] = [
            // Right after the handshake.
            &|_| {},
            // In the middle of a head.
            &|c| c.write_all(b"GET / HTTP/1.1\r\nHo").unwrap(),
            // In the middle of a request body.
            &|c| c.write_all(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc").unwrap(),
            // In the middle of a response.
            &|c| {
                c.write_all(b"GET /bytes/50000000 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
                let mut some = [0u8; 1000];
                c.read_exact(&mut some).unwrap();
            },
            // Before a close_notify: the socket alone closes.
            &|c| {
                let reply = tls_get(c, "/");
                assert_eq!(reply.status, 200);
            },
        ];
        for (i, stage) in stages.iter().enumerate() {
            let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
            set_timeouts(&client);
            stage(&mut client);
            client.flush().unwrap();
            drop(client);
            wait_until(&format!("stage {i}'s connection to close"), || {
                h.stats().active_connections == 0
            });
        }
        // Mid-ClientHello, by a real client's first bytes.
        let mut s = connect(addr);
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
        drop(s);
        wait_until("the cut handshake to close", || h.stats().active_connections == 0);
        let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        assert_eq!(tls_get(&mut client, "/").status, 200);
    }

    fn websocket_goes_over_tls(driver) {
        let dir = test_dir(&format!("ws-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let (h, addr) = https(driver, &[&cert], Some("example.test"), |_| {});
        let config = client_config(&[&cert], &[&TLS13], &[]);
        let client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        let (mut ws, response) =
            tungstenite::client::client("wss://example.test/ws", client).expect("upgrade");
        assert_eq!(response.status(), 101);
        for size in [1usize, 70_000, 1024 * 1024] {
            let binary: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            ws.send(tungstenite::Message::binary(binary.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), tungstenite::Message::binary(binary), "{size}");
        }
        ws.close(None).unwrap();
        loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(_)) => {}
                Ok(other) => panic!("expected the close, got {other:?}"),
                Err(_) => break,
            }
        }
        drop(ws);
        wait_until("the tunnel to end", || h.stats().tunnels.counts.active == 0);
        assert_eq!(h.stats().tunnels.upgraded, 1);
    }

    fn a_tcp_listener_terminates_tls(driver) {
        let dir = test_dir(&format!("tcp-{driver:?}"));
        let cert = make_cert(&dir, "example", &["example.test"]);
        let echo = TcpOrigin::start("echo1");
        let h = Harness::start_full(driver, &[], |config, _| {
            let mut l = tls_listener("tls", &[&cert], Some("example.test"));
            l.protocol = ringlb::config::ListenerProtocol::Tcp;
            l.cluster = Some("echo".into());
            l.tls.as_mut().unwrap().alpn.clear();
            config.listeners.push(l);
            config.clusters.push(cluster("echo", &[("echo1", echo.addr)]));
        });
        let addr = h.listener_addr("tls");
        let config = client_config(&[&cert], &[&TLS13], &[]);
        let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        assert_eq!(read_text_line_tls(&mut client), "echo1");
        client.write_all(b"hello over tls\n").unwrap();
        client.flush().unwrap();
        assert_eq!(read_text_line_tls(&mut client), "hello over tls");
        // close_notify and FIN: the backend sees the end and says goodbye.
        client.conn.send_close_notify();
        client.flush().unwrap();
        client.sock.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_text_line_tls(&mut client), "bye 15");
        wait_until("the backend to see the FIN", || echo.ends() == vec![OriginEnd::Fin]);
    }
}

fn read_text_line_tls(client: &mut TlsClient) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match client.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            other => panic!("line cut short: {other:?} after {line:?}"),
        }
    }
    String::from_utf8(line).unwrap()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Writes `from`'s files over `to`'s.
fn install(from: &TestCert, to: &TestCert) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

#[test]
fn certificates_reload_under_load_without_a_failed_handshake() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let dir = test_dir("reload");
    let first = make_cert(&dir, "first", &["example.test"]);
    let second = make_cert(&dir, "second", &["example.test"]);
    let served = make_cert(&dir, "served", &["example.test"]);
    install(&first, &served);
    let (h, addr) = https(
        ringlb::shard::Driver::Epoll,
        &[&served],
        Some("example.test"),
        |_| {},
    );
    let any = any_cert_config(&[&TLS13, &TLS12]);
    let mut old = tls_connect(addr, "example.test", &any).expect("handshake");
    set_timeouts(&old);
    assert!(presented(&old) == first.der);

    // New connections all the while, each with one request.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed, any) = (stop.clone(), ok.clone(), failed.clone(), any.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let done = tls_connect(addr, "example.test", &any).map(|mut c| {
                    set_timeouts(&c);
                    tls_get(&mut c, "/").status
                });
                match done {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    for round in 0..20 {
        install(if round % 2 == 0 { &second } else { &first }, &served);
        let before = ok.load(Ordering::Relaxed);
        h.server()
            .handle()
            .reload(h.config.clone())
            .expect("the reload is taken");
        wait_until("requests after the reload", || {
            ok.load(Ordering::Relaxed) > before + 2
        });
        // New handshakes get the certificate now in the files, once the shard
        // has taken the reload.
        let expected = if round % 2 == 0 { &second } else { &first };
        wait_until(&format!("round {round}'s certificate"), || {
            let client = tls_connect(addr, "example.test", &any).expect("handshake");
            presented(&client) == expected.der
        });
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) >= 60);
    // The connection opened before them all still serves.
    assert_eq!(tls_get(&mut old, "/").status, 200);

    // A broken key: the reload is refused, naming the file, and the running
    // certificate (the first, after 20 rounds) stays.
    std::fs::write(&served.key, "not a key\n").unwrap();
    let refused = h.server().handle().reload(h.config.clone());
    let message = refused.expect_err("refused").to_string();
    assert!(
        message.contains("tls.certificates[0]") && message.contains("served.key"),
        "{message}"
    );
    let client = tls_connect(addr, "example.test", &any).expect("handshake");
    assert!(presented(&client) == first.der);
}

/// Runs a command to its end (each is bounded by its own timeout flag).
fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} (CI installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

#[test]
fn curl_and_openssl_clients_talk_to_a_tls_listener() {
    let dir = test_dir("openssl");
    let cert = make_cert(&dir, "example", &["example.test"]);
    let (_h, addr) = https(
        ringlb::shard::Driver::Epoll,
        &[&cert],
        Some("example.test"),
        |_| {},
    );
    let ca = cert.cert.to_str().unwrap();
    let resolve = format!("example.test:{}:127.0.0.1", addr.port());
    let url = format!("https://example.test:{}/headers", addr.port());
    for version in ["--tlsv1.2", "--tlsv1.3"] {
        let out = run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "15",
                version,
                "--cacert",
                ca,
                "--resolve",
                &resolve,
                &url,
            ],
        );
        assert!(out.contains("X-Forwarded-Proto: https"), "{out}");
    }
    let connect = addr.to_string();
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = run(
            "timeout",
            &[
                "15",
                "openssl",
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "example.test",
                flag,
                "-CAfile",
                ca,
                "-verify_return_error",
            ],
        );
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(
            out.contains(&format!("Protocol  : {name}")) || out.contains(&format!(", {name},")),
            "{out}"
        );
    }
}

#[test]
fn a_close_notify_behind_data_ends_the_tunnel_without_a_fin() {
    let dir = test_dir("close-notify");
    let cert = make_cert(&dir, "example", &["example.test"]);
    let echo = TcpOrigin::start("echo1");
    let h = Harness::start_full(ringlb::shard::Driver::Epoll, &[], |config, _| {
        let mut l = tls_listener("tls", &[&cert], Some("example.test"));
        l.protocol = ringlb::config::ListenerProtocol::Tcp;
        l.cluster = Some("echo".into());
        config.listeners.push(l);
        config
            .clusters
            .push(cluster("echo", &[("echo1", echo.addr)]));
    });
    let config = client_config(&[&cert], &[&TLS13], &[]);
    let mut client =
        tls_connect(h.listener_addr("tls"), "example.test", &config).expect("handshake");
    set_timeouts(&client);
    assert_eq!(read_text_line_tls(&mut client), "echo1");
    // The last data and close_notify in one flush, the socket left open (as a
    // client that closes its TLS writing side only does).
    client.write_all(b"last\n").unwrap();
    client.conn.send_close_notify();
    client.flush().unwrap();
    assert_eq!(read_text_line_tls(&mut client), "last");
    assert_eq!(read_text_line_tls(&mut client), "bye 5");
    wait_until("the backend to see the FIN", || {
        echo.ends() == vec![OriginEnd::Fin]
    });
}

#[test]
fn tls_1_2_sessions_resume_by_session_id_without_tickets() {
    let dir = test_dir("session-id");
    let cert = make_cert(&dir, "example", &["example.test"]);
    let (h, addr) = https(
        ringlb::shard::Driver::Epoll,
        &[&cert],
        Some("example.test"),
        |_| {},
    );
    let mut config = (*client_config(&[&cert], &[&TLS12], &[])).clone();
    config.resumption = rustls::client::Resumption::in_memory_sessions(8)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let config = std::sync::Arc::new(config);
    for round in 0..3 {
        let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
        set_timeouts(&client);
        let expected = if round == 0 {
            HandshakeKind::Full
        } else {
            HandshakeKind::Resumed
        };
        assert_eq!(
            client.conn.handshake_kind(),
            Some(expected),
            "round {round}"
        );
        assert_eq!(tls_get(&mut client, "/").status, 200);
    }
    assert_eq!(tls(&h).resumed, 2);
}

#[test]
fn sessions_resume_on_any_shard() {
    let dir = test_dir("shards");
    let cert = make_cert(&dir, "example", &["example.test"]);
    let (h, addr) = https(
        ringlb::shard::Driver::Epoll,
        &[&cert],
        Some("example.test"),
        |c| c.server.shards = 2,
    );
    for version in [&TLS13, &TLS12] {
        let config = client_config(&[&cert], &[version], &[]);
        for round in 0..20 {
            let mut client = tls_connect(addr, "example.test", &config).expect("handshake");
            set_timeouts(&client);
            let expected = if round == 0 {
                HandshakeKind::Full
            } else {
                HandshakeKind::Resumed
            };
            assert_eq!(
                client.conn.handshake_kind(),
                Some(expected),
                "{version:?} round {round}"
            );
            assert_eq!(tls_get(&mut client, "/").status, 200);
        }
    }
    let totals = tls(&h);
    assert_eq!((totals.full, totals.resumed), (2, 38));
}
