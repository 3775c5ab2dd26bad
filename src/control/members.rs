//! `control::members`: every backend's global state, owned by the control thread.
//!
//! Owns the stable ids of backend names, each backend's health (active checks),
//! breaker (passive health), operator state and slow-start weight, and derives from
//! them whether shards may pick it. Sans-io apart from starting checker threads;
//! never on the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::cluster::backend::BackendId;
use crate::config::{BackendConfig, CheckType, HealthCheckConfig};
use crate::control::breaker::{Breaker, BreakerSettings, BreakerState};
use crate::control::handle::{AdminState, BackendStatus};
use crate::control::health::{self, CheckKind, CheckResult, Checker, Health, Transition};
use crate::shard::BackendSpec;
use crate::{log_error, log_info, log_warn};

/// How often slow start raises the weights of ramping backends.
const SLOW_START_STEP: Duration = Duration::from_millis(100);

/// Stable ids for backend names, kept across table changes.
#[derive(Debug, Default)]
pub(crate) struct BackendIds {
    by_name: HashMap<String, BackendId>,
    next: BackendId,
}

impl BackendIds {
    pub(crate) fn specs(&mut self, backends: &[BackendConfig]) -> Vec<BackendSpec> {
        backends
            .iter()
            .map(|b| {
                let id = *self.by_name.entry(b.name.clone()).or_insert_with(|| {
                    self.next += 1;
                    self.next - 1
                });
                BackendSpec {
                    id,
                    name: b.name.clone(),
                    address: b.address,
                    weight: b.weight,
                    available: true,
                }
            })
            .collect()
    }
}

/// One backend's global state, owned by the control thread.
pub(crate) struct Member {
    pub(crate) spec: BackendSpec,
    pub(crate) health: Health,
    pub(crate) breaker: Breaker,
    /// Drained or disabled by an operator.
    pub(crate) admin: AdminState,
    /// The weight last sent to shards (below `spec.weight` during slow start).
    pub(crate) effective_weight: u32,
    /// Its checker thread; `None` when checks are off.
    pub(crate) _checker: Option<Checker>,
}

impl Member {
    /// Whether shards may pick it normally (half-open is decided per shard).
    pub(crate) fn available(&self) -> bool {
        self.admin == AdminState::Enabled
            && self.health.is_up()
            && self.breaker.state() == BreakerState::Closed
    }

    pub(crate) fn status(&self) -> BackendStatus {
        BackendStatus {
            name: self.spec.name.clone(),
            address: self.spec.address,
            weight: self.spec.weight,
            healthy: self.health.is_up(),
            breaker: self.breaker.state(),
            state: self.admin,
            effective_weight: self.effective_weight,
        }
    }
}

/// The backends, their health and their breakers; every decision about them is
/// taken here.
pub(crate) struct Members {
    pub(crate) list: Vec<Member>,
    pub(crate) check: HealthCheckConfig,
    pub(crate) breaker: BreakerSettings,
    pub(crate) results: Sender<CheckResult>,
}

impl Members {
    /// Adopts a new table: unchanged backends (same name and address) keep their
    /// health, breaker and checker; new ones start as `health_check.start` says.
    pub(crate) fn update(&mut self, specs: Vec<BackendSpec>, now: Instant) {
        let mut old = std::mem::take(&mut self.list);
        for spec in specs {
            let member = match old
                .iter()
                .position(|m| m.spec.id == spec.id && m.spec.address == spec.address)
            {
                Some(i) => {
                    let mut m = old.swap_remove(i);
                    m.spec = spec;
                    // Shards build a changed backend at its configured weight.
                    m.effective_weight = m.spec.weight;
                    m
                }
                None => {
                    let up = self.check.start_up || self.check.kind == CheckType::None;
                    let checker = self.spawn_checker(&spec);
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
            };
            self.list.push(member);
        }
    }

    pub(crate) fn spawn_checker(&self, spec: &BackendSpec) -> Option<Checker> {
        let kind = match self.check.kind {
            CheckType::None => return None,
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http => CheckKind::Http {
                path: self.check.path.clone(),
                expect: self.check.expect_status.clone(),
            },
        };
        match health::spawn_checker(
            spec.id,
            &spec.name,
            spec.address,
            kind,
            self.check.interval,
            self.check.timeout,
            self.results.clone(),
        ) {
            Ok(checker) => Some(checker),
            Err(e) => {
                log_error!("backend {}: cannot start health checks: {e}", spec.name);
                None
            }
        }
    }

    /// The table for shards, each backend's availability derived from its state.
    pub(crate) fn specs(&self) -> Arc<[BackendSpec]> {
        self.list
            .iter()
            .map(|m| BackendSpec {
                available: m.available(),
                ..m.spec.clone()
            })
            .collect()
    }

    /// Applies one check result; returns the member whose availability changed.
    pub(crate) fn record_check(&mut self, result: CheckResult, now: Instant) -> Option<usize> {
        let check = &self.check;
        let index = self
            .list
            .iter()
            .position(|m| m.spec.id == result.id && m.spec.address == result.address)?;
        let member = &mut self.list[index];
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
        Some(index)
    }

    /// Applies one request outcome to a breaker; returns the member whose
    /// availability changed.
    pub(crate) fn record_outcome(
        &mut self,
        id: BackendId,
        ok: bool,
        now: Instant,
    ) -> Option<usize> {
        let index = self.list.iter().position(|m| m.spec.id == id)?;
        let member = &mut self.list[index];
        let state = member.breaker.record(ok, now, &self.breaker)?;
        self.log_breaker(index, state);
        Some(index)
    }

    /// Moves open breakers whose time is up to half-open; returns those members.
    pub(crate) fn poll_breakers(&mut self, now: Instant) -> Vec<usize> {
        let mut changed = Vec::new();
        for index in 0..self.list.len() {
            if let Some(state) = self.list[index].breaker.poll(now, &self.breaker) {
                self.log_breaker(index, state);
                changed.push(index);
            }
        }
        changed
    }

    pub(crate) fn log_breaker(&self, index: usize, state: BreakerState) {
        let name = &self.list[index].spec.name;
        match state {
            BreakerState::Open => log_warn!(
                "backend {name} breaker open for {:?} after {} consecutive failures",
                self.breaker.open_for,
                self.breaker.failure_threshold
            ),
            BreakerState::HalfOpen => log_info!(
                "backend {name} breaker half-open: letting {} probe request(s) through",
                self.breaker.half_open_probes
            ),
            BreakerState::Closed => log_info!("backend {name} breaker closed"),
        }
    }

    /// The earliest breaker deadline, or the next slow-start step.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let breakers = self.list.iter().filter_map(|m| m.breaker.deadline()).min();
        let ramping = self
            .list
            .iter()
            .any(|m| m.health.ramping(now, self.check.slow_start));
        let ramp_step = ramping.then(|| now + SLOW_START_STEP);
        breakers.into_iter().chain(ramp_step).min()
    }

    /// The weight member `index` should be selected by `now`.
    pub(crate) fn weight_now(&self, index: usize, now: Instant) -> u32 {
        let m = &self.list[index];
        let per_mille = m.health.weight_per_mille(now, self.check.slow_start);
        (u64::from(m.spec.weight) * u64::from(per_mille) / 1000).max(1) as u32
    }

    pub(crate) fn statuses(&self) -> Vec<BackendStatus> {
        self.list.iter().map(Member::status).collect()
    }
}
