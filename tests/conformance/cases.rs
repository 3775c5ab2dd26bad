//! Raw-byte request cases from public sources, with the outcome RFC 9112 / 9110 calls for.
//!
//! Sources: the llhttp test suite (github.com/nodejs/llhttp, test/request/*.md), the HTTP
//! Garden's list of findings (github.com/narfindustries/http-garden, TROPHIES.md), the
//! Http11Probe test documentation (github.com/MDA2AV/Http11Probe, docs/content/docs/) and
//! RFC 9110 / 9112 themselves. Each case was adapted to target `/echo` on `Host: a.test` with
//! `Connection: close` (unless the case is about those), keeping the bytes under test as they
//! were published. `Reject`: the RFC requires refusing it, or it is outside the grammar and
//! ringlb's strict policy refuses it; `Either`: the RFC lets a recipient accept or refuse.
use super::{Case, Expect};
pub const CASES: &[Case] = &[
    Case {
        source: "RFC 9112 §6.2 / §6.3 rule 6: Content-Length frames the body",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "RFC 9112 §7.1: chunked transfer coding, one chunk and last-chunk",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "RFC 9112 §6.3 rule 7: a request with neither Content-Length nor Transfer-Encoding has no body",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "RFC 9112 §7.1: empty chunked body (last-chunk only)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "llhttp test/request/sample.md: \"Request starting with CRLF\" — RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) before the request-line",
        bytes: b"\r\nGET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "llhttp test/request/sample.md: \"Prefix newline\" — adapted to a bare LF empty line; RFC 9112 §2.2 only MAY take bare LF as a line end, ringlb refuses bare LF",
        bytes: b"\nGET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Only LFs present\" — bare LF line ends throughout (RFC 9112 §2.2 MAY accept; ringlb policy: refuse)",
        bytes: b"POST /echo HTTP/1.1\nHost: a.test\nConnection: close\nTransfer-Encoding: chunked\nTrailer: Baz\r\nFoo: abc\nBar: def\n\n1\nA\n1;abc\nB\n1;def=ghi\nC\n1;jkl=\"mno\"\nD\n0\n\nBaz: ghi\n\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/sample.md: \"No LF after CR\" — RFC 9112 §2.2: bare CR MUST be treated as invalid (or replaced by SP)",
        bytes: b"GET /echo HTTP/1.1\rHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 9: \"`\\n` is allowed as separating whitespace in a request line\"",
        bytes: b"GET /echo\nHTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 4: \"Whitespace is incorrectly stripped from the beginning of the first header name\" — RFC 9112 §2.2 MUST reject or ignore the line; if ignored there is no body and `X` follows Connection: close",
        bytes: b"POST /echo HTTP/1.1\r\n\tContent-Length: 1\r\nHost: a.test\r\nConnection: close\r\n\r\nX",
        expect: Expect::Either,
    },
    Case {
        source: "RFC 9112 §3: request-line = method SP request-target SP HTTP-version — two SPs (lenient parsing is only a MAY; ringlb strict)",
        bytes: b"GET  /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §3: HTAB as request-line separator (lenient parsing is only a MAY; ringlb strict)",
        bytes: b"GET\t/echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Chunk header not terminated by CRLF\" (its smuggled request line `GET / HTTP/1.1 `) — RFC 9112 §3: SP after the version",
        bytes: b"GET /echo HTTP/1.1 \r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 6: \"HTTP methods are interpreted as their longest valid prefix\" — RFC 9110 §9.1: method = token",
        bytes: b"G=\":<>(e),[T];?\" /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/method.md: \"CONNECT request\" — authority-form CONNECT is valid (RFC 9112 §3.2.3); a proxy may tunnel or refuse (ringlb: 501)",
        bytes: b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nConnection: close\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "llhttp test/request/method.md: \"PRI request HTTP2\" — RFC 9112 §3.2.4: asterisk-form is only for OPTIONS",
        bytes: b"PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §3.2.4: GET * — asterisk-form with a method other than OPTIONS",
        bytes: b"GET * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §3.2.3: authority-form is only for CONNECT — `GET a.test:80`",
        bytes: b"GET a.test:80 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 7: \"URIs are not validated whatsoever\" — `!` is no request-target form (RFC 9112 §3.2)",
        bytes: b"GET ! HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/uri.md: \"Space in URI\" — RFC 9112 §3.2",
        bytes: b"GET /echo bar/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/uri.md: \"Disallow UTF-8 in URI path in strict mode\" — RFC 9112 §3.2 / RFC 3986: non-ASCII bytes must be percent-encoded (ringlb policy: refuse)",
        bytes: b"GET /echo?\xCE\xB4\xC2\xB6=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/uri.md: \"Fragment in URI\" — RFC 9112 §3.2.1: origin-form = absolute-path [ \"?\" query ], no fragment; invalid request-line SHOULD get 400",
        bytes: b"GET /echo?page=1#posts-17408 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/uri.md: \"Quotes in URI\" — `\"` and `\\` are not allowed in a URI (RFC 3986); invalid request-target SHOULD get 400 (RFC 9112 §3)",
        bytes: b"GET /echo?foo=\\\"bar\\\" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/uri.md: \"Query URL with question mark\" — `?` is allowed inside a query (RFC 3986 §3.4)",
        bytes: b"GET /echo?foo=bar?baz HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "llhttp test/request/uri.md: \"`host:port` terminated by a space\" — adapted: absolute-form whose authority matches Host (RFC 9112 §3.2.2: a server MUST accept absolute-form)",
        bytes: b"GET http://a.test/echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/absolute-uri-host-mismatch.md — RFC 9112 §3.2.2: with absolute-form the Host field is ignored and the target's authority (a.test) is used",
        bytes: b"GET http://a.test/echo HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "llhttp test/request/uri.md: \"`host:port` and basic auth\" — RFC 9110 §4.2.4: userinfo in an http URI: a recipient SHOULD treat its presence as an error",
        bytes: b"GET http://a%12:b!&*$@a.test/echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Invalid HTTP version\" — `HTTP/5.6`: unsupported major version (505, RFC 9110 §15.6.6)",
        bytes: b"GET /echo HTTP/5.6\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 5: \"HTTP versions are interpreted as their longest valid prefix\" — RFC 9112 §2.3: HTTP-version = HTTP-name \"/\" DIGIT \".\" DIGIT",
        bytes: b"GET /echo HTTP/1.32\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 15: \"HTTP versions are not validated\" — bare CRs inside the version",
        bytes: b"GET /echo HTTP/\r\r1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §2.3: HTTP-name is case-sensitive (`http/1.1`)",
        bytes: b"GET /echo http/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/request-line/http12-version.md — RFC 9110 §6.2: a higher minor version SHOULD be processed as 1.1; 505 is also allowed (ringlb: refuses)",
        bytes: b"GET /echo HTTP/1.2\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "RFC 9112 §3.2: HTTP/1.1 request without Host MUST get 400",
        bytes: b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/host-header/http10-no-host.md — RFC 9112 §3.2: Host is only required from HTTP/1.1",
        bytes: b"GET /echo HTTP/1.0\r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "RFC 9112 §3.2.2: a client MUST send Host even with absolute-form; HTTP/1.1 request lacking Host MUST get 400",
        bytes: b"GET http://a.test/echo HTTP/1.1\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §3.2: more than one Host field line MUST get 400 (differing values)",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/host-header/duplicate-host-same.md — RFC 9112 §3.2: more than one Host field line MUST get 400, even identical",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/multiple-host-comma.md — RFC 9112 §3.2: a Host with an invalid field value (a list) MUST get 400",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test, b.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/host-header/host-with-path.md — RFC 9112 §3.2 / RFC 9110 §7.2 Host = uri-host [ \":\" port ]: invalid value MUST get 400",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test/echo\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/host-header/host-with-userinfo.md — RFC 9112 §3.2: invalid Host value MUST get 400",
        bytes: b"GET /echo HTTP/1.1\r\nHost: user@a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/host-header/host-empty-value.md — RFC 9110 §7.2 allows an empty Host only when the target has no authority; RFC 9110 §4.2.1: an http URI with an empty host is invalid — read either way",
        bytes: b"GET /echo HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "RFC 9110 §5.1 / §7.2: field names and the host are case-insensitive; OWS around the value",
        bytes: b"GET /echo HTTP/1.1\r\nhost:   A.TEST  \r\nConnection: close\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "llhttp test/request/sample.md: \"255 ASCII in header value\" — obs-text byte 0xFF (RFC 9110 §5.5)",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nHeader1: Value1\r\nHeader2: \xFFValue2\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 41: \"`\\xa0` and `\\x85` are stripped from the beginnings and ends of header values, except for the `Transfer-Encoding` header\" — obs-text is valid field content and must be kept",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nUser: \x85admin\xA0\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "RFC 9110 §5.5: an empty field value is valid",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nX-Empty:\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Invalid whitespace token with `Content-Length` header field\" + HTTP Garden TROPHIES.md, server bug 3: \"Whitespace is incorrectly stripped from the ends of header names\" — RFC 9112 §5.1: MUST 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length : 34\r\n\r\nGET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §5.1: HTAB between field name and colon MUST get 400",
        bytes: b"GET /echo HTTP/1.1\r\nConnection: close\r\nHost\t: a.test\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/te-sp-before-colon.md — RFC 9112 §5.1: `Transfer-Encoding : chunked` MUST get 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §5.2: obs-fold in a request (MUST reject or replace by SP; ringlb rejects)",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nX-Folded: a\r\n b\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Spaces before headers\" — the ` Content-Length` line is an obs-fold (RFC 9112 §5.2); a smuggled request follows",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nFoo: bar\r\n Content-Length: 38\r\n\r\nGET /bye HTTP/1.1\r\nHost: a.test\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Invalid OBS fold after chunked value\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n  abc\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Illegal header field name line folding\"",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nname\r\n : value\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 37: \"Header names can be continued across lines\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-\r\nEncoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 28: \"Header names can be separated from values on space alone; no `:` required\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length 10\r\n\r\n0123456789",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Invalid header token #3\" + HTTP Garden TROPHIES.md, server bug 18: \"Empty header names are erroneously accepted\"",
        bytes: b"GET /echo HTTP/1.1\r\n: ignored\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 27: \"The HTTP header block is truncated upon receipt of a header with no name or value\"",
        bytes: b"GET /echo HTTP/1.1\r\n:\r\nHost: a.test\r\nConnection: close\r\nI: am chopped off\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 8: \"Some non-ASCII bytes are incorrectly permitted in header names\"",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\xEFoo: bar\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 14: \"Disallowed ASCII characters are incorrectly permitted in header names\"",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\0\x01\x02\x03\x04\x05\x06\x07\x08\t\x0B\x0C\x0E\x0F\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1A\x1B\x1C\x1D\x1E\x1F \"(),/;<=>?@[/]{}: whatever\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 20: \"`\\xa0` and `\\x85` bytes are stripped from the ends of header names, before the `:`\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length\x85: 10\r\n\r\n0123456789",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/content-length.md: \"`Content-Length` with CR instead of dash\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent\rLength: 003\r\n\r\nabc",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 13: \"`\\r` is treated as a line terminator in header field lines\"",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nVisible: :/\rSmuggled: :)\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Headers separated by LF\" — bare LF (RFC 9112 §2.2 MAY; ringlb refuses)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nx:x\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Missing CR between headers\" — smuggled requests follow",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nDummy: x\nContent-Length: 23\r\n\r\nGET / HTTP/1.1\r\nDummy: GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 19: \"All non-`\\r\\n` whitespace sequences are stripped from the beginnings of header values (after the `:`)\"",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nUseless:\n\nGET / HTTP/1.1\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/invalid.md: \"Headers separated by dummy characters\" + HTTP Garden TROPHIES.md, server bug 30: \"The header block can be incorrectly terminated on `\\r\\n\\rX`, where `X` can be any byte\"",
        bytes: b"GET /echo HTTP/1.1\r\nConnection: close\r\nHost: a.test\r\n\rZGET /evil: HTTP/1.1\r\nHost: a.test\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Missing CRLF-CRLF before body\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 3\r\n\rabc",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/connection.md: \"Not treating `\\r` as `-`\" — bare CR in a value (RFC 9112 §2.2)",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: keep\ralive\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 2: \"`\\x00`, `\\r`, or `\\n` are incorrectly permitted in header values\" — RFC 9110 §5.5: NUL/CR in a value",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nHeader: v\0\ralue\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 35: \"Header values are truncated at `\\x00`\"",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTest: test\0THESE BYTES GET DROPPED\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/lenient-header-value-relaxed.md: \"Control char in header value (strict)\" — RFC 9110 §5.5: CTL in a value (ringlb policy: refuse)",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nHeader1: hello\x0Cworld\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/content-length.md: \"`Content-Length` with zeroes\" — 1*DIGIT allows leading zeros",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 003\r\n\r\nabc",
        expect: Expect::Body(b"abc"),
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 32: \"`Content-Length` headers are interpreted with `strtoll(,,0)`, so leading `0`, `+`, `-`, and `0x` are misinterpreted\" — 010 is decimal ten (adapted: the 10 bytes are sent)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 010\r\n\r\n0123456789",
        expect: Expect::Body(b"0123456789"),
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Funky `Content-Length` with body\" — field names are case-insensitive; HTTP/1.0",
        bytes: b"POST /echo HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\nconTENT-Length: 5\r\n\r\nHELLO",
        expect: Expect::Body(b"HELLO"),
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Spaces in `Content-Length` (surrounding)\" — OWS around the value is not part of it",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length:  5 \r\n\r\nhello",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Spaces in `Content-Length` #2\" — RFC 9112 §6.3 rule 5: invalid Content-Length MUST get 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 4 2\r\n\r\nhello",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Empty `Content-Length`\" + HTTP Garden TROPHIES.md, server bug 16: \"Empty `Content-Length` values are treated as though they were `0`\" — RFC 9112 §6.3 rule 5",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length:\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 42: \"Empty `Content-Length` values are interpreted as equivalent to `0`, and prioritized over any subsequent `Content-Length` values\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: \r\nContent-Length: 43\r\n\r\nPOST /evil HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Error on `Content-Length` overflow\" — RFC 9110 §8.6: recipients MUST anticipate large numerals and prevent overflow",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 1000000000000000000000\r\n\r\nhello",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/content-length.md: \"Error on duplicate `Content-Length`\" — differing values: RFC 9112 §6.3 rule 5 MUST 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nhello",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 23: \"Requests with multiple conflicting `Content-Length` headers are accepted, prioritizing the first\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 0\r\n\r\nZ",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/cl-comma-different.md — RFC 9112 §6.3 rule 5: a list of differing values MUST get 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 5, 6\r\n\r\nhello!",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/cl-comma-same.md — RFC 9110 §8.6: identical list members MAY be rejected or collapsed to one value",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 5, 5\r\n\r\nhello",
        expect: Expect::Either,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/duplicate-cl.md (same value) — RFC 9110 §8.6: identical field lines MAY be rejected or collapsed",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        expect: Expect::Either,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 10: \"The Python `int` constructor is used to parse `Content-Length` values, so `_`, `+`, and `-` are misinterpreted\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: +1_0\r\n\r\n0123456789",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 26: \"Negative `Content-Length` headers can be used to force the server into an infinite busy loop\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: -48\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 1: \"`0x`-prefixed `Content-Length` values are incorrectly accepted and forwarded, without validation of the message body\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 0x10\r\n\r\nZ",
        expect: Expect::Reject,
    },
    Case {
        source: "ringlb policy (README, Strict parsing): `Content_Length` may be read as Content-Length by servers mapping `_` to `-`; RFC 9110 §5.1 lets it be an unknown field — if accepted, `hello` is not a body",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent_Length: 5\r\n\r\nhello",
        expect: Expect::Either,
    },
    Case {
        source: "ringlb policy: `Content--Length` folds to content-length when runs of non-alphanumerics read as `-`; an unknown field to RFC 9110",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent--Length: 5\r\n\r\nhello",
        expect: Expect::Either,
    },
    Case {
        source: "Http11Probe docs/content/docs/body/get-with-cl-body.md + HTTP Garden TROPHIES.md, transducer bug 21: \"Message bodies are stripped from `GET` requests without removing their `Content-Length` headers\" — the body is framed by Content-Length whatever the method (RFC 9110 §9.3.1); /echo answers GET without it, so only framing is checked",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 10\r\n\r\n1234567890",
        expect: Expect::Either,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Parse chunks with uppercase size\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
        expect: Expect::Body(b"0123456789"),
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Two chunks and triple zero prefixed end chunk\" — last-chunk = 1*\"0\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n",
        expect: Expect::Body(b"hello world"),
    },
    Case {
        source: "RFC 9112 §7.1 chunk-size = 1*HEXDIG: leading zeros",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n005\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "Http11Probe docs/content/docs/normalization/case-te.md — RFC 9110 §10.1.4 transfer-coding names are case-insensitive",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/te-trailing-space.md — trailing OWS is not part of the value (RFC 9112 §5.1)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked \t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Ignoring `pigeons`\" — RFC 9112 §6.3 rule 4: TE in a request whose final coding is not chunked MUST get 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: pigeons\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"POST with `Transfer-Encoding` and `Content-Length`\" — `identity` is not chunked: RFC 9112 §6.3 rule 4 MUST 400",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nWorld",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"POST with empty `Transfer-Encoding` and `Content-Length` (lenient)\" — TE present but no final chunked: RFC 9112 §6.3 rule 4",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 10\r\nTransfer-Encoding:\r\nTransfer-Encoding:\r\nTransfer-Encoding:\r\n\r\n2\r\nAA\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"POST with `chunked` before other transfer coding names\" — RFC 9112 §6.3 rule 4",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked, deflate\r\n\r\nWorld",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"POST with `chunked` and duplicate transfer-encoding\" — codings add up over field lines: final is deflate",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: deflate\r\n\r\nWorld",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"POST with `chunked` as last transfer-encoding\" — valid; a proxy may pass the deflate coding on or answer 501 (RFC 9112 §6.1; ringlb: 501)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: deflate, chunked\r\n\r\n5\r\nWorld\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"POST with `chunkedchunked` as transfer-encoding\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunkedchunked\r\n\r\n5\r\nWorld\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 11: \"Requests containing multiple `Transfer-Encoding: chunked` headers are accepted and treated as having no message body\" + HTTP Garden TROPHIES.md, transducer bug 25: \"...treated as equivalent to a single such header\" — chunked applied twice (RFC 9112 §6.1 sender MUST NOT); no recipient rule",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/te-double-chunked.md — `chunked, chunked` in one line",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked, chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 9: \"`Transfer-Encoding: ,chunked` headers are forwarded intact, and interpreted as equivalent to `chunked`\" — RFC 9110 §5.6.1: a recipient MUST parse and ignore empty list elements, so this is `chunked`",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: ,chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n",
        expect: Expect::Body(b"Z"),
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/te-trailing-comma.md (without Content-Length) — RFC 9110 §5.6.1 empty list element",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked,\r\n\r\n1\r\nZ\r\n0\r\n\r\n",
        expect: Expect::Body(b"Z"),
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 21: \"`,chunked` is treated as an encoding distinct from `chunked`\" — with Content-Length: RFC 9112 §6.1 a server MAY reject TE+CL or use TE alone, and MUST close",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: ,chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 23: \"Requests containing both `Content-Length` and `Transfer-Encoding` are forwarded\" — RFC 9112 §6.1: MAY reject, or process by Transfer-Encoding alone (then remove Content-Length) and close",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 12: \"`\\xa0` and `\\x85` are stripped from the beginnings and ends of header values\" — `\\xa0chunked\\xa0` is not chunked: RFC 9112 §6.3 rule 4",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: \xA0chunked\xA0\r\n\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/chunked-with-params.md — RFC 9112 §7.1: chunked defines no parameters; their presence SHOULD be treated as an error",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked;ext=val\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/te-http10.md — RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as having faulty framing",
        bytes: b"POST /echo HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "ringlb policy (README, Strict parsing): `Transfer_Encoding` may be read as Transfer-Encoding by servers mapping `_` to `-`; RFC 9110 §5.1 lets it be an unknown field — if accepted there is no body and the chunk bytes are not a request",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer_Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 1: \"The Python `int` constructor is used to parse chunk-sizes, so `0x`, `_`, `+`, and `-` are misinterpreted\" + HTTP Garden TROPHIES.md, server bug 22: \"Invalid chunk-sizes are interpreted as their longest valid prefix\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0_2e\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 25: \"Chunk-sizes are parsed using `strtoll(,,16)`, so `0x`, `+`, and `-` prefixes are erroneously accepted\" — `0x5`",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 19: \"Chunk-sizes with `+`, `-`, and `0x` prefixes are interpreted and forwarded\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n-0x0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 24: \"Whitespace-prefixed chunk-sizes are accepted and forwarded\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n           0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 17: \"Empty chunk-sizes are treated as though they were `0`\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Missing last-chunk\" — adapted: an empty line where the next chunk-size belongs (cf. Garden server bug 17)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nfoo\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Space after chunk header\" — BWS is only allowed before `;` (RFC 9112 §7.1.1)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\na \r\n0123456789\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/malformed-input/chunk-size-overflow.md — RFC 9112 §7.1: recipients MUST prevent integer overflow (17 hex digits)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF0\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §7.1: chunk-size = 1*HEXDIG, so 16 digits of leading zeros are grammatical; a recipient may also refuse long sizes (ringlb: at most 15 digits)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 17: \"Chunked message bodies containing an extra `\\r\\n` before the terminator chunk are un-chunked without replacing the `Transfer-Encoding` header with `Content-Length`\" — a valid 0x17-byte chunk whose data looks like a request",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n17\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\n0\r\n\r\n",
        expect: Expect::Body(b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Chunk header not terminated by CRLF\" + HTTP Garden TROPHIES.md, server bug 31: \"Chunk lines are incorrectly terminated on `\\rX`, where `X` can be any byte\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\nGET / HTTP/1.1 \r\nHost: a\r\nContent-Length: 5\r\n\r\n0",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 36: \"Carriage returns are forwarded within the optional whitespace following the semicolon in a chunk extension\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n41;a=b\r\rXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n0\r\n\r\nGET /bad_path/pwned HTTP/1.1\r\nHost: a\r\nContent-Length: 412\r\n\r\n0\r\n\r\nGET /def HTTP/1.1\r\nHost: a.test\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 4: \"Messages containing invalid chunks are forwarded without their message bodies\" — bare CR after the size",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1\r0\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Chunk data not terminated by CRLF\"",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nABCDE0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "HTTP Garden TROPHIES.md, transducer bug 13: \"Bare `\\n` is accepted as a chunk line terminator\" — bare LF after chunk data",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §7.1: bare LF ending a chunk-size line (RFC 9112 §2.2 MAY; ringlb refuses)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Chunk extensions\" — RFC 9112 §7.1.1: a recipient MUST ignore unrecognized extensions",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;ilovew3;somuchlove=aretheseparametersfor;another=withvalue\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello world"),
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Chunk extensions quoting\" — quoted-string values with quoted-pairs",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;ilovew3=\"I \\\"love\\\"; \\\\extensions\\\\\";somuchlove=\"aretheseparametersfor\";blah;foo=bar\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello world"),
    },
    Case {
        source: "RFC 9112 §7.1.1: chunk-ext = *( BWS \";\" BWS chunk-ext-name [ BWS \"=\" BWS chunk-ext-val ] ) — BWS around `;` and `=`",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a = b\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "RFC 9112 §7.1 last-chunk = 1*(\"0\") [ chunk-ext ] CRLF: an extension on the last chunk",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0;done\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"No extension after semicolon\" + Http11Probe docs/content/docs/smuggling/chunk-bare-semicolon.md — chunk-ext-name = token, so `;` alone is invalid",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2;\r\naa\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Unbalanced chunk extensions quoting\" — quoted-string cannot contain CR/LF: the size line is invalid",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;ilovew3=\"abc\";somuchlove=\"def; ghi\r\nhello\r\n6;blahblah;blah\r\n world\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/chunk-ext-invalid-token.md — `[` is not a tchar",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;bad[=x\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/chunk-ext-lf.md — bare LF inside a chunk extension",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/chunk-ext-cr.md — bare CR inside a chunk extension (RFC 9112 §2.2)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/transfer-encoding.md: \"Trailing headers\" — RFC 9112 §7.1.2 trailer section",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n",
        expect: Expect::Body(b"hello world"),
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 39: \"Chunked message bodies are terminated on `\\r\\nXX`, where `XX` can be any two bytes\" — `X:POST / HTTP/1.1` is a valid trailer field, then the section ends",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX:POST / HTTP/1.1\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "RFC 9112 §7.1.2: a trailer field line has the field-line syntax; one without a colon is invalid",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §5.1 (applies to every field line of a request message): whitespace before the colon in a trailer",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/chunk-lf-trailer.md — bare LF ending a trailer line",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "RFC 9112 §2.2: bare CR in a trailer value",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n",
        expect: Expect::Reject,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/trailer-cl.md — RFC 9110 §6.5.1: framing fields are prohibited in trailers; a recipient may discard them or refuse",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
        expect: Expect::Either,
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/chunk-missing-trailing-crlf.md — adapted: trailer section ends with `\\r` + non-LF",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\rx",
        expect: Expect::Reject,
    },
    Case {
        source: "llhttp test/request/connection.md: \"CRLF between requests, explicit `close`\" — RFC 9112 §9.6: after `close` the server MUST NOT process further requests",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\nConnection: close\r\n\r\nq=42\r\n\r\nGET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n",
        expect: Expect::Body(b"q=42"),
    },
    Case {
        source: "HTTP Garden TROPHIES.md, server bug 45: \"Connections are closed prematurely when an invalid request is pipelined after a valid request\" — the first request is answered; the bytes after it are never processed (RFC 9112 §9.6)",
        bytes: b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\nInvalid\r\n\r\n",
        expect: Expect::Body(b""),
    },
    Case {
        source: "Http11Probe docs/content/docs/smuggling/expect-100-cl.md — RFC 9110 §10.1.1: 100-continue; the client sent the body without waiting",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "RFC 9110 §10.1.1: the Expect field value is case-insensitive",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\nhello",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "RFC 9110 §10.1.1: Expect: 100-continue with a chunked body",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        expect: Expect::Body(b"hello"),
    },
    Case {
        source: "Http11Probe docs/content/docs/headers/expect-unknown.md — RFC 9110 §10.1.1: another expectation MAY get 417 (ringlb: 417)",
        bytes: b"POST /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\nhello",
        expect: Expect::Either,
    },
];
