//! `control`: the control thread.
//!
//! Owns every global decision: the backend table (ids by name, changes broadcast to
//! every shard), health and breakers ([`members`]), merged statistics, shutdown and
//! reloads. Talks to shards only through their crossbeam channels: typed commands
//! out, compact events in. Its client API is [`handle`]. Never on the request path;
//! never blocks a shard (commands go through bounded channels with room).

pub mod breaker;
pub mod handle;
pub mod health;
pub mod members;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::admin::AdminServer;
use crate::cluster::backend::Availability;
use crate::control::breaker::BreakerState;
use crate::control::handle::{BackendView, ControlMessage, Report, ShutdownReport};
use crate::control::health::CheckResult;
use crate::control::members::{BackendIds, Members};
use crate::observe::access_log;
use crate::observe::stats::Aggregate;
use crate::shard::{ShardCommand, ShardEvent};
use crate::{log_error, log_info, log_warn};

/// Sends a command, waiting a little for room: a shard empties its queue every
/// 2 ms, so a full queue means the shard is stuck, and the command is dropped with
/// a warning rather than blocking the control thread.
fn send_command(link: &ShardLink, command: ShardCommand) {
    if link
        .commands
        .send_timeout(command, Duration::from_millis(500))
        .is_err()
    {
        log_warn!("a shard's command queue stayed full; a command was dropped");
    }
}

/// The control thread's end of one shard.
pub(crate) struct ShardLink {
    pub(crate) commands: Sender<ShardCommand>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

pub(crate) struct ControlThread {
    pub(crate) shards: Vec<ShardLink>,
    pub(crate) events: Receiver<ShardEvent>,
    pub(crate) messages: Receiver<ControlMessage>,
    pub(crate) ids: BackendIds,
    pub(crate) members: Members,
    pub(crate) health: Receiver<CheckResult>,
    /// The shard that gets the next half-open probes (rotates).
    pub(crate) next_probe_shard: usize,
    /// Traffic figures merged from shard reports.
    pub(crate) aggregate: Aggregate,
    /// The access log writer, stopped after the shards.
    pub(crate) access_writer: Option<access_log::Writer>,
    /// Number of the last on-demand report request.
    pub(crate) report_seq: u64,
    /// For reports.
    pub(crate) io_driver: &'static str,
    pub(crate) strategy: &'static str,
    pub(crate) grace: Duration,
    pub(crate) admin: Option<AdminServer>,
}

impl ControlThread {
    pub(crate) fn run(mut self) -> ShutdownReport {
        loop {
            let wait = self
                .members
                .next_deadline(Instant::now())
                .map_or(Duration::from_secs(3600), |d| {
                    d.saturating_duration_since(Instant::now())
                });
            select! {
                recv(self.messages) -> message => match message {
                    Ok(ControlMessage::Shutdown) | Err(_) => return self.stop(false),
                    Ok(ControlMessage::Abort) => return self.stop(true),
                    Ok(ControlMessage::SetBackends(backends)) => {
                        let specs = self.ids.specs(&backends);
                        log_info!("backend table changed: {} backend(s)", specs.len());
                        self.members.update(specs, Instant::now());
                        self.broadcast(ShardCommand::SetBackends(self.members.specs()));
                        // Half-open probes are per shard: hand them out again.
                        for index in 0..self.members.list.len() {
                            if self.members.list[index].breaker.state() == BreakerState::HalfOpen {
                                self.publish(index);
                            }
                        }
                    }
                    Ok(ControlMessage::Stats(reply)) => {
                        self.refresh(Duration::from_secs(1));
                        let _ = reply.send(self.aggregate.counters(None));
                    }
                    Ok(ControlMessage::Report { shard, wait, reply }) => {
                        self.refresh(wait);
                        let _ = reply.send(self.report(shard));
                    }
                    Ok(ControlMessage::Backends(reply)) => {
                        let _ = reply.send(self.members.statuses());
                    }
                    Ok(ControlMessage::SetAdminState { name, state, reply }) => {
                        let index = self.members.list.iter().position(|m| m.spec.name == name);
                        if let Some(index) = index {
                            self.members.list[index].admin = state;
                            log_info!("backend {name} {} by the admin API", state.as_str());
                            self.publish(index);
                        }
                        let _ = reply.send(index.map(|i| self.members.list[i].status()));
                    }
                },
                recv(self.health) -> result => {
                    if let Ok(result) = result {
                        if let Some(index) = self.members.record_check(result, Instant::now()) {
                            self.publish(index);
                        }
                    }
                },
                recv(self.events) -> event => match event {
                    Ok(ShardEvent::Outcome { id, ok }) => {
                        if let Some(index) = self.members.record_outcome(id, ok, Instant::now()) {
                            self.publish(index);
                        }
                    }
                    Ok(ShardEvent::Report(report)) => {
                        self.aggregate.add(*report, Instant::now());
                    }
                    Ok(ShardEvent::Stopped { shard, .. }) => {
                        log_error!("shard {shard} stopped unexpectedly");
                    }
                    _ => {}
                },
                default(wait) => {}
            }
            for index in self.members.poll_breakers(Instant::now()) {
                self.publish(index);
            }
            self.publish_weights();
        }
    }

    /// Sends every backend whose effective weight changed (slow start) to shards.
    fn publish_weights(&mut self) {
        let now = Instant::now();
        for index in 0..self.members.list.len() {
            let weight = self.members.weight_now(index, now);
            let member = &mut self.members.list[index];
            if weight != member.effective_weight {
                member.effective_weight = weight;
                let id = member.spec.id;
                self.broadcast(ShardCommand::SetWeight { id, weight });
            }
        }
    }

    /// Tells every shard whether it may pick member `index` now. A half-open
    /// breaker's probes go to one shard (rotating); the others keep it out.
    fn publish(&mut self, index: usize) {
        // A backend coming back under slow start gets its low weight first.
        self.publish_weights();
        let member = &self.members.list[index];
        let available = member.available();
        let id = member.spec.id;
        let probing = member.health.is_up() && member.breaker.state() == BreakerState::HalfOpen;
        let probe_shard = self.next_probe_shard % self.shards.len().max(1);
        if probing {
            self.next_probe_shard += 1;
        }
        for (i, link) in self.shards.iter().enumerate() {
            let availability = if available {
                Availability::Available
            } else if probing && i == probe_shard {
                Availability::Probing(self.members.breaker.half_open_probes)
            } else {
                Availability::Unavailable
            };
            send_command(link, ShardCommand::SetAvailability { id, availability });
        }
    }

    fn broadcast(&self, command: ShardCommand) {
        for link in &self.shards {
            send_command(link, command.clone());
        }
    }

    /// Asks every shard for a report and merges the answers, waiting at most `wait`.
    fn refresh(&mut self, wait: Duration) {
        self.report_seq += 1;
        let seq = self.report_seq;
        self.broadcast(ShardCommand::ReportStats(seq));
        let mut answered = vec![false; self.shards.len()];
        let mut changed = Vec::new();
        let deadline = Instant::now() + wait;
        while answered.iter().any(|a| !a) {
            match self.events.recv_deadline(deadline) {
                Ok(ShardEvent::Report(report)) => {
                    if report.answer_to == seq {
                        if let Some(a) = answered.get_mut(report.shard) {
                            *a = true;
                        }
                    }
                    self.aggregate.add(*report, Instant::now());
                }
                // Outcomes keep flowing meanwhile; none may be lost.
                Ok(ShardEvent::Outcome { id, ok }) => {
                    changed.extend(self.members.record_outcome(id, ok, Instant::now()));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        for index in changed {
            self.publish(index);
        }
    }

    fn report(&self, shard: Option<usize>) -> Option<Report> {
        if shard.is_some_and(|s| s >= self.shards.len()) {
            return None;
        }
        let now = Instant::now();
        let agg = &self.aggregate;
        let latency = match shard {
            Some(s) => agg.shard_latency[s].summaries(now),
            None => agg.latency.summaries(now),
        };
        let backends = self
            .members
            .list
            .iter()
            .map(|m| BackendView {
                status: m.status(),
                counters: agg.backend_counters(&m.spec.name, shard),
                latency: match shard {
                    Some(_) => None,
                    None => Some(
                        agg.backend_latency
                            .get(&m.spec.name)
                            .map_or_else(Default::default, |l| l.summaries(now)),
                    ),
                },
            })
            .collect();
        Some(Report {
            uptime: now.saturating_duration_since(agg.started),
            io_driver: self.io_driver,
            shards: self.shards.len(),
            strategy: self.strategy,
            shard,
            window: agg.latency.window.length(),
            totals: agg.counters(shard),
            latency,
            backends,
        })
    }

    /// Tells every shard to stop and waits for them (grace period plus a margin).
    fn stop(&mut self, abort: bool) -> ShutdownReport {
        log_info!(
            "{}",
            if abort {
                "stopping now"
            } else {
                "shutting down gracefully"
            }
        );
        self.broadcast(if abort {
            ShardCommand::Abort
        } else {
            ShardCommand::Shutdown
        });
        let mut unfinished = 0;
        let mut stopped = vec![false; self.shards.len()];
        let deadline = Instant::now() + self.grace + Duration::from_secs(2);
        while stopped.iter().any(|s| !s) {
            select! {
                recv(self.events) -> event => match event {
                    Ok(ShardEvent::Stopped { shard, unfinished: n }) => {
                        if let Some(flag) = stopped.get_mut(shard) {
                            *flag = true;
                        }
                        unfinished += n;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                recv(self.messages) -> message => {
                    if let Ok(ControlMessage::Abort) = message {
                        self.broadcast(ShardCommand::Abort);
                    }
                },
                default(deadline.saturating_duration_since(Instant::now())) => break,
            }
        }
        for (link, stopped) in self.shards.iter_mut().zip(&stopped) {
            match link.thread.take() {
                // A shard that reported is about to return: joining is quick.
                Some(thread) if *stopped => {
                    let _ = thread.join();
                }
                Some(_) => log_error!("a shard did not stop in time; leaving it"),
                None => {}
            }
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        if let Some(writer) = self.access_writer.take() {
            writer.stop();
        }
        if unfinished > 0 {
            log_warn!("{unfinished} connection(s) were cut at the end of the grace period");
        }
        log_info!("stopped");
        ShutdownReport {
            unfinished_connections: unfinished,
        }
    }
}
