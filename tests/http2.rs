//! HTTP/2 with prior knowledge (`protocol = "h2c"`) through the real proxy to
//! HTTP/1.1 origins, with the `h2` crate's client (and curl when installed):
//! methods, bodies both ways with and without a length, trailers, interim
//! responses, many streams on one connection spread over backends, errors as
//! statuses or resets, retries, and the idle GOAWAY.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::IntoPollIo;
use ringlb::config::{ListenerProtocol, Strategy};
use ringlb::observe::h2::ResetWay;
use ringlb::shard::{run_on, Driver};
use ringlb::testkit::origin::{pattern_byte, Fnv};
use support::h2client::*;
use support::*;

/// Runs curl with `args` and returns what it printed (headers, then body), or
/// `None` when curl is not installed (CI installs it). Fails the test if curl
/// fails.
fn curl(args: &[&str]) -> Option<String> {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed: skipped (CI installs it)");
        return None;
    }
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "--max-time", "15"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}

/// A proxy with an `h2c` listener `h2` routing everything to cluster `web` of
/// origins named `names`.
fn start(
    driver: Driver,
    names: &[&str],
    tune: impl FnOnce(&mut ringlb::config::Config),
) -> Harness {
    Harness::start_full(driver, names, |c, origins| {
        let mut l = listener("h2");
        l.protocol = ListenerProtocol::H2c;
        c.listeners.push(l);
        c.routes.push(route("all", "h2", "web"));
        let backends: Vec<(String, SocketAddr)> = names
            .iter()
            .zip(origins)
            .map(|(n, o)| (n.to_string(), o.addr()))
            .collect();
        let named: Vec<(&str, SocketAddr)> =
            backends.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        c.clusters.push(cluster("web", &named));
        tune(c);
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern_byte).collect()
}

fn fnv(bytes: &[u8]) -> String {
    let mut hash = Fnv::new();
    hash.update(bytes);
    format!("{:016x}", hash.finish())
}

both_drivers! {
    fn get_head_and_post_with_and_without_a_length(driver) {
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");

        let got = one(addr, Call::get("/"));
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "app1\n");
        assert_eq!(got.header("x-origin"), Some("app1"));
        // Connection-specific fields never cross to HTTP/2.
        assert!(got.header("connection").is_none());

        let head = one(addr, Call { method: "HEAD", ..Call::get("/bytes/1000") });
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some("1000"));
        assert!(head.body.is_empty());

        // With a length: streamed (a POST is not held for retries) and echoed.
        let body = pattern(100 * 1024);
        let echoed = one(addr, Call::post("/echo", body.clone(), true));
        assert_eq!(echoed.status, 200);
        assert_eq!(echoed.body, body);

        // Without a length: streamed to the origin chunked, 4 MiB over many
        // windows.
        let big = pattern(4 * 1024 * 1024);
        let sunk = one(addr, Call::post("/sink", big.clone(), false));
        assert_eq!(sunk.status, 200);
        assert_eq!(sunk.text(), format!("{} {}\n", big.len(), fnv(&big)));

        // The origin sees HTTP/1.1 with the client's authority as Host.
        let seen = one(addr, Call::get("/headers")).text().to_ascii_lowercase();
        assert!(seen.starts_with("get /headers http/1.1\r\n"), "{seen}");
        assert!(seen.contains("\r\nhost: test.example\r\n"), "{seen}");
        assert!(seen.contains("\r\nx-forwarded-proto: http\r\n"), "{seen}");

        let stats = h.stats();
        assert_eq!(stats.requests, 5);
        // One connection per call.
        assert_eq!(stats.h2.connections, 5);
        assert_eq!(stats.h2.streams, 5);
        let json: serde_json::Value =
            serde_json::from_str(&get(h.server().admin_addr(), "/stats").text()).unwrap();
        assert_eq!(json["http2"]["streams"], 5, "{json}");
        let metrics = get(h.server().admin_addr(), "/metrics").text();
        assert!(metrics.contains("\nringlb_h2_streams_total 5\n"), "{metrics}");
    }

    fn large_responses_flow_within_the_windows(driver) {
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");
        // 32 MiB with a length, and 8 MiB chunked with its trailer, at once.
        let answers = send_all(addr, vec![
            Call::get(&format!("/bytes/{}", 32 * 1024 * 1024)),
            Call::get(&format!("/chunked/{}", 8 * 1024 * 1024)),
        ]);
        let sized = answers[0].as_ref().unwrap();
        assert_eq!(sized.status, 200);
        assert_eq!(sized.body, pattern(32 * 1024 * 1024));
        let chunked = answers[1].as_ref().unwrap();
        assert_eq!(chunked.status, 200);
        assert_eq!(chunked.body.len(), 8 * 1024 * 1024);
        assert!(chunked.header("transfer-encoding").is_none());
        let trailers = chunked.trailers.as_ref().expect("the origin's trailer");
        assert_eq!(trailers.get("x-origin-trailer").unwrap(), "done");
    }

    fn a_hundred_streams_at_once_spread_over_the_backends(driver) {
        let h = start(driver, &["app1", "app2", "app3"], |c| {
            c.clusters[0].balancer.strategy = Strategy::RoundRobin;
        });
        let addr = h.listener_addr("h2");
        let calls = (0..100).map(|i| Call::get(&format!("/bytes/{}", 1000 + i))).collect();
        let answers = send_all(addr, calls);
        let mut served = std::collections::HashMap::new();
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer.unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body.len(), 1000 + i);
            *served.entry(answer.header("x-origin").unwrap().to_string()).or_insert(0) += 1;
        }
        assert_eq!(served.len(), 3, "{served:?}");
        assert!(served.values().all(|&n| n >= 30), "{served:?}");
    }

    fn errors_are_statuses_and_interim_responses_pass(driver) {
        let dead = closed_port();
        let h = start(driver, &["app1"], |c| {
            // A second cluster whose only backend refuses connections.
            c.clusters.push(cluster("dead", &[("gone", dead)]));
            let mut r = route("dead", "h2", "dead");
            r.path = Some(ringlb::config::PathRule::Prefix("/dead".into()));
            c.routes.insert(0, r);
        });
        let addr = h.listener_addr("h2");
        assert_eq!(one(addr, Call::get("/status/503")).status, 503);
        assert_eq!(one(addr, Call::get("/status/404")).status, 404);
        let refused = one(addr, Call::get("/dead/x"));
        assert_eq!(refused.status, 502);
        assert!(refused.text().contains("502"), "{}", refused.text());
        let interim = one(addr, Call::get("/interim"));
        assert_eq!(interim.interim, vec![103]);
        assert_eq!(interim.status, 200);
        assert_eq!(interim.text(), "app1\n");
        // No body, and a body ended by the backend's close: both end the stream.
        let empty = one(addr, Call::get("/status/204"));
        assert_eq!((empty.status, empty.body.len()), (204, 0));
        let closed = one(addr, Call::get("/close/5000"));
        assert_eq!((closed.status, closed.body), (200, pattern(5000)));
        // A backend that resets mid-body: the stream is reset, not ended.
        let cut = send_all(addr, vec![Call::get("/fault/reset-after/100000")]).pop().unwrap();
        match cut {
            Err(e) => assert!(e.is_reset(), "{e}"),
            Ok(answer) => panic!("a cut body looked whole: {} bytes", answer.body.len()),
        }
        // The connection still serves.
        assert_eq!(one(addr, Call::get("/")).status, 200);
    }

    fn a_get_goes_to_another_backend_when_one_fails(driver) {
        let dead = closed_port();
        let h = start(driver, &["app1"], |c| {
            c.clusters[0].backends.push(ringlb::config::BackendConfig {
                name: "gone".into(),
                address: dead,
                weight: 1,
            });
            c.clusters[0].balancer.strategy = Strategy::RoundRobin;
        });
        let addr = h.listener_addr("h2");
        let answers = send_all(addr, (0..10).map(|_| Call::get("/")).collect());
        for answer in answers {
            assert_eq!(answer.unwrap().status, 200);
        }
        assert!(h.stats().upstream_retries >= 1);
    }
}

#[test]
fn an_idle_connection_gets_a_goaway() {
    let h = start(Driver::Epoll, &["app1"], |c| {
        // Short, but not so short that a loaded machine stalls a write past it.
        c.timeouts.idle = Duration::from_secs(1);
    });
    let addr = h.listener_addr("h2");
    let ended = run_on(
        Driver::Epoll,
        bounded(async move {
            let (sender, driving) = h2c_connect(addr).await;
            let answer = one_call(sender.clone(), Call::get("/")).await.unwrap();
            assert_eq!(answer.status, 200);
            // Nothing more: the proxy says goodbye once `timeouts.idle` passes.
            driving.await
        }),
    )
    .unwrap();
    assert!(ended.is_ok(), "a clean GOAWAY, not an error: {ended:?}");
}

#[test]
fn curl_speaks_h2c_with_prior_knowledge() {
    let h = start(Driver::Epoll, &["app1"], |_| {});
    let addr = h.listener_addr("h2");
    let Some(text) = curl(&["--http2-prior-knowledge", &format!("http://{addr}/")]) else {
        return;
    };
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("x-origin: app1"),
        "{text}"
    );
    assert!(text.ends_with("app1\n"), "{text}");
}

/// The frames in `bytes` (a server's, after its preface): (type, flags, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        if bytes.len() < 9 + len {
            break;
        }
        out.push((bytes[3], bytes[4], bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

/// The connection preface and an empty SETTINGS frame: how every raw client
/// here begins.
fn hello() -> Vec<u8> {
    use ringlb::protocol::h2::meter::{frame, PREFACE};
    [&PREFACE[..], &frame(0x4, 0, 0, &[])].concat()
}

/// The error code of the first GOAWAY among `bytes` (the frames the proxy
/// sent), if it sent one.
fn goaway_error(bytes: &[u8]) -> Option<u32> {
    frames(bytes)
        .into_iter()
        .find(|(kind, _, _)| *kind == 0x7)
        .map(|(_, _, payload)| u32::from_be_bytes(payload[4..8].try_into().unwrap()))
}

/// GOAWAY's ENHANCE_YOUR_CALM.
const ENHANCE_YOUR_CALM: u32 = 0xb;

both_drivers! {
    fn a_ping_flood_gets_goaway_enhance_your_calm(driver) {
        use ringlb::protocol::h2::meter::frame;
        use std::io::Write;
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");
        let mut s = connect(addr);
        let mut flood = hello();
        for i in 0..200u64 {
            flood.extend_from_slice(&frame(0x6, 0, 0, &i.to_be_bytes())); // PING
        }
        s.write_all(&flood).unwrap();
        let got = read_to_close(&mut s);
        assert_eq!(goaway_error(&got), Some(ENHANCE_YOUR_CALM));
        // Past the cap (50 a second), no PING is answered.
        let pongs = frames(&got).iter().filter(|(kind, flags, _)| *kind == 0x6 && flags & 1 == 1).count();
        assert!(pongs <= 51, "{pongs} pings answered");
        wait_until("the flood to be counted", || h.stats().h2.floods[0] == 1);
        // An honest connection is served meanwhile.
        assert_eq!(one(addr, Call::get("/")).status, 200);
    }

    fn every_capped_frame_kind_gets_goaway_enhance_your_calm(driver) {
        use ringlb::observe::h2::H2_FLOODS;
        use ringlb::protocol::h2::meter::{frame, Flood};
        use std::io::Write;
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");
        // A POST left open (HEADERS without END_STREAM) for the empty DATA frames.
        let post = [0x83, 0x86, 0x84, 0x01, 0x01, b'a'];
        let open_stream = frame(0x1, 0x4, 1, &post);
        let cases: Vec<(Flood, Vec<u8>)> = vec![
            (Flood::Settings, frame(0x4, 0, 0, &[]).repeat(40)),
            (Flood::Priority, (0..300u32).flat_map(|i| frame(0x2, 0, 2 * i + 101, &[0, 0, 0, 0, 16])).collect()),
            (Flood::Empty, [open_stream.clone(), frame(0x0, 0, 1, &[]).repeat(200)].concat()),
            (Flood::WindowUpdate, frame(0x8, 0, 0, &1u32.to_be_bytes()).repeat(150_000)),
            (Flood::Unknown, frame(0xfa, 0, 0, b"x").repeat(300)),
        ];
        for (flood, frames_sent) in cases {
            let index = H2_FLOODS.iter().position(|f| *f == flood).unwrap();
            let before = h.stats().h2.floods[index];
            let mut s = connect(addr);
            let mut bytes = hello();
            bytes.extend_from_slice(&frames_sent);
            // The proxy may close before it has read it all.
            let _ = s.write_all(&bytes);
            let got = read_to_close(&mut s);
            assert_eq!(goaway_error(&got), Some(ENHANCE_YOUR_CALM), "{flood:?}");
            wait_until("the flood to be counted", || h.stats().h2.floods[index] == before + 1);
        }
        assert_eq!(one(addr, Call::get("/")).status, 200);
    }
}

/// A HEADERS on stream 1 whose header block never ends: `fragments`
/// CONTINUATION frames of 16 KiB after it, each full of literal fields.
fn continuation_flood(fragments: usize) -> Vec<u8> {
    use ringlb::protocol::h2::meter::frame;
    let mut bytes = hello();
    // :method GET, :scheme http, :path /, then no END_HEADERS.
    bytes.extend_from_slice(&frame(0x1, 0x1, 1, &[0x82, 0x86, 0x84]));
    // Literal fields without indexing, new names: `x: ` and 120 bytes each.
    let field: Vec<u8> = [&[0x00, 0x01, b'x', 0x78][..], &[b'a'; 120][..]].concat();
    let block: Vec<u8> = field.repeat(16 * 1024 / field.len());
    for _ in 0..fragments {
        bytes.extend_from_slice(&frame(0x9, 0, 1, &block));
    }
    bytes
}

both_drivers! {
    fn a_continuation_flood_gets_goaway_before_it_is_read(driver) {
        use std::io::Write;
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");
        // 1,000 CONTINUATION frames (16 MiB of header block) that never end the
        // block: h2 allows a few more than `limits.max_header_bytes` needs, then
        // says GOAWAY(ENHANCE_YOUR_CALM) and closes; nothing is buffered past it.
        let mut s = connect(addr);
        let flood = continuation_flood(1000);
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || s.write_all(&flood).is_ok())
        };
        let got = read_to_close(&mut s);
        assert_eq!(goaway_error(&got), Some(ENHANCE_YOUR_CALM));
        assert!(!frames(&got).iter().any(|(kind, _, _)| *kind == 0x1), "no response to it");
        drop(s);
        assert!(!writer.join().unwrap(), "the proxy stopped reading before 16 MiB");
        assert_eq!(one(addr, Call::get("/")).status, 200);
    }
}

/// A client that grants no window (SETTINGS_INITIAL_WINDOW_SIZE 0) never takes
/// a byte of its download: the write deadline (`timeouts.idle`) resets the
/// stream, which frees its task, its backend connection and its buffers.
#[test]
fn a_stream_whose_client_grants_no_window_is_reset_after_the_idle_timeout() {
    use ringlb::protocol::h2::meter::{frame, PREFACE};
    use std::io::{Read, Write};
    let h = start(Driver::Epoll, &["app1"], |c| {
        c.timeouts.idle = Duration::from_secs(1);
    });
    let addr = h.listener_addr("h2");
    let mut s = connect(addr);
    let mut hello = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 0.
    hello.extend_from_slice(&frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    // GET /bytes/1000000 on stream 1: :method GET, :scheme http, :path literal
    // (indexed name 4), :authority literal "a" (indexed name 1).
    let mut block = vec![0x82, 0x86, 0x44, 14];
    block.extend_from_slice(b"/bytes/1000000");
    block.extend_from_slice(&[0x41, 1, b'a']);
    hello.extend_from_slice(&frame(0x1, 0x5, 1, &block));
    s.write_all(&hello).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let reset = loop {
        let all = frames(&got);
        if let Some(reset) = all.iter().find(|(kind, _, _)| *kind == 0x3) {
            break reset.clone();
        }
        let n = s.read(&mut buf).expect("a reset within the test's wait");
        assert!(n > 0, "closed before the stream was reset: {all:?}");
        got.extend_from_slice(&buf[..n]);
    };
    let all = frames(&got);
    // The response head went out, and not a byte of body (no window).
    assert!(all.iter().any(|(kind, _, _)| *kind == 0x1), "{all:?}");
    assert!(
        !all.iter().any(|(kind, _, p)| *kind == 0x0 && !p.is_empty()),
        "{all:?}"
    );
    // RST_STREAM INTERNAL_ERROR (0x2): cut short, not ended.
    assert_eq!(reset.2, vec![0, 0, 0, 2]);
    wait_until("the request to end as client_io", || {
        let at = ringlb::observe::stats::ERROR_KINDS
            .iter()
            .position(|k| *k == "client_io")
            .unwrap();
        h.stats().errors[at] == 1
    });
    let resets = h.stats().h2.resets;
    assert_eq!(
        resets[ResetWay::ToClient as usize][reason("internal_error")],
        1
    );
}

/// The index of an HTTP/2 error code's name in the reset counters.
fn reason(name: &str) -> usize {
    ringlb::observe::h2::H2_REASONS
        .iter()
        .position(|r| *r == name)
        .unwrap()
}

#[test]
fn a_client_that_ignores_its_goaway_is_closed_all_the_same() {
    use std::io::Write;
    let h = start(Driver::Epoll, &["app1"], |c| {
        // Short, but not so short that a loaded machine stalls a write past it.
        c.timeouts.idle = Duration::from_secs(1);
    });
    let addr = h.listener_addr("h2");
    let mut s = connect(addr);
    let hello = hello(); // then silence
    s.write_all(&hello).unwrap();
    // Never answers the GOAWAY's PING: the proxy closes anyway (read_to_close
    // fails the test if no EOF comes within the test's wait).
    let got = read_to_close(&mut s);
    let kinds: Vec<u8> = frames(&got).iter().map(|(kind, _, _)| *kind).collect();
    assert!(kinds.contains(&0x7), "a GOAWAY first: {kinds:?}");
    wait_until("the connection to be let go", || {
        h.stats().active_connections == 0
    });
}

both_drivers! {
    fn a_reset_stream_stops_its_exchange_at_once(driver) {
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");
        let (sent, sent_rx) = std::sync::mpsc::channel();
        let (reset, reset_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            run_on(Driver::Epoll, bounded(async move {
                let (sender, driving) = h2c_connect(addr).await;
                let mut sender = sender.ready().await.unwrap();
                let request = http::Request::builder().uri("http://test.example/hang").body(()).unwrap();
                let (response, _send) = sender.send_request(request, true).unwrap();
                sent.send(()).unwrap();
                // Until the test says so, the request waits on the origin (which
                // never answers); then the client gives up on it: RST_STREAM.
                while reset_rx.try_recv().is_err() {
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
                drop(response);
                drop(_send);
                // The connection itself stays up meanwhile.
                let answer = one_call(sender, Call::get("/")).await.unwrap();
                drop(driving);
                answer.status
            }))
            .unwrap()
        });
        sent_rx.recv_timeout(WAIT).unwrap();
        wait_until("the request to reach the origin", || h.stats().active_upstream_requests == 1);
        reset.send(()).unwrap();
        // Without the reset watch, the exchange would wait for
        // `timeouts.backend_response` (30 s), past the test's wait.
        wait_until("the exchange to stop", || h.stats().active_upstream_requests == 0);
        assert_eq!(client.join().unwrap(), 200);
        let errors = h.stats().errors;
        let client_io = ringlb::observe::stats::ERROR_KINDS.iter().position(|k| *k == "client_io").unwrap();
        assert_eq!(errors[client_io], 1);
        // Counted as the client's reset, by its code (CANCEL).
        let resets = h.stats().h2.resets;
        assert_eq!(resets[ResetWay::FromClient as usize][reason("cancel")], 1);
        assert_eq!(resets.iter().flatten().sum::<u64>(), 1);
    }
}

/// A proxy with a TLS listener `https` offering `h2` then `http/1.1`, in front of
/// `app1`; the certificate is for `example.test`.
fn start_tls(driver: Driver, dir_name: &str) -> (Harness, support::tls::TestCert) {
    let dir = support::tls::test_dir(dir_name);
    let cert = support::tls::make_cert(&dir, "example", &["example.test"]);
    let h = Harness::start_full(driver, &["app1"], |c, origins| {
        let mut l = support::tls::tls_listener("https", &[&cert], Some("example.test"));
        l.tls.as_mut().unwrap().alpn = vec!["h2".into(), "http/1.1".into()];
        c.listeners.push(l);
        c.routes.push(route("all", "https", "web"));
        c.clusters
            .push(cluster("web", &[("app1", origins[0].addr())]));
    });
    (h, cert)
}

/// `calls` at once on one HTTP/2 connection over TLS (ALPN `h2`).
fn send_all_tls(
    addr: SocketAddr,
    cert: &support::tls::TestCert,
    calls: Vec<Call>,
) -> Vec<Result<Answer, h2::Error>> {
    let config = support::tls::client_config(
        &[cert],
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &["h2"],
    );
    run_on(
        Driver::Epoll,
        bounded(async move {
            let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let name = rustls::pki_types::ServerName::try_from("example.test").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp.into_poll_io().unwrap())
                .await
                .unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            all_calls(tls, calls).await
        }),
    )
    .unwrap()
}

both_drivers! {
    fn alpn_h2_over_tls_carries_http2_and_http11_stays_http11(driver) {
        let (h, cert) = start_tls(driver, &format!("h2-alpn-{driver:?}"));
        let addr = h.listener_addr("https");
        let big = pattern(4 * 1024 * 1024);
        let answers = send_all_tls(addr, &cert, vec![
            Call::get("/headers"),
            Call::post("/sink", big.clone(), false),
            Call::get(&format!("/bytes/{}", 16 * 1024 * 1024)),
            Call::get(&format!("/chunked/{}", 100_000)),
        ]);
        let answers: Vec<Answer> = answers.into_iter().map(|a| a.expect("an answer")).collect();
        let seen = answers[0].text().to_ascii_lowercase();
        assert!(seen.contains("\r\nx-forwarded-proto: https\r\n"), "{seen}");
        assert_eq!(answers[1].text(), format!("{} {}\n", big.len(), fnv(&big)));
        assert_eq!(answers[2].body, pattern(16 * 1024 * 1024));
        assert_eq!(answers[3].body.len(), 100_000);
        assert!(answers[3].trailers.is_some());
        let stats = h.stats();
        assert_eq!((stats.h2.connections, stats.h2.streams), (1, 4));
        assert_eq!(stats.tls.full, 1);

        // A client that offers only http/1.1 gets HTTP/1.1 on the same listener.
        let config = support::tls::client_config(&[&cert], &[&rustls::version::TLS13], &["http/1.1"]);
        let mut client = support::tls::tls_connect(addr, "example.test", &config).unwrap();
        assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let reply = support::tls::tls_get(&mut client, "/");
        assert_eq!(reply.status, 200);
        assert_eq!(h.stats().h2.streams, 4);
    }
}

#[test]
fn curl_speaks_http2_over_tls() {
    let (h, cert) = start_tls(Driver::Epoll, "h2-curl");
    let port = h.listener_addr("https").port();
    let Some(text) = curl(&[
        "--http2",
        "--cacert",
        cert.cert.to_str().unwrap(),
        "--resolve",
        &format!("example.test:{port}:127.0.0.1"),
        &format!("https://example.test:{port}/"),
    ]) else {
        return;
    };
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.ends_with("app1\n"), "{text}");
}

both_drivers! {
    fn a_graceful_shutdown_lets_open_streams_finish_after_a_goaway(driver) {
        let mut h = start(driver, &["app1"], |_| {});
        let (server, ended) = goaway_while_streaming(&mut h, |h| {
            let server = h.server.take().unwrap();
            server.handle().shutdown();
            server
        });
        ended.assert_graceful();
        assert_eq!(server.wait().unfinished_connections, 0);
    }

    fn a_reload_that_removes_the_listener_lets_open_streams_finish(driver) {
        let mut h = start(driver, &["app1"], |c| {
            // Something to keep: the reload removes only the HTTP/2 listener.
            c.listeners.push(listener("web"));
            c.routes.push(route("web", "web", "web"));
        });
        let ((), ended) = goaway_while_streaming(&mut h, |h| {
            let mut config = h.config.clone();
            config.listeners.retain(|l| l.name != "h2");
            config.routes.retain(|r| r.listener != "h2");
            h.server().handle().reload(config).expect("the reload is taken");
        });
        ended.assert_graceful();
        wait_until("the connection to be let go", || h.stats().active_connections == 0);
    }

    fn rapid_reset_is_cut_off(driver) {
        use ringlb::protocol::h2::meter::frame;
        use std::io::Write;
        let h = start(driver, &["app1"], |_| {});
        let addr = h.listener_addr("h2");
        let mut s = connect(addr);
        let mut flood = hello();
        // GET /delay/1s on http://a, static-table HPACK; then RST_STREAM(CANCEL),
        // again and again on new streams (CVE-2023-44487).
        let mut block = vec![0x82, 0x86, 0x01, 0x01, b'a', 0x04, 9];
        block.extend_from_slice(b"/delay/1s");
        for i in 0..1000u32 {
            let id = 2 * i + 1;
            flood.extend_from_slice(&frame(0x1, 0x5, id, &block)); // HEADERS, END_STREAM|END_HEADERS
            flood.extend_from_slice(&frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
        }
        // The proxy may close before it has read it all.
        let _ = s.write_all(&flood);
        let got = read_to_close(&mut s);
        assert_eq!(goaway_error(&got), Some(ENHANCE_YOUR_CALM));
        // Far fewer of the 1,000 requests reached the origin.
        let stats = h.stats();
        assert!(stats.h2.streams < 200, "{} streams accepted", stats.h2.streams);
        wait_until("the streams to stop", || h.stats().active_upstream_requests == 0);
        assert_eq!(one(addr, Call::get("/")).status, 200);
    }
}

/// How a connection ended that had a stream open when its GOAWAY came.
struct Ended {
    status: u16,
    text: String,
    /// A stream opened after the GOAWAY failed (refused by the client's own h2,
    /// or reset by the proxy).
    late_refused: bool,
    /// The connection ended without an error.
    clean: bool,
}

impl Ended {
    fn assert_graceful(&self) {
        assert_eq!((self.status, self.text.as_str()), (200, "app1\n"));
        assert!(
            self.late_refused,
            "a stream opened after the GOAWAY was served"
        );
        assert!(
            self.clean,
            "the connection ended with an error instead of GOAWAY"
        );
    }
}

/// Opens an HTTP/2 connection with a 400 ms request on it, runs `goaway` once the
/// request has reached the origin, then tries one more stream and waits for the
/// connection's end.
fn goaway_while_streaming<T>(
    h: &mut Harness,
    goaway: impl FnOnce(&mut Harness) -> T,
) -> (T, Ended) {
    let addr = h.listener_addr("h2");
    let (sent, sent_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        run_on(
            Driver::Epoll,
            bounded(async move {
                let (sender, driving) = h2c_connect(addr).await;
                let slow = monoio::spawn(one_call(sender.clone(), Call::get("/delay/400ms")));
                sent.send(()).unwrap();
                let answer = slow.await.unwrap();
                let late = one_call(sender, Call::get("/")).await;
                let ended = driving.await;
                Ended {
                    status: answer.status,
                    text: answer.text(),
                    late_refused: late.is_err(),
                    clean: ended.is_ok(),
                }
            }),
        )
        .unwrap()
    });
    sent_rx.recv_timeout(WAIT).unwrap();
    wait_until("the slow request to reach the origin", || {
        h.stats().active_upstream_requests == 1
    });
    let done = goaway(h);
    (done, client.join().unwrap())
}

/// A 1 GiB upload on one stream, without a length, through a ringlb process of
/// its own, to an HTTP/1.1 origin (chunked) and to an HTTP/2 one (DATA relayed
/// beside the response): it arrives whole, and the proxy's peak memory grows by
/// a few windows, not by the body.
#[test]
fn a_gigabyte_upload_on_one_stream_passes_with_bounded_memory() {
    for upstream_h2 in [false, true] {
        gigabyte_upload(upstream_h2);
    }
}

fn gigabyte_upload(upstream_h2: bool) {
    use support::process::Proxy;
    const TOTAL: u64 = 1 << 30;
    const PIECE: usize = 16 * 1024;
    static ZEROS: [u8; PIECE] = [0; PIECE];
    let origin = if upstream_h2 {
        ringlb::testkit::h2_origin::spawn("127.0.0.1:0".parse().unwrap(), "app1", Driver::Epoll)
            .unwrap()
    } else {
        spawn_origin(Driver::Epoll, "app1")
    };
    let config = format!(
        "[server]\nshards = 1\nio = \"epoll\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"h2\"\naddress = \"127.0.0.1:0\"\nprotocol = \"h2c\"\n\
         [[routes]]\ncluster = \"web\"\n\
         [[clusters]]\nname = \"web\"\nhealth_check = {{ kind = \"none\" }}\n\
         upstream = {{ protocol = \"{}\" }}\n\
         backends = [ {{ name = \"app1\", address = \"{}\" }} ]\n",
        if upstream_h2 { "h2" } else { "http1" },
        origin.addr()
    );
    let proxy = Proxy::start(&format!("gigabyte-upload-{upstream_h2}"), &config);
    assert_eq!(one(proxy.addr, Call::get("/")).status, 200);
    let (peak_before, _) = proxy.memory_kib();
    let addr = proxy.addr;
    let answer = run_on(Driver::Epoll, async move {
        // Longer than the usual wait: a gigabyte on a loaded machine.
        monoio::time::timeout(Duration::from_secs(300), async move {
            let (sender, _driving) = h2c_connect(addr).await;
            let mut sender = sender.ready().await.unwrap();
            let request = http::Request::post("http://test.example/sink")
                .body(())
                .unwrap();
            let (response, mut send) = sender.send_request(request, false).unwrap();
            let mut sent = 0u64;
            while sent < TOTAL {
                send.reserve_capacity(PIECE);
                let room = std::future::poll_fn(|cx| send.poll_capacity(cx))
                    .await
                    .expect("the stream is open")
                    .unwrap();
                let n = room.min(PIECE).min((TOTAL - sent) as usize);
                send.send_data(bytes::Bytes::from_static(&ZEROS[..n]), false)
                    .unwrap();
                sent += n as u64;
            }
            send.send_data(bytes::Bytes::new(), true).unwrap();
            let mut body = response.await.unwrap().into_body();
            let mut text = Vec::new();
            while let Some(data) = body.data().await {
                text.extend_from_slice(&data.unwrap());
            }
            String::from_utf8(text).unwrap()
        })
        .await
        .expect("the upload finished")
    })
    .unwrap();
    assert!(answer.starts_with(&format!("{TOTAL} ")), "{answer}");
    let (peak_after, _) = proxy.memory_kib();
    let grew = peak_after.saturating_sub(peak_before);
    assert!(
        grew < 32 * 1024,
        "the proxy's peak grew by {grew} KiB for a 1 GiB upload"
    );
    eprintln!("1 GiB upload (HTTP/2 origin: {upstream_h2}): the peak RSS grew by {grew} KiB");
}

/// The access log of a ringlb process of its own: a request that came on an
/// HTTP/2 stream says `proto=h2` (HTTP/1.1 lines stay as they were).
#[test]
fn the_access_log_says_which_requests_came_over_http2() {
    use std::io::Read;
    use support::process::Proxy;
    let origin = spawn_origin(Driver::Epoll, "app1");
    let config = format!(
        "[server]\nshards = 1\nio = \"epoll\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [logging]\naccess_log = true\n\
         [[listeners]]\nname = \"h2\"\naddress = \"127.0.0.1:0\"\nprotocol = \"h2c\"\n\
         [[routes]]\ncluster = \"web\"\n\
         [[clusters]]\nname = \"web\"\nhealth_check = {{ kind = \"none\" }}\n\
         backends = [ {{ name = \"app1\", address = \"{}\" }} ]\n",
        origin.addr()
    );
    let mut proxy = Proxy::start_with("access-h2", &config, |command| {
        command.stdout(std::process::Stdio::piped());
    })
    .expect("proxy starts");
    assert_eq!(one(proxy.addr, Call::get("/x")).status, 200);
    proxy.signal(libc::SIGTERM);
    proxy.wait_exit();
    let mut out = String::new();
    proxy
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let line = out.lines().next().expect("an access log line");
    assert!(line.contains(" \"GET /x\" 200 app1 "), "{line}");
    assert!(line.ends_with(" cluster=web proto=h2"), "{line}");
}
