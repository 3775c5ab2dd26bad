//! `shard`: one OS thread pinned to one core, running its own monoio runtime.
//!
//! Owns the per-shard context every connection task shares through `Rc`: settings,
//! its copy of the listeners (with their routes) and clusters (with their
//! backends), counters, client descriptors, lent buffers, and the graceful drain.
//! Applies the configurations the control thread sends ([`Shard::configure`]). Its
//! thread ([`worker`]), io driver ([`runtime`]) and messages to and from the
//! control thread ([`messages`]) live beside it. Shares nothing with other shards on
//! the request path: `Rc` and `Cell`, no locks.

mod clients;
pub mod messages;
pub mod runtime;
mod worker;

pub use messages::{ClusterPlan, ListenerPlan, ShardCommand, ShardEvent, ShardPlan};
pub use runtime::{choose_driver, run_on, Driver, RingSetup, ShardError};
pub use worker::{spawn, ShardStart};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rustls::ServerConfig;

use crate::cluster::backend::{Availability, Backend, BackendId};
use crate::cluster::Cluster;
use crate::config::{Cidr, Config, Limits, ListenerProtocol};
use crate::observe::access_log::AccessLog;
use crate::observe::logging;
use crate::observe::stats::{BackendGauges, RouteStats, ShardGauges, ShardStats};
use crate::observe::tunnels::TunnelEnd;
use crate::route::{self, RequestView, Route, RouteTable};
use crate::sys;
use crate::tls::material::ListenerMaterial;
use crate::{log_info, log_warn};
use clients::{ClientFds, ClientSlot, ClientState};

/// Most idle upstream read buffers a shard keeps for reuse.
const POOLED_BUFFERS: usize = 256;

/// How often a shard looks for commands from the control thread.
pub const COMMAND_POLL: Duration = Duration::from_millis(2);

/// The settings every connection of a shard shares, whatever its listener and
/// cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSettings {
    /// Parsing limits.
    pub limits: Limits,
    /// `timeouts.header_read`.
    pub header_read_timeout: Duration,
    /// `timeouts.idle`.
    pub idle_timeout: Duration,
    /// `timeouts.shutdown_grace`.
    pub shutdown_grace: Duration,
    /// `timeouts.tunnel_idle`.
    pub tunnel_idle: Duration,
    /// This shard's share of `server.max_connections`.
    pub max_connections: usize,
}

impl ShardSettings {
    /// The settings for one of `shards` shards.
    pub fn from_config(config: &Config, shards: usize) -> Self {
        ShardSettings {
            limits: config.limits,
            header_read_timeout: config.timeouts.header_read,
            idle_timeout: config.timeouts.idle,
            shutdown_grace: config.timeouts.shutdown_grace,
            tunnel_idle: config.timeouts.tunnel_idle,
            max_connections: config.server.max_connections.div_ceil(shards.max(1)),
        }
    }
}

/// One listener as a shard serves it: its routes, and its socket's descriptor.
#[derive(Debug)]
pub struct ShardListener {
    /// Numbers this shard's listeners, so connections know theirs.
    pub id: u32,
    /// The configured name, for logs and the access log.
    pub name: Rc<str>,
    /// Where it listens.
    pub address: SocketAddr,
    /// What is spoken on it.
    pub protocol: ListenerProtocol,
    /// Its routes, or its cluster, replaced whole by a reload.
    serves: RefCell<Serves>,
    /// With `accept_proxy`: who may send a PROXY header (replaced by a reload).
    proxy_trusted: RefCell<Option<Rc<[Cidr]>>>,
    /// When it speaks TLS: this shard's server configuration (replaced by a
    /// reload; connections keep the one they began with).
    tls: RefCell<Option<Rc<ShardTls>>>,
    /// The socket, shut down to end the accept loop; -1 once it has ended.
    fd: Cell<RawFd>,
    /// Removed by a reload: it accepts nothing more, and its connections close
    /// after their current request.
    closing: Cell<bool>,
}

/// One TLS listener's configuration on one shard.
#[derive(Debug)]
pub struct ShardTls {
    /// The certificates and settings it was built from.
    material: Arc<ListenerMaterial>,
    /// This shard's rustls configuration (its own session cache and ticket
    /// keys); `None` if it could not be built, and then handshakes are refused.
    pub config: Option<Arc<ServerConfig>>,
}

impl ShardTls {
    /// The certificates it serves.
    pub fn store(&self) -> &crate::tls::certs::CertStore {
        &self.material.store
    }

    /// This shard's configuration for a listener's `material`. A listener that
    /// serves the same certificates as before keeps its session cache (its
    /// ticket keys come with the material), so that clients resume as before.
    /// If it cannot be built (the control thread built one already, so only
    /// for want of memory), the old one stays; with none, handshakes fail.
    fn build(
        shard: usize,
        material: &Arc<ListenerMaterial>,
        old: Option<&Rc<ShardTls>>,
    ) -> Rc<ShardTls> {
        let config = match material.server_config() {
            Ok(mut config) => {
                let same = old.filter(|o| o.material.same_certificates(material));
                if let Some(old) = same.and_then(|o| o.config.as_ref()) {
                    Arc::make_mut(&mut config).session_storage = Arc::clone(&old.session_storage);
                }
                Some(config)
            }
            Err(e) => {
                crate::log_error!(
                    "shard {shard}: listener {}: cannot build its TLS configuration ({e})",
                    material.listener
                );
                if let Some(old) = old {
                    return Rc::clone(old);
                }
                None
            }
        };
        Rc::new(ShardTls {
            material: Arc::clone(material),
            config,
        })
    }
}

/// What a listener's connections are served by.
#[derive(Debug, Clone)]
pub enum Serves {
    /// HTTP/1.1, routed by these routes.
    Http(Rc<RouteTable>),
    /// Relayed to a backend of this cluster (`None`: the cluster is missing, which
    /// validation prevents; its connections are closed).
    Tcp(Option<Rc<Cluster>>),
}

impl ShardListener {
    /// The most specific route for a request, if any matches.
    #[inline]
    pub fn route<'a, F: Fn(&str) -> Option<&'a [u8]>>(
        &self,
        request: &RequestView<'a, F>,
    ) -> Option<Rc<Route>> {
        match &*self.serves.borrow() {
            Serves::Http(routes) => routes.route(request).map(|(_, route)| Rc::clone(route)),
            Serves::Tcp(_) => None,
        }
    }

    /// What its connections are served by now.
    #[inline]
    pub fn serves(&self) -> Serves {
        self.serves.borrow().clone()
    }

    /// When it speaks TLS: the configuration new handshakes use.
    #[inline]
    pub fn tls(&self) -> Option<Rc<ShardTls>> {
        self.tls.borrow().clone()
    }

    /// With `accept_proxy`: the networks allowed to send a PROXY header.
    #[inline]
    pub fn proxy_trusted(&self) -> Option<Rc<[Cidr]>> {
        self.proxy_trusted.borrow().clone()
    }

    /// Whether a reload removed it.
    #[inline]
    pub fn closing(&self) -> bool {
        self.closing.get()
    }

    /// Forgets its socket once the accept loop has ended.
    pub fn accept_ended(&self) {
        self.fd.set(-1);
    }

    /// Stops accepting: a pending accept returns `EINVAL`, so no accept op is
    /// dropped in flight (the fd leak of monoio #318).
    fn stop_accepting(&self) {
        let fd = self.fd.get();
        if fd >= 0 {
            // `fd` is the listener owned by this listener's accept loop, which is
            // still alive (the loop forgets the fd before it drops the socket).
            let _ = sys::shutdown(fd, sys::Shutdown::Read);
        }
    }
}

/// A one-shot signal between tasks of one shard.
#[derive(Debug, Default)]
struct Signal {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// What applying a configuration changed that the shard's worker must act on.
#[derive(Debug, Default)]
pub struct Applied {
    /// New listeners and their registered sockets: each needs an accept loop.
    pub opened: Vec<(Rc<ShardListener>, monoio::net::TcpListener)>,
    /// Removed listeners: their connections are cut after the grace period.
    pub closed: Vec<Rc<ShardListener>>,
}

/// One shard's state, shared by its tasks through `Rc`.
#[derive(Debug)]
pub struct Shard {
    /// Index of this shard (0-based).
    pub index: usize,
    /// Settings from the configuration, replaced whole by a reload.
    settings: RefCell<Rc<ShardSettings>>,
    /// The clusters, in configuration order.
    clusters: RefCell<Vec<Rc<Cluster>>>,
    /// The listeners, in configuration order.
    listeners: RefCell<Vec<Rc<ShardListener>>>,
    /// The next listener id.
    next_listener_id: Cell<u32>,
    /// Every route's counters by name, kept across reloads.
    route_stats: RefCell<HashMap<String, Rc<RouteStats>>>,
    /// Counters.
    pub stats: ShardStats,
    /// Set once shutdown begins: no new requests on idle connections.
    draining: Cell<bool>,
    /// Fired when shutdown begins, for the shard's main task.
    drain_started: Signal,
    /// Open client connections.
    active_connections: Cell<usize>,
    /// Open client connections' descriptors, for drain and abort.
    clients: RefCell<ClientFds>,
    /// Events to the control thread (outcomes are sent from connection tasks).
    events: Sender<ShardEvent>,
    /// The access log buffer, when `logging.access_log` is on.
    pub access_log: RefCell<Option<AccessLog>>,
    /// Upstream read buffers, lent to requests for their duration, so a request
    /// allocates none and an idle connection holds none.
    buffers: RefCell<Vec<Vec<u8>>>,
}

impl Shard {
    /// A shard with no listeners and no clusters yet: `configure` gives it some.
    pub fn new(index: usize, settings: ShardSettings, events: Sender<ShardEvent>) -> Self {
        Shard {
            index,
            settings: RefCell::new(Rc::new(settings)),
            clusters: RefCell::new(Vec::new()),
            listeners: RefCell::new(Vec::new()),
            next_listener_id: Cell::new(0),
            route_stats: RefCell::new(HashMap::new()),
            stats: ShardStats::default(),
            draining: Cell::new(false),
            drain_started: Signal::default(),
            active_connections: Cell::new(0),
            clients: RefCell::new(ClientFds::default()),
            events,
            access_log: RefCell::new(None),
            buffers: RefCell::new(Vec::new()),
        }
    }

    /// The settings now (a reload may replace them; a request keeps the ones it
    /// started with).
    #[inline]
    pub fn settings(&self) -> Rc<ShardSettings> {
        Rc::clone(&self.settings.borrow())
    }

    /// Applies a configuration: settings, clusters (keeping the backends, pools and
    /// counters of what stays), listeners and their routes. Listeners new to this
    /// shard come with their bound socket in `sockets`; listeners no longer in the
    /// plan stop accepting, and their idle connections close.
    pub fn configure(
        &self,
        plan: &ShardPlan,
        sockets: Vec<(String, std::net::TcpListener)>,
    ) -> Applied {
        *self.settings.borrow_mut() = Rc::new(plan.settings.clone());
        self.configure_access_log(plan.access_log.as_ref());

        let old_clusters = self.clusters.replace(Vec::new());
        let clusters: Vec<Rc<Cluster>> = plan
            .clusters
            .iter()
            .map(|c| {
                let old = old_clusters.iter().find(|o| *o.name == *c.name);
                let cluster = match old {
                    Some(old) if old.settings == c.settings => {
                        old.set_backends(&c.backends);
                        Rc::clone(old)
                    }
                    Some(old) => {
                        Rc::new(old.successor(c.settings.clone(), &c.backends, self.index))
                    }
                    None => Rc::new(Cluster::new(
                        &c.name,
                        c.settings.clone(),
                        &c.backends,
                        &[],
                        Rc::default(),
                        self.index,
                    )),
                };
                cluster.set_tls(c.tls.as_ref());
                cluster
            })
            .collect();
        *self.clusters.borrow_mut() = clusters;
        for old in &old_clusters {
            if !plan.clusters.iter().any(|c| *c.name == *old.name) {
                // In-flight requests still hold it; its idle connections go now.
                for b in old.backends() {
                    b.pool.clear();
                }
            }
        }

        let mut route_stats = HashMap::new();
        {
            let old_stats = self.route_stats.borrow();
            for listener in &plan.listeners {
                for r in &listener.routes {
                    let stats = old_stats.get(&r.name).cloned().unwrap_or_default();
                    route_stats.insert(r.name.clone(), stats);
                }
            }
        }
        *self.route_stats.borrow_mut() = route_stats;

        let mut applied = Applied::default();
        let mut sockets = sockets;
        let old_listeners = self.listeners.replace(Vec::new());
        let mut listeners = Vec::with_capacity(plan.listeners.len());
        for l in &plan.listeners {
            let serves = match l.protocol {
                ListenerProtocol::Http | ListenerProtocol::H2c => {
                    Serves::Http(Rc::new(self.route_table(&l.routes)))
                }
                ListenerProtocol::Tcp => Serves::Tcp(l.cluster.as_ref().and_then(|name| {
                    self.clusters
                        .borrow()
                        .iter()
                        .find(|c| *c.name == **name)
                        .cloned()
                })),
            };
            let kept = old_listeners
                .iter()
                .find(|o| *o.name == *l.name && o.address == l.address && o.protocol == l.protocol);
            let proxy_trusted = l.proxy_trusted.as_deref().map(Rc::from);
            let old_tls = kept.and_then(|k| k.tls());
            let tls = l.tls.as_ref().map(|material| match &old_tls {
                // The same files as read by the same load: nothing changed.
                Some(old) if Arc::ptr_eq(&old.material, material) => Rc::clone(old),
                old => ShardTls::build(self.index, material, old.as_ref()),
            });
            if let Some(kept) = kept {
                *kept.serves.borrow_mut() = serves;
                *kept.proxy_trusted.borrow_mut() = proxy_trusted;
                *kept.tls.borrow_mut() = tls;
                listeners.push(Rc::clone(kept));
                continue;
            }
            let Some(at) = sockets.iter().position(|(name, _)| *name == l.name) else {
                log_warn!(
                    "shard {}: listener {} came without a socket; not serving it",
                    self.index,
                    l.name
                );
                continue;
            };
            let (_, socket) = sockets.swap_remove(at);
            let registered = socket
                .set_nonblocking(true)
                .and_then(|()| monoio::net::TcpListener::from_std(socket));
            match registered {
                Ok(socket) => {
                    let id = self.next_listener_id.get();
                    self.next_listener_id.set(id + 1);
                    let listener = Rc::new(ShardListener {
                        id,
                        name: l.name.as_str().into(),
                        address: l.address,
                        protocol: l.protocol,
                        serves: RefCell::new(serves),
                        proxy_trusted: RefCell::new(proxy_trusted),
                        tls: RefCell::new(tls),
                        fd: Cell::new(socket.as_raw_fd()),
                        closing: Cell::new(false),
                    });
                    listeners.push(Rc::clone(&listener));
                    applied.opened.push((listener, socket));
                }
                Err(e) => crate::log_error!(
                    "shard {}: cannot register listener {}: {e}",
                    self.index,
                    l.name
                ),
            }
        }
        for old in old_listeners {
            if !listeners.iter().any(|l| Rc::ptr_eq(l, &old)) {
                if self.index == 0 {
                    log_info!("listener {} on {} removed", old.name, old.address);
                }
                old.closing.set(true);
                old.stop_accepting();
                let id = old.id;
                self.clients
                    .borrow_mut()
                    .shutdown(|slot| slot.listener == id && slot.idle(), TunnelEnd::Cut);
                applied.closed.push(old);
            }
        }
        *self.listeners.borrow_mut() = listeners;
        applied
    }

    /// Compiles a listener's routes against the clusters now in place.
    fn route_table(&self, routes: &[crate::config::RouteConfig]) -> RouteTable {
        let clusters = self.clusters.borrow();
        let stats = self.route_stats.borrow();
        route::build_table(
            routes,
            |name| clusters.iter().find(|c| *c.name == *name),
            |name| stats.get(name).cloned().unwrap_or_default(),
        )
    }

    /// Starts, stops or re-formats the access log as the configuration says.
    fn configure_access_log(&self, writer: Option<&Sender<Vec<u8>>>) {
        let mut log = self.access_log.borrow_mut();
        let current_format = logging::json();
        match (writer, log.as_ref()) {
            (Some(_), Some(existing)) if existing.json() == current_format => {}
            (Some(writer), _) => {
                if let Some(old) = log.take() {
                    old.flush(Instant::now());
                }
                *log = Some(AccessLog::new(writer.clone()));
            }
            (None, Some(old)) => {
                old.flush(Instant::now());
                *log = None;
            }
            (None, None) => {}
        }
    }

    /// Cuts the connections a removed listener still has (its grace period is over).
    pub fn cut_listener(&self, listener: &ShardListener) {
        let id = listener.id;
        self.clients
            .borrow_mut()
            .shutdown(|slot| slot.listener == id, TunnelEnd::Cut);
    }

    /// Applies the control thread's decision about one backend.
    pub fn set_availability(&self, id: BackendId, availability: Availability) {
        if let Some(b) = self.backend(id) {
            b.set_availability(availability);
        }
    }

    /// Sets the weight one backend is selected by (slow start).
    pub fn set_weight(&self, id: BackendId, weight: u32) {
        if let Some(b) = self.backend(id) {
            b.set_effective_weight(weight);
        }
    }

    fn backend(&self, id: BackendId) -> Option<Rc<Backend>> {
        self.clusters.borrow().iter().find_map(|c| {
            c.balancer
                .borrow()
                .backends()
                .iter()
                .find(|b| b.id == id)
                .cloned()
        })
    }

    /// Lends an empty buffer of at least `capacity` bytes.
    pub fn take_buffer(&self, capacity: usize) -> Vec<u8> {
        self.buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Takes a lent buffer back (at most `POOLED_BUFFERS` are kept).
    pub fn give_buffer(&self, mut buffer: Vec<u8>) {
        let mut buffers = self.buffers.borrow_mut();
        if buffers.len() < POOLED_BUFFERS && buffer.capacity() > 0 {
            buffer.clear();
            buffers.push(buffer);
        }
    }

    /// Reports the outcome of a request to `backend` of `cluster` for its circuit
    /// breaker, without ever blocking: a full channel drops the report and counts it.
    pub fn report_outcome(&self, cluster: &Cluster, backend: &Backend, ok: bool) {
        if !cluster.settings.report_outcomes || !backend.should_report(ok) {
            return;
        }
        let event = ShardEvent::Outcome { id: backend.id, ok };
        if self.events.try_send(event).is_err() {
            ShardStats::bump(&self.stats.reports_dropped);
        }
    }

    /// Whether shutdown has begun.
    #[inline]
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Open client connections.
    pub fn active_connections(&self) -> usize {
        self.active_connections.get()
    }

    /// Marks a client connection as waiting for its next request (or not).
    pub fn set_idle(&self, guard: &ConnectionGuard, idle: bool) {
        let state = if idle {
            ClientState::Idle
        } else {
            ClientState::Busy
        };
        self.clients.borrow_mut().set_state(guard.token, state);
    }

    /// Marks a client connection as parked: idle, with no timer of its own. The
    /// shard's sweep shuts it down once `until` passes, which ends its wait.
    pub fn set_parked(&self, guard: &ConnectionGuard, until: Option<Instant>) {
        let state = until.map_or(ClientState::Busy, |until| ClientState::Parked { until });
        self.clients.borrow_mut().set_state(guard.token, state);
    }

    /// Marks a client connection as a tunnel to `upstream`, idle-closed at `until`
    /// unless marked again (each relayed read moves the deadline).
    #[inline]
    pub fn set_tunnel(&self, guard: &ConnectionGuard, upstream: RawFd, until: Instant) {
        self.clients
            .borrow_mut()
            .set_tunnel(guard.token, upstream, until);
    }

    /// Why the shard shut a connection down (idle timeout, or cut), if it did.
    pub fn tunnel_ended(&self, guard: &ConnectionGuard) -> Option<TunnelEnd> {
        self.clients.borrow().ended(guard.token)
    }

    /// Ends parked connections and tunnels whose idle deadline has passed.
    fn sweep_parked(&self, now: Instant) {
        self.clients
            .borrow_mut()
            .shutdown(|slot| slot.expired(now), TunnelEnd::IdleTimeout);
    }

    /// Counts an open client connection of `listener` (and tracks its descriptor)
    /// for as long as the guard lives.
    pub fn connection_opened(
        self: &Rc<Self>,
        fd: RawFd,
        listener: &ShardListener,
    ) -> ConnectionGuard {
        self.active_connections
            .set(self.active_connections.get() + 1);
        let token = self.clients.borrow_mut().register(fd, listener.id);
        ConnectionGuard {
            shard: Rc::clone(self),
            token,
        }
    }

    /// Cuts every open client connection (end of the grace period, or abort).
    fn cut_connections(&self) {
        self.clients.borrow_mut().shutdown(|_| true, TunnelEnd::Cut);
    }

    /// Closes pooled upstream connections idle past `upstream.idle_timeout`.
    pub(crate) fn expire_pooled(&self, now: Instant) {
        for cluster in self.clusters.borrow().iter() {
            for backend in cluster.backends() {
                backend.pool.expire(now);
            }
        }
    }

    /// Sends counters and the latency recorded since the last report. If the
    /// channel is full the report is dropped, and its latency with it: the
    /// control thread is far behind, and the next report carries fresh counters.
    fn send_report(&self, events: &Sender<ShardEvent>, answer_to: u64) {
        let clusters = self.clusters.borrow();
        let backends: Vec<(Rc<str>, Rc<Backend>)> = clusters
            .iter()
            .flat_map(|c| c.backends().into_iter().map(|b| (Rc::clone(&c.name), b)))
            .collect();
        let gauges: Vec<BackendGauges<'_>> = backends
            .iter()
            .map(|(cluster, b)| BackendGauges {
                name: &b.name,
                cluster,
                stats: &b.stats,
                in_flight: b.in_flight(),
                idle: b.pool.idle_count(),
            })
            .collect();
        let mut report = self.stats.report(
            self.index,
            ShardGauges {
                active_connections: self.active_connections(),
                parked_connections: self.clients.borrow().parked(),
                access_log_dropped: self
                    .access_log
                    .borrow()
                    .as_ref()
                    .map_or(0, AccessLog::dropped),
                backends: &gauges,
                clusters: clusters.iter().map(|c| c.stats.report(&c.name)).collect(),
                routes: self
                    .route_stats
                    .borrow()
                    .iter()
                    .map(|(name, stats)| (name.clone(), stats.requests()))
                    .collect(),
            },
        );
        report.answer_to = answer_to;
        if events
            .try_send(ShardEvent::Report(Box::new(report)))
            .is_err()
        {
            ShardStats::bump(&self.stats.reports_dropped);
        }
    }

    /// Stops accepting and wakes idle connections so they close.
    fn begin_drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        for listener in self.listeners.borrow().iter() {
            listener.stop_accepting();
        }
        self.clients
            .borrow_mut()
            .shutdown(ClientSlot::idle, TunnelEnd::Cut);
        for cluster in self.clusters.borrow().iter() {
            for backend in cluster.backends() {
                backend.pool.clear();
            }
        }
        self.drain_started.fire();
    }
}

/// Keeps `Shard::active_connections` right, whatever way a connection task ends.
#[derive(Debug)]
pub struct ConnectionGuard {
    shard: Rc<Shard>,
    token: usize,
}

impl ConnectionGuard {
    /// The shard the connection belongs to.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let n = &self.shard.active_connections;
        n.set(n.get().saturating_sub(1));
        self.shard.clients.borrow_mut().unregister(self.token);
    }
}
