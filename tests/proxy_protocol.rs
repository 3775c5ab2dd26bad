//! The PROXY protocol through the real proxy: headers from a trusted load
//! balancer in front (v1 and v2) replace the client address; untrusted peers and
//! malformed headers are closed and counted; backends are sent the client's
//! address (v1 and v2), on connections never pooled for another client; health
//! checks send it when asked.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use ringlb::config::{CheckType, Cidr, ProxyVersion};
use ringlb::protocol::proxy_header::{self, ProxiedAddr};
use support::*;

const V1: &[u8] = b"PROXY TCP4 203.0.113.7 198.51.100.1 5555 443\r\n";

fn trusted(c: &mut ringlb::config::ListenerConfig, networks: &[&str]) {
    c.accept_proxy = true;
    c.proxy_trusted = networks.iter().map(|n| Cidr::parse(n).unwrap()).collect();
}

/// A backend that reads a PROXY header at the start of each connection, records
/// it, then answers HTTP requests with the header's source address (or, for
/// anything else, echoes).
struct ProxyBackend {
    addr: SocketAddr,
    headers: Arc<Seen>,
}

/// Each connection's PROXY header: what it said, and its bytes.
type Seen = Mutex<Vec<(ProxiedAddr, Vec<u8>)>>;

impl ProxyBackend {
    fn start() -> ProxyBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let headers = Arc::new(Mutex::new(Vec::new()));
        let seen = headers.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || backend_connection(stream, &seen));
            }
        });
        ProxyBackend { addr, headers }
    }

    fn headers(&self) -> Vec<(ProxiedAddr, Vec<u8>)> {
        self.headers.lock().unwrap().clone()
    }
}

fn backend_connection(mut s: TcpStream, seen: &Seen) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (source, len) = loop {
        match proxy_header::parse(&buf) {
            Ok(Some(found)) => break found,
            Ok(None) => {}
            Err(_) => return,
        }
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    seen.lock().unwrap().push((source, buf[..len].to_vec()));
    buf.drain(..len);
    let answer = match source {
        ProxiedAddr::Tcp { source, .. } => source.to_string(),
        ProxiedAddr::Unknown => "unknown".into(),
    };
    loop {
        if buf.starts_with(b"GET ") {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match s.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
                continue;
            };
            buf.drain(..end + 4);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if s.write_all(reply.as_bytes()).is_err() {
                return;
            }
        } else if !buf.is_empty() {
            if s.write_all(&buf).is_err() {
                return;
            }
            buf.clear();
        }
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

/// Sends `bytes` on a new connection and reads until the proxy closes it.
fn send_and_read(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    read_to_close(&mut s)
}

both_drivers! {
    fn a_trusted_v1_or_v2_header_replaces_the_client_address(driver) {
        let h = Harness::start(driver, 1, |c| trusted(&mut c.listeners[0], &["127.0.0.0/8"]));
        // v1, with the request in the same write.
        let mut bytes = V1.to_vec();
        bytes.extend_from_slice(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = request(h.addr, &bytes);
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains("X-Forwarded-For: 203.0.113.7\r\n"), "{}", reply.text());
        // v2 with a TLV, from an IPv6 client.
        let mut bytes = Vec::new();
        proxy_header::write_v2(
            &mut bytes,
            "[2001:db8::7]:4000".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        );
        // An authority TLV (0x02, "a.test"): the length grows by its 9 bytes.
        bytes.extend_from_slice(&[0x02, 0x00, 0x06]);
        bytes.extend_from_slice(b"a.test");
        let len = u16::from_be_bytes([bytes[14], bytes[15]]) + 9;
        bytes[14..16].copy_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = request(h.addr, &bytes);
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains("X-Forwarded-For: 2001:db8::7\r\n"), "{}", reply.text());
        // LOCAL (a health check of the balancer in front): the peer's own address.
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        local.extend_from_slice(b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = request(h.addr, &local);
        assert!(reply.text().contains("X-Forwarded-For: 127.0.0.1\r\n"), "{}", reply.text());
        let stats = h.stats();
        assert_eq!((stats.proxy_untrusted, stats.proxy_invalid), (0, 0));
    }

    fn untrusted_peers_and_bad_headers_are_closed_and_counted(driver) {
        let h = Harness::start(driver, 1, |c| trusted(&mut c.listeners[0], &["10.0.0.0/8"]));
        assert!(send_and_read(h.addr, V1).is_empty(), "an untrusted peer gets nothing");
        wait_until("the untrusted peer to be counted", || h.stats().proxy_untrusted == 1);
        assert_eq!(h.origins[0].requests(), 0);

        let h = Harness::start(driver, 1, |c| trusted(&mut c.listeners[0], &["127.0.0.1"]));
        let bad: [&[u8]; 4] = [
            // No header at all: plain HTTP.
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            // A port with a leading zero.
            b"PROXY TCP4 203.0.113.7 198.51.100.1 05555 443\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
            // A bare LF.
            b"PROXY TCP4 203.0.113.7 198.51.100.1 5555 443\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
            // An IPv6 address under TCP4.
            b"PROXY TCP4 2001:db8::7 198.51.100.1 5555 443\r\n",
        ];
        for bytes in bad {
            assert!(send_and_read(h.addr, bytes).is_empty(), "{}", String::from_utf8_lossy(bytes));
        }
        wait_until("the bad headers to be counted", || h.stats().proxy_invalid == 4);
        assert_eq!(h.origins[0].requests(), 0, "nothing reached the backend");
    }

    fn tcp_backends_are_sent_the_client_address(driver) {
        for (version, expected) in [
            (ProxyVersion::V1, V1.to_vec()),
            (ProxyVersion::V2, {
                let mut v2 = Vec::new();
                proxy_header::write_v2(
                    &mut v2,
                    "203.0.113.7:5555".parse().unwrap(),
                    "198.51.100.1:443".parse().unwrap(),
                );
                v2
            }),
        ] {
            let backend = ProxyBackend::start();
            let h = Harness::start_full(driver, &[], |c, _| {
                let mut l = tcp_listener("db", "db");
                trusted(&mut l, &["127.0.0.1/32"]);
                c.listeners.push(l);
                c.clusters.push(cluster("db", &[("db1", backend.addr)]));
                c.clusters[0].upstream.send_proxy = Some(version);
            });
            let mut s = connect(h.listener_addr("db"));
            let mut bytes = V1.to_vec();
            bytes.extend_from_slice(b"ping\n");
            s.write_all(&bytes).unwrap();
            let mut echo = [0u8; 5];
            s.read_exact(&mut echo).unwrap();
            assert_eq!(&echo, b"ping\n");
            let headers = backend.headers();
            assert_eq!(headers.len(), 1);
            assert_eq!(headers[0].1, expected, "{version:?}: the header the backend read");
            // The header ringlb wrote is not counted as the client's bytes.
            let t = h.stats().tunnels.counts;
            assert_eq!((t.bytes_up, t.bytes_down), (5, 5));
        }
    }

    fn http_backends_are_sent_the_client_address_on_unpooled_connections(driver) {
        let backend = ProxyBackend::start();
        let h = Harness::start_full(driver, &[], |c, _| {
            c.listeners.push(listener("web"));
            c.routes.push(route("web", "web", "api"));
            c.clusters.push(cluster("api", &[("api1", backend.addr)]));
            c.clusters[0].upstream.send_proxy = Some(ProxyVersion::V2);
        });
        let addr = h.listener_addr("web");
        // Two requests on one client connection, then one from another client.
        let mut s = connect(addr);
        let mut pending = Vec::new();
        for _ in 0..2 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let reply = read_reply(&mut s, &mut pending, false);
            assert_eq!(reply.status, 200);
            assert!(reply.text().starts_with("127.0.0.1:"), "{}", reply.text());
        }
        assert_eq!(get(addr, "/").status, 200);
        // Every request had a connection, and a header, of its own.
        let headers = backend.headers();
        assert_eq!(headers.len(), 3, "{headers:?}");
        assert!(headers.iter().all(|(a, _)| matches!(a, ProxiedAddr::Tcp { destination, .. } if *destination == addr)));
    }

    fn health_checks_send_the_header_when_asked(driver) {
        let backend = ProxyBackend::start();
        let h = Harness::start_full(driver, &[], |c, _| {
            c.listeners.push(tcp_listener("db", "db"));
            c.clusters.push(cluster("db", &[("db1", backend.addr)]));
            let db = &mut c.clusters[0];
            db.upstream.send_proxy = Some(ProxyVersion::V1);
            db.health_check.kind = CheckType::Tcp;
            db.health_check.send_proxy = true;
            db.health_check.interval = std::time::Duration::from_millis(100);
        });
        wait_until("a check to arrive", || !backend.headers().is_empty());
        let (address, raw) = &backend.headers()[0];
        assert!(raw.starts_with(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), "{}", String::from_utf8_lossy(raw));
        assert!(matches!(address, ProxiedAddr::Tcp { destination, .. } if *destination == backend.addr));
        drop(h);
    }
}
