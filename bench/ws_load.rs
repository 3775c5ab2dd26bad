//! `ws_load`: the WebSocket load generator of `bench/tunnels.py`.
//!
//! Opens CONNS WebSocket connections to `ws://ADDR/ws` (the `ringlb origin` echo,
//! directly or through a proxy), one std thread each. When every handshake is done
//! it prints `ready` (so the caller can start its CPU accounting there), then each
//! thread sends a binary message of MSG_BYTES, waits for its echo, checks it is the
//! same bytes, and repeats for SECONDS. It prints one line:
//!
//! `ws_load conns=32 msg_bytes=32 seconds=5.001 messages=123456 messages_per_sec=24686.1 errors=0`
//!
//! where `messages` counts round trips (one frame each way) that came back intact.
//! A connection that fails (an error, a wrong echo, or no echo within 5 s) counts one
//! error and stops. Exits 1 if any connection failed its handshake.
//! Benchmark tooling only.
//!
//! `cargo run --release --example ws_load -- ADDR CONNS SECONDS MSG_BYTES`

use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

/// How long one echo may take before the connection counts as failed.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(addr: &str) -> Result<WebSocket<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(ECHO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let (ws, response) = tungstenite::client::client(format!("ws://{addr}/ws"), stream)
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    if response.status().as_u16() != 101 {
        return Err(format!(
            "handshake with {addr}: status {}",
            response.status()
        ));
    }
    Ok(ws)
}

/// Echo round trips until `deadline`: (intact echoes, whether it failed).
fn run(
    ws: &mut WebSocket<TcpStream>,
    id: usize,
    msg_bytes: usize,
    deadline: Instant,
) -> (u64, bool) {
    let mut done = 0u64;
    let mut payload = vec![0u8; msg_bytes];
    while Instant::now() < deadline {
        // Different bytes every time, so an echo of an earlier message is caught.
        let stamp = (done as usize).wrapping_mul(31).wrapping_add(id);
        for (i, b) in payload.iter_mut().enumerate() {
            *b = (stamp.wrapping_add(i) % 251) as u8;
        }
        if let Err(e) = ws.send(Message::binary(payload.clone())) {
            eprintln!("ws_load: connection {id}: send: {e}");
            return (done, true);
        }
        loop {
            match ws.read() {
                Ok(Message::Binary(echo)) if echo[..] == payload[..] => break,
                Ok(Message::Binary(_)) => {
                    eprintln!("ws_load: connection {id}: the echo differs from the message");
                    return (done, true);
                }
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(other) => {
                    eprintln!("ws_load: connection {id}: unexpected {other:?}");
                    return (done, true);
                }
                Err(e) => {
                    eprintln!("ws_load: connection {id}: read: {e}");
                    return (done, true);
                }
            }
        }
        done += 1;
    }
    (done, false)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: ws_load ADDR CONNS SECONDS MSG_BYTES");
        return ExitCode::from(2);
    }
    let addr = args[0].clone();
    let (Ok(conns), Ok(seconds), Ok(msg_bytes)) = (
        args[1].parse::<usize>(),
        args[2].parse::<f64>(),
        args[3].parse::<usize>(),
    ) else {
        eprintln!("usage: ws_load ADDR CONNS SECONDS MSG_BYTES (numbers)");
        return ExitCode::from(2);
    };
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns.max(1) {
        match connect(&addr) {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                eprintln!("ws_load: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!("ready");
    let messages = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(seconds);
    let start = Arc::new(Barrier::new(sockets.len() + 1));
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, mut ws)| {
            let (messages, errors, start) = (messages.clone(), errors.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let (done, failed) = run(&mut ws, id, msg_bytes, Instant::now() + duration);
                messages.fetch_add(done, Ordering::Relaxed);
                if failed {
                    errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                }
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    for t in threads {
        let _ = t.join();
    }
    let elapsed = began.elapsed().as_secs_f64();
    let total = messages.load(Ordering::Relaxed);
    println!(
        "ws_load conns={conns} msg_bytes={msg_bytes} seconds={elapsed:.3} messages={total} \
         messages_per_sec={:.1} errors={}",
        total as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}
