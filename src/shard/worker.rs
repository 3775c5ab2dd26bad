//! `shard::worker`: a shard's thread from start to stop.
//!
//! Owns the thread itself (pinning, runtime), the shard's main task (first
//! configuration, then waiting for the drain), the accept loop of each listener
//! (started and stopped as configurations come), and the task that applies the
//! control thread's commands every `COMMAND_POLL` and sends reports. Shares nothing
//! with other shards.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::listener::accept_loop;
use crate::log_warn;
use crate::shard::runtime::{run_on, Driver, ShardError};
use crate::shard::{Applied, Shard, ShardCommand, ShardEvent, ShardPlan, COMMAND_POLL};

/// Everything a shard thread starts with.
pub struct ShardStart {
    /// Index of the shard.
    pub index: usize,
    /// Core to pin to, if pinning is possible.
    pub core: Option<core_affinity::CoreId>,
    /// The io driver.
    pub driver: Driver,
    /// The first configuration.
    pub plan: Arc<ShardPlan>,
    /// This shard's own SO_REUSEPORT socket for each listener, already bound.
    pub sockets: Vec<(String, std::net::TcpListener)>,
    /// Commands from the control thread.
    pub commands: Receiver<ShardCommand>,
    /// Events to the control thread.
    pub events: Sender<ShardEvent>,
}

/// Spawns a shard thread.
pub fn spawn(start: ShardStart) -> Result<JoinHandle<()>, ShardError> {
    std::thread::Builder::new()
        .name(format!("ringlb-shard-{}", start.index))
        .spawn(move || {
            if let Some(core) = start.core {
                if !core_affinity::set_for_current(core) {
                    log_warn!("shard {}: could not pin to core {}", start.index, core.id);
                }
            }
            let index = start.index;
            let events = start.events.clone();
            if let Err(e) = run_on(start.driver, shard_main(start)) {
                crate::log_error!("shard {index}: runtime failed: {e}");
                let _ = events.send(ShardEvent::Stopped {
                    shard: index,
                    unfinished: 0,
                });
            }
        })
        .map_err(ShardError::Spawn)
}

async fn shard_main(start: ShardStart) {
    let ShardStart {
        index,
        plan,
        sockets,
        commands,
        events,
        ..
    } = start;
    let shard = Rc::new(Shard::new(index, plan.settings.clone(), events.clone()));
    let applied = shard.configure(&plan, sockets);
    start_accepting(&shard, applied);
    let aborted = Rc::new(Cell::new(false));
    monoio::spawn(poll_commands(
        Rc::clone(&shard),
        commands,
        events.clone(),
        Rc::clone(&aborted),
    ));
    let _ = events.send(ShardEvent::Started { shard: index });

    shard.drain_started.wait().await;

    // Drain: wait for open connections to finish, up to the grace period.
    let deadline = Instant::now() + shard.settings().shutdown_grace;
    while shard.active_connections() > 0 && !aborted.get() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let unfinished = shard.active_connections();
    if unfinished > 0 {
        // Cut what is left, and give the tasks a moment to close their sockets
        // (upstream ones included) and count themselves before the runtime goes
        // away.
        shard.cut_connections();
        let cut_deadline = Instant::now() + Duration::from_millis(200);
        while shard.active_connections() > 0 && Instant::now() < cut_deadline {
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // A last report and access log flush, so that what this shard served is not lost.
    shard.send_report(&events, 0);
    if let Some(log) = shard.access_log.borrow().as_ref() {
        log.flush(Instant::now());
    }
    let _ = events.send(ShardEvent::Stopped {
        shard: index,
        unfinished,
    });
}

/// Starts an accept loop for each new listener, and a timer for each removed
/// one that cuts its remaining connections when the grace period ends.
fn start_accepting(shard: &Rc<Shard>, applied: Applied) {
    for (listener, socket) in applied.opened {
        monoio::spawn(accept_loop(Rc::clone(shard), listener, socket));
    }
    let grace = shard.settings().shutdown_grace;
    for listener in applied.closed {
        let shard = Rc::clone(shard);
        monoio::spawn(async move {
            monoio::time::sleep(grace).await;
            shard.cut_listener(&listener);
        });
    }
}

/// How often a shard ends parked connections past their idle timeout (so
/// `timeouts.idle` is kept to within this much for them).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// How often a shard reports its counters and latency unasked.
const REPORT_EVERY: Duration = Duration::from_secs(1);

async fn poll_commands(
    shard: Rc<Shard>,
    commands: Receiver<ShardCommand>,
    events: Sender<ShardEvent>,
    aborted: Rc<Cell<bool>>,
) {
    let mut next_report = Instant::now() + REPORT_EVERY;
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    loop {
        monoio::time::sleep(COMMAND_POLL).await;
        let now = Instant::now();
        if now >= next_report {
            shard.send_report(&events, 0);
            shard.expire_pooled(now);
            next_report = now + REPORT_EVERY;
            crate::memory::release_freed();
        }
        if now >= next_sweep {
            shard.sweep_parked(now);
            next_sweep = now + SWEEP_EVERY;
        }
        if let Some(log) = shard.access_log.borrow().as_ref() {
            log.flush_if_due(now);
        }
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&shard, command, &events, &aborted),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The control thread is gone: nobody can stop us later.
                    shard.begin_drain();
                    return;
                }
            }
        }
    }
}

fn apply(
    shard: &Rc<Shard>,
    command: ShardCommand,
    events: &Sender<ShardEvent>,
    aborted: &Cell<bool>,
) {
    match command {
        ShardCommand::Configure { plan, sockets } => {
            let applied = shard.configure(&plan, sockets);
            start_accepting(shard, applied);
        }
        ShardCommand::SetAvailability { id, availability } => {
            shard.set_availability(id, availability)
        }
        ShardCommand::SetWeight { id, weight } => shard.set_weight(id, weight),
        ShardCommand::ReportStats(answer_to) => shard.send_report(events, answer_to),
        ShardCommand::Shutdown => shard.begin_drain(),
        ShardCommand::Abort => {
            aborted.set(true);
            shard.begin_drain();
        }
    }
}
