//! The generation-tagged cache.
//!
//! Every entry and every load in progress is tagged with the content generation it
//! holds; a lookup names the generation of the caller's snapshot and is served only
//! by an entry of exactly that generation (invariant 4, *generation-tagged cache*).
//!
//! A load is single-flight: the first miss for `(extent, generation)` gets a
//! [`FillToken`], later ones wait on its [`Flight`] (except that a demand
//! reader may take over a readahead claim waiting far back in the prefetch
//! queue: it gets a token for the same flight, and the claim's is void). The
//! loader completes the token with the bytes and a re-validation closure that
//! is run *under the shard lock*: the fill is accepted only if its generation is still current then. A write's
//! commit calls [`Cache::invalidate`], which takes the same lock, so whatever the
//! order of fill and invalidation, a fill of a superseded generation is either
//! rejected (waiters get [`FlightOutcome::Superseded`]) or inserted before the
//! invalidation and removed by it; a lookup after the write returned carries the new
//! generation and could not match it anyway.
//!
//! # Why not quick_cache or moka
//!
//! Both were measured (`benches/cache.rs`, BENCHMARKS.md). quick_cache keyed by
//! `(extent, generation)` gives the tag check for free, but its placeholder waiters
//! block on OS primitives loom cannot see, so the fill/invalidate races could not be
//! model-checked; and its waiters receive whatever the loader inserted. This cache
//! is small, takes all of its synchronisation from the crate's `sync` module, and
//! its hit path is one uncontended shard lock and one hash lookup (BENCHMARKS.md).

mod config;
mod flight;
mod ghost;
mod hasher;
mod hooks;
mod large;
mod shard;
mod sketch;
mod stats;

pub use config::{CachePolicy, CachePolicyBuilder};
pub(crate) use flight::ClaimQueue;
pub use flight::{Flight, FlightOutcome};
pub use hooks::{Evicted, EvictionListener, Weigher};
pub use stats::CacheStats;

use crate::bytes::Bytes;
use crate::error::Result;
use crate::record::ExtentId;
use crate::sync::{Arc, AtomicU64, SpinMutex};
use config::Limits;
use shard::{CacheEntry, Shard};

/// Who is asking: a demand read (hit credit) or a prefetch (low priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A caller is waiting for these bytes.
    Demand,
    /// Speculative: enters without hit credit, evicted first if never read.
    Prefetch,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// An entry of the requested generation.
    Hit(Bytes),
    /// A load of the requested generation is in progress: wait on it.
    Wait(Arc<Flight>),
    /// Nothing usable: the caller loads and completes the token.
    Load(FillToken),
    /// The cache has already seen a newer generation: the caller's snapshot is old.
    Newer,
}

/// The right, and the duty, to complete one load. Dropping it uncompleted finishes
/// its flight as superseded, so waiters never hang (a readahead claim a reader
/// took over is void: the reader's token finishes the flight). The token holds
/// no reference to its cache, so a dropped one leaves its placeholder in the
/// map (uncharged) until the next lookup of that extent replaces it; hand a
/// load you give up to [`Cache::abandon`] to remove it at once.
#[derive(Debug)]
#[must_use = "a dropped token ends its load as superseded"]
pub struct FillToken {
    id: ExtentId,
    generation: u64,
    priority: Priority,
    flight: Arc<Flight>,
    /// Set by `complete`, which finishes the flight itself.
    completed: bool,
    /// A load claimed ahead of its run (`Cache::claim`): void once a
    /// reader took it over.
    claim: bool,
}

impl FillToken {
    /// The extent being loaded.
    pub fn extent(&self) -> ExtentId {
        self.id
    }
    /// The generation being loaded.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The claim's hint was given place `at` in `queue` (before it is sent):
    /// from then on a reader takes the load over only while the claim waits
    /// behind enough other hints (`ClaimQueue`).
    pub(crate) fn enqueued(&self, at: u64, queue: &Arc<ClaimQueue>) {
        self.flight.enqueued(at, queue);
    }

    /// Whether a demand reader took this claim's load over (then this token
    /// is void).
    pub(crate) fn taken_over(&self) -> bool {
        self.claim && self.flight.taken_over()
    }

    /// The claim's run starts: `false` if a reader took the load over (this
    /// token is then void: it neither completes nor ends the load).
    pub(crate) fn begin(&mut self) -> bool {
        if self.claim && !self.flight.begin_claim() {
            self.completed = true;
            return false;
        }
        true
    }
}

impl Drop for FillToken {
    fn drop(&mut self) {
        if !self.completed {
            (self.flight).finish_unless_taken_over(FlightOutcome::Superseded, self.claim);
        }
    }
}

/// One shard's lock and state, starting on a cache-line pair of its own: two
/// threads on neighbouring shards never write the same line (unpadded, the shards
/// sat in an 8-byte-aligned array and shared lines at their edges).
#[derive(Debug)]
#[repr(align(128))]
struct Padded(SpinMutex<Shard>);

/// The generation-tagged, byte-bounded, sharded cache.
pub struct Cache {
    shards: Box<[Padded]>,
    /// Entries heavier than a shard (`large`), up to the whole capacity.
    large: Padded,
    large_limits: Limits,
    /// Bytes the large entries hold; each shard lends `ceil(large_used /
    /// shards)` of its room to them.
    large_used: AtomicU64,
    /// Mutant (loom models): an invalidation leaves the large shard alone.
    /// The large-entry models must catch it.
    pub(crate) mutant_skip_large_invalidation: bool,
    /// Mutant (the emulator's claim sweep): a demand read takes a queued claim
    /// over and then waits on it instead of loading it, so nobody loads it.
    /// The sweep must catch the hung read.
    pub(crate) mutant_take_over_without_load: bool,
    limits: Limits,
    weigher: Option<Weigher>,
    on_evict: Option<EvictionListener>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .field("limits", &self.limits)
            .field("weigher", &self.weigher.is_some())
            .field("eviction_listener", &self.on_evict.is_some())
            .finish_non_exhaustive()
    }
}

/// The most shards a [`Cache`] has: a larger count is taken as this one.
/// Each shard takes a few hundred bytes before it holds anything, and a shard
/// holds its share of the capacity, so more would only waste memory (the store
/// allows at most 1 024, `cache_shards`).
pub const MAX_SHARDS: usize = 1 << 16;

impl Cache {
    /// A cache of `capacity_bytes` (payload plus per-entry overhead) split over
    /// `shards` shards (rounded up to a power of two, at least 1, at most
    /// [`MAX_SHARDS`]), with the default [`CachePolicy`].
    pub fn new(capacity_bytes: u64, shards: usize) -> Self {
        Self::with_policy(capacity_bytes, shards, CachePolicy::default())
    }

    /// [`new`](Self::new) with an eviction policy of the caller's.
    pub fn with_policy(capacity_bytes: u64, shards: usize, policy: CachePolicy) -> Self {
        let shards = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        Cache {
            shards: (0..shards)
                .map(|_| Padded(SpinMutex::new(Shard::default())))
                .collect(),
            limits: Limits::new(capacity_bytes / shards as u64, &policy),
            large: Padded(SpinMutex::new(Shard::default())),
            large_limits: Limits::new(capacity_bytes, &policy),
            large_used: AtomicU64::new(0),
            mutant_skip_large_invalidation: false,
            mutant_take_over_without_load: false,
            weigher: None,
            on_evict: None,
        }
    }

    /// This cache, weighing entries with `weigher` instead of their length.
    pub fn with_weigher(mut self, weigher: Weigher) -> Self {
        self.weigher = Some(weigher);
        self
    }

    /// This cache, calling `listener` with every entry it evicts for space.
    pub fn with_eviction_listener(mut self, listener: EvictionListener) -> Self {
        self.limits.report_evictions = true;
        self.large_limits.report_evictions = true;
        self.on_evict = Some(listener);
        self
    }

    /// The heaviest entry the cache holds: its whole capacity, overhead
    /// included, and at most 2^40 - 1 bytes (an entry's weight is kept in 40
    /// bits); heavier fills are counted in [`CacheStats::oversized`]. An
    /// entry heavier than a shard (`capacity / shards`) is kept apart, with room
    /// every shard lends it, so the cache as a whole stays within its capacity
    /// (`cache::large`).
    pub fn max_entry_bytes(&self) -> u64 {
        self.large_limits.capacity.min(shard::MAX_WEIGHT)
    }

    #[inline]
    fn shard(&self, id: ExtentId) -> &SpinMutex<Shard> {
        // Fibonacci hashing spreads dense ids across shards.
        let h = id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(h >> 32) as usize & (self.shards.len() - 1)].0
    }

    /// Looks up `(id, generation)`, taken from the caller's snapshot.
    ///
    /// Only a [`Priority::Demand`] hit counts as a hit (and marks a prefetched
    /// entry used); a [`Priority::Prefetch`] lookup that finds the entry returns it
    /// without hit credit, as a prefetch fill enters without it.
    ///
    /// A demand hit is served by code that calls nothing, inlined into the
    /// caller: the shard lock is tried once, and anything else (the lock held,
    /// a miss, a load in flight) goes to the locked path, out of line. Out of
    /// line, a hit would pay a call, saved registers and the 32-byte `Lookup`
    /// written through memory and matched again by the caller (the per-round
    /// ratio to quick_cache's `get` was 1.11 against 1.07 inlined); with the
    /// waiting lock's yield and the calls into the miss path inlined beside it,
    /// every hit saved and restored six registers for calls it never made
    /// (`examples/hit_cost.rs`: 146 against 141 instructions per hit,
    /// BENCHMARKS.md "The hit path without calls"). A failed try changes
    /// nothing (`Shard::touch` returns `None` before it writes), so the locked
    /// path decides as if it were the only one. Under loom the try is left out:
    /// it would add lock operations to every model without adding an outcome.
    #[inline(always)]
    pub fn lookup(&self, id: ExtentId, generation: u64, priority: Priority) -> Lookup {
        #[cfg(not(loom))]
        if priority == Priority::Demand
            && let Some(mut guard) = self.shard(id).try_lock()
            && let Some(bytes) = guard.touch(id, generation)
        {
            guard.stats.hits += 1;
            return Lookup::Hit(bytes);
        }
        self.lookup_locked(id, generation, priority)
    }

    /// [`lookup`](Self::lookup) under the waiting lock.
    #[inline(never)]
    fn lookup_locked(&self, id: ExtentId, generation: u64, priority: Priority) -> Lookup {
        let mut guard = self.shard(id).lock();
        if priority == Priority::Prefetch {
            if let Some(CacheEntry::Ready(entry)) = guard.map.get(&id)
                && entry.generation == generation
            {
                return Lookup::Hit(entry.bytes.clone());
            }
        } else if let Some(bytes) = guard.touch(id, generation) {
            guard.stats.hits += 1;
            return Lookup::Hit(bytes);
        }
        self.miss(&mut guard, id, generation, priority, false)
    }

    /// A [`Priority::Prefetch`] lookup that, on a miss, claims the load for a
    /// run later (readahead's, `ReadOp::claim`): until the token's
    /// [`begin`](FillToken::begin), the first demand lookup of the generation
    /// takes the load over if the claim waits far back in its queue
    /// (`Flight::take_over`), and waits on it otherwise. Claimed under the
    /// shard lock, so no reader meets the load unclaimed.
    pub(crate) fn claim(&self, id: ExtentId, generation: u64) -> Lookup {
        let mut guard = self.shard(id).lock();
        if let Some(CacheEntry::Ready(entry)) = guard.map.get(&id)
            && entry.generation == generation
        {
            return Lookup::Hit(entry.bytes.clone());
        }
        self.miss(&mut guard, id, generation, Priority::Prefetch, true)
    }

    /// The miss path of [`lookup`](Self::lookup), kept out of line so the hit path
    /// stays small.
    #[cold]
    #[inline(never)]
    fn miss(
        &self,
        shard: &mut Shard,
        id: ExtentId,
        generation: u64,
        priority: Priority,
        claim: bool,
    ) -> Lookup {
        if let Some(found) = self.large_lookup(id, generation, priority) {
            return found;
        }
        // Demand lookups only, as hits are counted: a prefetch's or a claim's
        // miss is not a read the cache failed to serve.
        shard.stats.misses += u64::from(priority == Priority::Demand);
        match shard.map.get_mut(&id) {
            Some(CacheEntry::Ready(entry)) if entry.generation > generation => {
                return Lookup::Newer;
            }
            Some(slot) => {
                if let Some((g, flight)) = slot.load()
                    && !flight.is_done()
                {
                    if g > generation {
                        return Lookup::Newer;
                    }
                    if g == generation {
                        let flight = flight.clone();
                        if priority == Priority::Demand
                            && matches!(slot, CacheEntry::Prefetching { .. })
                        {
                            // The prefetch's load fills as a demand fill now.
                            *slot = CacheEntry::Loading {
                                generation: g,
                                flight: flight.clone(),
                            };
                            // A claim waiting behind other hints: the reader
                            // loads it itself (under the shard lock, which
                            // `abandon` also checks under), and the claim's
                            // token is void from here on.
                            if flight.take_over() && !self.mutant_take_over_without_load {
                                return Lookup::Load(FillToken {
                                    id,
                                    generation,
                                    priority,
                                    flight,
                                    completed: false,
                                    claim: false,
                                });
                            }
                            shard.stats.prefetch_joined += 1;
                        }
                        return Lookup::Wait(flight);
                    }
                }
            }
            _ => {}
        }
        // Absent, older, or a finished load: start ours (an older load still running
        // will find its slot taken and be rejected).
        shard.remove(id);
        let flight = Arc::new(Flight::new());
        if claim {
            flight.queue();
        }
        let load = match priority {
            Priority::Demand => CacheEntry::Loading {
                generation,
                flight: flight.clone(),
            },
            Priority::Prefetch => CacheEntry::Prefetching {
                generation,
                flight: flight.clone(),
            },
        };
        shard.map.insert(id, load);
        Lookup::Load(FillToken {
            id,
            generation,
            priority,
            flight,
            completed: false,
            claim,
        })
    }

    /// Completes a load. On success the bytes are inserted only if the token's slot
    /// is still this load and `still_current()` — run under the shard lock — says the
    /// generation is current; otherwise the fill is rejected as superseded.
    /// Returns the outcome every waiter also receives.
    ///
    /// # Contract
    ///
    /// A failed load (`result` an error) tells its waiters the failure only if
    /// `still_current`; else they are told [`FlightOutcome::Superseded`] and
    /// retry on the current generation.
    ///
    /// The cache knows nothing of records: `still_current` is the caller's proof
    /// that the token's generation is still the committed one in its source of truth
    /// (the [`Store`](crate::Store) checks the extent table), and it must be quick and
    /// must not take this cache's locks. The caller must also have checked the bytes
    /// against the generation's checksum. Whoever commits a new generation must call
    /// [`invalidate`](Self::invalidate) after the commit; lookups must always name
    /// the generation of a snapshot taken before the lookup.
    pub fn complete(
        &self,
        mut token: FillToken,
        result: Result<Bytes>,
        still_current: impl FnOnce() -> bool,
    ) -> FlightOutcome {
        // Weighed before the shard's lock is taken: an engine's weigher may be
        // slow, and one that panics is contained (the caller's read still gets
        // its bytes; the value is not cached, counted oversized) with no panic
        // hook running under the lock.
        let weight = result.as_ref().ok().map(|bytes| match &self.weigher {
            Some(weigher) => {
                let weigh = std::panic::AssertUnwindSafe(|| weigher(token.id, bytes));
                (std::panic::catch_unwind(weigh).ok())
                    .map(|w| w.saturating_add(shard::ENTRY_OVERHEAD))
            }
            None => Some(shard::weight(bytes)),
        });
        let mut shard = self.shard(token.id).lock();
        let slot = shard.map.get(&token.id);
        let ours = slot
            .and_then(CacheEntry::load)
            .is_some_and(|(_, flight)| Arc::ptr_eq(flight, &token.flight));
        let demand = matches!(slot, Some(CacheEntry::Loading { .. }));
        let mut large_evicted = None;
        let current = ours && still_current();
        let outcome = match result {
            // A failure of a generation a commit replaced (its invalidation
            // not yet here) is a race, as below.
            Err(err) if current => FlightOutcome::Failed(err),
            Ok(bytes) if current => {
                // A prefetch's load a demand read joined: used once it fills.
                if demand && token.priority == Priority::Prefetch {
                    shard.stats.prefetch_used += 1;
                }
                let priority = if demand {
                    Priority::Demand
                } else {
                    token.priority
                };
                match weight.flatten() {
                    None => {
                        shard.stats.oversized += 1;
                        shard.remove(token.id);
                    }
                    Some(w) if w > self.limits.capacity => {
                        shard.remove(token.id);
                        let (id, generation) = (token.id, token.generation);
                        let out = self.insert_large(id, generation, bytes.clone(), w, priority);
                        large_evicted = Some(out);
                    }
                    Some(w) => {
                        shard.borrowed = self.borrowed();
                        shard.insert(
                            token.id,
                            token.generation,
                            bytes.clone(),
                            w,
                            priority,
                            &self.limits,
                        );
                    }
                }
                FlightOutcome::Ready(bytes)
            }
            // The slot is no longer this load's (a newer generation dropped
            // it): whatever the read found, a failure included, is of a
            // superseded generation, and the waiters retry on the current one
            // instead of climbing the integrity ladder for a race.
            Ok(_) | Err(_) => {
                shard.stats.superseded += 1;
                FlightOutcome::Superseded
            }
        };
        if ours && !matches!(outcome, FlightOutcome::Ready(_)) {
            shard.remove(token.id);
        }
        let mut evicted = std::mem::take(&mut shard.evicted_out);
        drop(shard);
        if let Some(mut large) = large_evicted {
            // After the shard lock: `lend` takes every shard's.
            evicted.append(&mut large);
            evicted.append(&mut self.lend());
        }
        if let Some(listener) = &self.on_evict {
            for e in &evicted {
                let call = std::panic::AssertUnwindSafe(|| listener(e));
                // A panicking listener loses its own notification, nothing else.
                let _ = std::panic::catch_unwind(call);
            }
        }
        token.flight.finish(outcome.clone());
        token.completed = true;
        outcome
    }

    /// Gives up a load without bytes: its slot is removed if it is still this load's,
    /// and its waiters are told "superseded" (they retry on a fresh snapshot).
    pub fn abandon(&self, mut token: FillToken) {
        let mut shard = self.shard(token.id).lock();
        // A claim a reader took over: the load and its slot are the reader's.
        // Checked under the shard lock, under which loads are taken over.
        if token.taken_over() {
            token.completed = true;
            return;
        }
        if let Some((_, flight)) = shard.map.get(&token.id).and_then(CacheEntry::load)
            && Arc::ptr_eq(flight, &token.flight)
        {
            shard.remove(token.id);
        }
        drop(shard);
        token.flight.finish(FlightOutcome::Superseded);
        token.completed = true;
    }

    /// Drops every entry and load of `id` older than `current_generation`. Called by
    /// a write's commit; loads it removes are rejected when they complete.
    pub fn invalidate(&self, id: ExtentId, current_generation: u64) {
        let mut shard = self.shard(id).lock();
        let stale = match shard.map.get(&id) {
            Some(CacheEntry::Ready(e)) => e.generation < current_generation,
            Some(load) => load.load().is_some_and(|(g, _)| g < current_generation),
            None => false,
        };
        if stale {
            shard.remove(id);
            shard.stats.invalidated += 1;
        }
        if !self.mutant_skip_large_invalidation {
            self.invalidate_large(id, current_generation);
        }
    }

    /// Removes `id`'s entry if it holds `generation` (a copy found corrupt).
    pub fn remove(&self, id: ExtentId, generation: u64) -> bool {
        let mut shard = self.shard(id).lock();
        let matches =
            matches!(shard.map.get(&id), Some(CacheEntry::Ready(e)) if e.generation == generation);
        if matches {
            shard.remove(id);
        }
        matches || self.remove_large(id, generation)
    }

    /// Whether `id`'s `generation` is cached (`Some(true)`), being loaded
    /// (`Some(false)`) or neither (`None`), without hit credit and without
    /// touching its place in the eviction order: what a prefetch hint checks
    /// before it asks a worker for a load that would find it there.
    pub fn holds(&self, id: ExtentId, generation: u64) -> Option<bool> {
        let shard = self.shard(id).lock();
        match shard.map.get(&id) {
            Some(CacheEntry::Ready(e)) if e.generation == generation => Some(true),
            Some(slot)
                if slot
                    .load()
                    .is_some_and(|(g, flight)| g == generation && !flight.is_done()) =>
            {
                Some(false)
            }
            _ => self
                .peek_large(id)
                .and_then(|(g, _)| (g == generation).then_some(true)),
        }
    }

    /// The cached bytes of `id`, whatever their generation, without hit credit: for
    /// serving a quarantined extent from a copy the caller then verifies.
    pub fn peek(&self, id: ExtentId) -> Option<(u64, Bytes)> {
        let shard = self.shard(id).lock();
        match shard.map.get(&id) {
            Some(CacheEntry::Ready(e)) => Some((e.generation, e.bytes.clone())),
            _ => self.peek_large(id),
        }
    }

    /// Bytes held now (payload plus overhead).
    pub fn used_bytes(&self) -> u64 {
        let regular: u64 = self.shards.iter().map(|s| s.0.lock().used()).sum();
        regular + self.large.0.lock().used()
    }

    /// Counters summed over all shards.
    pub fn stats(&self) -> CacheStats {
        let mut total = CacheStats::default();
        for shard in self.shards.iter().chain(std::iter::once(&self.large)) {
            total.add(&shard.0.lock().stats);
        }
        total
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Loads `(id, generation)` at `priority` into the cache.
    fn fill(cache: &Cache, id: u64, generation: u64, priority: Priority) {
        let bytes = Bytes::from(vec![id as u8; 1000 - shard::ENTRY_OVERHEAD as usize]);
        match cache.lookup(ExtentId(id), generation, priority) {
            Lookup::Load(token) => {
                let outcome = cache.complete(token, Ok(bytes), || true);
                assert!(matches!(outcome, FlightOutcome::Ready(_)));
            }
            other => panic!("expected a load, got {other:?}"),
        }
    }

    fn hit(cache: &Cache, id: u64, generation: u64) -> bool {
        matches!(
            cache.lookup(ExtentId(id), generation, Priority::Demand),
            Lookup::Hit(_)
        )
    }

    #[test]
    fn generation_tagged_cache_serves_only_the_looked_up_generation() {
        let cache = Cache::new(1 << 20, 1);
        fill(&cache, 1, 5, Priority::Demand);
        assert!(hit(&cache, 1, 5));
        assert!(matches!(
            cache.lookup(ExtentId(1), 4, Priority::Demand),
            Lookup::Newer
        ));
        // A lookup of a newer generation never gets the old bytes: it loads.
        assert!(matches!(
            cache.lookup(ExtentId(1), 6, Priority::Demand),
            Lookup::Load(_)
        ));
    }

    /// A prefetch's load a demand read joined counts as used once it fills, and
    /// fills as a demand fill; a second reader of a demand read's load is not a
    /// prefetch used, nor is a joined load that failed or was given up.
    #[test]
    fn a_joined_prefetch_load_counts_used_once_it_fills_as_demand() {
        let cache = Cache::new(1 << 20, 1);
        let bytes = |id: u64| Bytes::from(vec![id as u8; 100]);
        let Lookup::Load(demand) = cache.lookup(ExtentId(1), 2, Priority::Demand) else {
            panic!("a demand read's load");
        };
        assert!(matches!(
            cache.lookup(ExtentId(1), 2, Priority::Demand),
            Lookup::Wait(_)
        ));
        cache.complete(demand, Ok(bytes(1)), || true);
        assert_eq!(cache.stats().prefetch_used, 0, "a demand read's load");
        let Lookup::Load(prefetch) = cache.lookup(ExtentId(3), 4, Priority::Prefetch) else {
            panic!("a prefetch's load");
        };
        assert!(matches!(
            cache.lookup(ExtentId(3), 4, Priority::Demand),
            Lookup::Wait(_)
        ));
        assert!(matches!(
            cache.lookup(ExtentId(3), 4, Priority::Demand),
            Lookup::Wait(_)
        ));
        cache.complete(prefetch, Ok(bytes(3)), || true);
        assert_eq!(cache.stats().prefetch_used, 1, "joined once, counted once");
        // Filled as a demand fill: read, it is not a prefetch used again.
        assert!(hit(&cache, 3, 4));
        assert_eq!(cache.stats().prefetch_used, 1);

        // A joined prefetch that fails, or is given up, served no read.
        let Lookup::Load(failing) = cache.lookup(ExtentId(5), 6, Priority::Prefetch) else {
            panic!("a prefetch's load");
        };
        assert!(matches!(
            cache.lookup(ExtentId(5), 6, Priority::Demand),
            Lookup::Wait(_)
        ));
        let err = crate::Error::Shutdown;
        cache.complete(failing, Err(err), || true);
        let Lookup::Load(given_up) = cache.lookup(ExtentId(7), 8, Priority::Prefetch) else {
            panic!("a prefetch's load");
        };
        assert!(matches!(
            cache.lookup(ExtentId(7), 8, Priority::Demand),
            Lookup::Wait(_)
        ));
        cache.abandon(given_up);
        assert_eq!(cache.stats().prefetch_used, 1, "neither served a read");
        assert_eq!(cache.stats().prefetch_joined, 3, "each load joined once");
    }

    #[test]
    fn prefetched_entries_never_read_are_evicted_first() {
        // 10 entries of 1000 bytes fit.
        let cache = Cache::new(10_000, 1);
        for id in 0..5 {
            fill(&cache, id, 1, Priority::Demand);
            assert!(hit(&cache, id, 1));
        }
        for id in 100..140 {
            fill(&cache, id, 1, Priority::Prefetch);
        }
        for id in 0..5 {
            assert!(
                hit(&cache, id, 1),
                "hot entry {id} displaced by a prefetch flood"
            );
        }
        let stats = cache.stats();
        assert!(stats.prefetch_wasted >= 30, "{stats:?}");
        assert!(cache.used_bytes() <= 10_000);
    }

    #[test]
    fn a_sequential_scan_keeps_its_readahead_window() {
        // Room for 40 entries; the scan prefetches 8 ahead of its reads.
        let cache = Cache::new(40_000, 1);
        for id in 0..8 {
            fill(&cache, id, 1, Priority::Prefetch);
        }
        for id in 0..500 {
            fill(&cache, id + 8, 1, Priority::Prefetch);
            assert!(
                hit(&cache, id, 1),
                "the scan lost its own prefetched entry {id}"
            );
        }
        let stats = cache.stats();
        assert_eq!(
            (stats.prefetch_wasted, stats.prefetch_used),
            (0, 500),
            "{stats:?}"
        );
    }

    /// A demand load of extent 3 at generation 1 in `cache` (empty), and a
    /// second reader waiting for it.
    fn load_with_a_waiter(cache: &Cache) -> (FillToken, Arc<Flight>) {
        let Lookup::Load(token) = cache.lookup(ExtentId(3), 1, Priority::Demand) else {
            panic!("empty cache loads");
        };
        let Lookup::Wait(flight) = cache.lookup(ExtentId(3), 1, Priority::Demand) else {
            panic!("second reader waits");
        };
        (token, flight)
    }

    /// Whatever the load ends with, bytes or an error, the waiters of a
    /// generation invalidated meanwhile are told "superseded" (a failure of
    /// a superseded generation is a race, not a fault to verify).
    #[test]
    fn invalidation_rejects_a_load_in_flight_and_its_waiters() {
        for failed in [false, true] {
            let cache = Cache::new(1 << 20, 1);
            let (token, flight) = load_with_a_waiter(&cache);
            cache.invalidate(ExtentId(3), 2); // generation 2 committed meanwhile
            let result = match failed {
                false => Ok(Bytes::from(vec![1u8; 8])),
                true => Err(crate::Error::Internal {
                    what: "a read of generation 1 failed",
                }),
            };
            let outcome = cache.complete(token, result, || true);
            assert_eq!(outcome, FlightOutcome::Superseded, "failed: {failed}");
            assert_eq!(
                flight.outcome(),
                Some(FlightOutcome::Superseded),
                "waiter told superseded"
            );
            assert!(
                cache.peek(ExtentId(3)).is_none(),
                "the stale fill was not kept"
            );
        }
    }

    /// A failed load tells its waiters the failure while its generation is
    /// still the committed one; one whose generation a write committed past,
    /// before that write's invalidation reached the cache, is a race: they are
    /// told `Superseded` and retry instead of climbing the integrity ladder.
    #[test]
    fn a_failed_load_still_current_tells_its_waiters_the_failure() {
        for current in [true, false] {
            let cache = Cache::new(1 << 20, 1);
            let (token, flight) = load_with_a_waiter(&cache);
            let err = crate::Error::Internal {
                what: "a read of generation 1 failed",
            };
            let outcome = cache.complete(token, Err(err.clone()), || current);
            let expected = match current {
                true => FlightOutcome::Failed(err),
                false => FlightOutcome::Superseded,
            };
            assert_eq!(outcome, expected, "current: {current}");
            assert_eq!(flight.outcome(), Some(expected), "current: {current}");
            assert!(cache.peek(ExtentId(3)).is_none(), "nothing cached");
        }
    }

    /// Misses count demand lookups only, as hits do: a prefetch's miss (a
    /// readahead claim's too) is not a read the cache failed to serve.
    #[test]
    fn only_demand_lookups_count_as_hits_and_misses() {
        let cache = Cache::new(1 << 20, 1);
        let Lookup::Load(token) = cache.lookup(ExtentId(1), 1, Priority::Prefetch) else {
            panic!("empty cache loads");
        };
        let _ = cache.claim(ExtentId(2), 1);
        assert_eq!((cache.stats().hits, cache.stats().misses), (0, 0));
        let value = Bytes::from(b"extent 1, generation 1".to_vec());
        let ready = cache.complete(token, Ok(value), || true);
        assert!(matches!(ready, FlightOutcome::Ready(_)));
        assert!(matches!(
            cache.lookup(ExtentId(1), 1, Priority::Prefetch),
            Lookup::Hit(_)
        ));
        assert_eq!((cache.stats().hits, cache.stats().misses), (0, 0));
        assert!(matches!(
            cache.lookup(ExtentId(1), 1, Priority::Demand),
            Lookup::Hit(_)
        ));
        assert!(!matches!(
            cache.lookup(ExtentId(3), 1, Priority::Demand),
            Lookup::Hit(_)
        ));
        assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    }
}
