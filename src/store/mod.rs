//! The blocking driver that storage engines use.
//!
//! [`Store`] runs the I/O-free protocol machines against a [`Backend`], with a
//! prefetcher and sequential readahead.

mod config;
mod prefetch;
mod readahead;

pub use config::{StoreConfig, StoreConfigBuilder};
pub use readahead::STREAMS as READAHEAD_STREAMS;

use crate::backend::{Backend, read_bytes};
use crate::bytes::Bytes;
use crate::cache::{Cache, CacheStats, Priority};
use crate::error::{Error, Result};
use crate::protocol::{Core, IoRequest, IoResult, ReadOp, Step, WriteOp};
use crate::record::{ExtentId, Snapshot};
use crate::space::{Allocator, Reclaimer};
use crate::sync::{Counter, Mutex};
use crate::table::ExtentTable;
use prefetch::{Hint, Prefetcher};
use readahead::Readahead;
use std::sync::Arc;

/// Operation counters of a [`Store`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The cache's counters.
    pub cache: CacheStats,
    /// `read` calls.
    pub reads: u64,
    /// `read` calls that returned bytes.
    pub read_ok: u64,
    /// `write` calls.
    pub writes: u64,
    /// `write` calls that committed.
    pub write_ok: u64,
    /// Prefetch hints queued (by `prefetch` or readahead).
    pub prefetch_queued: u64,
    /// Hints dropped because the queue was full or prefetch is off.
    pub prefetch_dropped: u64,
    /// Hints cancelled because the generation changed while queued.
    pub prefetch_cancelled: u64,
    /// Prefetch loads that finished (loaded, or found the entry cached).
    pub prefetch_done: u64,
    /// Retired locations waiting for readers to finish.
    pub retired_pending: u64,
}

#[derive(Debug, Default)]
struct Counters {
    reads: Counter,
    read_ok: Counter,
    writes: Counter,
    write_ok: Counter,
    prefetch_queued: Counter,
    prefetch_dropped: Counter,
    prefetch_cancelled: Counter,
    prefetch_done: Counter,
}

/// State shared by the store and its prefetch workers.
pub(crate) struct Shared {
    core: Core,
    backend: Box<dyn Backend>,
    counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("core", &self.core)
            .field("devices", &self.backend.device_count())
            .field("counters", &self.counters)
            .finish()
    }
}

/// A store of extents: versioned metadata, a generation-tagged cache, prefetch.
///
/// # Consistency
///
/// * [`read`](Self::read) returns the bytes of a content generation that was current
///   at some instant inside the call, checked against the identity-bound checksum;
///   never bytes of a write that has not committed, never stale bytes after a write
///   has returned.
/// * [`write`](Self::write) returns after the backend acknowledged the bytes as
///   durable and the new location, checksum and generation were committed together.
/// * [`prefetch`](Self::prefetch) never blocks and never changes what a read returns.
///
/// # Examples
///
/// ```
/// use extentmeta::{ExtentId, FileBackend, Store, StoreConfig};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::new(FileBackend::open(dir.path(), 2)?, StoreConfig::default())?;
/// store.write(ExtentId(1), b"hello extent")?;
/// assert_eq!(&*store.read(ExtentId(1))?, b"hello extent");
/// store.prefetch(&[ExtentId(1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    readahead: Mutex<Readahead>,
    // Declared last: dropped (workers joined) after nothing else needs them.
    prefetcher: Prefetcher,
}

impl Store {
    /// A store over `backend`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the backend has no devices.
    pub fn new(backend: impl Backend, config: StoreConfig) -> Result<Self> {
        let devices = backend.device_count();
        if devices == 0 {
            return Err(Error::InvalidConfig {
                field: "backend",
                reason: "the backend has no devices".into(),
            });
        }
        let core = Core {
            table: ExtentTable::new(config.table),
            cache: Cache::new(config.cache_bytes, config.cache_shards),
            allocator: Allocator::new(
                devices,
                config.device_capacity_bytes,
                config.block_size_bytes,
            ),
            reclaimer: Reclaimer::new(),
        };
        let shared = Arc::new(Shared {
            core,
            backend: Box::new(backend),
            counters: Counters::default(),
        });
        let prefetcher = Prefetcher::start(&shared, config.prefetch_workers, config.prefetch_queue);
        Ok(Store {
            shared,
            readahead: Mutex::new(Readahead::new(
                config.readahead_min_bytes,
                config.readahead_max_bytes,
            )),
            prefetcher,
        })
    }

    /// Writes `bytes` as the new content of `id`.
    ///
    /// # Consistency
    ///
    /// Readers see the previous bytes until the commit and the new ones after it,
    /// never a mix; a read that starts after `write` returns sees these bytes.
    ///
    /// # Errors
    ///
    /// [`Error::WriteInProgress`] if another write of `id` is pending,
    /// [`Error::NoSpace`], [`Error::TooLarge`], backend errors ([`Error::Io`]); on
    /// any error the previous bytes stay committed and readable.
    pub fn write(&self, id: ExtentId, bytes: &[u8]) -> Result<Snapshot> {
        self.shared.counters.writes.bump();
        let mut op = WriteOp::new(id, Bytes::from(bytes));
        let core = &self.shared.core;
        let mut step = op.start(core);
        // Bounded: a write asks for exactly two I/Os (data, acknowledgment).
        loop {
            step = match step {
                Step::Io(request) => op.on_io(core, self.shared.perform(request)),
                Step::Wait(_) => unreachable!("writes never wait on a load"),
                Step::Done(result) => {
                    if result.is_ok() {
                        self.shared.counters.write_ok.bump();
                    }
                    return result;
                }
            };
        }
    }

    /// Reads the current bytes of `id`, from the cache when its generation is
    /// current, else from the backend (then cached). Feeds sequential readahead.
    ///
    /// # Consistency
    ///
    /// See the type's documentation: the bytes of a generation current at some
    /// instant inside the call, verified against their checksum.
    ///
    /// # Errors
    ///
    /// [`Error::NotReadable`] for a vacant extent, [`Error::Quarantined`],
    /// [`Error::ChecksumMismatch`] if the media returned wrong bytes for a stable
    /// record, [`Error::Superseded`] if the extent was rewritten on every attempt,
    /// backend errors.
    pub fn read(&self, id: ExtentId) -> Result<Bytes> {
        self.shared.counters.reads.bump();
        let result = self.shared.run_read(id, Priority::Demand);
        if let Ok(bytes) = &result {
            self.shared.counters.read_ok.bump();
            self.readahead(id, bytes.len() as u64);
        }
        result
    }

    /// Queues prefetches of `ids` and returns at once; returns how many were queued.
    /// Hints beyond the queue bound, and ids that are not readable, are dropped.
    pub fn prefetch(&self, ids: &[ExtentId]) -> usize {
        ids.iter().filter(|&&id| self.hint(id)).count()
    }

    /// Loads `id` into the cache at prefetch priority and waits for it: what a
    /// prefetch worker does with one hint. Returns `Ok(true)` if the bytes are now
    /// cached or being loaded by another reader.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub fn warm(&self, id: ExtentId) -> Result<bool> {
        self.shared.run_read(id, Priority::Prefetch).map(|_| true)
    }

    /// The current record of `id`.
    ///
    /// # Errors
    ///
    /// As [`ExtentTable::snapshot`].
    pub fn snapshot(&self, id: ExtentId) -> Result<Snapshot> {
        self.shared.core.table.snapshot(id)
    }

    /// Counters since the store was created.
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        StoreStats {
            cache: self.shared.core.cache.stats(),
            reads: c.reads.get(),
            read_ok: c.read_ok.get(),
            writes: c.writes.get(),
            write_ok: c.write_ok.get(),
            prefetch_queued: c.prefetch_queued.get(),
            prefetch_dropped: c.prefetch_dropped.get(),
            prefetch_cancelled: c.prefetch_cancelled.get(),
            prefetch_done: c.prefetch_done.get(),
            retired_pending: self.shared.core.reclaimer.pending() as u64,
        }
    }

    /// Hints waiting in the prefetch queue.
    pub fn prefetch_queued(&self) -> usize {
        self.prefetcher.queued()
    }

    fn hint(&self, id: ExtentId) -> bool {
        let Ok(snapshot) = self.shared.core.table.snapshot(id) else {
            return false;
        };
        if !snapshot.is_readable() {
            return false;
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
        queued
    }

    fn readahead(&self, id: ExtentId, extent_bytes: u64) {
        // Detection is best effort: a reader that finds it busy skips it rather than
        // wait on another reader.
        let Some(mut readahead) = self.readahead.try_lock() else {
            return;
        };
        let range = readahead.on_read(id.0, extent_bytes, self.shared.core.table.capacity());
        drop(readahead);
        for next in range {
            self.hint(ExtentId(next));
        }
    }
}

/// Releases a read's pin and load if its driver unwinds mid-flight (a panicking
/// backend): otherwise reclamation would stall and waiters would hang.
struct AbandonOnDrop<'a> {
    op: ReadOp,
    core: &'a Core,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        self.op.abandon(self.core);
    }
}

impl Shared {
    /// Runs the read protocol to completion, blocking on I/O and on other loads.
    fn run_read(&self, id: ExtentId, priority: Priority) -> Result<Bytes> {
        let core = &self.core;
        let mut guard = AbandonOnDrop {
            op: ReadOp::new(id, priority),
            core,
        };
        let op = &mut guard.op;
        let mut step = op.start(core);
        // Bounded: the op restarts at most MAX_ATTEMPTS times, one I/O or wait each.
        loop {
            step = match step {
                Step::Io(request) => op.on_io(core, self.perform(request)),
                Step::Wait(flight) if priority == Priority::Prefetch => {
                    drop(flight); // another reader is loading it: nothing to do
                    return Ok(Bytes::from(Vec::new()));
                }
                Step::Wait(flight) => op.on_wait(core, flight.wait()),
                Step::Done(result) => return result,
            };
        }
    }

    fn perform(&self, request: IoRequest) -> IoResult {
        let backend = &*self.backend;
        match request {
            IoRequest::Read(location) => IoResult::Read(read_bytes(backend, location)),
            IoRequest::Write(location, bytes) => IoResult::Done(backend.write_at(location, &bytes)),
            IoRequest::Sync(device) => IoResult::Done(backend.sync(device)),
        }
    }

    /// A worker's handling of one hint.
    fn prefetch_hint(&self, hint: Hint) {
        let current = self.core.table.snapshot(hint.id);
        if current.map_or(true, |s| s.generation() != hint.generation) {
            self.counters.prefetch_cancelled.bump();
            return;
        }
        // Errors are not the prefetcher's to report: a demand read will see them.
        if self.run_read(hint.id, Priority::Prefetch).is_ok() {
            self.counters.prefetch_done.bump();
        }
    }
}
