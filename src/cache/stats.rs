//! The cache's counters.

#[cfg(doc)]
use super::Cache;

/// Counters of one cache, summed over its shards.
///
/// Non-exhaustive: counters are added as the cache learns to count more;
/// read the fields, build none.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Demand lookups served from an entry of the current generation.
    pub hits: u64,
    /// Demand lookups that had to load or wait for a load (prefetches and
    /// readahead count in neither: see `prefetch_used` and `prefetch_wasted`).
    pub misses: u64,
    /// Entries inserted.
    pub inserted: u64,
    /// Entries evicted for space.
    pub evicted: u64,
    /// Fills rejected because the generation changed while they loaded.
    pub superseded: u64,
    /// Prefetched entries later read by a demand read, and prefetch loads a
    /// demand read joined, counted once they filled.
    pub prefetch_used: u64,
    /// Prefetch loads a demand read joined while in flight (counted at the
    /// first join, whatever the load then did).
    pub prefetch_joined: u64,
    /// Prefetched entries evicted without ever being read.
    pub prefetch_wasted: u64,
    /// Entries or loads removed because a newer generation committed.
    pub invalidated: u64,
    /// Fills never cached because they weigh more than the whole cache or
    /// 2^40 - 1 bytes ([`Cache::max_entry_bytes`]), or more than the room
    /// their shard has left while it lends room to entries heavier than a
    /// shard. (A fill heavier than a shard, `capacity / shards`, is cached
    /// apart: see [`Cache::max_entry_bytes`].)
    pub oversized: u64,
}

impl CacheStats {
    pub(super) fn add(&mut self, o: &CacheStats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.inserted += o.inserted;
        self.evicted += o.evicted;
        self.superseded += o.superseded;
        self.prefetch_used += o.prefetch_used;
        self.prefetch_joined += o.prefetch_joined;
        self.prefetch_wasted += o.prefetch_wasted;
        self.invalidated += o.invalidated;
        self.oversized += o.oversized;
    }
}
