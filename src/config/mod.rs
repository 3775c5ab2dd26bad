//! `config`: loads and validates ringlb's TOML configuration.
//!
//! Owns the file's shape (serde structs with `deny_unknown_fields`), the
//! `RINGLB_<SECTION>_<KEY>` environment overrides, and the conversion into a
//! validated `Config` of real types. Called once at start and on every reload.
//! Every error names the file, the key and what was expected; nothing here panics
//! on bad input, and nothing here touches a socket.

mod check;
mod env;
mod error;
mod file;
#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigErrors};
pub use file::{parse_address, parse_duration};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use env::apply_env;
use error::Errors;
use file::{convert, FileConfig};

/// How the keys of one cluster's settings are named in errors: the short form's
/// sections (`balancer.strategy`, `backends[0].weight`) or the cluster's own
/// (`clusters[1].strategy`, `clusters[1].backends[0].weight`).
pub(super) struct Keys {
    /// Prefix of the balancer's keys.
    balancer: String,
    /// Prefix of the cluster's tables (`health_check`, `backends`, ...).
    section: String,
}

impl Keys {
    /// The short form's names.
    pub(super) fn short() -> Keys {
        Keys {
            balancer: "balancer.".into(),
            section: String::new(),
        }
    }

    /// The names of `clusters[i]`.
    pub(super) fn cluster(i: usize) -> Keys {
        Keys {
            balancer: format!("clusters[{i}]."),
            section: format!("clusters[{i}]."),
        }
    }

    /// The names of the cluster at `index` of a configuration in `form`.
    pub(super) fn of_cluster(form: Form, index: usize) -> Keys {
        match form {
            Form::Short => Keys::short(),
            Form::Full => Keys::cluster(index),
        }
    }

    /// A balancer key (`strategy`, `sticky.cookie`, ...).
    pub(super) fn balancer(&self, field: &str) -> String {
        format!("{}{field}", self.balancer)
    }

    /// A key of one of the cluster's tables.
    pub(super) fn of(&self, table: &str, field: &str) -> String {
        format!("{}{table}.{field}", self.section)
    }

    /// The key of the backend list.
    pub(super) fn backends(&self) -> String {
        format!("{}backends", self.section)
    }

    /// A key of backend `index`.
    pub(super) fn backend(&self, index: usize, field: &str) -> String {
        format!("{}backends[{index}].{field}", self.section)
    }
}

// ---------------------------------------------------------------------------
// The validated configuration.

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The shards and the process.
    pub server: ServerConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// How long each wait may last (`connect` and `backend_response` are the
    /// defaults of clusters that set none).
    pub timeouts: Timeouts,
    /// What a client may make us buffer.
    pub limits: Limits,
    /// Log level and format.
    pub logging: LoggingConfig,
    /// Where clients connect, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Which requests go to which cluster, in file order.
    pub routes: Vec<RouteConfig>,
    /// The named groups of backends, in file order.
    pub clusters: Vec<ClusterConfig>,
    /// Which form the file was written in, so errors name keys as written.
    pub form: Form,
    /// Problems that do not stop the configuration from working (a route that can
    /// never match, a cluster no route uses); logged at start and on reload, and
    /// listed by `ringlb check`.
    pub warnings: Vec<ConfigError>,
}

/// How a configuration file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `[server] listen`, `[balancer]`, `[[backends]]` and friends: one listener,
    /// one cluster named `default`, one catch-all route.
    Short,
    /// `[[listeners]]`, `[[routes]]` and `[[clusters]]`.
    Full,
}

impl Default for Config {
    /// The short form's defaults: a listener on `0.0.0.0:8080`, a cluster named
    /// `default` with no backends yet, and a catch-all route to it.
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            admin: AdminConfig::default(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            logging: LoggingConfig::default(),
            listeners: vec![ListenerConfig::new(
                DEFAULT_NAME,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
                ListenerProtocol::Http,
            )],
            routes: vec![RouteConfig::catch_all(
                DEFAULT_NAME,
                DEFAULT_NAME,
                DEFAULT_NAME,
            )],
            clusters: vec![ClusterConfig::new(DEFAULT_NAME)],
            form: Form::Short,
            warnings: Vec::new(),
        }
    }
}

/// Header fields that frame a message or belong to one hop: the HTTP/1 codec
/// writes them itself (and never forwards them as they came), so a route may not
/// set or remove them.
pub const FRAMING_FIELDS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
    "expect",
];

/// The name of the short form's listener, route and cluster.
pub const DEFAULT_NAME: &str = "default";

impl Config {
    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// One `[[listeners]]` entry: an address shards accept on, and its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique name, used in logs, statistics and routes.
    pub name: String,
    /// Where clients connect; every shard listens here with SO_REUSEPORT.
    pub address: SocketAddr,
    /// What is spoken on it.
    pub protocol: ListenerProtocol,
    /// `tcp` listeners: the cluster every connection goes to (HTTP listeners use
    /// `[[routes]]` instead).
    pub cluster: Option<String>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a
    /// load balancer in front, whose client address replaces the peer's.
    pub accept_proxy: bool,
    /// With `accept_proxy`: the peers allowed to send one (anyone else is closed).
    pub proxy_trusted: Vec<Cidr>,
    /// TLS termination: every connection starts with a TLS handshake.
    pub tls: Option<ListenerTls>,
}

/// A listener's `tls` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Certificate chains and their keys, chosen by SNI.
    pub certificates: Vec<CertificateFiles>,
    /// A DNS name one of them carries, for clients that send no SNI or an
    /// unknown one; without it their handshakes fail.
    pub default: Option<String>,
    /// The oldest TLS version accepted.
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, in order of preference.
    pub alpn: Vec<String>,
}

/// A certificate chain (PEM, leaf first) and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl TlsVersion {
    /// The spelling used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

impl ListenerConfig {
    /// A listener with no cluster and no PROXY protocol.
    pub fn new(name: &str, address: SocketAddr, protocol: ListenerProtocol) -> Self {
        ListenerConfig {
            name: name.into(),
            address,
            protocol,
            cluster: None,
            accept_proxy: false,
            proxy_trusted: Vec::new(),
            tls: None,
        }
    }
}

/// An IP network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is `/32` or
/// `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, host bits cleared.
    pub network: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or `ADDR`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("expected an address like 10.0.0.0/8, got {text:?}"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && (p == "0" || !p.starts_with('0')) => n,
                _ => {
                    return Err(format!(
                        "expected a prefix length of 0 to {max}, got {text:?}"
                    ))
                }
            },
        };
        let cidr = Cidr { network, prefix };
        Ok(Cidr {
            network: cidr.masked(network),
            prefix,
        })
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `upstream.send_proxy`: the PROXY protocol version written to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// `listeners[].protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP/1.1, routed by `[[routes]]`.
    Http,
    /// Plain TCP: each connection is relayed to a backend of one cluster.
    Tcp,
    /// HTTP/2 over plain TCP with prior knowledge (`h2c`), routed by
    /// `[[routes]]` like `http`.
    H2c,
}

impl ListenerProtocol {
    /// The spelling used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            ListenerProtocol::Http => "http",
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::H2c => "h2c",
        }
    }
}

/// One `[[routes]]` entry: which requests on a listener go to which cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Unique name, used in statistics and the access log (given, or
    /// `LISTENER-N` for the listener's N-th route).
    pub name: String,
    /// The listener whose requests it matches.
    pub listener: String,
    /// `host`: an exact name (case-insensitive, port ignored) or `*.suffix`.
    pub host: Option<String>,
    /// `path` (exact) or `path_prefix` (segment-aware).
    pub path: Option<PathRule>,
    /// `methods`: method tokens; empty matches every method.
    pub methods: Vec<String>,
    /// `headers`: (lower-case name, exact value); all must match.
    pub headers: Vec<(String, String)>,
    /// The cluster that serves what it matches.
    pub cluster: String,
    /// Remove the matched `path_prefix` from the target before forwarding.
    pub strip_prefix: bool,
    /// Fields set on the request (replacing any the client sent).
    pub set_request_headers: Vec<(String, String)>,
    /// Fields removed from the request (lower-case names).
    pub remove_request_headers: Vec<String>,
}

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    /// `path`: equal to it.
    Exact(String),
    /// `path_prefix`: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
}

impl RouteConfig {
    /// A route with no match fields and no actions: it takes every request.
    pub fn catch_all(name: &str, listener: &str, cluster: &str) -> Self {
        RouteConfig {
            name: name.into(),
            listener: listener.into(),
            host: None,
            path: None,
            methods: Vec::new(),
            headers: Vec::new(),
            cluster: cluster.into(),
            strip_prefix: false,
            set_request_headers: Vec::new(),
            remove_request_headers: Vec::new(),
        }
    }

    /// Whether it changes the request before forwarding.
    pub fn has_actions(&self) -> bool {
        self.strip_prefix
            || !self.set_request_headers.is_empty()
            || !self.remove_request_headers.is_empty()
    }

    /// Whether another route matches exactly the same requests.
    pub fn same_match(&self, other: &RouteConfig) -> bool {
        let host = |r: &RouteConfig| r.host.as_ref().map(|h| h.to_ascii_lowercase());
        let mut methods = self.methods.clone();
        let mut other_methods = other.methods.clone();
        methods.sort();
        other_methods.sort();
        let mut headers = self.headers.clone();
        let mut other_headers = other.headers.clone();
        headers.sort();
        other_headers.sort();
        self.listener == other.listener
            && host(self) == host(other)
            && self.path == other.path
            && methods == other_methods
            && headers == other_headers
    }
}

/// One `[[clusters]]` entry (or the short form's whole file): a named group of
/// backends with everything that decides how requests reach them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// Unique name, used in routes, logs, statistics and the admin API.
    pub name: String,
    /// Backend selection.
    pub balancer: BalancerConfig,
    /// Active health checks.
    pub health_check: HealthCheckConfig,
    /// Passive health: the circuit breaker.
    pub circuit_breaker: BreakerConfig,
    /// Retries on another backend.
    pub retry: RetryConfig,
    /// Upstream connection pooling.
    pub upstream: UpstreamConfig,
    /// `timeouts.connect` and `timeouts.backend_response` for this cluster; `None`
    /// takes the global `[timeouts]` value.
    pub timeouts: ClusterTimeouts,
    /// The backends, in order.
    pub backends: Vec<BackendConfig>,
    /// TLS to the backends (and to their health checks).
    pub tls: Option<ClusterTls>,
}

/// A cluster's `tls` table: its connections to backends are TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The name sent as SNI and verified in the backend's certificate; without
    /// it, each backend's IP address.
    pub server_name: Option<String>,
    /// The CA certificates (PEM) a backend's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Verify the backend's certificate (off only for testing).
    pub verify: bool,
    /// A client certificate for backends that ask for one (mutual TLS).
    pub client_certificate: Option<CertificateFiles>,
}

impl ClusterConfig {
    /// A cluster with every setting at its default and no backends.
    pub fn new(name: &str) -> Self {
        ClusterConfig {
            name: name.into(),
            balancer: BalancerConfig::default(),
            health_check: HealthCheckConfig::default(),
            circuit_breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
            upstream: UpstreamConfig::default(),
            timeouts: ClusterTimeouts::default(),
            backends: Vec::new(),
            tls: None,
        }
    }
}

/// A cluster's own timeouts; `None` takes the global one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterTimeouts {
    /// Connecting to a backend.
    pub connect: Option<Duration>,
    /// Waiting for a backend's response head, and between its body reads.
    pub backend_response: Option<Duration>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
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
    /// Where the admin endpoints listen (loopback by default).
    pub listen: SocketAddr,
    /// Bearer token every admin request but `GET /healthz` must carry
    /// (`Authorization: Bearer TOKEN`); required on a non-loopback address.
    pub token: Option<String>,
    /// Host names (besides the admin address itself) that changes (and, without a
    /// token, reads) may be sent to, for operators who reach the admin listener
    /// by name.
    pub hosts: Vec<String>,
    /// Whether `GET /debug/profile` may sample the process (off by default: a
    /// profile costs CPU while it runs, and shows the code's insides).
    pub profiling: bool,
}

/// `[timeouts]`.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// A tunnel (TCP connection or upgraded WebSocket) with no byte in either
    /// direction for this long is closed.
    pub tunnel_idle: Duration,
}

/// `[limits]`: what a client may make us buffer, used as they are by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (start line, fields and the blank line) in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Largest request body; `None` is unlimited.
    pub max_body_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: None,
        }
    }
}

/// `[upstream]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Most idle keep-alive connections a shard keeps per backend (0: no pooling).
    pub max_idle_per_backend: usize,
    /// How long an idle upstream connection is kept.
    pub idle_timeout: Duration,
    /// Start every upstream connection with a PROXY protocol header naming the
    /// client; such a connection belongs to its client and is never pooled.
    pub send_proxy: Option<ProxyVersion>,
    /// The protocol spoken to the backends: HTTP/1.1, or HTTP/2 (h2c, or ALPN
    /// `h2` over the cluster's TLS) on multiplexed connections.
    pub protocol: UpstreamProtocol,
    /// HTTP/2: most streams one upstream connection carries at once (fewer if
    /// the backend says so); past it a shard opens another connection.
    pub h2_max_streams: usize,
}

/// `upstream.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, one request at a time per connection, idle ones pooled.
    Http1,
    /// HTTP/2, many streams per connection.
    H2,
}

impl UpstreamProtocol {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
        }
    }
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
    /// Checks start with a PROXY protocol header too (with `upstream.send_proxy`).
    pub send_proxy: bool,
    /// The service a gRPC check asks about (`""`: the whole server).
    pub service: String,
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
    /// `grpc.health.v1.Health/Check` over HTTP/2 (`upstream.protocol = "h2"`).
    Grpc,
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
            send_proxy: false,
            service: String::new(),
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
            token: None,
            hosts: Vec::new(),
            profiling: false,
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
            tunnel_idle: Duration::from_secs(3600),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            max_idle_per_backend: 64,
            idle_timeout: Duration::from_secs(30),
            send_proxy: None,
            protocol: UpstreamProtocol::Http1,
            h2_max_streams: 100,
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
        Ok(text) => {
            let mut config = parse(&text, &origin, env)?;
            // Certificate paths are relative to the file that names them.
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut files: Vec<&mut PathBuf> = Vec::new();
            for listener in &mut config.listeners {
                for pair in listener.tls.iter_mut().flat_map(|t| &mut t.certificates) {
                    files.extend([&mut pair.cert, &mut pair.key]);
                }
            }
            for tls in config.clusters.iter_mut().filter_map(|c| c.tls.as_mut()) {
                files.extend(tls.ca.as_mut());
                if let Some(pair) = &mut tls.client_certificate {
                    files.extend([&mut pair.cert, &mut pair.key]);
                }
            }
            for file in files {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
            Ok(config)
        }
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: origin,
            key: "-".into(),
            message: format!("cannot read the file: {e}"),
        }])),
    }
}

/// Parses configuration text; `origin` names it in errors. Reports every error
/// found, not only the first: syntax errors stop at once, but a key of the wrong
/// type or an unknown key is reported and set aside, and the rest is still read.
pub fn parse<I>(text: &str, origin: &str, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut errors = Errors::new(origin);
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
    for error in apply_env(&mut table, env) {
        errors.push_error(error);
    }
    let file = deserialize_reporting(toml::Value::Table(table), &mut errors);
    let mut config = convert(file, &mut errors);
    config.check(&mut errors);
    if errors.list.is_empty() {
        config.warnings = errors.warnings;
        Ok(config)
    } else {
        Err(ConfigErrors(errors.list))
    }
}

/// Most keys set aside before giving up on the file's shape.
const MAX_SHAPE_ERRORS: usize = 100;

/// Deserializes the file's shape. A key of the wrong type or an unknown key is
/// reported, removed, and the rest deserialized again, so that one run reports
/// every such key.
fn deserialize_reporting(mut value: toml::Value, errors: &mut Errors<'_>) -> FileConfig {
    for _ in 0..MAX_SHAPE_ERRORS {
        let e = match serde_path_to_error::deserialize::<_, FileConfig>(value.clone()) {
            Ok(file) => return file,
            Err(e) => e,
        };
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // toml appends "in `section`" on a second line; the path says that.
        let message = message.lines().next().unwrap_or("").trim();
        let key = match unknown_field(message) {
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
                errors.push(key.clone(), format!("unknown key (expected {expected})"));
                key
            }
            None => {
                errors.push(path.clone(), message.to_string());
                path
            }
        };
        if !remove_key(&mut value, &key) {
            break;
        }
    }
    FileConfig::default()
}

/// Removes the value at a dotted key (`clusters[1].backends[0].weight`) from a
/// TOML tree. An element of an array of tables is emptied rather than removed, so
/// that later elements keep their indexes. Returns whether anything was removed.
fn remove_key(value: &mut toml::Value, key: &str) -> bool {
    let mut steps: Vec<Step<'_>> = Vec::new();
    for part in key.split('.') {
        let name_end = part.find('[').unwrap_or(part.len());
        if name_end > 0 {
            steps.push(Step::Name(&part[..name_end]));
        }
        for index in part[name_end..].split('[').skip(1) {
            match index.trim_end_matches(']').parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => return false,
            }
        }
    }
    let Some((last, path)) = steps.split_last() else {
        return false;
    };
    let mut node = value;
    for step in path {
        let next = match (step, node) {
            (Step::Name(name), toml::Value::Table(t)) => t.get_mut(*name),
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, node) {
        (Step::Name(name), toml::Value::Table(t)) => t.remove(*name).is_some(),
        (Step::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            if a[*i].is_table() {
                a[*i] = toml::Value::Table(toml::Table::new());
            } else {
                a.remove(*i);
            }
            true
        }
        _ => false,
    }
}

/// One step of a dotted key.
enum Step<'a> {
    Name(&'a str),
    Index(usize),
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
