//! The blocking driver that storage engines use.
//!
//! [`Store`] runs the I/O-free protocol machines against a [`Backend`], with a
//! prefetcher, sequential readahead, compaction, verification with the integrity
//! ladder (see [`crate::policy`]) and a background scrubber.

mod config;
mod prefetch;
mod readahead;
mod scrub;
mod shared;
mod stats;

pub use config::{MAX_EXTENT_BYTES, StoreConfig, StoreConfigBuilder};
pub use readahead::STREAMS as READAHEAD_STREAMS;
pub use stats::StoreStats;

use crate::backend::Backend;
use crate::bytes::Bytes;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::protocol::{CompactOp, CompactOutcome, Core, Verdict, WriteOp};
use crate::record::{ExtentId, Snapshot};
use crate::space::{Allocator, Health, Reclaimer};
use crate::sync::{Arc, Mutex, Ordering::Relaxed, thread};
use crate::table::ExtentTable;
use crossbeam::channel::{Sender, bounded};
use prefetch::{Hint, Prefetcher};
use readahead::Readahead;
use shared::Shared;

/// A store of extents: versioned metadata, a generation-tagged cache, prefetch,
/// compaction, verification and scrubbing.
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
/// * [`compact`](Self::compact) never changes what a read returns; a write that
///   commits during it wins.
/// * [`verify`](Self::verify) finds a fault only for a persistent fault of one
///   stable version, never for a race; it answers [`Verdict::Repaired`] if it then
///   remapped the extent, and FPRE004 only if the extent could not be repaired.
///
/// # Examples
///
/// ```
/// use extentmeta::{ExtentId, FileBackend, Store, StoreConfig, Verdict};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::new(FileBackend::open(dir.path(), 2)?, StoreConfig::default())?;
/// store.write(ExtentId(1), b"hello extent")?;
/// assert_eq!(&*store.read(ExtentId(1))?, b"hello extent");
/// store.prefetch(&[ExtentId(1)]);
/// store.compact(ExtentId(1))?;
/// assert_eq!(store.verify(ExtentId(1))?, Verdict::Ok { transient: 0 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    readahead: Mutex<Readahead>,
    /// Longest write accepted (checked before the caller's bytes are copied).
    max_extent_bytes: u64,
    /// Dropping it wakes and stops the scrubber.
    scrub_stop: Option<Sender<()>>,
    scrubber: Option<thread::JoinHandle<()>>,
    // Declared last: dropped (workers joined) after nothing else needs them.
    prefetcher: Prefetcher,
}

impl Store {
    /// A store over `backend`; starts the prefetch workers and, if configured, the
    /// scrubber.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if the backend has no devices; [`Error::Io`] (op
    /// `"spawn"`) if a worker thread cannot be started.
    pub fn new(backend: impl Backend, config: StoreConfig) -> Result<Self> {
        let devices = backend.device_count();
        if devices == 0 {
            return Err(Error::InvalidConfig {
                field: "backend",
                reason: "the backend has no devices".into(),
            });
        }
        let policy = config.policy;
        let core = Core {
            table: ExtentTable::new(config.table),
            cache: Cache::new(config.cache_bytes, config.cache_shards),
            allocator: Allocator::new(
                devices,
                config.device_capacity_bytes,
                config.block_size_bytes,
            ),
            reclaimer: Reclaimer::new(),
            health: Health::new(
                devices,
                policy.device_error_threshold,
                policy.device_error_window_secs * 1000,
            ),
        };
        let shared = Arc::new(Shared::new(
            core,
            Box::new(backend),
            policy,
            config.scrub_start,
        ));
        let prefetcher =
            Prefetcher::start(&shared, config.prefetch_workers, config.prefetch_queue)?;
        let (scrub_stop, scrubber) = if config.scrub_bytes_per_sec > 0 {
            let (stop, stopped) = bounded::<()>(1);
            let s = Arc::clone(&shared);
            let (rate, seed) = (config.scrub_bytes_per_sec, config.scrub_seed);
            let handle = thread::Builder::new()
                .name("extentmeta-scrub".into())
                .spawn(move || scrub::run(&s, rate, seed, &stopped))
                .map_err(|e| Error::io(0, "spawn", &e))?;
            (Some(stop), Some(handle))
        } else {
            (None, None)
        };
        Ok(Store {
            shared,
            readahead: Mutex::new(Readahead::new(
                config.readahead_min_bytes,
                config.readahead_max_bytes,
                config.prefetch_queue as u64,
            )),
            max_extent_bytes: config.max_extent_bytes,
            scrub_stop,
            scrubber,
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
    /// [`Error::NoSpace`], backend errors ([`Error::Io`]); on any error the previous
    /// bytes stay committed and readable. [`Error::TooLarge`] at once, before any
    /// byte is copied, if `bytes` is longer than
    /// [`max_extent_bytes`](StoreConfigBuilder::max_extent_bytes).
    pub fn write(&self, id: ExtentId, bytes: &[u8]) -> Result<Snapshot> {
        let counters = &self.shared.counters;
        counters.writes.bump();
        let length = bytes.len() as u64;
        if length > self.max_extent_bytes {
            return Err(Error::TooLarge {
                length,
                max: self.max_extent_bytes,
            });
        }
        let result = self
            .shared
            .drive(WriteOp::new(id, Bytes::from(bytes)), true);
        let committed = result?.ok_or(Error::Internal {
            what: "a write waited on a load",
        })?;
        counters.write_ok.bump();
        Ok(committed)
    }

    /// Reads the current bytes of `id`, from the cache when its generation is
    /// current, else from the backend (then cached). Feeds sequential readahead.
    ///
    /// A media error on a stable record climbs the integrity ladder (verify with
    /// retries; quarantine and remap a persistent fault) before the read answers.
    ///
    /// # Consistency
    ///
    /// The bytes of a generation current at some instant inside the call, verified
    /// against their checksum.
    ///
    /// # Errors
    ///
    /// [`Error::NotReadable`] for a vacant extent, [`Error::Quarantined`] if the
    /// extent is quarantined with no verified copy, [`Error::ChecksumMismatch`] and
    /// backend errors if a fault persists, [`Error::Superseded`] if the extent was
    /// rewritten on every attempt.
    pub fn read(&self, id: ExtentId) -> Result<Bytes> {
        let bytes = self.shared.read(id)?;
        self.readahead(id, bytes.len() as u64);
        Ok(bytes)
    }

    /// Queues prefetches of `ids` and returns at once; returns how many were queued.
    /// Hints beyond the queue bound, and ids that are not readable, are dropped.
    pub fn prefetch(&self, ids: &[ExtentId]) -> usize {
        ids.iter().filter(|&&id| self.hint(id)).count()
    }

    /// Loads `id` into the cache at prefetch priority now: what a prefetch worker
    /// does with one hint. Returns `Ok(false)` if another reader is loading it.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), without the integrity ladder.
    pub fn warm(&self, id: ExtentId) -> Result<bool> {
        self.shared.warm(id)
    }

    /// Moves `id`'s bytes to a fresh location (preferring another device),
    /// verifying the copy before committing it.
    ///
    /// # Consistency
    ///
    /// Reads keep being served during the compaction (from the old location or the
    /// cache, whose entries stay valid: the generation does not change). A write
    /// that commits meanwhile wins: the compaction aborts and frees its target.
    ///
    /// Returns [`CompactOutcome::Aborted`] (nothing moved, nothing changed) if the
    /// record is busy when the compaction starts (a write pending, another
    /// compaction running) or changes before the commit: a lost race the caller may
    /// retry, not an error.
    ///
    /// # Errors
    ///
    /// [`Error::IllegalTransition`] (FPRE002) if the extent cannot be compacted at
    /// all (vacant or quarantined); [`Error::NoSpace`]; [`Error::ChecksumMismatch`]
    /// if the source or the copy does not verify (nothing is committed); backend
    /// errors.
    pub fn compact(&self, id: ExtentId) -> Result<CompactOutcome> {
        self.shared.compact(CompactOp::new(id))
    }

    /// Compacts each of `ids` in turn.
    pub fn compact_batch(&self, ids: &[ExtentId]) -> Vec<Result<CompactOutcome>> {
        ids.iter().map(|&id| self.compact(id)).collect()
    }

    /// Verifies `id`'s media bytes (not the cache) against its record, climbing the
    /// integrity ladder on a failure; see [`crate::policy`].
    ///
    /// # Consistency
    ///
    /// Reads one snapshot and checks the bytes of that same version; a version change
    /// during verification is a race, retried on a fresh snapshot, never a fault.
    ///
    /// A persistent fault (the initial read and the retry limit of re-reads of one
    /// stable version all failed) quarantines the extent and remaps it from a
    /// verified good copy: the answer is then [`Verdict::Repaired`], carrying the
    /// faulted location and the remapped record. A fault whose record a write
    /// replaced during the repair answers [`Verdict::Raced`]. An extent quarantined
    /// earlier gets its remap retried ([`Verdict::Repaired`] or
    /// [`Verdict::Quarantined`]). Every step is counted in [`stats`](Self::stats)
    /// (`fpre004`, `quarantines` exactly once each, `remaps`, `remap_failed`).
    ///
    /// # Errors
    ///
    /// [`Error::RetryLimitExceeded`] (FPRE004) when the fault persists and the
    /// extent could not be repaired: it stays quarantined, keeping its location and
    /// generation (no good copy, or writing one failed).
    pub fn verify(&self, id: ExtentId) -> Result<Verdict> {
        self.shared.verify(id)
    }

    /// Compacts every readable extent on `device` to other devices (draining a
    /// degraded device); returns how many moved. The copies never go to `device`.
    /// An extent whose bytes on `device` fail their checksum is handed to the
    /// integrity ladder (verify, quarantine, remap elsewhere) and the drain goes on.
    ///
    /// # Errors
    ///
    /// The first error that is neither a lost race nor a media fault
    /// ([`Error::NoSpace`] when the other devices are full).
    pub fn drain(&self, device: u16) -> Result<u64> {
        let table = &self.shared.core.table;
        let mut moved = 0;
        for id in table.allocated_ids(0) {
            let snapshot = table.snapshot(id)?;
            if !snapshot.is_readable() || snapshot.location().device != device {
                continue;
            }
            match self.shared.compact(CompactOp::draining(id, device)) {
                Ok(CompactOutcome::Committed(_)) => moved += 1,
                Ok(CompactOutcome::Aborted) => {}
                Err(err) if err.is_media_fault() => {
                    // The ladder's remap also avoids `device`: it was just marked bad
                    // there, and degraded devices are used only as a last resort.
                    let _ = self.shared.verify(id);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(moved)
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
        let core = &self.shared.core;
        let mut stats = StoreStats {
            cache: core.cache.stats(),
            devices_degraded: core.health.degraded(),
            // Relaxed: progress for statistics, ordered with nothing.
            scrub_cursor: self.shared.scrub_cursor.load(Relaxed),
            retired_pending: core.reclaimer.pending() as u64,
            ..StoreStats::default()
        };
        self.shared.counters.fill(&mut stats);
        stats
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

impl Drop for Store {
    /// Stops the background work promptly: queued prefetch hints are dropped
    /// unloaded, a prefetch load in flight stops at its next step, and the workers
    /// and the scrubber are joined.
    fn drop(&mut self) {
        self.shared.stop();
        self.scrub_stop = None;
        if let Some(handle) = self.scrubber.take() {
            // A scrubber that panicked already reported it; shutdown goes on.
            let _ = handle.join();
        }
    }
}
