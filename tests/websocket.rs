//! WebSocket through the real proxy with a real client (tungstenite): the
//! handshake, echo of text and binary frames of 1 byte to 1 MiB, ping and pong,
//! a close from either side, bytes sent before the 101, upgrades the backend
//! refuses, h2c stripped, a 101 nobody asked for, the tunnel idle timeout, and
//! tunnels that outlive a reload.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringlb::observe::tunnels::TunnelEnd;
use support::*;
use tungstenite::{Message, WebSocket};

fn open(addr: SocketAddr) -> WebSocket<TcpStream> {
    let stream = connect(addr);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (ws, response) =
        tungstenite::client::client(format!("ws://{addr}/ws"), stream).expect("handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-origin"], "app1");
    ws
}

fn tunnels(h: &Harness) -> ringlb::observe::tunnels::TunnelTotals {
    h.stats().tunnels
}

const HANDSHAKE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

both_drivers! {
    fn text_and_binary_frames_echo_at_every_size(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut ws = open(h.addr);
        for size in [1usize, 125, 126, 65_535, 65_536, 1024 * 1024] {
            let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            ws.send(Message::text(text.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::text(text), "text of {size}");
            let binary: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            ws.send(Message::binary(binary.clone())).unwrap();
            assert_eq!(ws.read().unwrap(), Message::binary(binary), "binary of {size}");
        }
        ws.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Pong(b"are you there".to_vec().into()));
        // Close from the client: the echo answers, and the tunnel ends cleanly.
        ws.close(None).unwrap();
        match ws.read() {
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {}
            Ok(other) => panic!("expected the close, got {other:?}"),
            Err(e) => panic!("closing: {e}"),
        }
        // The backend closed its side; the client closes its own.
        drop(ws);
        wait_until("the tunnel to end", || tunnels(&h).counts.active == 0);
        let t = tunnels(&h);
        assert_eq!((t.upgraded, t.counts.opened), (1, 1));
        assert_eq!(t.ends[TunnelEnd::Closed as usize], 1);
        assert!(t.counts.bytes_up > 2 * 1024 * 1024 && t.counts.bytes_down > 2 * 1024 * 1024);
        // The handshake was a request, answered 101, to app1.
        let app1 = &h.server().handle().backend_counters().unwrap()["app1"];
        assert_eq!(app1.status_codes(), vec![(101, 1)]);
        assert_eq!(app1.tunnels.opened, 1);
    }

    fn the_backend_can_close_first(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut ws = open(h.addr);
        ws.send(Message::text("close-me")).unwrap();
        match ws.read().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
            other => panic!("expected a close, got {other:?}"),
        }
        drop(ws);
        wait_until("the tunnel to end", || tunnels(&h).counts.active == 0);
    }

    fn bytes_sent_before_the_101_reach_the_backend_after_it(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        // The handshake and a masked "Hello" frame (RFC 6455 §5.7) in one write.
        let mut bytes = HANDSHAKE.to_vec();
        bytes.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        s.write_all(&bytes).unwrap();
        let mut pending = Vec::new();
        let reply = read_reply(&mut s, &mut pending, true);
        assert_eq!(reply.status, 101);
        assert_eq!(reply.header("upgrade"), Some("websocket"));
        assert_eq!(reply.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        // The echo of the frame, unmasked.
        while pending.len() < 7 {
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the echo");
            pending.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&pending[..7], b"\x81\x05Hello");
    }

    fn a_refused_upgrade_stays_http(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        // The origin answers /headers with a 200 (showing what it received).
        s.write_all(&HANDSHAKE.to_vec().replace_path("/headers")).unwrap();
        let reply = read_reply(&mut s, &mut pending, false);
        assert_eq!(reply.status, 200);
        let seen = reply.text().to_ascii_lowercase();
        assert!(seen.contains("upgrade: websocket") && seen.contains("connection: upgrade"), "{seen}");
        // The same connection carries another request.
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
        // A 404 too.
        s.write_all(&HANDSHAKE.to_vec().replace_path("/status/404")).unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 404);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
        assert_eq!(tunnels(&h).upgraded, 0);
        // A connection that carried an upgrade request never goes back to the pool,
        // whatever the answer: another client's request gets one of its own.
        let origin = &h.origins[0];
        let before = origin.connections();
        s.write_all(&HANDSHAKE.to_vec().replace_path("/status/403")).unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 403);
        assert_eq!(get(h.addr, "/").status, 200);
        assert_eq!(origin.connections(), before + 1, "the plain request used a fresh connection");
    }

    fn the_101_carries_the_sticky_cookie(driver) {
        let h = Harness::start(driver, 2, |c| {
            c.clusters[0].balancer.sticky = Some(ringlb::config::StickyConfig {
                cookie: "lb".into(),
                ttl: Duration::from_secs(60),
                secret: None,
            });
        });
        let reply = request(h.addr, HANDSHAKE);
        assert_eq!(reply.status, 101);
        let cookie = reply.header("set-cookie").expect("a sticky cookie");
        assert!(cookie.starts_with("lb="), "{cookie}");
        // Later requests with it reach the backend that took the WebSocket.
        let token = cookie.split(';').next().unwrap();
        let origin = reply.header("x-origin").unwrap().to_string();
        for _ in 0..4 {
            let r = get_host(h.addr, "t", "/", &format!("Cookie: {token}\r\n"));
            assert_eq!(served_by(&r), origin);
        }
    }

    fn h2c_upgrades_are_stripped(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let reply = request(
            h.addr,
            b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(reply.status, 200);
        let seen = reply.text().to_ascii_lowercase();
        assert!(!seen.contains("upgrade") && !seen.contains("h2c") && !seen.contains("http2-settings"), "{seen}");
    }

    fn a_101_nobody_asked_for_is_a_502(driver) {
        let h = Harness::start(driver, 1, |_| {});
        assert_eq!(get(h.addr, "/bad/switch").status, 502);
        // Asked for, but to the wrong path of a backend that switches anyway: fine.
        let reply = request(h.addr, &HANDSHAKE.to_vec().replace_path("/bad/switch"));
        assert_eq!(reply.status, 101);
    }

    fn an_idle_websocket_is_closed(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.timeouts.tunnel_idle = Duration::from_millis(500);
        });
        let mut ws = open(h.addr);
        ws.send(Message::text("hi")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("hi"));
        // Nothing more: the proxy closes it.
        assert!(ws.read().is_err(), "the connection is closed");
        wait_until("the idle timeout to be counted", || {
            tunnels(&h).ends[TunnelEnd::IdleTimeout as usize] == 1
        });
    }

    fn shutdown_gives_a_websocket_the_grace_period_then_cuts_it(driver) {
        let mut h = Harness::start(driver, 1, |c| {
            c.timeouts.shutdown_grace = Duration::from_secs(2);
        });
        let mut ws = open(h.addr);
        let server = h.server.take().unwrap();
        server.handle().shutdown();
        wait_until("the listener to close", || TcpStream::connect(h.addr).is_err());
        ws.send(Message::text("during the grace")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("during the grace"));
        assert!(ws.read().is_err(), "cut at the end of the grace period");
        assert_eq!(server.wait().unfinished_connections, 1);
    }

    fn a_websocket_outlives_a_reload_of_its_listener(driver) {
        let h = Harness::start(driver, 2, |_| {});
        let mut ws = open(h.addr);
        h.set_backends(h.backend_table(2));
        ws.send(Message::text("after reload")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("after reload"));
    }
}

/// Replaces the request target of a handshake.
trait ReplacePath {
    fn replace_path(&self, path: &str) -> Vec<u8>;
}

impl ReplacePath for Vec<u8> {
    fn replace_path(&self, path: &str) -> Vec<u8> {
        let text = String::from_utf8(self.clone()).unwrap();
        text.replacen("GET /ws ", &format!("GET {path} "), 1)
            .into_bytes()
    }
}
