//! `config::file`: the file's shape, and its conversion into real types.
//!
//! Owns the serde structs (`deny_unknown_fields`, every value optional so that a
//! missing key takes its default) and `convert`, which turns strings into
//! durations, addresses and enums, recording an error for each value that does
//! not convert. Range and consistency rules live in `check`.

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
    upstream: FileUpstream,
    #[serde(default)]
    balancer: FileBalancer,
    #[serde(default)]
    logging: FileLogging,
    #[serde(default)]
    health_check: FileHealthCheck,
    #[serde(default)]
    retry: FileRetry,
    #[serde(default)]
    circuit_breaker: FileBreaker,
    #[serde(default)]
    backends: Vec<FileBackend>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect: Option<String>,
    header_read: Option<String>,
    idle: Option<String>,
    backend_response: Option<String>,
    shutdown_grace: Option<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackend {
    name: Option<String>,
    address: Option<String>,
    weight: Option<i64>,
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
pub(super) fn parse_address(s: &str) -> Result<SocketAddr, String> {
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

/// Turns the file's strings into real types, recording every error. Range rules
/// live in `Config::check`, so configurations built in code obey them too.
pub(super) fn convert(file: FileConfig, errors: &mut Errors<'_>) -> Option<Config> {
    let defaults = Config::default();
    let server = ServerConfig {
        listen: address(
            errors,
            "server.listen",
            file.server.listen.as_deref(),
            defaults.server.listen,
        ),
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
    };
    let limits = Limits {
        max_header_bytes: to_usize(
            file.limits.max_header_bytes,
            defaults.limits.max_header_bytes,
        ),
        max_headers: to_usize(file.limits.max_headers, defaults.limits.max_headers),
        max_body_bytes: file.limits.max_body_bytes,
    };
    let upstream = UpstreamConfig {
        max_idle_per_backend: to_usize(
            file.upstream.max_idle_per_backend,
            defaults.upstream.max_idle_per_backend,
        ),
        idle_timeout: duration(
            errors,
            "upstream.idle_timeout",
            file.upstream.idle_timeout.as_deref(),
            defaults.upstream.idle_timeout,
        ),
    };
    let strategies: Vec<(&str, Strategy)> =
        Strategy::ALL.iter().map(|s| (s.as_str(), *s)).collect();
    let fb = &file.balancer;
    let bd = BalancerConfig::default();
    let balancer = BalancerConfig {
        strategy: choice(
            errors,
            "balancer.strategy",
            fb.strategy.as_deref(),
            Strategy::RoundRobin,
            &strategies,
        ),
        ewma_decay: duration(
            errors,
            "balancer.ewma_decay",
            fb.ewma_decay.as_deref(),
            bd.ewma_decay,
        ),
        hash_key: parsed(
            errors,
            "balancer.hash_key",
            fb.hash_key.as_deref(),
            bd.hash_key,
            parse_hash_key,
        ),
        hash_algorithm: choice(
            errors,
            "balancer.hash_algorithm",
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
                "balancer.sticky.ttl",
                sticky.ttl.as_deref(),
                Duration::from_secs(3600),
            ),
            secret: sticky.secret.clone(),
        }),
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
    let h = &file.health_check;
    let hd = HealthCheckConfig::default();
    let health_check = HealthCheckConfig {
        kind: choice(
            errors,
            "health_check.kind",
            h.kind.as_deref(),
            hd.kind,
            &[
                ("http", CheckType::Http),
                ("tcp", CheckType::Tcp),
                ("none", CheckType::None),
            ],
        ),
        path: h.path.clone().unwrap_or(hd.path),
        interval: duration(
            errors,
            "health_check.interval",
            h.interval.as_deref(),
            hd.interval,
        ),
        timeout: duration(
            errors,
            "health_check.timeout",
            h.timeout.as_deref(),
            hd.timeout,
        ),
        expect_status: parsed(
            errors,
            "health_check.expect_status",
            h.expect_status.as_deref(),
            hd.expect_status,
            parse_status_range,
        ),
        unhealthy_threshold: h.unhealthy_threshold.map_or(hd.unhealthy_threshold, |n| {
            u32::try_from(n).unwrap_or(u32::MAX)
        }),
        healthy_threshold: h.healthy_threshold.map_or(hd.healthy_threshold, |n| {
            u32::try_from(n).unwrap_or(u32::MAX)
        }),
        start_up: choice(
            errors,
            "health_check.start",
            h.start.as_deref(),
            true,
            &[("up", true), ("down", false)],
        ),
        slow_start: h.slow_start.as_deref().map(|text| {
            duration(
                errors,
                "health_check.slow_start",
                Some(text),
                Duration::from_secs(1),
            )
        }),
    };
    let rd = RetryConfig::default();
    let retry = RetryConfig {
        max_retries: to_u32(file.retry.max_retries, rd.max_retries),
        max_buffered_body: to_usize(file.retry.max_buffered_body, rd.max_buffered_body),
        budget_percent: to_u32(file.retry.budget_percent, rd.budget_percent),
    };
    let b = &file.circuit_breaker;
    let bd = BreakerConfig::default();
    let circuit_breaker = BreakerConfig {
        enabled: b.enabled.unwrap_or(bd.enabled),
        failure_threshold: to_u32(b.failure_threshold, bd.failure_threshold),
        open_for: duration(
            errors,
            "circuit_breaker.open_for",
            b.open_for.as_deref(),
            bd.open_for,
        ),
        half_open_probes: to_u32(b.half_open_probes, bd.half_open_probes),
        count_5xx: b.count_5xx.unwrap_or(bd.count_5xx),
    };
    let mut backends = Vec::with_capacity(file.backends.len());
    let mut complete = true;
    for (i, b) in file.backends.into_iter().enumerate() {
        let key = |field: &str| format!("backends[{i}].{field}");
        let name = match b.name {
            Some(name) => name,
            None => {
                errors.push(key("name"), "missing (every backend needs a name)");
                complete = false;
                continue;
            }
        };
        let address = match b.address.as_deref().map(parse_address) {
            Some(Ok(a)) => a,
            Some(Err(message)) => {
                errors.push(key("address"), message);
                complete = false;
                continue;
            }
            None => {
                errors.push(
                    key("address"),
                    "missing (expected IP:port like 127.0.0.1:9001)",
                );
                complete = false;
                continue;
            }
        };
        let weight = match b.weight {
            None => 1,
            Some(w) => match u32::try_from(w) {
                Ok(w) => w,
                Err(_) => {
                    errors.push(
                        key("weight"),
                        format!("must be between 1 and 1000, got {w}"),
                    );
                    complete = false;
                    continue;
                }
            },
        };
        backends.push(BackendConfig {
            name,
            address,
            weight,
        });
    }
    // A backend that did not convert would shift every later index; report the
    // conversion errors alone rather than misnumbered range errors.
    complete.then_some(Config {
        server,
        admin,
        timeouts,
        limits,
        upstream,
        balancer,
        logging,
        health_check,
        retry,
        circuit_breaker,
        backends,
    })
}
