//! Request and response heads: parse with httparse, apply RFC 9112's framing rules
//! strictly, and write the head the other side will see into a reusable buffer.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::net::IpAddr;

use super::{byte_table, is_token_byte, BodyKind, H1Error, Limits};
use crate::config::FRAMING_FIELDS;

/// Upper bound on `limits.max_headers`; the parser's field array lives on the stack.
pub const MAX_HEADERS_CAP: usize = 512;

/// Most distinct options one `Connection` header may list.
const MAX_CONNECTION_OPTIONS: usize = 16;

/// The request methods the proxy treats differently; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Patch,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// Idempotent per RFC 9110 §9.2.2: safe to send again after a failed attempt.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// What the proxy needs to know about a parsed request; the head itself has
/// already been rewritten into the caller's output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The method, for idempotency and HEAD response framing.
    pub method: Method,
    /// True for HTTP/1.0 clients (no keep-alive unless asked, no chunked replies).
    pub http10: bool,
    /// How the request body is framed (`None` when there is no body).
    pub body: BodyKind,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits before sending its body.
    pub expect_continue: bool,
    /// No `Host` field (HTTP/1.0): the proxy adds one naming the backend, because
    /// the head goes upstream as HTTP/1.1, which requires it.
    pub missing_host: bool,
    /// Length of the head in the input, including the blank line.
    pub head_len: usize,
    /// Where the method token is in the head.
    pub method_token: Span,
    /// The host requests are routed by: the authority of an absolute-form target,
    /// else the `Host` field's value (as sent: port and case included).
    pub host: Option<Span>,
    /// The target's path, without its query (`*` for `OPTIONS *`).
    pub path: Span,
    /// A WebSocket upgrade (RFC 6455 §4.1): an HTTP/1.1 `GET` with no body,
    /// `Connection: upgrade` and `Upgrade: websocket`. Its head goes upstream
    /// with those two fields kept; any other `Upgrade` (h2c included) is removed.
    pub upgrade: bool,
}

impl Request {
    /// The path requests are routed and hashed by: `path` in `head`, or `/` for an
    /// absolute-form target without one (`GET http://a`), which goes upstream as
    /// `GET /`. (`OPTIONS http://a` goes as `OPTIONS *` and is routed as `/`.)
    pub fn routing_path<'h>(&self, head: &'h [u8]) -> &'h [u8] {
        match self.path.of(head) {
            [] => b"/",
            path => path,
        }
    }
}

/// Where some bytes are in the head a `Request` was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset from the head's first byte.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// The span of `part`, a slice of `whole`.
    fn within(whole: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    /// The offset just past the span.
    #[inline]
    fn end(&self) -> usize {
        (self.start + self.len) as usize
    }

    /// These bytes of `head` (empty if the span does not fit it).
    #[inline]
    pub fn of<'h>(&self, head: &'h [u8]) -> &'h [u8] {
        let start = self.start as usize;
        head.get(start..start + self.len as usize).unwrap_or(&[])
    }
}

/// The path of a request target, without its query: origin-form as it is,
/// absolute-form after its authority, `*` as it is.
fn path_of(target: &str) -> &str {
    let after_authority = if target.starts_with('/') {
        target
    } else {
        match target.split_once("://") {
            // No path after the authority: an empty one, still inside the target
            // (the request's spans must point into its head).
            Some((_, rest)) => &rest[authority_end(rest)..],
            None => target,
        }
    };
    let end = after_authority.find('?').unwrap_or(after_authority.len());
    &after_authority[..end]
}

/// What the proxy adds to the request head about the client connection.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding {
    /// The client's address, appended to `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// `http` or `https`, sent as `X-Forwarded-Proto`.
    pub proto: &'static str,
}

/// What the response head rewrite needs to know about the client side.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide {
    /// The request's method (HEAD responses have no body).
    pub method: Method,
    /// The client speaks HTTP/1.0 (cannot receive chunked).
    pub http10: bool,
    /// The client connection may stay open after this response.
    pub keep_alive: bool,
    /// The request asked for a WebSocket upgrade: a 101 may answer it.
    pub upgrade: bool,
}

/// What the proxy needs to know about a parsed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// How the upstream frames the body.
    pub upstream_body: BodyKind,
    /// How the body is framed towards the client (differs for HTTP/1.0 clients).
    pub client_body: BodyKind,
    /// Whether the upstream connection can be reused after the body.
    pub upstream_reusable: bool,
    /// Whether the client connection stays open after the body.
    pub client_keep_alive: bool,
    /// A 1xx interim response: forward it (to HTTP/1.1 clients) and read the next head.
    pub interim: bool,
    /// A `101 Switching Protocols` to WebSocket that the request asked for: after
    /// its head, the connection is a tunnel.
    pub upgraded: bool,
    /// Length of the head in the input, including the blank line.
    pub head_len: usize,
}

/// Header names the proxy never forwards as they are (hop-by-hop or re-framed).
fn is_hop_by_hop(name: &str) -> bool {
    FRAMING_FIELDS.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The options named in `Connection` headers, borrowed from the input.
struct ConnectionOptions<'b> {
    names: [&'b str; MAX_CONNECTION_OPTIONS],
    len: usize,
    close: bool,
    keep_alive: bool,
}

impl<'b> ConnectionOptions<'b> {
    fn new() -> Self {
        ConnectionOptions {
            names: [""; MAX_CONNECTION_OPTIONS],
            len: 0,
            close: false,
            keep_alive: false,
        }
    }

    fn add(&mut self, value: &'b [u8]) -> Result<(), H1Error> {
        let value =
            std::str::from_utf8(value).map_err(|_| H1Error::Malformed("invalid Connection"))?;
        for token in value.split(',') {
            let token = token.trim_matches([' ', '\t']);
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case("close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                self.keep_alive = true;
            } else {
                if self.len == MAX_CONNECTION_OPTIONS {
                    return Err(H1Error::Malformed("too many Connection options"));
                }
                self.names[self.len] = token;
                self.len += 1;
            }
        }
        Ok(())
    }

    fn lists(&self, name: &str) -> bool {
        self.names[..self.len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Framing fields gathered from one head.
struct Framing<'b> {
    content_length: Option<u64>,
    /// Some `Transfer-Encoding` field was present.
    transfer_encoding: bool,
    /// The last coding listed (over all field lines) was `chunked`.
    chunked: bool,
    /// How many times `chunked` was listed.
    chunked_count: u32,
    /// A coding other than `chunked` was listed.
    other_coding: bool,
    connection: ConnectionOptions<'b>,
}

/// Reads `Content-Length`, `Transfer-Encoding` and `Connection` and applies the
/// smuggling rules shared by requests and responses.
fn read_framing<'b>(headers: &[httparse::Header<'b>]) -> Result<Framing<'b>, H1Error> {
    read_framing_with(headers, true)
}

/// As `read_framing`; when `strict` is false (a response that has no body whatever
/// its headers say: HEAD, 1xx, 204, 304) framing fields are read but not judged, and
/// a Content-Length that does not parse is dropped.
fn read_framing_with<'b>(
    headers: &[httparse::Header<'b>],
    strict: bool,
) -> Result<Framing<'b>, H1Error> {
    let mut framing = Framing {
        content_length: None,
        transfer_encoding: false,
        chunked: false,
        chunked_count: 0,
        other_coding: false,
        connection: ConnectionOptions::new(),
    };
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            if framing.content_length.is_some() && strict {
                return Err(H1Error::Malformed("duplicate Content-Length"));
            }
            match parse_content_length(header.value) {
                Ok(n) => framing.content_length = Some(n),
                Err(e) if strict => return Err(e),
                Err(_) => {}
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            match read_transfer_encoding(header.value, &mut framing) {
                Err(e) if strict => return Err(e),
                _ => {}
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            framing.connection.add(header.value)?;
        }
    }
    if framing.transfer_encoding && strict {
        if framing.content_length.is_some() {
            return Err(H1Error::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if !framing.chunked || framing.chunked_count > 1 {
            return Err(H1Error::Malformed(
                "Transfer-Encoding without final chunked",
            ));
        }
        if framing.other_coding {
            // gzip, chunked: well-formed, but we would have to forward the inner
            // coding untouched, and we do not implement that.
            return Err(H1Error::NotImplemented(
                "transfer coding other than chunked",
            ));
        }
    }
    Ok(framing)
}

/// `Content-Length = 1*DIGIT`, nothing else: no sign, no list, no spaces inside.
fn parse_content_length(value: &[u8]) -> Result<u64, H1Error> {
    const ERR: H1Error = H1Error::Malformed("invalid Content-Length");
    if value.is_empty() || value.len() > 19 {
        return Err(ERR);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(ERR);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Ok(n)
}

/// Accumulates the codings of one `Transfer-Encoding` field line; field lines
/// add up, so `chunked` must be the last coding over all of them.
fn read_transfer_encoding(value: &[u8], framing: &mut Framing<'_>) -> Result<(), H1Error> {
    const ERR: H1Error = H1Error::Malformed("invalid Transfer-Encoding");
    let value = std::str::from_utf8(value).map_err(|_| ERR)?;
    let mut codings = 0;
    for token in value.split(',') {
        let token = token.trim_matches([' ', '\t']);
        // RFC 9110 §5.6.1: empty list elements are ignored (`,chunked`).
        if token.is_empty() {
            continue;
        }
        if !token.bytes().all(is_token_byte) {
            return Err(ERR);
        }
        codings += 1;
        framing.transfer_encoding = true;
        framing.chunked = token.eq_ignore_ascii_case("chunked");
        if framing.chunked {
            framing.chunked_count += 1;
        } else {
            framing.other_coding = true;
        }
    }
    // A field line that names no coding at all frames nothing we could trust.
    if codings == 0 {
        return Err(ERR);
    }
    Ok(())
}

/// A `Host` value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2):
/// a name or IPv4 address of letters, digits and `-._~`, or an IPv6 literal in
/// brackets, then a port of 1 to 65535 after a colon; or empty. Anything else (a
/// path, userinfo, a list, spaces) is a 400 (RFC 9112 §3.2): a backend could read
/// another host out of it than the one ringlb routed by.
fn check_host(value: &[u8]) -> Result<(), H1Error> {
    const ERR: H1Error = H1Error::Malformed("invalid Host");
    if value.is_empty() {
        // RFC 9112 §3.2: the value a client sends for a target without a host.
        return Ok(());
    }
    let (host, port) = if value.first() == Some(&b'[') {
        let close = value.iter().position(|&b| b == b']').ok_or(ERR)?;
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(ERR);
        }
        (&value[..=close], &value[close + 1..])
    } else {
        let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let host = &value[..colon];
        if !host.iter().all(|&b| is_host_byte(b)) {
            return Err(ERR);
        }
        (host, &value[colon..])
    };
    if host.is_empty() {
        return Err(ERR);
    }
    match port {
        [] => Ok(()),
        [b':', digits @ ..]
            if !digits.is_empty()
                && digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
                    <= 65_535 =>
        {
            Ok(())
        }
        _ => Err(ERR),
    }
}

/// RFC 3986's `unreserved`: what ringlb takes a registered name to be made of.
/// Its `sub-delims` (`,` `;` `=` `!` ...) and percent-encoding are valid there
/// too, but a backend may split `a.example,b.example` on the comma or decode
/// `%2E`, and so read another host than the one ringlb routed by: refused.
#[inline]
fn is_host_byte(b: u8) -> bool {
    HOST_BYTES[usize::from(b)]
}

const HOST_BYTES: [bool; 256] = byte_table(b"-._~");

/// What a request target may hold once httparse has passed it (visible ASCII):
/// all but the bytes RFC 3986 allows nowhere in a URI, and `#`.
const TARGET_BYTES: [bool; 256] = byte_table(b"!$%&'()*+,-./:;=?@[]_~");

/// A field value may not carry NUL, CR or LF (httparse refuses most, this is the
/// belt to its braces; obs-fold never reaches here because httparse refuses it).
fn check_value(value: &[u8]) -> Result<(), H1Error> {
    if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(H1Error::Malformed("control character in field value"));
    }
    Ok(())
}

/// The length of the head httparse found in `buf`, or `None` while it is
/// incomplete (within the size limit).
fn complete_head(
    status: Result<httparse::Status<usize>, httparse::Error>,
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<usize>, H1Error> {
    match status {
        Ok(httparse::Status::Complete(n)) if n > limits.max_header_bytes => {
            Err(H1Error::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            Err(H1Error::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(map_parse_error(e)),
    }
}

/// Refuses a head with a line feed that no carriage return precedes. RFC 9112
/// §2.2 lets a recipient take a bare LF as a line end (httparse does), but a hop in
/// front that splits lines on CRLF only would see other fields than ringlb does
/// (`X-Foo: a\nContent-Length: 5` is one field there, two here): the shape of a
/// smuggling bug. Field values cannot hold one (`check_value`), nor can names or
/// the start line's parts (httparse), so only the line ends need a look: the start
/// line's (at `start_line_end`, where its CR must be) and the blank line's here,
/// each field line's (after the value and any trailing blanks) in `check_field`.
/// That is a few byte reads per field, not a scan of the head.
fn check_line_ends(head: &[u8], start_line: usize, start_line_end: usize) -> Result<(), H1Error> {
    // Empty lines httparse skipped before the start line must be CRLFs too.
    let before = head.get(..start_line).ok_or(BARE_LF)?;
    if before.len() % 2 != 0 || before.chunks(2).any(|line| line != b"\r\n") {
        return Err(BARE_LF);
    }
    match (head.get(start_line_end), head) {
        (Some(b'\r'), [.., b'\r', b'\n']) => Ok(()),
        _ => Err(BARE_LF),
    }
}

const BARE_LF: H1Error = H1Error::Malformed("bare LF in the head");

/// Checks one field of a head: no NUL, CR or LF in its value, and a CRLF (after
/// any trailing blanks) ending its line (see `check_line_ends`).
#[inline]
fn check_field(head: &[u8], value: &[u8]) -> Result<(), H1Error> {
    check_value(value)?;
    let mut at = Span::within(head, value).end();
    loop {
        match head.get(at) {
            Some(b'\r') => return Ok(()),
            // Blanks httparse trimmed off the value.
            Some(b' ' | b'\t') => at += 1,
            _ => return Err(BARE_LF),
        }
    }
}

fn map_parse_error(e: httparse::Error) -> H1Error {
    match e {
        httparse::Error::TooManyHeaders => H1Error::TooManyHeaders,
        httparse::Error::HeaderName => H1Error::Malformed("invalid header name"),
        httparse::Error::HeaderValue => H1Error::Malformed("invalid header value"),
        httparse::Error::NewLine => H1Error::Malformed("invalid line ending"),
        httparse::Error::Status => H1Error::Malformed("invalid status"),
        httparse::Error::Token => H1Error::Malformed("invalid method"),
        httparse::Error::Version => H1Error::Malformed("invalid version"),
    }
}

fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS_CAP] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS_CAP]
}

/// Parses a request head at the start of `buf` and writes the head to send
/// upstream into `out` (cleared first). `Ok(None)` means more bytes are needed.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    forwarding: &Forwarding,
    out: &mut Vec<u8>,
) -> Result<Option<Request>, H1Error> {
    let mut slots = header_slots();
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut slots[..max_headers],
    );
    let head_len = complete_head(status, buf, limits)?;
    let Some(head_len) = head_len else {
        return Ok(None);
    };
    let (Some(method_token), Some(target), Some(minor)) = (req.method, req.path, req.version)
    else {
        return Err(H1Error::Malformed("incomplete request line"));
    };
    let method = Method::from_token(method_token);
    if method_token == "CONNECT" {
        return Err(H1Error::NotImplemented("CONNECT"));
    }
    check_target(method, target)?;
    let authority = target_authority(target)?;
    let http10 = minor == 0;
    let headers = &*req.headers;
    // httparse takes exactly one space before the version: ` HTTP/1.x` is 9 bytes.
    check_line_ends(
        &buf[..head_len],
        Span::within(buf, method_token.as_bytes()).start as usize,
        Span::within(buf, target.as_bytes()).end() + 9,
    )?;

    let framing = read_framing(headers)?;
    if framing.transfer_encoding && http10 {
        return Err(H1Error::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    let body = if framing.chunked {
        BodyKind::Chunked
    } else {
        match framing.content_length {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    if let (BodyKind::Length(n), Some(max)) = (body, limits.max_body_bytes) {
        if n > max {
            return Err(H1Error::BodyTooLarge);
        }
    }

    let mut host: Option<&[u8]> = None;
    let mut expect_continue = false;
    for header in headers {
        check_field(buf, header.value)?;
        if is_framing_lookalike(header.name) {
            return Err(H1Error::Malformed("ambiguous header name"));
        }
        if header.name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(H1Error::Malformed("duplicate Host"));
            }
            check_host(header.value)?;
            host = Some(header.value);
        } else if header.name.eq_ignore_ascii_case("expect") {
            if header.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(H1Error::ExpectationFailed);
            }
        }
    }
    if host.is_none() && !http10 {
        return Err(H1Error::Malformed("missing Host"));
    }
    let keep_alive = if http10 {
        framing.connection.keep_alive && !framing.connection.close
    } else {
        !framing.connection.close
    };
    let upgrade = method == Method::Get
        && !http10
        && body == BodyKind::None
        && !framing.transfer_encoding
        && framing.connection.lists("upgrade")
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("upgrade") && lists_token(h.value, "websocket"));

    out.clear();
    out.extend_from_slice(method_token.as_bytes());
    out.push(b' ');
    match authority {
        None => out.extend_from_slice(target.as_bytes()),
        Some(_) => write_origin_form(out, method, target),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for_written = false;
    for header in headers {
        let name = header.name;
        // A field the client names in `Connection` is its hop's own and goes,
        // but `Host` never does: a request without one is not HTTP/1.1, and a
        // client must not be able to strip it (found by fuzzing).
        let hop_only = framing.connection.lists(name) && !name.eq_ignore_ascii_case("host");
        // RFC 9112 §3.2.2: with an absolute-form target, its authority is the
        // host, and `Host` is rebuilt from it below.
        let replaced_host = authority.is_some() && name.eq_ignore_ascii_case("host");
        if is_hop_by_hop(name)
            || hop_only
            || replaced_host
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            if !forwarded_for_written {
                write_forwarded_for(out, headers, forwarding.client_ip);
                forwarded_for_written = true;
            }
            continue;
        }
        write_field(out, name.as_bytes(), header.value);
    }
    if !forwarded_for_written {
        write_forwarded_for(out, headers, forwarding.client_ip);
    }
    if let Some(authority) = authority {
        write_field(out, b"Host", authority.as_bytes());
    }
    write_field(out, b"X-Forwarded-Proto", forwarding.proto.as_bytes());
    let forwarded_host = authority.map(str::as_bytes).or(host);
    let routing_host = forwarded_host.map(|h| Span::within(buf, h));
    if let Some(host) = forwarded_host {
        write_field(out, b"X-Forwarded-Host", host);
    }
    match body {
        BodyKind::Length(n) => write_content_length(out, n),
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyKind::None | BodyKind::CloseDelimited => {
            if framing.content_length == Some(0) {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    if upgrade {
        out.extend_from_slice(UPGRADE_FIELDS);
    }
    out.extend_from_slice(b"\r\n");

    Ok(Some(Request {
        method,
        http10,
        body,
        keep_alive,
        expect_continue,
        missing_host: forwarded_host.is_none(),
        head_len,
        method_token: Span::within(buf, method_token.as_bytes()),
        host: routing_host,
        path: Span::within(buf, path_of(target).as_bytes()),
        upgrade,
    }))
}

/// The hop-by-hop fields a WebSocket upgrade keeps, in requests and in the 101.
const UPGRADE_FIELDS: &[u8] = b"Connection: upgrade\r\nUpgrade: websocket\r\n";

/// Whether a comma-separated field value lists `token` (case-insensitively).
fn lists_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        // `websocket/13`-style versions are not used by RFC 6455 clients.
        t.eq_ignore_ascii_case(token.as_bytes())
    })
}

/// A header field to write: lower-case name and value.
pub type Field = (Box<str>, Box<[u8]>);

/// Rewrites a head that `parse_request` wrote, for a route's actions: the target's
/// path loses `strip_prefix` (an empty rest becomes `/`; an absolute-form target
/// becomes origin-form), fields named in `remove` or `set` are dropped, and the
/// fields of `set` are added. `out` is cleared first. Names are lower-case.
pub fn rewrite_head(
    head: &[u8],
    strip_prefix: Option<&[u8]>,
    remove: &[Box<str>],
    set: &[Field],
    out: &mut Vec<u8>,
) {
    out.clear();
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or(&[]);
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let mut words = request_line.splitn(3, |&b| b == b' ');
    let (method, target, version) = (
        words.next().unwrap_or(&[]),
        words.next().unwrap_or(&[]),
        words.next().unwrap_or(&[]),
    );
    out.extend_from_slice(method);
    out.push(b' ');
    match strip_prefix {
        Some(prefix) => {
            let target = std::str::from_utf8(target).unwrap_or("/");
            let path = path_of(target);
            let query = target.find('?').map_or("", |i| &target[i..]);
            let rest = path
                .as_bytes()
                .strip_prefix(prefix)
                .unwrap_or(path.as_bytes());
            if !rest.starts_with(b"/") {
                out.push(b'/');
            }
            out.extend_from_slice(rest);
            out.extend_from_slice(query.as_bytes());
        }
        None => out.extend_from_slice(target),
    }
    out.push(b' ');
    out.extend_from_slice(version);
    out.extend_from_slice(b"\r\n");
    let dropped = |name: &[u8]| {
        remove
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
            || set
                .iter()
                .any(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
    };
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or(&[]);
        if dropped(name) {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in set {
        write_field(out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
}

/// `Content_Length`, `Transfer---Encoding` and the like: a name that is not a
/// framing field but becomes one when every run of bytes other than letters and
/// digits is read as one `-`, case-insensitively. Some servers fold names that
/// way, so such a field could frame a body differently upstream than here.
fn is_framing_lookalike(name: &str) -> bool {
    let name = name.as_bytes();
    // Cheap exits first: this runs for every field of every message.
    if name.len() < "content-length".len() || !matches!(name[0] | 0x20, b'c' | b't') {
        return false;
    }
    ["content-length", "transfer-encoding"].iter().any(|field| {
        !name.eq_ignore_ascii_case(field.as_bytes()) && folds_to(name, field.as_bytes())
    })
}

/// Whether `name`, with each run of non-alphanumeric bytes read as one `-` and
/// letters lower-cased, equals `field` (lower-case).
fn folds_to(name: &[u8], field: &[u8]) -> bool {
    let mut at = 0;
    let mut i = 0;
    while i < name.len() {
        let want = field.get(at).copied();
        if name[i].is_ascii_alphanumeric() {
            if want != Some(name[i].to_ascii_lowercase()) {
                return false;
            }
            i += 1;
        } else {
            if want != Some(b'-') {
                return false;
            }
            while i < name.len() && !name[i].is_ascii_alphanumeric() {
                i += 1;
            }
        }
        at += 1;
    }
    at == field.len()
}

/// The authority of an absolute-form target (`http://host:port/path` → `host:port`),
/// `None` for origin-form and `*`. An empty host is invalid (RFC 9110 §4.2.1), and
/// userinfo (`user:pass@`) is refused: it is deprecated (§4.2.4), and a backend
/// could read the host out of it differently.
fn target_authority(target: &str) -> Result<Option<&str>, H1Error> {
    let Some((_, rest)) = target
        .split_once("://")
        .filter(|_| !target.starts_with('/'))
    else {
        return Ok(None);
    };
    let authority = &rest[..authority_end(rest)];
    if authority.is_empty() || authority.starts_with(':') {
        return Err(H1Error::Malformed("absolute target without a host"));
    }
    if authority.contains('@') {
        return Err(H1Error::Malformed("userinfo in request target"));
    }
    // It becomes the `Host` sent upstream, so it follows the same rules.
    check_host(authority.as_bytes())
        .map_err(|_| H1Error::Malformed("invalid host in request target"))?;
    Ok(Some(authority))
}

/// Where the authority ends in what follows `scheme://`.
fn authority_end(rest: &str) -> usize {
    rest.find(['/', '?']).unwrap_or(rest.len())
}

/// The origin-form of an absolute-form target, as sent upstream (RFC 9112 §3.2.1):
/// its path and query, `/` for an empty path, `*` for a server-wide OPTIONS
/// (§3.2.4).
fn write_origin_form(out: &mut Vec<u8>, method: Method, target: &str) {
    let rest = target.split_once("://").map_or("", |(_, rest)| rest);
    let path_and_query = &rest[authority_end(rest)..];
    if path_and_query.is_empty() && method == Method::Options {
        out.push(b'*');
        return;
    }
    if !path_and_query.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(path_and_query.as_bytes());
}

/// origin-form (`/path`), absolute-form (`http://host/path`) or `*` for OPTIONS.
fn check_target(method: Method, target: &str) -> Result<(), H1Error> {
    // RFC 9112 §3.2 / RFC 3986: other octets are percent-encoded in a target.
    // Refused too: the bytes RFC 3986 allows nowhere in a URI (HAProxy refuses
    // the same by default), and `#`: a fragment is never sent, and servers
    // disagree on whether it ends the path (HAProxy's CVE-2023-45539).
    if let Some(b) = target.bytes().find(|&b| !TARGET_BYTES[usize::from(b)]) {
        return Err(H1Error::Malformed(if b.is_ascii() {
            "invalid byte in request target"
        } else {
            "non-ASCII byte in request target"
        }));
    }
    let ok = target.starts_with('/')
        || (target == "*" && method == Method::Options)
        || starts_with_ignore_case(target, "http://")
        || starts_with_ignore_case(target, "https://");
    if ok {
        Ok(())
    } else {
        Err(H1Error::Malformed("invalid request target"))
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// One `X-Forwarded-For` field: every value the client sent, then the client address.
fn write_forwarded_for(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], client: IpAddr) {
    out.extend_from_slice(b"X-Forwarded-For: ");
    for header in headers {
        if header.name.eq_ignore_ascii_case("x-forwarded-for") && !header.value.is_empty() {
            out.extend_from_slice(header.value);
            out.extend_from_slice(b", ");
        }
    }
    write_ip(out, client);
    out.extend_from_slice(b"\r\n");
}

/// An address in its usual text form. IPv4 (the common case, once per request)
/// without `fmt` machinery.
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                let mut digits = itoa_buf(u64::from(octet));
                out.extend_from_slice(digits.as_bytes_mut());
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    let mut digits = itoa_buf(n);
    out.extend_from_slice(digits.as_bytes_mut());
    out.extend_from_slice(b"\r\n");
}

/// Decimal formatting without `fmt` machinery.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// The field lines of a head that already passed `parse_request`, as
/// (name, value) with the value's surrounding whitespace trimmed.
fn field_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let value = &line[colon + 1..];
            let start = value
                .iter()
                .position(|b| !b" \t".contains(b))
                .unwrap_or(value.len());
            let end = value
                .iter()
                .rposition(|b| !b" \t".contains(b))
                .map_or(start, |e| e + 1);
            Some((&line[..colon], &value[start..end]))
        })
}

/// The value of the first `name` field of a validated request head.
pub fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    field_lines(head)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

/// The value of cookie `name` in the `Cookie` fields of a validated request head.
pub fn cookie_value<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    field_lines(head)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let rest = pair.strip_prefix(name.as_bytes())?;
            rest.strip_prefix(b"=")
        })
}

/// The method and target of a validated request head's request line.
pub fn method_and_target(head: &[u8]) -> (&[u8], &[u8]) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut words = line.splitn(3, |&b| b == b' ');
    (words.next().unwrap_or(&[]), words.next().unwrap_or(&[]))
}

/// Writes the size line of one chunk (`{len:x}\r\n`).
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Parses a response head at the start of `buf` and writes the head to send to
/// the client into `out` (cleared first). `Ok(None)` means more bytes are needed.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    client: &ClientSide,
    out: &mut Vec<u8>,
) -> Result<Option<Response>, H1Error> {
    let mut slots = header_slots();
    let max_headers = limits.max_headers.clamp(1, MAX_HEADERS_CAP);
    let mut res = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut slots[..max_headers],
    );
    let head_len = complete_head(status, buf, limits)?;
    let Some(head_len) = head_len else {
        return Ok(None);
    };
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err(H1Error::Malformed("incomplete status line"));
    };
    if !(100..=599).contains(&code) {
        return Err(H1Error::Malformed("invalid status"));
    }
    let headers = &*res.headers;
    // A status line is short: finding its end byte by byte costs little.
    let status_line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(0);
    check_line_ends(&buf[..head_len], 0, status_line_end.saturating_sub(1))?;
    for header in headers {
        check_field(buf, header.value)?;
        if is_framing_lookalike(header.name) {
            return Err(H1Error::Malformed("ambiguous header name"));
        }
    }
    if code == 101 {
        let connection = read_framing_with(headers, false)?.connection;
        let to_websocket = connection.lists("upgrade")
            && headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("upgrade") && lists_token(h.value, "websocket")
            });
        if !client.upgrade {
            return Err(H1Error::Malformed("unrequested protocol switch"));
        }
        if !to_websocket || minor != 1 {
            return Err(H1Error::Malformed("101 without Upgrade: websocket"));
        }
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 101 ");
        out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for header in headers {
            if is_hop_by_hop(header.name) || connection.lists(header.name) {
                continue;
            }
            write_field(out, header.name.as_bytes(), header.value);
        }
        out.extend_from_slice(UPGRADE_FIELDS);
        out.extend_from_slice(b"\r\n");
        return Ok(Some(Response {
            status: 101,
            upstream_body: BodyKind::None,
            client_body: BodyKind::None,
            upstream_reusable: false,
            client_keep_alive: false,
            interim: false,
            upgraded: true,
            head_len,
        }));
    }
    let interim = code < 200;
    let no_body = interim || code == 204 || code == 304 || client.method == Method::Head;
    let framing = read_framing_with(headers, !no_body)?;
    let upstream_body = if no_body {
        BodyKind::None
    } else if framing.chunked {
        BodyKind::Chunked
    } else {
        match framing.content_length {
            Some(n) => BodyKind::Length(n),
            None => BodyKind::CloseDelimited,
        }
    };
    let upstream_reusable =
        minor == 1 && !framing.connection.close && upstream_body != BodyKind::CloseDelimited;
    let client_body = match upstream_body {
        BodyKind::Chunked if client.http10 => BodyKind::CloseDelimited,
        other => other,
    };
    let client_keep_alive = client.keep_alive && client_body != BodyKind::CloseDelimited;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = itoa_buf(u64::from(code));
    out.extend_from_slice(digits.as_bytes_mut());
    out.push(b' ');
    out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in headers {
        if is_hop_by_hop(header.name) || framing.connection.lists(header.name) {
            continue;
        }
        write_field(out, header.name.as_bytes(), header.value);
    }
    match client_body {
        BodyKind::Length(n) => write_content_length(out, n),
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyKind::None => {
            // HEAD and 304 keep the length of the representation they describe.
            if let (Some(n), false) = (framing.content_length, code == 204 || interim) {
                write_content_length(out, n);
            }
        }
        BodyKind::CloseDelimited => {}
    }
    if !interim {
        if !client_keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if client.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");

    Ok(Some(Response {
        status: code,
        upstream_body,
        client_body,
        upstream_reusable,
        client_keep_alive,
        interim,
        upgraded: false,
        head_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd() -> Forwarding {
        Forwarding {
            client_ip: "10.1.2.3".parse().unwrap(),
            proto: "http",
        }
    }

    fn req(raw: &[u8]) -> Result<Option<Request>, H1Error> {
        let mut out = Vec::new();
        parse_request(raw, &Limits::default(), &fwd(), &mut out)
    }

    fn rewritten(raw: &[u8]) -> String {
        let mut out = Vec::new();
        parse_request(raw, &Limits::default(), &fwd(), &mut out)
            .unwrap()
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn simple_get_is_complete_and_keep_alive() {
        let r = req(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.body, BodyKind::None);
        assert!(r.keep_alive);
        assert!(!r.http10);
        assert_eq!(r.head_len, 28);
    }

    #[test]
    fn partial_head_needs_more() {
        assert_eq!(req(b"GET /a HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
    }

    #[test]
    fn http10_defaults_to_close_unless_asked() {
        let r = req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(r.http10 && !r.keep_alive);
        let r = req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
    }

    #[test]
    fn rewrite_strips_hop_by_hop_and_adds_forwarding() {
        let out = rewritten(
            b"GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: a\r\n\
              Upgrade: websocket\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\n\
              X-Forwarded-Host: evil\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n\
             Accept: */*\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n\r\n"
        );
    }

    #[test]
    fn connection_cannot_strip_host() {
        // Found by the request_head fuzz target.
        let out = rewritten(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Host, X-Secret\r\nX-Secret: s\r\n\r\n");
        assert!(out.starts_with("GET / HTTP/1.1\r\nHost: a\r\n"), "{out}");
        assert!(!out.contains("X-Secret"), "{out}");
    }

    #[test]
    fn an_absolute_target_without_a_path_has_an_empty_path_inside_the_head() {
        // Found by the request_head fuzz target: the empty path was a string of
        // its own, so its span pointed outside the head.
        let raw = b"GET http://a.ey HTTP/1.1\r\nHost: other\r\n\r\n";
        let r = req(raw).unwrap().unwrap();
        assert_eq!(r.path.len, 0);
        assert_eq!(r.path.start as usize, "GET http://a.ey".len());
        assert_eq!(r.host.unwrap().of(raw), b"a.ey");
    }

    #[test]
    fn a_bare_lf_anywhere_in_a_head_is_refused() {
        let bare: [&[u8]; 9] = [
            // Every line end bare.
            b"GET /headers HTTP/1.1\nHost: a.test\nX-Foo: bar\nConnection: close\n\n",
            // A field line hiding a Content-Length from a CRLF-only reader.
            b"GET /headers HTTP/1.1\r\nHost: a.test\r\nX-Foo: a\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            // The start line only.
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            // The blank line only.
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            // After trailing blanks, and after an empty value.
            b"GET / HTTP/1.1\r\nHost: a \t\nX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:   \n\r\n",
            // An empty line before the request line (found by the framing fuzz
            // target): a CRLF one is skipped, a bare one is not.
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in bare {
            assert_eq!(
                req(raw),
                Err(H1Error::Malformed("bare LF in the head")),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // CRLF everywhere, blanks and empty values included: fine, and a body's bare
        // LFs are not the head's.
        let fine = b"GET / HTTP/1.1\r\nHost: a \t\r\nX-Empty:\r\nX-Blank:   \r\nContent-Length: 3\r\n\r\na\nb";
        assert!(req(fine).unwrap().is_some());
        assert!(req(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
        let side = ClientSide {
            method: Method::Get,
            http10: false,
            keep_alive: true,
            upgrade: false,
        };
        let mut out = Vec::new();
        let response = b"HTTP/1.1 200 OK\r\nX-Foo: a\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(response, &Limits::default(), &side, &mut out),
            Err(H1Error::Malformed("bare LF in the head"))
        );
    }

    const WS: &[u8] = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_websocket_upgrade_keeps_its_upgrade_fields() {
        let r = req(WS).unwrap().unwrap();
        assert!(r.upgrade);
        assert_eq!(
            rewritten(WS),
            "GET /chat HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        // Lists and case do not matter.
        let listed =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: UPGRADE\r\nUpgrade: foo, WebSocket\r\n\r\n";
        assert!(req(listed).unwrap().unwrap().upgrade);
    }

    #[test]
    fn anything_else_that_asks_for_an_upgrade_is_an_ordinary_request() {
        let ordinary: [&[u8]; 6] = [
            // h2c, a known smuggling vector: stripped.
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            // Not GET.
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
            // A body.
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi",
            // HTTP/1.0.
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            // No Connection: upgrade.
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            // No Upgrade field.
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n",
        ];
        for raw in ordinary {
            let r = req(raw).unwrap().unwrap();
            assert!(!r.upgrade, "{}", String::from_utf8_lossy(raw));
            let out = rewritten(raw).to_ascii_lowercase();
            assert!(!out.contains("upgrade"), "{out}");
            assert!(!out.contains("http2-settings"), "{out}");
        }
    }

    #[test]
    fn a_101_is_valid_only_for_a_websocket_upgrade() {
        let asked = ClientSide {
            method: Method::Get,
            http10: false,
            keep_alive: true,
            upgrade: true,
        };
        let not_asked = ClientSide {
            upgrade: false,
            ..asked
        };
        let accept =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nKeep-Alive: 5\r\n\r\n\x81\x02hi";
        let mut out = Vec::new();
        let r = parse_response(accept, &Limits::default(), &asked, &mut out)
            .unwrap()
            .unwrap();
        assert!(r.upgraded && !r.upstream_reusable && !r.interim);
        assert_eq!(r.status, 101);
        assert_eq!(
            r.head_len,
            accept.len() - 4,
            "the frame after the head is not part of it"
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        assert!(parse_response(accept, &Limits::default(), &not_asked, &mut out).is_err());
        let elsewhere =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
        assert!(parse_response(elsewhere, &Limits::default(), &asked, &mut out).is_err());
        // Any other answer is an ordinary response.
        let refused = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        let r = parse_response(refused, &Limits::default(), &asked, &mut out)
            .unwrap()
            .unwrap();
        assert!(!r.upgraded && r.upstream_reusable && r.client_keep_alive);
    }

    #[test]
    fn client_addresses_are_written_as_their_usual_text() {
        let mut addresses: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.9.100",
            "192.0.2.1",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:192.0.2.1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let rng = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..2000 {
            let x = crate::cluster::balancer::next_random(&rng);
            addresses.push(IpAddr::V4(std::net::Ipv4Addr::from((x >> 32) as u32)));
        }
        let mut out = Vec::new();
        for ip in addresses {
            out.clear();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8_lossy(&out), ip.to_string());
        }
    }

    #[test]
    fn rewrite_reframes_bodies() {
        let out = rewritten(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
        assert!(out.ends_with("Content-Length: 5\r\n\r\n"), "{out}");
        let out = rewritten(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{out}");
    }

    #[test]
    fn smuggling_cases_are_rejected() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for case in cases {
            let got = req(case);
            assert!(
                matches!(got, Err(H1Error::Malformed(_))),
                "{:?} gave {got:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn lookalikes_of_framing_fields_are_refused_in_requests_and_responses() {
        for name in [
            "Content_Length",
            "transfer_encoding",
            "Transfer---Encoding",
            "Transfer___Encoding",
            "content-_-length",
            "Transfer.Encoding",
            "CONTENT~LENGTH",
        ] {
            let request = format!("POST / HTTP/1.1\r\nHost: h\r\n{name}: 5\r\n\r\nhello");
            assert_eq!(
                req(request.as_bytes()),
                Err(H1Error::Malformed("ambiguous header name")),
                "{name}"
            );
            let response = format!("HTTP/1.1 200 OK\r\n{name}: 5\r\n\r\nhello");
            let mut out = Vec::new();
            assert_eq!(
                parse_response(response.as_bytes(), &Limits::default(), &GET11, &mut out),
                Err(H1Error::Malformed("ambiguous header name")),
                "{name}"
            );
        }
        // The real names, other separators and near misses are ordinary fields.
        for name in [
            "X_Custom",
            "Content-Type",
            "-Content-Length",
            "Content-Length-X",
            "Content-Lengths",
            "Transfer-Encodings",
            "ContentLength",
        ] {
            let request = format!("GET / HTTP/1.1\r\nHost: h\r\n{name}: 1\r\n\r\n");
            assert!(req(request.as_bytes()).is_ok(), "{name}");
        }
        assert!(req(b"POST / HTTP/1.1\r\nHost: h\r\ncontent-LENGTH: 1\r\n\r\nx").is_ok());
    }

    #[test]
    fn an_absolute_target_is_sent_in_origin_form_with_its_authority_as_host() {
        let raw =
            b"GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: b.example\r\nAccept: x\r\n\r\n";
        let out = rewritten(raw);
        assert_eq!(
            out,
            "GET /p?q=1 HTTP/1.1\r\nAccept: x\r\nX-Forwarded-For: 10.1.2.3\r\n\
             Host: a.example:8080\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: a.example:8080\r\n\r\n"
        );
        let request = req(raw).unwrap().unwrap();
        assert_eq!(request.host.unwrap().of(raw), b"a.example:8080");
        assert_eq!(request.path.of(raw), b"/p");

        let first_line = |raw: &[u8]| rewritten(raw).lines().next().unwrap().to_string();
        assert_eq!(
            first_line(b"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n"),
            "GET / HTTP/1.1"
        );
        assert_eq!(
            first_line(b"GET http://a?x=/y HTTP/1.1\r\nHost: a\r\n\r\n"),
            "GET /?x=/y HTTP/1.1"
        );
        assert_eq!(
            first_line(b"OPTIONS http://a HTTP/1.1\r\nHost: a\r\n\r\n"),
            "OPTIONS * HTTP/1.1"
        );
        let raw = b"GET http://a?x=/y HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(req(raw).unwrap().unwrap().path.of(raw), b"");

        // HTTP/1.0 without Host: the authority gives one, the backend's is not added.
        let raw = b"GET http://a.example/ HTTP/1.0\r\n\r\n";
        assert!(!req(raw).unwrap().unwrap().missing_host);
        assert!(rewritten(raw).contains("\r\nHost: a.example\r\n"));
    }

    #[test]
    fn absolute_targets_without_a_host_or_with_userinfo_are_refused() {
        for (raw, why) in [
            (
                &b"GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"[..],
                "userinfo in request target",
            ),
            (
                b"GET http://@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
                "userinfo in request target",
            ),
            (
                b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
                "absolute target without a host",
            ),
            (
                b"GET http://:80/x HTTP/1.1\r\nHost: a\r\n\r\n",
                "absolute target without a host",
            ),
        ] {
            assert_eq!(req(raw), Err(H1Error::Malformed(why)));
        }
    }

    #[test]
    fn host_values_must_be_a_host_and_a_port() {
        for ok in [
            "a.example",
            "a.example:8080",
            "A-b_c~d.example",
            "10.0.0.1:80",
            "[::1]:443",
            "[2001:db8::1]",
            "xn--bcher-kva.example",
            "a.example.",
            "under_score.example:65535",
            "",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
            assert!(req(raw.as_bytes()).is_ok(), "{ok:?}");
        }
        for bad in [
            "a.example, b.example",
            "a.example/x",
            "user@a.example",
            "a.example:abc",
            "a.example:123456",
            "a b",
            "[::1",
            "[]",
            "a%zz",
            "a%2E",
            "a\"b",
            "a.example,b.example",
            "a;b",
            ":80",
            "a:",
            "a:65536",
            "[v1.x]",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(
                req(raw.as_bytes()),
                Err(H1Error::Malformed("invalid Host")),
                "{bad:?}"
            );
        }
        let raw = b"GET http://a.example:x/ HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            req(raw),
            Err(H1Error::Malformed("invalid host in request target"))
        );
    }

    #[test]
    fn a_target_with_bytes_outside_ascii_is_refused() {
        assert_eq!(
            req(b"GET /\xce\xb4 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(H1Error::Malformed("non-ASCII byte in request target"))
        );
        assert!(req(b"GET /%CE%B4 HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        for bad in [
            "/a#b", "/\"", "/<", "/>", "/\\", "/^", "/`", "/{", "/|", "/}",
        ] {
            let raw = format!("GET {bad} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                req(raw.as_bytes()),
                Err(H1Error::Malformed("invalid byte in request target")),
                "{bad}"
            );
        }
        assert!(req(b"GET /a-._~!$&'()*+,;=:@/%20?q=/? HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
    }

    #[test]
    fn empty_elements_of_transfer_encoding_are_ignored_but_some_coding_is_needed() {
        for ok in [",chunked", "chunked,", " , chunked , "] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {ok}\r\n\r\n");
            assert_eq!(
                req(raw.as_bytes()).unwrap().unwrap().body,
                BodyKind::Chunked,
                "{ok:?}"
            );
        }
        for bad in ["", ",", " , "] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {bad}\r\nContent-Length: 1\r\n\r\nx");
            assert_eq!(
                req(raw.as_bytes()),
                Err(H1Error::Malformed("invalid Transfer-Encoding")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bodiless_responses_are_not_judged_by_their_framing_fields() {
        let head = ClientSide {
            method: Method::Head,
            ..GET11
        };
        let (r, _) = res(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            head,
        );
        assert_eq!(r.upstream_body, BodyKind::None);
        let (r, _) = res(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            GET11,
        );
        assert!(r.upstream_reusable);
        // With a body, the same fields are refused.
        let mut out = Vec::new();
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(parse_response(bad, &Limits::default(), &GET11, &mut out).is_err());
    }

    #[test]
    fn unsupported_things_get_their_own_status() {
        let e = req(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap_err();
        assert_eq!(e.request_status(), 501);
        let e = req(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap_err();
        assert_eq!(e.request_status(), 501);
        let e = req(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n").unwrap_err();
        assert_eq!(e.request_status(), 417);
    }

    #[test]
    fn limits_give_431_and_413() {
        let limits = Limits {
            max_header_bytes: 1024,
            max_headers: 3,
            max_body_bytes: Some(10),
        };
        let mut out = Vec::new();
        let many = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request(many, &limits, &fwd(), &mut out),
            Err(H1Error::TooManyHeaders)
        );
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nA: ".to_vec();
        big.resize(1100, b'a');
        assert_eq!(
            parse_request(&big, &limits, &fwd(), &mut out),
            Err(H1Error::HeadTooLarge)
        );
        let body = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            parse_request(body, &limits, &fwd(), &mut out),
            Err(H1Error::BodyTooLarge)
        );
    }

    #[test]
    fn expect_continue_is_recorded_and_not_forwarded() {
        let raw = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert!(req(raw).unwrap().unwrap().expect_continue);
        assert!(!rewritten(raw).to_ascii_lowercase().contains("expect"));
    }

    fn res(raw: &[u8], client: ClientSide) -> (Response, String) {
        let mut out = Vec::new();
        let r = parse_response(raw, &Limits::default(), &client, &mut out)
            .unwrap()
            .unwrap();
        (r, String::from_utf8(out).unwrap())
    }

    const GET11: ClientSide = ClientSide {
        method: Method::Get,
        http10: false,
        keep_alive: true,
        upgrade: false,
    };

    #[test]
    fn response_framing_follows_rfc9112() {
        let (r, _) = res(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", GET11);
        assert_eq!(r.upstream_body, BodyKind::Length(3));
        assert!(r.upstream_reusable && r.client_keep_alive);
        let (r, _) = res(b"HTTP/1.1 200 OK\r\n\r\n", GET11);
        assert_eq!(r.upstream_body, BodyKind::CloseDelimited);
        assert!(!r.upstream_reusable && !r.client_keep_alive);
        for raw in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        ] {
            let (r, _) = res(raw, GET11);
            assert_eq!(r.upstream_body, BodyKind::None);
            assert!(r.upstream_reusable);
        }
        let head = ClientSide {
            method: Method::Head,
            ..GET11
        };
        let (r, out) = res(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head);
        assert_eq!(r.upstream_body, BodyKind::None);
        assert!(out.contains("Content-Length: 99\r\n"), "{out}");
    }

    #[test]
    fn chunked_response_to_http10_client_is_close_delimited() {
        let c = ClientSide {
            method: Method::Get,
            http10: true,
            keep_alive: true,
            upgrade: false,
        };
        let (r, out) = res(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", c);
        assert_eq!(r.client_body, BodyKind::CloseDelimited);
        assert!(!r.client_keep_alive);
        assert!(out.contains("Connection: close\r\n") && !out.contains("chunked"));
    }

    #[test]
    fn bad_responses_are_rejected() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 099 Nope\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
        ];
        for case in cases {
            let mut out = Vec::new();
            let got = parse_response(case, &Limits::default(), &GET11, &mut out);
            assert!(
                got.is_err(),
                "{:?} gave {got:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    /// Random heads built from HTTP-ish pieces never panic the parsers, and an
    /// accepted request always reports a head length within the input.
    #[test]
    fn random_input_never_panics() {
        const PIECES: &[&[u8]] = &[
            b"GET ",
            b"POST ",
            b"HEAD ",
            b"/",
            b"/a?b",
            b" HTTP/1.1",
            b" HTTP/1.0",
            b"HTTP/1.1 200 OK",
            b"\r\n",
            b"\n",
            b"\r",
            b"Host: h",
            b"Content-Length: ",
            b"Transfer-Encoding: ",
            b"chunked",
            b"gzip, ",
            b"Connection: ",
            b"close",
            b"keep-alive",
            b", x",
            b"5",
            b"-1",
            b":",
            b" ",
            b"\t",
            b"\0",
            b"\x7f",
            b"\xff",
            b"Expect: 100-continue",
            b"X-Forwarded-For: 1",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let limits = Limits {
            max_header_bytes: 1024,
            max_headers: 8,
            max_body_bytes: Some(100),
        };
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 24) {
                input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if let Ok(Some(r)) = parse_request(&input, &limits, &fwd(), &mut out) {
                assert!(r.head_len <= input.len());
            }
            for method in [Method::Get, Method::Head] {
                let side = ClientSide {
                    method,
                    http10: next() % 2 == 0,
                    keep_alive: true,
                    upgrade: next() % 2 == 0,
                };
                if let Ok(Some(r)) = parse_response(&input, &limits, &side, &mut out) {
                    assert!(r.head_len <= input.len());
                }
            }
            let mut decoder = crate::protocol::h1::ChunkedDecoder::new(64);
            let mut pos = 0;
            while let Ok((used, _)) = decoder.decode(&input[pos..]) {
                pos += used;
                if used == 0 {
                    break;
                }
            }
        }
    }

    #[test]
    fn header_cookie_and_path_lookups() {
        let head = b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-User:  alice \r\n\
                     Cookie: a=1; session=xyz; b=2\r\ncookie: late=3\r\n\r\n";
        assert_eq!(header_value(head, "x-user"), Some(&b"alice"[..]));
        assert_eq!(header_value(head, "missing"), None);
        assert_eq!(cookie_value(head, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie_value(head, "late"), Some(&b"3"[..]));
        assert_eq!(cookie_value(head, "sess"), None);
        assert_eq!(method_and_target(head), (&b"GET"[..], &b"/a/b?x=1"[..]));
    }

    #[test]
    fn chunk_header_is_lower_hex() {
        let mut out = Vec::new();
        write_chunk_header(&mut out, 0x1a2b);
        write_chunk_header(&mut out, 0);
        assert_eq!(out, b"1a2b\r\n0\r\n");
    }
}
