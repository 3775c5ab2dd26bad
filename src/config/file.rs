//! `config::file`: the file's shape, and its conversion into real types.
//!
//! Owns the serde structs (`deny_unknown_fields`, every value optional so that a
//! missing key takes its default), the two forms of the file (the short form's
//! sections, or `[[listeners]]`, `[[routes]]` and `[[clusters]]`), and `convert`,
//! which turns strings into durations, addresses and enums, recording an error for
//! each value that does not convert and carrying on with its default, so that every
//! error is reported. Range and consistency rules live in `check`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::config::error::Errors;
use crate::config::*;

// ---------------------------------------------------------------------------
// The file's shape.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    admin: FileAdmin,
    #[serde(default)]
    timeouts: FileTimeouts,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    logging: FileLogging,
    // The short form.
    upstream: Option<FileUpstream>,
    balancer: Option<FileBalancer>,
    health_check: Option<FileHealthCheck>,
    retry: Option<FileRetry>,
    circuit_breaker: Option<FileBreaker>,
    backends: Option<Vec<FileBackend>>,
    // The full form.
    listeners: Option<Vec<FileListener>>,
    routes: Option<Vec<FileRoute>>,
    clusters: Option<Vec<FileCluster>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: Option<String>,
    shards: Option<u64>,
    io: Option<String>,
    max_connections: Option<u64>,
    transparent_huge_pages: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: Option<String>,
    token: Option<String>,
    hosts: Option<Vec<String>>,
    profiling: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect: Option<String>,
    header_read: Option<String>,
    idle: Option<String>,
    backend_response: Option<String>,
    shutdown_grace: Option<String>,
    tunnel_idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_header_bytes: Option<u64>,
    max_headers: Option<u64>,
    max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    max_idle_per_backend: Option<u64>,
    idle_timeout: Option<String>,
    send_proxy: Option<String>,
    protocol: Option<String>,
    h2_max_streams: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBalancer {
    strategy: Option<String>,
    ewma_decay: Option<String>,
    hash_key: Option<String>,
    hash_algorithm: Option<String>,
    virtual_nodes: Option<u64>,
    table_size: Option<u64>,
    hash_bounded_load: Option<f64>,
    sticky: Option<FileSticky>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSticky {
    cookie: Option<String>,
    ttl: Option<String>,
    secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLogging {
    level: Option<String>,
    format: Option<String>,
    access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealthCheck {
    kind: Option<String>,
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    expect_status: Option<String>,
    unhealthy_threshold: Option<u64>,
    healthy_threshold: Option<u64>,
    start: Option<String>,
    slow_start: Option<String>,
    send_proxy: Option<bool>,
    service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    max_retries: Option<u64>,
    max_buffered_body: Option<u64>,
    budget_percent: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBreaker {
    enabled: Option<bool>,
    failure_threshold: Option<u64>,
    open_for: Option<String>,
    half_open_probes: Option<u64>,
    count_5xx: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackend {
    name: Option<String>,
    address: Option<String>,
    weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    name: Option<String>,
    address: Option<String>,
    protocol: Option<String>,
    cluster: Option<String>,
    accept_proxy: Option<bool>,
    proxy_trusted: Option<Vec<String>>,
    tls: Option<FileListenerTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListenerTls {
    certificates: Option<Vec<FileCertificate>>,
    default: Option<String>,
    min_version: Option<String>,
    alpn: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCertificate {
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: Option<String>,
    listener: Option<String>,
    host: Option<String>,
    path: Option<String>,
    path_prefix: Option<String>,
    methods: Option<Vec<String>>,
    headers: Option<BTreeMap<String, String>>,
    cluster: Option<String>,
    strip_prefix: Option<bool>,
    set_request_headers: Option<BTreeMap<String, String>>,
    remove_request_headers: Option<Vec<String>>,
}

/// A cluster: the short form's `[balancer]` keys sit on it directly (serde's
/// `flatten` does not work with `deny_unknown_fields`), the other sections are
/// tables of the same shape as in the short form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    name: Option<String>,
    strategy: Option<String>,
    ewma_decay: Option<String>,
    hash_key: Option<String>,
    hash_algorithm: Option<String>,
    virtual_nodes: Option<u64>,
    table_size: Option<u64>,
    hash_bounded_load: Option<f64>,
    sticky: Option<FileSticky>,
    health_check: Option<FileHealthCheck>,
    circuit_breaker: Option<FileBreaker>,
    retry: Option<FileRetry>,
    upstream: Option<FileUpstream>,
    timeouts: Option<FileClusterTimeouts>,
    backends: Option<Vec<FileBackend>>,
    tls: Option<FileClusterTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClusterTls {
    server_name: Option<String>,
    ca: Option<String>,
    verify: Option<bool>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClusterTimeouts {
    connect: Option<String>,
    backend_response: Option<String>,
}

/// The short form's sections, named as in the file, for the error that says they
/// cannot be mixed with the full form.
const SHORT_FORM_SECTIONS: [&str; 6] = [
    "balancer",
    "health_check",
    "retry",
    "circuit_breaker",
    "upstream",
    "backends",
];

impl FileConfig {
    /// Whether the file uses `[[listeners]]`, `[[routes]]` or `[[clusters]]`.
    fn full_form(&self) -> bool {
        self.listeners.is_some() || self.routes.is_some() || self.clusters.is_some()
    }

    /// The short form's keys present in the file.
    fn short_form_keys(&self) -> Vec<&'static str> {
        let present = [
            self.balancer.is_some(),
            self.health_check.is_some(),
            self.retry.is_some(),
            self.circuit_breaker.is_some(),
            self.upstream.is_some(),
            self.backends.is_some(),
        ];
        let mut keys: Vec<&'static str> = SHORT_FORM_SECTIONS
            .iter()
            .zip(present)
            .filter(|(_, p)| *p)
            .map(|(k, _)| *k)
            .collect();
        if self.server.listen.is_some() {
            keys.insert(0, "server.listen");
        }
        keys
    }
}

// ---------------------------------------------------------------------------
// Conversion.

/// Parses a duration: an integer followed by `us`, `ms`, `s`, `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || format!("expected a duration like \"250ms\", \"2s\" or \"1m\", got {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(expected());
    }
    let n: u64 = digits.parse().map_err(|_| expected())?;
    let d = match unit {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    };
    d.ok_or_else(expected)
}

/// Parses `"200-399"` or `"200"` into a status range.
pub(super) fn parse_status_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let expected = || format!("expected a status or range like \"200-399\", got {s:?}");
    let (low, high) = match s.split_once('-') {
        Some((low, high)) => (low, high),
        None => (s, s),
    };
    let low: u16 = low.trim().parse().map_err(|_| expected())?;
    let high: u16 = high.trim().parse().map_err(|_| expected())?;
    if !(100..=599).contains(&low) || !(100..=599).contains(&high) || low > high {
        return Err(expected());
    }
    Ok(low..=high)
}

/// Parses `client-ip`, `path`, `header:NAME` or `cookie:NAME`.
pub(super) fn parse_hash_key(s: &str) -> Result<HashKey, String> {
    let expected = || format!("expected client-ip, path, header:NAME or cookie:NAME, got {s:?}");
    let token = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match s.split_once(':') {
        None if s == "client-ip" => Ok(HashKey::ClientIp),
        None if s == "path" => Ok(HashKey::Path),
        Some(("header", name)) if token(name) => Ok(HashKey::Header(name.to_ascii_lowercase())),
        Some(("cookie", name)) if token(name) => Ok(HashKey::Cookie(name.to_string())),
        _ => Err(expected()),
    }
}

/// Parses `IP:port`, `[v6]:port` or `:port` (all interfaces).
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let expected = || format!("expected IP:port like 127.0.0.1:8080 or :8080, got {s:?}");
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| expected())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    s.parse().map_err(|_| expected())
}

fn choice<T: Copy>(
    errors: &mut Errors<'_>,
    key: &str,
    value: Option<&str>,
    default: T,
    options: &[(&str, T)],
) -> T {
    let Some(value) = value else {
        return default;
    };
    match options.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            errors.push(
                key,
                format!("expected one of {}, got {value:?}", names.join(", ")),
            );
            default
        }
    }
}

/// Parses an optional string setting with `parse`, recording an error (and using
/// `default`) when it does not parse.
fn parsed<T>(
    errors: &mut Errors<'_>,
    key: &str,
    value: Option<&str>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> T {
    match value.map(parse) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(message)) => {
            errors.push(key, message);
            default
        }
    }
}

fn duration(
    errors: &mut Errors<'_>,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    parsed(errors, key, value, default, |s| match parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".to_string()),
        other => other,
    })
}

fn address(
    errors: &mut Errors<'_>,
    key: &str,
    value: Option<&str>,
    default: SocketAddr,
) -> SocketAddr {
    parsed(errors, key, value, default, parse_address)
}

fn to_u32(value: Option<u64>, default: u32) -> u32 {
    value.map_or(default, |v| u32::try_from(v).unwrap_or(u32::MAX))
}

fn to_usize(value: Option<u64>, default: usize) -> usize {
    value.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// Turns the file's strings into real types, recording every error and carrying
/// on with a default for each value that did not convert (so that later rules do
/// not stop at the first error). Range rules live in `check`, so configurations
/// built in code obey them too.
pub(super) fn convert(file: FileConfig, errors: &mut Errors<'_>) -> Config {
    let defaults = Config::default();
    let server = ServerConfig {
        shards: to_usize(file.server.shards, 0),
        io: choice(
            errors,
            "server.io",
            file.server.io.as_deref(),
            IoMode::Auto,
            &[
                ("auto", IoMode::Auto),
                ("io_uring", IoMode::IoUring),
                ("epoll", IoMode::Epoll),
            ],
        ),
        max_connections: to_usize(file.server.max_connections, defaults.server.max_connections),
        transparent_huge_pages: file
            .server
            .transparent_huge_pages
            .unwrap_or(defaults.server.transparent_huge_pages),
    };
    let admin = AdminConfig {
        listen: address(
            errors,
            "admin.listen",
            file.admin.listen.as_deref(),
            defaults.admin.listen,
        ),
        token: file.admin.token.clone(),
        hosts: file.admin.hosts.clone().unwrap_or_default(),
        profiling: file.admin.profiling.unwrap_or(defaults.admin.profiling),
    };
    let t = &file.timeouts;
    let d = &defaults.timeouts;
    let timeouts = Timeouts {
        connect: duration(errors, "timeouts.connect", t.connect.as_deref(), d.connect),
        header_read: duration(
            errors,
            "timeouts.header_read",
            t.header_read.as_deref(),
            d.header_read,
        ),
        idle: duration(errors, "timeouts.idle", t.idle.as_deref(), d.idle),
        backend_response: duration(
            errors,
            "timeouts.backend_response",
            t.backend_response.as_deref(),
            d.backend_response,
        ),
        shutdown_grace: duration(
            errors,
            "timeouts.shutdown_grace",
            t.shutdown_grace.as_deref(),
            d.shutdown_grace,
        ),
        tunnel_idle: duration(
            errors,
            "timeouts.tunnel_idle",
            t.tunnel_idle.as_deref(),
            d.tunnel_idle,
        ),
    };
    let limits = Limits {
        max_header_bytes: to_usize(
            file.limits.max_header_bytes,
            defaults.limits.max_header_bytes,
        ),
        max_headers: to_usize(file.limits.max_headers, defaults.limits.max_headers),
        max_body_bytes: file.limits.max_body_bytes,
    };
    let logging = LoggingConfig {
        level: choice(
            errors,
            "logging.level",
            file.logging.level.as_deref(),
            LogLevel::Info,
            &[
                ("error", LogLevel::Error),
                ("warn", LogLevel::Warn),
                ("info", LogLevel::Info),
                ("debug", LogLevel::Debug),
            ],
        ),
        format: choice(
            errors,
            "logging.format",
            file.logging.format.as_deref(),
            LogFormat::Text,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        ),
        access_log: file.logging.access_log.unwrap_or(false),
    };
    let (listeners, routes, clusters, form) = if file.full_form() {
        for key in file.short_form_keys() {
            let message = if key == "server.listen" {
                "the short form's listen address cannot be mixed with [[listeners]], \
                 [[routes]] and [[clusters]]: give each listener its address in [[listeners]]"
                    .to_string()
            } else {
                format!(
                    "the short form's [{key}] cannot be mixed with [[listeners]], [[routes]] \
                     and [[clusters]]: move its keys into each [[clusters]] entry \
                     (the README's \"Migrating from the short form\" shows how)"
                )
            };
            errors.push(key, message);
        }
        let listeners = file
            .listeners
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, l)| convert_listener(i, l, errors))
            .collect::<Vec<_>>();
        let only_listener = (listeners.len() == 1).then(|| listeners[0].name.clone());
        let mut per_listener: BTreeMap<String, usize> = BTreeMap::new();
        let routes = file
            .routes
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| convert_route(i, r, only_listener.as_deref(), &mut per_listener, errors))
            .collect();
        let clusters = file
            .clusters
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| convert_cluster(i, c, errors))
            .collect();
        (listeners, routes, clusters, Form::Full)
    } else {
        let listen = address(
            errors,
            "server.listen",
            file.server.listen.as_deref(),
            defaults.listeners[0].address,
        );
        let parts = ClusterParts {
            balancer: file.balancer.unwrap_or_default(),
            health_check: file.health_check.unwrap_or_default(),
            circuit_breaker: file.circuit_breaker.unwrap_or_default(),
            retry: file.retry.unwrap_or_default(),
            upstream: file.upstream.unwrap_or_default(),
            timeouts: FileClusterTimeouts::default(),
            backends: file.backends.unwrap_or_default(),
        };
        let cluster = cluster_from_parts(DEFAULT_NAME, parts, &Keys::short(), errors);
        let mut listeners = defaults.listeners;
        listeners[0].address = listen;
        (listeners, defaults.routes, vec![cluster], Form::Short)
    };
    Config {
        server,
        admin,
        timeouts,
        limits,
        logging,
        listeners,
        routes,
        clusters,
        form,
        warnings: Vec::new(),
    }
}

/// A required string: the value, or an error naming `key` and an empty default.
fn required(errors: &mut Errors<'_>, key: &str, value: Option<String>, what: &str) -> String {
    value.unwrap_or_else(|| {
        errors.push(key, format!("missing ({what})"));
        String::new()
    })
}

fn convert_listener(i: usize, l: FileListener, errors: &mut Errors<'_>) -> ListenerConfig {
    let key = |field: &str| format!("listeners[{i}].{field}");
    let name = required(errors, &key("name"), l.name, "every listener needs a name");
    let address = required_address(errors, &key("address"), l.address, "0.0.0.0:8080");
    let protocol = match l.protocol.as_deref() {
        None | Some("http") => ListenerProtocol::Http,
        Some("tcp") => ListenerProtocol::Tcp,
        Some("h2c") => ListenerProtocol::H2c,
        Some(other) => {
            errors.push(
                key("protocol"),
                format!("expected \"http\", \"h2c\" or \"tcp\", got {other:?}"),
            );
            ListenerProtocol::Http
        }
    };
    let proxy_trusted = l
        .proxy_trusted
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(n, text)| {
            Cidr::parse(text)
                .map_err(|e| errors.push(format!("listeners[{i}].proxy_trusted[{n}]"), e))
                .ok()
        })
        .collect();
    let tls = l
        .tls
        .map(|tls| convert_listener_tls(i, tls, protocol, errors));
    ListenerConfig {
        name,
        address,
        protocol,
        cluster: l.cluster,
        accept_proxy: l.accept_proxy.unwrap_or(false),
        proxy_trusted,
        tls,
    }
}

fn convert_listener_tls(
    i: usize,
    tls: FileListenerTls,
    protocol: ListenerProtocol,
    errors: &mut Errors<'_>,
) -> ListenerTls {
    let key = |field: &str| format!("listeners[{i}].tls.{field}");
    let certificates = tls
        .certificates
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(n, c)| {
            let mut path = |field: &str, value: Option<String>, what: &str| {
                let key = key(&format!("certificates[{n}].{field}"));
                std::path::PathBuf::from(required(errors, &key, value, what))
            };
            CertificateFiles {
                cert: path("cert", c.cert, "the PEM file of the certificate chain"),
                key: path("key", c.key, "the PEM file of its private key"),
            }
        })
        .collect();
    let min_version = match tls.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            errors.push(
                key("min_version"),
                format!("expected \"1.2\" or \"1.3\", got {other:?}"),
            );
            TlsVersion::V1_2
        }
    };
    ListenerTls {
        certificates,
        default: tls.default,
        min_version,
        // A tcp listener relays whatever it carries: it offers no protocol of
        // its own unless told to.
        alpn: tls.alpn.unwrap_or_else(|| match protocol {
            ListenerProtocol::Http => vec!["http/1.1".to_string()],
            ListenerProtocol::Tcp | ListenerProtocol::H2c => Vec::new(),
        }),
    }
}

/// A required address: the value, or an error naming `key` (with an example) and a
/// placeholder.
fn required_address(
    errors: &mut Errors<'_>,
    key: &str,
    value: Option<String>,
    example: &str,
) -> SocketAddr {
    match value {
        Some(text) => parsed(errors, key, Some(&text), unset_address(), parse_address),
        None => {
            errors.push(key, format!("missing (expected IP:port like {example})"));
            unset_address()
        }
    }
}

/// `0.0.0.0:0`, the placeholder for an address that did not convert (its key
/// already has an error, so the port rule does not report it again).
fn unset_address() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

fn convert_route(
    i: usize,
    r: FileRoute,
    only_listener: Option<&str>,
    per_listener: &mut BTreeMap<String, usize>,
    errors: &mut Errors<'_>,
) -> RouteConfig {
    let key = |field: &str| format!("routes[{i}].{field}");
    let listener = match (r.listener, only_listener) {
        (Some(listener), _) => listener,
        (None, Some(only)) => only.to_string(),
        (None, None) => {
            errors.push(
                key("listener"),
                "missing (with several listeners, every route names its listener)",
            );
            String::new()
        }
    };
    let n = per_listener.entry(listener.clone()).or_default();
    *n += 1;
    let name = r.name.unwrap_or_else(|| format!("{listener}-{n}"));
    let cluster = required(
        errors,
        &key("cluster"),
        r.cluster,
        "every route names the cluster that serves it",
    );
    let path = match (r.path, r.path_prefix) {
        (Some(_), Some(_)) => {
            errors.push(
                key("path_prefix"),
                "a route has either path (exact) or path_prefix, not both",
            );
            None
        }
        (Some(path), None) => Some(PathRule::Exact(path)),
        (None, Some(prefix)) => Some(PathRule::Prefix(prefix)),
        (None, None) => None,
    };
    let lower = |pairs: Option<BTreeMap<String, String>>| -> Vec<(String, String)> {
        pairs
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect()
    };
    RouteConfig {
        name,
        listener,
        host: r.host.map(|h| h.to_ascii_lowercase()),
        path,
        methods: r.methods.unwrap_or_default(),
        headers: lower(r.headers),
        cluster,
        strip_prefix: r.strip_prefix.unwrap_or(false),
        set_request_headers: lower(r.set_request_headers),
        remove_request_headers: r
            .remove_request_headers
            .unwrap_or_default()
            .into_iter()
            .map(|name| name.to_ascii_lowercase())
            .collect(),
    }
}

/// The parts of a cluster, in the short form's shape.
struct ClusterParts {
    balancer: FileBalancer,
    health_check: FileHealthCheck,
    circuit_breaker: FileBreaker,
    retry: FileRetry,
    upstream: FileUpstream,
    timeouts: FileClusterTimeouts,
    backends: Vec<FileBackend>,
}

fn convert_cluster(i: usize, c: FileCluster, errors: &mut Errors<'_>) -> ClusterConfig {
    let name = required(
        errors,
        &format!("clusters[{i}].name"),
        c.name,
        "every cluster needs a name",
    );
    let parts = ClusterParts {
        balancer: FileBalancer {
            strategy: c.strategy,
            ewma_decay: c.ewma_decay,
            hash_key: c.hash_key,
            hash_algorithm: c.hash_algorithm,
            virtual_nodes: c.virtual_nodes,
            table_size: c.table_size,
            hash_bounded_load: c.hash_bounded_load,
            sticky: c.sticky,
        },
        health_check: c.health_check.unwrap_or_default(),
        circuit_breaker: c.circuit_breaker.unwrap_or_default(),
        retry: c.retry.unwrap_or_default(),
        upstream: c.upstream.unwrap_or_default(),
        timeouts: c.timeouts.unwrap_or_default(),
        backends: c.backends.unwrap_or_default(),
    };
    let mut cluster = cluster_from_parts(&name, parts, &Keys::cluster(i), errors);
    cluster.tls = c.tls.map(|tls| convert_cluster_tls(i, tls, errors));
    cluster
}

fn convert_cluster_tls(i: usize, tls: FileClusterTls, errors: &mut Errors<'_>) -> ClusterTls {
    let client_certificate = match (tls.cert, tls.key) {
        (Some(cert), Some(key)) => Some(CertificateFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            errors.push(
                format!("clusters[{i}].tls.key"),
                "missing (the private key of the client certificate `cert`)",
            );
            None
        }
        (None, Some(_)) => {
            errors.push(
                format!("clusters[{i}].tls.cert"),
                "missing (the client certificate chain `key` belongs to)",
            );
            None
        }
    };
    ClusterTls {
        server_name: tls.server_name,
        ca: tls.ca.map(Into::into),
        verify: tls.verify.unwrap_or(true),
        client_certificate,
    }
}

fn cluster_from_parts(
    name: &str,
    parts: ClusterParts,
    keys: &Keys,
    errors: &mut Errors<'_>,
) -> ClusterConfig {
    let ClusterParts {
        balancer: fb,
        health_check: h,
        circuit_breaker: b,
        retry: r,
        upstream: u,
        timeouts: t,
        backends: file_backends,
    } = parts;
    let strategies: Vec<(&str, Strategy)> =
        Strategy::ALL.iter().map(|s| (s.as_str(), *s)).collect();
    let bd = BalancerConfig::default();
    let balancer = BalancerConfig {
        strategy: choice(
            errors,
            &keys.balancer("strategy"),
            fb.strategy.as_deref(),
            Strategy::RoundRobin,
            &strategies,
        ),
        ewma_decay: duration(
            errors,
            &keys.balancer("ewma_decay"),
            fb.ewma_decay.as_deref(),
            bd.ewma_decay,
        ),
        hash_key: parsed(
            errors,
            &keys.balancer("hash_key"),
            fb.hash_key.as_deref(),
            bd.hash_key,
            parse_hash_key,
        ),
        hash_algorithm: choice(
            errors,
            &keys.balancer("hash_algorithm"),
            fb.hash_algorithm.as_deref(),
            bd.hash_algorithm,
            &[
                ("ring", HashAlgorithm::Ring),
                ("maglev", HashAlgorithm::Maglev),
            ],
        ),
        virtual_nodes: to_u32(fb.virtual_nodes, bd.virtual_nodes),
        table_size: to_u32(fb.table_size, bd.table_size),
        hash_bounded_load: fb.hash_bounded_load,
        sticky: fb.sticky.as_ref().map(|sticky| StickyConfig {
            cookie: sticky.cookie.clone().unwrap_or_default(),
            ttl: duration(
                errors,
                &keys.balancer("sticky.ttl"),
                sticky.ttl.as_deref(),
                Duration::from_secs(3600),
            ),
            secret: sticky.secret.clone(),
        }),
    };
    let hd = HealthCheckConfig::default();
    let hk = |field: &str| keys.of("health_check", field);
    // HTTP/1.1 probes may not reach a backend that speaks HTTP/2 alone: an h2
    // cluster is probed with TCP connects unless it asks otherwise.
    let default_kind = if u.protocol.as_deref() == Some("h2") {
        CheckType::Tcp
    } else {
        hd.kind
    };
    let health_check = HealthCheckConfig {
        kind: choice(
            errors,
            &hk("kind"),
            h.kind.as_deref(),
            default_kind,
            &[
                ("http", CheckType::Http),
                ("tcp", CheckType::Tcp),
                ("grpc", CheckType::Grpc),
                ("none", CheckType::None),
            ],
        ),
        path: h.path.clone().unwrap_or(hd.path),
        interval: duration(errors, &hk("interval"), h.interval.as_deref(), hd.interval),
        timeout: duration(errors, &hk("timeout"), h.timeout.as_deref(), hd.timeout),
        expect_status: parsed(
            errors,
            &hk("expect_status"),
            h.expect_status.as_deref(),
            hd.expect_status,
            parse_status_range,
        ),
        unhealthy_threshold: to_u32(h.unhealthy_threshold, hd.unhealthy_threshold),
        healthy_threshold: to_u32(h.healthy_threshold, hd.healthy_threshold),
        start_up: choice(
            errors,
            &hk("start"),
            h.start.as_deref(),
            true,
            &[("up", true), ("down", false)],
        ),
        slow_start: h.slow_start.as_deref().map(|text| {
            duration(
                errors,
                &hk("slow_start"),
                Some(text),
                Duration::from_secs(1),
            )
        }),
        send_proxy: h.send_proxy.unwrap_or(false),
        service: h.service.clone().unwrap_or_default(),
    };
    let rd = RetryConfig::default();
    let retry = RetryConfig {
        max_retries: to_u32(r.max_retries, rd.max_retries),
        max_buffered_body: to_usize(r.max_buffered_body, rd.max_buffered_body),
        budget_percent: to_u32(r.budget_percent, rd.budget_percent),
    };
    let bd = BreakerConfig::default();
    let circuit_breaker = BreakerConfig {
        enabled: b.enabled.unwrap_or(bd.enabled),
        failure_threshold: to_u32(b.failure_threshold, bd.failure_threshold),
        open_for: duration(
            errors,
            &keys.of("circuit_breaker", "open_for"),
            b.open_for.as_deref(),
            bd.open_for,
        ),
        half_open_probes: to_u32(b.half_open_probes, bd.half_open_probes),
        count_5xx: b.count_5xx.unwrap_or(bd.count_5xx),
    };
    let ud = UpstreamConfig::default();
    let upstream = UpstreamConfig {
        max_idle_per_backend: to_usize(u.max_idle_per_backend, ud.max_idle_per_backend),
        idle_timeout: duration(
            errors,
            &keys.of("upstream", "idle_timeout"),
            u.idle_timeout.as_deref(),
            ud.idle_timeout,
        ),
        send_proxy: u.send_proxy.as_deref().map(|text| {
            choice(
                errors,
                &keys.of("upstream", "send_proxy"),
                Some(text),
                ProxyVersion::V1,
                &[("v1", ProxyVersion::V1), ("v2", ProxyVersion::V2)],
            )
        }),
        protocol: choice(
            errors,
            &keys.of("upstream", "protocol"),
            u.protocol.as_deref(),
            ud.protocol,
            &[
                ("http1", UpstreamProtocol::Http1),
                ("h2", UpstreamProtocol::H2),
            ],
        ),
        h2_max_streams: to_usize(u.h2_max_streams, ud.h2_max_streams),
    };
    let optional = |errors: &mut Errors<'_>, field: &str, value: Option<&str>| {
        value.map(|text| {
            duration(
                errors,
                &keys.of("timeouts", field),
                Some(text),
                Duration::ZERO,
            )
        })
    };
    let timeouts = ClusterTimeouts {
        connect: optional(errors, "connect", t.connect.as_deref()),
        backend_response: optional(errors, "backend_response", t.backend_response.as_deref()),
    };
    let backends = file_backends
        .into_iter()
        .enumerate()
        .map(|(j, b)| {
            let key = |field: &str| keys.backend(j, field);
            let name = required(errors, &key("name"), b.name, "every backend needs a name");
            let address = required_address(errors, &key("address"), b.address, "127.0.0.1:9001");
            let weight = match b.weight {
                None => 1,
                Some(w) => u32::try_from(w).unwrap_or_else(|_| {
                    errors.push(
                        key("weight"),
                        format!("must be between 1 and 1000, got {w}"),
                    );
                    1
                }),
            };
            BackendConfig {
                name,
                address,
                weight,
            }
        })
        .collect();
    ClusterConfig {
        name: name.to_string(),
        balancer,
        health_check,
        circuit_breaker,
        retry,
        upstream,
        timeouts,
        backends,
        tls: None,
    }
}
