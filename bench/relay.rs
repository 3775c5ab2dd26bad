//! `relay`: the floor the side-by-side benchmark measures ringlb against.
//!
//! A TCP byte relay on the same runtime and ring setup as a shard
//! (`shard::run_on`), one thread: each client connection gets its own upstream
//! connection (round-robin over the upstreams), and bytes are copied both ways
//! until either side closes. It does no HTTP work at all (no parsing, no
//! rewriting, no pool, no timeouts, no statistics), so its CPU per request is
//! what the four socket operations of a proxied request cost on this machine.
//! Benchmark tooling only: it has no limits and must never face real traffic.
//!
//! `cargo run --release --example relay -- LISTEN UPSTREAM...`

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use ringlb::shard::{run_on, Driver};

const BUFFER: usize = 16 * 1024;

/// Copies from `from` to `to` until EOF or an error on either side.
async fn pump(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRent) {
    let mut buf = Vec::with_capacity(BUFFER);
    loop {
        buf.clear();
        let (read, back) = from.read(buf).await;
        buf = back;
        if !matches!(read, Ok(n) if n > 0) {
            break;
        }
        let (written, back) = to.write_all(buf).await;
        buf = back;
        if written.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn relay(client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    monoio::spawn(pump(server_read, client_write));
    pump(client_read, server_write).await;
}

async fn serve(listen: SocketAddr, upstreams: Vec<SocketAddr>) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let next = Rc::new(Cell::new(0usize));
    loop {
        let (client, _) = listener.accept().await?;
        let _ = client.set_nodelay(true);
        let i = next.get();
        next.set(i.wrapping_add(1));
        monoio::spawn(relay(client, upstreams[i % upstreams.len()]));
    }
}

fn main() {
    let addresses: Result<Vec<SocketAddr>, _> =
        std::env::args().skip(1).map(|a| a.parse()).collect();
    let addresses = match addresses {
        Ok(a) if a.len() >= 2 => a,
        _ => {
            eprintln!("usage: relay LISTEN UPSTREAM... (socket addresses, e.g. 127.0.0.1:8080)");
            std::process::exit(2);
        }
    };
    let (listen, upstreams) = (addresses[0], addresses[1..].to_vec());
    match run_on(Driver::IoUring, serve(listen, upstreams)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => {
            eprintln!("relay: {e}");
            std::process::exit(1);
        }
    }
}
