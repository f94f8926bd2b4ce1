//! The eviction rules of a shard: S3-FIFO, size-aware, with optional TinyLFU
//! admission and a probation duel.
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
//!   (the policy lab, `lab/policy_lab`, and BENCHMARKS.md, "Miss counts on real traces").
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
//!   budget caps that turnover (the policy lab, `lab/policy_lab`, and BENCHMARKS.md). The
//!   budget is released on the entry's first read on main, in the hit path, and
//!   not lazily at its next CLOCK pass: the lazy release measured 2 of 8
//!   capacities where the eager one reached 7.
//! * Warm-up: until the shard first evicts, demand fills beyond probation's share
//!   enter main, so a cache that is not full yet keeps what it loaded as it would
//!   once full, instead of behaving as one big probation FIFO.
//!
//! Prefetches never displace what demand reads reuse: a prefetch fill enters
//! probation without read credit and never via the ghost, and the eviction it
//! causes promotes, rather than drops, any probation entry read twice, counting
//! the read a demand fill was made for (a demand fill read again, a prefetch
//! fill read twice). A prefetch read once (a scan's readahead) or never is among
//! the first to go, so that a scan does not push out the working set.

use super::{CacheEntry, MAX_FREQ, Shard};
use crate::cache::Priority;
use crate::cache::config::Limits;
use crate::record::ExtentId;

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

impl Shard {
    /// Probation's share in bytes: the policy's, or the adaptive policy's
    /// current target.
    #[inline]
    pub(super) fn small(&self, limits: &Limits) -> u64 {
        if limits.adaptive {
            self.climber.small(limits)
        } else {
            limits.small
        }
    }

    /// Whether a fill of `id` (weight `w`) enters main rather than probation.
    /// A demand fill of an id evicted recently is reuse beyond the probation
    /// window; one beyond probation's share while warming up would stay anyway.
    /// Both go to main. A prefetch never skips probation.
    pub(super) fn enters_main(
        &mut self,
        id: ExtentId,
        w: u64,
        demand: bool,
        limits: &Limits,
    ) -> bool {
        let heavy = limits.size_aware && heavier_than_mean(w, self.fills, self.fill_weight);
        let mut ghost_hit = demand && self.ghost.take(id);
        if ghost_hit
            && (limits.admission || heavy)
            && !self.admit(id, self.sketch.estimate(id), w, limits)
        {
            // TinyLFU: less frequent than what it would displace: probation.
            ghost_hit = false;
        }
        let warming = demand && !self.has_evicted && self.probation_used() + w > self.small(limits);
        ghost_hit || warming
    }

    /// Evicts one entry to make room for a fill of `priority`; `false` if nothing is
    /// left to evict.
    pub(super) fn evict_one(&mut self, limits: &Limits, priority: Priority) -> bool {
        // A prefetch's eviction keeps every entry read twice (see the module
        // docs): speculation never pushes out what demand reads reuse.
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
            let small_over = self.probation_used() > self.small(limits);
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
            let Some(CacheEntry::Ready(entry)) = self.map.get_mut(&id) else {
                continue;
            };
            if from_main && entry.freq() > 0 {
                // CLOCK: read since the last pass; one more pass.
                entry.set_freq(entry.freq() - 1);
                self.main.push_back((id, generation));
                continue;
            }
            // Only a probation entry that was not read enough pays for the test.
            let light = || {
                limits.size_aware
                    && entry.demand_fill()
                    && at_most_half_mean(entry.weight(), fills, fill_weight)
            };
            if !from_main && (entry.freq() >= promote || light()) {
                // Read again on probation, or (size-aware) unread but so light
                // that keeping it costs little: promote, counting afresh.
                entry.set_freq(0);
                entry.in_main = true;
                self.main_used += entry.weight();
                self.main.push_back((id, generation));
                continue;
            }
            if !from_main
                && priority == Priority::Demand
                && entry.demand_fill()
                && limits.duel_budget > 0
                && self.dueled_used + entry.weight() <= limits.duel_budget
            {
                let (w, hits) = (entry.weight(), entry.hits);
                let candidate = self.sketch.estimate(id).saturating_add(hits);
                if self.wins_duel(candidate, w, limits)
                    && let Some(CacheEntry::Ready(entry)) = self.map.get_mut(&id)
                {
                    // Unread on probation, but rated above what it displaces.
                    entry.set_freq(0);
                    entry.in_main = true;
                    entry.set_dueled();
                    self.main_used += w;
                    self.dueled_used += w;
                    self.main.push_back((id, generation));
                    continue;
                }
            }
            // `live` checked that the slot is this ready entry; taking it out of
            // the map here is the eviction's one lookup after the checks above.
            let Some(CacheEntry::Ready(entry)) = self.remove(id) else {
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
                    if let CacheEntry::Ready(e) = slot
                        && e.demand_fill()
                    {
                        sketch.add(*held, 1);
                    }
                }
                if entry.demand_fill() {
                    sketch.add(id, 1);
                }
            }
            if entry.prefetched() {
                self.stats.prefetch_wasted += 1;
            }
            if !from_main && entry.demand_fill() {
                self.ghost.push(id, entry.weight(), limits.ghost);
            }
            self.sketch.add(id, entry.hits);
            self.stats.evicted += 1;
            self.has_evicted = true;
            if limits.report_evictions {
                self.evicted_out.push(crate::cache::Evicted {
                    extent: id,
                    generation,
                    unread_prefetch: entry.prefetched(),
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
        if self.main_used + w <= limits.capacity - self.small(limits) {
            return true;
        }
        // Bounded: each pass pops a stale position, or returns.
        while let Some(&(victim, generation)) = self.main.front() {
            if let Some(CacheEntry::Ready(v)) = self.map.get(&victim)
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
        if !self.sketch.is_sized() {
            return false;
        }
        let room = limits.capacity - self.small(limits);
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
                Some(CacheEntry::Ready(v)) if v.generation == generation && v.in_main => {
                    if v.freq() == 0 {
                        break;
                    }
                    v.set_freq(v.freq() - 1);
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
            let Some(CacheEntry::Ready(v)) = self.map.get(&victim) else {
                continue;
            };
            // The candidate itself is on probation (`in_main` false): never summed.
            if v.generation != generation || !v.in_main || v.freq() > 0 {
                continue;
            }
            freed += v.weight();
            sum += u32::from(self.sketch.estimate(victim).saturating_add(v.hits));
            if freed >= need {
                break;
            }
        }
        u32::from(candidate) > sum
    }
}
