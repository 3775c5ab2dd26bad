//! `cluster`: a named group of backends and how one shard picks among them.
//!
//! Owns one shard's `Cluster`: its settings, its backends ([`backend`]) in a
//! selection strategy ([`balancer`], with least-conn's winner tree in
//! [`load_index`] and sticky-session tokens in [`sticky`]), its retry budget and
//! its counters. Called by the proxy on every request attempt and by the shard
//! when the control thread changes a table. Never blocks, never touches another
//! shard, and knows nothing of HTTP framing.

pub mod backend;
pub mod balancer;
pub mod load_index;
pub mod sticky;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BalancerConfig, ClusterConfig, ProxyVersion, Timeouts, UpstreamProtocol};
use crate::observe::stats::ClusterStats;
use crate::tls::material::ClusterMaterial;
use crate::upstream::UpstreamTls;
use backend::{Availability, Backend, BackendId};
use balancer::Balancer;

/// A backend as the control thread describes it to shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Stable identity, assigned by the control thread: the same cluster, name and
    /// address keep the same id across reloads.
    pub id: BackendId,
    /// The configured name.
    pub name: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative share of traffic.
    pub weight: u32,
    /// Whether shards may pick it (health, breaker and operator state).
    pub availability: Availability,
}

/// What a shard needs to know about one cluster, derived from its configuration
/// (and the global timeouts it does not override).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// Strategy and its options, and sticky sessions.
    pub balancer: BalancerConfig,
    /// The key sticky tokens are made with (the same on every shard, and kept
    /// across reloads while the secret is).
    pub sticky_key: Option<(u64, u64)>,
    /// `timeouts.connect`.
    pub connect_timeout: Duration,
    /// `timeouts.backend_response`.
    pub backend_response_timeout: Duration,
    /// `retry.max_retries`.
    pub max_retries: u32,
    /// `retry.max_buffered_body`.
    pub max_buffered_body: usize,
    /// `retry.budget_percent`, as tokens earned per request.
    pub retry_tokens_per_request: f64,
    /// `circuit_breaker.enabled`: whether outcomes are reported.
    pub report_outcomes: bool,
    /// `circuit_breaker.count_5xx`.
    pub count_5xx: bool,
    /// `upstream.max_idle_per_backend`.
    pub max_idle_per_backend: usize,
    /// `upstream.idle_timeout`.
    pub upstream_idle_timeout: Duration,
    /// `upstream.send_proxy`.
    pub send_proxy: Option<ProxyVersion>,
    /// `upstream.protocol`.
    pub upstream_protocol: UpstreamProtocol,
    /// `upstream.h2_max_streams`.
    pub h2_max_streams: usize,
}

impl ClusterSettings {
    /// The settings of `config`, with `timeouts` for what it does not override.
    pub fn new(
        config: &ClusterConfig,
        timeouts: &Timeouts,
        sticky_key: Option<(u64, u64)>,
    ) -> Self {
        ClusterSettings {
            balancer: config.balancer.clone(),
            sticky_key,
            connect_timeout: config.timeouts.connect.unwrap_or(timeouts.connect),
            backend_response_timeout: config
                .timeouts
                .backend_response
                .unwrap_or(timeouts.backend_response),
            max_retries: config.retry.max_retries,
            max_buffered_body: config.retry.max_buffered_body,
            retry_tokens_per_request: f64::from(config.retry.budget_percent) / 100.0,
            report_outcomes: config.circuit_breaker.enabled,
            count_5xx: config.circuit_breaker.count_5xx,
            max_idle_per_backend: config.upstream.max_idle_per_backend,
            upstream_idle_timeout: config.upstream.idle_timeout,
            send_proxy: config.upstream.send_proxy,
            upstream_protocol: config.upstream.protocol,
            h2_max_streams: config.upstream.h2_max_streams,
        }
    }
}

/// Retries a cluster starts with (and the least it may save up), so that a quiet
/// cluster can retry, and a burst of failures before a breaker opens is covered.
pub const RETRY_TOKENS_RESERVE: f64 = 50.0;

/// One shard's view of one cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The configured name, for logs, statistics and the access log.
    pub name: Rc<str>,
    /// Its settings; a reload that changes them builds a new `Cluster`.
    pub settings: ClusterSettings,
    /// The backends and the strategy that picks among them.
    pub balancer: RefCell<Balancer>,
    /// Retry budget: each request earns `retry_tokens_per_request`, each retry on
    /// another backend spends one, so retries add at most that share of requests.
    retry_tokens: Cell<f64>,
    /// Its counters, kept across reloads while its name is.
    pub stats: Rc<ClusterStats>,
    /// Its TLS to backends, replaced by a reload that reads new files.
    tls: RefCell<Option<Rc<UpstreamTls>>>,
}

impl Cluster {
    /// A cluster over `specs`. Backends found in `existing` with the same id and
    /// address are reused (their pools, in-flight counts and latency), so that a
    /// reload keeps what it can. `shard` staggers round-robin starts and seeds
    /// random choices.
    pub fn new(
        name: &str,
        settings: ClusterSettings,
        specs: &[BackendSpec],
        existing: &[Rc<Backend>],
        stats: Rc<ClusterStats>,
        shard: usize,
    ) -> Self {
        let table = build_table(&settings, specs, existing);
        Cluster {
            name: name.into(),
            balancer: RefCell::new(Balancer::with_config(&settings.balancer, table, shard)),
            settings,
            retry_tokens: Cell::new(RETRY_TOKENS_RESERVE),
            stats,
            tls: RefCell::new(None),
        }
    }

    /// Its TLS to backends, if it speaks TLS to them.
    #[inline]
    pub fn tls(&self) -> Option<Rc<UpstreamTls>> {
        self.tls.borrow().clone()
    }

    /// Speaks TLS to its backends with `material` (or not). Changed material (a
    /// new CA, name or client certificate, found when a reload reads the files
    /// again) closes the idle connections made with the old: they must not go
    /// on being trusted.
    pub fn set_tls(&self, material: Option<&Arc<ClusterMaterial>>) {
        let mut tls = self.tls.borrow_mut();
        let h2 = self.settings.upstream_protocol == UpstreamProtocol::H2;
        let same = match (tls.as_deref(), material) {
            (None, None) => true,
            (Some(current), Some(material)) => current.built_from(material, h2),
            _ => false,
        };
        if same {
            return;
        }
        *tls = material.map(|m| Rc::new(UpstreamTls::new(m, h2)));
        for backend in self.backends() {
            backend.pool.clear();
        }
    }

    /// The cluster that replaces this one when a reload changes its settings: the
    /// backends that stay (pools, in-flight counts, latency), its counters and its
    /// retry budget carry over.
    pub fn successor(
        &self,
        settings: ClusterSettings,
        specs: &[BackendSpec],
        shard: usize,
    ) -> Self {
        let next = Cluster::new(
            &self.name,
            settings,
            specs,
            &self.backends(),
            Rc::clone(&self.stats),
            shard,
        );
        next.retry_tokens.set(self.retry_tokens.get());
        *next.tls.borrow_mut() = self.tls();
        next
    }

    /// Replaces the backend table, keeping the backends that stay. A table with the
    /// same backends keeps its strategy's state and only takes the new
    /// availabilities.
    pub fn set_backends(&self, specs: &[BackendSpec]) {
        let mut balancer = self.balancer.borrow_mut();
        let unchanged = balancer.backends().len() == specs.len()
            && balancer
                .backends()
                .iter()
                .zip(specs)
                .all(|(b, s)| b.id == s.id && b.address == s.address && b.weight() == s.weight);
        if unchanged {
            for (b, s) in balancer.backends().iter().zip(specs) {
                if b.availability() != s.availability {
                    b.set_availability(s.availability);
                }
            }
            return;
        }
        let table = build_table(&self.settings, specs, balancer.backends());
        balancer.replace(table);
    }

    /// Its backends now.
    pub fn backends(&self) -> Vec<Rc<Backend>> {
        self.balancer.borrow().backends().to_vec()
    }

    /// The backend named by a sticky cookie, if it may still take its client's
    /// requests (available, or draining) and is not in `tried`.
    pub fn sticky_backend(&self, token: &str, tried: &[BackendId]) -> Option<Rc<Backend>> {
        self.balancer
            .borrow()
            .backends()
            .iter()
            .find(|b| b.has_sticky_token(token) && b.takes_sticky() && !tried.contains(&b.id))
            .cloned()
    }

    /// Earns this request's share of the retry budget.
    pub fn earn_retry_budget(&self) {
        let per_request = self.settings.retry_tokens_per_request;
        let earned = self.retry_tokens.get() + per_request;
        self.retry_tokens
            .set(earned.min(RETRY_TOKENS_RESERVE.max(per_request * 100.0)));
    }

    /// Spends one retry from the budget; false when it is exhausted.
    pub fn spend_retry_budget(&self) -> bool {
        let tokens = self.retry_tokens.get();
        if tokens >= 1.0 {
            self.retry_tokens.set(tokens - 1.0);
            true
        } else {
            false
        }
    }
}

/// Builds a table from specs, keeping the existing `Backend` (pool, in-flight
/// count, latency, counters) for every backend whose id and address are unchanged.
/// Kept backends take their new weight, the cluster's pool settings and sticky
/// token.
fn build_table(
    settings: &ClusterSettings,
    specs: &[BackendSpec],
    existing: &[Rc<Backend>],
) -> Vec<Rc<Backend>> {
    let token = |name: &str| settings.sticky_key.map(|key| sticky::token(key, name));
    specs
        .iter()
        .map(|spec| {
            let kept = existing
                .iter()
                .find(|b| b.id == spec.id && b.address == spec.address);
            let backend = match kept {
                Some(b) => {
                    // Leaves the least-conn index of the table it was in, if any
                    // (the new table's strategy gives it a new leaf if it uses one).
                    b.set_load_leaf(None);
                    if b.weight() != spec.weight {
                        b.set_weight(spec.weight);
                    }
                    b.pool.configure(
                        settings.max_idle_per_backend,
                        settings.upstream_idle_timeout,
                    );
                    Rc::clone(b)
                }
                None => Rc::new(Backend::new(
                    spec.id,
                    spec.name.as_str().into(),
                    spec.address,
                    spec.weight,
                    settings.max_idle_per_backend,
                    settings.upstream_idle_timeout,
                )),
            };
            backend.set_sticky_token(token(&spec.name));
            if backend.availability() != spec.availability {
                backend.set_availability(spec.availability);
            }
            backend
        })
        .collect()
}
