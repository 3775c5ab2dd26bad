//! `control::grpc_probe`: the gRPC health check (`health_check.kind = "grpc"`).
//!
//! Owns one `grpc.health.v1.Health/Check` call to one backend over HTTP/2 (h2c,
//! or TLS with ALPN `h2` when the cluster speaks TLS; no PROXY header, which an
//! HTTP/2 cluster cannot send), on a monoio epoll runtime of its own in the
//! checker thread, the whole call bounded by the check's timeout: the backend is
//! up when it answers SERVING. The two messages are hand-encoded (a string field out, an
//! enum field back): no protobuf code. Never on the request path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;

use crate::protocol::tls::TlsSession;
use crate::shard::{run_on, Driver};
use crate::stream::{self, HandshakeError, Stream};

use super::health::{CheckFailure, Probe};

/// The method every gRPC health service answers.
const CHECK: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;
/// Most bytes of answer read: a health answer is a few bytes.
const MAX_ANSWER: usize = 4096;

/// Runs one gRPC health check of `service` at `address` within `timeout`.
/// Blocking: the checker thread runs it on a runtime of its own.
pub fn check(
    address: SocketAddr,
    probe: &Probe,
    service: &str,
    timeout: Duration,
) -> Result<(), CheckFailure> {
    let deadline = Instant::now() + timeout;
    let bounded = async {
        monoio::time::timeout(timeout, call(address, probe, service, deadline))
            .await
            .unwrap_or(Err(CheckFailure::Timeout))
    };
    // Boxed: the call's state (TLS, h2) on the heap, not the thread's stack.
    run_on(Driver::Epoll, Box::pin(bounded))
        .unwrap_or_else(|e| Err(CheckFailure::OutOfResources(e.to_string())))
}

fn io_failure(e: std::io::Error) -> CheckFailure {
    if crate::sys::out_of_resources(&e) {
        return CheckFailure::OutOfResources(e.to_string());
    }
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => CheckFailure::Timeout,
        kind => CheckFailure::Connect(kind.to_string()),
    }
}

/// What h2 reported: the backend did not speak HTTP/2 as it should.
fn h2_failure(e: h2::Error) -> CheckFailure {
    match e.get_io() {
        Some(io) => CheckFailure::Connect(io.kind().to_string()),
        None => CheckFailure::InvalidResponse,
    }
}

async fn call(
    address: SocketAddr,
    probe: &Probe,
    service: &str,
    deadline: Instant,
) -> Result<(), CheckFailure> {
    let tcp = monoio::net::TcpStream::connect_addr(address)
        .await
        .map_err(io_failure)?;
    let _ = tcp.set_nodelay(true);
    let mut authority = address.to_string();
    let stream = match &probe.tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            let name = tls
                .server_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
            if let ServerName::DnsName(dns) = &name {
                // What the backend's certificate names, for a gateway that
                // routes by host.
                authority = format!("{}:{}", dns.as_ref(), address.port());
            }
            let session = TlsSession::client(Arc::clone(&tls.config), name)
                .map_err(|e| CheckFailure::Tls(e.to_string()))?;
            let stream = match stream::handshake(tcp, session, Vec::new(), deadline).await {
                Ok((stream, _)) => Stream::Tls(Box::new(stream)),
                Err(HandshakeError::TimedOut) => return Err(CheckFailure::Timeout),
                Err(HandshakeError::Closed) => return Err(CheckFailure::Tls("closed".into())),
                Err(HandshakeError::Io(e)) => return Err(io_failure(e)),
                Err(HandshakeError::Tls(e)) => return Err(CheckFailure::Tls(e.to_string())),
            };
            if stream.alpn() != Some(b"h2") {
                return Err(CheckFailure::Tls("ALPN h2 was not agreed".into()));
            }
            stream
        }
    };
    let scheme = if probe.tls.is_some() { "https" } else { "http" };
    let io = stream.into_poll(Vec::new()).map_err(io_failure)?;
    let (sender, connection) = h2::client::Builder::new()
        .max_header_list_size(MAX_ANSWER as u32)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(h2_failure)?;
    // Ends once the call is over and `sender` dropped: h2 says GOAWAY and closes.
    let driving = monoio::spawn(async move {
        let _ = connection.await;
    });
    let answered = exchange(sender, scheme, &authority, service).await;
    // Let the connection close cleanly, within what is left of the check.
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = monoio::time::timeout(left, driving).await;
    answered
}

/// The call itself, on an open HTTP/2 connection.
async fn exchange(
    sender: h2::client::SendRequest<Bytes>,
    scheme: &str,
    authority: &str,
    service: &str,
) -> Result<(), CheckFailure> {
    let mut sender = sender.ready().await.map_err(h2_failure)?;
    let request = http::Request::post(format!("{scheme}://{authority}{CHECK}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "ringlb-health")
        .body(())
        .map_err(|_| CheckFailure::InvalidResponse)?;
    let (response, mut body) = sender.send_request(request, false).map_err(h2_failure)?;
    body.send_data(Bytes::from(request_message(service)), true)
        .map_err(h2_failure)?;
    let response = response.await.map_err(h2_failure)?;
    if response.status() != http::StatusCode::OK {
        return Err(CheckFailure::Status(response.status().as_u16()));
    }
    let (parts, mut recv) = response.into_parts();
    // A trailers-only answer carries its status in the head.
    if let Some(code) = grpc_status(&parts.headers) {
        if code != 0 || recv.is_end_stream() {
            return Err(CheckFailure::GrpcStatus(code));
        }
    }
    let mut answer = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.map_err(h2_failure)?;
        let _ = recv.flow_control().release_capacity(data.len());
        answer.extend_from_slice(&data);
        if answer.len() > MAX_ANSWER {
            return Err(CheckFailure::InvalidResponse);
        }
    }
    let trailers = recv.trailers().await.map_err(h2_failure)?;
    match trailers.as_ref().and_then(grpc_status) {
        Some(0) => {}
        Some(code) => return Err(CheckFailure::GrpcStatus(code)),
        None => return Err(CheckFailure::InvalidResponse),
    }
    match serving_status(&answer) {
        Some(SERVING) => Ok(()),
        Some(other) => Err(CheckFailure::NotServing(other)),
        None => Err(CheckFailure::InvalidResponse),
    }
}

fn grpc_status(fields: &http::HeaderMap) -> Option<u32> {
    fields.get("grpc-status")?.to_str().ok()?.parse().ok()
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint at the front of `bytes`: its value and length.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// `HealthCheckRequest { service }` in gRPC's framing (not compressed).
fn request_message(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        push_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// The `status` of the one `HealthCheckResponse` in a gRPC body (0, UNKNOWN,
/// when the field is absent); `None` when the body is not one whole,
/// uncompressed message.
fn serving_status(body: &[u8]) -> Option<u64> {
    let (&flag, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let mut message = rest.get(4..)?;
    if flag != 0 || message.len() != len {
        return None;
    }
    let mut status = 0;
    while !message.is_empty() {
        let (key, used) = varint(message)?;
        message = &message[used..];
        match key & 7 {
            0 => {
                let (value, used) = varint(message)?;
                message = &message[used..];
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let (len, used) = varint(message)?;
                let end = used.checked_add(usize::try_from(len).ok()?)?;
                message = message.get(end..)?;
            }
            // Fixed 64 and 32 bits: unknown fields, skipped.
            1 => message = message.get(8..)?,
            5 => message = message.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_its_service() {
        assert_eq!(request_message(""), [0, 0, 0, 0, 0]);
        assert_eq!(
            request_message("app"),
            [0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'p']
        );
    }

    #[test]
    fn the_answer_says_serving_or_not() {
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 0x01]), Some(SERVING));
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 0x02]), Some(2));
        // No field: UNKNOWN. An unknown string field is skipped.
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 0x01]),
            Some(SERVING)
        );
        assert_eq!(
            serving_status(&[0, 0, 0, 0, 7, 0x1d, 1, 2, 3, 4, 0x08, 0x01]),
            Some(SERVING)
        );
        // Compressed, cut short, or with bytes after the message: not an answer.
        assert_eq!(serving_status(&[1, 0, 0, 0, 2, 0x08, 0x01]), None);
        assert_eq!(serving_status(&[0, 0, 0, 0, 3, 0x08, 0x01]), None);
        assert_eq!(serving_status(&[0, 0, 0]), None);
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 0x81]), None);
    }
}
