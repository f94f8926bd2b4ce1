//! Prefetch hints from a `Store`: explicit prefetch and sequential readahead ask
//! the workers for loads, skipping what the cache holds already.

use super::Store;
use super::prefetch::Hint;
use crate::bytes::Bytes;
use crate::protocol::{Claim, ReadOp};
use crate::record::ExtentId;
use crate::sync::Ordering::Relaxed;

impl Store {
    pub(super) fn hint(&self, id: ExtentId) -> bool {
        self.hint_unless_held(id, false) == Hinted::Queued
    }

    /// Queues a prefetch of `id` unless it is not readable, or its current bytes
    /// are cached or being loaded already: a hint would then only cost a queue
    /// slot and a worker's lookup (with 4 096 cached extents, readahead on cost 3x
    /// a sequential read with it off, every read queueing a hint for a hit).
    ///
    /// With `claim`, and while the queue is short, the hint claims the load
    /// (`ReadOp::claim`): the reader that reaches the extent just before a
    /// worker does then waits on the worker's load instead of reading the
    /// extent a second time (and reads it itself, taking the claim over, if
    /// the claim is further back in the queue). Unclaimed, a reader on 2 cores
    /// that outran the 2 workers loaded what they were about to load, and the scan served 45-97 % from
    /// prefetch from run to run (BENCHMARKS.md, "Readahead that waits").
    fn hint_unless_held(&self, id: ExtentId, claim: bool) -> Hinted {
        let core = &self.shared.core;
        let claim = claim && self.prefetcher.queued() < self.prefetcher.claim_below();
        let found = match claim {
            true => ReadOp::claim(core, id),
            false => match ReadOp::unheld(core, id) {
                Ok(snapshot) => {
                    let hint = Hint {
                        id,
                        generation: snapshot.generation(),
                        claimed: None,
                        buffer: None,
                    };
                    return self.offer(hint);
                }
                Err(found) => found,
            },
        };
        match found {
            Claim::Claimed(token, length) => self.offer(Hint {
                id,
                generation: token.generation(),
                claimed: Some(token),
                buffer: self
                    .buffers_ahead(length)
                    .then(|| Bytes::with_capacity(length as usize)),
            }),
            Claim::Cached => Hinted::Cached,
            Claim::Not => Hinted::Not,
        }
    }

    /// Whether a claimed hint of an extent `length` bytes long brings its
    /// buffer (see [`BUFFER_AHEAD_MAX`]).
    fn buffers_ahead(&self, length: u32) -> bool {
        length <= BUFFER_AHEAD_MAX
            && self.prefetcher.waiting() < self.prefetcher.claim_below() as u64
    }

    /// Queues `hint`, counted; a claim the full queue refused is ended.
    fn offer(&self, hint: Hint) -> Hinted {
        let counters = &self.shared.counters;
        match self.prefetcher.offer(hint) {
            Ok(()) => {
                counters.prefetch_queued.bump();
                Hinted::Queued
            }
            Err(hint) => {
                counters.prefetch_dropped.bump();
                if let Some(token) = hint.claimed {
                    self.shared.core.cache.abandon(token);
                }
                Hinted::Dropped
            }
        }
    }

    /// Feeds sequential detection with a read of `id` and hints what it asks
    /// for. A read that hit the cache while every extent the window asked for
    /// was cached already marks readahead idle: later hits skip detection (they
    /// cost as much as the read itself) until a read has to load its bytes, which
    /// wakes it, as RocksDB reads ahead only on reads that reach the file.
    ///
    /// `loaded`: the read was not a hit; `read_itself`: it read the device
    /// itself, so no worker had loaded or claimed the extent first.
    pub(super) fn readahead(
        &self,
        id: ExtentId,
        extent_bytes: u64,
        loaded: bool,
        read_itself: bool,
    ) {
        // Nothing to hide on a device that answers faster than a handoff, and
        // nobody to hide it without workers (every hint would be dropped, and
        // asked for again by the next read).
        if !self.prefetcher.has_workers() || !self.shared.readahead_pays() {
            return;
        }
        // Detection is best effort: a reader that finds it busy skips it rather than
        // wait on another reader.
        let Some(mut readahead) = self.readahead.try_lock() else {
            return;
        };
        let capacity = self.shared.core.table.capacity();
        let range = readahead.on_read(id.0, extent_bytes, read_itself, capacity);
        drop(readahead);
        let asked = !range.is_empty();
        let mut all_cached = true;
        for next in range {
            match self.hint_unless_held(ExtentId(next), true) {
                Hinted::Cached => {}
                Hinted::Dropped => {
                    // The queue is full: the window asks for the rest again later
                    // rather than skip it. Best effort too.
                    if let Some(mut readahead) = self.readahead.try_lock() {
                        readahead.unissue(next);
                    }
                    all_cached = false;
                    break;
                }
                Hinted::Queued | Hinted::Not => all_cached = false,
            }
        }
        // Relaxed: see `read`.
        self.readahead_idle
            .store(!loaded && asked && all_cached, Relaxed);
    }
}

/// The largest extent whose buffer readahead allocates on the reader's thread
/// when it claims the load (`Hint::buffer`). A hit touches the value's handle,
/// so values lie best where a scan meets them in order: with glibc's
/// per-thread arenas, a cache the two workers filled on a scan was read back
/// 1.17x slower than one the reader filled (BENCHMARKS.md, "Cached reads: where
/// the values lie"). Bound: larger values are allocated by the worker, because
/// glibc maps each allocation from 128 KiB by default (until its threshold
/// adapts), a system call on the reader's path, and a large value's own read
/// outweighs where its handle lies. A buffer is allocated only while fewer
/// hints than `claim_below` (128) wait in the queue or in a worker's batch
/// (`Prefetcher::waiting`), so the buffers of waiting hints hold at most
/// (128 + the threads hinting at once) × 64 KiB, about 8 MiB with one reader;
/// a buffer whose load runs is that load's own memory.
const BUFFER_AHEAD_MAX: u32 = 64 << 10;

/// What `Store::hint_unless_held` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hinted {
    /// Queued for a worker.
    Queued,
    /// Cached already: nothing to load.
    Cached,
    /// Not queued: not readable, or loading already.
    Not,
    /// Not queued: the queue is full.
    Dropped,
}
