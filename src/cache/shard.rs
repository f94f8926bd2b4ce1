//! One shard of the cache: a map, two eviction queues, counters.
//!
//! Eviction follows S3-FIFO: new entries enter a *probation* FIFO; when eviction
//! reaches an entry there, it moves to *main* if it was read at least twice and is
//! evicted otherwise (a sequential scan reads each entry once). Main is a CLOCK that is only evicted from once it holds more
//! than [`MAIN_SHARE_PERCENT`] of the capacity, so probation always keeps room for
//! new and prefetched entries (a first version evicted probation first, always:
//! the benchmark showed a sequential scan promoting every entry it read to main and
//! then evicting its own readahead window). A prefetched entry enters without hit
//! credit, so a prefetch that is never read is the first to go and never displaces
//! the hot set. Queues hold `(extent, generation)` and are
//! checked lazily against the map, so removals cost nothing up front; a queue is
//! compacted once garbage outnumbers live entries.

use super::flight::Flight;
use super::{CacheStats, Priority};
use crate::bytes::Bytes;
use crate::record::ExtentId;
use crate::sync::Arc;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes extent ids with one folded multiply. Ids are chosen by the engine, not by
/// an adversary, so SipHash's DoS resistance buys nothing here and costs a third of
/// the hit path (measured in `benches/cache.rs`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        let product = u128::from(n ^ self.0) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<ExtentId, V, BuildHasherDefault<IdHasher>>;

/// The most reads an entry's counter remembers.
const MAX_FREQ: u8 = 3;

/// The share of a shard's capacity that main may fill before it is evicted from.
pub(crate) const MAIN_SHARE_PERCENT: u64 = 90;

/// Bytes charged per entry on top of its payload (map slot, queue slot, `Arc`).
pub(crate) const ENTRY_OVERHEAD: u64 = 96;

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) generation: u64,
    pub(crate) bytes: Bytes,
    /// Reads, saturating at [`MAX_FREQ`]: a demand fill counts one, a prefetch none.
    freq: u8,
    prefetched: bool,
    in_main: bool,
}

#[derive(Debug)]
pub(crate) enum Slot {
    Ready(Entry),
    Loading {
        generation: u64,
        flight: Arc<Flight>,
        /// A demand read joined this (prefetch) load.
        demand: bool,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Shard {
    pub(crate) map: IdMap<Slot>,
    probation: VecDeque<(ExtentId, u64)>,
    main: VecDeque<(ExtentId, u64)>,
    used: u64,
    /// The part of `used` held by entries on main.
    main_used: u64,
    pub(crate) stats: CacheStats,
}

fn weight(bytes: &Bytes) -> u64 {
    bytes.len() as u64 + ENTRY_OVERHEAD
}

impl Shard {
    /// A hit: marks the entry read and returns its bytes.
    #[inline]
    pub(crate) fn touch(&mut self, id: ExtentId, generation: u64) -> Option<Bytes> {
        let Some(Slot::Ready(entry)) = self.map.get_mut(&id) else {
            return None;
        };
        if entry.generation != generation {
            return None;
        }
        entry.freq = (entry.freq + 1).min(MAX_FREQ);
        if entry.prefetched {
            entry.prefetched = false;
            self.stats.prefetch_used += 1;
        }
        Some(entry.bytes.clone())
    }

    /// Inserts a ready entry, replacing whatever the map held for `id`, then evicts
    /// down to `capacity`. Entries heavier than the whole shard are not kept.
    pub(crate) fn insert(
        &mut self,
        id: ExtentId,
        generation: u64,
        bytes: Bytes,
        priority: Priority,
        capacity: u64,
    ) {
        let w = weight(&bytes);
        if w > capacity {
            self.remove(id);
            return;
        }
        let prefetched = priority == Priority::Prefetch;
        let entry = Entry {
            generation,
            bytes,
            freq: u8::from(!prefetched),
            prefetched,
            in_main: false,
        };
        // One hash probe: replace whatever the map held (usually our load's slot).
        if let Some(Slot::Ready(old)) = self.map.insert(id, Slot::Ready(entry)) {
            self.forget(&old);
        }
        self.probation.push_back((id, generation));
        self.used += w;
        self.stats.inserted += 1;
        // Bounded: each pass either frees an entry or the shard is empty.
        while self.used > capacity && self.evict_one(capacity) {}
        self.compact_queues();
    }

    /// Removes `id`'s slot (entry or load), returning it.
    pub(crate) fn remove(&mut self, id: ExtentId) -> Option<Slot> {
        let slot = self.map.remove(&id)?;
        if let Slot::Ready(entry) = &slot {
            self.forget(entry);
        }
        Some(slot)
    }

    /// Takes a departed entry's weight off the books.
    fn forget(&mut self, entry: &Entry) {
        let w = weight(&entry.bytes);
        self.used -= w;
        if entry.in_main {
            self.main_used -= w;
        }
    }

    /// Bytes held by ready entries, overhead included.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Whether a queue position still names a live entry on that queue.
    fn live(&self, id: ExtentId, generation: u64, main: bool) -> bool {
        matches!(self.map.get(&id), Some(Slot::Ready(e)) if e.generation == generation && e.in_main == main)
    }

    /// Evicts one entry; `false` if nothing is left to evict.
    fn evict_one(&mut self, capacity: u64) -> bool {
        // Bounded: every iteration pops a queue position; a position is pushed back
        // only after lowering its entry's counter or promoting it, at most
        // MAX_FREQ + 1 times per entry.
        let budget = (usize::from(MAX_FREQ) + 2) * (self.probation.len() + self.main.len()) + 1;
        for _ in 0..budget {
            let main_full = self.main_used > capacity / 100 * MAIN_SHARE_PERCENT;
            let from_main = (main_full || self.probation.is_empty()) && !self.main.is_empty();
            let popped = if from_main {
                self.main.pop_front()
            } else {
                self.probation.pop_front()
            };
            let Some((id, generation)) = popped else {
                return false;
            };
            if !self.live(id, generation, from_main) {
                continue;
            }
            let Some(Slot::Ready(entry)) = self.map.get_mut(&id) else {
                continue;
            };
            // Probation: promote what was read twice (a scan reads each entry once and
            // must not flood main). Main: CLOCK with a small counter.
            let keep = if from_main {
                entry.freq > 0
            } else {
                entry.freq >= 2
            };
            if keep {
                if from_main {
                    entry.freq -= 1;
                } else {
                    entry.in_main = true;
                    self.main_used += weight(&entry.bytes);
                }
                self.main.push_back((id, generation));
                continue;
            }
            if entry.prefetched {
                self.stats.prefetch_wasted += 1;
            }
            self.stats.evicted += 1;
            self.remove(id);
            return true;
        }
        false
    }

    fn compact_queues(&mut self) {
        let live = self.map.len();
        if self.probation.len() + self.main.len() <= 2 * live + 64 {
            return;
        }
        let map = &self.map;
        let keep = |(id, g): &(ExtentId, u64), main: bool| matches!(map.get(id), Some(Slot::Ready(e)) if e.generation == *g && e.in_main == main);
        self.probation.retain(|p| keep(p, false));
        self.main.retain(|p| keep(p, true));
    }
}
