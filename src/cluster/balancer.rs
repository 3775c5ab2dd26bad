//! `balancer`: picks a backend for a request, per shard.
//!
//! Owns one shard's backend table and the selection strategy's state. Called by the
//! shard's connection tasks on every request attempt. A strategy is an enum variant
//! dispatched with `match`; its state lives in `Cell`s of this shard. Never blocks,
//! never allocates on `select`, never touches another shard.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cluster::backend::{Backend, BackendId};
use crate::cluster::load_index::LoadIndex;
use crate::config::{BalancerConfig, HashAlgorithm, Strategy};

/// What a strategy may look at to choose.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The downstream client's address.
    pub client_ip: IpAddr,
    /// `hash_bytes` of the request's `balancer.hash_key` (for consistent hashing).
    pub key_hash: u64,
    /// When the request is being routed (least-response fades old latency).
    pub now: Instant,
}

/// A stable 64-bit hash (FNV-1a, then Murmur3's finaliser): the same key gives the
/// same hash on every machine and version, so several ringlb instances in front of
/// the same backends route a key alike.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hash of a client address (the `client-ip` key).
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

/// xorshift64*: a small, fast generator; seeded per shard, so runs repeat.
pub(crate) fn next_random(state: &Cell<u64>) -> u64 {
    let mut x = state.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.set(x);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Strategy state. Vectors are aligned with the table's order.
#[derive(Debug)]
enum Selector {
    /// Next index to try.
    RoundRobin { next: Cell<usize> },
    /// Smooth weighted round-robin (nginx): each backend's current weight.
    WeightedRoundRobin { current: Vec<Cell<i64>> },
    /// Fewest in-flight requests per unit of weight, kept at the root of a winner
    /// tree that the backends re-key as their load changes; among equals, the one
    /// touched (picked, or its load changed) longest ago.
    LeastConn { index: Rc<LoadIndex> },
    /// Weighted random.
    Random { rng: Cell<u64> },
    /// Two weighted random choices; fewer in flight per unit of weight wins.
    P2c { rng: Cell<u64> },
    /// Two random choices; lower peak-EWMA latency × (in flight + 1) wins.
    LeastResponse { rng: Cell<u64>, decay: Duration },
    /// Ketama ring: sorted (point, backend index), `virtual_nodes × weight` each.
    Ring {
        points: Vec<(u64, u32)>,
        bound: Option<f64>,
    },
    /// Maglev lookup table of backend indexes.
    Maglev { table: Vec<u32>, bound: Option<f64> },
}

/// One shard's table of backends and the strategy that picks among them.
#[derive(Debug)]
pub struct Balancer {
    /// The configured strategy and its settings, kept to rebuild state when the
    /// table changes.
    config: BalancerConfig,
    /// Where rotation starts (the shard's index), so shards do not all send their
    /// first requests to the same backend.
    offset: usize,
    /// This shard's copy of the backends, in configuration order.
    backends: Vec<Rc<Backend>>,
    /// The strategy's state.
    selector: Selector,
}

impl Balancer {
    /// A balancer over `backends` using `strategy`; rotation starts at `offset`
    /// (modulo the table's length). Settings are the defaults for everything but
    /// the strategy.
    pub fn new(strategy: Strategy, backends: Vec<Rc<Backend>>, offset: usize) -> Self {
        let config = BalancerConfig {
            strategy,
            ..BalancerConfig::default()
        };
        Self::with_config(&config, backends, offset)
    }

    /// A balancer over `backends` with `config`; `offset` (the shard's index)
    /// staggers round-robin starts and seeds random choices.
    pub fn with_config(config: &BalancerConfig, backends: Vec<Rc<Backend>>, offset: usize) -> Self {
        let selector = Self::selector_for(config, &backends, offset);
        Balancer {
            config: config.clone(),
            offset,
            backends,
            selector,
        }
    }

    fn selector_for(config: &BalancerConfig, backends: &[Rc<Backend>], offset: usize) -> Selector {
        let len = backends.len();
        let start = if len == 0 { 0 } else { offset % len };
        // A non-zero seed per shard: deterministic runs, different shards differ.
        let seed = || {
            Cell::new(
                0x9e37_79b9_7f4a_7c15 ^ (offset as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            )
        };
        match config.strategy {
            Strategy::RoundRobin => Selector::RoundRobin {
                next: Cell::new(start),
            },
            Strategy::WeightedRoundRobin => Selector::WeightedRoundRobin {
                current: (0..len).map(|_| Cell::new(0)).collect(),
            },
            Strategy::LeastConn => {
                let index = Rc::new(LoadIndex::new(len));
                // Keyed in turn from `start`, so that shards begin at different
                // backends, as round-robin does.
                for k in 0..len {
                    let i = wrap(start + k, len);
                    backends[i].set_load_leaf(Some((Rc::clone(&index), i)));
                }
                Selector::LeastConn { index }
            }
            Strategy::Random => Selector::Random { rng: seed() },
            Strategy::P2c => Selector::P2c { rng: seed() },
            Strategy::LeastResponse => Selector::LeastResponse {
                rng: seed(),
                decay: config.ewma_decay,
            },
            Strategy::ConsistentHash => match config.hash_algorithm {
                HashAlgorithm::Ring => Selector::Ring {
                    points: build_ring(backends, config.virtual_nodes),
                    bound: config.hash_bounded_load,
                },
                HashAlgorithm::Maglev => Selector::Maglev {
                    table: build_maglev(backends, config.table_size),
                    bound: config.hash_bounded_load,
                },
            },
        }
    }

    /// Replaces the table (a change from the control thread); strategy state restarts.
    pub fn replace(&mut self, backends: Vec<Rc<Backend>>) {
        if matches!(self.selector, Selector::LeastConn { .. }) {
            // Backends leaving the table stop re-keying the old index; the ones
            // staying get leaves in the new one.
            for b in &self.backends {
                b.set_load_leaf(None);
            }
        }
        self.selector = Self::selector_for(&self.config, &backends, self.offset);
        self.backends = backends;
    }

    /// The current table.
    pub fn backends(&self) -> &[Rc<Backend>] {
        &self.backends
    }

    /// Picks an available backend that is not in `tried`, or `None`.
    pub fn select(&self, ctx: &RequestContext, tried: &[BackendId]) -> Option<Rc<Backend>> {
        let eligible = |b: &Backend| b.is_available() && !tried.contains(&b.id);
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let index = match &self.selector {
            Selector::RoundRobin { next } => {
                let start = next.get();
                let mut found = None;
                for k in 0..n {
                    let i = wrap(start + k, n);
                    if eligible(&self.backends[i]) {
                        found = Some(i);
                        break;
                    }
                }
                let i = found?;
                next.set(wrap(i + 1, n));
                i
            }
            Selector::WeightedRoundRobin { current } => {
                let mut total: i64 = 0;
                let mut best: Option<usize> = None;
                for (i, b) in self.backends.iter().enumerate() {
                    if !eligible(b) {
                        continue;
                    }
                    let w = i64::from(b.effective_weight());
                    total += w;
                    let c = current[i].get() + w;
                    current[i].set(c);
                    if best.is_none_or(|j| c > current[j].get()) {
                        best = Some(i);
                    }
                }
                let i = best?;
                current[i].set(current[i].get() - total);
                i
            }
            Selector::LeastConn { index } => {
                // The root, unless this is a retry, or the root is not eligible
                // after all: the index of a cluster a reload replaced stops being
                // kept up to date, and a request that started before the reload
                // may still pick from it. Then the least key among the eligible.
                let root = index
                    .least()
                    .filter(|&i| tried.is_empty() && eligible(&self.backends[i]));
                let i = match root {
                    Some(i) => i,
                    None => (0..n)
                        .filter(|&i| eligible(&self.backends[i]))
                        .min_by_key(|&i| index.key(i))?,
                };
                // Behind its equals for the next pick.
                index.touch(i);
                i
            }
            Selector::Random { rng } => self.weighted_random(rng, &eligible)?,
            Selector::P2c { rng } => {
                let a = self.weighted_random(rng, &eligible)?;
                let b = self.weighted_random_other(rng, &eligible, a).unwrap_or(a);
                let load = |i: usize| {
                    let x = &self.backends[i];
                    (u64::from(x.in_flight()), u64::from(x.effective_weight()))
                };
                let ((la, wa), (lb, wb)) = (load(a), load(b));
                if lb * wa < la * wb {
                    b
                } else {
                    a
                }
            }
            Selector::LeastResponse { rng, decay } => {
                let a = self.weighted_random(rng, &eligible)?;
                let b = self.weighted_random_other(rng, &eligible, a).unwrap_or(a);
                let cost = |i: usize| {
                    let x = &self.backends[i];
                    x.latency_cost(ctx.now, *decay) / f64::from(x.effective_weight())
                };
                if cost(b) < cost(a) {
                    b
                } else {
                    a
                }
            }
            Selector::Ring { points, bound } => {
                let cap = self.load_cap(*bound, &eligible);
                if points.is_empty() {
                    return None;
                }
                let first = points.partition_point(|(p, _)| *p < ctx.key_hash);
                (0..points.len())
                    .map(|k| points[(first + k) % points.len()].1 as usize)
                    .find(|&i| eligible(&self.backends[i]) && self.under_cap(i, cap))?
            }
            Selector::Maglev { table, bound } => {
                let cap = self.load_cap(*bound, &eligible);
                let m = table.len() as u64;
                if m == 0 {
                    return None;
                }
                // The key's slot, then a key-specific probe sequence: only the
                // keys of an unavailable backend move, and they come back.
                let step = (ctx.key_hash >> 32) % (m - 1).max(1) + 1;
                (0..m)
                    .map(|k| table[((ctx.key_hash % m + k * step) % m) as usize] as usize)
                    .find(|&i| eligible(&self.backends[i]) && self.under_cap(i, cap))?
            }
        };
        Some(Rc::clone(&self.backends[index]))
    }

    /// A weighted random eligible backend.
    #[inline]
    fn weighted_random(
        &self,
        rng: &Cell<u64>,
        eligible: &impl Fn(&Backend) -> bool,
    ) -> Option<usize> {
        let total: u64 = self
            .backends
            .iter()
            .filter(|b| eligible(b))
            .map(|b| u64::from(b.effective_weight()))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = next_random(rng) % total;
        for (i, b) in self.backends.iter().enumerate() {
            if !eligible(b) {
                continue;
            }
            let w = u64::from(b.effective_weight());
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    /// A weighted random eligible backend other than `not`, if there is one.
    #[inline]
    fn weighted_random_other(
        &self,
        rng: &Cell<u64>,
        eligible: &impl Fn(&Backend) -> bool,
        not: usize,
    ) -> Option<usize> {
        let skip = self.backends[not].id;
        self.weighted_random(rng, &|b: &Backend| b.id != skip && eligible(b))
    }

    /// The most requests in flight a backend may have under bounded-load hashing:
    /// `c` × the mean over eligible backends, counting the one being placed.
    fn load_cap(&self, bound: Option<f64>, eligible: &impl Fn(&Backend) -> bool) -> Option<u64> {
        let c = bound?;
        let (count, in_flight) = self
            .backends
            .iter()
            .filter(|b| eligible(b))
            .fold((0u64, 0u64), |(n, f), b| {
                (n + 1, f + u64::from(b.in_flight()))
            });
        if count == 0 {
            return None;
        }
        Some(((in_flight + 1) as f64 * c / count as f64).ceil() as u64)
    }

    fn under_cap(&self, index: usize, cap: Option<u64>) -> bool {
        cap.is_none_or(|cap| u64::from(self.backends[index].in_flight()) < cap)
    }
}

/// Ketama-style ring: `virtual_nodes × weight` points per backend, from stable
/// hashes of its name, sorted.
fn build_ring(backends: &[Rc<Backend>], virtual_nodes: u32) -> Vec<(u64, u32)> {
    let mut points = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        for v in 0..virtual_nodes.saturating_mul(b.weight()) {
            let key = format!("{}-{v}", b.name);
            points.push((hash_bytes(key.as_bytes()), i as u32));
        }
    }
    points.sort_unstable();
    points
}

/// Maglev's lookup table (Eisenbud et al., 2016), weighted by giving each backend
/// `weight` turns per round while filling. Slots hold backend indexes.
fn build_maglev(backends: &[Rc<Backend>], size: u32) -> Vec<u32> {
    let m = u64::from(size);
    if backends.is_empty() || m < 2 {
        return Vec::new();
    }
    let mut table = vec![u32::MAX; size as usize];
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| {
            let offset = hash_bytes(format!("{}#offset", b.name).as_bytes()) % m;
            let skip = hash_bytes(format!("{}#skip", b.name).as_bytes()) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut filled = 0u64;
    'fill: loop {
        for (i, b) in backends.iter().enumerate() {
            for _ in 0..b.weight().max(1) {
                let (offset, skip) = perms[i];
                let mut slot = (offset + next[i] * skip) % m;
                while table[slot as usize] != u32::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % m;
                }
                table[slot as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
    }
    table
}

#[inline]
fn wrap(i: usize, n: usize) -> usize {
    if i >= n {
        i - n
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::backend::{Availability, InFlight};
    use std::time::Duration;

    fn table(weights: &[u32]) -> Vec<Rc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Rc::new(Backend::new(
                    i as BackendId,
                    format!("b{i}").into(),
                    format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                    w,
                    8,
                    Duration::from_secs(30),
                ))
            })
            .collect()
    }

    fn ctx() -> RequestContext {
        RequestContext {
            client_ip: "127.0.0.1".parse().unwrap(),
            key_hash: 0,
            now: Instant::now(),
        }
    }

    fn picks(b: &Balancer, n: usize) -> Vec<BackendId> {
        (0..n).map(|_| b.select(&ctx(), &[]).unwrap().id).collect()
    }

    #[test]
    fn round_robin_cycles() {
        let b = Balancer::new(Strategy::RoundRobin, table(&[1, 1, 1]), 0);
        assert_eq!(picks(&b, 6), vec![0, 1, 2, 0, 1, 2]);
        let shard4 = Balancer::new(Strategy::RoundRobin, table(&[1, 1, 1]), 4);
        assert_eq!(picks(&shard4, 3), vec![1, 2, 0]);
    }

    #[test]
    fn round_robin_skips_unavailable_and_tried() {
        let t = table(&[1, 1, 1]);
        t[1].set_available(false);
        let b = Balancer::new(Strategy::RoundRobin, t, 0);
        assert_eq!(picks(&b, 4), vec![0, 2, 0, 2]);
        assert_eq!(b.select(&ctx(), &[0]).unwrap().id, 2);
        assert!(b.select(&ctx(), &[0, 2]).is_none());
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        let b = Balancer::new(Strategy::WeightedRoundRobin, table(&[5, 1, 1]), 0);
        assert_eq!(picks(&b, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        // Over many rounds, shares equal weights exactly.
        let mut counts = [0usize; 3];
        for id in picks(&b, 7000) {
            counts[id as usize] += 1;
        }
        assert_eq!(counts, [5000, 1000, 1000]);
    }

    #[test]
    fn weighted_round_robin_skips_down_backends() {
        let t = table(&[5, 1, 1]);
        t[0].set_available(false);
        let b = Balancer::new(Strategy::WeightedRoundRobin, t, 0);
        assert_eq!(picks(&b, 4), vec![1, 2, 1, 2]);
    }

    #[test]
    fn least_conn_follows_in_flight_with_round_robin_ties() {
        let t = table(&[1, 1, 1]);
        let b = Balancer::new(Strategy::LeastConn, t.clone(), 0);
        let _busy0 = InFlight::start(&t[0]);
        let _busy0b = InFlight::start(&t[0]);
        let _busy1 = InFlight::start(&t[1]);
        assert_eq!(b.select(&ctx(), &[]).unwrap().id, 2);
        let _busy2 = InFlight::start(&t[2]);
        // 1 and 2 tie at one in flight: round-robin between them.
        let first = b.select(&ctx(), &[]).unwrap().id;
        let second = b.select(&ctx(), &[]).unwrap().id;
        assert_ne!(first, second);
        assert!(first != 0 && second != 0);
    }

    #[test]
    fn least_conn_divides_by_weight() {
        let t = table(&[3, 1]);
        let b = Balancer::new(Strategy::LeastConn, t.clone(), 0);
        let _a = InFlight::start(&t[0]);
        let _b = InFlight::start(&t[0]);
        // 2/3 in flight per weight on b0 beats 1/1 on b1 once b1 has one.
        let _c = InFlight::start(&t[1]);
        assert_eq!(b.select(&ctx(), &[]).unwrap().id, 0);
    }

    #[test]
    fn least_conn_picks_a_least_loaded_backend_through_every_kind_of_change() {
        // Pseudo-random requests starting and ending, availability, probes, weights
        // and table replacements; after each, the pick must be one a full scan
        // would call least loaded (in flight ÷ weight, among the available).
        let t = table(&[1, 2, 3, 1, 5, 1, 1]);
        let mut b = Balancer::new(Strategy::LeastConn, t.clone(), 0);
        let mut held: Vec<InFlight> = Vec::new();
        let rng = Cell::new(0x9e37_79b9_7f4a_7c15u64);
        for step in 0..20_000 {
            let state = next_random(&rng);
            let which = &t[(state >> 8) as usize % t.len()];
            match state % 16 {
                0..=6 => {
                    if let Some(picked) = b.select(&ctx(), &[]) {
                        held.push(InFlight::start(&picked));
                    }
                }
                7..=11 => {
                    if !held.is_empty() {
                        held.swap_remove((state >> 20) as usize % held.len());
                    }
                }
                12 => which.set_available(!(state >> 30).is_multiple_of(3)),
                13 => which.set_availability(Availability::Probing(1)),
                14 => which.set_effective_weight(1 + (state >> 30) as u32 % 6),
                _ => {
                    // Replace with a table that leaves one backend out for a while.
                    let mut next = t.clone();
                    if (state >> 30).is_multiple_of(2) {
                        next.remove((state >> 31) as usize % t.len());
                    }
                    b.replace(next);
                }
            }
            let ratio = |x: &Backend| (u64::from(x.in_flight()), u64::from(x.effective_weight()));
            let best = b
                .backends()
                .iter()
                .filter(|x| x.is_available())
                .map(|x| ratio(x))
                .min_by(|(i1, w1), (i2, w2)| (i1 * w2).cmp(&(i2 * w1)));
            let picked = b.select(&ctx(), &[]);
            match (best, &picked) {
                (None, None) => {}
                (Some((bi, bw)), Some(p)) => {
                    let (pi, pw) = ratio(p);
                    assert!(
                        p.is_available(),
                        "step {step}: picked an unavailable backend"
                    );
                    assert_eq!(
                        pi * bw,
                        bi * pw,
                        "step {step}: picked {pi}/{pw}, least {bi}/{bw}"
                    );
                }
                _ => panic!(
                    "step {step}: scan says {best:?}, pick says {:?}",
                    picked.map(|p| p.id)
                ),
            }
            if let Some(p) = picked {
                // A probe spent by this pick is spent for real, as the proxy does.
                p.note_selected();
            }
        }
    }

    #[test]
    fn least_conn_retries_skip_tried_backends_and_leavers_stop_counting() {
        let t = table(&[1, 1, 1]);
        let mut b = Balancer::new(Strategy::LeastConn, t.clone(), 0);
        let _busy = InFlight::start(&t[0]);
        assert_eq!(b.select(&ctx(), &[1, 2]).unwrap().id, 0);
        assert!(b.select(&ctx(), &[0, 1, 2]).is_none());
        // b1 leaves the table with a request in flight; its guard ends later.
        let leaving = InFlight::start(&t[1]);
        b.replace(vec![t[0].clone(), t[2].clone()]);
        drop(leaving);
        let _busy2 = InFlight::start(&t[2]);
        let _busy2b = InFlight::start(&t[2]);
        assert_eq!(b.select(&ctx(), &[]).unwrap().id, 0);
    }

    #[test]
    fn in_flight_guard_decrements_on_drop() {
        let t = table(&[1]);
        {
            let _g = InFlight::start(&t[0]);
            assert_eq!(t[0].in_flight(), 1);
        }
        assert_eq!(t[0].in_flight(), 0);
    }

    fn config(strategy: Strategy) -> BalancerConfig {
        BalancerConfig {
            strategy,
            ..BalancerConfig::default()
        }
    }

    fn shares(b: &Balancer, picks: usize, n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        for id in picks_with(b, picks) {
            counts[id as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / picks as f64).collect()
    }

    fn picks_with(b: &Balancer, n: usize) -> Vec<BackendId> {
        (0..n).map(|_| b.select(&ctx(), &[]).unwrap().id).collect()
    }

    fn assert_shares_follow_weights(got: &[f64], weights: &[u32]) {
        let total: u32 = weights.iter().sum();
        for (g, w) in got.iter().zip(weights) {
            let want = f64::from(*w) / f64::from(total);
            assert!(
                (g - want).abs() <= 0.02,
                "share {g:.4} vs weight share {want:.4}: {got:?}"
            );
        }
    }

    #[test]
    fn random_shares_follow_weights_within_two_percent() {
        let weights = [1, 2, 3, 4];
        let b = Balancer::with_config(&config(Strategy::Random), table(&weights), 0);
        assert_shares_follow_weights(&shares(&b, 100_000, 4), &weights);
    }

    #[test]
    fn p2c_follows_weights_when_idle_and_in_flight_when_busy() {
        let weights = [1, 2, 3, 4];
        let b = Balancer::with_config(&config(Strategy::P2c), table(&weights), 0);
        // With nothing in flight, ties go to the first draw: weighted random.
        assert_shares_follow_weights(&shares(&b, 100_000, 4), &weights);
        let t = table(&[1, 1, 1]);
        let b = Balancer::with_config(&config(Strategy::P2c), t.clone(), 0);
        let _busy: Vec<_> = (0..10).map(|_| InFlight::start(&t[0])).collect();
        let got = shares(&b, 30_000, 3);
        // b0 is picked only when both draws hit it, which never happens: draws differ.
        assert_eq!(got[0], 0.0, "{got:?}");
    }

    #[test]
    fn least_response_avoids_a_slow_backend_and_retries_it_later() {
        let t = table(&[1, 1]);
        let mut cfg = config(Strategy::LeastResponse);
        cfg.ewma_decay = Duration::from_secs(10);
        let b = Balancer::with_config(&cfg, t.clone(), 0);
        let now = Instant::now();
        t[0].observe_latency(Duration::from_millis(200), now, cfg.ewma_decay);
        t[1].observe_latency(Duration::from_millis(2), now, cfg.ewma_decay);
        let at = |now| RequestContext { now, ..ctx() };
        let picks: Vec<_> = (0..1000)
            .map(|_| b.select(&at(now), &[]).unwrap().id)
            .collect();
        assert!(
            picks.iter().all(|&id| id == 1),
            "the slow backend got traffic"
        );
        // A minute later the fast one has fresh observations (it kept the traffic)
        // while the slow one's has faded below them: the slow one is tried again.
        let later = now + Duration::from_secs(60);
        t[1].observe_latency(Duration::from_millis(2), later, cfg.ewma_decay);
        let retried = (0..1000)
            .filter(|_| b.select(&at(later), &[]).unwrap().id == 0)
            .count();
        assert!(
            retried > 300,
            "slow backend retried {retried} times of 1000"
        );
    }

    fn hashing(algorithm: HashAlgorithm) -> BalancerConfig {
        BalancerConfig {
            strategy: Strategy::ConsistentHash,
            hash_algorithm: algorithm,
            ..BalancerConfig::default()
        }
    }

    fn route(b: &Balancer, key: u64) -> String {
        let c = RequestContext {
            key_hash: hash_bytes(&key.to_le_bytes()),
            ..ctx()
        };
        b.select(&c, &[]).unwrap().name.to_string()
    }

    #[test]
    fn consistent_hashing_moves_few_keys_and_restores_them() {
        const KEYS: u64 = 20_000;
        for algorithm in [HashAlgorithm::Ring, HashAlgorithm::Maglev] {
            let full = table(&[1; 10]);
            let b = Balancer::with_config(&hashing(algorithm), full.clone(), 0);
            let before: Vec<String> = (0..KEYS).map(|k| route(&b, k)).collect();
            // Deterministic: another instance built from the same config agrees.
            let other = Balancer::with_config(&hashing(algorithm), table(&[1; 10]), 3);
            assert!(
                (0..KEYS).all(|k| route(&other, k) == before[k as usize]),
                "{algorithm:?}"
            );

            let mut fewer = full.clone();
            fewer.remove(4);
            let mut b = Balancer::with_config(&hashing(algorithm), fewer, 0);
            let moved = (0..KEYS)
                .filter(|&k| route(&b, k) != before[k as usize])
                .count();
            let moved_share = moved as f64 / KEYS as f64;
            assert!(
                moved_share <= 0.1 + 0.02,
                "{algorithm:?}: {moved_share:.4} of keys moved"
            );

            b.replace(full.clone());
            assert!(
                (0..KEYS).all(|k| route(&b, k) == before[k as usize]),
                "{algorithm:?} restore"
            );

            // A down backend's keys move, everyone else's stay, and they come back.
            full[4].set_available(false);
            for k in 0..KEYS {
                let now = route(&b, k);
                if before[k as usize] == "b4" {
                    assert_ne!(now, "b4");
                } else {
                    assert_eq!(now, before[k as usize], "{algorithm:?} key {k}");
                }
            }
            full[4].set_available(true);
            assert!(
                (0..KEYS).all(|k| route(&b, k) == before[k as usize]),
                "{algorithm:?} recovery"
            );
        }
    }

    #[test]
    fn maglev_spreads_within_one_percent_of_even() {
        let t = table(&[1; 10]);
        let table = build_maglev(&t, 65537);
        let mut counts = [0usize; 10];
        for &i in &table {
            counts[i as usize] += 1;
        }
        let even = 65537.0 / 10.0;
        for c in counts {
            assert!(((c as f64 - even) / even).abs() <= 0.01, "{counts:?}");
        }
    }

    #[test]
    fn bounded_load_caps_the_hottest_backend() {
        let t = table(&[1; 4]);
        let mut cfg = hashing(HashAlgorithm::Ring);
        cfg.hash_bounded_load = Some(1.25);
        let b = Balancer::with_config(&cfg, t.clone(), 0);
        // Every request has the same key: unbounded, all would go to one backend.
        let mut held = Vec::new();
        for _ in 0..40 {
            let backend = b
                .select(
                    &RequestContext {
                        key_hash: 42,
                        ..ctx()
                    },
                    &[],
                )
                .unwrap();
            held.push(InFlight::start(&backend));
        }
        let hottest = t.iter().map(|x| x.in_flight()).max().unwrap();
        // Cap: ceil(1.25 × (in flight + 1) / 4) at the last placement = ceil(12.5) = 13.
        assert!(hottest <= 13, "hottest has {hottest} of 40");
        assert!(t.iter().all(|x| x.in_flight() > 0));
    }

    #[test]
    fn empty_table_selects_nothing() {
        let b = Balancer::new(Strategy::LeastConn, Vec::new(), 0);
        assert!(b.select(&ctx(), &[]).is_none());
    }
}
