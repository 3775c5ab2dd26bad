//! `h1`: HTTP/1.x message framing, sans-io.
//!
//! Owns the rules that decide where a message starts and ends (RFC 9112): parsing
//! and validating request and response heads, choosing the body framing, rewriting
//! heads for the other side, and decoding chunked bodies. Called by the proxy and
//! the origin server on bytes they already read. Never touches a socket, never
//! allocates per request beyond the caller's reusable buffers, never panics on input.

mod chunked;
mod head;

pub use chunked::{ChunkEvent, ChunkedDecoder};
pub use head::{
    cookie_value, header_value, method_and_target, parse_request, parse_response, rewrite_head,
    write_chunk_header, ClientSide, Field, Forwarding, Method, Request, Response, Span,
    MAX_HEADERS_CAP,
};

/// A `tchar` of RFC 9110 §5.6.2: what field names, codings and chunk extension
/// names are made of.
#[inline]
fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Letters, digits and `extra`, as a table indexed by byte: one load per byte
/// where a scan of `extra` would cost a comparison per entry.
const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

const TOKEN: [bool; 256] = byte_table(b"!#$%&'*+-.^_`|~");

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (requests without framing headers, HEAD/204/304/1xx responses).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the sender closes the connection (responses only).
    CloseDelimited,
}

/// Limits that bound what a peer may make us buffer (`[limits]`).
pub use crate::config::Limits;

/// Why a message was refused. The variant fixes the status a client sees; which
/// side sent the message is the caller's knowledge (a bad response is always 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum H1Error {
    /// Syntax or framing that we refuse to guess about (request smuggling risks).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The head did not fit in `max_header_bytes`.
    #[error("header section larger than the limit")]
    HeadTooLarge,
    /// More fields than `max_headers`.
    #[error("more header fields than the limit")]
    TooManyHeaders,
    /// The body is larger than `max_body_bytes`.
    #[error("body larger than the limit")]
    BodyTooLarge,
    /// Well-formed, but something we do not implement (CONNECT, transfer codings).
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// An `Expect` value other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
}

impl H1Error {
    /// The status a client gets when its request fails with this error.
    pub fn request_status(&self) -> u16 {
        match self {
            H1Error::Malformed(_) => 400,
            H1Error::HeadTooLarge | H1Error::TooManyHeaders => 431,
            H1Error::BodyTooLarge => 413,
            H1Error::NotImplemented(_) => 501,
            H1Error::ExpectationFailed => 417,
        }
    }

    /// A short stable name for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            H1Error::Malformed(reason) => reason,
            H1Error::HeadTooLarge => "head too large",
            H1Error::TooManyHeaders => "too many headers",
            H1Error::BodyTooLarge => "body too large",
            H1Error::NotImplemented(what) => what,
            H1Error::ExpectationFailed => "unsupported expectation",
        }
    }
}
