//! `error`: what can go wrong while proxying one request, and whose fault it was.
//!
//! Owns `ProxyError`, which the proxy returns and the shard counts and logs. Each
//! variant knows its side (downstream client, upstream backend, or us), whether a
//! retry on another connection is allowed, and the status the client sees. Built on
//! the hot path: no strings are formatted and nothing is boxed here.

use std::io;

use crate::protocol::h1::H1Error;
use crate::protocol::h2::convert::ConvertError;

/// Whose fault an error was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (downstream) sent something bad, went silent or went away.
    Downstream,
    /// The backend (upstream) refused, reset, stalled or answered badly.
    Upstream,
    /// ringlb itself (no backend available, resources).
    Internal,
}

/// One failed request or connection.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request head or body broke the protocol rules or a limit.
    #[error("bad request: {0}")]
    BadRequest(H1Error),
    /// An HTTP/2 request that has no HTTP/1.1 equivalent the backends could be
    /// sent (no authority, two hosts, CONNECT).
    #[error("bad HTTP/2 request: {0}")]
    BadHttp2Request(ConvertError),
    /// The client did not send a complete head within `timeouts.header_read`.
    #[error("timed out reading the request head")]
    HeaderReadTimeout,
    /// The client stopped sending its body for longer than `timeouts.idle`.
    #[error("timed out reading the request body")]
    BodyReadTimeout,
    /// The client closed or reset its connection mid-request.
    #[error("client connection failed: {0}")]
    ClientIo(io::ErrorKind),
    /// No route of the listener matches the request.
    #[error("no route matches the request")]
    NoRoute,
    /// Every backend is down or the table is empty.
    #[error("no backend available")]
    NoBackend,
    /// Connecting to the backend failed (refused, unreachable).
    #[error("connect to backend failed: {0}")]
    Connect(io::ErrorKind),
    /// Connecting to the backend took longer than `timeouts.connect`.
    #[error("connect to backend timed out")]
    ConnectTimeout,
    /// The TLS handshake with the backend failed (its certificate did not verify,
    /// no protocol in common, an alert): named by its reason.
    #[error("tls handshake with backend failed: {0}")]
    UpstreamTls(&'static str),
    /// The backend closed or reset the connection before the response ended
    /// (over HTTP/2: reset the stream, or its connection failed).
    #[error("backend connection failed: {0}")]
    UpstreamIo(io::ErrorKind),
    /// An HTTP/2 backend refused the stream unprocessed (`REFUSED_STREAM`, or a
    /// GOAWAY whose last stream is below it): nothing was acted on, so any
    /// method may be sent again.
    #[error("backend refused the stream unprocessed")]
    UpstreamRefused,
    /// The backend's response broke the protocol rules.
    #[error("invalid response from backend: {0}")]
    BadResponse(H1Error),
    /// The backend did not answer within `timeouts.backend_response`.
    #[error("backend response timed out")]
    ResponseTimeout,
    /// ringlb could not open a connection for want of descriptors, memory or local
    /// ports: its own trouble, which says nothing about the backend's health.
    #[error("out of local resources: {0}")]
    OutOfResources(io::ErrorKind),
}

impl ProxyError {
    /// Whose fault it was.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BadHttp2Request(_)
            | ProxyError::HeaderReadTimeout
            | ProxyError::BodyReadTimeout
            | ProxyError::ClientIo(_)
            | ProxyError::NoRoute => Side::Downstream,
            ProxyError::NoBackend | ProxyError::OutOfResources(_) => Side::Internal,
            ProxyError::Connect(_)
            | ProxyError::ConnectTimeout
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::UpstreamRefused
            | ProxyError::BadResponse(_)
            | ProxyError::ResponseTimeout => Side::Upstream,
        }
    }

    /// Whether the same request may be sent again on another upstream connection,
    /// provided the method is idempotent, ringlb holds the body, and no byte of a
    /// response reached the client. An invalid response is not retried: the
    /// backend answered, and another may answer the same.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_)
                | ProxyError::ConnectTimeout
                // Nothing was sent; another backend may have a good certificate.
                | ProxyError::UpstreamTls(_)
                | ProxyError::UpstreamIo(_)
                | ProxyError::UpstreamRefused
                | ProxyError::ResponseTimeout
                // Out of local ports for one backend's address, another may do.
                | ProxyError::OutOfResources(_)
        )
    }

    /// The status the client gets, or `None` when the client gets nothing (it is
    /// gone, or it never sent a byte of a request).
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::BadRequest(e) => Some(e.request_status()),
            ProxyError::BadHttp2Request(e) => Some(e.status()),
            ProxyError::HeaderReadTimeout => Some(408),
            ProxyError::BodyReadTimeout | ProxyError::ClientIo(_) => None,
            ProxyError::NoRoute => Some(404),
            ProxyError::NoBackend | ProxyError::OutOfResources(_) => Some(503),
            ProxyError::Connect(_)
            | ProxyError::UpstreamTls(_)
            | ProxyError::UpstreamIo(_)
            | ProxyError::UpstreamRefused
            | ProxyError::BadResponse(_) => Some(502),
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout => Some(504),
        }
    }

    /// A short stable name for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadHttp2Request(_) => "bad_request",
            ProxyError::HeaderReadTimeout => "header_read_timeout",
            ProxyError::BodyReadTimeout => "body_read_timeout",
            ProxyError::ClientIo(_) => "client_io",
            ProxyError::NoRoute => "no_route",
            ProxyError::NoBackend => "no_backend",
            ProxyError::Connect(_) => "connect",
            ProxyError::ConnectTimeout => "connect_timeout",
            ProxyError::UpstreamTls(_) => "upstream_tls",
            ProxyError::UpstreamIo(_) => "upstream_io",
            ProxyError::UpstreamRefused => "upstream_refused",
            ProxyError::BadResponse(_) => "invalid_response",
            ProxyError::ResponseTimeout => "response_timeout",
            ProxyError::OutOfResources(_) => "out_of_resources",
        }
    }
}

/// The complete error response for a status: a short plain-text body, `Server:
/// ringlb`, and `Connection: close`. Static bytes, so failing is cheap.
pub fn error_response(status: u16) -> &'static [u8] {
    match status {
        400 => ERR_400,
        404 => ERR_404,
        408 => ERR_408,
        413 => ERR_413,
        417 => ERR_417,
        431 => ERR_431,
        501 => ERR_501,
        502 => ERR_502,
        503 => ERR_503,
        504 => ERR_504,
        _ => ERR_500,
    }
}

const ERR_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n";
const ERR_404: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 30\r\nConnection: close\r\n\r\n404 Not Found: no route match\n";
const ERR_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\n408 Request Timeout\n";
const ERR_413: &[u8] = b"HTTP/1.1 413 Content Too Large\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\nConnection: close\r\n\r\n413 Content Too Large\n";
const ERR_417: &[u8] = b"HTTP/1.1 417 Expectation Failed\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\nConnection: close\r\n\r\n417 Expectation Failed\n";
const ERR_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 36\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large\n";
const ERR_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 26\r\nConnection: close\r\n\r\n500 Internal Server Error\n";
const ERR_501: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\n501 Not Implemented\n";
const ERR_502: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n502 Bad Gateway\n";
const ERR_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nConnection: close\r\n\r\n503 Service Unavailable\n";
const ERR_504: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nServer: ringlb\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nConnection: close\r\n\r\n504 Gateway Timeout\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_are_well_framed() {
        for status in [400, 404, 408, 413, 417, 431, 500, 501, 502, 503, 504] {
            let raw = error_response(status);
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut res = httparse::Response::new(&mut headers);
            let head_len = res.parse(raw).unwrap().unwrap();
            assert_eq!(res.code, Some(status));
            let length = res
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                })
                .unwrap();
            assert_eq!(length, raw.len() - head_len, "status {status}");
            assert!(res
                .headers
                .iter()
                .any(|h| h.name == "Server" && h.value == b"ringlb"));
        }
    }

    #[test]
    fn sides_and_statuses() {
        assert_eq!(ProxyError::NoBackend.status(), Some(503));
        assert_eq!(ProxyError::ConnectTimeout.status(), Some(504));
        assert_eq!(ProxyError::ResponseTimeout.side(), Side::Upstream);
        assert!(ProxyError::Connect(io::ErrorKind::ConnectionRefused).retryable());
        assert!(ProxyError::ResponseTimeout.retryable());
        assert!(!ProxyError::BadResponse(H1Error::TooManyHeaders).retryable());
        assert!(!ProxyError::NoBackend.retryable());
        assert_eq!(
            ProxyError::BadRequest(H1Error::TooManyHeaders).status(),
            Some(431)
        );
    }
}
