//! `access_log`: one line per request (`logging.access_log = true`), on stdout.
//!
//! Owns the per-shard line buffer and the writer thread. A shard formats lines into
//! its own buffer and hands full buffers (or, every 100 ms, whatever it has) to the
//! writer over a bounded channel; when the channel is full the chunk is dropped and
//! counted, so logging never blocks a shard. Lines are text, or JSON when
//! `logging.format = "json"`.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::observe::logging::{self, escape_json};
use crate::observe::stats::RequestRecord;
use crate::observe::tunnels::TunnelRecord;

/// A shard flushes its buffer once it holds this much.
const FLUSH_BYTES: usize = 32 * 1024;
/// ...or once its oldest line is this old.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Chunks in flight to the writer.
const QUEUE: usize = 256;

/// Which listener, route, cluster and backend a request went through, by name.
#[derive(Debug, Clone, Copy)]
pub struct LogNames<'a> {
    /// The listener it came in on.
    pub listener: &'a str,
    /// The route that matched, if any.
    pub route: Option<&'a str>,
    /// That route's cluster.
    pub cluster: Option<&'a str>,
    /// The backend of its last attempt, if one was made.
    pub backend: Option<&'a str>,
    /// On a TLS listener: what its connection's handshake agreed.
    pub tls: Option<LogTls<'a>>,
    /// The request came on an HTTP/2 stream (lines say `proto=h2`; HTTP/1.1
    /// lines say nothing, as before).
    pub http2: bool,
}

/// A TLS connection's version, cipher suite and SNI, for its lines.
#[derive(Debug, Clone, Copy)]
pub struct LogTls<'a> {
    pub version: &'static str,
    pub cipher: &'static str,
    /// The name the client asked for, if it sent one.
    pub sni: Option<&'a str>,
}

impl LogNames<'_> {
    /// Appends `,"backend":..,"listener":..,"route":..,"cluster":..` (JSON strings,
    /// or `null` where there is none).
    fn write_json(&self, out: &mut String) {
        for (key, value) in [
            ("backend", self.backend),
            ("listener", Some(self.listener)),
            ("route", self.route),
            ("cluster", self.cluster),
        ] {
            let _ = write!(out, ",\"{key}\":");
            match value {
                Some(name) => {
                    out.push('"');
                    escape_json(name, out);
                    out.push('"');
                }
                None => out.push_str("null"),
            }
        }
        if self.http2 {
            out.push_str(",\"proto\":\"h2\"");
        }
        if let Some(tls) = &self.tls {
            let _ = write!(
                out,
                ",\"tls_version\":\"{}\",\"tls_cipher\":\"{}\",\"sni\":",
                tls.version, tls.cipher
            );
            match tls.sni {
                Some(sni) => {
                    out.push('"');
                    escape_json(sni, out);
                    out.push('"');
                }
                None => out.push_str("null"),
            }
        }
    }

    /// Appends ` proto=h2` for an HTTP/2 stream, and ` tls=VERSION cipher=SUITE
    /// sni=NAME` on a TLS connection (SNI is a DNS name, so it needs no quoting;
    /// `-` when the client sent none).
    fn write_text_tls(&self, out: &mut String) {
        if self.http2 {
            out.push_str(" proto=h2");
        }
        if let Some(tls) = &self.tls {
            let _ = write!(
                out,
                " tls={} cipher={} sni={}",
                tls.version,
                tls.cipher,
                tls.sni.unwrap_or("-")
            );
        }
    }
}

/// One shard's access log buffer.
#[derive(Debug)]
pub struct AccessLog {
    /// To the writer thread.
    tx: Sender<Vec<u8>>,
    /// Lines not yet handed over.
    buffer: RefCell<String>,
    /// When the buffer was last handed over.
    last_flush: Cell<Instant>,
    /// Chunks dropped because the writer fell behind.
    dropped: Cell<u64>,
    /// JSON lines instead of text.
    json: bool,
}

impl AccessLog {
    /// A buffer feeding `tx`.
    pub fn new(tx: Sender<Vec<u8>>) -> Self {
        AccessLog {
            tx,
            buffer: RefCell::new(String::with_capacity(FLUSH_BYTES + 1024)),
            last_flush: Cell::new(Instant::now()),
            dropped: Cell::new(0),
            json: logging::json(),
        }
    }

    /// Chunks dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Whether it writes JSON lines.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Appends the line for one request; `request_line` is `METHOD target`.
    pub fn write(
        &self,
        client: SocketAddr,
        request_line: &str,
        record: &RequestRecord,
        names: &LogNames<'_>,
        now: Instant,
    ) {
        let backend = names.backend;
        let (method, target) = request_line.split_once(' ').unwrap_or((request_line, ""));
        let duration_ms = now.saturating_duration_since(record.started).as_secs_f64() * 1000.0;
        {
            let mut out = self.buffer.borrow_mut();
            if self.json {
                out.push_str("{\"timestamp\":\"");
                logging::write_now(&mut out);
                let _ = write!(out, "\",\"client\":\"{client}\",\"method\":\"");
                escape_json(method, &mut out);
                out.push_str("\",\"path\":\"");
                escape_json(target, &mut out);
                let _ = write!(out, "\",\"status\":{}", record.status);
                names.write_json(&mut out);
                let _ = writeln!(
                    out,
                    ",\"attempts\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{duration_ms:.3}}}",
                    record.attempts, record.bytes_in, record.bytes_out
                );
            } else {
                logging::write_now(&mut out);
                let _ = write!(
                    out,
                    " {client} \"{method} {target}\" {} {} attempts={} in={} out={} duration_ms={duration_ms:.3} listener={} route={} cluster={}",
                    record.status,
                    backend.unwrap_or("-"),
                    record.attempts,
                    record.bytes_in,
                    record.bytes_out,
                    names.listener,
                    names.route.unwrap_or("-"),
                    names.cluster.unwrap_or("-"),
                );
                names.write_text_tls(&mut out);
                out.push('\n');
            }
        }
        if self.buffer.borrow().len() >= FLUSH_BYTES {
            self.flush(now);
        }
    }

    /// Appends the line for one finished tunnel (a TCP listener's connection, or
    /// an upgraded one): client, backend, bytes each way, duration, and how it
    /// ended.
    pub fn write_tunnel(
        &self,
        client: SocketAddr,
        record: &TunnelRecord,
        names: &LogNames<'_>,
        now: Instant,
    ) {
        let duration_ms = now.saturating_duration_since(record.started).as_secs_f64() * 1000.0;
        let end = record.error.unwrap_or(record.end.as_str());
        {
            let mut out = self.buffer.borrow_mut();
            if self.json {
                out.push_str("{\"timestamp\":\"");
                logging::write_now(&mut out);
                let _ = write!(out, "\",\"client\":\"{client}\",\"tunnel\":\"{end}\"");
                names.write_json(&mut out);
                let _ = writeln!(
                    out,
                    ",\"attempts\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{duration_ms:.3}}}",
                    record.attempts, record.bytes_up, record.bytes_down
                );
            } else {
                logging::write_now(&mut out);
                let _ = write!(
                    out,
                    " {client} tunnel {end} {} attempts={} in={} out={} duration_ms={duration_ms:.3} listener={} route={} cluster={}",
                    names.backend.unwrap_or("-"),
                    record.attempts,
                    record.bytes_up,
                    record.bytes_down,
                    names.listener,
                    names.route.unwrap_or("-"),
                    names.cluster.unwrap_or("-"),
                );
                names.write_text_tls(&mut out);
                out.push('\n');
            }
        }
        if self.buffer.borrow().len() >= FLUSH_BYTES {
            self.flush(now);
        }
    }

    /// Hands the buffer to the writer if its oldest line is `FLUSH_EVERY` old.
    pub fn flush_if_due(&self, now: Instant) {
        if !self.buffer.borrow().is_empty()
            && now.saturating_duration_since(self.last_flush.get()) >= FLUSH_EVERY
        {
            self.flush(now);
        }
    }

    /// Hands the buffer to the writer, dropping it if the writer is behind.
    pub fn flush(&self, now: Instant) {
        self.last_flush.set(now);
        let chunk = std::mem::replace(
            &mut *self.buffer.borrow_mut(),
            String::with_capacity(FLUSH_BYTES + 1024),
        );
        if chunk.is_empty() {
            return;
        }
        if self.tx.try_send(chunk.into_bytes()).is_err() {
            self.dropped.set(self.dropped.get() + 1);
        }
    }
}

/// The thread that writes access log chunks to stdout.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer; shards get clones of the returned sender.
    pub fn spawn() -> std::io::Result<(Sender<Vec<u8>>, Writer)> {
        let (tx, rx) = bounded::<Vec<u8>>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ringlb-access-log".into())
            .spawn(move || write_loop(&rx, &flag))?;
        Ok((
            tx,
            Writer {
                stop,
                thread: Some(thread),
            },
        ))
    }

    /// Writes what is queued, then stops (after the shards have flushed).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(rx: &Receiver<Vec<u8>>, stop: &AtomicBool) {
    let stdout = std::io::stdout();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(chunk) => {
                let mut out = stdout.lock();
                let _ = out.write_all(&chunk);
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(&more);
                }
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => {}
            Err(_) => {
                let mut out = stdout.lock();
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(&more);
                }
                let _ = out.flush();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::tunnels::TunnelEnd;

    #[test]
    fn a_tunnel_line_names_its_ending_bytes_and_places() {
        let (tx, rx) = bounded(4);
        let log = AccessLog {
            json: false,
            ..AccessLog::new(tx)
        };
        let started = Instant::now();
        let record = TunnelRecord {
            started,
            attempts: 2,
            bytes_up: 10,
            bytes_down: 2048,
            error: None,
            end: TunnelEnd::BackendReset,
        };
        let names = LogNames {
            listener: "pg",
            route: None,
            cluster: Some("db"),
            backend: Some("db2"),
            tls: None,
            http2: false,
        };
        let client = "192.0.2.7:5000".parse().unwrap();
        log.write_tunnel(
            client,
            &record,
            &names,
            started + Duration::from_millis(1500),
        );
        let failed = TunnelRecord {
            error: Some("connect"),
            end: TunnelEnd::Failed,
            ..record
        };
        log.write_tunnel(client, &failed, &names, started);
        log.flush(started);
        let text = String::from_utf8(rx.try_recv().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with(
                " 192.0.2.7:5000 tunnel backend_reset db2 attempts=2 in=10 out=2048 \
                 duration_ms=1500.000 listener=pg route=- cluster=db"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(" tunnel connect db2 "), "{}", lines[1]);
    }

    #[test]
    fn tls_connections_log_version_cipher_and_sni_and_http2_streams_say_so() {
        for json in [false, true] {
            let (tx, rx) = bounded(4);
            let log = AccessLog {
                json,
                ..AccessLog::new(tx)
            };
            let started = Instant::now();
            let record = RequestRecord {
                started,
                status: 200,
                attempts: 1,
                bytes_in: 40,
                bytes_out: 100,
                error: None,
            };
            let mut names = LogNames {
                listener: "https",
                route: Some("all"),
                cluster: Some("web"),
                backend: Some("w1"),
                tls: Some(LogTls {
                    version: "TLSv1_3",
                    cipher: "TLS13_AES_128_GCM_SHA256",
                    sni: Some("example.com"),
                }),
                http2: true,
            };
            let client = "192.0.2.7:5000".parse().unwrap();
            log.write(client, "GET /", &record, &names, started);
            names.tls = None;
            names.http2 = false;
            log.write(client, "GET /", &record, &names, started);
            log.flush(started);
            let text = String::from_utf8(rx.try_recv().unwrap()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            if json {
                let tls: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
                assert_eq!(tls["tls_version"], "TLSv1_3");
                assert_eq!(tls["tls_cipher"], "TLS13_AES_128_GCM_SHA256");
                assert_eq!(tls["sni"], "example.com");
                assert_eq!(tls["proto"], "h2");
                let plain: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
                assert!(plain.get("tls_version").is_none(), "{plain}");
                assert!(plain.get("proto").is_none(), "{plain}");
            } else {
                assert!(
                    lines[0].ends_with(
                        " cluster=web proto=h2 tls=TLSv1_3 cipher=TLS13_AES_128_GCM_SHA256 sni=example.com"
                    ),
                    "{}",
                    lines[0]
                );
                assert!(lines[1].ends_with(" cluster=web"), "{}", lines[1]);
            }
        }
    }
}
