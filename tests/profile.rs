//! `GET /debug/profile` taking real profiles of a `ringlb` child process under
//! load: folded stacks and a flame graph that parse and name ringlb's own
//! functions, one profile at a time, and `admin.profiling` switched off by a
//! reload. A child process, because the sampler's `SIGPROF` is process-wide.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ringlb::shard::Driver;
use support::process::*;
use support::*;

/// Keep-alive requests through the proxy on one connection until `stop`.
/// Returns how many were answered.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut s = connect(addr);
        let mut pending = Vec::new();
        let mut done = 0;
        while !stop.load(Ordering::Relaxed) {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
            done += 1;
        }
        done
    })
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
    assert!(proxy.log_contains("profiling every thread for 1 s at 99 Hz"));
    assert!(proxy.log_contains("profile taken: "));

    let svg = get(admin, "/debug/profile?seconds=1");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(svg.status, 200, "{}", svg.text());
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let names = svg_titles(&svg.body);
    assert!(
        names.iter().any(|t| t.starts_with("ringlb::")),
        "no ringlb function in the flame graph: {names:?}"
    );
    assert!(loader.join().unwrap() > 0);
    // The proxy kept serving: profiling is not on the request path.
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
