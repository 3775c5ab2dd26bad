//! `pollio::PollStream` carrying HTTP/2 (the `h2` crate) on both io drivers: a
//! server that read the first bytes with ringlb's owned buffers, lent the socket
//! to h2, and echoes 100 concurrent streams, 16 MiB in all each way, to a real h2
//! client over loopback.

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;

use bytes::Bytes;
use monoio::io::IntoPollIo;
use ringlb::shard::{run_on, Driver};
use ringlb::stream::Stream;
use ringlb::testkit::origin::{pattern_byte, Fnv};

const STREAMS: usize = 100;
/// 16 MiB over the 100 streams.
const PER_STREAM: usize = 16 * 1024 * 1024 / STREAMS;
/// What the server reads with an owned buffer before lending the socket: part
/// of the client's 24-byte preface, so h2 must be handed it back.
const EARLY: usize = 10;

/// Serves one connection: reads `EARLY` bytes the ringlb way, lends the socket
/// to h2 with them, and echoes every stream's body. Returns the streams served.
fn serve_one(driver: Driver, ready: mpsc::Sender<SocketAddr>) -> usize {
    run_on(
        driver,
        support::bounded(async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            ready.send(listener.local_addr().unwrap()).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = Stream::Plain(tcp);
            let mut early = Vec::new();
            while early.len() < EARLY {
                let n = stream.read_more(&mut early, EARLY).await.unwrap();
                assert!(n > 0, "the client closed before its preface");
            }
            let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
            let seen = early.len().min(preface.len());
            assert_eq!(&early[..seen], &preface[..seen]);
            let io = stream.into_poll(early).unwrap();
            let mut connection = h2::server::handshake(io).await.unwrap();
            let mut tasks = Vec::new();
            while let Some(accepted) = connection.accept().await {
                let (request, mut respond) = accepted.unwrap();
                tasks.push(monoio::spawn(async move {
                    let mut body = request.into_body();
                    let mut echoed = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        body.flow_control().release_capacity(chunk.len()).unwrap();
                        echoed.extend_from_slice(&chunk);
                    }
                    let response = http::Response::builder().status(200).body(()).unwrap();
                    let mut send = respond.send_response(response, false).unwrap();
                    send.send_data(Bytes::from(echoed), true).unwrap();
                }));
                if tasks.len() == STREAMS {
                    break;
                }
            }
            // The connection does the I/O for every stream: drive it until the
            // client closes, the stream tasks finishing meanwhile.
            std::future::poll_fn(|cx| connection.poll_closed(cx))
                .await
                .unwrap();
            let served = tasks.len();
            for task in tasks {
                task.await;
            }
            served
        }),
    )
    .unwrap()
}

/// The pattern body of stream `i`.
fn body(i: usize) -> Vec<u8> {
    let offset = (i * PER_STREAM) as u64;
    (0..PER_STREAM as u64)
        .map(|k| pattern_byte(offset + k))
        .collect()
}

fn digest(bytes: &[u8]) -> u64 {
    let mut fnv = Fnv::new();
    fnv.update(bytes);
    fnv.finish()
}

/// The client: an h2 client over monoio's own poll-io socket on the epoll
/// driver (a different stack from the server's), 100 streams at once.
fn client(addr: SocketAddr) -> Vec<(usize, usize, u64)> {
    run_on(
        Driver::Epoll,
        support::bounded(async move {
            let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
            let io = tcp.into_poll_io().unwrap();
            let (sender, connection) = h2::client::handshake(io).await.unwrap();
            let driving = monoio::spawn(connection);
            let mut calls = Vec::new();
            for i in 0..STREAMS {
                let mut sender = sender.clone();
                calls.push(monoio::spawn(async move {
                    sender = sender.ready().await.unwrap();
                    let request = http::Request::builder()
                        .method("POST")
                        .uri(format!("http://test/echo/{i}"))
                        .body(())
                        .unwrap();
                    let (response, mut send) = sender.send_request(request, false).unwrap();
                    send.send_data(Bytes::from(body(i)), true).unwrap();
                    let response = response.await.unwrap();
                    assert_eq!(response.status(), 200);
                    let mut body = response.into_body();
                    let mut got = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        body.flow_control().release_capacity(chunk.len()).unwrap();
                        got.extend_from_slice(&chunk);
                    }
                    (i, got.len(), digest(&got))
                }));
            }
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await);
            }
            drop(sender);
            driving.await.unwrap();
            results
        }),
    )
    .unwrap()
}

both_drivers! {
    fn h2_runs_over_a_lent_socket_with_the_bytes_read_before(driver) {
        let (ready, addr) = mpsc::channel();
        let server = std::thread::spawn(move || serve_one(driver, ready));
        let addr = addr.recv_timeout(support::WAIT).unwrap();
        let results = client(addr);
        assert_eq!(server.join().unwrap(), STREAMS);
        assert_eq!(results.len(), STREAMS);
        for (i, len, hash) in results {
            assert_eq!(len, PER_STREAM, "stream {i}");
            assert_eq!(hash, digest(&body(i)), "stream {i}");
        }
    }
}
