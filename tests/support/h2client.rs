//! HTTP/2 clients for the tests: the `h2` crate's client over monoio's poll-io
//! (plain TCP, or any poll-style stream such as TLS), calls sent at once on
//! one connection, and what came back.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::SendRequest;
use monoio::io::IntoPollIo;
use monoio::task::JoinHandle;
use ringlb::shard::{run_on, Driver};

use super::bounded;

/// One request to send.
#[derive(Clone)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    /// Sent in DATA frames of at most 16 KiB.
    pub body: Vec<u8>,
    /// Send `content-length` with the body (else the proxy frames it chunked).
    pub length: bool,
}

impl Call {
    pub fn get(path: &str) -> Call {
        Call {
            method: "GET",
            path: path.to_string(),
            body: Vec::new(),
            length: false,
        }
    }

    pub fn post(path: &str, body: Vec<u8>, length: bool) -> Call {
        Call {
            method: "POST",
            path: path.to_string(),
            body,
            length,
        }
    }
}

/// What came back for one call.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<http::HeaderMap>,
    /// Interim responses seen before the final one.
    pub interim: Vec<u16>,
    /// The response's HEADERS ended the stream (no DATA, no trailers: a gRPC
    /// trailers-only response).
    pub head_ended: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `calls` at once, each on its own stream of one connection to `addr`, and
/// returns the answers in order (a stream reset gives `Err`).
pub fn send_all(addr: SocketAddr, calls: Vec<Call>) -> Vec<Result<Answer, h2::Error>> {
    run_on(
        Driver::Epoll,
        bounded(async move {
            let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            all_calls(tcp.into_poll_io().unwrap(), calls).await
        }),
    )
    .unwrap()
}

/// An HTTP/2 client connection over `io`: its sender, and the task driving it
/// (which ends with the connection).
pub async fn h2_over<T>(io: T) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>)
where
    T: monoio::io::poll_io::AsyncRead + monoio::io::poll_io::AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = h2::client::handshake(io).await.unwrap();
    (sender, monoio::spawn(connection))
}

/// `h2_over` a new plain TCP connection to `addr` (h2c).
pub async fn h2c_connect(
    addr: SocketAddr,
) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
    let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
    // Without it, Nagle's algorithm and delayed ACKs stall a window's last frame.
    tcp.set_nodelay(true).unwrap();
    h2_over(tcp.into_poll_io().unwrap()).await
}

/// An HTTP/2 connection over `io`, `calls` on it at once, and their answers in
/// order once the connection has ended.
pub async fn all_calls<T>(io: T, calls: Vec<Call>) -> Vec<Result<Answer, h2::Error>>
where
    T: monoio::io::poll_io::AsyncRead + monoio::io::poll_io::AsyncWrite + Unpin + 'static,
{
    let (sender, driving) = h2_over(io).await;
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|call| monoio::spawn(one_call(sender.clone(), call)))
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await);
    }
    drop(sender);
    let _ = driving.await;
    answers
}

pub async fn one_call(
    sender: h2::client::SendRequest<Bytes>,
    call: Call,
) -> Result<Answer, h2::Error> {
    let mut sender = sender.ready().await?;
    let mut request = http::Request::builder()
        .method(call.method)
        .uri(format!("http://test.example{}", call.path));
    if call.length {
        request = request.header("content-length", call.body.len());
    }
    let request = request.body(()).unwrap();
    let empty = call.body.is_empty() && !call.length;
    let (response, mut send) = sender.send_request(request, empty)?;
    if !empty {
        let mut body = Bytes::from(call.body);
        while !body.is_empty() {
            let piece = body.split_to(body.len().min(16 * 1024));
            send.reserve_capacity(piece.len());
            let mut piece = piece;
            while !piece.is_empty() {
                let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
                    .await
                    .expect("the stream is open")?;
                let part = piece.split_to(granted.min(piece.len()));
                send.send_data(part, false)?;
            }
        }
        send.send_data(Bytes::new(), true)?;
    }
    let mut response = response;
    let mut interim = Vec::new();
    // h2 hands interim responses to `poll_informational`, before the final one.
    while let Some(info) = std::future::poll_fn(|cx| response.poll_informational(cx)).await {
        interim.push(info?.status().as_u16());
    }
    let response = response.await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut recv = response.into_body();
    let head_ended = recv.is_end_stream();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await?;
    Ok(Answer {
        status,
        headers,
        body,
        trailers,
        interim,
        head_ended,
    })
}

pub fn one(addr: SocketAddr, call: Call) -> Answer {
    send_all(addr, vec![call])
        .pop()
        .unwrap()
        .expect("an answer, not a reset")
}
