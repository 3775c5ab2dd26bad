//! `admin::access`: who may use the admin API, and what a browser may not do.
//!
//! Owns the bearer-token check (compared in constant time) and the guards of
//! the endpoints that change the balancer against cross-site request forgery and
//! DNS rebinding: the `Origin` and `Sec-Fetch-Site` a browser adds, a `Host` that
//! must be the admin address (or a configured name), and no form or `text/plain`
//! bodies. Pure decisions on header values; no I/O.

use std::net::{IpAddr, SocketAddr};

/// What the admin listener checks, updated by reloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminAccess {
    /// `admin.token`: when set, every request but `GET /healthz` and `GET /` (the
    /// stats page, which holds no figures) must carry
    /// `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// `admin.hosts`: names (besides the admin address) changes, and reads when
    /// there is no token, may be sent to.
    pub hosts: Vec<String>,
    /// `admin.profiling`: whether `GET /debug/profile` may take a profile.
    pub profiling: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or the wrong one (401).
    Unauthorized,
    /// What a web page could have sent on the operator's behalf (403).
    Forbidden(&'static str),
    /// A body that is not JSON (415).
    UnsupportedMediaType,
}

impl Refusal {
    /// The status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unauthorized => 401,
            Refusal::Forbidden(_) => 403,
            Refusal::UnsupportedMediaType => 415,
        }
    }

    /// Why, for the JSON error body.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unauthorized => {
                "a valid bearer token is required (Authorization: Bearer TOKEN)"
            }
            Refusal::Forbidden(why) => why,
            Refusal::UnsupportedMediaType => {
                "a request body must be JSON (Content-Type: application/json)"
            }
        }
    }
}

/// Equality that takes as long for every pair of tokens of a given length: a
/// client timing the answer learns nothing about which bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(!x);
        difference |= usize::from(x ^ y);
    }
    difference == 0
}

/// Checks the `Authorization` header against the configured token.
pub fn authorize(access: &AdminAccess, authorization: Option<&[u8]>) -> Result<(), Refusal> {
    let Some(token) = &access.token else {
        return Ok(());
    };
    let presented = authorization
        .and_then(|value| {
            let (scheme, credentials) = value.split_at(value.len().min(7));
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then_some(credentials)
        })
        .map(<[u8]>::trim_ascii);
    match presented {
        Some(presented) if constant_time_eq(presented, token.as_bytes()) => Ok(()),
        _ => Err(Refusal::Unauthorized),
    }
}

/// Refuses a read that a web page could have made through DNS rebinding (its own
/// name resolving to the admin address): without a token, the `Host` must name
/// the admin listener, as for changes. With a token there is nothing to refuse
/// here: a page cannot know it, and scrapers may use any name.
pub fn check_read(
    access: &AdminAccess,
    admin: SocketAddr,
    host: Option<&[u8]>,
) -> Result<(), Refusal> {
    if access.token.is_some() {
        return Ok(());
    }
    if names_admin(access, admin, host) {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "Host must be the admin address (or a name in admin.hosts) when no admin.token is set",
        ))
    }
}

/// Whether a `Host` value is there and names the admin listener.
fn names_admin(access: &AdminAccess, admin: SocketAddr, host: Option<&[u8]>) -> bool {
    host.and_then(|h| std::str::from_utf8(h).ok())
        .is_some_and(|h| host_allowed(access, admin, h))
}

/// The headers a change is judged by.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeRequest<'a> {
    /// `Host`.
    pub host: Option<&'a [u8]>,
    /// `Origin`.
    pub origin: Option<&'a [u8]>,
    /// `Sec-Fetch-Site`.
    pub fetch_site: Option<&'a [u8]>,
    /// `Content-Type`.
    pub content_type: Option<&'a [u8]>,
    /// Whether the request has a body.
    pub has_body: bool,
}

/// Refuses a change a web page could have made the operator's browser send:
/// another site's `Origin` or `Sec-Fetch-Site`, a `Host` other than the admin
/// address (DNS rebinding), or a form or `text/plain` body (which a page may post
/// without asking). `curl -X POST` (no body, no Origin) passes.
pub fn check_change(
    access: &AdminAccess,
    admin: SocketAddr,
    request: &ChangeRequest<'_>,
) -> Result<(), Refusal> {
    if let Some(site) = request.fetch_site {
        if !(site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")) {
            return Err(Refusal::Forbidden(
                "Sec-Fetch-Site says another site sent this request",
            ));
        }
    }
    if !names_admin(access, admin, request.host) {
        return Err(Refusal::Forbidden(
            "Host must be the admin address (or a name in admin.hosts)",
        ));
    }
    let host = request.host.and_then(|h| std::str::from_utf8(h).ok());
    if let Some(origin) = request.origin {
        // The page that sent it must be the admin listener's own: the same
        // authority as the Host (any other page, even one at an IP address, is
        // another site).
        let authority = std::str::from_utf8(origin)
            .ok()
            .and_then(|o| o.strip_prefix("http://").or(o.strip_prefix("https://")));
        let same = authority
            .zip(host)
            .is_some_and(|(a, h)| a.eq_ignore_ascii_case(h));
        if !same {
            return Err(Refusal::Forbidden(
                "Origin names another site than the admin address",
            ));
        }
    }
    // A body must say it is JSON: a page may send other types (or none, from a
    // Blob) without asking.
    if request.has_body && request.content_type.is_none() {
        return Err(Refusal::UnsupportedMediaType);
    }
    if let Some(content_type) = request.content_type {
        let media = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if !media.eq_ignore_ascii_case(b"application/json") {
            return Err(Refusal::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// Whether `host` (a `Host` value, or an origin's authority) names the admin
/// listener: an IP address (a DNS rebinding attack needs a name), `localhost` when
/// the admin listens on loopback, or a configured name; with the admin port, or
/// none.
fn host_allowed(access: &AdminAccess, admin: SocketAddr, host: &str) -> bool {
    let (name, port) = split_port(host);
    if port.is_some_and(|p| p != admin.port()) {
        return false;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    let local_admin = admin.ip().is_loopback() || admin.ip().is_unspecified();
    (local_admin && name.eq_ignore_ascii_case("localhost"))
        || access.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `name:port` → (`name`, port); `[v6]:port` keeps its brackets in the name.
fn split_port(host: &str) -> (&str, Option<u16>) {
    let colon = if host.starts_with('[') {
        host.find("]:").map(|i| i + 1)
    } else if host.matches(':').count() == 1 {
        host.find(':')
    } else {
        None
    };
    match colon {
        Some(i) => match host[i + 1..].parse() {
            Ok(port) => (&host[..i], Some(port)),
            // A port that does not parse matches no port.
            Err(_) => (host, Some(0)),
        },
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>, hosts: &[&str]) -> AdminAccess {
        AdminAccess {
            token: token.map(str::to_string),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            profiling: false,
        }
    }

    const ADMIN: &str = "127.0.0.1:9900";

    fn change<'a>(host: &'a str) -> ChangeRequest<'a> {
        ChangeRequest {
            host: Some(host.as_bytes()),
            ..ChangeRequest::default()
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-123", b"secret-token-124"));
        assert!(!constant_time_eq(b"secret-token-123", b"secret-token-12"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_token_is_required_only_when_configured() {
        assert_eq!(authorize(&access(None, &[]), None), Ok(()));
        let a = access(Some("0123456789abcdef"), &[]);
        assert_eq!(authorize(&a, None), Err(Refusal::Unauthorized));
        assert_eq!(
            authorize(&a, Some(b"Bearer wrong-token-00000")),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            authorize(&a, Some(b"Basic 0123456789abcdef")),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(authorize(&a, Some(b"Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(authorize(&a, Some(b"bearer 0123456789abcdef")), Ok(()));
    }

    #[test]
    fn curl_without_a_body_passes() {
        let a = access(None, &[]);
        assert_eq!(
            check_change(&a, ADMIN.parse().unwrap(), &change(ADMIN)),
            Ok(())
        );
        assert_eq!(
            check_change(&a, ADMIN.parse().unwrap(), &change("localhost:9900")),
            Ok(())
        );
        assert_eq!(
            check_change(&a, ADMIN.parse().unwrap(), &change("[::1]:9900")),
            Ok(())
        );
    }

    #[test]
    fn a_host_that_is_a_name_needs_configuring() {
        let admin: SocketAddr = ADMIN.parse().unwrap();
        let a = access(None, &[]);
        for host in [
            "evil.example:9900",
            "evil.example",
            "127.0.0.1:80",
            "localhost:1",
        ] {
            assert!(
                matches!(
                    check_change(&a, admin, &change(host)),
                    Err(Refusal::Forbidden(_))
                ),
                "{host}"
            );
        }
        let missing = ChangeRequest::default();
        assert!(check_change(&a, admin, &missing).is_err());
        let named = access(None, &["lb.internal"]);
        assert_eq!(
            check_change(&named, admin, &change("lb.internal:9900")),
            Ok(())
        );
        assert_eq!(check_change(&named, admin, &change("LB.internal")), Ok(()));
        // `localhost` names the admin only when it listens on loopback.
        let public: SocketAddr = "10.1.2.3:9900".parse().unwrap();
        assert!(check_change(&a, public, &change("localhost:9900")).is_err());
        assert_eq!(check_change(&a, public, &change("10.1.2.3:9900")), Ok(()));
    }

    #[test]
    fn another_sites_origin_or_fetch_site_is_refused() {
        let admin: SocketAddr = ADMIN.parse().unwrap();
        let a = access(None, &[]);
        let from = |origin: &'static str| ChangeRequest {
            origin: Some(origin.as_bytes()),
            ..change(ADMIN)
        };
        assert!(check_change(&a, admin, &from("https://evil.example")).is_err());
        assert!(check_change(&a, admin, &from("null")).is_err());
        assert_eq!(
            check_change(&a, admin, &from("http://127.0.0.1:9900")),
            Ok(())
        );
        // An IP address is not the admin's own page unless it is the Host.
        assert!(check_change(&a, admin, &from("http://203.0.113.5")).is_err());
        assert!(check_change(&a, admin, &from("http://127.0.0.1:9901")).is_err());
        for site in ["cross-site", "same-site"] {
            let r = ChangeRequest {
                fetch_site: Some(site.as_bytes()),
                ..change(ADMIN)
            };
            assert!(check_change(&a, admin, &r).is_err(), "{site}");
        }
        for site in ["same-origin", "none"] {
            let r = ChangeRequest {
                fetch_site: Some(site.as_bytes()),
                ..change(ADMIN)
            };
            assert_eq!(check_change(&a, admin, &r), Ok(()), "{site}");
        }
    }

    #[test]
    fn only_json_bodies_are_taken() {
        let admin: SocketAddr = ADMIN.parse().unwrap();
        let a = access(None, &[]);
        let typed = |t: &'static str| ChangeRequest {
            content_type: Some(t.as_bytes()),
            ..change(ADMIN)
        };
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain; charset=utf-8",
        ] {
            assert_eq!(
                check_change(&a, admin, &typed(t)),
                Err(Refusal::UnsupportedMediaType),
                "{t}"
            );
        }
        assert_eq!(check_change(&a, admin, &typed("application/json")), Ok(()));
        let untyped = ChangeRequest {
            has_body: true,
            ..change(ADMIN)
        };
        assert_eq!(
            check_change(&a, admin, &untyped),
            Err(Refusal::UnsupportedMediaType),
            "a body without a type"
        );
        assert_eq!(
            check_change(&a, admin, &typed("Application/JSON; charset=utf-8")),
            Ok(())
        );
    }
}
