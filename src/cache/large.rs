//! Entries heavier than a shard: kept in one extra shard that borrows its room
//! from the others, so any value up to the whole capacity is cached.
//!
//! A shard holds `capacity / shards` bytes, so a 5 MiB value never fit the
//! default 64 MiB cache of 16 shards and was read from the device every time
//! (quick_cache has the same limit, its issues 26 and 94). Such a value goes to
//! the *large* shard instead, whose capacity is the whole cache, and every
//! regular shard lends it an equal part of its own room: a regular shard holds at
//! most `capacity / shards - ceil(large_used / shards)`. So the cache as a whole
//! stays within its capacity, values of up to all of it are cached, and a cache
//! that never sees one pays a single relaxed load on a miss and on an
//! invalidation, nothing on a hit.
//!
//! Weight-balanced shards were the alternative: they would move the bound of
//! every shard on every insert, where this moves it only when a large value
//! comes or goes.
//!
//! # Locking
//!
//! The large shard's lock is only ever taken inside a regular shard's lock (the
//! one of the extent concerned) or alone, never the other way round. A large
//! fill is inserted under the regular shard lock that saw its load's slot and
//! its `still_current` check, and a lookup or invalidation of that extent
//! checks the large shard under the same lock, so the large shard is consistent
//! with the regular one per extent exactly as a regular entry is. `large_used`
//! is stored under the large lock and read with `Relaxed`: a reader that must
//! find an entry of its extent holds the regular lock the entry was inserted
//! under, which orders the store before its load (and a later store is made
//! under the large lock, after it, from the same books). The regular shards
//! give their lent room up after the large insert, each under its own lock
//! alone.

use super::shard::{CacheEntry, Shard};
use super::{Cache, Evicted, Lookup, Priority};
use crate::bytes::Bytes;
use crate::record::ExtentId;
use crate::sync::Ordering::Relaxed;

impl Cache {
    /// The room each regular shard lends the large entries now.
    pub(super) fn borrowed(&self) -> u64 {
        let shards = self.shards.len() as u64;
        // Relaxed: a bound a shard evicts to; `lend` enforces the one a large
        // insert published (see the module's locking notes).
        self.large_used.load(Relaxed).div_ceil(shards)
    }

    /// Whether any large entry may be held (see the module's locking notes).
    fn any_large(&self) -> bool {
        // Relaxed: pairs with `publish` through the regular shard lock the
        // caller holds (see the module's locking notes).
        self.large_used.load(Relaxed) > 0
    }

    /// Publishes the large shard's books (under its lock).
    fn publish(&self, large: &Shard) {
        // Relaxed: under the large lock, so stores follow that lock's order;
        // readers are ordered by the regular lock (module notes).
        self.large_used.store(large.used(), Relaxed);
    }

    /// A lookup's answer from the large shard, if it holds `id` (called under
    /// `id`'s regular shard lock). An older generation there is dropped, and the
    /// caller goes on to load.
    pub(super) fn large_lookup(
        &self,
        id: ExtentId,
        generation: u64,
        priority: Priority,
    ) -> Option<Lookup> {
        if !self.any_large() {
            return None;
        }
        let mut large = self.large.0.lock();
        let held = match large.map.get(&id) {
            Some(CacheEntry::Ready(e)) => e.generation,
            _ => return None,
        };
        if held > generation {
            return Some(Lookup::Newer);
        }
        if held < generation {
            large.remove(id);
            self.publish(&large);
            return None;
        }
        match priority {
            Priority::Demand => {
                let bytes = large.touch(id, generation)?;
                large.stats.hits += 1;
                Some(Lookup::Hit(bytes))
            }
            Priority::Prefetch => match large.map.get(&id) {
                Some(CacheEntry::Ready(e)) => Some(Lookup::Hit(e.bytes.clone())),
                _ => None,
            },
        }
    }

    /// Inserts a fill heavier than a regular shard (under `id`'s regular shard
    /// lock, after its `still_current` check). Returns what it evicted; the
    /// caller then calls [`lend`](Self::lend) outside every lock.
    pub(super) fn insert_large(
        &self,
        id: ExtentId,
        generation: u64,
        bytes: Bytes,
        w: u64,
        priority: Priority,
    ) -> Vec<Evicted> {
        let mut large = self.large.0.lock();
        large.insert(id, generation, bytes, w, priority, &self.large_limits);
        self.publish(&large);
        std::mem::take(&mut large.evicted_out)
    }

    /// Makes every regular shard give up the room it now lends (each under its
    /// own lock alone). Returns what they evicted.
    pub(super) fn lend(&self) -> Vec<Evicted> {
        let borrowed = self.borrowed();
        let mut evicted = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            shard.lend(borrowed, &self.limits);
            evicted.append(&mut shard.evicted_out);
        }
        evicted
    }

    /// Drops `id`'s large entry if older than `current_generation` (under
    /// `id`'s regular shard lock).
    pub(super) fn invalidate_large(&self, id: ExtentId, current_generation: u64) {
        if !self.any_large() {
            return;
        }
        let mut large = self.large.0.lock();
        if matches!(large.map.get(&id), Some(CacheEntry::Ready(e)) if e.generation < current_generation)
        {
            large.remove(id);
            large.stats.invalidated += 1;
            self.publish(&large);
        }
    }

    /// Removes `id`'s large entry if it holds `generation`.
    pub(super) fn remove_large(&self, id: ExtentId, generation: u64) -> bool {
        if !self.any_large() {
            return false;
        }
        let mut large = self.large.0.lock();
        let matches =
            matches!(large.map.get(&id), Some(CacheEntry::Ready(e)) if e.generation == generation);
        if matches {
            large.remove(id);
            self.publish(&large);
        }
        matches
    }

    /// `id`'s large entry: its generation and bytes, without hit credit.
    pub(super) fn peek_large(&self, id: ExtentId) -> Option<(u64, Bytes)> {
        if !self.any_large() {
            return None;
        }
        match self.large.0.lock().map.get(&id) {
            Some(CacheEntry::Ready(e)) => Some((e.generation, e.bytes.clone())),
            _ => None,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::{Cache, FlightOutcome, Lookup, Priority};
    use crate::bytes::Bytes;
    use crate::cache::shard::ENTRY_OVERHEAD;
    use crate::record::ExtentId;

    /// Loads `id` at `generation` with a value weighing `weight` bytes (its
    /// first byte the generation); whether it was cached.
    fn fill(cache: &Cache, id: u64, generation: u64, weight: u64) -> bool {
        let mut bytes = vec![id as u8; (weight - ENTRY_OVERHEAD) as usize];
        bytes[0] = generation as u8;
        match cache.lookup(ExtentId(id), generation, Priority::Demand) {
            Lookup::Load(token) => {
                let outcome = cache.complete(token, Ok(Bytes::from(bytes)), || true);
                assert!(matches!(outcome, FlightOutcome::Ready(_)));
                cache.peek(ExtentId(id)).is_some()
            }
            other => panic!("expected a load, got {other:?}"),
        }
    }

    fn hit(cache: &Cache, id: u64, generation: u64) -> Option<Bytes> {
        match cache.lookup(ExtentId(id), generation, Priority::Demand) {
            Lookup::Hit(bytes) => Some(bytes),
            _ => None,
        }
    }

    #[test]
    fn a_value_heavier_than_a_shard_is_cached_and_served() {
        // 16 shards of 10 000 bytes.
        let cache = Cache::new(160_000, 16);
        assert_eq!(cache.max_entry_bytes(), 160_000);
        assert!(fill(&cache, 7, 3, 50_000));
        let bytes = hit(&cache, 7, 3).expect("a hit");
        assert_eq!(
            (bytes.len(), bytes[0]),
            (50_000 - ENTRY_OVERHEAD as usize, 3)
        );
        assert!(matches!(
            cache.lookup(ExtentId(7), 2, Priority::Demand),
            Lookup::Newer
        ));
        assert_eq!(cache.holds(ExtentId(7), 3), Some(true));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.oversized), (1, 0), "{stats:?}");
    }

    #[test]
    fn the_regular_shards_lend_their_room_so_the_cache_stays_within_its_capacity() {
        let cache = Cache::new(160_000, 16);
        for id in 0..400 {
            fill(&cache, id, 1, 1_000);
        }
        let before = cache.used_bytes();
        assert!(before > 120_000 && before <= 160_000, "{before}");
        assert!(fill(&cache, 1_000, 1, 80_000));
        assert!(cache.used_bytes() <= 160_000, "{}", cache.used_bytes());
        assert!(cache.stats().evicted >= 40, "small entries made room");
        // Small entries filled now stay within what is left.
        for id in 400..800 {
            fill(&cache, id, 1, 1_000);
        }
        assert!(cache.used_bytes() <= 160_000, "{}", cache.used_bytes());
        assert!(hit(&cache, 1_000, 1).is_some(), "the large entry is kept");
        // A second large entry that does not fit beside the first: the large
        // shard's policy picks which stays (the first was read since its fill),
        // within the capacity either way.
        fill(&cache, 1_001, 1, 100_000);
        assert!(cache.used_bytes() <= 160_000);
        let held = [1_000, 1_001].map(|id| cache.peek(ExtentId(id)).is_some());
        assert_eq!(held.iter().filter(|h| **h).count(), 1, "{held:?}");
    }

    #[test]
    fn invalidation_and_removal_reach_the_large_entry_and_give_the_room_back() {
        let cache = Cache::new(160_000, 16);
        assert!(fill(&cache, 9, 1, 60_000));
        cache.invalidate(ExtentId(9), 2);
        assert!(
            cache.peek(ExtentId(9)).is_none(),
            "an older generation goes"
        );
        assert_eq!(cache.borrowed(), 0, "its room is given back");
        assert!(fill(&cache, 9, 2, 60_000));
        assert!(!cache.remove(ExtentId(9), 1), "another generation stays");
        assert!(cache.remove(ExtentId(9), 2));
        assert_eq!(cache.used_bytes(), 0);
        // A newer generation's lookup drops an older large entry and loads.
        assert!(fill(&cache, 9, 3, 60_000));
        assert!(fill(&cache, 9, 4, 600), "the newer, small value loads");
        assert_eq!(cache.used_bytes(), 600);
    }

    #[test]
    fn a_value_heavier_than_the_whole_cache_is_counted_not_kept() {
        let cache = Cache::new(160_000, 16);
        assert!(!fill(&cache, 1, 1, 170_000));
        assert_eq!(cache.stats().oversized, 1);
        assert_eq!(cache.used_bytes(), 0);
    }
    /// A fill heavier than the room its shard has left while lending to a
    /// large entry is not kept, and evicts nothing: the shard's entries stay.
    #[test]
    fn a_fill_heavier_than_a_lending_shards_room_evicts_nothing() {
        // 16 shards of 10 000 bytes; a 150 000-byte entry borrows 9 375 of each.
        let cache = Cache::new(160_000, 16);
        assert!(fill(&cache, 9_999, 1, 150_000));
        let home = cache.shard(ExtentId(0));
        let same: Vec<u64> = (1..10_000)
            .filter(|&id| std::ptr::eq(cache.shard(ExtentId(id)), home))
            .take(2)
            .collect();
        assert!(fill(&cache, 0, 1, 300));
        assert!(fill(&cache, same[0], 1, 300));
        // 1 000 bytes: under the shard's capacity, over its 625 bytes of room.
        assert!(!fill(&cache, same[1], 1, 1_000), "not kept");
        assert!(cache.peek(ExtentId(0)).is_some(), "nothing evicted for it");
        assert!(cache.peek(ExtentId(same[0])).is_some());
        assert_eq!(cache.stats().oversized, 1);
        assert!(hit(&cache, 9_999, 1).is_some(), "the large entry stays");
    }
}
