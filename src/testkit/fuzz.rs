//! `testkit::fuzz`: what the fuzz targets check, shared with `cargo test`.
//!
//! Owns one function per target (`fuzz/fuzz_targets/*.rs` call them; the
//! committed corpora in `fuzz/corpus/` are replayed by `tests/fuzz_corpus.rs`).
//! Each feeds arbitrary bytes to a parser and asserts what must hold whatever the
//! input: no panic, lengths within the input, and outputs that read back the same
//! (a rewritten head parses to the same framing; chunked input decodes the same
//! however it is split; a PROXY header written from what was read reads the
//! same). `framing` is differential: ringlb's framing decision against a plain
//! reading of RFC 9112 written here, apart from `protocol::h1`. `h2_request`
//! checks that an HTTP/2 request's HTTP/1.1 form has exactly the lines it should
//! (no field can add one); `h2_meter` that frames are counted the same however
//! the bytes are cut. Test tooling: never on the request path.

use std::net::IpAddr;

use crate::config::{self, Limits};
use crate::protocol::h1::{
    parse_request, parse_response, BodyKind, ChunkEvent, ChunkedDecoder, ClientSide, Forwarding,
    Method,
};
use crate::protocol::h2::convert::{self, RequestBody};
use crate::protocol::h2::meter::{Caps, FrameMeter, PREFACE};
use crate::protocol::proxy_header::{self, ProxiedAddr};

fn forwarding() -> Forwarding {
    Forwarding {
        client_ip: IpAddr::from([192, 0, 2, 1]),
        proto: "http",
    }
}

/// A request head: parsed, its spans inside the head, and the head ringlb would
/// send upstream parsed again to the same method, framing, upgrade and host.
pub fn request_head(data: &[u8]) {
    let limits = Limits::default();
    let mut out = Vec::new();
    let Ok(Some(request)) = parse_request(data, &limits, &forwarding(), &mut out) else {
        return;
    };
    assert!(request.head_len <= data.len());
    let head = &data[..request.head_len];
    for span in [Some(request.method_token), request.host, Some(request.path)]
        .into_iter()
        .flatten()
    {
        assert!((span.start + span.len) as usize <= head.len());
    }
    // What goes upstream must read as the same request. (A client without Host is
    // given one by the proxy, not by the rewrite.)
    if request.missing_host {
        return;
    }
    // (It may be a little larger than the client's: ringlb adds its own fields.)
    let roomier = Limits {
        max_headers: limits.max_headers + 8,
        max_header_bytes: limits.max_header_bytes * 2,
        ..limits
    };
    let mut again = Vec::new();
    let reread = parse_request(&out, &roomier, &forwarding(), &mut again)
        .expect("the rewritten head parses")
        .expect("the rewritten head is whole");
    assert_eq!(reread.head_len, out.len());
    assert_eq!(reread.method, request.method);
    assert_eq!(reread.body, request.body);
    assert_eq!(reread.upgrade, request.upgrade);
    assert!(!reread.expect_continue);
    // The backend reads the host the request was routed by (RFC 9112 §3.2.2).
    assert_eq!(
        reread.host.map(|s| s.of(&out)),
        request.host.map(|s| s.of(head))
    );
}

/// A response head, for each kind of request it may answer: parsed within the
/// input, and the head sent to the client parsed again to the same framing.
pub fn response_head(data: &[u8]) {
    let limits = Limits::default();
    for (method, http10, upgrade) in [
        (Method::Get, false, false),
        (Method::Head, false, false),
        (Method::Get, true, false),
        (Method::Get, false, true),
    ] {
        let side = ClientSide {
            method,
            http10,
            keep_alive: true,
            upgrade,
        };
        let mut out = Vec::new();
        let Ok(Some(response)) = parse_response(data, &limits, &side, &mut out) else {
            continue;
        };
        assert!(response.head_len <= data.len());
        if response.upgraded {
            assert!(upgrade && response.status == 101);
            continue;
        }
        let mut again = Vec::new();
        let reread = parse_response(&out, &limits, &side, &mut again)
            .expect("the rewritten head parses")
            .expect("the rewritten head is whole");
        assert_eq!(reread.status, response.status);
        assert_eq!(reread.interim, response.interim);
        // The client's framing is what the rewritten head says.
        match response.client_body {
            BodyKind::CloseDelimited => {
                assert!(matches!(reread.upstream_body, BodyKind::CloseDelimited))
            }
            framing => assert_eq!(reread.upstream_body, framing),
        }
    }
}

/// What decoding a chunked body came to: the body, the trailers, and whether it
/// ended or failed.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    body: Vec<u8>,
    trailers: Vec<u8>,
    done: bool,
    failed: bool,
}

/// Decodes `input`, offered to the decoder in pieces ending at `cuts` (then the
/// rest), as bytes arrive from a socket.
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Decoded {
    let mut decoder = ChunkedDecoder::new(1024);
    let mut decoded = Decoded {
        body: Vec::new(),
        trailers: Vec::new(),
        done: false,
        failed: false,
    };
    let mut pos = 0;
    let ends = cuts
        .iter()
        .copied()
        .filter(|&c| c <= input.len())
        .chain([input.len()]);
    for available in ends {
        while pos < available && !decoder.is_done() {
            match decoder.decode(&input[pos..available]) {
                Ok((0, _)) => break,
                Ok((used, event)) => {
                    match event {
                        Some(ChunkEvent::Data(data)) => decoded.body.extend_from_slice(data),
                        Some(ChunkEvent::End(trailers)) => {
                            decoded.trailers.extend_from_slice(trailers)
                        }
                        None => {}
                    }
                    assert!(used <= available - pos);
                    pos += used;
                }
                Err(_) => {
                    decoded.failed = true;
                    return decoded;
                }
            }
        }
        if decoder.is_done() {
            break;
        }
    }
    decoded.done = decoder.is_done();
    assert_eq!(decoder.decoded_len(), decoded.body.len() as u64);
    decoded
}

/// A chunked body: the first two bytes choose where it is split; decoding it in
/// those pieces gives what decoding it whole gives.
pub fn chunked(data: &[u8]) {
    let (cuts, input) = match data {
        [a, b, rest @ ..] => {
            let (a, b) = (usize::from(*a) % (rest.len() + 1), usize::from(*b));
            let mut cuts = vec![a, a.saturating_add(b), a.saturating_add(2 * b)];
            cuts.sort_unstable();
            (cuts, rest)
        }
        _ => return,
    };
    let whole = decode_in_pieces(input, &[]);
    let pieces = decode_in_pieces(input, &cuts);
    let bytewise: Vec<usize> = (1..input.len().min(512)).collect();
    assert_eq!(pieces, whole, "cut at {cuts:?}");
    if input.len() < 512 {
        assert_eq!(decode_in_pieces(input, &bytewise), whole, "byte by byte");
    }
}

/// A configuration file: loaded or refused with errors, never a panic; one that
/// loads also validates.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, "fuzz.toml", Vec::<(String, String)>::new()) {
        Ok(config) => {
            config.validate().expect("a loaded file validates");
            let _ = config.summary();
        }
        Err(errors) => assert!(!errors.0.is_empty(), "a refusal names an error"),
    }
}

/// A PROXY header: read within the input, and a header written from what was
/// read reads the same.
pub fn proxy_header(data: &[u8]) {
    let Ok(Some((address, len))) = proxy_header::parse(data) else {
        return;
    };
    assert!(len <= data.len() && len <= proxy_header::MAX_HEADER);
    let ProxiedAddr::Tcp {
        source,
        destination,
    } = address
    else {
        return;
    };
    let canonical = |a: std::net::SocketAddr| (a.ip().to_canonical(), a.port());
    for v2 in [false, true] {
        let mut out = Vec::new();
        if v2 {
            proxy_header::write_v2(&mut out, source, destination);
        } else {
            proxy_header::write_v1(&mut out, source, destination);
        }
        match proxy_header::parse(&out) {
            Ok(Some((
                ProxiedAddr::Tcp {
                    source: s,
                    destination: d,
                },
                n,
            ))) => {
                assert_eq!(n, out.len());
                assert_eq!(canonical(s), canonical(source));
                assert_eq!(canonical(d), canonical(destination));
            }
            other => panic!("a written header reads back as {other:?}"),
        }
    }
}

/// How a request's body is framed, by the reference reading below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body.
    None,
    /// This many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
}

/// The reference: RFC 9112 read plainly, as ringlb's rules tighten it (§6.1, §6.3,
/// §2.2). Written apart from `protocol::h1` and deliberately naive: split the head
/// on CRLF, read each field line, decide the framing. `None` while the head is
/// incomplete; `Some(Err(()))` for a head whose framing must be refused.
fn reference_framing(data: &[u8]) -> Option<Result<(Framing, usize), ()>> {
    // Empty lines before the request line are skipped (§2.2).
    let mut skip = 0;
    while data[skip..].starts_with(b"\r\n") {
        skip += 2;
    }
    let end = skip + data[skip..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &data[skip..end - 2];
    // Every LF ends a line, and must follow a CR.
    if head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
    {
        return Some(Err(()));
    }
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| &l[..l.len().saturating_sub(1)]);
    let start = lines.next().unwrap_or(&[]);
    let http10 = start.ends_with(b" HTTP/1.0");
    let mut lengths: Vec<&[u8]> = Vec::new();
    let mut codings: Vec<Vec<u8>> = Vec::new();
    let mut coded = false;
    for line in lines.filter(|l| !l.is_empty()) {
        // obs-fold, and whitespace before the colon, are refused.
        if line[0] == b' ' || line[0] == b'\t' {
            return Some(Err(()));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(Err(()));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Some(Err(()));
        }
        let value = value.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths.push(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            coded = true;
            for coding in value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if !coding.is_empty() {
                    codings.push(coding.to_ascii_lowercase());
                }
            }
        }
    }
    let framing = if coded {
        // Transfer-Encoding wins over Content-Length, but both is a smuggling
        // attempt, as is anything but one `chunked`, last, or TE in HTTP/1.0.
        let chunked = codings
            .iter()
            .filter(|c| c.as_slice() == b"chunked")
            .count();
        let last_chunked = codings.last().is_some_and(|c| c.as_slice() == b"chunked");
        if http10 || !lengths.is_empty() || chunked != 1 || !last_chunked {
            return Some(Err(()));
        }
        Framing::Chunked
    } else {
        match lengths.as_slice() {
            [] => Framing::None,
            // One field, all digits, that fits.
            [value] if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                match std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    Some(0) => Framing::None,
                    Some(n) => Framing::Length(n),
                    None => return Some(Err(())),
                }
            }
            _ => return Some(Err(())),
        }
    };
    Some(Ok((framing, end)))
}

/// Differential: where ringlb accepts a request, the reference frames its body
/// the same, with the head the same length; where the reference refuses the
/// framing, ringlb refuses the request. (ringlb may refuse more: a missing Host,
/// a bad method or target, a limit.)
pub fn framing(data: &[u8]) {
    let reference = reference_framing(data);
    let mut out = Vec::new();
    let limits = Limits {
        max_body_bytes: None,
        ..Limits::default()
    };
    // Waiting for more, or refused: nothing was framed. (httparse skips empty lines
    // before a request line, so only an accepted request is compared.)
    if let Ok(Some(request)) = parse_request(data, &limits, &forwarding(), &mut out) {
        let framing = match request.body {
            BodyKind::None => Framing::None,
            BodyKind::Length(n) => Framing::Length(n),
            BodyKind::Chunked => Framing::Chunked,
            BodyKind::CloseDelimited => panic!("a request is never close-delimited"),
        };
        assert_eq!(
            reference,
            Some(Ok((framing, request.head_len))),
            "ringlb accepted a request the reference frames otherwise"
        );
    }
}

/// An HTTP/2 request head built from arbitrary bytes (the first byte picks the
/// method and whether the stream ended, the first line is the URI, each further
/// line a `name:value` field), through the `http` crate's checks, the ones h2
/// applies to what it decodes; then converted to HTTP/1.1. The head must read
/// back, with an independent parser, as one request line, one line per field
/// written and the blank line, and the same method; ringlb's own parser, when it
/// accepts the head, must read all of it with the framing the conversion chose.
/// (That no value can add a line rests on the http crate refusing CR, LF and
/// NUL, as h2's decoding does; the conversion checks again.)
pub fn h2_request(data: &[u8]) {
    const METHODS: [&str; 8] = [
        "GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH", "CONNECT",
    ];
    let mut lines = data.split(|&b| b == b'\n');
    let (Some(first), Some(uri)) = (lines.next(), lines.next()) else {
        return;
    };
    let method = METHODS[first.first().map_or(0, |&b| b as usize) % METHODS.len()];
    let end_of_stream = first.get(1).is_some_and(|b| b & 1 == 1);
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = http::header::HeaderName::from_bytes(&line[..colon]);
        let value = http::header::HeaderValue::from_bytes(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (name, value) {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let mut head = Vec::new();
    let Ok(body) = convert::request_head(&parts, end_of_stream, &mut head) else {
        return;
    };
    let line_ends = head.windows(2).filter(|w| w == b"\r\n").count();
    assert!(line_ends >= 3, "a request line, host and the blank line");
    assert!(head.ends_with(b"\r\n\r\n"));
    let fields = line_ends - 2;
    let mut slots = vec![httparse::EMPTY_HEADER; fields + 1];
    let mut read = httparse::Request::new(&mut slots);
    let status = read.parse(&head);
    assert!(
        matches!(status, Ok(httparse::Status::Complete(n)) if n == head.len()),
        "{status:?}: {}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(
        read.headers.len(),
        fields,
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(read.method, Some(method));

    let mut upstream = Vec::new();
    if let Ok(Some(parsed)) = parse_request(&head, &Limits::default(), &forwarding(), &mut upstream)
    {
        assert_eq!(parsed.head_len, head.len());
        match body {
            RequestBody::Chunked => assert_eq!(parsed.body, BodyKind::Chunked),
            RequestBody::Length => {
                assert!(matches!(parsed.body, BodyKind::Length(_) | BodyKind::None))
            }
            RequestBody::None => {
                assert!(matches!(parsed.body, BodyKind::None | BodyKind::Length(0)))
            }
        }
    }
}

/// Arbitrary bytes metered whole and in chunks of a size the first byte picks
/// (over two seconds, the second half later): the same counts, frames and
/// verdict either way. With the first byte's top bit clear, a client's preface
/// comes first; set, the input is all there is (a preface cut anywhere, or a
/// wrong one).
pub fn h2_meter(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let size = usize::from(first & 0x7f).max(1);
    let mut owned = Vec::new();
    let rest: &[u8] = if first & 0x80 == 0 {
        owned.extend_from_slice(PREFACE);
        owned.extend_from_slice(input);
        &owned
    } else {
        input
    };
    let half = rest.len() / 2;
    let run = |chunk: usize| {
        let mut meter = FrameMeter::new(Caps::default());
        let mut verdict = Ok(());
        let mut fed = 0;
        for piece in rest.chunks(chunk) {
            let second = if fed < half { 1 } else { 2 };
            // Split where the seconds change, so both runs see the same times.
            let cut = if fed < half && fed + piece.len() > half {
                half - fed
            } else {
                piece.len()
            };
            for (part, at) in [(&piece[..cut], second), (&piece[cut..], 2)] {
                if !part.is_empty() && verdict.is_ok() {
                    verdict = meter.feed(part, at);
                }
            }
            fed += piece.len();
        }
        (verdict, meter.frames(), meter.counts(), meter.tripped())
    };
    let whole = run(rest.len().max(1));
    let cut = run(size);
    assert_eq!(whole, cut, "chunks of {size}");
}
