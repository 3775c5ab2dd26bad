//! HTTP/1.1 proxying through the real proxy, on both io drivers: selection,
//! keep-alive and pooling, body framing, header rewriting, strict parsing, limits,
//! error statuses and timeouts.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use ringlb::config::{BackendConfig, Strategy};
use support::*;

fn names(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| get(addr, "/").text().trim().to_string())
        .collect()
}

both_drivers! {
    fn round_robin_spreads_evenly(driver) {
        let h = Harness::start(driver, 3, |_| {});
        let mut counts: HashMap<String, usize> = HashMap::new();
        for name in names(h.addr, 30) {
            *counts.entry(name).or_default() += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&c| c == 10), "{counts:?}");
    }

    fn weighted_round_robin_is_smooth(driver) {
        let h = Harness::start(driver, 3, |c| {
            c.clusters[0].balancer.strategy = Strategy::WeightedRoundRobin;
            c.clusters[0].backends[0].weight = 5;
        });
        let seq = names(h.addr, 14);
        assert_eq!(
            seq,
            ["app1", "app1", "app2", "app1", "app3", "app1", "app1"].repeat(2),
        );
    }

    fn least_conn_avoids_the_busy_backend(driver) {
        let h = Harness::start(driver, 2, |c| c.clusters[0].balancer.strategy = Strategy::LeastConn);
        // Hold one slow request in flight; least-conn must send the rest elsewhere.
        let addr = h.addr;
        let slow = std::thread::spawn(move || get(addr, "/delay/1s"));
        let busy_origin = {
            let h = &h;
            let mut which = None;
            wait_until("the slow request to reach an origin", || {
                which = h.origins.iter().position(|o| o.connections() > 0);
                which.is_some()
            });
            which.unwrap()
        };
        let other = format!("app{}", 2 - busy_origin);
        for name in names(h.addr, 5) {
            assert_eq!(name, other);
        }
        assert_eq!(slow.join().unwrap().status, 200);
    }

    fn keep_alive_reuses_client_and_upstream_connections(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        for _ in 0..50 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            let r = read_reply(&mut s, &mut pending, false);
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), None);
        }
        // Fresh client connections share the pooled upstream connection too.
        for _ in 0..20 {
            assert_eq!(get(h.addr, "/").status, 200);
        }
        assert_eq!(h.origins[0].connections(), 1, "one upstream connection for 70 requests");
        let stats = h.stats();
        assert_eq!(stats.upstream_connects, 1);
        assert_eq!(stats.upstream_reuses, 69);
    }

    fn idle_connections_park_and_still_serve_their_next_request(driver) {
        let h = Harness::start(driver, 1, |_| {});
        // A fresh connection that sends nothing parks too.
        let mut fresh = connect(h.addr);
        let mut used = connect(h.addr);
        let mut pending = Vec::new();
        used.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut used, &mut pending, false).status, 200);
        wait_until("both connections to park", || h.stats().parked_connections == 2);
        // A parked connection wakes for a whole request...
        used.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_reply(&mut used, &mut pending, false);
        assert_eq!((r.status, r.text().as_str()), (200, "app1\n"));
        // ...and for one that arrives in pieces.
        fresh.write_all(b"GET / HT").unwrap();
        wait_until("the fresh connection to wake", || h.stats().parked_connections <= 1);
        fresh.write_all(b"TP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut fresh_pending = Vec::new();
        let r = read_reply(&mut fresh, &mut fresh_pending, false);
        assert_eq!((r.status, r.text().as_str()), (200, "app1\n"));
        // A parked connection the client closes is gone from the gauge and the count.
        wait_until("both to park again", || h.stats().parked_connections == 2);
        drop(fresh);
        drop(used);
        wait_until("the closed connections to end", || {
            let stats = h.stats();
            stats.parked_connections == 0 && stats.active_connections == 0
        });
    }

    fn a_pooled_connection_the_backend_closed_is_not_used(driver) {
        let mut h = Harness::start(driver, 1, |_| {});
        assert_eq!(get(h.addr, "/").status, 200);
        // Restart the origin on the same port: the pooled connection is now dead.
        let origin = h.origins.remove(0);
        let address = origin.addr();
        origin.stop();
        let restarted = ringlb::testkit::origin::spawn(address, "app1", driver).unwrap();
        let r = get(h.addr, "/");
        assert_eq!(r.status, 200);
        assert_eq!(restarted.connections(), 1);
        assert_eq!(h.stats().upstream_errors, 0);
    }

    fn a_failure_on_a_reused_connection_is_retried_on_a_fresh_one(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
        // The origin drops this request on the reused connection without a byte.
        s.write_all(b"GET /fail-reused HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_reply(&mut s, &mut pending, false);
        assert_eq!(r.status, 200);
        let stats = h.stats();
        assert_eq!(stats.upstream_retries, 1);
        assert_eq!(stats.upstream_connects, 2);
    }

    fn pipelined_requests_are_answered_in_order(driver) {
        let h = Harness::start(driver, 2, |_| {});
        let mut s = connect(h.addr);
        s.write_all(
            b"GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
              GET /status/202 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /status/203 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut pending = Vec::new();
        let statuses: Vec<u16> = (0..4)
            .map(|_| read_reply(&mut s, &mut pending, false))
            .map(|r| if r.status == 200 { assert_eq!(r.body, b"hello"); 200 } else { r.status })
            .collect();
        assert_eq!(statuses, [201, 200, 202, 203]);
        assert!(read_to_close(&mut s).is_empty());
    }

    fn http10_clients_close_unless_they_ask(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let raw = exchange(h.addr, b"GET / HTTP/1.0\r\n\r\n");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");

        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        for _ in 0..2 {
            s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
            let r = read_reply(&mut s, &mut pending, false);
            assert_eq!(r.header("connection"), Some("keep-alive"));
            assert_eq!(r.text(), "app1\n");
        }
        // A chunked response cannot go to a 1.0 client: it is sent close-delimited.
        let raw = exchange(h.addr, b"GET /chunked/40000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&raw[..split]);
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        assert_eq!(raw.len() - split, 40000);
    }

    fn a_client_that_asked_to_close_is_closed_at_once(driver) {
        // Closed, not half-closed while the proxy waits for the client's FIN:
        // a byte sent after the response is answered with a reset. (Lingering,
        // the proxy would read and discard it, and no reset would come.)
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let raw = read_to_close(&mut s);
        assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw));
        s.write_all(b"x").unwrap();
        assert!(wait_for_reset(&s), "no reset: the proxy still holds the connection");
    }

    fn a_client_that_asked_to_close_but_sent_more_gets_its_response_whole(driver) {
        // A stray CRLF sent once the response has begun sits unread in the
        // proxy's socket while it writes 32 MiB. Closed at once with it unread,
        // the kernel would send a reset and drop what is still queued to send,
        // cutting the body short. The proxy lingers instead.
        // A small receive buffer keeps most of the body in the proxy's send
        // queue when its last write is taken, as with a slow client.
        const SIZE: usize = 32 << 20;
        let h = Harness::start(driver, 1, |_| {});
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&h.addr.into()).unwrap();
        let mut s: std::net::TcpStream = socket.into();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let ask = format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(ask.as_bytes()).unwrap();
        let mut raw = vec![0u8; 1024];
        let n = s.read(&mut raw).unwrap();
        raw.truncate(n);
        s.write_all(b"\r\n").unwrap();
        raw.extend(read_to_close(&mut s));
        let head = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw[..head]));
        assert_eq!(raw.len() - head, SIZE);
    }

    fn hop_by_hop_headers_are_removed_and_forwarding_headers_set(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let r = request(
            h.addr,
            b"GET /headers HTTP/1.1\r\nHost: Example.COM:8080\r\nConnection: close, X-Private\r\n\
              X-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
              TE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\nX-Forwarded-For: 203.0.113.7\r\n\
              X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed\r\nAccept: */*\r\n\r\n",
        );
        let seen = r.text().to_ascii_lowercase();
        for gone in ["x-private", "keep-alive", "proxy-connection", "te:", "trailer:", "upgrade", "spoofed", "https"] {
            assert!(!seen.contains(gone), "{gone} reached the origin:\n{seen}");
        }
        assert!(seen.contains("host: example.com:8080\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
        assert!(seen.contains("x-forwarded-host: example.com:8080\r\n"), "{seen}");
        assert!(seen.contains("accept: */*\r\n"), "{seen}");
    }

    fn chunked_bodies_are_reframed_with_trailers(driver) {
        let h = Harness::start(driver, 1, |_| {});
        // Request: odd chunk sizes, an extension, a trailer.
        let r = request(
            h.addr,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n1\r\nd\r\n0\r\nX-Sum: 4\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcd");
        // Response: chunked from the origin, chunked to the client, trailer kept.
        let mut s = connect(h.addr);
        s.write_all(b"GET /chunked/100000 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut pending = Vec::new();
        let r = read_reply(&mut s, &mut pending, false);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.body.len(), 100000);
        assert!(r.body.iter().enumerate().all(|(i, &b)| b == ringlb::testkit::origin::pattern_byte(i as u64)));
        assert_eq!(r.trailers, vec![("X-Origin-Trailer".to_string(), "done".to_string())]);
        // The connection is still good.
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
    }

    fn expect_100_continue_waits_for_the_go_ahead(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        s.write_all(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n")
            .unwrap();
        let mut pending = Vec::new();
        let interim = read_reply(&mut s, &mut pending, false);
        assert_eq!(interim.status, 100);
        s.write_all(b"thanks").unwrap();
        let r = read_reply(&mut s, &mut pending, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"thanks");
    }

    fn interim_responses_reach_http11_clients(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        s.write_all(b"GET /interim HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut pending = Vec::new();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 103);
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
    }

    fn a_failure_after_an_interim_response_still_gets_a_final_502(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        s.write_all(b"GET /bad/interim-reset HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut pending = Vec::new();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 103);
        let last = read_reply(&mut s, &mut pending, false);
        assert_eq!(last.status, 502);
        assert_eq!(last.header("connection"), Some("close"));
        assert!(read_to_close(&mut s).is_empty());
        assert_eq!(h.stats().status_codes(), vec![(502, 1)]);
    }

    fn an_early_response_during_an_upload_reaches_the_client(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        let total: usize = 100 * 1024 * 1024;
        let upload = start_upload(&mut s, "/early/413", total);
        let mut pending = Vec::new();
        let reply = read_reply(&mut s, &mut pending, false);
        assert_eq!(reply.status, 413);
        assert_eq!(reply.text(), "too large\n");
        assert_eq!(reply.header("connection"), Some("close"));
        drop(s);
        let sent = upload.join().unwrap();
        assert!(sent < total, "the proxy stopped reading the body ({sent} of {total} bytes)");
        assert_eq!(h.stats().early_responses, 1);
        assert_eq!(h.stats().status_codes(), vec![(413, 1)]);
    }

    fn responses_without_a_body_keep_the_connection(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        s.write_all(b"HEAD /bytes/12345 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_reply(&mut s, &mut pending, true);
        assert_eq!(r.header("content-length"), Some("12345"));
        for (path, status) in [("/status/204", 204), ("/status/304", 304)] {
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).unwrap();
            let r = read_reply(&mut s, &mut pending, false);
            assert_eq!(r.status, status);
            assert!(r.body.is_empty());
        }
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let r = read_reply(&mut s, &mut pending, false);
        assert_eq!(r.text(), "app1\n");
        assert!(pending.is_empty(), "no stray body bytes: {pending:?}");
        assert!(read_to_close(&mut s).is_empty());
    }

    fn close_delimited_responses_end_the_client_connection(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let raw = exchange(h.addr, b"GET /close/5000 HTTP/1.1\r\nHost: t\r\n\r\n");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&raw[..split]);
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(raw.len() - split, 5000);
    }

    fn request_smuggling_attempts_get_400_and_never_reach_a_backend(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\nb\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/9.1\r\nHost: t\r\n\r\n",
            b"GET / FOO/1.1\r\nHost: t\r\n\r\n",
            b"GET nothing HTTP/1.1\r\nHost: t\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n",
            // Bare LFs (RFC 9112 §2.2 allows accepting them; ringlb does not).
            b"GET /headers HTTP/1.1\nHost: a.test\nX-Foo: bar\nConnection: close\n\n",
            b"GET /headers HTTP/1.1\r\nHost: a.test\r\nX-Foo: a\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            b"GET / HTTP/1.1\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\n\n",
            // Look-alikes of framing fields (some servers fold `_`/`-` runs).
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer---Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer___Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent__Length: 5\r\n\r\nhello",
            // A target must be ASCII; a chunk extension needs a name.
            b"GET /\xce\xb4 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\nab\r\n0\r\n\r\n",
            // Absolute-form: no userinfo, no empty host.
            b"GET http://u:p@t/ HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nHost: t\r\n\r\n",
        ];
        for case in cases {
            let raw = exchange(h.addr, case);
            let text = String::from_utf8_lossy(&raw);
            assert!(text.starts_with("HTTP/1.1 400 "), "{:?} -> {text}", String::from_utf8_lossy(case));
            assert!(text.contains("Server: ringlb\r\n"), "{text}");
        }
        assert_eq!(h.origins[0].connections(), 0, "a bad request reached the origin");
        assert_eq!(h.stats().client_errors, cases.len() as u64);
    }

    fn an_absolute_form_target_reaches_the_backend_in_origin_form_with_its_host(driver) {
        let h = Harness::start(driver, 1, |_| {});
        let reply = request(
            h.addr,
            b"GET http://a.example:81/headers?x=1 HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        );
        let seen = reply.text();
        assert!(seen.starts_with("GET /headers?x=1 HTTP/1.1\r\n"), "{seen}");
        let hosts: Vec<&str> = seen
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(hosts, ["Host: a.example:81"], "{seen}");
        assert!(seen.contains("X-Forwarded-Host: a.example:81\r\n"), "{seen}");
    }

    fn pooled_connections_close_after_the_idle_timeout_without_traffic(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.clusters[0].upstream.idle_timeout = Duration::from_millis(300);
        });
        assert_eq!(get(h.addr, "/").status, 200);
        wait_until("the connection to be pooled", || {
            h.stats().pooled_idle_connections == 1
        });
        // No request comes to take it: the shard's sweep closes it.
        wait_until("the pooled connection to expire", || {
            h.stats().pooled_idle_connections == 0
        });
    }

    fn unsupported_requests_get_501_and_417(driver) {
        let h = Harness::start(driver, 1, |_| {});
        for (raw, status) in [
            (&b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n"[..], "501"),
            (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501"),
            (b"GET / HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n", "417"),
        ] {
            let text = String::from_utf8_lossy(&exchange(h.addr, raw)).into_owned();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        }
    }

    fn limits_give_431_and_413(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.limits.max_header_bytes = 2048;
            c.limits.max_headers = 10;
            c.limits.max_body_bytes = Some(100);
        });
        let mut big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 3000));
        big.extend_from_slice(b"\r\n\r\n");
        let mut many = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
        for i in 0..11 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            chunked.extend_from_slice(b"40\r\n");
            chunked.extend(std::iter::repeat_n(b'x', 64));
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (big, "431"),
            (many, "431"),
            (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n".to_vec(), "413"),
            (chunked, "413"),
        ];
        for (raw, status) in cases {
            let text = String::from_utf8_lossy(&exchange(h.addr, &raw)).into_owned();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        }
        // Exactly at the body limit passes.
        let mut ok = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\n".to_vec();
        ok.extend(std::iter::repeat_n(b'y', 100));
        assert_eq!(request(h.addr, &ok).body.len(), 100);
    }

    fn backend_failures_map_to_502_503_504(driver) {
        let h = Harness::start(driver, 1, |c| {
            c.timeouts.backend_response = Duration::from_millis(300);
        });
        for path in ["/bad/cl-te", "/bad/garbage", "/bad/bare-lf", "/reset"] {
            let r = get(h.addr, path);
            assert_eq!(r.status, 502, "{path}");
            assert_eq!(r.header("server"), Some("ringlb"));
            assert_eq!(r.text(), "502 Bad Gateway\n");
        }
        let r = get(h.addr, "/hang");
        assert_eq!(r.status, 504);
        assert_eq!(r.text(), "504 Gateway Timeout\n");

        // A backend that refuses connections.
        h.set_backends(vec![BackendConfig {
            name: "gone".into(),
            address: closed_port(),
            weight: 1,
        }]);
        wait_until("the new table", || get(h.addr, "/").status == 502);
        // No backends at all: the runtime API removes the last one.
        h.server().handle().remove_backend("gone").unwrap();
        wait_until("the empty table", || get(h.addr, "/").status == 503);
        let r = get(h.addr, "/");
        assert_eq!(r.text(), "503 Service Unavailable\n");
    }

    fn connect_timeout_gives_504(driver) {
        // A listener that never accepts, with its backlog full: SYNs are dropped.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        socket.listen(0).unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
                fillers.push(s);
            }
        }
        let h = Harness::start(driver, 0, |c| {
            c.timeouts.connect = Duration::from_millis(200);
            c.clusters[0].backends.push(BackendConfig { name: "stuck".into(), address, weight: 1 });
        });
        let r = get(h.addr, "/");
        assert_eq!(r.status, 504);
        drop(fillers);
    }

    fn header_read_timeout_gives_408(driver) {
        let h = Harness::start(driver, 1, |c| c.timeouts.header_read = Duration::from_millis(200));
        let raw = exchange(h.addr, b"GET / HTTP/1.1\r\nHost: t\r\n");
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 408 "));
        // A connection that sends nothing is closed quietly.
        let mut s = connect(h.addr);
        assert!(read_to_close(&mut s).is_empty());
    }

    fn idle_keep_alive_connections_are_closed(driver) {
        let h = Harness::start(driver, 1, |c| c.timeouts.idle = Duration::from_millis(200));
        let mut s = connect(h.addr);
        let mut pending = Vec::new();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
        let started = std::time::Instant::now();
        assert!(read_to_close(&mut s).is_empty());
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    fn a_client_that_stops_reading_is_cut_after_the_idle_timeout(driver) {
        let h = Harness::start(driver, 1, |c| c.timeouts.idle = Duration::from_millis(300));
        let mut s = connect(h.addr);
        s.write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        // Never read: socket buffers fill, the proxy's write blocks, then times out.
        wait_until("the stalled write to be cut", || h.stats().client_errors == 1);
        wait_until("the backend connection to close", || h.origins[0].open_connections() == 0);
        drop(s);
    }

    fn max_connections_refuses_extra_connections_only(driver) {
        let h = Harness::start(driver, 1, |c| c.server.max_connections = 2);
        let mut kept = Vec::new();
        for _ in 0..2 {
            let mut s = connect(h.addr);
            let mut pending = Vec::new();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
            kept.push(s);
        }
        let mut extra = connect(h.addr);
        let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(read_to_close(&mut extra).is_empty(), "the third connection is closed");
        for s in &mut kept {
            let mut pending = Vec::new();
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_reply(s, &mut pending, false).status, 200);
        }
        assert_eq!(h.stats().connections_refused, 1);
    }

    fn a_removed_backend_is_drained(driver) {
        let h = Harness::start(driver, 2, |_| {});
        let addr = h.addr;
        // In flight on app1 (round-robin starts there) when app1 is removed.
        let slow = std::thread::spawn(move || get(addr, "/delay/300ms"));
        wait_until("the slow request to reach app1", || h.origins[0].connections() == 1);
        h.set_backends(vec![BackendConfig {
            name: "app2".into(),
            address: h.origins[1].addr(),
            weight: 1,
        }]);
        let r = slow.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "app1\n"));
        // Its upstream connection went back to nothing: it is closed, not pooled.
        wait_until("app1's connection to close", || h.origins[0].open_connections() == 0);
        for name in names(addr, 4) {
            assert_eq!(name, "app2");
        }
    }

    fn a_new_backend_table_takes_effect(driver) {
        let h = Harness::start(driver, 2, |c| c.clusters[0].backends.truncate(1));
        assert_eq!(get(h.addr, "/").text(), "app1\n");
        h.set_backends(vec![BackendConfig {
            name: "app2".into(),
            address: h.origins[1].addr(),
            weight: 1,
        }]);
        wait_until("app2 to take over", || get(h.addr, "/").text() == "app2\n");
        for name in names(h.addr, 5) {
            assert_eq!(name, "app2");
        }
    }
}

#[test]
fn admin_answers_healthz() {
    let h = Harness::start(ringlb::shard::Driver::Epoll, 1, |_| {});
    let admin = h.server().admin_addr();
    let r = get(admin, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(get(admin, "/nothing").status, 404);
}

#[test]
fn a_real_http_client_sees_keep_alive_and_round_robin() {
    let h = Harness::start(ringlb::shard::Driver::IoUring, 2, |_| {});
    let agent = ureq::AgentBuilder::new().timeout(WAIT).build();
    let url = format!("http://{}/", h.addr);
    let bodies: Vec<String> = (0..4)
        .map(|_| agent.get(&url).call().unwrap().into_string().unwrap())
        .collect();
    assert_eq!(bodies, ["app1\n", "app2\n", "app1\n", "app2\n"]);
    let r = agent
        .post(&format!("http://{}/echo", h.addr))
        .send_string("payload")
        .unwrap();
    assert_eq!(r.into_string().unwrap(), "payload");
    assert_eq!(
        h.stats().connections_accepted,
        1,
        "ureq kept one connection"
    );
}

/// Waits (up to `support::WAIT`) for the peer's reset on a socket whose reading
/// side already saw EOF, where readability says nothing: `poll` with no events
/// asked still reports an error or hang-up.
fn wait_for_reset(s: &std::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fd, 1, WAIT.as_millis() as i32) };
    n == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
