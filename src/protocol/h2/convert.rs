//! `protocol::h2::convert`: HTTP/2 messages as the HTTP/1.1 messages they would
//! have been, and back (RFC 9113 §8.2-8.3, RFC 9110 §7.6.1).
//!
//! Owns the version mapping only: an HTTP/2 request head (as h2 decoded it)
//! written as HTTP/1.1 bytes, which then go through `h1::parse_request` like any
//! client's, so HTTP/2 requests meet the same smuggling rules, limits and
//! rewrites; an HTTP/1.1 response head and trailers as HTTP/2 ones; HTTP/2
//! trailers as a chunked body's trailer section. Connection-specific fields never
//! cross versions. No I/O, no routing, no policy beyond what the RFCs require.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::protocol::h1;
use http::{Method, Response, StatusCode};
use thiserror::Error;

/// Why a message could not be converted. Whose fault it is decides the status.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ConvertError {
    /// The client's: neither `:authority` nor `Host` (400).
    #[error("the request names no host (no :authority and no host field)")]
    NoAuthority,
    /// The client's: `:authority` and `Host` name different hosts, or `Host`
    /// came twice (400).
    #[error("the request's :authority and host field differ")]
    HostMismatch,
    /// The client's: no `:path` (400).
    #[error("the request has no :path")]
    NoPath,
    /// The client's: a field value holds CR, LF or NUL (400; RFC 9113 §8.2.1).
    #[error("a request field value holds CR, LF or NUL")]
    BadRequestField,
    /// Not supported: CONNECT (501), as over HTTP/1.1.
    #[error("CONNECT is not supported")]
    Connect,
    /// The backend's: a response field HTTP/2 cannot carry (502).
    #[error("the backend sent a field HTTP/2 cannot carry")]
    BadResponseField,
}

impl ConvertError {
    /// The status to answer with.
    pub fn status(self) -> u16 {
        match self {
            ConvertError::NoAuthority
            | ConvertError::HostMismatch
            | ConvertError::NoPath
            | ConvertError::BadRequestField => 400,
            ConvertError::Connect => 501,
            ConvertError::BadResponseField => 502,
        }
    }

    /// Whether the backend is to blame (else the client, or a method ringlb does
    /// not proxy). Never a reason to retry: the same message converts the same.
    pub fn backend_fault(self) -> bool {
        self == ConvertError::BadResponseField
    }
}

/// How the converted request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No body: the stream ended with its head.
    None,
    /// `Content-Length`, as the client sent it (h2 holds the DATA to it).
    Length,
    /// No length given and more to come: `Transfer-Encoding: chunked` was added,
    /// and the body is to be written chunked, ending with [`trailers_to_h1`].
    Chunked,
}

/// Fields that describe one connection (RFC 9113 §8.2.2, RFC 9110 §7.6.1): never
/// carried from one version to the other. h2 refuses them in requests already.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

fn connection_specific(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"te")
        || CONNECTION_SPECIFIC
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
}

/// Methods whose request content has a meaning: sent with `Content-Length: 0`
/// when the stream ended without a body or a length (RFC 9110 §8.6).
fn expects_content(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT) || method.as_str() == "PATCH"
}

fn clean_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// Writes the HTTP/1.1 head an HTTP/2 request would have been into `out`
/// (cleared first): request line from `:method` and `:path`, `host` from
/// `:authority` (or the `host` field, which must agree), `cookie` fields joined
/// into one (RFC 9113 §8.2.3), connection-specific fields and `te` dropped, and
/// `transfer-encoding: chunked` when a body follows without a length.
/// `end_of_stream`: the stream ended with its head.
pub fn request_head(
    parts: &http::request::Parts,
    end_of_stream: bool,
    out: &mut Vec<u8>,
) -> Result<RequestBody, ConvertError> {
    out.clear();
    if parts.method == Method::CONNECT {
        return Err(ConvertError::Connect);
    }
    let target = match parts.uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => pq.as_str(),
        _ => return Err(ConvertError::NoPath),
    };
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(ConvertError::HostMismatch);
    }
    let host = match (parts.uri.authority(), host_field) {
        (Some(authority), Some(field)) => {
            if !field
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(ConvertError::HostMismatch);
            }
            authority.as_str().as_bytes()
        }
        (Some(authority), None) => authority.as_str().as_bytes(),
        // An empty host names nothing (RFC 9113 §8.3.1): as if none were sent.
        (None, Some(field)) if !field.is_empty() => field.as_bytes(),
        (None, _) => return Err(ConvertError::NoAuthority),
    };
    if !clean_value(host) {
        return Err(ConvertError::BadRequestField);
    }
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    let mut cookies: Option<Vec<u8>> = None;
    for (name, value) in &parts.headers {
        let name = name.as_str();
        let value = value.as_bytes();
        if !clean_value(value) {
            return Err(ConvertError::BadRequestField);
        }
        match name {
            "host" => continue,
            "cookie" => {
                let joined = cookies.get_or_insert_with(Vec::new);
                if !joined.is_empty() {
                    joined.extend_from_slice(b"; ");
                }
                joined.extend_from_slice(value);
                continue;
            }
            "content-length" => has_length = true,
            _ if connection_specific(name.as_bytes()) => continue,
            _ => {}
        }
        push_field(out, name, value);
    }
    if let Some(cookies) = cookies {
        push_field(out, "cookie", &cookies);
    }
    let body = if has_length {
        RequestBody::Length
    } else if !end_of_stream {
        push_field(out, "transfer-encoding", b"chunked");
        RequestBody::Chunked
    } else {
        if expects_content(&parts.method) {
            push_field(out, "content-length", b"0");
        }
        RequestBody::None
    };
    out.extend_from_slice(b"\r\n");
    Ok(body)
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The fields of an HTTP/1.1 head that are end-to-end: not connection-specific,
/// not `te`, and not named by `Connection` (RFC 9110 §7.6.1).
fn end_to_end<'a, I>(fields: I) -> impl Iterator<Item = (&'a [u8], &'a [u8])>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let named: Vec<&'a [u8]> = fields
        .clone()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
        .collect();
    fields.filter(move |(name, _)| {
        !connection_specific(name) && !named.iter().any(|n| n.eq_ignore_ascii_case(name))
    })
}

fn header_map<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    skip: &[&str],
) -> Result<HeaderMap, ConvertError> {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        let name = HeaderName::from_bytes(name).map_err(|_| ConvertError::BadResponseField)?;
        if skip.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| ConvertError::BadResponseField)?;
        map.append(name, value);
    }
    Ok(map)
}

/// An HTTP/1.1 backend's final response head as an HTTP/2 one: the status, and
/// its end-to-end fields with their names lowercased. `Content-Length` is kept
/// only when there is exactly one and it is a number (the body that follows has
/// that length); HEAD, 204 and 304 answers may carry one the HTTP/1.1 parser
/// did not hold them to, and HTTP/2 clients refuse a malformed one. 1xx answers
/// are not final (interim ones go out as h2's informational responses; 101
/// cannot happen over HTTP/2, RFC 9113 §8.6): refused here.
pub fn response_head<'a, I>(status: u16, fields: I) -> Result<Response<()>, ConvertError>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    if status < 200 {
        return Err(ConvertError::BadResponseField);
    }
    let status = StatusCode::from_u16(status).map_err(|_| ConvertError::BadResponseField)?;
    let lengths: Vec<&[u8]> = fields
        .clone()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"content-length"))
        .map(|(_, value)| value)
        .collect();
    let sound_length = matches!(lengths.as_slice(), [one] if !one.is_empty() && one.iter().all(u8::is_ascii_digit));
    let skip: &[&str] = if sound_length {
        &[]
    } else {
        &["content-length"]
    };
    let headers = header_map(end_to_end(fields), skip)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// A request head ringlb parsed and rewrote (HTTP/1.1 bytes, `head`) as the
/// HTTP/2 request sent to an HTTP/2 backend: `:method`, `:scheme` (`https` when
/// `tls`), `:authority` from `Host` (or `authority` when the request had none,
/// HTTP/1.0), `:path` from the target (the path of an absolute-form one);
/// end-to-end fields only, `expect` dropped (ringlb answers it itself), and
/// `te: trailers` added: ringlb carries trailers both ways (gRPC servers ask
/// for it). The `Content-Length` is kept.
pub fn request_from_h1(
    head: &[u8],
    tls: bool,
    authority: Option<&str>,
) -> Result<http::Request<()>, ConvertError> {
    // One slot per line: the rewrite may have added fields past `max_headers`.
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let mut fields = vec![httparse::EMPTY_HEADER; lines];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(ConvertError::BadRequestField),
    }
    let method = request.method.ok_or(ConvertError::BadRequestField)?;
    let target = request.path.ok_or(ConvertError::NoPath)?;
    let pairs = request.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    let host = match authority {
        Some(authority) => authority.as_bytes(),
        None => pairs
            .clone()
            .find(|(name, _)| name.eq_ignore_ascii_case(b"host"))
            .map(|(_, value)| value)
            .ok_or(ConvertError::NoAuthority)?,
    };
    let path = if target.starts_with('/') || target == "*" {
        target.to_string()
    } else {
        // Absolute form: the host is already in `Host` (RFC 9112 §3.2.2).
        let uri: http::Uri = target.parse().map_err(|_| ConvertError::NoPath)?;
        uri.path_and_query()
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string())
    };
    let uri = http::Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(host)
        .path_and_query(path)
        .build()
        .map_err(|_| ConvertError::BadRequestField)?;
    let mut headers = HeaderMap::with_capacity(request.headers.len() + 1);
    for (name, value) in end_to_end(pairs) {
        if name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"expect") {
            continue;
        }
        let name = HeaderName::from_bytes(name).map_err(|_| ConvertError::BadRequestField)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| ConvertError::BadRequestField)?;
        headers.append(name, value);
    }
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let mut converted = http::Request::new(());
    *converted.method_mut() =
        Method::from_bytes(method.as_bytes()).map_err(|_| ConvertError::BadRequestField)?;
    *converted.uri_mut() = uri;
    *converted.headers_mut() = headers;
    Ok(converted)
}

/// An HTTP/2 backend's response head as the HTTP/1.1 head it would have been,
/// appended to `out`, for `h1::parse_response` to check and rewrite as for any
/// backend: the status line, the fields, and the framing HTTP/1.1 needs when a
/// body may follow (not for a HEAD request, nor a 1xx, 204 or 304: RFC 9110
/// §6.4.1): its `Content-Length` if it sent one, else `Content-Length: 0` when
/// the stream already ended (`ended`), else `Transfer-Encoding: chunked` (a
/// DATA frame becomes a chunk, and HTTP/2 trailers the chunked trailer section).
pub fn response_to_h1(
    parts: &http::response::Parts,
    ended: bool,
    head_request: bool,
    out: &mut Vec<u8>,
) {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Status").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for (name, value) in &parts.headers {
        // h2 refuses connection-specific fields in what it receives.
        has_length |= name == http::header::CONTENT_LENGTH;
        push_field(out, name.as_str(), value.as_bytes());
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !has_length && !bodiless {
        if ended {
            push_field(out, "content-length", b"0");
        } else {
            push_field(out, "transfer-encoding", b"chunked");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A trailer section's field lines (HTTP/1.1, each ending in CRLF) as HTTP/2
/// trailers; `None` when they do not parse or convert.
pub fn trailer_section(lines: &[u8]) -> Option<HeaderMap> {
    let mut section = Vec::with_capacity(lines.len() + 2);
    section.extend_from_slice(lines);
    section.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; h1::MAX_HEADERS_CAP];
    match httparse::parse_headers(&section, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => {
            trailers_from_h1(fields.iter().map(|h| (h.name.as_bytes(), h.value))).ok()
        }
        _ => None,
    }
}

/// Fields a trailer section may not carry on to the other version: framing and
/// routing ones (RFC 9110 §6.5.1), besides the connection-specific ones.
const NOT_IN_TRAILERS: [&str; 4] = ["content-length", "host", "trailer", "content-encoding"];

/// A chunked body's trailer fields (HTTP/1.1) as HTTP/2 trailers.
pub fn trailers_from_h1<'a, I>(fields: I) -> Result<HeaderMap, ConvertError>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    header_map(end_to_end(fields), &NOT_IN_TRAILERS)
}

/// HTTP/2 request trailers as the end of a chunked body (`0`, the fields, the
/// blank line), appended to `out`. Fields a trailer may not carry are dropped.
pub fn trailers_to_h1(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) -> Result<(), ConvertError> {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        let name = name.as_str();
        if connection_specific(name.as_bytes()) || NOT_IN_TRAILERS.contains(&name) {
            continue;
        }
        if !clean_value(value.as_bytes()) {
            return Err(ConvertError::BadRequestField);
        }
        push_field(out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, fields: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn convert(p: &http::request::Parts, end: bool) -> Result<(String, RequestBody), ConvertError> {
        let mut out = Vec::new();
        let body = request_head(p, end, &mut out)?;
        Ok((String::from_utf8(out).unwrap(), body))
    }

    #[test]
    fn a_request_becomes_its_http1_head() {
        let p = parts(
            "GET",
            "https://example.com:8443/a/b?x=1",
            &[("accept", "*/*"), ("user-agent", "t")],
        );
        let (head, body) = convert(&p, true).unwrap();
        assert_eq!(
            head,
            "GET /a/b?x=1 HTTP/1.1\r\nhost: example.com:8443\r\naccept: */*\r\nuser-agent: t\r\n\r\n"
        );
        assert_eq!(body, RequestBody::None);
    }

    #[test]
    fn host_comes_from_authority_and_must_agree() {
        let agree = parts("GET", "https://Example.com/", &[("host", "example.COM")]);
        // As sent: the authority's case is kept, as for HTTP/1.1.
        assert!(convert(&agree, true)
            .unwrap()
            .0
            .contains("\r\nhost: Example.com\r\n"));
        let differ = parts("GET", "https://a.example/", &[("host", "b.example")]);
        assert_eq!(convert(&differ, true), Err(ConvertError::HostMismatch));
        let twice = parts("GET", "/", &[("host", "a.example"), ("host", "a.example")]);
        assert_eq!(convert(&twice, true), Err(ConvertError::HostMismatch));
        let field_only = parts("GET", "/p", &[("host", "a.example")]);
        assert_eq!(
            convert(&field_only, true).unwrap().0,
            "GET /p HTTP/1.1\r\nhost: a.example\r\n\r\n"
        );
        let neither = parts("GET", "/p", &[]);
        assert_eq!(convert(&neither, true), Err(ConvertError::NoAuthority));
        let empty = parts("GET", "/p", &[("host", "")]);
        assert_eq!(convert(&empty, true), Err(ConvertError::NoAuthority));
        assert_eq!(ConvertError::NoAuthority.status(), 400);
    }

    #[test]
    fn cookies_are_joined_and_connection_fields_dropped() {
        let p = parts(
            "GET",
            "https://a.example/",
            &[
                ("cookie", "a=1"),
                ("te", "trailers"),
                ("cookie", "b=2"),
                ("connection", "close"),
                ("keep-alive", "5"),
                ("upgrade", "h2c"),
                ("x-one", "1"),
            ],
        );
        assert_eq!(
            convert(&p, true).unwrap().0,
            "GET / HTTP/1.1\r\nhost: a.example\r\nx-one: 1\r\ncookie: a=1; b=2\r\n\r\n"
        );
    }

    #[test]
    fn bodies_are_framed_for_http1() {
        let sized = parts("POST", "https://a.example/up", &[("content-length", "5")]);
        let (head, body) = convert(&sized, false).unwrap();
        assert_eq!(body, RequestBody::Length);
        assert!(head.ends_with("content-length: 5\r\n\r\n"), "{head}");
        let streamed = parts("POST", "https://a.example/up", &[]);
        let (head, body) = convert(&streamed, false).unwrap();
        assert_eq!(body, RequestBody::Chunked);
        assert!(
            head.ends_with("transfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        let empty_post = parts("POST", "https://a.example/up", &[]);
        let (head, body) = convert(&empty_post, true).unwrap();
        assert_eq!(body, RequestBody::None);
        assert!(head.ends_with("content-length: 0\r\n\r\n"), "{head}");
        let get = parts("GET", "https://a.example/", &[]);
        assert!(!convert(&get, true).unwrap().0.contains("content-length"));
    }

    #[test]
    fn connect_is_not_proxied_and_options_star_is_kept() {
        let connect = http::Request::builder()
            .method("CONNECT")
            .uri("a.example:443")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(convert(&connect, true), Err(ConvertError::Connect));
        assert_eq!(ConvertError::Connect.status(), 501);
        let star = parts("OPTIONS", "*", &[("host", "a.example")]);
        assert_eq!(
            convert(&star, true).unwrap().0,
            "OPTIONS * HTTP/1.1\r\nhost: a.example\r\n\r\n"
        );
    }

    #[test]
    fn converted_heads_pass_the_http1_parser() {
        use crate::protocol::h1::{parse_request, BodyKind, Forwarding};
        let forwarding = Forwarding {
            client_ip: std::net::IpAddr::from([192, 0, 2, 1]),
            proto: "https",
        };
        let cases = [
            (
                parts("GET", "https://a.example/x?y=1", &[("accept", "*/*")]),
                true,
                BodyKind::None,
            ),
            (
                parts("POST", "https://a.example/up", &[("content-length", "7")]),
                false,
                BodyKind::Length(7),
            ),
            (
                parts("PUT", "https://a.example/up", &[]),
                false,
                BodyKind::Chunked,
            ),
            (
                parts("POST", "https://a.example/up", &[]),
                true,
                BodyKind::None,
            ),
        ];
        // (`content-length: 0` reads as no body.)
        for (p, end, framing) in cases {
            let mut head = Vec::new();
            request_head(&p, end, &mut head).unwrap();
            let mut upstream = Vec::new();
            let parsed = parse_request(&head, &Default::default(), &forwarding, &mut upstream)
                .unwrap()
                .expect("a whole head");
            assert_eq!(parsed.head_len, head.len());
            assert_eq!(parsed.body, framing, "{}", String::from_utf8_lossy(&head));
            assert_eq!(parsed.host.unwrap().of(&head), b"a.example");
            assert_eq!(parsed.path.of(&head), p.uri.path().as_bytes());
        }
    }

    fn fields<'a>(
        list: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone {
        list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    #[test]
    fn a_response_keeps_end_to_end_fields_only() {
        let list = [
            ("Content-Type", "text/plain"),
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("X-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Length", "12"),
        ];
        let response = response_head(200, fields(&list)).unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["content-length"], "12");
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
        for gone in ["connection", "keep-alive", "x-hop", "transfer-encoding"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        let bad = [("X-Bad", "a\u{1}b")];
        assert_eq!(
            response_head(200, fields(&bad)).unwrap_err(),
            ConvertError::BadResponseField
        );
        assert!(ConvertError::BadResponseField.backend_fault());
        assert_eq!(response_head(99, fields(&[])).unwrap_err().status(), 502);
        for interim in [100, 101, 103] {
            assert!(response_head(interim, fields(&[])).is_err(), "{interim}");
        }
        // A length HTTP/2 would refuse is left out rather than passed on.
        for lengths in [
            &[("Content-Length", "5"), ("Content-Length", "7")][..],
            &[("Content-Length", "5x")],
        ] {
            let response = response_head(200, fields(lengths)).unwrap();
            assert!(
                !response.headers().contains_key("content-length"),
                "{lengths:?}"
            );
        }
    }

    #[test]
    fn trailers_cross_both_ways() {
        let list = [
            ("grpc-status", "0"),
            ("Content-Length", "3"),
            ("grpc-message", "ok"),
        ];
        let map = trailers_from_h1(fields(&list)).unwrap();
        assert_eq!(map["grpc-status"], "0");
        assert_eq!(map["grpc-message"], "ok");
        assert!(!map.contains_key("content-length"));

        let mut out = Vec::new();
        trailers_to_h1(Some(&map), &mut out).unwrap();
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n");
        out.clear();
        trailers_to_h1(None, &mut out).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
    }

    fn head_of(status: u16, fields: &[(&str, &str)], ended: bool, head_request: bool) -> String {
        let mut response = http::Response::builder().status(status);
        for (name, value) in fields {
            response = response.header(*name, *value);
        }
        let (parts, ()) = response.body(()).unwrap().into_parts();
        let mut out = Vec::new();
        response_to_h1(&parts, ended, head_request, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_http2_response_gets_the_framing_http1_needs() {
        // A length is kept; without one the body is chunked, or empty if the
        // stream already ended.
        assert_eq!(
            head_of(200, &[("content-length", "5")], false, false),
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(
            head_of(200, &[("grpc-status", "0")], false, false),
            "HTTP/1.1 200 OK\r\ngrpc-status: 0\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            head_of(200, &[("grpc-status", "13")], true, false),
            "HTTP/1.1 200 OK\r\ngrpc-status: 13\r\ncontent-length: 0\r\n\r\n"
        );
        // No body can follow: no framing is invented (a 0 would say the
        // representation is empty).
        assert_eq!(head_of(200, &[], true, true), "HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            head_of(304, &[("etag", "\"x\"")], true, false),
            "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n"
        );
        assert_eq!(
            head_of(204, &[], true, false),
            "HTTP/1.1 204 No Content\r\n\r\n"
        );
    }

    #[test]
    fn a_rewritten_http1_head_becomes_the_http2_request() {
        let head = b"POST http://ignored.test/a?b=1 HTTP/1.1\r\nHost: site.test\r\n\
            Connection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nExpect: 100-continue\r\n\
            TE: gzip\r\nContent-Length: 3\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        let request = request_from_h1(head, true, None).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().to_string(), "https://site.test/a?b=1");
        let names: Vec<&str> = request.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-length", "x-forwarded-for", "te"]);
        assert_eq!(request.headers()["te"], "trailers");
        // HTTP/1.0 without Host: the backend's address names it.
        let request =
            request_from_h1(b"GET / HTTP/1.0\r\n\r\n", false, Some("10.0.0.5:80")).unwrap();
        assert_eq!(request.uri().to_string(), "http://10.0.0.5:80/");
        assert_eq!(
            request_from_h1(b"GET / HTTP/1.1\r\n\r\n", false, None).unwrap_err(),
            ConvertError::NoAuthority
        );
        // More fields than any limit: still converted.
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..600 {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            request_from_h1(&many, false, None).unwrap().headers().len(),
            601
        );
    }
}
