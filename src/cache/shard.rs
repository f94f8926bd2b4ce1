//! One shard of the cache: its map, queues and books, under one lock.
//!
//! The map holds each extent's [`CacheEntry`]: its bytes, or the load in progress.
//! Ready entries sit on one of two FIFO queues, probation or main, and the shard
//! keeps the bytes each holds; what enters main and what leaves is decided by the
//! eviction rules in [`eviction`] (S3-FIFO, size-aware), helped by the [`Ghost`]
//! and the [`Sketch`].
//!
//! Queues hold `(extent, generation)` and are checked lazily against the map, so
//! removals cost nothing up front; a queue is compacted once garbage outnumbers live
//! entries.

mod adapt;
mod eviction;
#[cfg(all(test, not(loom)))]
mod tests;

use super::config::Limits;
use super::flight::Flight;
use super::ghost::Ghost;
use super::hasher::IdMap;
use super::sketch::Sketch;
use super::{CacheStats, Priority};
use crate::bytes::Bytes;
use crate::record::ExtentId;
use crate::sync::Arc;
use std::collections::VecDeque;

/// The most reads an entry's counter remembers.
pub(crate) const MAX_FREQ: u8 = 3;

/// Bytes charged per entry on top of its payload (map slot, queue slot, `Arc`).
pub(crate) const ENTRY_OVERHEAD: u64 = 96;

/// Demand fills after which the size-aware mean halves its counts: a decaying
/// mean in which each block of 32 768 older fills weighs half the next.
const MEAN_FILLS: u64 = 1 << 16;

/// The heaviest entry a shard keeps: weights are stored in 40 bits so that an
/// entry and its key fill half a cache line (below). Heavier fills (a terabyte)
/// are never cached and are counted as oversized.
pub(crate) const MAX_WEIGHT: u64 = (1 << 40) - 1;

/// `Entry::bits`: reads, saturating at [`MAX_FREQ`] (the low two bits).
const FREQ: u8 = 0b11;
/// `Entry::bits`: filled by a prefetch and not read since.
const PREFETCHED: u8 = 1 << 2;
/// `Entry::bits`: admitted to main by the probation duel and not read since;
/// its weight is in `Shard::dueled_used`.
const DUELED: u8 = 1 << 3;
/// `Entry::bits`: filled by a demand read (or a prefetch load a demand read
/// joined).
const DEMAND_FILL: u8 = 1 << 4;

/// A ready entry: the bytes of one generation and the eviction state.
///
/// 24 bytes, so that the map's slot, key included, is 32 and a hit reads one
/// cache line of it; at 40 bytes half the slots straddled two (the per-pair
/// ratio to quick_cache's `get` in `hit-ab`, BENCHMARKS.md "The hit path's
/// slot"). Hence the packed weight and flags; `in_main` stays a `bool` so that
/// [`CacheEntry`]'s loading variants fit in its niche.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) generation: u64,
    pub(crate) bytes: Bytes,
    /// What the entry weighs against the capacity (the weigher's answer plus the
    /// per-entry overhead), fixed at insert: the low 32 of its 40 bits...
    weight_low: u32,
    /// ... and the high 8.
    weight_high: u8,
    /// Reads since the fill, saturating (folded into the sketch on eviction).
    pub(super) hits: u8,
    /// [`FREQ`] (on probation a demand fill counts one and a prefetch none; on
    /// main it counts reads since promotion or the last pass), [`PREFETCHED`],
    /// [`DUELED`] and [`DEMAND_FILL`].
    bits: u8,
    pub(super) in_main: bool,
}

impl Entry {
    /// What the entry weighs against the capacity.
    #[inline]
    pub(super) fn weight(&self) -> u64 {
        u64::from(self.weight_high) << 32 | u64::from(self.weight_low)
    }

    /// Reads counted for eviction, at most [`MAX_FREQ`].
    #[inline]
    pub(super) fn freq(&self) -> u8 {
        self.bits & FREQ
    }

    /// Sets the read count; `freq` is at most [`MAX_FREQ`].
    #[inline]
    pub(super) fn set_freq(&mut self, freq: u8) {
        debug_assert!(freq <= MAX_FREQ);
        self.bits = (self.bits & !FREQ) | (freq & FREQ);
    }

    /// Filled by a prefetch and not read since.
    #[inline]
    pub(super) fn prefetched(&self) -> bool {
        self.bits & PREFETCHED != 0
    }

    /// Admitted to main by the duel and not read since.
    #[inline]
    pub(super) fn dueled(&self) -> bool {
        self.bits & DUELED != 0
    }

    /// Marks the entry admitted to main by the duel.
    #[inline]
    pub(super) fn set_dueled(&mut self) {
        self.bits |= DUELED;
    }

    /// Filled by a demand read.
    #[inline]
    pub(super) fn demand_fill(&self) -> bool {
        self.bits & DEMAND_FILL != 0
    }
}

/// What the cache holds for one extent: its bytes, or the load in progress.
///
/// The loads are two variants rather than one with a flag, so that they fit in
/// [`Entry`]'s niche and the enum stays 24 bytes (a `bool` beside them makes it
/// 32).
#[derive(Debug)]
pub(crate) enum CacheEntry {
    Ready(Entry),
    /// A load that fills as a demand fill: a demand read's, or a prefetch's
    /// that a demand read joined or took over.
    Loading {
        generation: u64,
        flight: Arc<Flight>,
    },
    /// A prefetch's load no demand read has joined.
    Prefetching {
        generation: u64,
        flight: Arc<Flight>,
    },
}

impl CacheEntry {
    /// The generation and flight of a load in progress (either variant).
    pub(crate) fn load(&self) -> Option<(u64, &Arc<Flight>)> {
        match self {
            CacheEntry::Ready(_) => None,
            CacheEntry::Loading { generation, flight }
            | CacheEntry::Prefetching { generation, flight } => Some((*generation, flight)),
        }
    }
}

// `repr(C)`: the map's header and the counters come first, on the cache line of
// the shard's lock, so a hit touches that line and the map's own memory only.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Shard {
    pub(crate) map: IdMap<CacheEntry>,
    pub(crate) stats: CacheStats,
    probation: VecDeque<(ExtentId, u64)>,
    main: VecDeque<(ExtentId, u64)>,
    ghost: Ghost,
    sketch: Sketch,
    used: u64,
    /// The part of `used` held by entries on main.
    main_used: u64,
    /// The part of `main_used` held by entries with `dueled` set; at most
    /// `Limits::duel_budget`.
    dueled_used: u64,
    /// Demand fills counted in the size-aware mean and their total weight;
    /// halved together when `fills` reaches [`MEAN_FILLS`]. `fill_weight` is at
    /// most `MEAN_FILLS` times the heaviest entry: exact for entries under 2^48
    /// bytes, saturating (the mean then underestimated) beyond.
    fills: u64,
    fill_weight: u64,
    /// The shard has evicted for space at least once (warm-up is over).
    has_evicted: bool,
    /// Probation's share under the adaptive policy (`Limits::adaptive`).
    climber: adapt::Climber,
    /// Entries evicted for space since the cache last drained this, kept only
    /// while an eviction listener is installed (`Limits::report_evictions`); the
    /// cache calls the listener after releasing the shard lock.
    pub(crate) evicted_out: Vec<super::Evicted>,
    /// Bytes of this shard's capacity lent to the cache's large entries (see
    /// `cache::large`): its own entries are evicted down to `capacity -
    /// borrowed`. Set by the cache under the shard lock before an insert.
    pub(crate) borrowed: u64,
}

/// The default weight: payload plus the per-entry overhead.
pub(crate) fn weight(bytes: &[u8]) -> u64 {
    bytes.len() as u64 + ENTRY_OVERHEAD
}

impl Shard {
    /// A hit: marks the entry read and returns its bytes.
    #[inline]
    pub(crate) fn touch(&mut self, id: ExtentId, generation: u64) -> Option<Bytes> {
        let Some(CacheEntry::Ready(entry)) = self.map.get_mut(&id) else {
            return None;
        };
        if entry.generation != generation {
            return None;
        }
        if entry.bits & FREQ != MAX_FREQ {
            entry.bits += 1;
        }
        entry.hits = entry.hits.saturating_add(1);
        // One branch for both first-read flags, taken only by an unread prefetch
        // or a duel admission (BENCHMARKS.md: hit-path A/B).
        if entry.bits & (PREFETCHED | DUELED) != 0 {
            if entry.prefetched() {
                self.stats.prefetch_used += 1;
            }
            if entry.dueled() {
                self.dueled_used -= entry.weight();
            }
            entry.bits &= !(PREFETCHED | DUELED);
        }
        Some(entry.bytes.clone())
    }

    /// Inserts a ready entry, replacing whatever the map held for `id`, then evicts
    /// down to the capacity. Entries heavier than the whole shard are not kept.
    pub(crate) fn insert(
        &mut self,
        id: ExtentId,
        generation: u64,
        bytes: Bytes,
        w: u64,
        priority: Priority,
        limits: &Limits,
    ) {
        if w > self.room(limits) || w > MAX_WEIGHT {
            // Heavier than the whole shard (the cache sends fills heavier than a
            // regular shard to its large shard, whose capacity is the cache's),
            // or than the room it has left while it lends to a large entry:
            // never cached, and counted so that the capacity can be fixed.
            // Evicting for it would empty the shard and still not make room.
            self.stats.oversized += 1;
            self.remove(id);
            return;
        }
        let demand = priority == Priority::Demand;
        if demand {
            self.sketch.add(id, 1);
            // Prefetches stay out of the mean: speculation must not make demand
            // entries look light (and so reach main unread).
            self.fills += 1;
            self.fill_weight = self.fill_weight.saturating_add(w);
            if self.fills >= MEAN_FILLS {
                self.fills /= 2;
                self.fill_weight /= 2;
            }
        }
        if limits.adaptive && self.has_evicted {
            self.climber.sample(&self.stats, self.map.len(), limits);
        }
        let in_main = self.enters_main(id, w, demand, limits);
        // On main the counter counts reads since admission; on probation the
        // demand fill is the first read.
        let freq = u8::from(demand && !in_main);
        let flags = if demand { DEMAND_FILL } else { PREFETCHED };
        let entry = Entry {
            generation,
            bytes,
            // Bounded to 40 bits by the check above.
            weight_low: w as u32,
            weight_high: (w >> 32) as u8,
            hits: 0,
            bits: freq | flags,
            in_main,
        };
        // One hash probe: replace whatever the map held (usually our load's slot).
        if let Some(CacheEntry::Ready(old)) = self.map.insert(id, CacheEntry::Ready(entry)) {
            self.forget(&old);
        }
        if in_main {
            self.main.push_back((id, generation));
            self.main_used += w;
        } else {
            self.probation.push_back((id, generation));
        }
        self.used += w;
        self.stats.inserted += 1;
        // Bounded: each pass either frees an entry or the shard is empty.
        while self.used > self.room(limits) && self.evict_one(limits, priority) {}
        self.compact_queues();
    }

    /// The bytes this shard may hold now: its capacity less what it lent.
    fn room(&self, limits: &Limits) -> u64 {
        limits.capacity.saturating_sub(self.borrowed)
    }

    /// Evicts down to the room left after lending `borrowed` bytes (bounded:
    /// each pass frees an entry or the shard is empty).
    pub(crate) fn lend(&mut self, borrowed: u64, limits: &Limits) {
        self.borrowed = borrowed;
        while self.used > self.room(limits) && self.evict_one(limits, Priority::Demand) {}
        self.compact_queues();
    }

    /// Removes `id`'s slot (entry or load), returning it.
    pub(crate) fn remove(&mut self, id: ExtentId) -> Option<CacheEntry> {
        let slot = self.map.remove(&id)?;
        if let CacheEntry::Ready(entry) = &slot {
            self.forget(entry);
        }
        Some(slot)
    }

    /// Takes a departed entry's weight off the books.
    fn forget(&mut self, entry: &Entry) {
        let w = entry.weight();
        self.used -= w;
        if entry.in_main {
            self.main_used -= w;
        }
        if entry.dueled() {
            self.dueled_used -= w;
        }
    }

    /// Bytes held by ready entries, overhead included.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Bytes held by entries on probation.
    fn probation_used(&self) -> u64 {
        self.used - self.main_used
    }

    /// Whether a queue position still names a live entry on that queue.
    fn live(&self, id: ExtentId, generation: u64, main: bool) -> bool {
        matches!(self.map.get(&id), Some(CacheEntry::Ready(e)) if e.generation == generation && e.in_main == main)
    }

    /// Drops stale positions from both queues once they outnumber live entries
    /// (twice the map's length, plus slack).
    fn compact_queues(&mut self) {
        let live = self.map.len();
        if self.probation.len() + self.main.len() <= 2 * live + 64 {
            return;
        }
        let map = &self.map;
        let keep = |(id, g): &(ExtentId, u64), main: bool| matches!(map.get(id), Some(CacheEntry::Ready(e)) if e.generation == *g && e.in_main == main);
        self.probation.retain(|p| keep(p, false));
        self.main.retain(|p| keep(p, true));
    }
}
