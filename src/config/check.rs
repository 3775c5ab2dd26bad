//! `config::check`: the range and consistency rules.
//!
//! Owns `Config::validate` (for configurations built in code) and the rules every
//! file goes through after conversion: ranges, names, and the cross-references
//! between listeners, routes and clusters. Also `Config::summary` for `ringlb
//! check`. Each rule names its key; every broken rule is reported, not only the
//! first, and problems that do not stop the configuration are warnings.

use std::net::SocketAddr;
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

/// A token character (RFC 9110 §5.6.2): header names, methods, cookie names.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A name of a listener, route, cluster or backend.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

const NAME_RULE: &str = "expected 1-64 characters of A-Z a-z 0-9 _ . -";

/// A field value ringlb may write: visible ASCII, spaces and tabs, no line breaks.
fn is_field_value(s: &str) -> bool {
    s.bytes().all(|c| c == b'\t' || (b' '..0x7f).contains(&c))
}

/// A host name (`api.example.com`), or an IP address: what `host` may name.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && (s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            || (s.starts_with('[') && s.ends_with(']')))
}

/// The position of the first entry before `index` whose `key` equals the one at
/// `index`.
fn earlier<T, K: PartialEq>(items: &[T], index: usize, key: impl Fn(&T) -> K) -> Option<usize> {
    let wanted = key(&items[index]);
    items[..index].iter().position(|other| key(other) == wanted)
}

impl Config {
    /// Checks the range and consistency rules (the same ones the file goes through).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Errors::new("config");
        self.check(&mut errors);
        if errors.list.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors.list))
        }
    }

    pub(super) fn check(&self, errors: &mut Errors<'_>) {
        self.check_process(errors);
        self.check_admin(errors);
        self.check_listeners(errors);
        self.check_routes(errors);
        for index in 0..self.clusters.len() {
            self.check_cluster(index, errors);
        }
        if self.clusters.is_empty() {
            errors.push("clusters", "at least one [[clusters]] entry is required");
        }
        self.check_backend_names(errors);
    }

    /// The rules a listener's `tls` table follows without reading its files (the
    /// certificates themselves are checked where they are loaded: `tls::material`).
    fn check_listener_tls(
        &self,
        i: usize,
        protocol: ListenerProtocol,
        tls: &ListenerTls,
        errors: &mut Errors<'_>,
    ) {
        if tls.certificates.is_empty() {
            errors.push(
                self.listener_key(i, "tls.certificates"),
                "at least one { cert = \"...pem\", key = \"...key\" } is required",
            );
        }
        if protocol == ListenerProtocol::H2c {
            errors.push(
                self.listener_key(i, "tls"),
                "h2c is HTTP/2 without TLS; for HTTP/2 over TLS use protocol = \"http\" with tls.alpn = [\"h2\", \"http/1.1\"]",
            );
        }
        for (n, name) in tls.alpn.iter().enumerate() {
            let key = self.listener_key(i, &format!("tls.alpn[{n}]"));
            match (protocol, name.as_str()) {
                // A tcp listener may offer any protocol it relays (`postgresql`,
                // `imap`...): ALPN names are 1 to 255 bytes.
                (ListenerProtocol::Tcp, name) if (1..=255).contains(&name.len()) => {}
                (ListenerProtocol::Tcp, _) => errors.push(key, "expected 1 to 255 bytes"),
                (ListenerProtocol::Http, "http/1.1" | "h2") => {}
                (ListenerProtocol::Http, other) => errors.push(
                    key,
                    format!("expected \"h2\" or \"http/1.1\", got {other:?}"),
                ),
                (ListenerProtocol::H2c, _) => {}
            }
        }
        if tls.default.is_none() {
            errors.warn(
                self.listener_key(i, "tls.default"),
                "not set: clients that send no SNI, or a name no certificate carries, are refused",
            );
        }
    }

    fn check_process(&self, errors: &mut Errors<'_>) {
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
        let t = &self.timeouts;
        for (key, d) in [
            ("timeouts.connect", t.connect),
            ("timeouts.header_read", t.header_read),
            ("timeouts.idle", t.idle),
            ("timeouts.backend_response", t.backend_response),
            ("timeouts.shutdown_grace", t.shutdown_grace),
            ("timeouts.tunnel_idle", t.tunnel_idle),
        ] {
            check_duration(errors, key, d);
        }
    }

    fn check_admin(&self, errors: &mut Errors<'_>) {
        let admin = &self.admin;
        match &admin.token {
            Some(token) if token.len() < 16 || !token.bytes().all(|c| c.is_ascii_graphic()) => {
                errors.push(
                    "admin.token",
                    "must be at least 16 visible ASCII characters (no spaces)",
                )
            }
            None if !admin.listen.ip().is_loopback() => errors.push(
                "admin.token",
                format!(
                    "required because admin.listen ({}) is not a loopback address: the admin \
                     API can change what the balancer does. Set admin.token (or \
                     RINGLB_ADMIN_TOKEN) to a secret of 16 or more characters, or listen on \
                     127.0.0.1",
                    admin.listen
                ),
            ),
            _ => {}
        }
        if admin.profiling && !cfg!(feature = "profiling") {
            errors.warn(
                "admin.profiling",
                "this ringlb was built without the `profiling` feature: GET /debug/profile \
                 will answer 404",
            );
        }
        for (i, host) in admin.hosts.iter().enumerate() {
            if !is_host(host) {
                errors.push(
                    format!("admin.hosts[{i}]"),
                    format!("expected a host name like lb.internal, got {host:?}"),
                );
            }
        }
    }

    /// The key naming listener `i`'s address (the short form's is `server.listen`).
    fn listener_key(&self, i: usize, field: &str) -> String {
        match self.form {
            Form::Short => "server.listen".to_string(),
            Form::Full => format!("listeners[{i}].{field}"),
        }
    }

    fn check_listeners(&self, errors: &mut Errors<'_>) {
        if self.listeners.is_empty() {
            errors.push("listeners", "at least one [[listeners]] entry is required");
        }
        // The same port on the same address, or on all addresses and one of them:
        // with SO_REUSEPORT both would bind, and one would take the other's
        // connections.
        let same_socket = |a: SocketAddr, b: SocketAddr| {
            a.port() == b.port()
                && a.port() != 0
                && a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        for (i, l) in self.listeners.iter().enumerate() {
            if !is_name(&l.name) {
                errors.push(
                    self.listener_key(i, "name"),
                    format!("{NAME_RULE}, got {:?}", l.name),
                );
            }
            if let Some(j) = earlier(&self.listeners, i, |l| l.name.clone()) {
                errors.push(
                    self.listener_key(i, "name"),
                    format!("{:?} is already the name of listeners[{j}]", l.name),
                );
            }
            if let Some(j) = self.listeners[..i]
                .iter()
                .position(|o| same_socket(o.address, l.address))
            {
                errors.push(
                    self.listener_key(i, "address"),
                    format!("{} is already the address of listeners[{j}]", l.address),
                );
            }
            if same_socket(l.address, self.admin.listen) {
                errors.push(
                    "admin.listen",
                    format!("must differ from the address of listener {}", l.name),
                );
            }
            if l.accept_proxy && l.proxy_trusted.is_empty() {
                errors.push(
                    self.listener_key(i, "proxy_trusted"),
                    "accept_proxy needs the addresses of the load balancers in front, like [\"10.0.0.0/8\"]",
                );
            }
            if !l.accept_proxy && !l.proxy_trusted.is_empty() {
                errors.warn(
                    self.listener_key(i, "proxy_trusted"),
                    "has no effect without accept_proxy = true",
                );
            }
            if let Some(tls) = &l.tls {
                self.check_listener_tls(i, l.protocol, tls, errors);
            }
            if l.protocol == ListenerProtocol::Tcp {
                self.check_tcp_listener(i, l, errors);
                continue;
            }
            if l.cluster.is_some() {
                errors.push(
                    self.listener_key(i, "cluster"),
                    "only tcp listeners name a cluster; an http listener's [[routes]] choose one",
                );
            }
            if !l.name.is_empty() && !self.routes.iter().any(|r| r.listener == l.name) {
                errors.push(
                    self.listener_key(i, "name"),
                    format!(
                        "listener {:?} has no route: add a [[routes]] entry with listener = {:?}",
                        l.name, l.name
                    ),
                );
            }
        }
    }

    /// A `tcp` listener: one existing cluster, no routes, and a balancer that needs
    /// nothing from HTTP.
    fn check_tcp_listener(&self, i: usize, l: &ListenerConfig, errors: &mut Errors<'_>) {
        let key = |field: &str| self.listener_key(i, field);
        if let Some(r) = self.routes.iter().find(|r| r.listener == l.name) {
            errors.push(
                key("protocol"),
                format!(
                    "a tcp listener has no routes, but route {:?} names it: give the listener a cluster instead",
                    r.name
                ),
            );
        }
        let Some(name) = &l.cluster else {
            errors.push(
                key("cluster"),
                "missing (a tcp listener relays every connection to one cluster)",
            );
            return;
        };
        let Some(cluster) = self.cluster(name) else {
            errors.push(key("cluster"), format!("no cluster is named {name:?}"));
            return;
        };
        let needs_http = match (&cluster.balancer.strategy, &cluster.balancer.hash_key) {
            (Strategy::LeastResponse, _) => {
                Some("strategy \"least-response\" times HTTP responses")
            }
            (Strategy::ConsistentHash, HashKey::ClientIp) => None,
            (Strategy::ConsistentHash, _) => {
                Some("a hash_key other than \"client-ip\" reads the HTTP request")
            }
            _ => None,
        };
        let problem = match needs_http {
            Some(why) => Some(why),
            None if cluster.balancer.sticky.is_some() => Some("sticky sessions use an HTTP cookie"),
            None => None,
        };
        if let Some(why) = problem {
            errors.push(
                key("cluster"),
                format!("cluster {name:?} cannot serve a tcp listener: {why}"),
            );
        }
    }

    fn check_routes(&self, errors: &mut Errors<'_>) {
        for (i, r) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            if !is_name(&r.name) {
                errors.push(key("name"), format!("{NAME_RULE}, got {:?}", r.name));
            }
            if let Some(j) = earlier(&self.routes, i, |r| r.name.clone()) {
                errors.push(
                    key("name"),
                    format!("{:?} is already the name of routes[{j}]", r.name),
                );
            }
            if !r.listener.is_empty() && !self.listeners.iter().any(|l| l.name == r.listener) {
                errors.push(
                    key("listener"),
                    format!("no listener is named {:?}", r.listener),
                );
            }
            if !r.cluster.is_empty() && self.cluster(&r.cluster).is_none() {
                errors.push(
                    key("cluster"),
                    format!("no cluster is named {:?}", r.cluster),
                );
            }
            if let Some(host) = &r.host {
                let name = host.strip_prefix("*.").unwrap_or(host);
                if !is_host(name) || name.contains('*') {
                    errors.push(
                        key("host"),
                        format!(
                            "expected a host like api.example.com or *.example.com, got {host:?}"
                        ),
                    );
                }
            }
            match &r.path {
                Some(PathRule::Exact(p)) | Some(PathRule::Prefix(p)) => {
                    let field = match r.path {
                        Some(PathRule::Exact(_)) => "path",
                        _ => "path_prefix",
                    };
                    if !p.starts_with('/') || p.bytes().any(|c| c <= b' ' || c == 0x7f || c == b'?')
                    {
                        errors.push(
                            key(field),
                            format!(
                                "expected a path starting with / (no spaces, no query), got {p:?}"
                            ),
                        );
                    }
                }
                None => {}
            }
            if r.strip_prefix && !matches!(r.path, Some(PathRule::Prefix(_))) {
                errors.push(key("strip_prefix"), "needs a path_prefix to strip");
            }
            for (m, method) in r.methods.iter().enumerate() {
                if !is_token(method) {
                    errors.push(
                        format!("routes[{i}].methods[{m}]"),
                        format!("expected a method like GET, got {method:?}"),
                    );
                } else if method.bytes().any(|c| c.is_ascii_lowercase()) {
                    errors.warn(
                        format!("routes[{i}].methods[{m}]"),
                        format!(
                            "methods are case-sensitive: {method:?} matches only clients that send it so (did you mean {:?}?)",
                            method.to_ascii_uppercase()
                        ),
                    );
                }
            }
            for (table, pairs) in [
                ("headers", &r.headers),
                ("set_request_headers", &r.set_request_headers),
            ] {
                for (name, value) in pairs {
                    let field = format!("routes[{i}].{table}.{name}");
                    if !is_token(name) {
                        errors.push(field.clone(), "expected a header name");
                    } else if !is_field_value(value) {
                        errors.push(
                            field.clone(),
                            "expected a value of visible characters, spaces and tabs",
                        );
                    }
                    if table != "headers" && FRAMING_FIELDS.contains(&name.as_str()) {
                        errors.push(
                            field,
                            "ringlb writes this field itself; a route cannot set it",
                        );
                    }
                }
            }
            for (n, name) in r.remove_request_headers.iter().enumerate() {
                let field = format!("routes[{i}].remove_request_headers[{n}]");
                if !is_token(name) {
                    errors.push(field, format!("expected a header name, got {name:?}"));
                } else if FRAMING_FIELDS.contains(&name.as_str()) || name == "host" {
                    errors.push(
                        field,
                        format!("ringlb needs {name:?}; a route cannot remove it"),
                    );
                }
            }
            if let Some(j) = self.routes[..i].iter().position(|o| o.same_match(r)) {
                errors.warn(
                    format!("routes[{i}]"),
                    format!(
                        "matches exactly what routes[{j}] ({}) matches, which comes first: it can never match",
                        self.routes[j].name
                    ),
                );
            }
        }
        for (i, c) in self.clusters.iter().enumerate() {
            let by_listener = self
                .listeners
                .iter()
                .any(|l| l.cluster.as_deref() == Some(&*c.name));
            if !c.name.is_empty()
                && !by_listener
                && !self.routes.iter().any(|r| r.cluster == c.name)
            {
                errors.warn(
                    format!("clusters[{i}]"),
                    format!("no route or tcp listener uses cluster {:?}", c.name),
                );
            }
        }
    }

    fn check_cluster(&self, index: usize, errors: &mut Errors<'_>) {
        let c = &self.clusters[index];
        let keys = Keys::of_cluster(self.form, index);
        if let Some(tls) = &c.tls {
            let key = |field: &str| format!("clusters[{index}].tls.{field}");
            if tls.verify && tls.ca.is_none() {
                errors.push(
                    key("ca"),
                    "verify = true needs the CA certificates (PEM) backends' certificates chain to: ringlb has no built-in roots (the system's are often /etc/ssl/certs/ca-certificates.crt)",
                );
            }
            if !tls.verify {
                errors.warn(
                    key("verify"),
                    "false: backends' certificates are not checked, so anyone on the path can pose as them",
                );
            }
            if let Some(name) = &tls.server_name {
                if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                    errors.push(
                        key("server_name"),
                        format!("expected a DNS name or an IP address, got {name:?}"),
                    );
                }
            }
        }
        if self.form == Form::Full {
            if !is_name(&c.name) {
                errors.push(
                    format!("clusters[{index}].name"),
                    format!("{NAME_RULE}, got {:?}", c.name),
                );
            }
            if let Some(j) = earlier(&self.clusters, index, |c| c.name.clone()) {
                errors.push(
                    format!("clusters[{index}].name"),
                    format!("{:?} is already the name of clusters[{j}]", c.name),
                );
            }
        }
        if c.upstream.max_idle_per_backend > 100_000 {
            errors.push(
                keys.of("upstream", "max_idle_per_backend"),
                format!(
                    "must be at most 100000, got {}",
                    c.upstream.max_idle_per_backend
                ),
            );
        }
        let hc = &c.health_check;
        for (key, d) in [
            (keys.of("upstream", "idle_timeout"), c.upstream.idle_timeout),
            (keys.of("health_check", "interval"), hc.interval),
            (keys.of("health_check", "timeout"), hc.timeout),
            (
                keys.of("circuit_breaker", "open_for"),
                c.circuit_breaker.open_for,
            ),
            (
                keys.of("health_check", "slow_start"),
                hc.slow_start.unwrap_or(Duration::from_secs(1)),
            ),
            (
                keys.of("timeouts", "connect"),
                c.timeouts.connect.unwrap_or(Duration::from_secs(1)),
            ),
            (
                keys.of("timeouts", "backend_response"),
                c.timeouts
                    .backend_response
                    .unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            check_duration(errors, &key, d);
        }
        for (key, n) in [
            (
                keys.of("health_check", "unhealthy_threshold"),
                hc.unhealthy_threshold,
            ),
            (
                keys.of("health_check", "healthy_threshold"),
                hc.healthy_threshold,
            ),
        ] {
            if !(1..=100).contains(&n) {
                errors.push(key, format!("must be between 1 and 100, got {n}"));
            }
        }
        if hc.kind == CheckType::Http && !hc.path.starts_with('/') {
            errors.push(
                keys.of("health_check", "path"),
                format!("must start with /, got {:?}", hc.path),
            );
        }
        if hc.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            errors.push(
                keys.of("health_check", "path"),
                "must not contain spaces or control characters",
            );
        }
        if c.upstream.protocol == UpstreamProtocol::H2 {
            if c.upstream.send_proxy.is_some() {
                errors.push(
                    keys.of("upstream", "send_proxy"),
                    "cannot go with upstream.protocol = \"h2\": a PROXY header names one \
                     client, and an HTTP/2 connection carries many clients' requests",
                );
            }
            if hc.kind == CheckType::Http {
                errors.push(
                    keys.of("health_check", "kind"),
                    "\"http\" probes speak HTTP/1.1, which a backend of an \
                     upstream.protocol = \"h2\" cluster may not: use \"grpc\", or \"tcp\" \
                     (the default for h2 clusters)",
                );
            }
            if !(1..=1000).contains(&c.upstream.h2_max_streams) {
                errors.push(
                    keys.of("upstream", "h2_max_streams"),
                    format!(
                        "must be between 1 and 1000, got {}",
                        c.upstream.h2_max_streams
                    ),
                );
            }
        }
        if hc.kind == CheckType::Grpc && c.upstream.protocol != UpstreamProtocol::H2 {
            errors.push(
                keys.of("health_check", "kind"),
                "\"grpc\" checks speak HTTP/2: they need upstream.protocol = \"h2\"",
            );
        }
        if hc.service.bytes().any(|b| b < b' ' || b == 0x7f) {
            errors.push(
                keys.of("health_check", "service"),
                "must not contain control characters",
            );
        }
        if hc.send_proxy && c.upstream.send_proxy.is_none() {
            errors.push(
                keys.of("health_check", "send_proxy"),
                "needs upstream.send_proxy (the version to send)",
            );
        }
        let cb = &c.circuit_breaker;
        if !(1..=1000).contains(&cb.failure_threshold) {
            errors.push(
                keys.of("circuit_breaker", "failure_threshold"),
                format!("must be between 1 and 1000, got {}", cb.failure_threshold),
            );
        }
        if !(1..=100).contains(&cb.half_open_probes) {
            errors.push(
                keys.of("circuit_breaker", "half_open_probes"),
                format!("must be between 1 and 100, got {}", cb.half_open_probes),
            );
        }
        check_balancer(&c.balancer, &keys, errors);
        let r = &c.retry;
        if r.max_retries > 7 {
            errors.push(
                keys.of("retry", "max_retries"),
                format!("must be at most 7, got {}", r.max_retries),
            );
        }
        if r.max_buffered_body > 16 * 1024 * 1024 {
            errors.push(
                keys.of("retry", "max_buffered_body"),
                format!("must be at most 16777216, got {}", r.max_buffered_body),
            );
        }
        if r.budget_percent > 100 {
            errors.push(
                keys.of("retry", "budget_percent"),
                format!("must be at most 100, got {}", r.budget_percent),
            );
        }
        if c.backends.is_empty() {
            let message = match self.form {
                Form::Short => "at least one [[backends]] entry is required",
                Form::Full => "at least one backend is required",
            };
            errors.push(keys.backends(), message);
        }
        for (i, b) in c.backends.iter().enumerate() {
            if b.address.port() == 0 {
                errors.push(
                    keys.backend(i, "address"),
                    "port must be between 1 and 65535",
                );
            }
            if let Some(j) = earlier(&c.backends, i, |b| b.address) {
                errors.push(
                    keys.backend(i, "address"),
                    format!(
                        "{} is already the address of {}",
                        b.address,
                        keys.backend(j, "").trim_end_matches('.')
                    ),
                );
            }
            if !(1..=1000).contains(&b.weight) {
                errors.push(
                    keys.backend(i, "weight"),
                    format!("must be between 1 and 1000, got {}", b.weight),
                );
            }
        }
    }

    /// Backend names are unique across the whole file, so that the admin API's
    /// `/backends/NAME` and the metrics' `backend` label each mean one backend.
    fn check_backend_names(&self, errors: &mut Errors<'_>) {
        let mut seen: Vec<(&str, String)> = Vec::new();
        for (ci, c) in self.clusters.iter().enumerate() {
            let keys = Keys::of_cluster(self.form, ci);
            for (i, b) in c.backends.iter().enumerate() {
                let key = keys.backend(i, "name");
                if !is_name(&b.name) {
                    errors.push(key.clone(), format!("{NAME_RULE}, got {:?}", b.name));
                }
                if let Some((_, first)) = seen.iter().find(|(name, _)| *name == b.name) {
                    errors.push(
                        key,
                        format!(
                            "{:?} is already the name of {}",
                            b.name,
                            first.trim_end_matches(".name")
                        ),
                    );
                } else {
                    seen.push((&b.name, key));
                }
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
            "admin             {}{}\nshards            {shards}\nio                {io}\n\
             max_connections   {}\n\
             timeouts          connect {:?}, header_read {:?}, idle {:?}, backend_response {:?}, shutdown_grace {:?}, tunnel_idle {:?}\n\
             limits            max_header_bytes {}, max_headers {}, max_body_bytes {}\n",
            self.admin.listen,
            if self.admin.token.is_some() {
                " (token required)"
            } else {
                ""
            },
            self.server.max_connections,
            t.connect,
            t.header_read,
            t.idle,
            t.backend_response,
            t.shutdown_grace,
            t.tunnel_idle,
            self.limits.max_header_bytes,
            self.limits.max_headers,
            self.limits
                .max_body_bytes
                .map_or("unlimited".to_string(), |n| n.to_string()),
        );
        out.push_str(&format!("listeners         {}\n", self.listeners.len()));
        for l in &self.listeners {
            out.push_str(&format!(
                "  {:<16}{}  {}{}{}\n",
                l.name,
                l.address,
                l.protocol.as_str(),
                l.cluster
                    .as_ref()
                    .map_or(String::new(), |c| format!(" -> {c}")),
                if l.accept_proxy {
                    format!(
                        " (PROXY header from {})",
                        l.proxy_trusted
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                }
            ));
            if let Some(tls) = &l.tls {
                out.push_str(&format!(
                    "    tls           {} certificate(s), default {}, TLS {}+, alpn {}\n",
                    tls.certificates.len(),
                    tls.default.as_deref().unwrap_or("none"),
                    tls.min_version.as_str(),
                    tls.alpn.join(",")
                ));
            }
        }
        out.push_str(&format!("routes            {}\n", self.routes.len()));
        for r in &self.routes {
            let mut conditions = Vec::new();
            if let Some(host) = &r.host {
                conditions.push(format!("host {host}"));
            }
            match &r.path {
                Some(PathRule::Exact(p)) => conditions.push(format!("path {p}")),
                Some(PathRule::Prefix(p)) => conditions.push(format!("path_prefix {p}")),
                None => {}
            }
            if !r.methods.is_empty() {
                conditions.push(format!("methods {}", r.methods.join(",")));
            }
            for (name, value) in &r.headers {
                conditions.push(format!("header {name}={value}"));
            }
            if conditions.is_empty() {
                conditions.push("everything".into());
            }
            out.push_str(&format!(
                "  {:<16}on {}: {} -> {}{}\n",
                r.name,
                r.listener,
                conditions.join(", "),
                r.cluster,
                if r.has_actions() { " (rewrites)" } else { "" }
            ));
        }
        out.push_str(&format!("clusters          {}\n", self.clusters.len()));
        for c in &self.clusters {
            out.push_str(&format!(
                "  {:<16}{}, {} backend(s){}\n",
                c.name,
                c.balancer.strategy.as_str(),
                c.backends.len(),
                match (c.upstream.protocol, c.upstream.send_proxy) {
                    (UpstreamProtocol::H2, _) => ", speaks HTTP/2 to them",
                    (_, Some(ProxyVersion::V1)) => ", sends PROXY v1",
                    (_, Some(ProxyVersion::V2)) => ", sends PROXY v2",
                    (_, None) => "",
                }
            ));
            for b in &c.backends {
                out.push_str(&format!(
                    "    {:<14}{}  weight {}\n",
                    b.name, b.address, b.weight
                ));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

fn check_duration(errors: &mut Errors<'_>, key: &str, d: Duration) {
    if d.is_zero() {
        errors.push(key, "must be greater than zero");
    } else if d > MAX_DURATION {
        errors.push(key, "must be at most 168h (one week)");
    }
}

fn check_balancer(b: &BalancerConfig, keys: &Keys, errors: &mut Errors<'_>) {
    if !(1..=1000).contains(&b.virtual_nodes) {
        errors.push(
            keys.balancer("virtual_nodes"),
            format!("must be between 1 and 1000, got {}", b.virtual_nodes),
        );
    }
    if !(is_prime(b.table_size) && (7..=1_000_003).contains(&b.table_size)) {
        errors.push(
            keys.balancer("table_size"),
            format!(
                "must be a prime between 7 and 1000003, got {}",
                b.table_size
            ),
        );
    }
    if let Some(c) = b.hash_bounded_load {
        if !(c.is_finite() && c > 1.0 && c <= 100.0) {
            errors.push(
                keys.balancer("hash_bounded_load"),
                format!("must be greater than 1.0 and at most 100, got {c}"),
            );
        }
    }
    if let Some(sticky) = &b.sticky {
        if !is_token(&sticky.cookie) {
            errors.push(
                keys.balancer("sticky.cookie"),
                format!(
                    "expected a cookie name (letters, digits, -_.), got {:?}",
                    sticky.cookie
                ),
            );
        }
        if sticky.ttl > MAX_DURATION {
            errors.push(
                keys.balancer("sticky.ttl"),
                "must be at most 168h (one week)",
            );
        }
        if sticky.secret.as_deref().is_some_and(|s| s.len() < 16) {
            errors.push(
                keys.balancer("sticky.secret"),
                "must be at least 16 characters",
            );
        }
    }
    if b.ewma_decay > MAX_DURATION {
        errors.push(
            keys.balancer("ewma_decay"),
            "must be at most 168h (one week)",
        );
    }
}
