//! `control::members`: every cluster's backends and their global state, owned by
//! the control thread.
//!
//! Owns the stable ids of backends, each backend's health (active checks), breaker
//! (passive health), operator state and slow-start weight, and derives from them
//! what shards may do with it. Adopts a new configuration keeping the state of every
//! backend whose cluster, name and address stay; applies the runtime API's changes.
//! Sans-io apart from starting checker threads; never on the request path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::cluster::backend::{Availability, BackendId};
use crate::cluster::{sticky, BackendSpec, ClusterSettings};
use crate::config::{BackendConfig, CheckType, ClusterConfig, Config, HealthCheckConfig};
use crate::control::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::control::handle::{AdminState, ApiError, BackendStatus, ClusterStatus};
use crate::control::health::{
    self, CheckKind, CheckResult, Checker, Health, Probe, ProbeTls, Transition,
};
use crate::shard::ClusterPlan;
use crate::tls::material::{ClusterMaterial, TlsMaterial};
use crate::{log_error, log_info, log_warn};

/// How often slow start raises the weights of ramping backends.
const SLOW_START_STEP: Duration = Duration::from_millis(100);

/// Where one member is: (cluster index, member index).
pub(crate) type At = (usize, usize);

/// Stable ids: the same cluster, name and address keep their id across reloads;
/// anything else is a new backend.
#[derive(Debug, Default)]
struct BackendIds {
    by_identity: HashMap<(String, String, SocketAddr), BackendId>,
    next: BackendId,
}

impl BackendIds {
    fn id(&mut self, cluster: &str, name: &str, address: SocketAddr) -> BackendId {
        let key = (cluster.to_string(), name.to_string(), address);
        *self.by_identity.entry(key).or_insert_with(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// One backend's global state.
pub(crate) struct Member {
    pub(crate) spec: BackendSpec,
    pub(crate) health: Health,
    pub(crate) breaker: Breaker,
    /// Drained or disabled by an operator.
    pub(crate) admin: AdminState,
    /// The weight last sent to shards (below `spec.weight` during slow start).
    pub(crate) effective_weight: u32,
    /// Its checker thread; `None` when checks are off.
    _checker: Option<Checker>,
}

impl Member {
    /// What shards may do with it (a half-open breaker's probes are handed to
    /// one shard by the control loop).
    pub(crate) fn availability(&self) -> Availability {
        let usable = self.health.is_up() && self.breaker.state() == BreakerState::Closed;
        match self.admin {
            AdminState::Enabled if usable => Availability::Available,
            AdminState::Draining if usable => Availability::Draining,
            _ => Availability::Unavailable,
        }
    }

    /// Whether a half-open breaker may let probe requests through to it.
    pub(crate) fn probing(&self) -> bool {
        self.health.is_up()
            && self.breaker.state() == BreakerState::HalfOpen
            && self.admin == AdminState::Enabled
    }

    fn status(&self, cluster: &str) -> BackendStatus {
        BackendStatus {
            name: self.spec.name.clone(),
            cluster: cluster.to_string(),
            address: self.spec.address,
            weight: self.spec.weight,
            healthy: self.health.is_up(),
            breaker: self.breaker.state(),
            state: self.admin,
            effective_weight: self.effective_weight,
        }
    }
}

/// One cluster's members and the settings that decide about them.
pub(crate) struct Members {
    /// The cluster's name.
    pub(crate) name: String,
    /// What shards are told about it.
    pub(crate) settings: ClusterSettings,
    /// The backends, in order.
    pub(crate) list: Vec<Member>,
    /// Its health checks.
    check: HealthCheckConfig,
    /// Its breakers' settings.
    pub(crate) breaker: BreakerSettings,
    /// Its TLS to backends, which health checks speak too.
    tls: Option<Arc<ClusterMaterial>>,
}

impl Members {
    fn spawn_checker(&self, spec: &BackendSpec, results: &Sender<CheckResult>) -> Option<Checker> {
        let kind = match self.check.kind {
            CheckType::None => return None,
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http => CheckKind::Http {
                path: self.check.path.clone(),
                expect: self.check.expect_status.clone(),
            },
            CheckType::Grpc => CheckKind::Grpc {
                service: self.check.service.clone(),
            },
        };
        let alpn: &[u8] = match kind {
            CheckKind::Grpc { .. } => b"h2",
            _ => b"http/1.1",
        };
        let tls = match &self.tls {
            None => None,
            Some(material) => match material.client_config(alpn) {
                Ok(config) => Some(ProbeTls {
                    config,
                    server_name: material.server_name.clone(),
                }),
                Err(e) => {
                    log_error!("backend {}: cannot start health checks: {e}", spec.name);
                    return None;
                }
            },
        };
        let probe = Probe {
            kind,
            send_proxy: self.settings.send_proxy.filter(|_| self.check.send_proxy),
            tls,
        };
        match health::spawn_checker(
            spec.id,
            &spec.name,
            spec.address,
            probe,
            self.check.interval,
            self.check.timeout,
            results.clone(),
        ) {
            Ok(checker) => Some(checker),
            Err(e) => {
                log_error!("backend {}: cannot start health checks: {e}", spec.name);
                None
            }
        }
    }

    /// A member that starts as `health_check.start` says.
    fn new_member(&self, spec: BackendSpec, results: &Sender<CheckResult>, now: Instant) -> Member {
        let up = self.check.start_up || self.check.kind == CheckType::None;
        let checker = self.spawn_checker(&spec, results);
        let weight = spec.weight;
        Member {
            spec,
            health: Health::new(up, now),
            breaker: Breaker::default(),
            admin: AdminState::Enabled,
            effective_weight: weight,
            _checker: checker,
        }
    }

    /// The weight member `index` should be selected by `now`.
    fn weight_now(&self, index: usize, now: Instant) -> u32 {
        let m = &self.list[index];
        let per_mille = m.health.weight_per_mille(now, self.check.slow_start);
        (u64::from(m.spec.weight) * u64::from(per_mille) / 1000).max(1) as u32
    }

    fn plan(&self) -> ClusterPlan {
        ClusterPlan {
            name: self.name.clone(),
            settings: self.settings.clone(),
            backends: self
                .list
                .iter()
                .map(|m| BackendSpec {
                    availability: m.availability(),
                    ..m.spec.clone()
                })
                .collect(),
            tls: None,
        }
    }

    fn status(&self) -> ClusterStatus {
        ClusterStatus {
            name: self.name.clone(),
            strategy: self.settings.balancer.strategy.as_str(),
            backends: self.list.iter().map(|m| m.status(&self.name)).collect(),
        }
    }
}

/// Every cluster's members; every decision about backends is taken here.
pub(crate) struct Membership {
    /// The clusters, in configuration order.
    pub(crate) clusters: Vec<Members>,
    ids: BackendIds,
    /// Where checker threads send their results.
    results: Sender<CheckResult>,
    /// Sticky keys of clusters without a secret: random, but kept across reloads
    /// so that clients stay with their backends.
    random_sticky_keys: HashMap<String, (u64, u64)>,
}

impl Membership {
    /// No clusters yet: `apply` gives it some.
    pub(crate) fn new(results: Sender<CheckResult>) -> Self {
        Membership {
            clusters: Vec::new(),
            ids: BackendIds::default(),
            results,
            random_sticky_keys: HashMap::new(),
        }
    }

    /// Adopts `config`'s clusters. A backend whose cluster, name and address stay
    /// keeps its health, breaker, operator state and checker (restarted if the
    /// cluster's health check changed); new ones start as `health_check.start`
    /// says; the others are dropped (their checkers stop).
    pub(crate) fn apply(&mut self, config: &Config, tls: &TlsMaterial, now: Instant) {
        let mut old = std::mem::take(&mut self.clusters);
        for c in &config.clusters {
            let previous = old
                .iter()
                .position(|o| o.name == c.name)
                .map(|i| old.swap_remove(i));
            let members = self.adopt(c, config, tls.cluster(&c.name), previous, now);
            self.clusters.push(members);
        }
    }

    fn adopt(
        &mut self,
        c: &ClusterConfig,
        config: &Config,
        tls: Option<&Arc<ClusterMaterial>>,
        previous: Option<Members>,
        now: Instant,
    ) -> Members {
        let sticky_key = c.balancer.sticky.as_ref().map(|s| match &s.secret {
            Some(secret) => sticky::key_from_secret(secret),
            None => *self
                .random_sticky_keys
                .entry(c.name.clone())
                .or_insert_with(sticky::random_key),
        });
        let check_changed = previous.as_ref().is_some_and(|p| {
            p.check != c.health_check
                || p.settings.send_proxy != c.upstream.send_proxy
                // New certificates or a new CA (every reload reads them again).
                || match (&p.tls, tls) {
                    (None, None) => false,
                    (Some(a), Some(b)) => !a.same_as(b),
                    _ => true,
                }
        });
        let mut old_list = previous.map(|p| p.list).unwrap_or_default();
        let mut members = Members {
            name: c.name.clone(),
            settings: ClusterSettings::new(c, &config.timeouts, sticky_key),
            list: Vec::with_capacity(c.backends.len()),
            check: c.health_check.clone(),
            breaker: BreakerSettings {
                failure_threshold: c.circuit_breaker.failure_threshold,
                open_for: c.circuit_breaker.open_for,
                half_open_probes: c.circuit_breaker.half_open_probes,
            },
            tls: tls.cloned(),
        };
        for b in &c.backends {
            let spec = BackendSpec {
                id: self.ids.id(&c.name, &b.name, b.address),
                name: b.name.clone(),
                address: b.address,
                weight: b.weight,
                availability: Availability::Available,
            };
            let member = match old_list.iter().position(|m| m.spec.id == spec.id) {
                Some(i) => {
                    let mut m = old_list.swap_remove(i);
                    m.spec = spec;
                    // Shards build a changed backend at its configured weight.
                    m.effective_weight = m.spec.weight;
                    if check_changed {
                        m._checker = members.spawn_checker(&m.spec, &self.results);
                        if members.check.kind == CheckType::None {
                            // Nothing will check it any more: it is up, as a new
                            // backend would be.
                            m.health = Health::new(true, now);
                        }
                    }
                    if !c.circuit_breaker.enabled {
                        // No outcome will be reported to move the breaker again.
                        m.breaker = Breaker::default();
                    }
                    m
                }
                None => members.new_member(spec, &self.results, now),
            };
            members.list.push(member);
        }
        members
    }

    /// The plans of every cluster for shards.
    pub(crate) fn plans(&self) -> Vec<ClusterPlan> {
        self.clusters.iter().map(Members::plan).collect()
    }

    /// Every cluster's status.
    pub(crate) fn clusters(&self) -> Vec<ClusterStatus> {
        self.clusters.iter().map(Members::status).collect()
    }

    /// Every backend's status, cluster by cluster.
    pub(crate) fn statuses(&self) -> Vec<BackendStatus> {
        self.clusters
            .iter()
            .flat_map(|c| c.list.iter().map(|m| m.status(&c.name)))
            .collect()
    }

    /// The member at `at`.
    pub(crate) fn member(&self, at: At) -> &Member {
        &self.clusters[at.0].list[at.1]
    }

    /// One member's status.
    pub(crate) fn status(&self, at: At) -> BackendStatus {
        self.member(at).status(&self.clusters[at.0].name)
    }

    /// Every member's position.
    pub(crate) fn all(&self) -> Vec<At> {
        self.clusters
            .iter()
            .enumerate()
            .flat_map(|(c, m)| (0..m.list.len()).map(move |i| (c, i)))
            .collect()
    }

    fn find(&self, pick: impl Fn(&Member) -> bool) -> Option<At> {
        self.clusters
            .iter()
            .enumerate()
            .find_map(|(c, members)| members.list.iter().position(&pick).map(|i| (c, i)))
    }

    /// The member named `name`.
    pub(crate) fn named(&self, name: &str) -> Option<At> {
        self.find(|m| m.spec.name == name)
    }

    /// Sets a member's operator state.
    pub(crate) fn set_admin_state(&mut self, at: At, state: AdminState) {
        self.clusters[at.0].list[at.1].admin = state;
        log_info!(
            "backend {} {} by the admin API",
            self.member(at).spec.name,
            state.as_str()
        );
    }

    /// Adds a backend to a cluster (the runtime API).
    pub(crate) fn add_backend(
        &mut self,
        cluster: &str,
        backend: BackendConfig,
        now: Instant,
    ) -> Result<At, ApiError> {
        let c = self
            .clusters
            .iter()
            .position(|m| m.name == cluster)
            .ok_or_else(|| ApiError::NoCluster(cluster.to_string()))?;
        check_backend(&backend)?;
        if let Some(at) = self.named(&backend.name) {
            return Err(ApiError::Conflict(format!(
                "backend {:?} already exists in cluster {:?}",
                backend.name, self.clusters[at.0].name
            )));
        }
        if let Some(m) = self.clusters[c]
            .list
            .iter()
            .find(|m| m.spec.address == backend.address)
        {
            return Err(ApiError::Conflict(format!(
                "{} is already the address of backend {:?} in this cluster",
                backend.address, m.spec.name
            )));
        }
        let spec = BackendSpec {
            id: self.ids.id(cluster, &backend.name, backend.address),
            name: backend.name,
            address: backend.address,
            weight: backend.weight,
            availability: Availability::Available,
        };
        let member = self.clusters[c].new_member(spec, &self.results, now);
        log_info!(
            "backend {} ({}) added to cluster {cluster} by the admin API",
            member.spec.name,
            member.spec.address
        );
        self.clusters[c].list.push(member);
        Ok((c, self.clusters[c].list.len() - 1))
    }

    /// Removes a backend (the runtime API); returns its last status.
    pub(crate) fn remove_backend(&mut self, name: &str) -> Result<BackendStatus, ApiError> {
        let at = self
            .named(name)
            .ok_or_else(|| ApiError::NoBackend(name.to_string()))?;
        let status = self.status(at);
        self.clusters[at.0].list.remove(at.1);
        log_info!(
            "backend {name} removed from cluster {} by the admin API",
            status.cluster
        );
        Ok(status)
    }

    /// Sets a backend's weight (the runtime API).
    pub(crate) fn set_weight(&mut self, at: At, weight: u32) -> Result<(), ApiError> {
        if !(1..=1000).contains(&weight) {
            return Err(ApiError::Invalid(format!(
                "weight must be between 1 and 1000, got {weight}"
            )));
        }
        let m = &mut self.clusters[at.0].list[at.1];
        if m.spec.weight != weight {
            m.spec.weight = weight;
            m.effective_weight = weight;
            log_info!("backend {} weight {weight} by the admin API", m.spec.name);
        }
        Ok(())
    }

    /// Applies one check result; returns the member whose availability changed.
    pub(crate) fn record_check(&mut self, result: CheckResult, now: Instant) -> Option<At> {
        let at = self.find(|m| m.spec.id == result.id && m.spec.address == result.address)?;
        let members = &mut self.clusters[at.0];
        let check = &members.check;
        let member = &mut members.list[at.1];
        let transition = member.health.record(
            result.outcome.is_ok(),
            now,
            check.healthy_threshold,
            check.unhealthy_threshold,
        )?;
        let name = &member.spec.name;
        match (transition, &result.outcome) {
            (Transition::WentDown, Err(why)) => log_warn!(
                "backend {name} down: {why} ({n}/{n})",
                n = check.unhealthy_threshold
            ),
            _ => log_info!("backend {name} up ({n}/{n})", n = check.healthy_threshold),
        }
        Some(at)
    }

    /// Applies one request outcome to a breaker; returns the member whose
    /// availability changed.
    pub(crate) fn record_outcome(&mut self, id: BackendId, ok: bool, now: Instant) -> Option<At> {
        let at = self.find(|m| m.spec.id == id)?;
        let members = &mut self.clusters[at.0];
        let state = members.list[at.1]
            .breaker
            .record(ok, now, &members.breaker)?;
        self.log_breaker(at, state);
        Some(at)
    }

    /// Moves open breakers whose time is up to half-open; returns those members.
    /// Runs after every event the control thread handles: allocates only when a
    /// breaker moved.
    pub(crate) fn poll_breakers(&mut self, now: Instant) -> Vec<At> {
        let mut changed = Vec::new();
        for c in 0..self.clusters.len() {
            for i in 0..self.clusters[c].list.len() {
                let members = &mut self.clusters[c];
                if let Some(state) = members.list[i].breaker.poll(now, &members.breaker) {
                    self.log_breaker((c, i), state);
                    changed.push((c, i));
                }
            }
        }
        changed
    }

    /// Takes every member's weight for `now` (slow start); returns the ones that
    /// changed, with their new weight. Runs after every event the control thread
    /// handles: allocates only when a weight moved.
    pub(crate) fn update_weights(&mut self, now: Instant) -> Vec<(BackendId, u32)> {
        let mut changed = Vec::new();
        for members in &mut self.clusters {
            for i in 0..members.list.len() {
                let weight = members.weight_now(i, now);
                let member = &mut members.list[i];
                if weight != member.effective_weight {
                    member.effective_weight = weight;
                    changed.push((member.spec.id, weight));
                }
            }
        }
        changed
    }

    fn log_breaker(&self, at: At, state: BreakerState) {
        let settings = &self.clusters[at.0].breaker;
        let name = &self.member(at).spec.name;
        match state {
            BreakerState::Open => log_warn!(
                "backend {name} breaker open for {:?} after {} consecutive failures",
                settings.open_for,
                settings.failure_threshold
            ),
            BreakerState::HalfOpen => log_info!(
                "backend {name} breaker half-open: letting {} probe request(s) through",
                settings.half_open_probes
            ),
            BreakerState::Closed => log_info!("backend {name} breaker closed"),
        }
    }

    /// The earliest breaker deadline, or the next slow-start step.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let members = || self.clusters.iter().flat_map(|c| c.list.iter());
        let breakers = members().filter_map(|m| m.breaker.deadline()).min();
        let ramping = self.clusters.iter().any(|c| {
            c.list
                .iter()
                .any(|m| m.health.ramping(now, c.check.slow_start))
        });
        let ramp_step = ramping.then(|| now + SLOW_START_STEP);
        breakers.into_iter().chain(ramp_step).min()
    }
}

/// The runtime API's rules for a new backend (a file's go through `config`).
fn check_backend(b: &BackendConfig) -> Result<(), ApiError> {
    let valid_name = !b.name.is_empty()
        && b.name.len() <= 64
        && b.name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c));
    if !valid_name {
        return Err(ApiError::Invalid(format!(
            "name: expected 1-64 characters of A-Z a-z 0-9 _ . -, got {:?}",
            b.name
        )));
    }
    if b.address.port() == 0 {
        return Err(ApiError::Invalid(
            "address: port must be between 1 and 65535".into(),
        ));
    }
    if !(1..=1000).contains(&b.weight) {
        return Err(ApiError::Invalid(format!(
            "weight: must be between 1 and 1000, got {}",
            b.weight
        )));
    }
    Ok(())
}
