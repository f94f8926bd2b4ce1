//! Prefetch hints from a `Store`: explicit prefetch and sequential readahead ask
//! the workers for loads, skipping what the cache holds already.

use super::Store;
use super::prefetch::Hint;
use crate::record::ExtentId;
use crate::sync::Ordering::Relaxed;

impl Store {
    pub(super) fn hint(&self, id: ExtentId) -> bool {
        self.hint_unless_held(id) == Hinted::Queued
    }

    /// Queues a prefetch of `id` unless it is not readable, or its current bytes
    /// are cached or being loaded already: a hint would then only cost a queue
    /// slot and a worker's lookup (with 4 096 cached extents, readahead on cost 3x
    /// a sequential read with it off, every read queueing a hint for a hit).
    fn hint_unless_held(&self, id: ExtentId) -> Hinted {
        let Ok(snapshot) = self.shared.core.table.snapshot(id) else {
            return Hinted::Not;
        };
        if !snapshot.is_readable() {
            return Hinted::Not;
        }
        match self.shared.core.cache.holds(id, snapshot.generation()) {
            Some(true) => return Hinted::Cached,
            Some(false) => return Hinted::Not,
            None => {}
        }
        let hint = Hint {
            id,
            generation: snapshot.generation(),
        };
        let counters = &self.shared.counters;
        let queued = self.prefetcher.offer(hint);
        let counter = if queued {
            &counters.prefetch_queued
        } else {
            &counters.prefetch_dropped
        };
        counter.bump();
        if queued { Hinted::Queued } else { Hinted::Not }
    }

    /// Feeds sequential detection with a read of `id` and hints what it asks
    /// for. A read that hit the cache while every extent the window asked for
    /// was cached already marks readahead idle: later hits skip detection (they
    /// cost as much as the read itself) until a read has to load its bytes, which
    /// wakes it, as RocksDB reads ahead only on reads that reach the file.
    pub(super) fn readahead(&self, id: ExtentId, extent_bytes: u64, loaded: bool) {
        // Nothing to hide on a device that answers faster than a handoff.
        if !self.shared.readahead_pays() {
            return;
        }
        // Detection is best effort: a reader that finds it busy skips it rather than
        // wait on another reader.
        let Some(mut readahead) = self.readahead.try_lock() else {
            return;
        };
        let range = readahead.on_read(id.0, extent_bytes, self.shared.core.table.capacity());
        drop(readahead);
        let asked = !range.is_empty();
        let mut all_cached = true;
        for next in range {
            all_cached &= self.hint_unless_held(ExtentId(next)) == Hinted::Cached;
        }
        // Relaxed: see `read`.
        self.readahead_idle
            .store(!loaded && asked && all_cached, Relaxed);
    }
}

/// What `Store::hint_unless_held` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hinted {
    /// Queued for a worker.
    Queued,
    /// Cached already: nothing to load.
    Cached,
    /// Not queued: not readable, loading already, or the queue is full.
    Not,
}
