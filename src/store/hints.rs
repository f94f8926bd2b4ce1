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
    /// that outran the 2 workers loaded what they were about to load, and the
    /// scan served 45-97 % from prefetch from run to run (BENCHMARKS.md,
    /// "Readahead that waits").
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
                    .then(|| self.buffer(length as usize)),
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

    /// A buffer with room for `len` bytes for a readahead hint, from the
    /// store's run of buffers when it has one of that length (see
    /// [`BufferRun`]).
    fn buffer(&self, len: usize) -> Bytes {
        let run = self.buffers.try_lock().and_then(|mut run| run.take(len));
        run.unwrap_or_else(|| Bytes::with_capacity(len))
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
/// (128 + the threads hinting at once) × 64 KiB, about 8 MiB with one reader,
/// and the store's [`BufferRun`] at most 256 KiB more; a buffer whose load
/// runs is that load's own memory.
const BUFFER_AHEAD_MAX: u32 = 64 << 10;

/// Readahead's buffers, allocated ahead in runs: a run's handles one after
/// another, then their rooms one after another.
///
/// A hit touches the value's handle (its reference count), and a scan of
/// cached values runs faster when what it touches lies in scan order, where
/// the CPU's prefetcher follows it. Buffers allocated one at a time, as each
/// hint was claimed, lie among the claim's own allocations; in runs, a scan
/// over the cached values of a readahead scan reads as fast as one without
/// readahead (0.963x, against 1.08x one at a time: BENCHMARKS.md, "Cached
/// reads: buffers in runs", which also has the variants that did not place
/// them as well or lengthened two scans' p99).
///
/// A run is made for one length once two hints in a row asked for it. Another
/// length drops what is left of it, and the next run is made twice as long as
/// the dropped one was used (at least 2), so lengths that change often waste
/// at most about half of each run; a run used up makes the next one twice as
/// long again. Bounds: a run holds at most [`RUN_BYTES`] of room (256 KiB) in
/// at most [`HANDLE_RUN`] buffers, memory the cache does not weigh until a
/// load fills it, kept until a hint of another length, `Store::close` or the
/// store's drop; no run is made for a length over [`RUN_BYTES`] / 2.
#[derive(Debug)]
pub(super) struct BufferRun {
    /// The length the last hint asked for, and the one the run's buffers
    /// have room for.
    last_len: Option<usize>,
    /// Buffers not handed out yet, the first allocated last.
    run: Vec<Bytes>,
    /// How many buffers the current run was made with.
    made: usize,
    /// How many buffers the next run is made with (2 ..= [`HANDLE_RUN`]).
    next: usize,
}

impl Default for BufferRun {
    fn default() -> Self {
        BufferRun {
            last_len: None,
            run: Vec::new(),
            made: 0,
            next: HANDLE_RUN,
        }
    }
}

/// The most buffers a [`BufferRun`] makes at once.
const HANDLE_RUN: usize = 16;

/// The most room a [`BufferRun`] holds.
const RUN_BYTES: usize = 256 << 10;

impl BufferRun {
    /// A buffer with room for `len` bytes, if the run has one or makes one;
    /// `None`: the caller allocates its own.
    fn take(&mut self, len: usize) -> Option<Bytes> {
        let repeated = self.last_len.replace(len) == Some(len);
        if !repeated && !self.run.is_empty() {
            let used = self.made - self.run.len();
            self.next = (2 * used).clamp(2, HANDLE_RUN);
            self.run.clear();
            self.made = 0;
        }
        if self.run.is_empty() && repeated && len <= RUN_BYTES / 2 {
            if self.made == self.next {
                // The last run of this length was used up.
                self.next = (2 * self.next).min(HANDLE_RUN);
            }
            let count = self.next.min(RUN_BYTES / len.max(1));
            self.run.extend((0..count).map(|_| Bytes::empty()));
            for buffer in &mut self.run {
                buffer.make_room(len);
            }
            // Popped from the back: handed out in the order allocated.
            self.run.reverse();
            self.made = count;
        }
        self.run.pop()
    }

    /// Drops the buffers not handed out.
    pub(super) fn clear(&mut self) {
        self.run.clear();
    }
}

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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{MemBackend, StoreConfig};

    /// 4 KiB of extent `id` at `generation`, both in its first 16 bytes.
    fn value_of(id: ExtentId, generation: u64) -> Vec<u8> {
        let mut v = vec![id.0 as u8; 4096];
        v[..8].copy_from_slice(&id.0.to_le_bytes());
        v[8..16].copy_from_slice(&generation.to_le_bytes());
        v
    }

    #[test]
    fn a_sequential_scan_claims_its_hints_with_buffers_from_a_run() {
        let config = StoreConfig::builder()
            .devices(2)
            .prefetch_workers(2)
            .readahead(true)
            .readahead_min_read_us(0)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let store = Store::new(MemBackend::new(2), config).unwrap_or_else(|e| panic!("{e}"));
        let value = |id: u64| value_of(ExtentId(id), 1);
        for id in 0..64 {
            store
                .write(ExtentId(id), &value(id))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(store.buffers.lock().last_len, None, "no hint yet");
        for id in 0..64 {
            let read = store.read(ExtentId(id)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&read[..], &value(id)[..], "extent {id}");
        }
        // The window's claimed hints took 4 KiB buffers from a run (the
        // queue never held 128 hints, so every claimed hint brought one).
        let runs = store.buffers.lock();
        assert_eq!(runs.last_len, Some(4096));
        assert!(runs.made > 0 && runs.run.len() < runs.made, "{runs:?}");
        drop(runs);
        assert!(store.stats().prefetch_queued > 0);
        store.close().unwrap_or_else(|e| panic!("{e}"));
        assert!(store.buffers.lock().run.is_empty(), "close drops the run");
    }

    #[test]
    fn a_buffer_run_is_made_for_a_length_asked_twice_and_sized_by_its_use() {
        let mut runs = BufferRun::default();
        assert!(runs.take(4096).is_none(), "asked once: no run yet");
        let first = runs.take(4096).expect("asked twice: a run");
        assert_eq!((runs.made, runs.run.len()), (HANDLE_RUN, HANDLE_RUN - 1));
        // Each has exactly the room asked for, filled in place.
        let room = first.as_ptr();
        let value = value_of(ExtentId(7), 1);
        let filled = Bytes::copied(Some(first), &value);
        assert_eq!(&filled[..], &value[..]);
        assert_eq!(filled.as_ptr(), room);
        for left in (0..HANDLE_RUN - 1).rev() {
            let buffer = runs.take(4096).expect("from the run");
            assert_eq!(runs.run.len(), left, "handed out from the run");
            let room = buffer.as_ptr();
            assert_eq!(Bytes::sized(Some(buffer), 4096).as_ptr(), room);
        }
        assert!(runs.take(4096).is_some());
        assert_eq!(runs.run.len(), HANDLE_RUN - 1, "used up: a new run");

        // Another length drops the run, 1 of its 16 used: the next is 2 long.
        assert!(runs.take(100).is_none());
        assert!(runs.run.is_empty());
        assert!(runs.take(100).is_some());
        assert_eq!((runs.made, runs.run.len()), (2, 1));
        // Used up, the next run is twice as long.
        assert!(runs.take(100).is_some());
        assert!(runs.take(100).is_some());
        assert_eq!((runs.made, runs.run.len()), (4, 3));
        // A run of 64 KiB holds 4; none is made past 128 KiB.
        assert!(runs.take(65536).is_none());
        runs.next = HANDLE_RUN;
        assert!(runs.take(65536).is_some());
        assert_eq!(runs.made, RUN_BYTES / 65536);
        assert!(runs.take(RUN_BYTES).is_none());
        assert!(runs.take(RUN_BYTES).is_none());
        // Lengths that alternate never make a run; zero is a length like any.
        for len in [0, 200, 0, 200] {
            assert!(runs.take(len).is_none());
        }
        runs.clear();
        assert!(runs.run.is_empty());
    }
}
