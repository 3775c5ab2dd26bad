//! `config::check`: the range and consistency rules.
//!
//! Owns `Config::validate` (for configurations built in code) and the rules every
//! file goes through after conversion, and `Config::summary` for `ringlb check`.
//! Each rule names its key; every broken rule is reported, not only the first.

use std::time::Duration;

use crate::config::error::Errors;
use crate::config::*;

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// Longest duration any setting takes; deadlines are `now + duration` and must
/// not overflow.
const MAX_DURATION: Duration = Duration::from_secs(168 * 3600);

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

    pub(super) fn check(&self, errors: &mut Errors<'_>) {
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
