//! `load_index`: least-conn's running answer to "which backend is least loaded".
//!
//! Owns a winner tree over one shard's table, keyed by in-flight ÷ weight with the
//! least recently touched backend first among equals. The balancer reads the root on
//! every pick; a backend re-keys its own leaf when its load, weight or availability
//! changes, walking up at most log2(n) levels. Never allocates after it is built,
//! never touches another shard.

use std::cell::Cell;

/// A key that no available backend has: the leaf of an unavailable backend, and the
/// padding leaves past the table's end.
pub const UNAVAILABLE: u128 = u128::MAX;

/// The key of a backend with `in_flight` requests and weight `weight` (at least 1),
/// before the tie-break is added. `in_flight × 2³² ÷ weight` orders two backends
/// exactly as the fractions do while weights stay below 2¹⁶: two different fractions
/// differ by at least 1 ÷ (w₁·w₂) > 2⁻³², so their scaled floors differ too.
#[inline]
pub fn load(in_flight: u32, weight: u32) -> u64 {
    (u64::from(in_flight) << 32) / u64::from(weight.max(1))
}

/// A winner tree: leaf `i` holds backend `i`'s key, and every inner node holds the
/// leaf with the smallest key beneath it, so the root names the least loaded backend.
#[derive(Debug)]
pub struct LoadIndex {
    /// The number of leaves, a power of two (at least 1).
    width: usize,
    /// Per leaf: `load << 64 | touched`, or `UNAVAILABLE`. The low half is a sequence
    /// number, unique per key, so keys never tie and ties in load go to the backend
    /// touched longest ago (the round-robin order of least-conn's ties).
    keys: Box<[Cell<u128>]>,
    /// Node `k` (1-based heap layout; leaves at `width..2·width`) holds the index of
    /// the leaf with the smallest key in its subtree. Slot 0 is unused.
    winners: Box<[Cell<u32>]>,
    /// The next sequence number.
    clock: Cell<u64>,
}

impl LoadIndex {
    /// An index of `len` leaves, every one unavailable until it is set.
    pub fn new(len: usize) -> Self {
        let width = len.max(1).next_power_of_two();
        let winners: Box<[Cell<u32>]> = (0..2 * width)
            .map(|k| Cell::new(if k >= width { (k - width) as u32 } else { 0 }))
            .collect();
        let index = LoadIndex {
            width,
            keys: (0..width).map(|_| Cell::new(UNAVAILABLE)).collect(),
            winners,
            clock: Cell::new(0),
        };
        for k in (1..width).rev() {
            index.winners[k].set(index.smaller(2 * k, 2 * k + 1));
        }
        index
    }

    /// The leaf with the smallest key, if any leaf is available.
    #[inline]
    pub fn least(&self) -> Option<usize> {
        let leaf = self.winners[1].get() as usize;
        (self.keys[leaf].get() != UNAVAILABLE).then_some(leaf)
    }

    /// The key of `leaf`: smaller is less loaded, or as loaded and touched earlier.
    #[inline]
    pub fn key(&self, leaf: usize) -> u128 {
        self.keys[leaf].get()
    }

    /// Re-keys `leaf` with `load` (from [`load`]), or as unavailable with `None`,
    /// and moves it behind every other leaf of the same load.
    #[inline]
    pub fn set(&self, leaf: usize, load: Option<u64>) {
        let key = match load {
            Some(load) => (u128::from(load) << 64) | self.tick(),
            None => UNAVAILABLE,
        };
        self.rekey(leaf, key);
    }

    /// Moves `leaf` behind every other leaf of its load (it was just picked).
    #[inline]
    pub fn touch(&self, leaf: usize) {
        let key = self.keys[leaf].get();
        if key != UNAVAILABLE {
            self.rekey(leaf, (key >> 64 << 64) | self.tick());
        }
    }

    /// The next sequence number, as the low half of a key.
    #[inline]
    fn tick(&self) -> u128 {
        let touched = self.clock.get();
        self.clock.set(touched + 1);
        u128::from(touched)
    }

    /// Stores `key` at `leaf` and walks up, fixing the winners it changes.
    #[inline]
    fn rekey(&self, leaf: usize, key: u128) {
        self.keys[leaf].set(key);
        // Carry the winner up: at each level only the sibling's winner is read.
        let (mut node, mut winner, mut best) = (self.width + leaf, leaf as u32, key);
        while node > 1 {
            let other = self.winners[node ^ 1].get();
            let other_key = self.keys[other as usize].get();
            if other_key < best {
                (winner, best) = (other, other_key);
            }
            node /= 2;
            let before = self.winners[node].replace(winner);
            // Above a node whose winner is neither changed nor the re-keyed leaf,
            // every input is as it was.
            if before == winner && winner as usize != leaf {
                break;
            }
        }
    }

    /// The winner of two sibling nodes.
    #[inline]
    fn smaller(&self, a: usize, b: usize) -> u32 {
        let (wa, wb) = (self.winners[a].get(), self.winners[b].get());
        if self.keys[wb as usize].get() < self.keys[wa as usize].get() {
            wb
        } else {
            wa
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaf a scan would pick: smallest key, first index among equals.
    fn scan(index: &LoadIndex) -> Option<usize> {
        let (leaf, key) = index
            .keys
            .iter()
            .map(Cell::get)
            .enumerate()
            .min_by_key(|&(i, k)| (k, i))?;
        (key != UNAVAILABLE).then_some(leaf)
    }

    #[test]
    fn an_empty_or_unset_index_has_no_least() {
        assert_eq!(LoadIndex::new(0).least(), None);
        assert_eq!(LoadIndex::new(5).least(), None);
    }

    #[test]
    fn load_orders_as_the_fractions_do() {
        assert!(load(2, 3) < load(1, 1));
        assert_eq!(load(2, 4), load(1, 2));
        assert!(load(999, 1000) < load(998, 999) || load(998, 999) < load(999, 1000));
        assert!(load(1, 1000) > 0);
        assert!(load(u32::MAX, 1) > load(u32::MAX - 1, 1));
    }

    #[test]
    fn ties_go_to_the_leaf_touched_longest_ago() {
        let index = LoadIndex::new(3);
        for leaf in 0..3 {
            index.set(leaf, Some(0));
        }
        let mut order = Vec::new();
        for _ in 0..6 {
            let leaf = index.least().unwrap();
            order.push(leaf);
            index.touch(leaf);
        }
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        // Touching an unavailable leaf leaves it unavailable.
        index.set(1, None);
        index.touch(1);
        assert_eq!(index.key(1), UNAVAILABLE);
        // A lighter load wins whatever its turn.
        index.set(2, Some(0));
        index.set(0, Some(load(1, 1)));
        assert_eq!(index.least(), Some(2));
    }

    #[test]
    fn the_root_agrees_with_a_scan_after_every_change() {
        // Deterministic pseudo-random changes, including leaves going unavailable.
        let rng = Cell::new(0x2545_f491_4f6c_dd1du64);
        for len in [1, 2, 3, 7, 8, 100] {
            let index = LoadIndex::new(len);
            for step in 0..5_000 {
                let state = crate::cluster::balancer::next_random(&rng);
                let leaf = (state % len as u64) as usize;
                let value = (state >> 40) % 7;
                if value == 6 {
                    index.touch(leaf);
                } else {
                    index.set(
                        leaf,
                        (value != 5).then(|| load(value as u32, 1 + (state >> 8) as u32 % 4)),
                    );
                }
                assert_eq!(index.least(), scan(&index), "len {len}, step {step}");
            }
        }
    }
}
