//! Clusters that speak HTTP/2 to their backends (`upstream.protocol = "h2"`),
//! through the real proxy to real HTTP/2 origins (`testkit::h2_origin`, the h2
//! crate's server): HTTP/1.1 clients and HTTP/2 clients, bodies and trailers
//! both ways, many streams sharing few connections, gRPC calls end to end,
//! refused streams and GOAWAY retried without loss, resets as 502s.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringlb::config::ListenerProtocol;
use ringlb::testkit::h2_origin::{grpc_message, grpc_messages};
use ringlb::testkit::origin::{pattern_byte, Fnv};
use support::h2client::*;
use support::*;

/// An HTTP/2 client's `calls` to `h`, whose listener speaks h2c.
fn h2_calls(addr: SocketAddr, calls: Vec<Call>) -> Vec<Answer> {
    send_all(addr, calls)
        .into_iter()
        .map(|a| a.expect("an answer, not a reset"))
        .collect()
}

/// The proxy's counters of streams and connections to HTTP/2 backends.
fn upstream_h2(h: &Harness) -> (u64, u64) {
    let h2 = h.stats().h2;
    (h2.upstream_streams, h2.upstream_connections)
}

/// A gRPC call's body: `messages` in gRPC's framing.
fn grpc_body(messages: &[&[u8]]) -> Vec<u8> {
    messages.iter().flat_map(|m| grpc_message(m)).collect()
}

fn grpc_status(answer: &Answer) -> Option<String> {
    let field = answer
        .trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| answer.headers.get("grpc-status"))?;
    Some(field.to_str().unwrap().to_string())
}

both_drivers! {
    fn http1_requests_cross_to_an_h2_backend(driver) {
        let h = Harness::start_h2(driver, 1, |_| {});
        let reply = get(h.addr, "/");
        assert_eq!((reply.status, reply.text().as_str()), (200, "app1"));

        // The request as the backend saw it: HTTP/2 pseudo-fields from the
        // request line and Host, forwarding fields, `te: trailers`.
        let reply = get_host(h.addr, "site.test", "/headers?q=1", "");
        let seen = reply.text();
        for line in [
            ":method GET",
            ":scheme http",
            ":authority site.test",
            ":path /headers?q=1",
            "x-forwarded-for: 127.0.0.1",
            "te: trailers",
        ] {
            assert!(seen.contains(line), "{line:?} missing from {seen}");
        }
        assert!(!seen.contains("connection:"), "{seen}");

        let reply = request(h.addr, b"HEAD /bytes/100 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-length"), Some("100"));
        assert!(reply.body.is_empty());
        // No length when none was sent and no body can follow: not a false 0.
        let reply = request(h.addr, b"HEAD /stream/100 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-length"), None);
        let reply = get(h.addr, "/status/304");
        assert_eq!((reply.status, reply.header("content-length")), (304, None));
        assert_eq!(get(h.addr, "/status/204").status, 204);
        assert_eq!(get(h.addr, "/status/404").status, 404);

        // A body with a length up, answered with its length and hash.
        let body: Vec<u8> = (0..1_000_000u64).map(pattern_byte).collect();
        let mut hash = Fnv::new();
        hash.update(&body);
        let mut raw = format!(
            "POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let reply = request(h.addr, &raw);
        assert_eq!(reply.text(), format!("1000000 {:016x}", hash.finish()));

        // A chunked body with a trailer up; it and the trailer come back.
        let reply = request(
            h.addr,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
        );
        assert_eq!((reply.status, reply.text().as_str()), (200, "hello world"));
        assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
        assert_eq!(reply.trailers, vec![("x-sum".to_string(), "11".to_string())]);

        // A body without a length down, chunked to the client, its trailer last.
        let reply = get(h.addr, "/stream/4000000");
        assert_eq!(reply.body.len(), 4_000_000);
        assert!(reply.body.iter().enumerate().all(|(i, b)| *b == pattern_byte(i as u64)));
        let mut hash = Fnv::new();
        hash.update(&reply.body);
        assert_eq!(reply.trailers, vec![("x-fnv".to_string(), format!("{:016x}", hash.finish()))]);

        // An HTTP/1.0 client gets it delimited by the close.
        let reply = request(h.addr, b"GET /stream/1000 HTTP/1.0\r\n\r\n");
        assert_eq!(reply.body.len(), 1000);
        assert_eq!(reply.header("transfer-encoding"), None);

        // All of it over one connection to the backend.
        assert_eq!(h.origins[0].connections(), 1);
        let (streams, connections) = upstream_h2(&h);
        assert_eq!((streams, connections), (11, 1));
    }

    fn many_streams_share_two_backend_connections(driver) {
        let h = Harness::start_h2(driver, 1, |c| {
            c.listeners[0].protocol = ListenerProtocol::H2c;
        });
        // Two client connections of 100 streams each, all in flight together:
        // two backend connections of 100 streams (`h2_max_streams`) carry them.
        let addr = h.addr;
        let clients: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    h2_calls(addr, (0..100).map(|_| Call::get("/delay/300ms")).collect())
                })
            })
            .collect();
        for client in clients {
            let answers = client.join().unwrap();
            assert_eq!(answers.len(), 100);
            assert!(answers.iter().all(|a| a.status == 200 && a.text() == "app1"));
        }
        assert_eq!(h.origins[0].connections(), 2);
        assert_eq!(upstream_h2(&h), (200, 2));
    }

    fn a_burst_gets_as_many_connections_as_its_streams_need(driver) {
        let h = Harness::start_h2(driver, 1, |c| {
            c.listeners[0].protocol = ListenerProtocol::H2c;
            c.clusters[0].upstream.h2_max_streams = 10;
        });
        // 100 streams at once, 10 per backend connection: 10 connections, no
        // more (the requests waiting for one being opened fit in it).
        let answers = h2_calls(h.addr, (0..100).map(|_| Call::get("/delay/1s")).collect());
        assert!(answers.iter().all(|a| a.status == 200));
        assert_eq!(h.origins[0].connections(), 10);

        // A stream that outlasts `backend_response` retires its connection: the
        // backend may be gone without a word. The next request opens another.
        let h = Harness::start_h2(driver, 1, |c| {
            c.clusters[0].timeouts.backend_response = Some(std::time::Duration::from_secs(1));
        });
        assert_eq!(get(h.addr, "/").status, 200);
        assert_eq!(get(h.addr, "/delay/5s").status, 504);
        assert_eq!(get(h.addr, "/").status, 200);
        assert_eq!(h.origins[0].connections(), 2);
    }

    fn grpc_calls_pass_end_to_end(driver) {
        let h = Harness::start_h2(driver, 1, |c| {
            c.listeners[0].protocol = ListenerProtocol::H2c;
        });
        let post = |method: &str, messages: &[&[u8]]| {
            Call::post(&format!("/ringlb.test.Echo/{method}"), grpc_body(messages), false)
        };
        // 1,024 messages of 64 KiB streamed back: 64 MiB.
        let calls = vec![
            post("Unary", &[b"ping"]),
            post("ServerStream", &[b"1024:65536"]),
            post("ClientStream", &[&[1u8; 1000][..]; 100]),
            post("Bidi", &[b"one", b"two", b"three"]),
            post("Fail", &[b"x"]),
            Call::post("/grpc.health.v1.Health/Check", grpc_body(&[b""]), false),
        ];
        let mut answers = h2_calls(h.addr, calls).into_iter();

        let mut unary = answers.next().unwrap();
        assert_eq!(unary.status, 200);
        assert_eq!(unary.header("content-type"), Some("application/grpc"));
        assert_eq!(grpc_messages(&mut unary.body), vec![b"ping".to_vec()]);
        assert_eq!(grpc_status(&unary).as_deref(), Some("0"));

        let mut streamed = answers.next().unwrap();
        assert_eq!(grpc_status(&streamed).as_deref(), Some("0"));
        let messages = grpc_messages(&mut streamed.body);
        assert_eq!(messages.len(), 1024);
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(message.len(), 65536);
            assert_eq!(message[0], pattern_byte(i as u64), "message {i}");
        }
        assert!(streamed.body.is_empty(), "no partial message left");

        let mut client_stream = answers.next().unwrap();
        assert_eq!(grpc_messages(&mut client_stream.body), vec![b"100:100000".to_vec()]);
        assert_eq!(grpc_status(&client_stream).as_deref(), Some("0"));

        let mut bidi = answers.next().unwrap();
        assert_eq!(
            grpc_messages(&mut bidi.body),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(grpc_status(&bidi).as_deref(), Some("0"));

        // Trailers-only: the status in the HEADERS that end the stream.
        let failed = answers.next().unwrap();
        assert_eq!(failed.status, 200);
        assert!(failed.head_ended, "a trailers-only response stays one");
        assert_eq!(failed.header("grpc-status"), Some("13"));
        assert_eq!(failed.header("grpc-message"), Some("boom"));
        assert!(failed.body.is_empty());

        let mut health = answers.next().unwrap();
        assert_eq!(grpc_messages(&mut health.body), vec![vec![0x08, 0x01]]);
        assert_eq!(h.origins[0].connections(), 1);
    }

    fn a_bidirectional_stream_talks_turn_by_turn(driver) {
        let h = Harness::start_h2(driver, 1, |c| {
            c.listeners[0].protocol = ListenerProtocol::H2c;
        });
        let addr = h.addr;
        // Each message waits for the echo of the one before: the request body
        // and the response must flow at once through the proxy.
        let echoes = ringlb::shard::run_on(
            ringlb::shard::Driver::Epoll,
            bounded(async move {
                let (sender, _driving) = h2c_connect(addr).await;
                let mut sender = sender.ready().await.unwrap();
                let request = http::Request::post("http://test.example/ringlb.test.Echo/Bidi")
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let (response, mut send) = sender.send_request(request, false).unwrap();
                send.send_data(grpc_message(b"turn 0").into(), false).unwrap();
                let mut recv = response.await.unwrap().into_body();
                let mut echoes = Vec::new();
                let mut pending = Vec::new();
                for turn in 1..=5 {
                    while grpc_messages(&mut pending).pop().map(|m| echoes.push(m)).is_none() {
                        let data = recv.data().await.expect("an echo").unwrap();
                        let _ = recv.flow_control().release_capacity(data.len());
                        pending.extend_from_slice(&data);
                    }
                    if turn < 5 {
                        let message = format!("turn {turn}");
                        send.send_data(grpc_message(message.as_bytes()).into(), false).unwrap();
                    }
                }
                send.send_data(bytes::Bytes::new(), true).unwrap();
                while let Some(data) = recv.data().await {
                    assert!(data.unwrap().is_empty(), "nothing after the last echo");
                }
                let trailers = recv.trailers().await.unwrap().expect("trailers");
                assert_eq!(trailers.get("grpc-status").unwrap(), "0");
                echoes
            }),
        )
        .unwrap();
        let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("turn {i}").into_bytes()).collect();
        assert_eq!(echoes, expected);
    }

    fn grpc_health_checks_follow_the_serving_status(driver) {
        use ringlb::config::CheckType;
        let checked = |service: &str, start_up: bool| {
            let service = service.to_string();
            Harness::start_h2(driver, 1, move |c| {
                let hc = &mut c.clusters[0].health_check;
                hc.kind = CheckType::Grpc;
                hc.service = service;
                hc.start_up = start_up;
                hc.healthy_threshold = 1;
                hc.unhealthy_threshold = 1;
                hc.interval = std::time::Duration::from_millis(100);
            })
        };
        // SERVING: a backend that starts down comes up.
        let h = checked("", false);
        wait_until("the backend to come up", || h.backend("app1").healthy);
        // The shard hears of it a moment later.
        wait_until("a request to be served", || get(h.addr, "/").status == 200);
        // NOT_SERVING, and a service the backend does not know (a trailers-only
        // NOT_FOUND): a backend that starts up goes down.
        for service in ["down", "missing"] {
            let h = checked(service, true);
            wait_until("the backend to go down", || !h.backend("app1").healthy);
            wait_until("requests to find no backend", || get(h.addr, "/").status == 503);
        }
    }

    fn a_refused_stream_goes_again_whatever_the_method(driver) {
        let h = Harness::start_h2(driver, 1, |_| {});
        // REFUSED_STREAM: the backend did nothing with it, so even a POST is
        // sent again (on a new connection).
        let reply = request(
            h.addr,
            b"POST /refuse-once HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
        );
        assert_eq!((reply.status, reply.text().as_str()), (200, "served"));
        assert_eq!(h.origins[0].requests(), 2);
        assert_eq!(upstream_h2(&h).0, 2);
    }

    fn a_backend_goaway_under_load_loses_no_request(driver) {
        let h = Harness::start_h2(driver, 1, |_| {});
        let addr = h.addr;
        let failures = Arc::new(AtomicUsize::new(0));
        // Four keep-alive clients, while a fifth keeps asking the backend to
        // say GOAWAY: streams it did not take are sent again on a new connection.
        let clients: Vec<_> = (0..5)
            .map(|i| {
                let failures = Arc::clone(&failures);
                std::thread::spawn(move || {
                    let path = if i == 4 { "/goaway" } else { "/" };
                    let mut s = connect(addr);
                    let mut pending = Vec::new();
                    for _ in 0..100 {
                        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                            .unwrap();
                        let reply = read_reply(&mut s, &mut pending, false);
                        if reply.status != 200 || reply.text() != "app1" {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        // Every /goaway closed a connection: new ones were opened for the rest.
        assert!(h.origins[0].connections() > 50, "{}", h.origins[0].connections());
        // Each request reached the backend once; the refused streams went again.
        assert_eq!(h.origins[0].requests(), 500);
        assert!(upstream_h2(&h).0 >= 500);
    }

    fn a_reset_stream_is_a_502_and_a_cut_body_a_reset(driver) {
        let h = Harness::start_h2(driver, 1, |c| {
            c.clusters[0].retry.max_retries = 0;
        });
        let reply = get(h.addr, "/reset");
        assert_eq!(reply.status, 502);
        let from_backend = |h: &Harness| {
            let internal = ringlb::observe::h2::H2_REASONS.iter().position(|r| *r == "internal_error").unwrap();
            h.stats().h2.resets[ringlb::observe::h2::ResetWay::FromBackend as usize][internal]
        };
        assert_eq!(from_backend(&h), 1);
        assert_eq!(h.origins[0].connections(), 1, "a stream reset keeps the connection");
        // The connection serves on.
        assert_eq!(get(h.addr, "/").status, 200);
        assert_eq!(h.origins[0].connections(), 1);

        // Reset mid-body: the client gets what came, then its connection cut,
        // never a FIN that would pass for a whole body.
        let mut s = connect(h.addr);
        s.write_all(b"GET /reset-after/1000 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let ended = loop {
            match s.read(&mut buf) {
                Ok(0) => break "fin",
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
                Err(e) => panic!("{e}"),
            }
        };
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("Content-Length: 2000"), "{text}");
        assert_eq!(ended, "reset");
        assert_eq!(from_backend(&h), 2);
    }
}

/// A backend that stops reading a streamed upload: the client's body read and
/// the wait for room are bounded, and what the backend did answer reaches it.
#[test]
fn a_backend_that_answers_before_the_body_is_in_is_heard() {
    let h = Harness::start_h2(ringlb::shard::Driver::Epoll, 1, |_| {});
    // /status/413 answers at once without reading: the upload (no length
    // known, so streamed) is cut, and the 413 is what the client gets.
    let mut s = connect(h.addr);
    s.write_all(b"POST /status/413 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let piece = format!("{:x}\r\n{}\r\n", 60_000, "x".repeat(60_000));
    let mut pending = Vec::new();
    let mut status = 0;
    for _ in 0..20 {
        if s.write_all(piece.as_bytes()).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    pending.extend_from_slice(&rest);
    if !pending.is_empty() {
        status = read_reply(&mut &pending[..], &mut Vec::new(), false).status;
    }
    assert_eq!(status, 413);
    assert_eq!(h.stats().early_responses, 1);
}

/// A real gRPC client (grpcio's C core, `scripts/grpc-smoke.py`) through an
/// h2c listener to the HTTP/2 origin's echo service: unary, both streaming
/// directions, a turn-by-turn bidirectional stream, an error status and a
/// health check. Skipped when Debian's python3-grpcio is missing (CI installs it).
#[test]
fn a_grpc_client_calls_through_the_proxy() {
    let python = "/usr/bin/python3";
    let has_grpc = std::process::Command::new(python)
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !has_grpc {
        eprintln!("python3-grpcio is not installed: skipped (CI installs it)");
        return;
    }
    let h = Harness::start_h2(ringlb::shard::Driver::Epoll, 1, |c| {
        c.listeners[0].protocol = ListenerProtocol::H2c;
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/grpc-smoke.py");
    let out = std::process::Command::new("timeout")
        .args(["60", python, script, &h.addr.to_string()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for call in [
        "unary",
        "server streaming",
        "client streaming",
        "bidirectional streaming",
        "error status",
        "health check",
    ] {
        assert!(printed.contains(&format!("{call} ok")), "{printed}");
    }
}
