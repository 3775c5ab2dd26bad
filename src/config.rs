//! `config`: loads and validates ringlb's TOML configuration.
//!
//! Owns the file's shape (serde structs with `deny_unknown_fields`), the
//! `RINGLB_<SECTION>_<KEY>` environment overrides, and the conversion into a
//! validated `Config` of real types. Called once at start and on every reload.
//! Every error names the file, the key and what was expected; nothing here panics
//! on bad input, and nothing here touches a socket.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

// ---------------------------------------------------------------------------
// The validated configuration.

/// The whole configuration, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The client-facing listener and the shards.
    pub server: ServerConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// How long each wait may last.
    pub timeouts: Timeouts,
    /// What a client may make us buffer.
    pub limits: Limits,
    /// Upstream connection pooling.
    pub upstream: UpstreamConfig,
    /// Backend selection.
    pub balancer: BalancerConfig,
    /// Log level and format.
    pub logging: LoggingConfig,
    /// Active health checks.
    pub health_check: HealthCheckConfig,
    /// Retries on another backend.
    pub retry: RetryConfig,
    /// Passive health: the circuit breaker.
    pub circuit_breaker: BreakerConfig,
    /// The backends, in order.
    pub backends: Vec<BackendConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Where clients connect; every shard listens here with SO_REUSEPORT.
    pub listen: SocketAddr,
    /// Number of shards; 0 means one per core this process may run on.
    pub shards: usize,
    /// Which io driver to use.
    pub io: IoMode,
    /// Most open client connections (split evenly across shards).
    pub max_connections: usize,
    /// Whether the process may use transparent huge pages. Off by default: the
    /// allocator asks for them on its heap, and a 2 MiB page that idle connections
    /// touch only a little of is resident in full.
    pub transparent_huge_pages: bool,
}

/// `server.io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// epoll always.
    Epoll,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Where the admin endpoints listen (loopback by default; never expose it).
    pub listen: SocketAddr,
}

/// `[timeouts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// Connecting to a backend.
    pub connect: Duration,
    /// Receiving a whole request head (the slowloris guard).
    pub header_read: Duration,
    /// An idle keep-alive client connection, and a stalled request body.
    pub idle: Duration,
    /// Waiting for a backend's response head, and between its body reads.
    pub backend_response: Duration,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// `[limits]`: the parser's limits, used as they are by the data path.
pub use crate::h1::Limits;

/// `[upstream]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Most idle keep-alive connections a shard keeps per backend (0: no pooling).
    pub max_idle_per_backend: usize,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Duration,
}

/// `[balancer]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    /// How a backend is picked.
    pub strategy: Strategy,
    /// `least-response`: how fast old latency observations fade.
    pub ewma_decay: Duration,
    /// `consistent-hash`: what is hashed.
    pub hash_key: HashKey,
    /// `consistent-hash`: ring (ketama) or Maglev.
    pub hash_algorithm: HashAlgorithm,
    /// `consistent-hash` ring: points per unit of weight.
    pub virtual_nodes: u32,
    /// `consistent-hash` Maglev: lookup table size (a prime).
    pub table_size: u32,
    /// `consistent-hash`: no backend takes more than this × the mean of in-flight
    /// requests (consistent hashing with bounded loads); `None` is unbounded.
    pub hash_bounded_load: Option<f64>,
    /// Sticky sessions by cookie, on top of any strategy; `None` is off.
    pub sticky: Option<StickyConfig>,
}

/// `balancer.sticky = { cookie = "NAME", ttl = "1h", secret = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name.
    pub cookie: String,
    /// The cookie's lifetime (`Max-Age`).
    pub ttl: Duration,
    /// Keys the tokens; instances with the same secret honour each other's
    /// cookies. Without one, tokens are random per process.
    pub secret: Option<String>,
}

/// `balancer.hash_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    ClientIp,
    /// The value of a request header (name lower-cased).
    Header(String),
    /// The value of a cookie.
    Cookie(String),
    /// The request path (without the query).
    Path,
}

/// `balancer.hash_algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// A ketama-style ring of virtual nodes.
    Ring,
    /// Maglev's lookup table.
    Maglev,
}

/// `balancer.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each available backend in turn.
    RoundRobin,
    /// Smooth weighted round-robin (nginx's): weights 5,1,1 give a a b a c a a.
    WeightedRoundRobin,
    /// Fewest requests in flight on this shard per unit of weight.
    LeastConn,
    /// Weighted random.
    Random,
    /// Power of two random choices on in-flight requests per unit of weight.
    P2c,
    /// Peak-EWMA latency (times in-flight), via two random choices.
    LeastResponse,
    /// Consistent hashing of `balancer.hash_key`.
    ConsistentHash,
}

impl Strategy {
    const ALL: [Strategy; 7] = [
        Strategy::RoundRobin,
        Strategy::WeightedRoundRobin,
        Strategy::LeastConn,
        Strategy::Random,
        Strategy::P2c,
        Strategy::LeastResponse,
        Strategy::ConsistentHash,
    ];

    /// The spelling used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::WeightedRoundRobin => "weighted-round-robin",
            Strategy::LeastConn => "least-conn",
            Strategy::Random => "random",
            Strategy::P2c => "p2c",
            Strategy::LeastResponse => "least-response",
            Strategy::ConsistentHash => "consistent-hash",
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// The most verbose level written.
    pub level: LogLevel,
    /// Text for people, JSON for log pipelines.
    pub format: LogFormat,
    /// One line per request on stdout, buffered per shard.
    pub access_log: bool,
}

/// `[health_check]`: active checks run by the control plane, never by shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// `http` (GET `path`, status in `expect_status`), `tcp` (connect only), or
    /// `none` (no checks: every backend stays up).
    pub kind: CheckType,
    /// The path an HTTP check requests.
    pub path: String,
    /// Time between checks of one backend.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Statuses that pass an HTTP check.
    pub expect_status: std::ops::RangeInclusive<u16>,
    /// Consecutive failures that take a backend down.
    pub unhealthy_threshold: u32,
    /// Consecutive passes that bring it back.
    pub healthy_threshold: u32,
    /// Whether a backend that never passed a check starts up (default) or down.
    pub start_up: bool,
    /// Ramp a backend that comes back up from 10% to 100% of its weight over this
    /// long (weighted strategies); `None` is off.
    pub slow_start: Option<Duration>,
}

/// `[retry]`: sending a failed request to another backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Most extra attempts on other backends (0..=7).
    pub max_retries: u32,
    /// Request bodies up to this size are held in memory so the request can be
    /// retried; larger bodies stream and are never retried.
    pub max_buffered_body: usize,
    /// Retries may add at most this share (percent) to a shard's request rate.
    pub budget_percent: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            max_buffered_body: 64 * 1024,
            budget_percent: 20,
        }
    }
}

/// `[circuit_breaker]`: passive health, from the outcomes of real requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Whether breakers run at all.
    pub enabled: bool,
    /// Consecutive failures that open a backend's breaker.
    pub failure_threshold: u32,
    /// How long it stays open before probes are let through.
    pub open_for: Duration,
    /// Real requests let through while half-open; their success closes it.
    pub half_open_probes: u32,
    /// Whether a 5xx response counts as a failure.
    pub count_5xx: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
            count_5xx: false,
        }
    }
}

/// `health_check.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckType {
    Http,
    Tcp,
    None,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: CheckType::Http,
            path: "/health".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            expect_status: 200..=399,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            start_up: true,
            slow_start: None,
        }
    }
}

/// `logging.level`, from most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One `[[backends]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Unique name, used in logs, statistics and the admin API.
    pub name: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic, 1..=1000.
    pub weight: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
            shards: 0,
            io: IoMode::Auto,
            max_connections: 100_000,
            transparent_huge_pages: false,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            backend_response: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(15),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            max_idle_per_backend: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig {
            strategy: Strategy::RoundRobin,
            ewma_decay: Duration::from_secs(10),
            hash_key: HashKey::ClientIp,
            hash_algorithm: HashAlgorithm::Ring,
            virtual_nodes: 160,
            table_size: 65537,
            hash_bounded_load: None,
            sticky: None,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
            access_log: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The file (or `env RINGLB_...` for an override) the value came from.
    pub file: String,
    /// The dotted key, like `backends[2].weight`.
    pub key: String,
    /// What was wrong and what was expected.
    pub message: String,
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors against one source file.
struct Errors<'a> {
    file: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------
// The file's shape.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
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

/// The type an environment override is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Boolean,
}

/// Every key the environment may override, by section.
const OVERRIDABLE: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[
            ("listen", Kind::Text),
            ("shards", Kind::Integer),
            ("io", Kind::Text),
            ("max_connections", Kind::Integer),
            ("transparent_huge_pages", Kind::Boolean),
        ],
    ),
    ("admin", &[("listen", Kind::Text)]),
    (
        "timeouts",
        &[
            ("connect", Kind::Text),
            ("header_read", Kind::Text),
            ("idle", Kind::Text),
            ("backend_response", Kind::Text),
            ("shutdown_grace", Kind::Text),
        ],
    ),
    (
        "limits",
        &[
            ("max_header_bytes", Kind::Integer),
            ("max_headers", Kind::Integer),
            ("max_body_bytes", Kind::Integer),
        ],
    ),
    (
        "upstream",
        &[
            ("max_idle_per_backend", Kind::Integer),
            ("idle_timeout", Kind::Text),
        ],
    ),
    (
        "balancer",
        &[
            ("strategy", Kind::Text),
            ("ewma_decay", Kind::Text),
            ("hash_key", Kind::Text),
            ("hash_algorithm", Kind::Text),
            ("virtual_nodes", Kind::Integer),
            ("table_size", Kind::Integer),
        ],
    ),
    (
        "logging",
        &[
            ("level", Kind::Text),
            ("format", Kind::Text),
            ("access_log", Kind::Boolean),
        ],
    ),
    (
        "health_check",
        &[
            ("kind", Kind::Text),
            ("path", Kind::Text),
            ("interval", Kind::Text),
            ("timeout", Kind::Text),
            ("expect_status", Kind::Text),
            ("unhealthy_threshold", Kind::Integer),
            ("healthy_threshold", Kind::Integer),
            ("start", Kind::Text),
            ("slow_start", Kind::Text),
        ],
    ),
    (
        "retry",
        &[
            ("max_retries", Kind::Integer),
            ("max_buffered_body", Kind::Integer),
            ("budget_percent", Kind::Integer),
        ],
    ),
    (
        "circuit_breaker",
        &[
            ("enabled", Kind::Boolean),
            ("failure_threshold", Kind::Integer),
            ("open_for", Kind::Text),
            ("half_open_probes", Kind::Integer),
            ("count_5xx", Kind::Boolean),
        ],
    ),
];

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// Longest duration any setting takes; deadlines are `now + duration` and must
/// not overflow.
const MAX_DURATION: Duration = Duration::from_secs(168 * 3600);

// ---------------------------------------------------------------------------
// Loading.

/// Loads `path`, with overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, std::env::vars())
}

/// Loads `path`, with overrides from `env`.
pub fn load_with_env<I>(path: &Path, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (String, String)>,
{
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin, env),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: origin,
            key: "-".into(),
            message: format!("cannot read the file: {e}"),
        }])),
    }
}

/// Parses configuration text; `origin` names it in errors.
pub fn parse<I>(text: &str, origin: &str, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut errors = Errors {
        file: origin,
        list: Vec::new(),
    };
    let mut table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            let at = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or_default();
            errors.push(
                if at.is_empty() { "-".to_string() } else { at },
                e.message().trim().to_string(),
            );
            return Err(ConfigErrors(errors.list));
        }
    };
    let env_errors = apply_env(&mut table, env);
    if !env_errors.is_empty() {
        return Err(ConfigErrors(env_errors));
    }
    let file: FileConfig = match serde_path_to_error::deserialize(toml::Value::Table(table)) {
        Ok(file) => file,
        Err(e) => {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            // toml appends "in `section`" on a second line; the path says that.
            let message = message.lines().next().unwrap_or("").trim();
            match unknown_field(message) {
                Some(field) => {
                    let key = if path == "." || path.ends_with(field) {
                        path.trim_start_matches('.').to_string()
                    } else {
                        format!("{path}.{field}")
                    };
                    let key = if key.is_empty() {
                        field.to_string()
                    } else {
                        key
                    };
                    let expected = message.split_once(", expected ").map_or("", |(_, e)| e);
                    errors.push(key, format!("unknown key (expected {expected})"));
                }
                None => errors.push(path, message.to_string()),
            }
            return Err(ConfigErrors(errors.list));
        }
    };
    let config = convert(file, &mut errors);
    if let Some(config) = &config {
        config.check(&mut errors);
    }
    match config {
        Some(config) if errors.list.is_empty() => Ok(config),
        _ => Err(ConfigErrors(errors.list)),
    }
}

/// "unknown field `x`, expected ..." → `x`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {col}")
}

/// Applies `RINGLB_<SECTION>_<KEY>` overrides to the table.
fn apply_env<I>(table: &mut toml::Table, env: I) -> Vec<ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut errors = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("RINGLB_") else {
            continue;
        };
        if rest == "LOG" || rest.starts_with("TEST_") {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let found = OVERRIDABLE.iter().find_map(|(section, keys)| {
            let key = lower.strip_prefix(section)?.strip_prefix('_')?;
            let (key, kind) = keys.iter().find(|(k, _)| *k == key)?;
            Some((*section, *key, *kind))
        });
        let file = format!("env {name}");
        let Some((section, key, kind)) = found else {
            errors.push(ConfigError {
                file,
                key: "-".into(),
                message: "not a known setting (expected RINGLB_<SECTION>_<KEY>, e.g. RINGLB_BALANCER_STRATEGY)".into(),
            });
            continue;
        };
        let value = match kind {
            Kind::Text => toml::Value::String(raw),
            Kind::Boolean => match raw.trim() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => {
                    errors.push(ConfigError {
                        file,
                        key: format!("{section}.{key}"),
                        message: format!("expected true or false, got {raw:?}"),
                    });
                    continue;
                }
            },
            Kind::Integer => match raw.trim().parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => {
                    errors.push(ConfigError {
                        file,
                        key: format!("{section}.{key}"),
                        message: format!("expected an integer, got {raw:?}"),
                    });
                    continue;
                }
            },
        };
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), value);
            }
            _ => errors.push(ConfigError {
                file,
                key: section.into(),
                message: "expected a table".into(),
            }),
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// Conversion and validation.

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

/// Parses `client-ip`, `path`, `header:NAME` or `cookie:NAME`.
fn parse_hash_key(s: &str) -> Result<HashKey, String> {
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
fn parse_address(s: &str) -> Result<SocketAddr, String> {
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
fn convert(file: FileConfig, errors: &mut Errors<'_>) -> Option<Config> {
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
            crate::health::parse_status_range,
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

impl Config {
    /// Checks the range and consistency rules (the same ones the file goes through).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Errors {
            file: "config",
            list: Vec::new(),
        };
        self.check(&mut errors);
        if errors.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors.list))
        }
    }

    fn check(&self, errors: &mut Errors<'_>) {
        if self.server.shards > 1024 {
            errors.push(
                "server.shards",
                format!("must be at most 1024, got {}", self.server.shards),
            );
        }
        if self.server.max_connections == 0 {
            errors.push("server.max_connections", "must be at least 1");
        }
        let l = &self.limits;
        if !(1024..=1_048_576).contains(&l.max_header_bytes) {
            errors.push(
                "limits.max_header_bytes",
                format!(
                    "must be between 1024 and 1048576, got {}",
                    l.max_header_bytes
                ),
            );
        }
        if !(1..=512).contains(&l.max_headers) {
            errors.push(
                "limits.max_headers",
                format!("must be between 1 and 512, got {}", l.max_headers),
            );
        }
        if l.max_body_bytes == Some(0) {
            errors.push(
                "limits.max_body_bytes",
                "must be at least 1 (omit it for no limit)",
            );
        }
        if self.upstream.max_idle_per_backend > 100_000 {
            errors.push(
                "upstream.max_idle_per_backend",
                format!(
                    "must be at most 100000, got {}",
                    self.upstream.max_idle_per_backend
                ),
            );
        }
        let t = &self.timeouts;
        for (key, d) in [
            ("timeouts.connect", t.connect),
            ("timeouts.header_read", t.header_read),
            ("timeouts.idle", t.idle),
            ("timeouts.backend_response", t.backend_response),
            ("timeouts.shutdown_grace", t.shutdown_grace),
            ("upstream.idle_timeout", self.upstream.idle_timeout),
            ("health_check.interval", self.health_check.interval),
            ("health_check.timeout", self.health_check.timeout),
            ("circuit_breaker.open_for", self.circuit_breaker.open_for),
            (
                "health_check.slow_start",
                self.health_check
                    .slow_start
                    .unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            if d.is_zero() {
                errors.push(key, "must be greater than zero");
            } else if d > MAX_DURATION {
                errors.push(key, "must be at most 168h (one week)");
            }
        }
        let hc = &self.health_check;
        for (key, n) in [
            ("health_check.unhealthy_threshold", hc.unhealthy_threshold),
            ("health_check.healthy_threshold", hc.healthy_threshold),
        ] {
            if !(1..=100).contains(&n) {
                errors.push(key, format!("must be between 1 and 100, got {n}"));
            }
        }
        if hc.kind == CheckType::Http && !hc.path.starts_with('/') {
            errors.push(
                "health_check.path",
                format!("must start with /, got {:?}", hc.path),
            );
        }
        if hc.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            errors.push(
                "health_check.path",
                "must not contain spaces or control characters",
            );
        }
        let cb = &self.circuit_breaker;
        if !(1..=1000).contains(&cb.failure_threshold) {
            errors.push(
                "circuit_breaker.failure_threshold",
                format!("must be between 1 and 1000, got {}", cb.failure_threshold),
            );
        }
        if !(1..=100).contains(&cb.half_open_probes) {
            errors.push(
                "circuit_breaker.half_open_probes",
                format!("must be between 1 and 100, got {}", cb.half_open_probes),
            );
        }
        let b = &self.balancer;
        if !(1..=1000).contains(&b.virtual_nodes) {
            errors.push(
                "balancer.virtual_nodes",
                format!("must be between 1 and 1000, got {}", b.virtual_nodes),
            );
        }
        if !(is_prime(b.table_size) && (7..=1_000_003).contains(&b.table_size)) {
            errors.push(
                "balancer.table_size",
                format!(
                    "must be a prime between 7 and 1000003, got {}",
                    b.table_size
                ),
            );
        }
        if let Some(c) = b.hash_bounded_load {
            if !(c.is_finite() && c > 1.0 && c <= 100.0) {
                errors.push(
                    "balancer.hash_bounded_load",
                    format!("must be greater than 1.0 and at most 100, got {c}"),
                );
            }
        }
        if let Some(sticky) = &b.sticky {
            let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
            if sticky.cookie.is_empty() || !sticky.cookie.bytes().all(token) {
                errors.push(
                    "balancer.sticky.cookie",
                    format!(
                        "expected a cookie name (letters, digits, -_.), got {:?}",
                        sticky.cookie
                    ),
                );
            }
            if sticky.ttl > MAX_DURATION {
                errors.push("balancer.sticky.ttl", "must be at most 168h (one week)");
            }
            if sticky.secret.as_deref().is_some_and(|s| s.len() < 16) {
                errors.push("balancer.sticky.secret", "must be at least 16 characters");
            }
        }
        if b.ewma_decay > MAX_DURATION {
            errors.push("balancer.ewma_decay", "must be at most 168h (one week)");
        }
        let r = &self.retry;
        if r.max_retries > 7 {
            errors.push(
                "retry.max_retries",
                format!("must be at most 7, got {}", r.max_retries),
            );
        }
        if r.max_buffered_body > 16 * 1024 * 1024 {
            errors.push(
                "retry.max_buffered_body",
                format!("must be at most 16777216, got {}", r.max_buffered_body),
            );
        }
        if r.budget_percent > 100 {
            errors.push(
                "retry.budget_percent",
                format!("must be at most 100, got {}", r.budget_percent),
            );
        }
        let (s, a) = (self.server.listen, self.admin.listen);
        if s == a && s.port() != 0 {
            errors.push(
                "admin.listen",
                format!("must differ from server.listen ({s})"),
            );
        }
        if self.backends.is_empty() {
            errors.push("backends", "at least one [[backends]] entry is required");
        }
        for (i, b) in self.backends.iter().enumerate() {
            let key = |field: &str| format!("backends[{i}].{field}");
            let valid_name = !b.name.is_empty()
                && b.name.len() <= 64
                && b.name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
            if !valid_name {
                errors.push(
                    key("name"),
                    format!(
                        "expected 1-64 characters of A-Z a-z 0-9 _ . -, got {:?}",
                        b.name
                    ),
                );
            }
            if let Some(j) = self.backends[..i].iter().position(|o| o.name == b.name) {
                errors.push(
                    key("name"),
                    format!("{:?} is already the name of backends[{j}]", b.name),
                );
            }
            if b.address.port() == 0 {
                errors.push(key("address"), "port must be between 1 and 65535");
            }
            if let Some(j) = self.backends[..i]
                .iter()
                .position(|o| o.address == b.address)
            {
                errors.push(
                    key("address"),
                    format!("{} is already the address of backends[{j}]", b.address),
                );
            }
            if !(1..=1000).contains(&b.weight) {
                errors.push(
                    key("weight"),
                    format!("must be between 1 and 1000, got {}", b.weight),
                );
            }
        }
    }

    /// A one-screen summary, for `ringlb check`.
    pub fn summary(&self) -> String {
        let shards = match self.server.shards {
            0 => "auto (one per allowed core)".to_string(),
            n => n.to_string(),
        };
        let io = match self.server.io {
            IoMode::Auto => "auto",
            IoMode::IoUring => "io_uring",
            IoMode::Epoll => "epoll",
        };
        let t = &self.timeouts;
        let mut out = format!(
            "listen            {}\nadmin             {}\nshards            {shards}\nio                {io}\n\
             max_connections   {}\nstrategy          {}\n\
             timeouts          connect {:?}, header_read {:?}, idle {:?}, backend_response {:?}, shutdown_grace {:?}\n\
             limits            max_header_bytes {}, max_headers {}, max_body_bytes {}\n\
             upstream          max_idle_per_backend {}, idle_timeout {:?}\n\
             backends          {}\n",
            self.server.listen,
            self.admin.listen,
            self.server.max_connections,
            self.balancer.strategy.as_str(),
            t.connect,
            t.header_read,
            t.idle,
            t.backend_response,
            t.shutdown_grace,
            self.limits.max_header_bytes,
            self.limits.max_headers,
            self.limits
                .max_body_bytes
                .map_or("unlimited".to_string(), |n| n.to_string()),
            self.upstream.max_idle_per_backend,
            self.upstream.idle_timeout,
            self.backends.len(),
        );
        for b in &self.backends {
            out.push_str(&format!(
                "  {:<16}{}  weight {}\n",
                b.name, b.address, b.weight
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_BACKEND: &str = "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:9001\"\n";

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn errors_of(text: &str) -> Vec<ConfigError> {
        parse(text, "t.toml", no_env())
            .expect_err("should be rejected")
            .0
    }

    /// The one error for `key`, with a message containing `fragment`.
    fn assert_error(text: &str, key: &str, fragment: &str) {
        let errors = errors_of(text);
        assert!(
            errors
                .iter()
                .any(|e| e.file == "t.toml" && e.key == key && e.message.contains(fragment)),
            "no error for {key} containing {fragment:?}: {errors:?}"
        );
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../config/ringlb.toml");
        let c = parse(text, "ringlb.toml", no_env()).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.server.shards, 0);
        assert_eq!(c.server.io, IoMode::Auto);
        assert_eq!(c.server.max_connections, 100_000);
        assert!(!c.server.transparent_huge_pages);
        assert_eq!(c.admin.listen, "127.0.0.1:9900".parse().unwrap());
        assert_eq!(c.timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.timeouts.idle, Duration::from_secs(60));
        assert_eq!(c.limits.max_header_bytes, 16384);
        assert_eq!(c.balancer.strategy, Strategy::RoundRobin);
        assert_eq!(c.logging.level, LogLevel::Info);
        assert_eq!(c.backends[0].name, "app1");
        assert_eq!(c.backends[0].address, "127.0.0.1:9001".parse().unwrap());
    }

    #[test]
    fn missing_sections_take_defaults() {
        let c = parse(ONE_BACKEND, "t.toml", no_env()).unwrap();
        let expected = Config {
            backends: vec![BackendConfig {
                name: "a".into(),
                address: "127.0.0.1:9001".parse().unwrap(),
                weight: 1,
            }],
            ..Config::default()
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn unknown_keys_and_sections_are_named() {
        assert_error(
            &format!("[server]\nbogus = 1\n{ONE_BACKEND}"),
            "server.bogus",
            "unknown key",
        );
        assert_error(
            &format!("[nope]\nx = 1\n{ONE_BACKEND}"),
            "nope",
            "unknown key",
        );
        assert_error(
            "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nport = 3\n",
            "backends[0].port",
            "unknown key",
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let errors = errors_of("[server]\nlisten = \n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].key.starts_with("line 2, column"), "{errors:?}");
    }

    #[test]
    fn type_errors_name_the_key() {
        assert_error(
            &format!("[server]\nshards = \"two\"\n{ONE_BACKEND}"),
            "server.shards",
            "invalid type",
        );
        assert_error(
            &format!("[server]\ntransparent_huge_pages = \"yes\"\n{ONE_BACKEND}"),
            "server.transparent_huge_pages",
            "invalid type",
        );
        let c = parse(
            &format!("[server]\ntransparent_huge_pages = true\n{ONE_BACKEND}"),
            "t.toml",
            no_env(),
        )
        .unwrap();
        assert!(c.server.transparent_huge_pages);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("15us"), Ok(Duration::from_micros(15)));
        for bad in ["", "2", "s", "2 s", "2sec", "1.5s", "-1s", "2S", " 2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_error(
            &format!("[timeouts]\nconnect = \"2 sec\"\n{ONE_BACKEND}"),
            "timeouts.connect",
            "expected a duration like",
        );
        assert_error(
            &format!("[timeouts]\nidle = \"0s\"\n{ONE_BACKEND}"),
            "timeouts.idle",
            "greater than zero",
        );
        assert_error(
            &format!("[upstream]\nidle_timeout = \"0ms\"\n{ONE_BACKEND}"),
            "upstream.idle_timeout",
            "greater than zero",
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address(":9000"), Ok("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(parse_address("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert!(parse_address("localhost:80").is_err());
        assert!(parse_address("127.0.0.1").is_err());
        assert_error(
            &format!("[server]\nlisten = \"nowhere\"\n{ONE_BACKEND}"),
            "server.listen",
            "expected IP:port",
        );
        assert_error(
            &format!("[admin]\nlisten = \"x:1\"\n{ONE_BACKEND}"),
            "admin.listen",
            "expected IP:port",
        );
        assert_error(
            "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:0\"\n",
            "backends[0].address",
            "port must be between 1 and 65535",
        );
        // Port 0 is fine for listeners (tests use it).
        let c = parse(&format!("[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{ONE_BACKEND}"), "t", no_env());
        assert!(c.is_ok());
    }

    #[test]
    fn server_rules() {
        assert_error(
            &format!("[server]\nshards = 1025\n{ONE_BACKEND}"),
            "server.shards",
            "at most 1024",
        );
        assert_error(
            &format!("[server]\nmax_connections = 0\n{ONE_BACKEND}"),
            "server.max_connections",
            "at least 1",
        );
        assert_error(
            &format!("[server]\nio = \"kqueue\"\n{ONE_BACKEND}"),
            "server.io",
            "auto, io_uring, epoll",
        );
        assert_error(
            &format!("[server]\nlisten = \"127.0.0.1:80\"\n[admin]\nlisten = \"127.0.0.1:80\"\n{ONE_BACKEND}"),
            "admin.listen",
            "must differ",
        );
    }

    #[test]
    fn limit_rules() {
        assert_error(
            &format!("[limits]\nmax_header_bytes = 100\n{ONE_BACKEND}"),
            "limits.max_header_bytes",
            "between 1024 and 1048576",
        );
        assert_error(
            &format!("[limits]\nmax_headers = 0\n{ONE_BACKEND}"),
            "limits.max_headers",
            "between 1 and 512",
        );
        assert_error(
            &format!("[limits]\nmax_headers = 513\n{ONE_BACKEND}"),
            "limits.max_headers",
            "between 1 and 512",
        );
        assert_error(
            &format!("[limits]\nmax_body_bytes = 0\n{ONE_BACKEND}"),
            "limits.max_body_bytes",
            "at least 1",
        );
        assert_error(
            &format!("[upstream]\nmax_idle_per_backend = 100001\n{ONE_BACKEND}"),
            "upstream.max_idle_per_backend",
            "at most 100000",
        );
    }

    #[test]
    fn health_check_settings() {
        let c = parse(
            &format!(
                "[health_check]\nkind = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"200ms\"\n\
                 expect_status = \"200-204\"\nunhealthy_threshold = 4\nhealthy_threshold = 1\nstart = \"down\"\n{ONE_BACKEND}"
            ),
            "t.toml",
            no_env(),
        )
        .unwrap();
        let hc = &c.health_check;
        assert_eq!(hc.kind, CheckType::Tcp);
        assert_eq!(hc.interval, Duration::from_millis(500));
        assert_eq!(hc.expect_status, 200..=204);
        assert_eq!(
            (hc.unhealthy_threshold, hc.healthy_threshold, hc.start_up),
            (4, 1, false)
        );
        assert_error(
            &format!("[health_check]\nkind = \"icmp\"\n{ONE_BACKEND}"),
            "health_check.kind",
            "http, tcp, none",
        );
        assert_error(
            &format!("[health_check]\nexpect_status = \"2xx\"\n{ONE_BACKEND}"),
            "health_check.expect_status",
            "like \"200-399\"",
        );
        assert_error(
            &format!("[health_check]\nunhealthy_threshold = 0\n{ONE_BACKEND}"),
            "health_check.unhealthy_threshold",
            "between 1 and 100",
        );
        assert_error(
            &format!("[health_check]\nhealthy_threshold = 101\n{ONE_BACKEND}"),
            "health_check.healthy_threshold",
            "between 1 and 100",
        );
        assert_error(
            &format!("[health_check]\npath = \"health\"\n{ONE_BACKEND}"),
            "health_check.path",
            "must start with /",
        );
        assert_error(
            &format!("[health_check]\npath = \"/a b\"\n{ONE_BACKEND}"),
            "health_check.path",
            "spaces",
        );
        assert_error(
            &format!("[health_check]\nstart = \"maybe\"\n{ONE_BACKEND}"),
            "health_check.start",
            "up, down",
        );
        assert_error(
            &format!("[health_check]\ninterval = \"0s\"\n{ONE_BACKEND}"),
            "health_check.interval",
            "greater than zero",
        );
    }

    #[test]
    fn retry_settings() {
        let c = parse(
            &format!("[retry]\nmax_retries = 3\nmax_buffered_body = 1024\nbudget_percent = 50\n{ONE_BACKEND}"),
            "t.toml",
            no_env(),
        )
        .unwrap();
        assert_eq!(
            c.retry,
            RetryConfig {
                max_retries: 3,
                max_buffered_body: 1024,
                budget_percent: 50
            }
        );
        assert_error(
            &format!("[retry]\nmax_retries = 8\n{ONE_BACKEND}"),
            "retry.max_retries",
            "at most 7",
        );
        assert_error(
            &format!("[retry]\nmax_buffered_body = 16777217\n{ONE_BACKEND}"),
            "retry.max_buffered_body",
            "at most 16777216",
        );
        assert_error(
            &format!("[retry]\nbudget_percent = 101\n{ONE_BACKEND}"),
            "retry.budget_percent",
            "at most 100",
        );
    }

    #[test]
    fn breaker_settings() {
        let c = parse(
            &format!(
                "[circuit_breaker]\nenabled = false\nfailure_threshold = 7\nopen_for = \"5s\"\n\
                 half_open_probes = 2\ncount_5xx = true\n{ONE_BACKEND}"
            ),
            "t.toml",
            env(&[("RINGLB_CIRCUIT_BREAKER_ENABLED", "true")]),
        )
        .unwrap();
        let expected = BreakerConfig {
            enabled: true,
            failure_threshold: 7,
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
            count_5xx: true,
        };
        assert_eq!(c.circuit_breaker, expected);
        assert_error(
            &format!("[circuit_breaker]\nfailure_threshold = 0\n{ONE_BACKEND}"),
            "circuit_breaker.failure_threshold",
            "between 1 and 1000",
        );
        assert_error(
            &format!("[circuit_breaker]\nhalf_open_probes = 0\n{ONE_BACKEND}"),
            "circuit_breaker.half_open_probes",
            "between 1 and 100",
        );
        assert_error(
            &format!("[circuit_breaker]\nopen_for = \"soon\"\n{ONE_BACKEND}"),
            "circuit_breaker.open_for",
            "expected a duration",
        );
        let errors = parse(
            ONE_BACKEND,
            "t.toml",
            env(&[("RINGLB_CIRCUIT_BREAKER_COUNT_5XX", "yes")]),
        )
        .unwrap_err()
        .0;
        assert!(
            errors[0].message.contains("expected true or false"),
            "{errors:?}"
        );
    }

    #[test]
    fn balancer_settings() {
        let c = parse(
            &format!(
                "[balancer]\nstrategy = \"consistent-hash\"\nhash_key = \"header:X-User\"\n\
                 hash_algorithm = \"maglev\"\ntable_size = 251\nvirtual_nodes = 40\n\
                 hash_bounded_load = 1.25\newma_decay = \"5s\"\n{ONE_BACKEND}"
            ),
            "t.toml",
            no_env(),
        )
        .unwrap();
        let b = &c.balancer;
        assert_eq!(b.strategy, Strategy::ConsistentHash);
        assert_eq!(b.hash_key, HashKey::Header("x-user".into()));
        assert_eq!(b.hash_algorithm, HashAlgorithm::Maglev);
        assert_eq!((b.table_size, b.virtual_nodes), (251, 40));
        assert_eq!(b.hash_bounded_load, Some(1.25));
        assert_eq!(b.ewma_decay, Duration::from_secs(5));
        for (key, expected) in [
            ("client-ip", HashKey::ClientIp),
            ("path", HashKey::Path),
            ("cookie:session", HashKey::Cookie("session".into())),
        ] {
            assert_eq!(parse_hash_key(key), Ok(expected));
        }
        for bad in ["", "ip", "header:", "header:a b", "cookie", "query:x"] {
            assert!(parse_hash_key(bad).is_err(), "{bad:?}");
        }
        assert_error(
            &format!("[balancer]\nhash_key = \"ip\"\n{ONE_BACKEND}"),
            "balancer.hash_key",
            "client-ip, path",
        );
        assert_error(
            &format!("[balancer]\ntable_size = 65536\n{ONE_BACKEND}"),
            "balancer.table_size",
            "prime",
        );
        assert_error(
            &format!("[balancer]\nvirtual_nodes = 0\n{ONE_BACKEND}"),
            "balancer.virtual_nodes",
            "between 1 and 1000",
        );
        assert_error(
            &format!("[balancer]\nhash_bounded_load = 1.0\n{ONE_BACKEND}"),
            "balancer.hash_bounded_load",
            "greater than 1.0",
        );
        assert_error(
            &format!("[balancer]\nhash_algorithm = \"rendezvous\"\n{ONE_BACKEND}"),
            "balancer.hash_algorithm",
            "ring, maglev",
        );
        let c = parse(
            &format!("[balancer]\nsticky = {{ cookie = \"srv\", ttl = \"30m\", secret = \"0123456789abcdef\" }}\n{ONE_BACKEND}"),
            "t",
            no_env(),
        )
        .unwrap();
        assert_eq!(
            c.balancer.sticky,
            Some(StickyConfig {
                cookie: "srv".into(),
                ttl: Duration::from_secs(1800),
                secret: Some("0123456789abcdef".into())
            })
        );
        assert_error(
            &format!("[balancer]\nsticky = {{ ttl = \"1h\" }}\n{ONE_BACKEND}"),
            "balancer.sticky.cookie",
            "expected a cookie name",
        );
        assert_error(
            &format!("[balancer]\nsticky = {{ cookie = \"a b\" }}\n{ONE_BACKEND}"),
            "balancer.sticky.cookie",
            "expected a cookie name",
        );
        assert_error(
            &format!(
                "[balancer]\nsticky = {{ cookie = \"s\", secret = \"short\" }}\n{ONE_BACKEND}"
            ),
            "balancer.sticky.secret",
            "at least 16",
        );
        assert_error(
            &format!("[balancer]\nsticky = {{ cookie = \"s\", colour = 1 }}\n{ONE_BACKEND}"),
            "balancer.sticky.colour",
            "unknown key",
        );
        for strategy in ["random", "p2c", "least-response", "consistent-hash"] {
            let c = parse(
                &format!("[balancer]\nstrategy = \"{strategy}\"\n{ONE_BACKEND}"),
                "t",
                no_env(),
            )
            .unwrap();
            assert_eq!(c.balancer.strategy.as_str(), strategy);
        }
    }

    #[test]
    fn enumerations_list_their_values() {
        assert_error(
            &format!("[balancer]\nstrategy = \"fastest\"\n{ONE_BACKEND}"),
            "balancer.strategy",
            "round-robin, weighted-round-robin, least-conn, random, p2c, least-response, consistent-hash",
        );
        assert_error(
            &format!("[logging]\nlevel = \"loud\"\n{ONE_BACKEND}"),
            "logging.level",
            "error, warn, info, debug",
        );
        assert_error(
            &format!("[logging]\nformat = \"xml\"\n{ONE_BACKEND}"),
            "logging.format",
            "text, json",
        );
    }

    #[test]
    fn backend_rules() {
        assert_error("", "backends", "at least one");
        assert_error(
            "[[backends]]\nname = \"a b\"\naddress = \"127.0.0.1:1\"\n",
            "backends[0].name",
            "A-Z a-z 0-9",
        );
        assert_error(
            "[[backends]]\nname = \"\"\naddress = \"127.0.0.1:1\"\n",
            "backends[0].name",
            "A-Z a-z 0-9",
        );
        assert_error(
            "[[backends]]\naddress = \"127.0.0.1:1\"\n",
            "backends[0].name",
            "missing",
        );
        assert_error(
            "[[backends]]\nname = \"a\"\n",
            "backends[0].address",
            "missing",
        );
        assert_error(
            "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\n",
            "backends[1].name",
            "already the name of backends[0]",
        );
        assert_error(
            "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[backends]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n",
            "backends[1].address",
            "already the address of backends[0]",
        );
        for w in ["0", "1001", "-1"] {
            assert_error(
                &format!("[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = {w}\n"),
                "backends[0].weight",
                "between 1 and 1000",
            );
        }
    }

    #[test]
    fn every_error_is_reported() {
        let errors = errors_of(
            "[server]\nlisten = \"x\"\nio = \"y\"\n[timeouts]\nconnect = \"z\"\n[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 0\n",
        );
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "server.listen",
            "server.io",
            "timeouts.connect",
            "backends[0].weight",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let shown = ConfigErrors(errors).to_string();
        assert_eq!(shown.lines().count(), 4);
        assert!(shown.lines().all(|l| l.starts_with("t.toml: ")));
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_apply() {
        let c = parse(
            ONE_BACKEND,
            "t.toml",
            env(&[
                ("RINGLB_BALANCER_STRATEGY", "least-conn"),
                ("RINGLB_SERVER_LISTEN", ":9000"),
                ("RINGLB_SERVER_MAX_CONNECTIONS", "10"),
                ("RINGLB_TIMEOUTS_BACKEND_RESPONSE", "5s"),
                ("RINGLB_LOGGING_LEVEL", "debug"),
                ("RINGLB_LOG", "ignored"),
                ("RINGLB_TEST_ANYTHING", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.balancer.strategy, Strategy::LeastConn);
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.server.max_connections, 10);
        assert_eq!(c.timeouts.backend_response, Duration::from_secs(5));
        assert_eq!(c.logging.level, LogLevel::Debug);
    }

    #[test]
    fn every_overridable_key_exists_in_the_file_format() {
        for (section, keys) in OVERRIDABLE {
            for (key, kind) in *keys {
                let value = match kind {
                    Kind::Integer => "1",
                    Kind::Text => "x",
                    Kind::Boolean => "true",
                };
                let name = format!("RINGLB_{}_{}", section.to_uppercase(), key.to_uppercase());
                let result = parse(ONE_BACKEND, "t.toml", env(&[(&name, value)]));
                if let Err(errors) = result {
                    assert!(
                        errors.0.iter().all(|e| !e.message.contains("unknown key")
                            && !e.message.contains("not a known setting")),
                        "{name}: {errors}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let errors = parse(ONE_BACKEND, "t.toml", env(&[("RINGLB_SERVER_SHARDS", "x")]))
            .unwrap_err()
            .0;
        assert_eq!(errors[0].file, "env RINGLB_SERVER_SHARDS");
        assert_eq!(errors[0].key, "server.shards");
        assert!(errors[0].message.contains("expected an integer"));
        let errors = parse(
            ONE_BACKEND,
            "t.toml",
            env(&[("RINGLB_SERVER_COLOUR", "red")]),
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].file, "env RINGLB_SERVER_COLOUR");
        assert!(errors[0].message.contains("not a known setting"));
        let errors = parse(ONE_BACKEND, "t.toml", env(&[("RINGLB_BACKENDS_NAME", "x")]))
            .unwrap_err()
            .0;
        assert_eq!(errors[0].file, "env RINGLB_BACKENDS_NAME");
    }

    #[test]
    fn validate_applies_to_configs_built_in_code() {
        let mut c = Config::default();
        assert!(c.validate().is_err(), "no backends");
        c.backends.push(BackendConfig {
            name: "a".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            weight: 0,
        });
        let errors = c.validate().unwrap_err().0;
        assert_eq!(errors[0].key, "backends[0].weight");
    }
}
