//! The blocking driver that storage engines use.
//!
//! [`Store`] runs the I/O-free protocol machines against a [`Backend`](crate::Backend), with a
//! prefetcher, sequential readahead, compaction, verification with the integrity
//! ladder (see [`crate::policy`]) and a background scrubber.

mod backup;
mod batch;
mod config;
mod driver;
mod durable;
mod hints;
mod latency;
mod lifecycle;
pub(crate) mod open;
mod prefetch;
mod readahead;
mod scrub;
mod shared;
mod space;
mod stats;
mod stream;
mod tagged;
mod writing;

pub use backup::Backup;
pub use batch::Batch;
pub use config::{MAX_EXTENT_BYTES, StoreConfig, StoreConfigBuilder};
pub use durable::METADATA_DEVICE;
pub use latency::{Latency, OpLatencies};
pub use open::RecoveryReport;
pub use readahead::STREAMS as READAHEAD_STREAMS;
pub use stats::StoreStats;

use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::protocol::{BatchItem, BatchWriteOp, CompactOp, CompactOutcome, DeleteOp, Verdict};
use crate::record::{ExtentId, Snapshot, State, Tag};
use crate::sync::{Arc, AtomicBool, Mutex, Ordering::Relaxed, thread};
use crossbeam::channel::Sender;
use prefetch::Prefetcher;
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
/// * [`write`](Self::write) returns once the bytes are durable and the new
///   location, checksum and generation were committed together. On a durable
///   store a write of at most `inline_write_max` bytes (32 KiB by default) is
///   durable in its journal record; its location in the device file holds the
///   bytes unsynced until the next checkpoint (recovery writes them back). A
///   larger write also waits for its device's sync.
/// * [`prefetch`](Self::prefetch) never blocks and never changes what a read returns.
/// * [`compact`](Self::compact) never changes what a read returns; a write that
///   commits during it wins.
/// * [`verify`](Self::verify) finds a fault only for a persistent fault of one
///   stable version, never for a race; it answers [`Verdict::Repaired`] if it then
///   remapped the extent, and FPRE004 only if the extent could not be repaired.
/// * [`delete`](Self::delete) is one transition: a read returns the old bytes or
///   [`Error::NotReadable`], never other bytes; the space returns after every
///   reader that may still read it has finished.
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
    /// Readahead's buffers, allocated in runs (see `Store::buffer`).
    buffers: Mutex<hints::BufferRun>,
    /// Longest write accepted (checked before the caller's bytes are copied).
    max_extent_bytes: u64,
    /// Whether sequential reads trigger readahead.
    readahead_on: bool,
    /// Set while a scan runs over cached extents: hits skip readahead until a
    /// read loads (see `readahead`).
    readahead_idle: AtomicBool,
    /// How long `write` waits for another write of the same extent.
    write_wait: std::time::Duration,
    /// Dropping it wakes and stops the scrubber.
    scrub_stop: Mutex<Option<Sender<()>>>,
    scrubber: Mutex<Option<thread::JoinHandle<()>>>,
    /// Leads group commits for overlapped writes (see `Journal::flush_loop`).
    flusher: Mutex<Option<thread::JoinHandle<()>>>,
    /// A durable store's checkpointer (`store::durable`).
    checkpointer: Mutex<Option<thread::JoinHandle<()>>>,
    /// What the open recovered (`None` for an in-memory store).
    recovery: Option<RecoveryReport>,
    // Its workers are joined by `close`, which dropping the store runs before any
    // field is dropped.
    prefetcher: Prefetcher,
}

impl Store {
    /// Writes `bytes` as the new content of `id`. Writes of one extent serialize:
    /// if another write of `id` is in flight, this one waits for it (at most
    /// [`write_wait_ms`](StoreConfigBuilder::write_wait_ms)), then goes on.
    ///
    /// # Consistency
    ///
    /// Readers see the previous bytes until the commit and the new ones after it,
    /// never a mix; a read that starts after `write` returns sees these bytes. On
    /// a durable store the write is durable when it returns.
    ///
    /// # Errors
    ///
    /// [`Error::WriteInProgress`] if another write of `id` was still in flight
    /// after the wait; [`Error::NoSpace`], backend errors ([`Error::Io`]);
    /// [`Error::DiskFull`] when the file system is full (retry after deletes and
    /// [`reclaim_space`](Self::reclaim_space)); [`Error::OutcomeUnknown`] if the
    /// journal failed after the write's record reached it. On any error the
    /// previous bytes stay committed and readable, and the write is not visible;
    /// only after [`Error::OutcomeUnknown`] may a reopen show it. [`Error::TooLarge`] at
    /// once, before any byte is copied, if `bytes` is longer than
    /// [`max_extent_bytes`](StoreConfigBuilder::max_extent_bytes) (or than a
    /// device). [`Error::JournalFailed`] (not retryable) once the journal
    /// failed: a reopen is needed; [`Error::DeviceSyncFailed`] likewise for a
    /// device whose sync failed, when no other device has room.
    /// [`Error::ExtentOutOfRange`] for an id at or past `max_extents`;
    /// [`Error::VersionConflict`] if other transitions of `id` won every
    /// bounded attempt (retryable); [`Error::GenerationExhausted`] and
    /// [`Error::VersionExhausted`] at a counter's end.
    /// [`Error::Shutdown`] once [`close`](Self::close) began.
    pub fn write(&self, id: ExtentId, bytes: &[u8]) -> Result<Snapshot> {
        self.check_open()?;
        self.check_length(bytes.len())?;
        self.shared.counters.writes.bump();
        // One copy of the caller's bytes, shared by every attempt.
        self.write_value(id, Bytes::from(bytes), Tag::EMPTY)
    }

    /// [`write`](Self::write) of bytes the caller already holds as [`Bytes`]:
    /// no copy is made (the store keeps a reference while the write runs), so a
    /// large value costs its own memory once. A `Vec<u8>` and a `bytes::Bytes`
    /// (feature `bytes`) become [`Bytes`] without a copy (`.into()`), or build
    /// one in place with [`Bytes::zeroed`] and [`Bytes::make_mut`].
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{Bytes, ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// let mut value = Bytes::zeroed(1 << 20);
    /// value.make_mut().expect("only handle")[..9].copy_from_slice(b"extent 5:");
    /// store.write_bytes(ExtentId(5), value)?;
    /// assert_eq!(&store.read(ExtentId(5))?[..9], b"extent 5:");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn write_bytes(&self, id: ExtentId, value: Bytes) -> Result<Snapshot> {
        self.check_open()?;
        self.check_length(value.len())?;
        self.shared.counters.writes.bump();
        self.write_value(id, value, Tag::EMPTY)
    }

    /// The rest of a `write` call once its value is held: attempts, waits for
    /// another write of the same extent, accounting.
    pub(super) fn write_value(&self, id: ExtentId, value: Bytes, tag: Tag) -> Result<Snapshot> {
        let started = std::time::Instant::now();
        let result = self.in_turn(started + self.write_wait, || {
            self.attempt_write(id, value.clone(), tag)
        });
        self.finish_write(started, result)
    }

    /// [`write`](Self::write) that fails fast with [`Error::WriteInProgress`] if
    /// another write of `id` is in flight.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write), without the wait.
    pub fn try_write(&self, id: ExtentId, bytes: &[u8]) -> Result<Snapshot> {
        self.check_open()?;
        self.check_length(bytes.len())?;
        self.shared.counters.writes.bump();
        let started = std::time::Instant::now();
        let result = self.attempt_write(id, Bytes::from(bytes), Tag::EMPTY);
        self.finish_write(started, result)
    }

    /// Fails with [`Error::Shutdown`] once [`close`](Self::close) began.
    pub(super) fn check_open(&self) -> Result<()> {
        if self.shared.stopping() {
            return Err(Error::Shutdown);
        }
        Ok(())
    }

    /// Installs `listener`, called with every committed change once it is durable
    /// (see [`events`](crate::events)); replaces every earlier one.
    pub fn set_listener(&self, listener: impl Fn(&crate::events::Event) + Send + Sync + 'static) {
        self.shared
            .core
            .events
            .set(Some(std::sync::Arc::new(listener)));
    }

    /// Removes every listener.
    pub fn clear_listener(&self) {
        self.shared.core.events.set(None);
    }

    /// Adds `listener` beside those installed: every event goes to each, in the
    /// order they were added. Returns its id for
    /// [`remove_listener`](Self::remove_listener).
    pub fn add_listener(
        &self,
        listener: impl Fn(&crate::events::Event) + Send + Sync + 'static,
    ) -> crate::events::ListenerId {
        self.shared.core.events.add(std::sync::Arc::new(listener))
    }

    /// Removes the listener `id`; whether it was installed.
    pub fn remove_listener(&self, id: crate::events::ListenerId) -> bool {
        self.shared.core.events.remove(id)
    }

    /// Writes every `(id, bytes)` of `items`, sharing the syncs: all data writes,
    /// one sync per device touched, then every commit and one journal sync (on a
    /// durable store). Returns the committed records in `items`' order.
    ///
    /// # Consistency
    ///
    /// Each write keeps the guarantees of [`write`](Self::write). **Durable all or
    /// nothing** on a durable store: the batch's records go to the journal in one
    /// append behind a batch marker, and recovery applies all of them or none, so
    /// a crash before the call returns keeps the whole batch or none of it. (One
    /// exception: a write whose record a quarantine or remap of its extent
    /// overtook is journaled again on its own, and becomes durable with that
    /// later record.) **Readers may see part of it**: the writes commit one after
    /// another once their records are durable. When it returns `Ok`, all are
    /// durable and visible.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] past
    /// [`max_extent_bytes`](StoreConfigBuilder::max_extent_bytes) and
    /// [`Error::DuplicateExtent`] for an id named twice (both checked before
    /// anything is written, as [`write`](Self::write) checks), [`Error::WriteInProgress`]
    /// if an id was still being written after waiting for it as
    /// [`write`](Self::write) waits,
    /// [`Error::NoSpace`], backend and journal errors. On an error before the
    /// commits nothing changed (a write the table refuses fails the whole batch);
    /// an error while committing (rare: a commit that kept losing races) is
    /// reported after the writes that did commit are durable.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(2), StoreConfig::default())?;
    /// let items: Vec<(ExtentId, &[u8])> = vec![(ExtentId(1), b"one"), (ExtentId(2), b"two")];
    /// let committed = store.write_batch(&items)?;
    /// assert_eq!(committed.len(), 2);
    /// assert_eq!(&*store.read(ExtentId(2))?, b"two");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn write_batch(&self, items: &[(ExtentId, &[u8])]) -> Result<Vec<Snapshot>> {
        self.check_open()?;
        // Before the copies, as `write` checks before its own.
        for &(_, bytes) in items {
            self.check_length(bytes.len())?;
        }
        let items = (items.iter())
            .map(|&(id, bytes)| BatchItem::Write(id, Bytes::from(bytes), Tag::EMPTY))
            .collect();
        self.batch_of(items)
    }

    /// The batch machine over `items`, validated as [`write`](Self::write).
    pub(super) fn batch_of(&self, items: Vec<BatchItem>) -> Result<Vec<Snapshot>> {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut writes = 0;
        for item in &items {
            let id = match item {
                BatchItem::Write(id, bytes, _) => {
                    self.check_length(bytes.len())?;
                    writes += 1;
                    id
                }
                BatchItem::Delete(id) => id,
            };
            if !seen.insert(*id) {
                return Err(Error::DuplicateExtent { extent: *id });
            }
        }
        let counters = &self.shared.counters;
        counters.writes.add(writes);
        let started = std::time::Instant::now();
        let result = self.in_turn(started + self.write_wait, || {
            self.shared.make_room();
            self.drive_change(BatchWriteOp::mixed(items.clone()))
        });
        let latency = &self.shared.latency;
        latency.record(&latency.write, shared::elapsed_ns(started));
        let committed = result?;
        let written = committed.iter().filter(|s| s.state() != State::Vacant);
        counters.write_ok.add(written.count() as u64);
        self.trim_if_due();
        Ok(committed)
    }

    /// Deletes `id`: its record becomes `Vacant` (generation kept), its cached copy
    /// is dropped, and its location is freed once no reader can still be reading it.
    ///
    /// # Consistency
    ///
    /// One transition: a read that took its snapshot before it returns the old
    /// bytes, a read after it returns [`Error::NotReadable`]; never other bytes. A
    /// later write of `id` starts at the next generation. On a durable store the
    /// delete is journaled before it returns (it survives a crash) and its space is
    /// reused only once that record is durable.
    ///
    /// # Errors
    ///
    /// [`Error::WriteInProgress`] if a write of `id` was still pending after
    /// waiting for it as [`write`](Self::write) waits (nothing changes);
    /// [`Error::NotReadable`] if `id` is already vacant; [`Error::VersionConflict`]
    /// if other transitions of `id` won every bounded attempt (retryable);
    /// [`Error::ExtentOutOfRange`]. A compaction of `id` in progress does not
    /// delay the delete: it ends it, as a write does. Once the delete's record
    /// reached the journal, a journal failure is [`Error::OutcomeUnknown`]: the
    /// extent still reads in this open store, and after a reopen it is either
    /// deleted or not (an engine must not drop its own reference on this error
    /// alone). [`Error::JournalFailed`] once the journal failed earlier (nothing
    /// was written; reopen); [`Error::Shutdown`] once [`close`](Self::close)
    /// began.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// store.write(ExtentId(1), b"short-lived")?;
    /// store.delete(ExtentId(1))?;
    /// assert_eq!(store.read(ExtentId(1)).unwrap_err().code(), "FPRE012");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn delete(&self, id: ExtentId) -> Result<Snapshot> {
        self.check_open()?;
        let deleted = self.in_turn(std::time::Instant::now() + self.write_wait, || {
            self.drive_change(DeleteOp::new(id))
        })?;
        self.trim_if_due();
        Ok(deleted)
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
    /// rewritten on every attempt; [`Error::ExtentOutOfRange`] for an id at or
    /// past `max_extents`, [`Error::Contended`] (retryable) if its record kept
    /// changing, [`Error::Shutdown`] once [`close`](Self::close) began.
    pub fn read(&self, id: ExtentId) -> Result<Bytes> {
        self.check_open()?;
        let (bytes, steps) = self.shared.read_served(id)?;
        let loaded = steps.any > 0;
        // Relaxed: a hint for whether detection is worth its cost, never for
        // what a read returns.
        if self.readahead_on && (loaded || !self.readahead_idle.load(Relaxed)) {
            self.readahead(id, bytes.len() as u64, loaded, steps.io > 0);
        }
        Ok(bytes)
    }

    /// Reads bytes `offset .. offset + len` of `id`'s current bytes: an engine's
    /// header or index block without handing the whole value to the caller.
    ///
    /// # Cost
    ///
    /// A partial read costs a whole read: integrity is checked per extent (one
    /// checksum over the whole value, seeded with its identity), so the whole
    /// extent is read and verified, from the cache when it holds the current
    /// generation (then nothing is read from a device), else from the backend
    /// (then cached, so the next range of the same extent is a slice of the
    /// cache). The range is then copied out. It does not feed readahead.
    ///
    /// # Consistency
    ///
    /// As [`read`](Self::read): the range of one generation's verified bytes.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), and [`Error::RangeOutOfBounds`] if the range ends
    /// past the bytes read.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// store.write(ExtentId(4), b"HDR1:extent 4, generation 1")?;
    /// assert_eq!(&*store.read_range(ExtentId(4), 0, 4)?, b"HDR1");
    /// assert!(store.read_range(ExtentId(4), 20, 64).is_err());
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn read_range(&self, id: ExtentId, offset: u64, len: u64) -> Result<Bytes> {
        self.check_open()?;
        let bytes = self.shared.read(id)?;
        let length = bytes.len() as u64;
        let end = offset.checked_add(len).filter(|&end| end <= length);
        let Some(end) = end else {
            return Err(Error::RangeOutOfBounds {
                extent: id,
                offset,
                len,
                length,
            });
        };
        // In bounds of a slice in memory, so both fit in usize.
        Ok(Bytes::from(&bytes[offset as usize..end as usize]))
    }

    /// Queues prefetches of `ids` and returns at once; returns how many were queued.
    /// Hints beyond the queue bound, ids that are not readable, and ids whose
    /// current bytes are cached or being loaded already are dropped.
    pub fn prefetch(&self, ids: &[ExtentId]) -> usize {
        if self.shared.stopping() {
            return 0;
        }
        ids.iter().filter(|&&id| self.hint(id)).count()
    }

    /// Loads `id` into the cache at prefetch priority now: what a prefetch worker
    /// does with one hint. Returns `Ok(true)` once its current bytes are
    /// cached (loaded now, or found cached), `Ok(false)` if another reader is
    /// loading them.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), without the integrity ladder, and:
    /// [`Error::Superseded`] if the extent was rewritten while it loaded (a
    /// prefetch does not chase the new generation: its first reader loads
    /// it); [`Error::Quarantined`] for a quarantined extent with no verified
    /// copy cached (a prefetch fetches nothing from the
    /// [good-copy source](StoreConfigBuilder::good_copy_source)).
    pub fn warm(&self, id: ExtentId) -> Result<bool> {
        self.check_open()?;
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
    /// all (vacant or quarantined); [`Error::NoSpace`]; a journal error
    /// ([`Error::OutcomeUnknown`], [`Error::JournalFailed`]) after the move
    /// committed in memory: the move may show until a reopen, which keeps it or
    /// not, and both locations stay out of use meanwhile; [`Error::ChecksumMismatch`]
    /// if the source or the copy does not verify (nothing is committed); backend
    /// errors. A media fault of the source is handed to the integrity ladder
    /// (as a read's is) before the error returns: a persistent one is then
    /// quarantined and repaired, and a retry finds the outcome.
    pub fn compact(&self, id: ExtentId) -> Result<CompactOutcome> {
        self.check_open()?;
        let outcome = self.compact_or_verify(CompactOp::new(id), id);
        self.trim_if_due();
        outcome
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
    /// generation (no good copy, or writing one failed). The journal's error
    /// ([`Error::OutcomeUnknown`], [`Error::JournalFailed`], [`Error::Shutdown`])
    /// when it could not take the quarantine or the remap: the remap may show
    /// until a reopen decides.
    pub fn verify(&self, id: ExtentId) -> Result<Verdict> {
        self.check_open()?;
        self.shared.verify(id)
    }

    /// The current record of `id`.
    ///
    /// # Errors
    ///
    /// As [`ExtentTable::snapshot`](crate::ExtentTable::snapshot).
    pub fn snapshot(&self, id: ExtentId) -> Result<Snapshot> {
        self.shared.core.table.snapshot(id)
    }

    /// Every extent with committed bytes (`Durable`, `Compacting` or
    /// `Quarantined`), in id order: what an engine scans to rebuild its own index
    /// after [`open`](Self::open). Each item is a snapshot taken as the scan passes
    /// the id.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// for id in [3, 1, 2] {
    ///     store.write(ExtentId(id), b"x")?;
    /// }
    /// store.delete(ExtentId(2))?;
    /// let ids: Vec<u64> = store.records().map(|s| s.extent().0).collect();
    /// assert_eq!(ids, [1, 3]);
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn records(&self) -> impl Iterator<Item = Snapshot> + '_ {
        let table = &self.shared.core.table;
        table
            .allocated_ids(0)
            .filter_map(|id| table.snapshot_waiting(id).ok())
            .filter(|s| s.state() != crate::record::State::Vacant)
    }

    /// Hints waiting in the prefetch queue.
    pub fn prefetch_queued(&self) -> usize {
        self.prefetcher.queued()
    }
}
