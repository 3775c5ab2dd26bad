//! The server's life: graceful shutdown in-process and by signal, bounded memory
//! for huge bodies, the epoll fallback when io_uring is forbidden, reloads, and
//! the command line. Subprocess tests run the real `ringlb` binary.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use ringlb::shard::Driver;
use ringlb::testkit::origin::{pattern_byte, Fnv};
use support::process::*;
use support::*;

both_drivers! {
    fn graceful_shutdown_finishes_in_flight_requests_and_closes_idle_ones(driver) {
        let mut h = Harness::start(driver, 1, |c| {
            c.timeouts.shutdown_grace = Duration::from_secs(10);
        });
        let addr = h.addr;
        // Idle keep-alive connections, each after one request.
        let mut idle: Vec<_> = (0..3)
            .map(|_| {
                let mut s = connect(addr);
                let mut pending = Vec::new();
                s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                assert_eq!(read_reply(&mut s, &mut pending, false).status, 200);
                s
            })
            .collect();
        let before = h.origins[0].connections();
        // Requests in flight: each holds its own upstream connection for 400ms.
        let in_flight: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = connect(addr);
                    let mut pending = Vec::new();
                    s.write_all(b"GET /delay/400ms HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    read_reply(&mut s, &mut pending, false)
                })
            })
            .collect();
        let origin = &h.origins[0];
        // The pooled connection serves one of them; the other seven connect.
        wait_until("requests in flight", || origin.connections() >= before + 7);
        let server = h.server.take().unwrap();
        server.handle().shutdown();
        for t in in_flight {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), Some("close"));
        }
        for s in &mut idle {
            assert!(read_to_close(s).is_empty(), "idle connection closed without a response");
        }
        assert_eq!(server.wait().unfinished_connections, 0);
        assert!(std::net::TcpStream::connect(addr).is_err(), "listener closed");
    }
}

#[test]
fn requests_still_running_at_the_end_of_the_grace_period_are_cut() {
    let mut h = Harness::start(Driver::IoUring, 1, |c| {
        c.timeouts.shutdown_grace = Duration::from_millis(300);
    });
    let addr = h.addr;
    let slow =
        std::thread::spawn(move || exchange(addr, b"GET /delay/10s HTTP/1.1\r\nHost: t\r\n\r\n"));
    let origin = &h.origins[0];
    wait_until("the slow request to reach the origin", || {
        origin.connections() == 1
    });
    let server = h.server.take().unwrap();
    // Cut, not waited for: had shutdown waited the 10 s out, the client would
    // have its response.
    assert_eq!(server.shutdown().unfinished_connections, 1);
    assert!(
        slow.join().unwrap().is_empty(),
        "the cut request got no response"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let mut proxy = Proxy::start("sigterm", &config_for(&[("app1", origin.addr())], ""));
    let addr = proxy.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(addr, "/delay/500ms")))
        .collect();
    wait_until("requests in flight", || origin.connections() >= 4);
    proxy.signal(libc::SIGTERM);
    for c in clients {
        assert_eq!(c.join().unwrap().status, 200);
    }
    assert_eq!(proxy.wait_exit(), 0);
    assert!(proxy.log_contains("shutting down gracefully"));
}

/// Streams `len` pattern bytes as a request body to `/sink` and checks what the
/// origin received.
fn upload(addr: SocketAddr, len: u64, chunked: bool) {
    upload_on(&mut connect(addr), len, chunked);
}

/// `upload` on an open connection (plain or TLS).
fn upload_on(s: &mut (impl Read + Write), len: u64, chunked: bool) {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    s.write_all(format!("POST /sink HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes())
        .unwrap();
    let mut hash = Fnv::new();
    // A whole number of pattern periods, so every piece starts the pattern afresh.
    const PIECE: u64 = 26 * 2520;
    let piece: Vec<u8> = (0..PIECE).map(pattern_byte).collect();
    let mut sent = 0u64;
    while sent < len {
        let data = &piece[..(len - sent).min(PIECE) as usize];
        hash.update(data);
        if chunked {
            s.write_all(format!("{:x}\r\n", data.len()).as_bytes())
                .unwrap();
            s.write_all(data).unwrap();
            s.write_all(b"\r\n").unwrap();
        } else {
            s.write_all(data).unwrap();
        }
        sent += data.len() as u64;
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").unwrap();
    }
    s.flush().unwrap();
    let mut pending = Vec::new();
    let r = read_reply(s, &mut pending, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("{len} {:016x}\n", hash.finish()));
}

/// Downloads `/bytes/len` and checks every byte.
fn download(addr: SocketAddr, len: u64) {
    download_on(&mut connect(addr), len);
}

/// `download` on an open connection (plain or TLS): the response must end with a
/// clean close (over TLS, a `close_notify`).
fn download_on(s: &mut (impl Read + Write), len: u64) {
    s.write_all(
        format!("GET /bytes/{len} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.flush().unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut offset = 0u64;
    let mut in_body = false;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("download: {e}"),
        };
        let mut data = &buf[..n];
        if !in_body {
            head.extend_from_slice(data);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let body_start = end + 4;
            let body = head[body_start..].to_vec();
            assert!(
                String::from_utf8_lossy(&head[..end]).contains(&format!("Content-Length: {len}"))
            );
            in_body = true;
            for &b in &body {
                assert_eq!(b, pattern_byte(offset));
                offset += 1;
            }
            data = &[];
        }
        for &b in data {
            assert_eq!(b, pattern_byte(offset), "byte {offset}");
            offset += 1;
        }
    }
    assert_eq!(offset, len);
}

#[test]
fn gigabyte_bodies_stream_both_ways_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let origin = spawn_origin(Driver::IoUring, "app1");
    let proxy = Proxy::start("bigbody", &config_for(&[("app1", origin.addr())], ""));
    // Warm up the paths, then take the peak so far as the baseline.
    upload(proxy.addr, 1 << 20, false);
    upload(proxy.addr, 1 << 20, true);
    download(proxy.addr, 1 << 20);
    let (baseline, _) = proxy.memory_kib();
    upload(proxy.addr, GIB, false);
    download(proxy.addr, GIB);
    upload(proxy.addr, GIB / 4, true);
    let (peak, _) = proxy.memory_kib();
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!("peak RSS {peak} KiB, baseline {baseline} KiB, growth {growth_mib:.2} MiB");
    // Streaming itself holds no more than its buffers; what can grow here is the
    // statistics' fixed-size histograms (about 140 KB each) being touched as the
    // first reports arrive. "A few MiB" at most.
    assert!(
        growth_mib <= 8.0,
        "RSS grew by {growth_mib:.2} MiB while streaming"
    );
}

#[test]
fn bodies_stream_both_ways_over_tls_in_bounded_memory() {
    use support::tls::*;
    const SIZE: u64 = 256 << 20;
    let dir = test_dir("lifecycle-big");
    let cert = make_cert(&dir, "big", &["big.test"]);
    let origin = spawn_origin(Driver::IoUring, "app1");
    let config = format!(
        "[server]\nshards = 1\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [ {{ cert = {:?}, key = {:?} }} ], default = \"big.test\" }}\n\
         [[routes]]\nlistener = \"https\"\ncluster = \"app\"\n\
         [[clusters]]\nname = \"app\"\nhealth_check = {{ kind = \"none\" }}\n\
         backends = [ {{ name = \"app1\", address = \"{}\" }} ]\n",
        cert.cert,
        cert.key,
        origin.addr()
    );
    let proxy = Proxy::start("bigbody-tls", &config);
    let client = client_config(&[&cert], &[&rustls::version::TLS13], &[]);
    let open = || {
        let c = tls_connect(proxy.addr, "big.test", &client).expect("handshake");
        set_timeouts(&c);
        c
    };
    // Warm up the paths, then take the peak so far as the baseline.
    upload_on(&mut open(), 1 << 20, false);
    upload_on(&mut open(), 1 << 20, true);
    download_on(&mut open(), 1 << 20);
    let (baseline, _) = proxy.memory_kib();
    upload_on(&mut open(), SIZE, false);
    download_on(&mut open(), SIZE);
    upload_on(&mut open(), SIZE / 4, true);
    let (peak, _) = proxy.memory_kib();
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    eprintln!("peak RSS {peak} KiB, baseline {baseline} KiB, growth {growth_mib:.2} MiB");
    // As in plain HTTP: buffers only, so "a few MiB" at most.
    assert!(
        growth_mib <= 8.0,
        "RSS grew by {growth_mib:.2} MiB while streaming over TLS"
    );
}

/// Opens `count` keep-alive connections at once, each with one request answered, and
/// returns them open.
fn open_keep_alive(addr: SocketAddr, count: usize) -> Vec<std::net::TcpStream> {
    (0..count)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            // The origin answers "app1\n" with a Content-Length: the response ends
            // with the body's newline after the blank line.
            while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"\n")) {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "closed before the response ended");
                got.extend_from_slice(&chunk[..n]);
            }
            s
        })
        .collect()
}

#[test]
fn memory_freed_after_a_burst_of_connections_goes_back_to_the_kernel() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let proxy = Proxy::start("release", &config_for(&[("app1", origin.addr())], ""));
    // Warm up: the statistics touch their histograms on the first reports, which
    // would otherwise count as growth. Measured once the control thread has merged
    // a report with the warm-up's requests (on a loaded machine the first report
    // may come after the burst, and its pages never go back).
    drop(open_keep_alive(proxy.addr, 50));
    let admin = admin_addr(&proxy);
    wait_until("the warm-up to be reported", || {
        let stats: serde_json::Value =
            serde_json::from_str(&get(admin, "/stats").text()).unwrap_or_default();
        stats["totals"]["requests"].as_u64().unwrap_or(0) >= 50
    });
    let (_, before) = proxy.memory_kib();
    // 1,000 connections opened at once are all busy for a moment, each with its
    // buffers (about 5 KB), then park and hold a few hundred bytes. (The burst is
    // large next to what statistics touch meanwhile: the control thread merges
    // each request's latency into several histograms, for the shard, the backend
    // and its cluster, and those pages stay.)
    let burst = open_keep_alive(proxy.addr, 1000);
    let (_, during) = proxy.memory_kib();
    drop(burst);
    let grown = during.saturating_sub(before);
    eprintln!("RSS {before} KiB before, {during} KiB with 1000 connections open");
    assert!(grown >= 2048, "the burst grew RSS by only {grown} KiB");
    // Once freed for mimalloc's purge delay (1 s), the shard's next tick returns it:
    // at least half the growth (the rest is mostly statistics touched meanwhile).
    wait_until("RSS to come back down", || {
        proxy.memory_kib().1 <= during - grown / 2
    });
}

/// Caps the child's open descriptors at `limit`.
fn descriptor_limit(limit: u64) -> impl FnOnce(&mut Command) {
    move |command: &mut Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // setrlimit(2), which is async-signal-safe, on a value built on the stack.
        unsafe {
            command.pre_exec(move || {
                let cap = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &cap) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[test]
fn out_of_descriptors_it_pauses_accepts_logs_a_few_lines_and_recovers() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let config = config_for(&[("app1", origin.addr())], "");
    let proxy = Proxy::start_with("emfile", &config, descriptor_limit(64)).expect("starts");
    let accept_lines = |proxy: &Proxy| {
        let log = proxy.log.lock().unwrap();
        log.iter().filter(|l| l.contains("accept")).count()
    };
    // More idle connections than descriptors: the kernel completes them all into
    // the backlog, and ringlb's accepts fail with EMFILE once it is full.
    let flood: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(proxy.addr).unwrap())
        .collect();
    wait_until("accepts to fail", || {
        proxy.log_contains("pausing new connections")
    });
    let started = Instant::now();
    // At 10 ms a retry, that is about 100 failures before this line appears.
    wait_until("the once-a-second line", || {
        proxy.log_contains("accept still failing")
    });
    let lines = accept_lines(&proxy);
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        lines <= seconds + 3,
        "{lines} accept lines in {seconds}s: {:#?}",
        proxy.log.lock().unwrap()
    );
    // Descriptors free up: ringlb accepts again, says so once, and serves.
    drop(flood);
    wait_until("accepts to resume", || {
        proxy.log_contains("accepting again")
    });
    assert_eq!(get(proxy.addr, "/").text(), "app1\n");
    let metrics = get(admin_addr(&proxy), "/metrics").text();
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringlb_accept_errors_total "))
        .expect("the counter is exported")
        .parse()
        .unwrap();
    assert!(failures >= 2, "{failures} failed accepts counted");
}

#[test]
fn out_of_descriptors_failed_connects_do_not_open_breakers() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    // No pooling: every request opens a backend connection. One failure opens
    // the breaker, were it counted against the backend.
    let config = config_for(&[("app1", origin.addr())], "")
        + "[upstream]\nmax_idle_per_backend = 0\n[circuit_breaker]\nfailure_threshold = 1\n";
    let proxy = Proxy::start_with("emfile-get", &config, descriptor_limit(64)).expect("starts");
    // More clients than descriptors: ringlb accepts until none is left. Then each
    // sends a request. The first one read finds no descriptor for its backend
    // connection and gets a 503 and a close, which frees a descriptor for the
    // next accept, and so on until every client has its answer.
    let mut flood: Vec<_> = (0..100)
        .map(|_| {
            let s = std::net::TcpStream::connect(proxy.addr).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    wait_until("accepts to fail", || {
        proxy.log_contains("pausing new connections")
    });
    for s in &mut flood {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    let mut statuses = std::collections::BTreeMap::new();
    for s in &mut flood {
        *statuses
            .entry(read_reply(s, &mut Vec::new(), false).status)
            .or_insert(0) += 1;
    }
    drop(flood);
    let refused = statuses.get(&503).copied().unwrap_or(0);
    assert!(refused >= 1, "no connect failed: {statuses:?}");
    let metrics = get(admin_addr(&proxy), "/metrics").text();
    let local: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("ringlb_errors_total{") && l.contains("kind=\"out_of_resources\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(local, refused, "{statuses:?}");
    // Failures, none of them the backend's: its breaker is still closed, and the
    // next requests are served.
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/").text(), "app1\n");
    }
    assert!(!proxy.log_contains("breaker open"));
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let socket_path = dir.join(format!("notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);
    let manager = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    manager.set_read_timeout(Some(WAIT)).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let notify_socket = socket_path.clone();
    let mut proxy = Proxy::start_with(
        "notify",
        &config_for(&[("app1", origin.addr())], ""),
        move |command| {
            command.env("NOTIFY_SOCKET", &notify_socket);
        },
    )
    .expect("starts");
    assert!(next().starts_with("READY=1\n"));
    proxy.signal(libc::SIGHUP);
    let reloading = next();
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading}");
    assert!(next().starts_with("READY=1\n"));
    proxy.signal(libc::SIGTERM);
    assert!(next().starts_with("STOPPING=1\n"));
    assert_eq!(proxy.wait_exit(), 0);
    let _ = std::fs::remove_file(&socket_path);
}

#[test]
fn the_systemd_unit_verifies() {
    // CI installs systemd's tools (.ci/run); elsewhere the test needs them too,
    // unless they are missing on a machine that is not CI.
    let installed = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed && std::env::var_os("CI").is_none() {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
        return;
    }
    assert!(installed, "CI must install systemd-analyze");
    let unit = include_str!("../deploy/ringlb.service");
    assert!(unit.contains("Type=notify"));
    // The unit names the installed binary; verify it against the one just built.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("unit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringlb.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ringlb", env!("CARGO_BIN_EXE_ringlb")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

/// A seccomp filter that makes io_uring_setup fail with EPERM, as container
/// runtimes' default profiles do.
fn forbid_io_uring(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    const IO_URING_SETUP: u32 = 425;
    let filter = [
        // Load the syscall number.
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // io_uring_setup: fall through to EPERM; anything else: jump to ALLOW.
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe; `filter` was built before the fork and
    // outlives both calls.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn falls_back_to_epoll_when_io_uring_is_forbidden() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let backends = [("app1", origin.addr())];
    let mut proxy = Proxy::start_with(
        "fallback",
        &config_for(&backends, "io = \"auto\""),
        forbid_io_uring,
    )
    .expect("starts on epoll");
    assert!(
        proxy.log_contains("io_uring unavailable"),
        "{:?}",
        proxy.log.lock().unwrap()
    );
    assert!(proxy.log_contains("(epoll)"));
    assert_eq!(get(proxy.addr, "/").text(), "app1\n");
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(), 0);

    // Forcing io_uring where it is forbidden is a clear start-up error.
    let forced = Proxy::start_with(
        "forced",
        &config_for(&backends, "io = \"io_uring\""),
        forbid_io_uring,
    );
    let (code, log) = forced.err().expect("refuses to start");
    assert_eq!(code, 1);
    assert!(
        log.iter().any(|l| l.contains("io_uring is not available")),
        "{log:?}"
    );
}

#[test]
fn sighup_reloads_backends_and_refuses_a_bad_file() {
    let app1 = spawn_origin(Driver::Epoll, "app1");
    let app2 = spawn_origin(Driver::Epoll, "app2");
    let proxy = Proxy::start("reload", &config_for(&[("app1", app1.addr())], ""));
    assert_eq!(get(proxy.addr, "/").text(), "app1\n");
    std::fs::write(&proxy.config, config_for(&[("app2", app2.addr())], "")).unwrap();
    proxy.signal(libc::SIGHUP);
    wait_until("app2 to serve", || get(proxy.addr, "/").text() == "app2\n");
    std::fs::write(&proxy.config, "[server]\nlisten = 5\n").unwrap();
    proxy.signal(libc::SIGHUP);
    wait_until("the refusal to be logged", || {
        proxy.log_contains("reload refused")
    });
    assert_eq!(get(proxy.addr, "/").text(), "app2\n");
}

/// Restricts the child to CPU 0, like `taskset -c 0`.
fn only_cpu_zero(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // sched_setaffinity(2) on a cpu_set_t on its own stack.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn shards_follow_the_allowed_cpu_set() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let config = config_for(&[("app1", origin.addr())], "").replace("shards = 1\n", "shards = 0\n");
    let proxy = Proxy::start_with("affinity", &config, only_cpu_zero).expect("starts");
    assert!(
        proxy.log_contains("with 1 shard(s)"),
        "{:?}",
        proxy.log.lock().unwrap()
    );
    assert_eq!(get(proxy.addr, "/").status, 200);
}

/// `THP_enabled` from the process's /proc status: 0 once it turned them off.
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled (Linux 5.0 and later)")
        .trim()
        .to_string()
}

/// Lets the child use transparent huge pages whatever this test process did (the
/// flag is inherited, and in-process tests in this binary may have set it).
fn allow_thp(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // one prctl(2) call with integer arguments.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn transparent_huge_pages_are_off_unless_the_config_allows_them() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let backends = [("app1", origin.addr())];
    let default =
        Proxy::start_with("thp-default", &config_for(&backends, ""), allow_thp).expect("starts");
    assert_eq!(thp_enabled(default.child.id()), "0");
    assert_eq!(get(default.addr, "/").status, 200);
    let allowed = Proxy::start_with(
        "thp-allowed",
        &config_for(&backends, "transparent_huge_pages = true"),
        allow_thp,
    )
    .expect("starts");
    assert_eq!(thp_enabled(allowed.child.id()), "1");
    assert_eq!(get(allowed.addr, "/").status, 200);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let config = format!(
        "{}[logging]\nformat = \"json\"\n",
        config_for(&[("app1", origin.addr())], "")
    );
    let mut proxy = Proxy::start("json", &config);
    proxy.signal(libc::SIGTERM);
    assert_eq!(proxy.wait_exit(), 0);
    std::thread::sleep(Duration::from_millis(50));
    let lines = proxy.log.lock().unwrap().clone();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        assert!(
            line.starts_with("{\"timestamp\":\"")
                && line.contains("\"level\":\"")
                && line.ends_with("\"}"),
            "{line}"
        );
    }
}

/// Everything a child printed on stdout (read to EOF).
fn stdout_text(child: &mut Child) -> String {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// Starts `ringlb ARGS` with stdout and stderr piped, killed if the test fails.
fn spawn_ringlb<I, S>(args: I) -> KillOnDrop
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_ringlb"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Kills the child if the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_serves_three_origins_and_stops_on_ctrl_c() {
    let mut guard = spawn_ringlb(["demo"]);
    let child = &mut guard.0;
    let (_log, rx) = watch_stderr(child);
    rx.recv_timeout(WAIT).expect("demo starts");
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    // Each shard keeps its own round-robin turn, so over 3 × shards requests every
    // origin answers whichever shards the kernel picked.
    let names: std::collections::BTreeSet<String> =
        (0..12).map(|_| get(addr, "/").text()).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["app1\n", "app2\n", "app3\n"]
    );
    assert_eq!(
        get("127.0.0.1:9900".parse().unwrap(), "/healthz").status,
        200
    );
    // SAFETY: kill() with a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(wait_exit(child).success());
    let out = stdout_text(child);
    assert!(out.contains("curl http://127.0.0.1:8080/"), "{out}");
}

/// Runs `ringlb run` with the access log on, sends three requests, stops it,
/// and returns what it printed on stdout.
fn access_log_lines(format: &str) -> Vec<String> {
    let origin = spawn_origin(Driver::Epoll, "app1");
    let config = format!(
        "{}[logging]\nformat = \"{format}\"\naccess_log = true\n",
        config_for(&[("app1", origin.addr())], "")
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("access-{format}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut guard = spawn_ringlb([
        std::ffi::OsStr::new("run"),
        "--config".as_ref(),
        path.as_os_str(),
    ]);
    let child = &mut guard.0;
    let (_log, rx) = watch_stderr(child);
    let addr: SocketAddr = rx.recv_timeout(WAIT).expect("starts").parse().unwrap();
    assert_eq!(get(addr, "/hello?x=1").status, 200);
    assert_eq!(get(addr, "/status/404").status, 404);
    let r = request(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(r.body, b"hello");
    // SAFETY: kill() with a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = stdout_text(child);
    out.lines().map(str::to_string).collect()
}

#[test]
fn access_log_writes_one_text_line_per_request() {
    let lines = access_log_lines("text");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains(" \"GET /hello?x=1\" 200 app1 attempts=1 in="),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" \"GET /status/404\" 404 app1 "),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains(" \"POST /echo\" 200 app1 "),
        "{}",
        lines[2]
    );
    assert!(lines.iter().all(|l| l.contains(" duration_ms=")));
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with(" listener=default route=default cluster=default")),
        "{lines:?}"
    );
}

#[test]
fn access_log_writes_json_lines() {
    let lines = access_log_lines("json");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/hello?x=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["backend"], "app1");
    assert_eq!(first["attempts"], 1);
    assert!(first["bytes_in"].as_u64().unwrap() > 0 && first["bytes_out"].as_u64().unwrap() > 0);
    assert!(first["duration_ms"].as_f64().is_some());
    assert_eq!(
        (&first["listener"], &first["route"], &first["cluster"]),
        (
            &serde_json::json!("default"),
            &serde_json::json!("default"),
            &serde_json::json!("default")
        )
    );
    let third: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(third["method"], "POST");
}

fn ringlb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .args(args)
        .env_remove("RINGLB_BALANCER_STRATEGY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_loads_certificates_relative_to_the_file_and_names_bad_ones() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check-tls");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    for name in ["a", "b"] {
        let certified =
            rcgen::generate_simple_self_signed(vec![format!("{name}.example")]).unwrap();
        std::fs::write(dir.join(format!("certs/{name}.pem")), certified.cert.pem()).unwrap();
        std::fs::write(
            dir.join(format!("certs/{name}.key")),
            certified.signing_key.serialize_pem(),
        )
        .unwrap();
    }
    let config = |key: &str| {
        format!(
            "[[listeners]]\nname = \"https\"\naddress = \"127.0.0.1:8443\"\n\
             tls = {{ certificates = [ {{ cert = \"certs/a.pem\", key = \"certs/{key}\" }} ], default = \"a.example\" }}\n\
             [[routes]]\ncluster = \"api\"\n\
             [[clusters]]\nname = \"api\"\n\
             backends = [ {{ name = \"a1\", address = \"127.0.0.1:9001\" }} ]\n"
        )
    };
    let good = dir.join("good.toml");
    std::fs::write(&good, config("a.key")).unwrap();
    let (code, out, err) = ringlb(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tls           1 certificate(s), default a.example"),
        "{out}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, config("b.key")).unwrap();
    let (code, _, err) = ringlb(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml: listeners[0].tls.certificates[0]: ")
            && err.contains("certs/b.key does not match the certificate in"),
        "{err}"
    );
}

#[test]
fn check_accepts_the_example_config_and_names_bad_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringlb.toml");
    let (code, out, err) = ringlb(&["check", "--config", example]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("app1"), "{out}");

    let bad = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\n[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 0\n",
    )
    .unwrap();
    let (code, _, err) = ringlb(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml: server.listen:"), "{err}");
    assert!(err.contains("bad.toml: backends[0].weight:"), "{err}");
}

#[test]
fn check_lists_every_error_of_a_full_form_file_and_its_warnings() {
    let bad = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-full.toml");
    std::fs::write(
        &bad,
        "[[listeners]]\nname = \"web\"\naddress = 8080\n\
         [[routes]]\nlistener = \"web\"\ncluster = \"nope\"\nmethod = \"GET\"\n\
         [[clusters]]\nname = \"api\"\nstrategy = \"fastest\"\n\
         backends = [ { name = \"a\", address = \"127.0.0.1:1\", weight = 0 } ]\n",
    )
    .unwrap();
    let (code, _, err) = ringlb(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    for key in [
        "listeners[0].address",
        "routes[0].method",
        "routes[0].cluster",
        "clusters[0].strategy",
        "clusters[0].backends[0].weight",
    ] {
        assert!(
            err.contains(&format!("bad-full.toml: {key}: ")),
            "{key}:\n{err}"
        );
    }
    assert_eq!(err.lines().count(), 5, "{err}");

    let warned = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("warned.toml");
    std::fs::write(
        &warned,
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\n\
         [[routes]]\ncluster = \"api\"\n[[routes]]\nname = \"twin\"\ncluster = \"api\"\n\
         [[clusters]]\nname = \"api\"\nbackends = [ { name = \"a\", address = \"127.0.0.1:1\" } ]\n",
    )
    .unwrap();
    let (code, out, err) = ringlb(&["check", "--config", warned.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: ") && out.contains("routes[1]") && out.contains("can never match"),
        "{out}"
    );
}

#[test]
fn environment_overrides_a_single_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringlb.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_ringlb"))
        .args(["check", "--config", example])
        .env("RINGLB_BALANCER_STRATEGY", "least-conn")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("least-conn"));
}

#[test]
fn version_and_help() {
    let (code, out, _) = ringlb(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("ringlb {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = ringlb(&["--help"]);
    assert_eq!(code, 0);
    // Every command on one line of its own, then the origin's routes.
    for command in [
        "run -c FILE ",
        "check -c FILE ",
        "demo [--tls] ",
        "origin --listen ADDR ",
        "help, --help ",
        "version, --version ",
    ] {
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with(&format!("  {command}")))
                .count(),
            1,
            "{command}: {out}"
        );
    }
    assert!(out.contains("  /delay/DUR"), "{out}");
    // The example configuration's check fits a screen.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ringlb.toml");
    let (code, out, _) = ringlb(&["check", "--config", example]);
    assert_eq!(code, 0);
    assert!(out.lines().count() <= 24, "{out}");
    let (code, _, err) = ringlb(&["run"]);
    assert_eq!(code, 1);
    assert!(err.contains("--config"), "{err}");
}
