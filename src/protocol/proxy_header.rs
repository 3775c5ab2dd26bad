//! `protocol::proxy_header`: the PROXY protocol header (v1 text, v2 binary) that carries a
//! client's address across a load balancer. Owns parsing it strictly from the first bytes
//! of a connection and writing it for a backend. Pure functions over byte slices: no
//! I/O, no allocation when parsing, no panics on input, and no guessing: anything the
//! spec does not allow is refused.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Every v1 header starts with these six bytes.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 line, CRLF included (spec 2.1: the worst case a receiver must accept).
const V1_MAX_LINE: usize = 107;
/// The v1 protocol words.
const V1_PROTOCOLS: [&[u8]; 3] = [b"TCP4", b"TCP6", b"UNKNOWN"];
/// Longest textual IPv6 address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const MAX_IPV6_TEXT: usize = 45;
/// Longest dotted-quad IPv4 address (`255.255.255.255`).
const MAX_IPV4_TEXT: usize = 15;

/// Every v2 header starts with these twelve bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, and the 2-byte block length.
const V2_FIXED: usize = 16;
/// Most bytes of v2 address block plus TLVs we accept: every address family with room
/// for the usual TLVs (authority, ALPN, TLS details, cloud endpoint ids).
const V2_MAX_BLOCK: usize = 536;

/// Most bytes a header can take. A caller that has buffered this many bytes always gets
/// `Ok(Some(_))` or `Err(_)` from [`parse`], never `Ok(None)`. A v1 line is capped at
/// 107 bytes (CRLF included), a v2 header at 16 + 536 bytes: larger v2 headers (big
/// TLVs) are refused as [`ProxyHeaderError::TooLong`].
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_BLOCK;

/// Why the first bytes of a connection are not an acceptable PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The bytes are not a PROXY header at all: they already differ from both the v1
    /// prefix `PROXY ` and the v2 signature (for example a plain HTTP request).
    NotProxy,
    /// It starts as a PROXY header but breaks the grammar; the reason is a short phrase.
    Malformed(&'static str),
    /// No CRLF within 107 bytes (v1), or a v2 header longer than [`MAX_HEADER`].
    TooLong,
    /// A v2 signature with a version nibble other than 2.
    UnsupportedVersion,
    /// A v2 command other than LOCAL (0) or PROXY (1).
    UnsupportedCommand,
    /// A v2 family/transport byte the spec does not define.
    UnsupportedFamily,
}

impl ProxyHeaderError {
    /// A stable `snake_case` name for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyHeaderError::NotProxy => "not_proxy",
            ProxyHeaderError::Malformed(_) => "malformed",
            ProxyHeaderError::TooLong => "too_long",
            ProxyHeaderError::UnsupportedVersion => "unsupported_version",
            ProxyHeaderError::UnsupportedCommand => "unsupported_command",
            ProxyHeaderError::UnsupportedFamily => "unsupported_family",
        }
    }
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHeaderError::NotProxy => f.write_str("not a PROXY protocol header"),
            ProxyHeaderError::Malformed(reason) => write!(f, "malformed PROXY header: {reason}"),
            ProxyHeaderError::TooLong => f.write_str("PROXY header longer than the limit"),
            ProxyHeaderError::UnsupportedVersion => f.write_str("unsupported PROXY v2 version"),
            ProxyHeaderError::UnsupportedCommand => f.write_str("unsupported PROXY v2 command"),
            ProxyHeaderError::UnsupportedFamily => {
                f.write_str("unsupported PROXY v2 address family or transport")
            }
        }
    }
}

impl std::error::Error for ProxyHeaderError {}

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxiedAddr {
    /// A proxied TCP connection over IPv4/IPv6: the original client and the address it
    /// connected to.
    Tcp {
        /// The client's address: use it in place of the peer address.
        source: SocketAddr,
        /// The address the client connected to (the front of the first proxy).
        destination: SocketAddr,
    },
    /// v1 `UNKNOWN`, v2 `LOCAL` command, or v2 `AF_UNSPEC` / UDP / unix families: keep the
    /// real peer address.
    Unknown,
}

/// Parses a header at the start of `bytes`.
///
/// - `Ok(None)`: more bytes are needed (the bytes so far are a prefix of a valid header).
/// - `Ok(Some((addr, len)))`: the header is `len` bytes long; `bytes[len..]` is the
///   client's payload.
///
/// Never returns `Ok(None)` once `bytes.len() >= MAX_HEADER`.
///
/// # Errors
///
/// [`ProxyHeaderError::NotProxy`] as soon as the first bytes differ from both `PROXY `
/// and the v2 signature, so a client that sends plain HTTP fails at once; the other
/// variants as soon as the bytes so far can no longer become a valid header.
pub fn parse(bytes: &[u8]) -> Result<Option<(ProxiedAddr, usize)>, ProxyHeaderError> {
    if starts_like(bytes, V1_PREFIX) {
        if bytes.len() < V1_PREFIX.len() {
            return Ok(None);
        }
        parse_v1(bytes)
    } else if starts_like(bytes, V2_SIGNATURE) {
        parse_v2(bytes)
    } else {
        Err(ProxyHeaderError::NotProxy)
    }
}

/// Writes the header `version` asks for (appended to `out`).
pub fn write(
    out: &mut Vec<u8>,
    version: crate::config::ProxyVersion,
    source: SocketAddr,
    destination: SocketAddr,
) {
    match version {
        crate::config::ProxyVersion::V1 => write_v1(out, source, destination),
        crate::config::ProxyVersion::V2 => write_v2(out, source, destination),
    }
}

/// Writes a v1 header for a TCP connection from `source` to `destination`, appending to
/// `out`.
///
/// Addresses are written in their canonical family: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is written as IPv4. If both are then IPv4 the line is `TCP4`;
/// otherwise it is `TCP6` and an IPv4 address is written IPv4-mapped. The header never
/// loses the client's address and is never `UNKNOWN`. IPv6 flow info and scope ids are
/// not carried.
pub fn write_v1(out: &mut Vec<u8>, source: SocketAddr, destination: SocketAddr) {
    // Writing into a Vec cannot fail.
    let _ = match Endpoints::of(source, destination) {
        Endpoints::V4(src, dst) => write!(
            out,
            "PROXY TCP4 {src} {dst} {} {}\r\n",
            source.port(),
            destination.port()
        ),
        Endpoints::V6(src, dst) => write!(
            out,
            "PROXY TCP6 {src} {dst} {} {}\r\n",
            source.port(),
            destination.port()
        ),
    };
}

/// Writes a v2 PROXY-command header (TCP over IPv4 or IPv6; no TLVs), appending to
/// `out`. Families are chosen as in [`write_v1`]: 28 bytes for IPv4, 52 for IPv6.
pub fn write_v2(out: &mut Vec<u8>, source: SocketAddr, destination: SocketAddr) {
    out.extend_from_slice(V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY command
    match Endpoints::of(source, destination) {
        Endpoints::V4(src, dst) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        Endpoints::V6(src, dst) => {
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

/// The two addresses of a header in one family, as both writers choose it.
enum Endpoints {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Endpoints {
    fn of(source: SocketAddr, destination: SocketAddr) -> Endpoints {
        match (source.ip().to_canonical(), destination.ip().to_canonical()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Endpoints::V4(src, dst),
            (src, dst) => Endpoints::V6(as_ipv6(src), as_ipv6(dst)),
        }
    }
}

fn as_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Whether `bytes` could still begin with `magic` (it matches as far as it goes).
fn starts_like(bytes: &[u8], magic: &[u8]) -> bool {
    let n = bytes.len().min(magic.len());
    bytes[..n] == magic[..n]
}

/// The address family a v1 `TCP4` or `TCP6` line promises.
#[derive(Clone, Copy)]
enum V1Family {
    V4,
    V6,
}

/// `bytes` starts with `PROXY `.
fn parse_v1(bytes: &[u8]) -> Result<Option<(ProxiedAddr, usize)>, ProxyHeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX_LINE)];
    let start = V1_PREFIX.len();
    let Some(at) = window[start..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
    else {
        // No line end yet: fail on what is already wrong, then on length.
        v1_fields(&window[start..], false)?;
        return if window.len() == V1_MAX_LINE {
            Err(ProxyHeaderError::TooLong)
        } else {
            Ok(None)
        };
    };
    let cr = start + at;
    if window[cr] == b'\n' {
        return Err(ProxyHeaderError::Malformed("bare LF in v1 line"));
    }
    if cr + 2 > V1_MAX_LINE {
        return Err(ProxyHeaderError::TooLong);
    }
    let line = &window[start..cr];
    match bytes.get(cr + 1) {
        None => {
            // The line can only end here: check it whole before waiting for the LF.
            v1_fields(line, true)?;
            Ok(None)
        }
        Some(b'\n') => match v1_fields(line, true)? {
            Some(addr) => Ok(Some((addr, cr + 2))),
            None => Err(ProxyHeaderError::Malformed("v1 line is missing fields")),
        },
        Some(_) => Err(ProxyHeaderError::Malformed(
            "CR not followed by LF in v1 line",
        )),
    }
}

/// Checks the v1 line after `PROXY ` (without CRLF). When `complete` is false the line
/// may stop anywhere and its last field only has to be the start of a valid one; the
/// answer is then `Ok(None)`. A complete line gives `Ok(Some(_))`.
fn v1_fields(line: &[u8], complete: bool) -> Result<Option<ProxiedAddr>, ProxyHeaderError> {
    let proto_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let proto = &line[..proto_len];
    let proto_done = complete || proto_len < line.len();
    let family = match proto {
        b"TCP4" if proto_done => V1Family::V4,
        b"TCP6" if proto_done => V1Family::V6,
        // Anything may follow UNKNOWN up to the CRLF.
        b"UNKNOWN" if proto_done => return Ok(complete.then_some(ProxiedAddr::Unknown)),
        _ if !proto_done && V1_PROTOCOLS.iter().any(|name| name.starts_with(proto)) => {
            return Ok(None);
        }
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };

    // source address, destination address, source port, destination port
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    if let Some(rest) = line.get(proto_len + 1..) {
        for field in rest.split(|&b| b == b' ') {
            let slot = fields.get_mut(count).ok_or(ProxyHeaderError::Malformed(
                "v1 line has more than four fields after the protocol",
            ))?;
            *slot = field;
            count += 1;
        }
    }
    if complete && count < fields.len() {
        return Err(ProxyHeaderError::Malformed("v1 line is missing fields"));
    }

    let mut ips = [None; 2];
    let mut ports = [0u16; 2];
    for (i, field) in fields[..count].iter().enumerate() {
        let partial = !complete && i + 1 == count;
        if partial {
            let plausible = if i < 2 {
                ip_text_plausible(field, family)
            } else {
                port_digits(field).is_some()
            };
            if !plausible {
                return Err(ProxyHeaderError::Malformed("invalid v1 field"));
            }
        } else if field.is_empty() {
            return Err(ProxyHeaderError::Malformed(
                "empty v1 field (double or trailing space)",
            ));
        } else if i < 2 {
            ips[i] = Some(parse_ip(field, family)?);
        } else {
            ports[i - 2] = parse_port(field)?;
        }
    }
    if !complete {
        return Ok(None);
    }
    match ips {
        [Some(source), Some(destination)] => Ok(Some(ProxiedAddr::Tcp {
            source: SocketAddr::new(source, ports[0]),
            destination: SocketAddr::new(destination, ports[1]),
        })),
        _ => Err(ProxyHeaderError::Malformed("v1 line is missing fields")),
    }
}

/// Whether `field` can still grow into an address of `family`.
fn ip_text_plausible(field: &[u8], family: V1Family) -> bool {
    match family {
        V1Family::V4 => {
            field.len() <= MAX_IPV4_TEXT && field.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        }
        V1Family::V6 => {
            field.len() <= MAX_IPV6_TEXT
                && field
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
    }
}

fn parse_ip(field: &[u8], family: V1Family) -> Result<IpAddr, ProxyHeaderError> {
    let text = std::str::from_utf8(field).ok();
    match family {
        V1Family::V4 => text
            .and_then(|t| t.parse::<Ipv4Addr>().ok())
            .map(IpAddr::V4)
            .ok_or(ProxyHeaderError::Malformed(
                "TCP4 address is not a dotted-quad IPv4 address",
            )),
        V1Family::V6 => text
            .and_then(|t| t.parse::<Ipv6Addr>().ok())
            .map(IpAddr::V6)
            .ok_or(ProxyHeaderError::Malformed(
                "TCP6 address is not an IPv6 address",
            )),
    }
}

/// The value of `field` if it is (the start of) a canonical decimal port: digits only,
/// at most five, no leading zero except `0` itself, at most 65535.
fn port_digits(field: &[u8]) -> Option<u16> {
    if field.len() > 5 || (field.len() > 1 && field.starts_with(b"0")) {
        return None;
    }
    let value = field.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })?;
    u16::try_from(value).ok()
}

fn parse_port(field: &[u8]) -> Result<u16, ProxyHeaderError> {
    port_digits(field).ok_or(ProxyHeaderError::Malformed(
        "v1 port is not a decimal 0-65535 without leading zeros",
    ))
}

/// What follows the 16 fixed bytes of a v2 header.
#[derive(Clone, Copy)]
enum V2Block {
    /// LOCAL command or `AF_UNSPEC`: the whole block is skipped unread.
    Ignored,
    /// TCP over IPv4 (12-byte addresses), then TLVs.
    Tcp4,
    /// TCP over IPv6 (36-byte addresses), then TLVs.
    Tcp6,
    /// UDP or unix addresses of this many bytes, skipped, then TLVs.
    Skipped(usize),
}

impl V2Block {
    /// Bytes of addresses the length field must at least cover.
    fn address_len(self) -> usize {
        match self {
            V2Block::Ignored => 0,
            V2Block::Tcp4 => 12,
            V2Block::Tcp6 => 36,
            V2Block::Skipped(len) => len,
        }
    }
}

/// `bytes` starts with a prefix of the v2 signature.
fn parse_v2(bytes: &[u8]) -> Result<Option<(ProxiedAddr, usize)>, ProxyHeaderError> {
    let Some(&version_command) = bytes.get(12) else {
        return Ok(None);
    };
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::UnsupportedVersion);
    }
    let local = match version_command & 0x0F {
        0x0 => true,
        0x1 => false,
        _ => return Err(ProxyHeaderError::UnsupportedCommand),
    };
    let Some(&family_transport) = bytes.get(13) else {
        return Ok(None);
    };
    // LOCAL: use the real endpoints and ignore the family (spec 2.2).
    let block = if local {
        V2Block::Ignored
    } else {
        match family_transport {
            0x00 => V2Block::Ignored,
            0x11 => V2Block::Tcp4,
            0x21 => V2Block::Tcp6,
            0x12 => V2Block::Skipped(12),
            0x22 => V2Block::Skipped(36),
            0x31 | 0x32 => V2Block::Skipped(216),
            _ => return Err(ProxyHeaderError::UnsupportedFamily),
        }
    };
    let Some(&[length_high, length_low]) = bytes.get(14..V2_FIXED) else {
        return Ok(None);
    };
    let total = V2_FIXED + usize::from(u16::from_be_bytes([length_high, length_low]));
    if total > MAX_HEADER {
        return Err(ProxyHeaderError::TooLong);
    }
    let addresses_end = V2_FIXED + block.address_len();
    if addresses_end > total {
        return Err(ProxyHeaderError::Malformed(
            "v2 length is shorter than the address block",
        ));
    }
    if bytes.len() < total {
        return Ok(None);
    }
    let addresses = &bytes[V2_FIXED..addresses_end];
    let addr = match block {
        V2Block::Ignored => return Ok(Some((ProxiedAddr::Unknown, total))),
        V2Block::Tcp4 => read_tcp::<4>(addresses),
        V2Block::Tcp6 => read_tcp::<16>(addresses),
        V2Block::Skipped(_) => Some(ProxiedAddr::Unknown),
    }
    .ok_or(ProxyHeaderError::Malformed("v2 address block is truncated"))?;
    check_tlvs(&bytes[addresses_end..total])?;
    Ok(Some((addr, total)))
}

/// Source address, destination address, source port, destination port, all big-endian.
fn read_tcp<const N: usize>(block: &[u8]) -> Option<ProxiedAddr>
where
    IpAddr: From<[u8; N]>,
{
    let (source, rest) = block.split_first_chunk::<N>()?;
    let (destination, rest) = rest.split_first_chunk::<N>()?;
    let (source_port, rest) = rest.split_first_chunk::<2>()?;
    let (destination_port, _) = rest.split_first_chunk::<2>()?;
    Some(ProxiedAddr::Tcp {
        source: SocketAddr::new(IpAddr::from(*source), u16::from_be_bytes(*source_port)),
        destination: SocketAddr::new(
            IpAddr::from(*destination),
            u16::from_be_bytes(*destination_port),
        ),
    })
}

/// Checks that the bytes after the addresses are whole TLVs (type, 2-byte length,
/// value). Their contents are not read: CRC32C, TLS and other TLVs are skipped.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyHeaderError> {
    while !tlvs.is_empty() {
        let [_kind, length_high, length_low, rest @ ..] = tlvs else {
            return Err(ProxyHeaderError::Malformed("truncated v2 TLV header"));
        };
        let length = usize::from(u16::from_be_bytes([*length_high, *length_low]));
        tlvs = rest
            .get(length..)
            .ok_or(ProxyHeaderError::Malformed("v2 TLV longer than the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_TCP4: &[u8] = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    const SPEC_TCP6: &[u8] = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    const SPEC_UNKNOWN_SHORT: &[u8] = b"PROXY UNKNOWN\r\n";
    const SPEC_UNKNOWN_LONG: &[u8] = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

    fn sock(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn tcp(source: &str, destination: &str) -> ProxiedAddr {
        ProxiedAddr::Tcp {
            source: sock(source),
            destination: sock(destination),
        }
    }

    fn malformed(bytes: &[u8]) -> bool {
        matches!(parse(bytes), Err(ProxyHeaderError::Malformed(_)))
    }

    /// A v2 header: fixed part with `version_command`, `family` and the length of `block`.
    fn v2(version_command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(version_command);
        out.push(family);
        let length = u16::try_from(block.len()).expect("test block fits u16");
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    /// 192.168.0.1:56324 -> 192.168.0.11:443 as a v2 IPv4 address block.
    const V4_BLOCK: [u8; 12] = [192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB];

    fn assert_every_prefix_needs_more(header: &[u8]) {
        for n in 0..header.len() {
            assert_eq!(
                parse(&header[..n]),
                Ok(None),
                "prefix of {n} bytes of {:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    // ---- v1: the spec's examples ----

    #[test]
    fn v1_spec_tcp4_example() {
        assert_eq!(
            parse(SPEC_TCP4),
            Ok(Some((
                tcp("192.168.0.1:56324", "192.168.0.11:443"),
                SPEC_TCP4.len()
            )))
        );
    }

    #[test]
    fn v1_spec_tcp6_worst_case_is_104_bytes() {
        assert_eq!(SPEC_TCP6.len(), 104);
        let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        assert_eq!(parse(SPEC_TCP6), Ok(Some((tcp(all, all), 104))));
    }

    #[test]
    fn v1_spec_unknown_short_form() {
        assert_eq!(
            parse(SPEC_UNKNOWN_SHORT),
            Ok(Some((ProxiedAddr::Unknown, 15)))
        );
    }

    #[test]
    fn v1_spec_unknown_worst_case_is_107_bytes() {
        assert_eq!(SPEC_UNKNOWN_LONG.len(), 107);
        assert_eq!(
            parse(SPEC_UNKNOWN_LONG),
            Ok(Some((ProxiedAddr::Unknown, 107)))
        );
    }

    #[test]
    fn v1_unknown_tail_may_hold_any_bytes() {
        let line = b"PROXY UNKNOWN \x00\xFF  whatever\tgoes\r\n";
        assert_eq!(parse(line), Ok(Some((ProxiedAddr::Unknown, line.len()))));
    }

    #[test]
    fn v1_tcp6_compressed_and_mapped_forms() {
        let line = b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 8080\r\n";
        assert_eq!(
            parse(line),
            Ok(Some((
                tcp("[2001:db8::1]:0", "[::ffff:10.0.0.1]:8080"),
                line.len()
            )))
        );
    }

    #[test]
    fn v1_port_zero_is_valid() {
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n";
        assert_eq!(
            parse(line),
            Ok(Some((tcp("1.2.3.4:0", "5.6.7.8:0"), line.len())))
        );
    }

    // ---- framing: payload and prefixes ----

    #[test]
    fn v1_payload_after_header_is_not_consumed() {
        let mut bytes = SPEC_TCP4.to_vec();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (addr, len) = parse(&bytes).unwrap().unwrap();
        assert_eq!(addr, tcp("192.168.0.1:56324", "192.168.0.11:443"));
        assert_eq!(len, SPEC_TCP4.len());
        assert_eq!(&bytes[len..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn v1_payload_after_unknown_is_not_consumed() {
        let mut bytes = SPEC_UNKNOWN_SHORT.to_vec();
        bytes.extend_from_slice(b"PROXY TCP4 junk\r\n");
        assert_eq!(parse(&bytes), Ok(Some((ProxiedAddr::Unknown, 15))));
    }

    #[test]
    fn v2_payload_after_header_is_not_consumed() {
        let mut bytes = v2(0x21, 0x11, &V4_BLOCK);
        bytes.extend_from_slice(b"\r\n\r\nGET");
        assert_eq!(
            parse(&bytes),
            Ok(Some((tcp("192.168.0.1:56324", "192.168.0.11:443"), 28)))
        );
    }

    #[test]
    fn every_prefix_of_a_v1_header_needs_more() {
        for header in [SPEC_TCP4, SPEC_TCP6, SPEC_UNKNOWN_SHORT, SPEC_UNKNOWN_LONG] {
            assert_every_prefix_needs_more(header);
        }
        assert_every_prefix_needs_more(b"PROXY TCP6 ::ffff:10.0.0.1 ::1 0 65535\r\n");
    }

    #[test]
    fn every_prefix_of_a_v2_header_needs_more() {
        let mut tlv = V4_BLOCK.to_vec();
        tlv.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'.', b'b']);
        assert_every_prefix_needs_more(&v2(0x21, 0x11, &tlv));
        assert_every_prefix_needs_more(&v2(0x20, 0x00, &[]));
        let mut written = Vec::new();
        write_v2(
            &mut written,
            sock("[2001:db8::1]:1"),
            sock("[2001:db8::2]:2"),
        );
        assert_every_prefix_needs_more(&written);
    }

    #[test]
    fn empty_input_needs_more() {
        assert_eq!(parse(b""), Ok(None));
    }

    // ---- early detection ----

    #[test]
    fn http_request_is_not_proxy_at_once() {
        let request = b"GET / HTTP/1.1\r\n";
        for n in 1..=request.len() {
            assert_eq!(
                parse(&request[..n]),
                Err(ProxyHeaderError::NotProxy),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn two_bytes_of_http_are_not_proxy() {
        assert_eq!(parse(b"GE"), Err(ProxyHeaderError::NotProxy));
    }

    #[test]
    fn lowercase_proxy_is_not_proxy() {
        assert_eq!(
            parse(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Err(ProxyHeaderError::NotProxy)
        );
        assert_eq!(parse(b"Proxy"), Err(ProxyHeaderError::NotProxy));
    }

    #[test]
    fn proxy_without_space_is_not_proxy() {
        assert_eq!(parse(b"PROXYTCP4"), Err(ProxyHeaderError::NotProxy));
        assert_eq!(parse(b"PRO"), Ok(None));
    }

    #[test]
    fn broken_v2_signature_is_not_proxy() {
        assert_eq!(parse(b"\r\n"), Ok(None));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUI"), Ok(None));
        assert_eq!(parse(b"\r\nGET"), Err(ProxyHeaderError::NotProxy));
        assert_eq!(
            parse(b"\r\n\r\n\0\r\nQUIX"),
            Err(ProxyHeaderError::NotProxy)
        );
        // A TLS ClientHello starts with 0x16.
        assert_eq!(parse(&[0x16, 0x03, 0x01]), Err(ProxyHeaderError::NotProxy));
    }

    // ---- v1 rejections ----

    #[test]
    fn v1_without_crlf_in_107_bytes_is_too_long() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LINE - 1, b'x');
        assert_eq!(parse(&line), Ok(None));
        line.push(b'x');
        assert_eq!(parse(&line), Err(ProxyHeaderError::TooLong));
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line), Err(ProxyHeaderError::TooLong));
    }

    #[test]
    fn v1_crlf_must_end_by_byte_107() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LINE - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line), Ok(Some((ProxiedAddr::Unknown, 107))));

        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LINE - 1, b'x');
        long.push(b'\r');
        assert_eq!(parse(&long), Err(ProxyHeaderError::TooLong));
        long.push(b'\n');
        assert_eq!(parse(&long), Err(ProxyHeaderError::TooLong));
    }

    #[test]
    fn v1_bare_lf_is_malformed() {
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n"
        ));
        assert!(malformed(b"PROXY UNKNOWN\n"));
        assert!(malformed(b"PROXY \n"));
    }

    #[test]
    fn v1_cr_without_lf_is_malformed() {
        assert!(malformed(b"PROXY UNKNOWN\rx\n"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"));
    }

    #[test]
    fn v1_double_spaces_are_malformed() {
        assert!(malformed(
            b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n"
        ));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n"
        ));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324  443\r\n"
        ));
        assert!(malformed(
            b"PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        ));
    }

    #[test]
    fn v1_trailing_space_is_malformed() {
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n"
        ));
    }

    #[test]
    fn v1_tabs_are_not_spaces() {
        assert!(malformed(b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"));
    }

    #[test]
    fn v1_port_with_leading_zero_is_malformed() {
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n"
        ));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n"
        ));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 00\r\n"
        ));
    }

    #[test]
    fn v1_port_out_of_range_is_malformed() {
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n"
        ));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 99999\r\n"
        ));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 100000\r\n"
        ));
    }

    #[test]
    fn v1_port_with_sign_or_letters_is_malformed() {
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 +56324 443\r\n"
        ));
        assert!(malformed(b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n"));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0x1BB\r\n"
        ));
    }

    #[test]
    fn v1_ipv6_under_tcp4_is_malformed() {
        assert!(malformed(b"PROXY TCP4 ::1 192.168.0.11 56324 443\r\n"));
        assert!(malformed(
            b"PROXY TCP4 192.168.0.1 ::ffff:192.168.0.11 56324 443\r\n"
        ));
    }

    #[test]
    fn v1_ipv4_under_tcp6_is_malformed() {
        assert!(malformed(b"PROXY TCP6 192.168.0.1 ::1 56324 443\r\n"));
        assert!(malformed(b"PROXY TCP6 ::1 192.168.0.11 56324 443\r\n"));
    }

    #[test]
    fn v1_non_dotted_quad_ipv4_is_malformed() {
        assert!(malformed(b"PROXY TCP4 192.168.000.1 192.168.0.11 1 2\r\n"));
        assert!(malformed(b"PROXY TCP4 192.168.1 192.168.0.11 1 2\r\n"));
        assert!(malformed(b"PROXY TCP4 256.0.0.1 192.168.0.11 1 2\r\n"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4.5 192.168.0.11 1 2\r\n"));
    }

    #[test]
    fn v1_bracketed_or_scoped_ipv6_is_malformed() {
        assert!(malformed(b"PROXY TCP6 [::1] ::1 1 2\r\n"));
        assert!(malformed(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"));
    }

    #[test]
    fn v1_wrong_protocol_word_is_malformed() {
        assert!(malformed(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(malformed(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(malformed(b"PROXY UNKNOWNX\r\n"));
        assert!(malformed(b"PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(malformed(b"PROXY \r\n"));
    }

    #[test]
    fn v1_missing_or_extra_fields_are_malformed() {
        assert!(malformed(b"PROXY TCP4\r\n"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"));
    }

    #[test]
    fn v1_fails_before_the_line_ends() {
        // Each is already wrong; no CRLF has arrived yet.
        assert!(malformed(b"PROXY FOO"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 ::"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4  "));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 0443"));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "));
        assert!(malformed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000"));
        assert!(malformed(b"PROXY TCP4\r"));
        assert!(malformed(b"PROXY TCP6 1.2.3.4 ::1 1 2\r"));
        // ...while these may still become valid.
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 6553"), Ok(None));
        assert_eq!(parse(b"PROXY UNKNOWN whatever"), Ok(None));
        assert_eq!(parse(b"PROXY UNK"), Ok(None));
    }

    // ---- v2 ----

    #[test]
    fn v2_known_bytes_tcp4() {
        let header = v2(0x21, 0x11, &V4_BLOCK);
        assert_eq!(header.len(), 28);
        assert_eq!(
            parse(&header),
            Ok(Some((tcp("192.168.0.1:56324", "192.168.0.11:443"), 28)))
        );
    }

    #[test]
    fn v2_known_bytes_tcp6() {
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&[0xFF, 0xFF, 0x00, 0x50]);
        let header = v2(0x21, 0x21, &block);
        assert_eq!(
            parse(&header),
            Ok(Some((tcp("[2001:db8::1]:65535", "[2001:db8::2]:80"), 52)))
        );
    }

    #[test]
    fn v2_tcp4_round_trip() {
        let (source, destination) = (sock("203.0.113.7:40000"), sock("10.1.2.3:8443"));
        let mut out = Vec::new();
        write_v2(&mut out, source, destination);
        assert_eq!(out.len(), 28);
        assert_eq!(&out[..12], V2_SIGNATURE);
        assert_eq!(&out[12..16], &[0x21, 0x11, 0x00, 0x0C]);
        assert_eq!(
            parse(&out),
            Ok(Some((
                ProxiedAddr::Tcp {
                    source,
                    destination
                },
                28
            )))
        );
    }

    #[test]
    fn v2_tcp6_round_trip() {
        let (source, destination) = (sock("[2001:db8::7]:1"), sock("[fe80::1]:65535"));
        let mut out = Vec::new();
        write_v2(&mut out, source, destination);
        assert_eq!(out.len(), 52);
        assert_eq!(&out[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(
            parse(&out),
            Ok(Some((
                ProxiedAddr::Tcp {
                    source,
                    destination
                },
                52
            )))
        );
    }

    #[test]
    fn v2_appends_to_out() {
        let mut out = b"keep".to_vec();
        write_v2(&mut out, sock("1.2.3.4:1"), sock("5.6.7.8:2"));
        assert_eq!(&out[..4], b"keep");
        assert_eq!(parse(&out[4..]).unwrap().unwrap().1, 28);
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut block = V4_BLOCK.to_vec();
        block.extend_from_slice(&[0x02, 0x00, 0x0B]); // PP2_TYPE_AUTHORITY
        block.extend_from_slice(b"example.com");
        block.extend_from_slice(&[0x04, 0x00, 0x00]); // PP2_TYPE_NOOP, empty
        block.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // PP2_TYPE_ALPN
        let mut bytes = v2(0x21, 0x11, &block);
        let header_len = bytes.len();
        bytes.extend_from_slice(b"payload");
        assert_eq!(
            parse(&bytes),
            Ok(Some((
                tcp("192.168.0.1:56324", "192.168.0.11:443"),
                header_len
            )))
        );
        assert_eq!(&bytes[header_len..], b"payload");
    }

    #[test]
    fn v2_truncated_tlv_header_is_malformed() {
        for extra in [&[0x02][..], &[0x02, 0x00]] {
            let mut block = V4_BLOCK.to_vec();
            block.extend_from_slice(extra);
            assert!(malformed(&v2(0x21, 0x11, &block)), "{extra:?}");
        }
    }

    #[test]
    fn v2_tlv_value_past_the_header_is_malformed() {
        let mut block = V4_BLOCK.to_vec();
        block.extend_from_slice(&[0x02, 0x00, 0x0C]);
        block.extend_from_slice(b"example.com"); // 11 bytes, 12 announced
        let mut bytes = v2(0x21, 0x11, &block);
        // Payload bytes after the header must not complete the TLV.
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert!(malformed(&bytes));
    }

    #[test]
    fn v2_local_is_unknown() {
        assert_eq!(
            parse(&v2(0x20, 0x00, &[])),
            Ok(Some((ProxiedAddr::Unknown, 16)))
        );
    }

    #[test]
    fn v2_local_ignores_family_and_block() {
        assert_eq!(
            parse(&v2(0x20, 0x11, &V4_BLOCK)),
            Ok(Some((ProxiedAddr::Unknown, 28)))
        );
        // Even a family byte the spec does not define, and a block that is not TLVs.
        assert_eq!(
            parse(&v2(0x20, 0xFF, &[1, 2, 3, 4, 5])),
            Ok(Some((ProxiedAddr::Unknown, 21)))
        );
    }

    #[test]
    fn v2_unspec_is_unknown() {
        assert_eq!(
            parse(&v2(0x21, 0x00, &[])),
            Ok(Some((ProxiedAddr::Unknown, 16)))
        );
        assert_eq!(
            parse(&v2(0x21, 0x00, &[9, 9, 9, 9])),
            Ok(Some((ProxiedAddr::Unknown, 20)))
        );
    }

    #[test]
    fn v2_udp_is_unknown() {
        assert_eq!(
            parse(&v2(0x21, 0x12, &V4_BLOCK)),
            Ok(Some((ProxiedAddr::Unknown, 28)))
        );
        assert_eq!(
            parse(&v2(0x21, 0x22, &[0; 36])),
            Ok(Some((ProxiedAddr::Unknown, 52)))
        );
    }

    #[test]
    fn v2_unix_is_unknown() {
        for family in [0x31, 0x32] {
            let mut block = vec![0; 216];
            block.extend_from_slice(&[0x02, 0x00, 0x01, b'x']);
            assert_eq!(
                parse(&v2(0x21, family, &block)),
                Ok(Some((ProxiedAddr::Unknown, 16 + 220)))
            );
        }
    }

    #[test]
    fn v2_wrong_version_nibble_is_rejected() {
        for version_command in [0x11, 0x31, 0x01, 0xF1] {
            let header = v2(version_command, 0x11, &V4_BLOCK);
            assert_eq!(parse(&header), Err(ProxyHeaderError::UnsupportedVersion));
            // Known from byte 13 on.
            assert_eq!(
                parse(&header[..13]),
                Err(ProxyHeaderError::UnsupportedVersion)
            );
        }
    }

    #[test]
    fn v2_unknown_command_is_rejected() {
        for version_command in [0x22, 0x23, 0x2F] {
            let header = v2(version_command, 0x11, &V4_BLOCK);
            assert_eq!(parse(&header), Err(ProxyHeaderError::UnsupportedCommand));
            assert_eq!(
                parse(&header[..13]),
                Err(ProxyHeaderError::UnsupportedCommand)
            );
        }
    }

    #[test]
    fn v2_undefined_family_is_rejected() {
        for family in [0x01, 0x02, 0x10, 0x13, 0x23, 0x30, 0x41, 0xFF] {
            let header = v2(0x21, family, &V4_BLOCK);
            assert_eq!(
                parse(&header),
                Err(ProxyHeaderError::UnsupportedFamily),
                "{family:#x}"
            );
            assert_eq!(
                parse(&header[..14]),
                Err(ProxyHeaderError::UnsupportedFamily)
            );
        }
    }

    #[test]
    fn v2_length_shorter_than_the_family_is_malformed() {
        assert!(malformed(&v2(0x21, 0x11, &V4_BLOCK[..8])));
        assert!(malformed(&v2(0x21, 0x11, &[])));
        assert!(malformed(&v2(0x21, 0x21, &V4_BLOCK)));
        assert!(malformed(&v2(0x21, 0x22, &[0; 35])));
        assert!(malformed(&v2(0x21, 0x31, &[0; 100])));
        // Known from the length field alone, before the block arrives.
        assert!(malformed(&v2(0x21, 0x21, &V4_BLOCK)[..16]));
    }

    #[test]
    fn v2_longer_than_max_header_is_too_long() {
        let mut header = v2(0x21, 0x11, &[]);
        header[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&header), Err(ProxyHeaderError::TooLong));

        let largest = v2(0x21, 0x11, &{
            let mut block = V4_BLOCK.to_vec();
            let value_len = V2_MAX_BLOCK - 12 - 3;
            block.push(0xE0); // a custom TLV filling the rest
            block.extend_from_slice(&u16::try_from(value_len).unwrap().to_be_bytes());
            block.resize(V2_MAX_BLOCK, b'v');
            block
        });
        assert_eq!(largest.len(), MAX_HEADER);
        assert_eq!(parse(&largest).unwrap().unwrap().1, MAX_HEADER);

        let mut over = largest;
        over[14..16].copy_from_slice(&u16::try_from(V2_MAX_BLOCK + 1).unwrap().to_be_bytes());
        assert_eq!(parse(&over[..16]), Err(ProxyHeaderError::TooLong));
    }

    // ---- writers ----

    #[test]
    fn write_v1_spec_example_bytes() {
        let mut out = Vec::new();
        write_v1(
            &mut out,
            sock("192.168.0.1:56324"),
            sock("192.168.0.11:443"),
        );
        assert_eq!(out, SPEC_TCP4);
    }

    #[test]
    fn write_v1_round_trip_tcp4() {
        let (source, destination) = (sock("255.255.255.255:65535"), sock("0.0.0.0:0"));
        let mut out = Vec::new();
        write_v1(&mut out, source, destination);
        assert_eq!(
            parse(&out),
            Ok(Some((
                ProxiedAddr::Tcp {
                    source,
                    destination
                },
                out.len()
            )))
        );
    }

    #[test]
    fn write_v1_round_trip_tcp6() {
        let (source, destination) = (
            sock("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            sock("[2001:db8::1]:443"),
        );
        let mut out = Vec::new();
        write_v1(&mut out, source, destination);
        assert!(out.starts_with(b"PROXY TCP6 "));
        assert!(out.len() <= V1_MAX_LINE);
        assert_eq!(
            parse(&out),
            Ok(Some((
                ProxiedAddr::Tcp {
                    source,
                    destination
                },
                out.len()
            )))
        );
    }

    #[test]
    fn write_v1_mixed_families_maps_ipv4_into_ipv6() {
        let mut out = Vec::new();
        write_v1(&mut out, sock("192.0.2.1:1000"), sock("[2001:db8::1]:80"));
        assert_eq!(out, b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1000 80\r\n");
        assert_eq!(
            parse(&out),
            Ok(Some((
                tcp("[::ffff:192.0.2.1]:1000", "[2001:db8::1]:80"),
                out.len()
            )))
        );
    }

    #[test]
    fn writers_unmap_ipv4_mapped_addresses() {
        let (source, destination) = (sock("[::ffff:192.0.2.1]:1000"), sock("10.0.0.1:80"));
        let mut out = Vec::new();
        write_v1(&mut out, source, destination);
        assert_eq!(out, b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 80\r\n");

        out.clear();
        write_v2(&mut out, source, sock("[::ffff:10.0.0.1]:80"));
        assert_eq!(
            parse(&out),
            Ok(Some((tcp("192.0.2.1:1000", "10.0.0.1:80"), 28)))
        );
    }

    #[test]
    fn write_v2_mixed_families_maps_ipv4_into_ipv6() {
        let mut out = Vec::new();
        write_v2(&mut out, sock("[2001:db8::1]:5"), sock("192.0.2.9:6"));
        assert_eq!(out[13], 0x21);
        assert_eq!(
            parse(&out),
            Ok(Some((tcp("[2001:db8::1]:5", "[::ffff:192.0.2.9]:6"), 52)))
        );
    }

    // ---- limits and robustness ----

    #[test]
    fn max_header_bytes_always_decide() {
        let mut unknown = b"PROXY UNKNOWN ".to_vec();
        unknown.resize(MAX_HEADER, b'x');
        let mut tcp4 = b"PROXY TCP4 ".to_vec();
        tcp4.resize(MAX_HEADER, b'1');
        let mut v2_long = v2(0x21, 0x00, &[]);
        v2_long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        v2_long.resize(MAX_HEADER, 0);
        let mut v2_max = v2(0x21, 0x00, &[]);
        v2_max[14..16].copy_from_slice(&u16::try_from(V2_MAX_BLOCK).unwrap().to_be_bytes());
        v2_max.resize(MAX_HEADER, 0);
        for bytes in [unknown, tcp4, v2_long, v2_max] {
            assert_ne!(parse(&bytes), Ok(None));
        }
    }

    #[test]
    fn mutated_headers_never_panic_or_overrun() {
        let mut v2_tlv = V4_BLOCK.to_vec();
        v2_tlv.extend_from_slice(&[0x02, 0x00, 0x01, b'a']);
        let samples = [
            SPEC_TCP4.to_vec(),
            SPEC_TCP6.to_vec(),
            SPEC_UNKNOWN_LONG.to_vec(),
            v2(0x21, 0x11, &v2_tlv),
            v2(0x21, 0x21, &[7; 36]),
            v2(0x21, 0x31, &[0; 216]),
        ];
        for sample in &samples {
            for at in 0..sample.len() {
                for value in [0x00, 0x0A, 0x0D, b' ', b'0', b':', b'.', 0x21, 0x7F, 0xFF] {
                    let mut bytes = sample.clone();
                    bytes[at] = value;
                    for end in [at + 1, bytes.len()] {
                        if let Ok(Some((_, len))) = parse(&bytes[..end]) {
                            assert!(len <= end && len <= MAX_HEADER);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn error_kinds_are_distinct_snake_case() {
        let errors = [
            ProxyHeaderError::NotProxy,
            ProxyHeaderError::Malformed("x"),
            ProxyHeaderError::TooLong,
            ProxyHeaderError::UnsupportedVersion,
            ProxyHeaderError::UnsupportedCommand,
            ProxyHeaderError::UnsupportedFamily,
        ];
        for (i, error) in errors.iter().enumerate() {
            let kind = error.kind();
            assert!(
                kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{kind}"
            );
            assert!(errors[i + 1..].iter().all(|other| other.kind() != kind));
            assert!(!error.to_string().is_empty());
        }
        assert_eq!(
            ProxyHeaderError::Malformed("other reason").kind(),
            "malformed"
        );
        assert_eq!(
            ProxyHeaderError::Malformed("bare LF in v1 line").to_string(),
            "malformed PROXY header: bare LF in v1 line"
        );
    }
}
