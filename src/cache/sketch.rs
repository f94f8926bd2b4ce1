//! A count-min sketch of fill and read frequencies, for the TinyLFU tests.

use crate::record::ExtentId;

/// A count-min sketch of how often ids were filled or read, as in TinyLFU: four
/// counters per id in one table of 16 per entry, each saturating at 15, all halved
/// every `sample` (10 × entries) additions so old popularity fades. Used only with
/// the size-aware policy, frequency admission or the probation duel; unsized
/// (empty, adding nothing) otherwise.
#[derive(Debug, Default)]
pub(super) struct Sketch {
    counters: Vec<u8>,
    mask: u64,
    additions: u64,
    sample: u64,
}

impl Sketch {
    pub(super) fn size_for(&mut self, entries: usize) {
        if !self.counters.is_empty() {
            return;
        }
        let entries = entries.max(16);
        let width = (entries * 16).next_power_of_two();
        self.counters = vec![0; width];
        self.mask = width as u64 - 1;
        self.sample = 10 * entries as u64;
    }

    /// Row `i`'s counter for `id`: Fibonacci hashing (the top bits of a
    /// multiply), a different seed per row.
    fn index(&self, id: ExtentId, i: u64) -> usize {
        const SEEDS: [u64; 4] = [
            0x243F_6A88_85A3_08D3,
            0x1319_8A2E_0370_7344,
            0xA409_3822_299F_31D0,
            0x082E_FA98_EC4E_6C89,
        ];
        let h = (id.0 ^ SEEDS[i as usize]).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h ^ (h >> 32)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32) as usize & self.mask as usize
    }

    /// Whether the sketch has been sized (before that it counts nothing).
    pub(super) fn is_sized(&self) -> bool {
        !self.counters.is_empty()
    }

    pub(super) fn add(&mut self, id: ExtentId, n: u8) {
        if self.counters.is_empty() || n == 0 {
            return;
        }
        for i in 0..4 {
            let k = self.index(id, i);
            self.counters[k] = self.counters[k].saturating_add(n).min(15);
        }
        self.additions += u64::from(n);
        if self.additions >= self.sample {
            for c in &mut self.counters {
                *c /= 2;
            }
            self.additions /= 2;
        }
    }

    pub(super) fn estimate(&self, id: ExtentId) -> u8 {
        if self.counters.is_empty() {
            return 0;
        }
        (0..4)
            .map(|i| self.counters[self.index(id, i)])
            .min()
            .unwrap_or(0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_sketch_counts_and_ages() {
        let mut sketch = Sketch::default();
        sketch.add(ExtentId(7), 1);
        assert_eq!(sketch.estimate(ExtentId(7)), 0, "unsized: counts nothing");
        sketch.size_for(1024);
        for _ in 0..6 {
            sketch.add(ExtentId(7), 1);
        }
        assert!(sketch.estimate(ExtentId(7)) >= 6);
        assert!(sketch.estimate(ExtentId(9)) <= 1, "an unseen id is rare");
        // 10 × 1 024 additions halve every counter.
        for id in 100..10_340 {
            sketch.add(ExtentId(id), 1);
        }
        assert!(sketch.estimate(ExtentId(7)) < 6, "aged");
        assert!(sketch.counters.iter().all(|&c| c <= 15));
    }
}
