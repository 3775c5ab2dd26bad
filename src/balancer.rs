//! `balancer`: picks a backend for a request, per shard.
//!
//! Owns one shard's backend table and the selection strategy's state. Called by the
//! shard's connection tasks on every request attempt. A strategy is an enum variant
//! dispatched with `match`; its state lives in `Cell`s of this shard. Never blocks,
//! never allocates on `select`, never touches another shard.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;

use crate::backend::{Backend, BackendId};
use crate::config::Strategy;

/// What a strategy may look at to choose (later: headers for hashing strategies).
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The downstream client's address.
    pub client_ip: IpAddr,
}

/// Strategy state. Vectors are aligned with the table's order.
#[derive(Debug)]
enum Selector {
    /// Next index to try.
    RoundRobin { next: Cell<usize> },
    /// Smooth weighted round-robin (nginx): each backend's current weight.
    WeightedRoundRobin { current: Vec<Cell<i64>> },
    /// Fewest in-flight requests per unit of weight; ties go round-robin from `next`.
    LeastConn { next: Cell<usize> },
}

/// One shard's table of backends and the strategy that picks among them.
#[derive(Debug)]
pub struct Balancer {
    /// The configured strategy, kept to rebuild state when the table changes.
    strategy: Strategy,
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
    /// (modulo the table's length).
    pub fn new(strategy: Strategy, backends: Vec<Rc<Backend>>, offset: usize) -> Self {
        let selector = Self::selector_for(strategy, backends.len(), offset);
        Balancer {
            strategy,
            offset,
            backends,
            selector,
        }
    }

    fn selector_for(strategy: Strategy, len: usize, offset: usize) -> Selector {
        let start = if len == 0 { 0 } else { offset % len };
        match strategy {
            Strategy::RoundRobin => Selector::RoundRobin {
                next: Cell::new(start),
            },
            Strategy::WeightedRoundRobin => Selector::WeightedRoundRobin {
                current: (0..len).map(|_| Cell::new(0)).collect(),
            },
            Strategy::LeastConn => Selector::LeastConn {
                next: Cell::new(start),
            },
        }
    }

    /// Replaces the table (a change from the control thread); strategy state restarts.
    pub fn replace(&mut self, backends: Vec<Rc<Backend>>) {
        self.selector = Self::selector_for(self.strategy, backends.len(), self.offset);
        self.backends = backends;
    }

    /// The current table.
    pub fn backends(&self) -> &[Rc<Backend>] {
        &self.backends
    }

    /// Picks an available backend that is not in `tried`, or `None`.
    pub fn select(&self, _ctx: &RequestContext, tried: &[BackendId]) -> Option<Rc<Backend>> {
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
            Selector::LeastConn { next } => {
                let start = next.get();
                let mut best: Option<usize> = None;
                for k in 0..n {
                    let i = wrap(start + k, n);
                    let b = &self.backends[i];
                    if !eligible(b) {
                        continue;
                    }
                    // in_flight/weight < best_in_flight/best_weight, without division.
                    let better = best.is_none_or(|j| {
                        let o = &self.backends[j];
                        u64::from(b.in_flight()) * u64::from(o.effective_weight())
                            < u64::from(o.in_flight()) * u64::from(b.effective_weight())
                    });
                    if better {
                        best = Some(i);
                    }
                }
                let i = best?;
                next.set(wrap(i + 1, n));
                i
            }
        };
        Some(Rc::clone(&self.backends[index]))
    }
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
    use crate::backend::InFlight;
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
    fn in_flight_guard_decrements_on_drop() {
        let t = table(&[1]);
        {
            let _g = InFlight::start(&t[0]);
            assert_eq!(t[0].in_flight(), 1);
        }
        assert_eq!(t[0].in_flight(), 0);
    }

    #[test]
    fn empty_table_selects_nothing() {
        let b = Balancer::new(Strategy::LeastConn, Vec::new(), 0);
        assert!(b.select(&ctx(), &[]).is_none());
    }
}
