//! TEMPORARY stand-in with the agreed API; replaced by the full module.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode { Auto, IoUring, Epoll }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy { RoundRobin, WeightedRoundRobin, LeastConn }
impl Strategy { pub fn as_str(&self) -> &'static str { match self { Strategy::RoundRobin => "round-robin", Strategy::WeightedRoundRobin => "weighted-round-robin", Strategy::LeastConn => "least-conn" } } }
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel { Error, Warn, Info, Debug }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat { Text, Json }
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig { pub listen: SocketAddr, pub shards: usize, pub io: IoMode, pub max_connections: usize }
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig { pub listen: SocketAddr }
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts { pub connect: Duration, pub header_read: Duration, pub idle: Duration, pub backend_response: Duration, pub shutdown_grace: Duration }
#[derive(Debug, Clone, PartialEq)]
pub struct Limits { pub max_header_bytes: usize, pub max_headers: usize, pub max_body_bytes: Option<u64> }
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig { pub max_idle_per_backend: usize, pub idle_timeout: Duration }
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig { pub strategy: Strategy }
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig { pub level: LogLevel, pub format: LogFormat }
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig { pub name: String, pub address: SocketAddr, pub weight: u32 }
#[derive(Debug, Clone, PartialEq)]
pub struct Config { pub server: ServerConfig, pub admin: AdminConfig, pub timeouts: Timeouts, pub limits: Limits, pub upstream: UpstreamConfig, pub balancer: BalancerConfig, pub logging: LoggingConfig, pub backends: Vec<BackendConfig> }
impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig { listen: "0.0.0.0:8080".parse().unwrap(), shards: 0, io: IoMode::Auto, max_connections: 100_000 },
            admin: AdminConfig { listen: "127.0.0.1:9900".parse().unwrap() },
            timeouts: Timeouts { connect: Duration::from_secs(2), header_read: Duration::from_secs(10), idle: Duration::from_secs(60), backend_response: Duration::from_secs(30), shutdown_grace: Duration::from_secs(15) },
            limits: Limits { max_header_bytes: 16384, max_headers: 100, max_body_bytes: None },
            upstream: UpstreamConfig { max_idle_per_backend: 64, idle_timeout: Duration::from_secs(30) },
            balancer: BalancerConfig { strategy: Strategy::RoundRobin },
            logging: LoggingConfig { level: LogLevel::Info, format: LogFormat::Text },
            backends: vec![],
        }
    }
}
#[derive(Debug, thiserror::Error)] #[error("{file}: {key}: {message}")]
pub struct ConfigError { pub file: String, pub key: String, pub message: String }
#[derive(Debug, thiserror::Error)] #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);
impl Config { pub fn validate(&self) -> Result<(), ConfigErrors> { Ok(()) } pub fn summary(&self) -> String { format!("{self:?}") } }
pub fn load(_path: &Path) -> Result<Config, ConfigErrors> { Err(ConfigErrors(vec![])) }
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or("no unit")?);
    let n: u64 = n.parse().map_err(|_| "bad")?;
    Ok(match unit { "us" => Duration::from_micros(n), "ms" => Duration::from_millis(n), "s" => Duration::from_secs(n), "m" => Duration::from_secs(n*60), "h" => Duration::from_secs(n*3600), _ => return Err("unit".into()) })
}
