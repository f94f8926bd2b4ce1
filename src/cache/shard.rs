//! One shard of the cache: a map, two eviction queues, a ghost queue, counters.
//!
//! Eviction is S3-FIFO (Yang et al., SOSP'23, as in libCacheSim's current
//! `S3FIFO.c`), parameters in [`CachePolicy`](super::CachePolicy). New entries enter
//! a small *probation* FIFO; eviction takes from it while it holds more than its
//! share of the capacity (8 %), and from *main* otherwise.
//!
//! * An entry leaving probation moves to main if it was read often enough (by
//!   default a demand fill and two more reads; a prefetch fill counts none, so a
//!   sequential scan, which reads each entry once, never floods main). Its counter
//!   restarts at zero there. Otherwise it is dropped, and if a demand read filled it,
//!   its id is remembered in the *ghost* FIFO.
//! * A demand fill whose id is in the ghost enters main directly: reuse at a
//!   distance longer than the probation window still promotes. The ghost holds ids
//!   only, bounded by the bytes the entries weighed (as many as the cache holds).
//!   Design note: libCacheSim's S3-FIFO uses probation 10 % and a ghost of 90 %,
//!   which tied moka at one measured point of the real traces (ARC P3, 65 536
//!   pages); 8 % and 100 % lead moka and quick_cache at every point (31.16 % on
//!   P3 at 65 536 pages; BENCHMARKS.md, "ARC traces: probation 8 %, ghost
//!   100 %"). An ARC-style adaptive probation (grown on ghost hits, shrunk on hits
//!   in a ghost of main's evictions) was measured there too and lost (27.87 %).
//! * Main is a CLOCK with a counter saturating at [`MAX_FREQ`]: an entry read since
//!   it was last examined is reinserted with its counter lowered by one.
//! * Size-aware (`CachePolicy::size_aware`, on by default): the shard keeps a
//!   decaying mean of its demand fills' weights. A demand-filled entry of at most
//!   half that mean leaving probation unread moves to main rather than the ghost,
//!   and a ghost hit heavier than the mean must pass the TinyLFU test below to
//!   enter main. With one weight for every entry neither rule can apply, so every
//!   decision is plain S3-FIFO's.
//!   Design note: the miss *count* of a trace with mixed sizes is decided by the
//!   light entries (on CloudPhysics 43 % of the requests fall on the 4 % of the
//!   distinct bytes held by objects of 8 KiB or less); hit density per byte, as
//!   in GDSF and AdaptSize, is the lever. Every policy without it, set dueling
//!   and miniature simulations included, lost to a peer at some capacity
//!   (`examples/policy_lab.rs`, BENCHMARKS.md, issue 11).
//! * The count-min sketch behind the TinyLFU tests is sized when the shard first
//!   evicts and then counts the demand fills of the entries it holds, once each,
//!   as it counts every later fill. Design note: without that, everything warm-up
//!   loaded rated below any entry filled once afterwards, and the 16-shard cache
//!   missed 3.5 % more than 1 shard at 1 GiB on CloudPhysics (0.9 % with it).
//! * Optional TinyLFU admission (`CachePolicy::frequency_admission`): every ghost
//!   hit enters main only if main has room under its share or the sketch rates
//!   it above main's front entry.
//! * Optional probation duel (`CachePolicy::probation_duel_percent`): a demand
//!   entry leaving probation unread enters main if the sketch rates it above the
//!   sum of the main entries its bytes would displace (moka's size-aware rule),
//!   while entries so admitted and not yet read on main hold less than a budget.
//!   Design note: an unbounded duel replaces what warm-up loaded with entries that
//!   are only rated higher because the sketch started when the shard filled; the
//!   budget caps that turnover (`examples/policy_lab.rs`, BENCHMARKS.md). The
//!   budget is released on the entry's first read on main, in the hit path, and
//!   not lazily at its next CLOCK pass: the lazy release measured 2 of 8
//!   capacities where the eager one reached 7.
//! * Warm-up: until the shard first evicts, demand fills beyond probation's share
//!   enter main, so a cache that is not full yet keeps what it loaded as it would
//!   once full, instead of behaving as one big probation FIFO.
//!
//! Prefetches never displace what demand reads use: a prefetch fill enters
//! probation without read credit and never via the ghost, and the eviction it
//! causes promotes, rather than drops, any entry read since its fill. A prefetch
//! that is never read is among the first to go.
//!
//! Queues hold `(extent, generation)` and are checked lazily against the map, so
//! removals cost nothing up front; a queue is compacted once garbage outnumbers live
//! entries.

use super::flight::Flight;
use super::policy::Limits;
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
pub(crate) const MAX_FREQ: u8 = 3;

/// Bytes charged per entry on top of its payload (map slot, queue slot, `Arc`).
pub(crate) const ENTRY_OVERHEAD: u64 = 96;

/// Demand fills after which the size-aware mean halves its counts: a decaying
/// mean in which each block of 32 768 older fills weighs half the next.
const MEAN_FILLS: u64 = 1 << 16;

/// Whether an entry of weight `w` is heavier than the mean of `fills` fills
/// weighing `total` (no fills: no). `u128`: no product can overflow.
fn heavier_than_mean(w: u64, fills: u64, total: u64) -> bool {
    u128::from(w) * u128::from(fills) > u128::from(total)
}

/// Whether an entry of weight `w` weighs at most half the mean of `fills` fills
/// weighing `total` (no fills: no).
fn at_most_half_mean(w: u64, fills: u64, total: u64) -> bool {
    fills > 0 && 2 * u128::from(w) * u128::from(fills) <= u128::from(total)
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) generation: u64,
    pub(crate) bytes: Bytes,
    /// Reads, saturating at [`MAX_FREQ`]. On probation a demand fill counts one and a
    /// prefetch none; on main it counts reads since promotion or the last pass.
    freq: u8,
    /// Reads since the fill, saturating (folded into the sketch on eviction).
    hits: u8,
    /// Filled by a prefetch and not read since.
    prefetched: bool,
    /// Filled by a demand read (or a prefetch load a demand read joined).
    demand_fill: bool,
    /// Admitted to main by the probation duel and not read since; its weight is
    /// in `Shard::dueled_used`.
    dueled: bool,
    in_main: bool,
    /// What the entry weighs against the capacity (the weigher's answer plus the
    /// per-entry overhead), fixed at insert.
    weight: u64,
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

/// Ids of entries recently evicted from probation unread (no bytes), bounded by
/// the weight those entries had: at most `Limits::ghost / ENTRY_OVERHEAD` ids.
#[derive(Debug, Default)]
struct Ghost {
    /// Each remembered id's stamp; a queue position whose stamp differs is stale.
    ids: IdMap<u64>,
    /// `(id, stamp, weight)` in eviction order.
    queue: VecDeque<(ExtentId, u64, u64)>,
    /// Weight of the queue's positions, stale ones included.
    used: u64,
    next_stamp: u64,
}

impl Ghost {
    /// Remembers `id` (evicted at weight `w`), forgetting the oldest ids beyond
    /// `capacity` bytes.
    fn push(&mut self, id: ExtentId, w: u64, capacity: u64) {
        self.next_stamp += 1;
        self.ids.insert(id, self.next_stamp);
        self.queue.push_back((id, self.next_stamp, w));
        self.used += w;
        // Bounded: each pass pops one position.
        while self.used > capacity {
            let Some((old, stamp, w)) = self.queue.pop_front() else {
                break;
            };
            self.used -= w;
            if self.ids.get(&old) == Some(&stamp) {
                self.ids.remove(&old);
            }
        }
    }

    /// Whether `id` was evicted recently; forgets it if so.
    fn take(&mut self, id: ExtentId) -> bool {
        self.ids.remove(&id).is_some()
    }
}

/// A count-min sketch of how often ids were filled or read, as in TinyLFU: four
/// counters per id in one table of 16 per entry, each saturating at 15, all halved
/// every `sample` (10 × entries) additions so old popularity fades. Used only with
/// the size-aware policy, frequency admission or the probation duel; unsized
/// (empty, adding nothing) otherwise.
#[derive(Debug, Default)]
struct Sketch {
    counters: Vec<u8>,
    mask: u64,
    additions: u64,
    sample: u64,
}

impl Sketch {
    fn size_for(&mut self, entries: usize) {
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

    fn add(&mut self, id: ExtentId, n: u8) {
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

    fn estimate(&self, id: ExtentId) -> u8 {
        if self.counters.is_empty() {
            return 0;
        }
        (0..4)
            .map(|i| self.counters[self.index(id, i)])
            .min()
            .unwrap_or(0)
    }
}

// `repr(C)`: the map's header and the counters come first, on the cache line of
// the shard's lock, so a hit touches that line and the map's own memory only.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Shard {
    pub(crate) map: IdMap<Slot>,
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
    /// Entries evicted for space since the cache last drained this, kept only
    /// while an eviction listener is installed (`Limits::report_evictions`); the
    /// cache calls the listener after releasing the shard lock.
    pub(crate) evicted_out: Vec<super::Evicted>,
}

/// The default weight: payload plus the per-entry overhead.
pub(crate) fn weight(bytes: &[u8]) -> u64 {
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
        entry.hits = entry.hits.saturating_add(1);
        // One branch for both first-read flags (`|`, not `||`), taken only by an
        // unread prefetch or a duel admission (BENCHMARKS.md: hit-path A/B).
        if entry.prefetched | entry.dueled {
            if entry.prefetched {
                entry.prefetched = false;
                self.stats.prefetch_used += 1;
            }
            if entry.dueled {
                entry.dueled = false;
                self.dueled_used -= entry.weight;
            }
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
        if w > limits.capacity {
            // Heavier than the whole shard: never cached, and counted so that the
            // configuration can be fixed (fewer shards, a larger cache).
            self.stats.oversized += 1;
            self.remove(id);
            return;
        }
        let demand = priority == Priority::Demand;
        // A demand fill of an id evicted recently is reuse beyond the probation
        // window; one beyond probation's share while warming up would stay anyway.
        // Both go to main. A prefetch never skips probation.
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
        let heavy = limits.size_aware && heavier_than_mean(w, self.fills, self.fill_weight);
        let mut ghost_hit = demand && self.ghost.take(id);
        if ghost_hit
            && (limits.admission || heavy)
            && !self.admit(id, self.sketch.estimate(id), w, limits)
        {
            // TinyLFU: less frequent than what it would displace: probation.
            ghost_hit = false;
        }
        let warming = demand && !self.has_evicted && self.probation_used() + w > limits.small;
        let in_main = ghost_hit || warming;
        let entry = Entry {
            generation,
            bytes,
            // On main the counter counts reads since admission; on probation the
            // demand fill is the first read.
            freq: u8::from(demand && !in_main),
            hits: 0,
            prefetched: !demand,
            demand_fill: demand,
            dueled: false,
            in_main,
            weight: w,
        };
        // One hash probe: replace whatever the map held (usually our load's slot).
        if let Some(Slot::Ready(old)) = self.map.insert(id, Slot::Ready(entry)) {
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
        while self.used > limits.capacity && self.evict_one(limits, priority) {}
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
        let w = entry.weight;
        self.used -= w;
        if entry.in_main {
            self.main_used -= w;
        }
        if entry.dueled {
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
        matches!(self.map.get(&id), Some(Slot::Ready(e)) if e.generation == generation && e.in_main == main)
    }

    /// Evicts one entry to make room for a fill of `priority`; `false` if nothing is
    /// left to evict.
    fn evict_one(&mut self, limits: &Limits, priority: Priority) -> bool {
        // A prefetch's eviction keeps every entry read since its fill: speculation
        // never pushes out what a demand read used.
        let promote = match priority {
            Priority::Demand => limits.promote,
            Priority::Prefetch => 2,
        };
        // Bounded: every iteration pops a queue position; a position is pushed back
        // only after lowering its entry's counter (at most MAX_FREQ times between
        // reads) or promoting it (once).
        let budget = (usize::from(MAX_FREQ) + 2) * (self.probation.len() + self.main.len()) + 1;
        let (fills, fill_weight) = (self.fills, self.fill_weight);
        for _ in 0..budget {
            let small_over = self.probation_used() > limits.small;
            let from_main = (!small_over && !self.main.is_empty()) || self.probation.is_empty();
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
            if from_main && entry.freq > 0 {
                // CLOCK: read since the last pass; one more pass.
                entry.freq -= 1;
                self.main.push_back((id, generation));
                continue;
            }
            // Only a probation entry that was not read enough pays for the test.
            let light = || {
                limits.size_aware
                    && entry.demand_fill
                    && at_most_half_mean(entry.weight, fills, fill_weight)
            };
            if !from_main && (entry.freq >= promote || light()) {
                // Read again on probation, or (size-aware) unread but so light
                // that keeping it costs little: promote, counting afresh.
                entry.freq = 0;
                entry.in_main = true;
                self.main_used += entry.weight;
                self.main.push_back((id, generation));
                continue;
            }
            if !from_main
                && priority == Priority::Demand
                && entry.demand_fill
                && limits.duel_budget > 0
                && self.dueled_used + entry.weight <= limits.duel_budget
            {
                let (w, hits) = (entry.weight, entry.hits);
                let candidate = self.sketch.estimate(id).saturating_add(hits);
                if self.wins_duel(candidate, w, limits)
                    && let Some(Slot::Ready(entry)) = self.map.get_mut(&id)
                {
                    // Unread on probation, but rated above what it displaces.
                    entry.freq = 0;
                    entry.in_main = true;
                    entry.dueled = true;
                    self.main_used += w;
                    self.dueled_used += w;
                    self.main.push_back((id, generation));
                    continue;
                }
            }
            // `live` checked that the slot is this ready entry; taking it out of
            // the map here is the eviction's one lookup after the checks above.
            let Some(Slot::Ready(entry)) = self.remove(id) else {
                continue;
            };
            if (limits.admission || limits.duel_budget > 0 || limits.size_aware)
                && !self.has_evicted
            {
                // Sized once, when the shard first fills: by then it knows how many
                // entries it holds (the one leaving included). It then counts the
                // demand fills made before it existed, as it counts every later
                // one: otherwise what warm-up loaded rates below any newcomer
                // (the `frequency_admission, no warm-up` row of BENCHMARKS.md,
                // "Miss counts on real traces": 70 318 misses at 1 GiB against
                // 56 123). One pass over the map, once in the shard's life.
                self.sketch.size_for(self.map.len() + 1);
                let sketch = &mut self.sketch;
                for (held, slot) in &self.map {
                    if let Slot::Ready(e) = slot
                        && e.demand_fill
                    {
                        sketch.add(*held, 1);
                    }
                }
                if entry.demand_fill {
                    sketch.add(id, 1);
                }
            }
            if entry.prefetched {
                self.stats.prefetch_wasted += 1;
            }
            if !from_main && entry.demand_fill {
                self.ghost.push(id, entry.weight, limits.ghost);
            }
            self.sketch.add(id, entry.hits);
            self.stats.evicted += 1;
            self.has_evicted = true;
            if limits.report_evictions {
                self.evicted_out.push(super::Evicted {
                    extent: id,
                    generation,
                    unread_prefetch: entry.prefetched,
                    bytes: entry.bytes,
                });
            }
            return true;
        }
        false
    }

    /// TinyLFU admission: whether `id` (weight `w`, estimated frequency `freq`) may
    /// enter main: if main has room under its share, or if it is more frequent than
    /// main's next victim.
    fn admit(&mut self, id: ExtentId, freq: u8, w: u64, limits: &Limits) -> bool {
        if self.main_used + w <= limits.capacity - limits.small {
            return true;
        }
        // Bounded: each pass pops a stale position, or returns.
        while let Some(&(victim, generation)) = self.main.front() {
            if let Some(Slot::Ready(v)) = self.map.get(&victim)
                && v.generation == generation
                && v.in_main
            {
                if victim == id {
                    return true;
                }
                let victim_freq = self.sketch.estimate(victim).saturating_add(v.hits);
                return freq > victim_freq;
            }
            self.main.pop_front();
        }
        true
    }

    /// The probation duel: whether an entry leaving probation (weight `w`,
    /// estimated frequency `candidate`) beats the main entries its bytes would displace. Main's front
    /// is first turned by the CLOCK until an entry unread since its last pass
    /// leads, as an eviction from main would; then the estimates of the unread
    /// entries from the front are summed until they free `w` bytes (moka's
    /// size-aware admission), and the candidate must exceed the sum. Before the
    /// sketch exists (the shard has never evicted) no entry wins.
    fn wins_duel(&mut self, candidate: u8, w: u64, limits: &Limits) -> bool {
        if self.sketch.counters.is_empty() {
            return false;
        }
        let room = limits.capacity - limits.small;
        if self.main_used + w <= room {
            return true;
        }
        let need = self.main_used + w - room;
        // Bounded: each pass pops a stale position, or lowers a counter (at most
        // MAX_FREQ per entry), or returns.
        let turns = (usize::from(MAX_FREQ) + 1) * self.main.len() + 1;
        for _ in 0..turns {
            let Some(&(victim, generation)) = self.main.front() else {
                return true;
            };
            match self.map.get_mut(&victim) {
                Some(Slot::Ready(v)) if v.generation == generation && v.in_main => {
                    if v.freq == 0 {
                        break;
                    }
                    v.freq -= 1;
                    self.main.rotate_left(1);
                }
                _ => {
                    self.main.pop_front();
                }
            }
        }
        let (mut freed, mut sum) = (0u64, 0u32);
        // Bounded: at most 64 positions from main's front are read.
        for &(victim, generation) in self.main.iter().take(64) {
            let Some(Slot::Ready(v)) = self.map.get(&victim) else {
                continue;
            };
            // The candidate itself is on probation (`in_main` false): never summed.
            if v.generation != generation || !v.in_main || v.freq > 0 {
                continue;
            }
            freed += v.weight;
            sum += u32::from(self.sketch.estimate(victim).saturating_add(v.hits));
            if freed >= need {
                break;
            }
        }
        u32::from(candidate) > sum
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Room for `entries` entries, probation for `small` of them, libCacheSim's
    /// promotion (a fill and two more reads), a ghost as big as the cache,
    /// size-aware as by default (no rule of it applies to entries of one weight).
    fn limits(entries: u64, small: u64) -> Limits {
        Limits {
            capacity: entries * 1000,
            small: small * 1000,
            ghost: entries * 1000,
            promote: 3,
            admission: false,
            duel_budget: 0,
            size_aware: true,
            report_evictions: false,
        }
    }

    /// Fills `id` with an entry weighing `w` bytes, payload tagged with the id.
    fn fill_weighing(shard: &mut Shard, id: u64, w: u64, priority: Priority, limits: &Limits) {
        let b = Bytes::from(vec![id as u8; (w - ENTRY_OVERHEAD) as usize]);
        assert_eq!(weight(&b), w);
        shard.insert(ExtentId(id), 1, b, w, priority, limits);
    }

    /// Fills `id` with an entry of exactly 1 000 bytes.
    fn fill(shard: &mut Shard, id: u64, priority: Priority, limits: &Limits) {
        fill_weighing(shard, id, 1000, priority, limits);
    }

    fn read(shard: &mut Shard, id: u64) -> bool {
        shard
            .touch(ExtentId(id), 1)
            .is_some_and(|b| b[0] == id as u8)
    }

    fn in_main(shard: &Shard, id: u64) -> Option<bool> {
        match shard.map.get(&ExtentId(id)) {
            Some(Slot::Ready(e)) => Some(e.in_main),
            _ => None,
        }
    }

    #[test]
    fn the_ghost_readmits_to_main_and_promotion_resets_the_read_count() {
        // Defects: no memory of evicted entries (an entry back after leaving
        // probation unread was new again), and promoted entries kept their
        // probation reads (surviving main passes without being read again).
        let l = limits(3, 1);
        let mut s = Shard::default();
        fill(&mut s, 1, Priority::Demand, &l); // A: probation
        assert!(
            read(&mut s, 1) && read(&mut s, 1),
            "A read twice on probation"
        );
        fill(&mut s, 2, Priority::Demand, &l); // B: warm-up, main
        fill(&mut s, 3, Priority::Demand, &l); // C: warm-up, main
        assert_eq!((in_main(&s, 2), in_main(&s, 3)), (Some(true), Some(true)));
        assert!(read(&mut s, 2), "B read once on main");
        fill(&mut s, 4, Priority::Demand, &l); // D: main; C (unread) evicted
        assert_eq!(in_main(&s, 3), None, "C was evicted from main");
        assert_eq!(in_main(&s, 2), Some(true), "B survived its pass: read");
        fill(&mut s, 5, Priority::Demand, &l); // E: probation; A promoted, D evicted
        assert_eq!(in_main(&s, 1), Some(true), "A promoted after three reads");
        assert_eq!(in_main(&s, 4), None);
        fill(&mut s, 6, Priority::Demand, &l); // F: probation; E leaves unread
        assert_eq!(in_main(&s, 5), None, "E evicted from probation");
        assert!(
            s.ghost.ids.contains_key(&ExtentId(5)),
            "E's id is in the ghost"
        );
        fill(&mut s, 5, Priority::Demand, &l); // E again: ghost → main; B evicted
        assert_eq!(in_main(&s, 5), Some(true), "a ghost hit enters main");
        assert!(
            !s.ghost.ids.contains_key(&ExtentId(5)),
            "and leaves the ghost"
        );
        assert_eq!(in_main(&s, 2), None, "B's one read bought one pass only");
        fill(&mut s, 7, Priority::Demand, &l); // G: probation; F leaves unread
        fill(&mut s, 6, Priority::Demand, &l); // F again: ghost → main
        assert_eq!(in_main(&s, 6), Some(true));
        assert_eq!(
            in_main(&s, 1),
            None,
            "A was not read on main: its probation reads must not keep it"
        );
        assert_eq!(in_main(&s, 5), Some(true), "E is younger on main than A");
        assert!(s.used() <= l.capacity);
    }

    #[test]
    fn frequency_admission_keeps_a_ghost_hit_out_of_main_over_a_hotter_victim() {
        for admission in [false, true] {
            let l = Limits {
                admission,
                ..limits(5, 1)
            };
            let mut s = Shard::default();
            fill(&mut s, 1, Priority::Demand, &l); // A: probation
            for id in 2..=5 {
                fill(&mut s, id, Priority::Demand, &l); // B..E: warm-up, main
            }
            for _ in 0..5 {
                for id in 2..=5 {
                    assert!(read(&mut s, id), "B..E are hot");
                }
            }
            fill(&mut s, 6, Priority::Demand, &l); // F: main, evicted at once
            assert_eq!(in_main(&s, 6), None);
            fill(&mut s, 7, Priority::Demand, &l); // G: probation; A leaves unread
            assert_eq!(in_main(&s, 1), None);
            s.remove(ExtentId(7)); // room: A's return evicts nothing
            fill(&mut s, 1, Priority::Demand, &l); // A again: a ghost hit
            // Without admission a ghost hit enters main; with it, A (filled twice,
            // never read) loses to B (read five times) and starts on probation.
            assert_eq!(in_main(&s, 1), Some(!admission), "admission {admission}");
            for id in 2..=5 {
                assert_eq!(in_main(&s, id), Some(true), "the hot entries stay");
            }
        }
    }

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

    #[test]
    fn the_ghost_is_bounded_by_the_weight_it_remembers() {
        let mut ghost = Ghost::default();
        for id in 0..1000 {
            ghost.push(ExtentId(id), 1000, 18_000);
        }
        assert_eq!(ghost.ids.len(), 18, "ids beyond 18 000 bytes forgotten");
        assert!(ghost.queue.len() <= 18);
        assert!(ghost.take(ExtentId(999)), "the newest id is remembered");
        assert!(!ghost.take(ExtentId(999)), "a ghost hit is taken once");
        assert!(!ghost.take(ExtentId(981)), "the oldest ids are forgotten");
        // A taken id leaves a stale position behind; the bound still holds.
        for id in 2000..2100 {
            ghost.push(ExtentId(id), 1000, 18_000);
        }
        assert!(ghost.used <= 18_000 && ghost.ids.len() <= 18);
    }

    #[test]
    fn a_cache_that_warmed_up_keeps_its_working_set_against_a_scan() {
        // Defect: a cache filled from empty held everything on probation, so the
        // first one-time reads after it filled flushed what it had loaded, FIFO.
        let l = limits(20, 2);
        let mut s = Shard::default();
        for id in 0..20 {
            fill(&mut s, id, Priority::Demand, &l);
        }
        for id in 100..300 {
            fill(&mut s, id, Priority::Demand, &l);
        }
        // The 18 that warm-up put on main stay, less the one the first fill past
        // full evicted (it still counted as warm-up); the 2 on probation go.
        let kept = (0..20).filter(|&id| read(&mut s, id)).count();
        assert!(kept >= 17, "only {kept} of 20 warm entries survived a scan");
        assert!(s.used() <= l.capacity);
    }

    #[test]
    fn a_prefetch_flood_never_evicts_an_entry_read_since_its_fill() {
        let l = limits(10, 1);
        let mut s = Shard::default();
        for id in 0..8 {
            fill(&mut s, id, Priority::Demand, &l);
            assert!(read(&mut s, id));
        }
        for id in 100..160 {
            fill(&mut s, id, Priority::Prefetch, &l);
        }
        for id in 0..8 {
            assert!(read(&mut s, id), "entry {id} displaced by prefetches");
        }
        assert!(s.stats.prefetch_wasted >= 50, "{:?}", s.stats);
        // A demand flood, by contrast, does evict entries read only once on
        // probation: the protection is the prefetch's, not a general one.
        let l = limits(10, 5);
        let mut s = Shard::default();
        for id in 0..5 {
            fill(&mut s, id, Priority::Demand, &l);
            assert!(read(&mut s, id));
        }
        for id in 100..160 {
            fill(&mut s, id, Priority::Demand, &l);
        }
        assert!((0..5).any(|id| in_main(&s, id).is_none()));
    }

    /// Fills `id` `times` times (removing it in between), so that the sketch
    /// counts it that often; it stays on probation, unread since the last fill.
    fn popular(shard: &mut Shard, id: u64, times: usize, limits: &Limits) {
        for _ in 0..times {
            shard.remove(ExtentId(id));
            fill(shard, id, Priority::Demand, limits);
        }
    }

    #[test]
    fn the_probation_duel_admits_a_frequent_entry_within_its_budget() {
        // Room for 10, probation 2, duel budget one entry.
        let l = Limits {
            duel_budget: 1000,
            ..limits(10, 2)
        };
        let mut s = Shard::default();
        for id in 1..=11 {
            fill(&mut s, id, Priority::Demand, &l); // 1, 2 probation; 3..=11 main
        }
        assert_eq!(
            in_main(&s, 3),
            None,
            "the first eviction (3) sized the sketch, counting each fill so far once"
        );
        popular(&mut s, 20, 4, &l); // 1 leaves probation: 1 against 1, a tie
        popular(&mut s, 12, 3, &l); // 2 leaves: a tie too
        assert_eq!((in_main(&s, 1), in_main(&s, 2)), (None, None));
        assert_eq!(s.dueled_used, 0, "a tie keeps main");
        popular(&mut s, 13, 2, &l); // 20 leaves: 4 against 1
        assert_eq!(in_main(&s, 20), Some(true), "20 won its duel");
        assert_eq!(s.dueled_used, 1000);
        fill(&mut s, 14, Priority::Demand, &l); // 12 leaves: 3 against 1
        assert_eq!(
            in_main(&s, 12),
            None,
            "the budget (held by 20) keeps 12 out"
        );
        assert!(
            s.ghost.ids.contains_key(&ExtentId(12)),
            "the loser is a ghost"
        );
        // A read on main releases the budget; the next entry that wins enters.
        assert!(read(&mut s, 20));
        assert_eq!(s.dueled_used, 0, "released on the first read on main");
        fill(&mut s, 15, Priority::Demand, &l); // 13 leaves: 2 against 1
        assert_eq!(in_main(&s, 13), Some(true), "13 won its duel");
        assert_eq!(s.dueled_used, 1000);
        assert!(s.used() <= l.capacity && s.dueled_used <= l.duel_budget);
    }

    #[test]
    fn the_probation_duel_keeps_main_entries_rated_at_least_as_high() {
        for duel_budget in [0, 10_000] {
            let l = Limits {
                duel_budget,
                ..limits(10, 2)
            };
            let mut s = Shard::default();
            for id in 1..=11 {
                fill(&mut s, id, Priority::Demand, &l); // main: 4..=11
            }
            for id in 4..=11 {
                assert!(read(&mut s, id), "main entries read once");
            }
            // 12 (counted once, unread) against main entries read once: a tie,
            // and a tie keeps main.
            for id in 12..=15 {
                fill(&mut s, id, Priority::Demand, &l);
            }
            assert_eq!(in_main(&s, 12), None, "budget {duel_budget}");
            // A prefetched entry never duels, however often demand filled it.
            popular(&mut s, 40, 5, &l);
            s.remove(ExtentId(40));
            fill(&mut s, 40, Priority::Prefetch, &l);
            for id in 16..=18 {
                fill(&mut s, id, Priority::Demand, &l);
            }
            assert_eq!(in_main(&s, 40), None, "budget {duel_budget}");
            assert_eq!(s.dueled_used, 0);
            assert!((4..=11).all(|id| in_main(&s, id) == Some(true)));
        }
    }

    #[test]
    fn size_awareness_keeps_a_light_unread_entry_but_not_a_light_prefetch() {
        for size_aware in [false, true] {
            let l = Limits {
                size_aware,
                ..limits(10, 2)
            };
            let mut s = Shard::default();
            for id in 1..=6 {
                // 1 on probation, 2..=6 on main (warm-up), which 6 overfills: the
                // first eviction (2, unread) ends warm-up.
                fill_weighing(&mut s, id, 2000, Priority::Demand, &l);
            }
            assert_eq!((in_main(&s, 2), in_main(&s, 3)), (None, Some(true)));
            // 10 weighs 500, at most half the mean (1 812 when it leaves). It
            // pushes 1 (2 000, unread) out of probation, 7 pushes 10 (unread),
            // 8 pushes 7.
            for (id, w) in [(10, 500), (7, 2000), (8, 2000)] {
                fill_weighing(&mut s, id, w, Priority::Demand, &l);
            }
            assert_eq!(in_main(&s, 1), None);
            assert_eq!(in_main(&s, 10), size_aware.then_some(true), "{size_aware}");
            // Size-aware, 10's move to main made 7's fill evict from main (3).
            assert_eq!(in_main(&s, 3), (!size_aware).then_some(true));
            assert_eq!(
                s.ghost.ids.contains_key(&ExtentId(10)),
                !size_aware,
                "dropped to the ghost only when plain"
            );
            // A light prefetch is speculation, not demand: it leaves as usual.
            fill_weighing(&mut s, 11, 500, Priority::Prefetch, &l);
            for id in 12..=14 {
                fill_weighing(&mut s, id, 2000, Priority::Demand, &l);
            }
            assert_eq!(in_main(&s, 11), None, "{size_aware}");
            assert_eq!(s.stats.prefetch_wasted, 1);
            assert!(s.used() <= l.capacity);
        }
    }

    #[test]
    fn the_sketch_counts_fills_made_before_it_and_the_mean_only_demand_fills() {
        let l = limits(10, 2);
        let mut s = Shard::default();
        fill(&mut s, 1, Priority::Prefetch, &l);
        for id in 2..=10 {
            fill(&mut s, id, Priority::Demand, &l);
        }
        assert_eq!(
            (s.fills, s.fill_weight),
            (9, 9000),
            "prefetches stay out of the mean"
        );
        assert!(s.sketch.counters.is_empty(), "no eviction yet: no sketch");
        fill(&mut s, 11, Priority::Demand, &l); // the first eviction (3, from main)
        assert_eq!(in_main(&s, 3), None);
        assert!(!s.sketch.counters.is_empty());
        for id in 2..=11 {
            assert!(s.sketch.estimate(ExtentId(id)) >= 1, "demand fill {id}");
        }
        assert_eq!(
            s.sketch.estimate(ExtentId(1)),
            0,
            "a prefetch is not counted"
        );
    }

    #[test]
    fn size_awareness_makes_a_heavy_ghost_hit_earn_main() {
        for size_aware in [false, true] {
            let l = Limits {
                size_aware,
                ..limits(10, 2)
            };
            let mut s = Shard::default();
            for id in 1..=5 {
                // 1 on probation, 2..=5 on main (warm-up).
                fill_weighing(&mut s, id, 2000, Priority::Demand, &l);
            }
            for _ in 0..5 {
                for id in 2..=5 {
                    assert!(read(&mut s, id), "2..=5 are hot");
                }
            }
            // 6 (warm-up, main) is evicted at once; then 7 pushes 1 (unread) out
            // of probation and 9 pushes 7: both ids go to the ghost.
            for id in 6..=9 {
                fill_weighing(&mut s, id, 1000, Priority::Demand, &l);
            }
            assert_eq!((in_main(&s, 1), in_main(&s, 7)), (None, None));
            s.remove(ExtentId(8));
            s.remove(ExtentId(9)); // room: the returns below evict nothing
            // 7 again: a ghost hit under the mean (1 500) enters main either way.
            fill_weighing(&mut s, 7, 1000, Priority::Demand, &l);
            assert_eq!(in_main(&s, 7), Some(true), "{size_aware}");
            s.remove(ExtentId(7));
            // 1 again: a ghost hit heavier than the mean (1 545). Size-aware, it
            // must beat main's next victim (2, read five times) and does not.
            fill_weighing(&mut s, 1, 2000, Priority::Demand, &l);
            assert_eq!(in_main(&s, 1), Some(!size_aware), "{size_aware}");
            assert!((2..=5).all(|id| in_main(&s, id) == Some(true)));
            // 20, as heavy but filled seven times, leaves probation unread and
            // returns: rated above 2, it enters main either way.
            s.remove(ExtentId(1));
            for _ in 0..7 {
                s.remove(ExtentId(20));
                fill_weighing(&mut s, 20, 2000, Priority::Demand, &l);
            }
            for id in 21..=23 {
                fill_weighing(&mut s, id, 1000, Priority::Demand, &l);
            }
            assert_eq!(in_main(&s, 20), None, "20 left probation unread");
            for id in 21..=23 {
                s.remove(ExtentId(id));
            }
            fill_weighing(&mut s, 20, 2000, Priority::Demand, &l);
            assert_eq!(in_main(&s, 20), Some(true), "{size_aware}");
            assert!(s.used() <= l.capacity);
        }
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Fill {
                id: u64,
                size: usize,
                prefetch: bool,
            },
            Read {
                id: u64,
            },
            Remove {
                id: u64,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0u64..48, 1usize..3000, any::<bool>())
                    .prop_map(|(id, size, prefetch)| Op::Fill { id, size, prefetch }),
                4 => (0u64..48).prop_map(|id| Op::Read { id }),
                1 => (0u64..48).prop_map(|id| Op::Remove { id }),
            ]
        }

        /// Bytes that name their extent and generation.
        fn tagged(id: u64, generation: u64, size: usize) -> Bytes {
            let mut v = vec![0u8; size.max(16)];
            v[..8].copy_from_slice(&id.to_le_bytes());
            v[8..16].copy_from_slice(&generation.to_le_bytes());
            Bytes::from(v)
        }

        /// The shard's books agree with its map, and every bound holds.
        fn check(s: &Shard, l: &Limits) {
            let ready = || {
                s.map.values().filter_map(|slot| match slot {
                    Slot::Ready(e) => Some(e),
                    Slot::Loading { .. } => None,
                })
            };
            let sum = |f: fn(&Entry) -> bool| ready().filter(|e| f(e)).map(|e| e.weight).sum();
            assert_eq!(s.used, sum(|_| true));
            assert_eq!(s.main_used, sum(|e| e.in_main));
            assert_eq!(s.dueled_used, sum(|e| e.dueled));
            assert!(ready().all(|e| !e.dueled || e.in_main), "dueled off main");
            assert!(s.used <= l.capacity, "{} > {}", s.used, l.capacity);
            assert!(s.dueled_used <= l.duel_budget, "duel budget exceeded");
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Under every policy option: the books balance after each step, a
            /// read serves only the generation last filled, and never bytes of
            /// another extent or generation.
            #[test]
            fn books_balance_and_reads_serve_the_last_fill(
                small in 1u64..6,
                duel in prop_oneof![Just(0u64), 1u64..8],
                admission in any::<bool>(),
                size_aware in any::<bool>(),
                promote in 2u8..=3,
                ops in proptest::collection::vec(op(), 1..400),
            ) {
                let l = Limits {
                    admission,
                    size_aware,
                    promote,
                    duel_budget: duel * 1000,
                    ..limits(12, small)
                };
                let mut s = Shard::default();
                let mut generation = 0u64;
                let mut latest: HashMap<u64, u64> = HashMap::new();
                for op in ops {
                    match op {
                        Op::Fill { id, size, prefetch } => {
                            generation += 1;
                            let b = tagged(id, generation, size);
                            let w = weight(&b);
                            let p = if prefetch { Priority::Prefetch } else { Priority::Demand };
                            s.insert(ExtentId(id), generation, b, w, p, &l);
                            latest.insert(id, generation);
                        }
                        Op::Read { id } => {
                            let Some(&g) = latest.get(&id) else { continue };
                            prop_assert!(s.touch(ExtentId(id), g - 1).is_none(), "an older generation");
                            if let Some(b) = s.touch(ExtentId(id), g) {
                                prop_assert_eq!(&b[..8], &id.to_le_bytes()[..]);
                                prop_assert_eq!(&b[8..16], &g.to_le_bytes()[..]);
                            }
                        }
                        Op::Remove { id } => {
                            s.remove(ExtentId(id));
                            latest.remove(&id);
                        }
                    }
                    check(&s, &l);
                }
            }

            /// With entries of one weight the size-aware rules never apply: every
            /// decision, hence every resident entry and counter, equals plain
            /// S3-FIFO's after every step.
            #[test]
            fn with_one_weight_size_awareness_changes_nothing(
                small in 1u64..6,
                admission in any::<bool>(),
                ops in proptest::collection::vec(op(), 1..400),
            ) {
                let plain = Limits { admission, size_aware: false, ..limits(12, small) };
                let sized = Limits { size_aware: true, ..plain };
                let (mut a, mut b) = (Shard::default(), Shard::default());
                let mut generation = 0u64;
                let resident = |s: &Shard| {
                    let mut v: Vec<_> = s.map.iter().filter_map(|(id, slot)| match slot {
                        Slot::Ready(e) => Some((id.0, e.generation, e.in_main, e.freq)),
                        Slot::Loading { .. } => None,
                    }).collect();
                    v.sort_unstable();
                    v
                };
                for op in ops {
                    match op {
                        Op::Fill { id, prefetch, .. } => {
                            generation += 1;
                            let p = if prefetch { Priority::Prefetch } else { Priority::Demand };
                            for (s, l) in [(&mut a, &plain), (&mut b, &sized)] {
                                let v = tagged(id, generation, 900);
                                let w = weight(&v);
                                s.insert(ExtentId(id), generation, v, w, p, l);
                            }
                        }
                        Op::Read { id } => {
                            let g = generation;
                            let (x, y) = (a.touch(ExtentId(id), g), b.touch(ExtentId(id), g));
                            prop_assert_eq!(x.is_some(), y.is_some());
                        }
                        Op::Remove { id } => {
                            a.remove(ExtentId(id));
                            b.remove(ExtentId(id));
                        }
                    }
                    prop_assert_eq!(resident(&a), resident(&b));
                    prop_assert_eq!(a.stats, b.stats);
                    prop_assert_eq!((a.used, a.main_used), (b.used, b.main_used));
                }
            }
        }
    }
}
