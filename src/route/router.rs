//! `route::router`: the matching tables of one listener on one shard.
//!
//! Owns the compiled route tables and picks the most specific route (host tier, then
//! path specificity, then file order, with methods and headers as filters) for each
//! request. Built by the shard from the listener's routes (again on every reload) and
//! called by the HTTP/1.1 connection for every request once its head is parsed. It
//! must not allocate, block or panic while routing, and it never rewrites the request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Longest host name (after dropping the port and one trailing dot) a host condition can match.
const MAX_HOST_LEN: usize = 255;

/// How a route matches the Host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `api.example.com`: equal, ASCII case-insensitive, port ignored.
    Exact(String),
    /// `*.example.com`: any host with one or more labels in front of `example.com` (not
    /// `example.com` itself). Holds the pattern as written in config; a bare `*` matches any host.
    Wildcard(String),
}

/// How a route matches the path (the target without its query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Equal to this path.
    Exact(String),
    /// Segment-aware prefix: `/api` matches `/api`, `/api/`, `/api/x`, not `/apix`. A prefix
    /// ending in `/` (like `/static/`) matches paths starting with it. `/` matches every path.
    Prefix(String),
}

/// What one route matches on (all given conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// Host condition; `None` matches any request, with or without a Host.
    pub host: Option<HostMatch>,
    /// Path condition; `None` matches any path.
    pub path: Option<PathMatch>,
    /// Method tokens (case-sensitive as HTTP says, e.g. "GET"); empty = any method.
    pub methods: Vec<String>,
    /// (header name, exact value); name compared ASCII case-insensitively, value byte-exact.
    /// All must match; a missing header fails.
    pub headers: Vec<(String, String)>,
}

/// What the router is asked about one request.
pub struct RequestView<'a, F: Fn(&str) -> Option<&'a [u8]>> {
    /// The method token, raw bytes.
    pub method: &'a [u8],
    /// The raw Host value (may have `:port`, any case, maybe a trailing dot, maybe IPv6
    /// `[::1]:80`), or None.
    pub host: Option<&'a [u8]>,
    /// The path without query, raw bytes (no normalisation, no percent-decoding).
    pub path: &'a [u8],
    /// Looks up the first value of a header by (lower-case) name.
    pub header: F,
}

/// Routes compiled for matching. The most specific matching route wins: exact host, then
/// wildcards (longest suffix first), then host-less routes; within one host group, exact path,
/// then prefixes (longest first), then no path condition; equally specific routes go in file
/// order, with methods and headers as filters. A group where nothing passes falls through.
#[derive(Debug)]
pub struct Router<T> {
    /// Every route's payload and filters, in file order: a route's index is its position here.
    routes: Vec<Route<T>>,
    /// Host tier 1: path tables of routes with an exact host, keyed by the lower-case host.
    exact_hosts: FastMap<Box<[u8]>, PathTable>,
    /// Host tier 2: path tables of wildcard routes, keyed by the lower-case suffix after `*.`.
    wildcards: FastMap<Box<[u8]>, PathTable>,
    /// Bitmap of the lengths of the keys in `wildcards`, so the suffix walk skips hopeless lookups.
    wildcard_lens: [u64; 4],
    /// Host tier 3: routes with no host condition.
    any_host: PathTable,
    /// Set when no route has any condition: the answer then never depends on the request.
    always: Option<usize>,
}

/// One route's payload plus the conditions checked per candidate (methods and headers).
#[derive(Debug)]
struct Route<T> {
    /// What the caller routes to; handed back by reference on a match.
    payload: T,
    /// Accepted method tokens, byte-exact; empty accepts every method.
    methods: Box<[Box<[u8]>]>,
    /// Header conditions; all must hold.
    headers: Box<[HeaderRule]>,
}

/// One header condition of a route.
#[derive(Debug)]
struct HeaderRule {
    /// Lower-case name, as the request's header lookup expects it.
    name: Box<str>,
    /// The exact value required, byte for byte.
    value: Box<[u8]>,
}

/// The routes of one host group (one exact host, one wildcard suffix, or no host), by path.
/// Every candidate list holds route indices in file order.
#[derive(Debug, Default)]
struct PathTable {
    /// Routes with an exact path condition, keyed by that path.
    exact: FastMap<Box<[u8]>, Vec<usize>>,
    /// Routes with a prefix condition other than the root, keyed by the prefix.
    prefixes: FastMap<Box<[u8]>, Vec<usize>>,
    /// Distinct lengths of the keys in `prefixes`, longest first: the only lengths worth a lookup.
    prefix_lens: Vec<usize>,
    /// Routes whose prefix is `/` (or empty): they take every path once longer prefixes failed.
    root: Vec<usize>,
    /// Routes with no path condition, tried last in this group.
    any_path: Vec<usize>,
}

impl<T> Router<T> {
    /// Compiles routes given in file order; each carries a payload `T` (what the caller routes to).
    pub fn new(routes: Vec<(RouteMatch, T)>) -> Router<T> {
        let mut router = Router {
            routes: Vec::with_capacity(routes.len()),
            exact_hosts: FastMap::default(),
            wildcards: FastMap::default(),
            wildcard_lens: [0; 4],
            any_host: PathTable::default(),
            always: None,
        };
        let mut all_unconditional = true;
        for (index, (rule, payload)) in routes.into_iter().enumerate() {
            all_unconditional &= rule.host.is_none()
                && rule.path.is_none()
                && rule.methods.is_empty()
                && rule.headers.is_empty();
            let table = match &rule.host {
                None => &mut router.any_host,
                Some(HostMatch::Exact(host)) => {
                    router.exact_hosts.entry(config_host(host)).or_default()
                }
                Some(HostMatch::Wildcard(pattern)) => {
                    let suffix = wildcard_suffix(pattern);
                    set_len(&mut router.wildcard_lens, suffix.len());
                    router.wildcards.entry(suffix).or_default()
                }
            };
            table.add(rule.path.as_ref(), index);
            router.routes.push(Route {
                payload,
                methods: rule
                    .methods
                    .into_iter()
                    .map(|m| m.into_bytes().into_boxed_slice())
                    .collect(),
                headers: rule
                    .headers
                    .into_iter()
                    .map(|(name, value)| HeaderRule {
                        name: name.to_ascii_lowercase().into_boxed_str(),
                        value: value.into_bytes().into_boxed_slice(),
                    })
                    .collect(),
            });
        }
        if all_unconditional && !router.routes.is_empty() {
            // Every route is a catch-all, so the first one in file order always wins.
            router.always = Some(0);
        }
        router
    }

    /// The payload and the index (file order) of the most specific route that matches, or None.
    pub fn route<'a, F: Fn(&str) -> Option<&'a [u8]>>(
        &self,
        request: &RequestView<'a, F>,
    ) -> Option<(usize, &T)> {
        let index = match self.always {
            Some(index) => index,
            None => self.find(request)?,
        };
        self.routes.get(index).map(|route| (index, &route.payload))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when the router has no routes (and so never matches).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Walks the host tiers from most to least specific; the first tier with a match wins.
    fn find<'a, F: Fn(&str) -> Option<&'a [u8]>>(
        &self,
        request: &RequestView<'a, F>,
    ) -> Option<usize> {
        if !self.exact_hosts.is_empty() || !self.wildcards.is_empty() {
            let mut buf = [0u8; MAX_HOST_LEN + 1];
            if let Some(host) = request.host.and_then(|raw| request_host(raw, &mut buf)) {
                if let Some(table) = self.exact_hosts.get(host) {
                    if let Some(index) = self.search(table, request) {
                        return Some(index);
                    }
                }
                if let Some(index) = self.search_wildcards(host, request) {
                    return Some(index);
                }
            }
        }
        self.search(&self.any_host, request)
    }

    /// Tries the wildcard groups whose suffix ends `host`, longest suffix first.
    fn search_wildcards<'a, F: Fn(&str) -> Option<&'a [u8]>>(
        &self,
        host: &[u8],
        request: &RequestView<'a, F>,
    ) -> Option<usize> {
        if self.wildcards.is_empty() {
            return None;
        }
        // The suffix after each dot, left to right, so longer suffixes come first. A suffix
        // only counts when the label right in front of it is non-empty.
        let mut label_start = 0;
        for (dot, &byte) in host.iter().enumerate() {
            if byte != b'.' {
                continue;
            }
            let has_label = dot > label_start;
            label_start = dot + 1;
            let Some(suffix) = host.get(dot + 1..) else {
                break;
            };
            if !has_label || suffix.is_empty() || !has_len(&self.wildcard_lens, suffix.len()) {
                continue;
            }
            if let Some(table) = self.wildcards.get(suffix) {
                if let Some(index) = self.search(table, request) {
                    return Some(index);
                }
            }
        }
        // A bare `*` pattern: any host at all, after every real suffix.
        if has_len(&self.wildcard_lens, 0) {
            if let Some(table) = self.wildcards.get(&b""[..]) {
                return self.search(table, request);
            }
        }
        None
    }

    /// Finds the most specific match within one host group: exact path, then prefixes
    /// longest first, then the root prefix, then routes with no path condition.
    fn search<'a, F: Fn(&str) -> Option<&'a [u8]>>(
        &self,
        table: &PathTable,
        request: &RequestView<'a, F>,
    ) -> Option<usize> {
        let path = request.path;
        if let Some(candidates) = table.exact.get(path) {
            if let Some(index) = self.first_accepting(candidates, request) {
                return Some(index);
            }
        }
        // Walking the configured prefix lengths (longest first) visits the same candidates as
        // walking the path's segment boundaries filtered by those lengths, in the same order,
        // but costs at most one step per distinct length and never scans the path.
        let longest_fit = table.prefix_lens.partition_point(|&len| len > path.len());
        for &len in table.prefix_lens.get(longest_fit..).unwrap_or_default() {
            let Some(key) = path.get(..len) else {
                continue;
            };
            // `/api` must end at a segment boundary; `/static/` already does.
            let at_boundary =
                key.last() == Some(&b'/') || matches!(path.get(len), None | Some(b'/'));
            if !at_boundary {
                continue;
            }
            if let Some(candidates) = table.prefixes.get(key) {
                if let Some(index) = self.first_accepting(candidates, request) {
                    return Some(index);
                }
            }
        }
        self.first_accepting(&table.root, request)
            .or_else(|| self.first_accepting(&table.any_path, request))
    }

    /// The first candidate (in file order) whose methods and headers accept the request.
    fn first_accepting<'a, F: Fn(&str) -> Option<&'a [u8]>>(
        &self,
        candidates: &[usize],
        request: &RequestView<'a, F>,
    ) -> Option<usize> {
        candidates.iter().copied().find(|&index| {
            self.routes
                .get(index)
                .is_some_and(|route| route.accepts(request))
        })
    }
}

impl<T> Route<T> {
    /// Whether the method and header filters hold for this request.
    fn accepts<'a, F: Fn(&str) -> Option<&'a [u8]>>(&self, request: &RequestView<'a, F>) -> bool {
        let method_ok =
            self.methods.is_empty() || self.methods.iter().any(|m| **m == *request.method);
        method_ok
            && self
                .headers
                .iter()
                .all(|rule| (request.header)(&rule.name).is_some_and(|found| found == &*rule.value))
    }
}

impl PathTable {
    /// Files route `index` under its path condition; indices arrive in file order.
    fn add(&mut self, path: Option<&PathMatch>, index: usize) {
        match path {
            None => self.any_path.push(index),
            Some(PathMatch::Exact(exact)) => self
                .exact
                .entry(exact.as_bytes().into())
                .or_default()
                .push(index),
            Some(PathMatch::Prefix(prefix)) if prefix.is_empty() || prefix == "/" => {
                self.root.push(index)
            }
            Some(PathMatch::Prefix(prefix)) => {
                let len = prefix.len();
                // Kept sorted longest first, without duplicates.
                if let Err(at) = self.prefix_lens.binary_search_by(|probe| len.cmp(probe)) {
                    self.prefix_lens.insert(at, len);
                }
                self.prefixes
                    .entry(prefix.as_bytes().into())
                    .or_default()
                    .push(index);
            }
        }
    }
}

/// Drops a `:port`, keeping an IPv6 literal (`[::1]`) whole with its brackets.
fn strip_port(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'[') {
        return match raw.iter().position(|&b| b == b']') {
            Some(close) => raw.get(..=close).unwrap_or(raw),
            None => raw,
        };
    }
    match raw.iter().position(|&b| b == b':') {
        // More than one colon is a bare IPv6 address (not valid in Host): compared whole.
        Some(colon) if !raw.get(colon + 1..).unwrap_or_default().contains(&b':') => {
            raw.get(..colon).unwrap_or(raw)
        }
        _ => raw,
    }
}

/// The host name part of a Host value: no port, at most one trailing dot removed.
fn host_name(raw: &[u8]) -> &[u8] {
    let name = strip_port(raw);
    name.strip_suffix(b".").unwrap_or(name)
}

/// Normalises a request's Host into `buf` (lower case); None when empty or too long to match.
fn request_host<'b>(raw: &[u8], buf: &'b mut [u8; MAX_HOST_LEN + 1]) -> Option<&'b [u8]> {
    let name = host_name(raw);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return None;
    }
    let out = buf.get_mut(..name.len())?;
    out.copy_from_slice(name);
    out.make_ascii_lowercase();
    Some(out)
}

/// The lookup key of a configured exact host, normalised like a request's Host.
fn config_host(host: &str) -> Box<[u8]> {
    host_name(host.as_bytes()).to_ascii_lowercase().into()
}

/// The lookup key of a configured wildcard: `*.Example.com` becomes `example.com`.
fn wildcard_suffix(pattern: &str) -> Box<[u8]> {
    let name = host_name(pattern.as_bytes());
    let name = name.strip_prefix(b"*").unwrap_or(name);
    let name = name.strip_prefix(b".").unwrap_or(name);
    name.to_ascii_lowercase().into()
}

/// Records `len` in a length bitmap; lengths past the bitmap can never match a host anyway.
fn set_len(bits: &mut [u64; 4], len: usize) {
    if let Some(word) = bits.get_mut(len / 64) {
        *word |= 1 << (len % 64);
    }
}

/// Whether `len` is recorded in a length bitmap.
fn has_len(bits: &[u64; 4], len: usize) -> bool {
    bits.get(len / 64)
        .is_some_and(|word| (word >> (len % 64)) & 1 == 1)
}

/// HashMap with the fast hasher below. The keys come from config, and requests only look
/// them up, so a client cannot grow a collision chain: SipHash's DoS resistance buys nothing.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Fx-style hasher (as in rustc): mixes eight bytes per multiply.
#[derive(Debug, Default, Clone, Copy)]
struct FxHasher {
    /// The running hash state.
    hash: u64,
}

/// Multiplier from rustc's FxHasher (odd, with well-spread bits).
const FX_SEED: u64 = 0x517c_c1b7_2722_0a95;

impl FxHasher {
    /// Folds one word into the state.
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Zero padding is unambiguous: `[u8]` hashing writes the length first.
            let mut word = [0u8; 8];
            if let Some(head) = word.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves its best bits high; the table indexes by the low ones.
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A route with the given conditions.
    fn rule(host: Option<HostMatch>, path: Option<PathMatch>) -> RouteMatch {
        RouteMatch {
            host,
            path,
            methods: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn exact(host: &str) -> Option<HostMatch> {
        Some(HostMatch::Exact(host.to_string()))
    }

    fn wild(pattern: &str) -> Option<HostMatch> {
        Some(HostMatch::Wildcard(pattern.to_string()))
    }

    fn path(path: &str) -> Option<PathMatch> {
        Some(PathMatch::Exact(path.to_string()))
    }

    fn prefix(prefix: &str) -> Option<PathMatch> {
        Some(PathMatch::Prefix(prefix.to_string()))
    }

    fn with_methods(mut rule: RouteMatch, methods: &[&str]) -> RouteMatch {
        rule.methods = methods.iter().map(|m| m.to_string()).collect();
        rule
    }

    fn with_header(mut rule: RouteMatch, name: &str, value: &str) -> RouteMatch {
        rule.headers.push((name.to_string(), value.to_string()));
        rule
    }

    /// Routes raw bytes; returns the matched index and payload.
    fn ask_raw<T: Copy>(
        router: &Router<T>,
        method: &[u8],
        host: Option<&[u8]>,
        path: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Option<(usize, T)> {
        let request = RequestView {
            method,
            host,
            path,
            header: |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|&(_, value)| value)
            },
        };
        router
            .route(&request)
            .map(|(index, payload)| (index, *payload))
    }

    /// GET with no headers; returns the payload only.
    fn ask<T: Copy>(router: &Router<T>, host: Option<&str>, path: &str) -> Option<T> {
        ask_m(router, "GET", host, path)
    }

    fn ask_m<T: Copy>(
        router: &Router<T>,
        method: &str,
        host: Option<&str>,
        path: &str,
    ) -> Option<T> {
        ask_raw(
            router,
            method.as_bytes(),
            host.map(str::as_bytes),
            path.as_bytes(),
            &[],
        )
        .map(|(_, payload)| payload)
    }

    fn ask_h<T: Copy>(
        router: &Router<T>,
        host: Option<&str>,
        path: &str,
        headers: &[(&str, &[u8])],
    ) -> Option<T> {
        ask_raw(
            router,
            b"GET",
            host.map(str::as_bytes),
            path.as_bytes(),
            headers,
        )
        .map(|(_, payload)| payload)
    }

    #[test]
    fn empty_router_matches_nothing() {
        let router: Router<&str> = Router::new(Vec::new());
        assert!(router.is_empty());
        assert_eq!(router.len(), 0);
        assert_eq!(ask(&router, Some("a.example.com"), "/"), None);
        assert_eq!(ask(&router, None, ""), None);
    }

    #[test]
    fn len_counts_routes() {
        let router = Router::new(vec![(rule(exact("a"), None), 1), (rule(None, None), 2)]);
        assert_eq!(router.len(), 2);
        assert!(!router.is_empty());
    }

    #[test]
    fn single_catch_all_ignores_the_request() {
        let router = Router::new(vec![(rule(None, None), "only")]);
        let lookups = Cell::new(0);
        let request = RequestView {
            method: &b"\xff\x00"[..],
            host: Some(&b"[::1"[..]),
            path: &b""[..],
            header: |_: &str| {
                lookups.set(lookups.get() + 1);
                None
            },
        };
        assert_eq!(router.route(&request), Some((0, &"only")));
        assert_eq!(lookups.get(), 0, "the fast path must not look at headers");
        assert_eq!(router.always, Some(0));
    }

    #[test]
    fn several_catch_alls_take_the_first() {
        let router = Router::new(vec![
            (rule(None, None), "first"),
            (rule(None, None), "second"),
        ]);
        assert_eq!(
            ask_raw(&router, b"GET", None, b"/x", &[]),
            Some((0, "first"))
        );
    }

    #[test]
    fn fast_path_is_off_when_any_route_has_a_condition() {
        let router = Router::new(vec![
            (rule(None, None), "all"),
            (rule(exact("a.example.com"), None), "a"),
        ]);
        assert_eq!(router.always, None);
        assert_eq!(ask(&router, Some("a.example.com"), "/"), Some("a"));
        assert_eq!(ask(&router, Some("b.example.com"), "/"), Some("all"));
    }

    #[test]
    fn exact_host_ignores_case_port_and_one_trailing_dot() {
        let router = Router::new(vec![
            (rule(exact("api.example.com"), None), "api"),
            (rule(None, None), "fallback"),
        ]);
        assert_eq!(ask(&router, Some("api.example.com"), "/"), Some("api"));
        assert_eq!(ask(&router, Some("API.Example.COM:8443"), "/"), Some("api"));
        assert_eq!(ask(&router, Some("api.example.com."), "/"), Some("api"));
        assert_eq!(ask(&router, Some("api.example.com.:80"), "/"), Some("api"));
        assert_eq!(
            ask(&router, Some("api.example.com.."), "/"),
            Some("fallback")
        );
        assert_eq!(ask(&router, Some("api.example.org"), "/"), Some("fallback"));
        assert_eq!(
            ask(&router, Some("xapi.example.com"), "/"),
            Some("fallback")
        );
    }

    #[test]
    fn configured_host_is_normalised_too() {
        let router = Router::new(vec![(rule(exact("API.Example.com.:443"), None), "api")]);
        assert_eq!(ask(&router, Some("api.example.com"), "/"), Some("api"));
    }

    #[test]
    fn ipv6_literal_host_with_port() {
        let router = Router::new(vec![
            (rule(exact("[::1]"), None), "v6"),
            (rule(exact("[2001:DB8::1]"), None), "doc"),
            (rule(None, None), "fallback"),
        ]);
        assert_eq!(ask(&router, Some("[::1]:8080"), "/"), Some("v6"));
        assert_eq!(ask(&router, Some("[::1]"), "/"), Some("v6"));
        assert_eq!(ask(&router, Some("[2001:db8::1]:443"), "/"), Some("doc"));
        assert_eq!(ask(&router, Some("[::2]:8080"), "/"), Some("fallback"));
        // Not valid Host values, but they must neither panic nor match.
        assert_eq!(ask(&router, Some("::1"), "/"), Some("fallback"));
        assert_eq!(ask(&router, Some("[::1"), "/"), Some("fallback"));
    }

    #[test]
    fn host_with_port_only_or_empty_counts_as_no_host() {
        let router = Router::new(vec![
            (rule(exact(""), None), "empty-host"),
            (rule(wild("*"), None), "any-host"),
            (rule(None, None), "hostless"),
        ]);
        for host in ["", ":80", ".", ".:443"] {
            assert_eq!(
                ask(&router, Some(host), "/"),
                Some("hostless"),
                "host {host:?}"
            );
        }
    }

    #[test]
    fn wildcard_needs_at_least_one_label_in_front() {
        let router = Router::new(vec![
            (rule(wild("*.example.com"), None), "wild"),
            (rule(None, None), "fallback"),
        ]);
        assert_eq!(ask(&router, Some("a.example.com"), "/"), Some("wild"));
        assert_eq!(ask(&router, Some("a.b.c.example.com"), "/"), Some("wild"));
        assert_eq!(ask(&router, Some("A.EXAMPLE.Com.:80"), "/"), Some("wild"));
        assert_eq!(ask(&router, Some("example.com"), "/"), Some("fallback"));
        assert_eq!(ask(&router, Some("notexample.com"), "/"), Some("fallback"));
        assert_eq!(ask(&router, Some(".example.com"), "/"), Some("fallback"));
        assert_eq!(ask(&router, Some("a..example.com"), "/"), Some("fallback"));
        assert_eq!(ask(&router, Some("a.example.org"), "/"), Some("fallback"));
        assert_eq!(ask(&router, None, "/"), Some("fallback"));
    }

    #[test]
    fn configured_wildcard_is_normalised() {
        let router = Router::new(vec![(rule(wild("*.Example.COM."), None), "wild")]);
        assert_eq!(ask(&router, Some("x.example.com"), "/"), Some("wild"));
        assert_eq!(ask(&router, Some("example.com"), "/"), None);
    }

    #[test]
    fn longest_wildcard_suffix_wins_in_either_order() {
        for flip in [false, true] {
            let mut routes = vec![
                (rule(wild("*.example.com"), None), "short"),
                (rule(wild("*.a.example.com"), None), "long"),
            ];
            if flip {
                routes.reverse();
            }
            let router = Router::new(routes);
            assert_eq!(ask(&router, Some("x.a.example.com"), "/"), Some("long"));
            assert_eq!(ask(&router, Some("y.x.a.example.com"), "/"), Some("long"));
            assert_eq!(ask(&router, Some("x.b.example.com"), "/"), Some("short"));
            // `*.a.example.com` does not cover `a.example.com` itself.
            assert_eq!(ask(&router, Some("a.example.com"), "/"), Some("short"));
        }
    }

    #[test]
    fn bare_star_wildcard_is_the_last_wildcard() {
        let router = Router::new(vec![
            (rule(wild("*"), None), "star"),
            (rule(wild("*.example.com"), None), "example"),
            (rule(None, None), "hostless"),
        ]);
        assert_eq!(ask(&router, Some("a.example.com"), "/"), Some("example"));
        assert_eq!(ask(&router, Some("localhost"), "/"), Some("star"));
        assert_eq!(ask(&router, None, "/"), Some("hostless"));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_hostless() {
        let router = Router::new(vec![
            (rule(None, None), "hostless"),
            (rule(wild("*.example.com"), None), "wild"),
            (rule(exact("api.example.com"), None), "exact"),
        ]);
        assert_eq!(ask(&router, Some("api.example.com"), "/"), Some("exact"));
        assert_eq!(ask(&router, Some("www.example.com"), "/"), Some("wild"));
        assert_eq!(ask(&router, Some("example.org"), "/"), Some("hostless"));
    }

    #[test]
    fn no_host_matches_only_hostless_routes() {
        let hosted_only = Router::new(vec![
            (rule(exact("a.example.com"), None), "a"),
            (rule(wild("*.example.com"), None), "w"),
        ]);
        assert_eq!(ask(&hosted_only, None, "/"), None);

        let router = Router::new(vec![
            (rule(exact("a.example.com"), None), "a"),
            (rule(None, prefix("/x")), "x"),
        ]);
        assert_eq!(ask(&router, None, "/x/1"), Some("x"));
        assert_eq!(ask(&router, None, "/y"), None);
    }

    #[test]
    fn exact_path_then_longest_prefix_then_shorter() {
        let router = Router::new(vec![
            (rule(None, prefix("/")), "root"),
            (rule(None, prefix("/api")), "api"),
            (rule(None, prefix("/api/users")), "users"),
            (rule(None, path("/api/users")), "users-exact"),
        ]);
        assert_eq!(ask(&router, None, "/api/users"), Some("users-exact"));
        assert_eq!(ask(&router, None, "/api/users/42"), Some("users"));
        assert_eq!(ask(&router, None, "/api/users/"), Some("users"));
        assert_eq!(ask(&router, None, "/api/other"), Some("api"));
        assert_eq!(ask(&router, None, "/api/usersx"), Some("api"));
        assert_eq!(ask(&router, None, "/api"), Some("api"));
        assert_eq!(ask(&router, None, "/api/"), Some("api"));
        assert_eq!(ask(&router, None, "/apix"), Some("root"));
        assert_eq!(ask(&router, None, "/"), Some("root"));
    }

    #[test]
    fn exact_path_is_only_exact() {
        let router = Router::new(vec![(rule(None, path("/health")), "health")]);
        assert_eq!(ask(&router, None, "/health"), Some("health"));
        assert_eq!(ask(&router, None, "/health/"), None);
        assert_eq!(ask(&router, None, "/healthz"), None);
        assert_eq!(ask(&router, None, "/HEALTH"), None);
    }

    #[test]
    fn prefix_is_segment_aware() {
        let router = Router::new(vec![(rule(None, prefix("/api")), "api")]);
        assert_eq!(ask(&router, None, "/api"), Some("api"));
        assert_eq!(ask(&router, None, "/api/"), Some("api"));
        assert_eq!(ask(&router, None, "/api/x/y"), Some("api"));
        assert_eq!(ask(&router, None, "/apix"), None);
        assert_eq!(ask(&router, None, "/ap"), None);
        assert_eq!(ask(&router, None, "/"), None);
    }

    #[test]
    fn prefix_with_trailing_slash() {
        let router = Router::new(vec![(rule(None, prefix("/static/")), "static")]);
        assert_eq!(ask(&router, None, "/static/app.css"), Some("static"));
        assert_eq!(ask(&router, None, "/static/"), Some("static"));
        assert_eq!(ask(&router, None, "/static/a/b/c"), Some("static"));
        assert_eq!(ask(&router, None, "/static"), None);
        assert_eq!(ask(&router, None, "/staticx/a"), None);
    }

    #[test]
    fn longer_prefix_wins_between_slash_and_no_slash_forms() {
        let router = Router::new(vec![
            (rule(None, prefix("/a")), "a"),
            (rule(None, prefix("/a/")), "a-slash"),
        ]);
        assert_eq!(ask(&router, None, "/a/b"), Some("a-slash"));
        assert_eq!(ask(&router, None, "/a/"), Some("a-slash"));
        assert_eq!(ask(&router, None, "/a"), Some("a"));
    }

    #[test]
    fn root_prefix_matches_every_path_and_beats_no_path() {
        let router = Router::new(vec![
            (rule(None, None), "no-path"),
            (rule(None, prefix("/")), "root"),
        ]);
        for p in ["/", "/x", "/x/y/z", "", "*", "weird"] {
            assert_eq!(ask(&router, None, p), Some("root"), "path {p:?}");
        }
        let empty_prefix = Router::new(vec![(rule(None, prefix("")), "root")]);
        assert_eq!(ask(&empty_prefix, None, "/anything"), Some("root"));
    }

    #[test]
    fn many_segments_still_find_the_right_prefix() {
        let router = Router::new(vec![
            (rule(None, prefix("/a/b")), "ab"),
            (rule(None, prefix("/a/b/c/d/e/f/g")), "deep"),
            (rule(None, prefix("/z")), "z"),
        ]);
        assert_eq!(ask(&router, None, "/a/b/c/d/e/f/g/h/i/j/k"), Some("deep"));
        assert_eq!(ask(&router, None, "/a/b/c/d/e/f/gg/h/i/j/k"), Some("ab"));
        assert_eq!(ask(&router, None, "/a/bc/d"), None);
        assert_eq!(ask(&router, None, "/a//b"), None);
    }

    #[test]
    fn keys_that_differ_only_by_trailing_zero_bytes_stay_distinct() {
        let router = Router::new(vec![
            (rule(None, path("/a")), "a"),
            (rule(None, path("/a\0")), "a0"),
            (rule(None, path("/a\0\0\0\0\0\0\0")), "a0x7"),
        ]);
        assert_eq!(ask(&router, None, "/a"), Some("a"));
        assert_eq!(ask(&router, None, "/a\0"), Some("a0"));
        assert_eq!(ask(&router, None, "/a\0\0\0\0\0\0\0"), Some("a0x7"));
        assert_eq!(ask(&router, None, "/a\0\0"), None);
    }

    #[test]
    fn hasher_uses_every_byte() {
        let hash = |bytes: &[u8]| {
            let mut hasher = FxHasher::default();
            hasher.write(bytes);
            hasher.finish()
        };
        let keys: [&[u8]; 6] = [
            b"api.example.com",
            b"api.example.org",
            b"/a",
            b"/b",
            b"/static/",
            b"/static/x",
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in keys.get(i + 1..).unwrap_or_default() {
                assert_ne!(hash(a), hash(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn methods_filter_with_fall_through_in_the_same_tier() {
        let router = Router::new(vec![
            (
                with_methods(rule(None, prefix("/api")), &["POST", "PUT"]),
                "write",
            ),
            (with_methods(rule(None, prefix("/api")), &["GET"]), "read"),
            (rule(None, prefix("/api")), "any-api"),
        ]);
        assert_eq!(ask_m(&router, "POST", None, "/api/x"), Some("write"));
        assert_eq!(ask_m(&router, "PUT", None, "/api/x"), Some("write"));
        assert_eq!(ask_m(&router, "GET", None, "/api/x"), Some("read"));
        assert_eq!(ask_m(&router, "DELETE", None, "/api/x"), Some("any-api"));
        // Methods are case-sensitive.
        assert_eq!(ask_m(&router, "get", None, "/api/x"), Some("any-api"));
        assert_eq!(ask_m(&router, "GET", None, "/other"), None);
    }

    #[test]
    fn headers_filter_name_case_insensitive_value_exact() {
        let router = Router::new(vec![
            (
                with_header(rule(None, prefix("/")), "X-Canary", "1"),
                "canary",
            ),
            (rule(None, prefix("/")), "stable"),
        ]);
        assert_eq!(
            ask_h(&router, None, "/", &[("x-canary", b"1")]),
            Some("canary")
        );
        assert_eq!(
            ask_h(&router, None, "/", &[("x-canary", b"1 ")]),
            Some("stable")
        );
        assert_eq!(
            ask_h(&router, None, "/", &[("x-canary", b"true")]),
            Some("stable")
        );
        assert_eq!(
            ask_h(&router, None, "/", &[("x-other", b"1")]),
            Some("stable")
        );
        assert_eq!(ask_h(&router, None, "/", &[]), Some("stable"));
    }

    #[test]
    fn all_headers_must_match() {
        let router = Router::new(vec![(
            with_header(with_header(rule(None, None), "a", "1"), "B", "2"),
            "both",
        )]);
        assert_eq!(
            ask_h(&router, None, "/", &[("a", b"1"), ("b", b"2")]),
            Some("both")
        );
        assert_eq!(ask_h(&router, None, "/", &[("a", b"1")]), None);
        assert_eq!(ask_h(&router, None, "/", &[("b", b"2")]), None);
    }

    #[test]
    fn failed_filters_fall_through_to_lower_tiers() {
        let router = Router::new(vec![
            (rule(None, None), "catch-all"),
            (rule(None, prefix("/static")), "static"),
            (
                with_methods(rule(wild("*.example.com"), path("/health")), &["GET"]),
                "wild-health",
            ),
            (
                with_header(rule(exact("api.example.com"), prefix("/")), "x-beta", "1"),
                "api-beta",
            ),
            (
                with_methods(rule(exact("api.example.com"), prefix("/admin")), &["POST"]),
                "admin",
            ),
        ]);
        let host = Some("api.example.com");
        assert_eq!(ask_m(&router, "POST", host, "/admin/x"), Some("admin"));
        assert_eq!(
            ask_h(&router, host, "/admin/x", &[("x-beta", b"1")]),
            Some("api-beta")
        );
        // Exact-host routes all refuse: the wildcard tier, then the hostless tier answer.
        assert_eq!(ask_m(&router, "GET", host, "/health"), Some("wild-health"));
        assert_eq!(ask_m(&router, "HEAD", host, "/health"), Some("catch-all"));
        assert_eq!(ask_m(&router, "GET", host, "/static/a.js"), Some("static"));
        assert_eq!(ask_m(&router, "GET", host, "/admin/x"), Some("catch-all"));
    }

    #[test]
    fn exact_path_refusal_falls_back_to_prefixes_in_the_same_host() {
        let router = Router::new(vec![
            (
                with_methods(rule(exact("h"), path("/a/b")), &["POST"]),
                "exact-post",
            ),
            (
                with_methods(rule(exact("h"), prefix("/a/b")), &["PUT"]),
                "long-put",
            ),
            (rule(exact("h"), prefix("/a")), "short"),
            (rule(exact("h"), None), "host-any"),
        ]);
        assert_eq!(
            ask_m(&router, "POST", Some("h"), "/a/b"),
            Some("exact-post")
        );
        assert_eq!(ask_m(&router, "PUT", Some("h"), "/a/b"), Some("long-put"));
        assert_eq!(ask_m(&router, "GET", Some("h"), "/a/b"), Some("short"));
        assert_eq!(ask_m(&router, "GET", Some("h"), "/b"), Some("host-any"));
    }

    #[test]
    fn equally_specific_routes_go_in_file_order() {
        let router = Router::new(vec![
            (
                with_header(rule(exact("h"), prefix("/p")), "x-a", "1"),
                "first",
            ),
            (rule(exact("h"), prefix("/p")), "second"),
            (rule(exact("h"), prefix("/p")), "third"),
        ]);
        assert_eq!(
            ask_raw(&router, b"GET", Some(b"h"), b"/p/x", &[("x-a", b"1")]),
            Some((0, "first"))
        );
        assert_eq!(
            ask_raw(&router, b"GET", Some(b"h"), b"/p/x", &[]),
            Some((1, "second"))
        );
    }

    #[test]
    fn most_specific_wins_whatever_the_file_order() {
        let base: Vec<(RouteMatch, &str)> = vec![
            (rule(None, None), "catch-all"),
            (rule(None, prefix("/api")), "hostless-api"),
            (rule(wild("*.example.com"), None), "wild"),
            (
                rule(wild("*.eu.example.com"), prefix("/api")),
                "wild-eu-api",
            ),
            (rule(exact("shop.example.com"), None), "shop"),
            (rule(exact("shop.example.com"), prefix("/api")), "shop-api"),
            (
                rule(exact("shop.example.com"), prefix("/api/v2/")),
                "shop-api-v2",
            ),
            (
                rule(exact("shop.example.com"), path("/api")),
                "shop-api-exact",
            ),
            (
                with_methods(rule(exact("shop.example.com"), prefix("/cart")), &["POST"]),
                "cart-post",
            ),
        ];
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            ("GET", Some("shop.example.com"), "/api", "shop-api-exact"),
            ("GET", Some("shop.example.com"), "/api/v1/x", "shop-api"),
            ("GET", Some("shop.example.com"), "/api/v2/x", "shop-api-v2"),
            ("GET", Some("shop.example.com"), "/api/v2", "shop-api"),
            ("GET", Some("shop.example.com"), "/about", "shop"),
            ("POST", Some("shop.example.com"), "/cart", "cart-post"),
            ("GET", Some("shop.example.com"), "/cart", "shop"),
            ("GET", Some("x.eu.example.com"), "/api/x", "wild-eu-api"),
            ("GET", Some("x.eu.example.com"), "/web", "wild"),
            ("GET", Some("www.example.com"), "/api", "wild"),
            ("GET", Some("example.com"), "/api/x", "hostless-api"),
            ("GET", None, "/api", "hostless-api"),
            ("GET", None, "/", "catch-all"),
            ("GET", Some("other.org"), "/x", "catch-all"),
        ];
        let permutations: [[usize; 9]; 8] = [
            [0, 1, 2, 3, 4, 5, 6, 7, 8],
            [8, 7, 6, 5, 4, 3, 2, 1, 0],
            [4, 5, 6, 7, 8, 0, 1, 2, 3],
            [1, 3, 5, 7, 0, 2, 4, 6, 8],
            [7, 2, 8, 0, 6, 3, 1, 5, 4],
            [5, 0, 8, 1, 7, 2, 6, 3, 4],
            [3, 8, 2, 6, 1, 4, 0, 7, 5],
            [6, 4, 2, 0, 8, 7, 5, 3, 1],
        ];
        for order in permutations {
            let routes: Vec<_> = order.iter().map(|&i| base[i].clone()).collect();
            let router = Router::new(routes);
            for &(method, host, p, want) in cases {
                let got = ask_raw(
                    &router,
                    method.as_bytes(),
                    host.map(str::as_bytes),
                    p.as_bytes(),
                    &[],
                );
                let (index, name) =
                    got.unwrap_or_else(|| panic!("{order:?} {method} {host:?} {p}: no match"));
                assert_eq!(name, want, "order {order:?}, {method} {host:?} {p}");
                // The index is the position in this file order.
                assert_eq!(base[order[index]].1, want);
            }
        }
    }

    #[test]
    fn host_length_limit() {
        let name_255 = format!("{}.com", "a".repeat(251));
        let name_256 = format!("{}.com", "a".repeat(252));
        assert_eq!(name_255.len(), 255);
        let router = Router::new(vec![
            (rule(exact(&name_255), None), "255"),
            (rule(exact(&name_256), None), "256"),
            (rule(wild("*.com"), None), "wild"),
            (rule(None, None), "hostless"),
        ]);
        assert_eq!(ask(&router, Some(&name_255), "/"), Some("255"));
        assert_eq!(
            ask(&router, Some(&format!("{name_255}.:8080")), "/"),
            Some("255")
        );
        assert_eq!(ask(&router, Some(&name_256), "/"), Some("hostless"));
        let huge = "b.".repeat(5000) + "com";
        assert_eq!(ask(&router, Some(&huge), "/"), Some("hostless"));
    }

    #[test]
    fn junk_bytes_never_panic() {
        let router = Router::new(vec![
            (rule(exact("a.example.com"), prefix("/api")), 0),
            (rule(exact("a.example.com"), path("/x")), 1),
            (rule(wild("*.example.com"), prefix("/static/")), 2),
            (with_header(rule(wild("*"), None), "x", "1"), 3),
            (with_methods(rule(None, prefix("/a")), &["GET"]), 4),
            (rule(None, path("")), 5),
        ]);
        let hosts: [&[u8]; 14] = [
            b"\xff\xfe.example.com",
            b"a.example.com\xff",
            b"",
            b":",
            b"[",
            b"]",
            b"[]:",
            b"[::1]junk",
            b"...",
            b".",
            b"a.example.com:\xff",
            b"\x00",
            b"A.EXAMPLE.COM",
            b"x.example.com",
        ];
        let paths: [&[u8]; 8] = [
            b"",
            b"/",
            b"\xff",
            b"/api\xff",
            b"/static/\xff",
            b"//",
            b"/a",
            b"?",
        ];
        for host in hosts {
            for p in paths {
                for method in [&b""[..], b"GET", b"\xff"] {
                    let got = ask_raw(&router, method, Some(host), p, &[("x", b"\xff")]);
                    assert!(
                        got.is_none_or(|(index, payload)| index == payload && index < router.len())
                    );
                }
            }
        }
        // Spot checks that junk still routes sensibly.
        assert_eq!(
            ask_raw(&router, b"GET", Some(b"a.example.com"), b"", &[]),
            Some((5, 5))
        );
        assert_eq!(
            ask_raw(
                &router,
                b"GET",
                Some(b"\xff.example.com"),
                b"/static/\xff",
                &[]
            ),
            Some((2, 2))
        );
        assert_eq!(
            ask_raw(&router, b"GET", Some(b"a.example.com"), b"/api\xff", &[]),
            None
        );

        // A deterministic byte soup through every code path.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"aZ.:/[]*\xff\x00-e";
        let soup = |len: usize, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
            (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        };
        for _ in 0..20_000 {
            let host_len = (next() % 40) as usize;
            let path_len = (next() % 40) as usize;
            let host = soup(host_len, &mut next);
            let p = soup(path_len, &mut next);
            let got = ask_raw(&router, b"GET", Some(&host), &p, &[("x", b"1")]);
            assert!(got.is_none_or(|(index, payload)| index == payload));
        }
    }
}
