//! `GET /debug/profile` taking real profiles of a `ringlb` child process under
//! load: folded stacks and a flame graph that parse and name ringlb's own
//! functions, one profile at a time, and `admin.profiling` switched off by a
//! reload. A child process, because the sampler's `SIGPROF` is process-wide.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ringlb::shard::Driver;
use support::process::*;
use support::*;

/// Keep-alive requests through the proxy on one connection until `stop`.
/// Returns how many were answered, or what went wrong after how many.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut s = connect(addr);
        let mut done = 0;
        while !stop.load(Ordering::Relaxed) {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .map_err(|e| format!("write after {done} requests: {e}"))?;
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            // The origin's `/` answers a short fixed-length body: read to its end.
            loop {
                let n = s
                    .read(&mut buf)
                    .map_err(|e| format!("read after {done} requests: {e}"))?;
                if n == 0 {
                    return Err(format!("closed after {done} requests"));
                }
                head.extend_from_slice(&buf[..n]);
                if complete_response(&head) {
                    break;
                }
            }
            if !head.starts_with(b"HTTP/1.1 200 ") {
                return Err(format!(
                    "after {done} requests: {}",
                    String::from_utf8_lossy(&head)
                ));
            }
            done += 1;
        }
        Ok(done)
    })
}

/// Whether `bytes` hold a whole response with a `Content-Length` body.
fn complete_response(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("the origin's answers have a Content-Length");
    bytes.len() >= end + 4 + length
}

fn profiling_config(origin: SocketAddr, on: bool) -> String {
    config_for(&[("app1", origin)], "")
        .replace("shards = 1\n", "shards = 2\n")
        .replace(
            "[admin]\nlisten = \"127.0.0.1:0\"\n",
            &format!("[admin]\nlisten = \"127.0.0.1:0\"\nprofiling = {on}\n"),
        )
}

/// Checks folded stacks line by line (`thread;outer;...;inner COUNT`) and
/// returns the samples per line's stack.
fn parse_folded(text: &str) -> Vec<(Vec<&str>, u64)> {
    text.lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').expect("STACK COUNT");
            let count: u64 = count.parse().expect("a sample count");
            assert!(count > 0, "{line}");
            let frames: Vec<&str> = stack.split(';').collect();
            assert!(frames.len() >= 2, "a thread and a frame: {line}");
            (frames, count)
        })
        .collect()
}

#[test]
fn a_profile_under_load_names_ringlb_functions() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let proxy = Proxy::start("profile", &profiling_config(origin.addr(), true));
    let admin = admin_addr(&proxy);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(proxy.addr, Arc::clone(&stop));

    let folded = get(admin, "/debug/profile?seconds=1&format=folded");
    assert_eq!(folded.status, 200, "{}", folded.text());
    assert_eq!(
        folded.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = folded.text();
    let stacks = parse_folded(&text);
    let on_a_shard: Vec<_> = stacks
        .iter()
        .filter(|(frames, _)| frames[0].starts_with("ringlb-shard-"))
        .collect();
    assert!(!on_a_shard.is_empty(), "no sample on a shard:\n{text}");
    assert!(
        on_a_shard
            .iter()
            .any(|(frames, _)| frames.iter().any(|f| f.starts_with("ringlb::"))),
        "no ringlb function on a shard:\n{text}"
    );
    // ringlb logs before it answers, but the test reads its stderr on a thread
    // of its own, which may not have got there yet.
    wait_until("the profile's log lines", || {
        proxy.log_contains("profiling every thread for 1 s at 99 Hz")
            && proxy.log_contains("profile taken: ")
    });

    let svg = get(admin, "/debug/profile?seconds=1");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(svg.status, 200, "{}", svg.text());
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let names = svg_titles(&svg.body);
    assert!(
        names.iter().any(|t| t.starts_with("ringlb::")),
        "no ringlb function in the flame graph: {names:?}"
    );
    // The proxy kept serving, unharmed by the samples its threads took.
    let served = loader.join().unwrap();
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(
        matches!(served, Ok(n) if n > 0),
        "{served:?}; ringlb said:\n{log}"
    );
    assert_eq!(get(proxy.addr, "/").status, 200);
}

/// The text of every `<title>` of a flame graph (a frame's name and its
/// samples), read with an XML parser, so that a malformed SVG fails.
fn svg_titles(svg: &[u8]) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_reader(svg);
    let mut buf = Vec::new();
    let mut titles = Vec::new();
    let mut in_title = false;
    let mut saw_svg = false;
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            quick_xml::events::Event::Start(e) => {
                saw_svg |= e.name().as_ref() == b"svg";
                in_title = e.name().as_ref() == b"title";
            }
            quick_xml::events::Event::Text(t) if in_title => {
                titles.push(t.unescape().expect("text").into_owned());
            }
            quick_xml::events::Event::End(_) => in_title = false,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    assert!(saw_svg, "an <svg> root");
    titles
}

#[test]
fn one_profile_at_a_time_and_a_reload_turns_profiling_off() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let proxy = Proxy::start("profile-once", &profiling_config(origin.addr(), true));
    let admin = admin_addr(&proxy);
    let first = std::thread::spawn(move || get(admin, "/debug/profile?seconds=2&format=folded"));
    wait_until("the first profile to start", || {
        proxy.log_contains("profiling every thread for 2 s")
    });
    let second = get(admin, "/debug/profile?seconds=1");
    assert_eq!(second.status, 409, "{}", second.text());
    // The admin listener answers meanwhile.
    assert_eq!(get(admin, "/stats").status, 200);
    assert_eq!(first.join().unwrap().status, 200);

    std::fs::write(&proxy.config, profiling_config(origin.addr(), false)).unwrap();
    proxy.signal(libc::SIGHUP);
    wait_until("the reload", || {
        proxy.log_contains("configuration reloaded")
    });
    let off = get(admin, "/debug/profile?seconds=1");
    assert_eq!(off.status, 404, "{}", off.text());
}
