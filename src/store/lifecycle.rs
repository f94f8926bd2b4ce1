//! How a [`Store`] starts and stops: the constructors (in memory, from an
//! engine's records, durable), the start they share, which spawns the prefetch
//! workers and the scrubber, and [`close`](Store::close), which stops and joins
//! them.

use super::config::StoreConfig;
use super::open::{self, RecoveryReport};
use super::prefetch::Prefetcher;
use super::readahead::Readahead;
use super::shared::Shared;
use super::{Store, durable, scrub};
use crate::backend::Backend;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::protocol::Core;
use crate::record::{ExtentId, Location, Snapshot};
use crate::space::{Allocator, Health, Reclaimer};
use crate::sync::{Arc, Mutex, thread};
use crate::table::{ExtentTable, Tags};
use crossbeam::channel::bounded;

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
        let table = ExtentTable::new(config.table);
        let allocator = Allocator::new(
            devices,
            config.device_capacity_bytes,
            config.block_size_bytes,
        );
        Self::in_memory(table, allocator, backend, config)
    }

    /// A store over `backend` whose records are `records` — the engine's own
    /// manifest, as it persisted them from the [event listener](Self::set_listener)
    /// (or from the snapshots its calls returned), in
    /// [`Snapshot::to_bytes`]' encoding or field by field
    /// ([`Snapshot::committed`]). No byte is copied: each record
    /// keeps its location, generation, checksum and version, and free space is
    /// everything no record references. The way for engines that keep their own
    /// manifest to restart an in-memory store; see [`crate::design`]. Records
    /// carry no tags here: every record's tag is empty (an engine that tags its
    /// writes keeps the tags in its manifest itself).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); [`Error::InvalidConfig`] naming `devices`,
    /// `device_capacity_bytes` or `block_size_bytes` if a record lies on a device
    /// the backend lacks, past the device capacity, or off a block boundary (the
    /// configuration does not fit the records); [`Error::ExtentOutOfRange`] for
    /// an id at or past `max_extents`; [`Error::InvalidRecords`] if two records
    /// overlap, or a version or generation is out of range. A record of
    /// version 0 (an id never written,
    /// as [`snapshot`](Self::snapshot) reports it) is skipped: every id starts so.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::events::Event;
    /// use extentmeta::{ExtentId, MemBackend, Snapshot, Store, StoreConfig};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let backend = Arc::new(MemBackend::new(1));
    /// // The engine's manifest: here in memory, in an engine a file or a table
    /// // of its own, written before the engine acknowledges the write.
    /// let manifest: Arc<Mutex<Vec<[u8; Snapshot::ENCODED_LEN]>>> = Arc::default();
    /// {
    ///     let store = Store::new(Arc::clone(&backend), StoreConfig::default())?;
    ///     let sink = Arc::clone(&manifest);
    ///     store.set_listener(move |e: &Event| {
    ///         if let Event::Written { record, .. } = e {
    ///             sink.lock().unwrap().push(record.to_bytes());
    ///         }
    ///     });
    ///     store.write(ExtentId(1), b"kept by the engine's manifest")?;
    /// }
    /// let kept = manifest.lock().unwrap().clone();
    /// let records = kept.iter().map(|b| Snapshot::from_bytes(b)).collect::<Result<Vec<_>, _>>()?;
    /// let store = Store::with_records(backend, StoreConfig::default(), records)?;
    /// assert_eq!(&*store.read(ExtentId(1))?, b"kept by the engine's manifest");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn with_records(
        backend: impl Backend,
        config: StoreConfig,
        records: impl IntoIterator<Item = Snapshot>,
    ) -> Result<Self> {
        Self::with_manifest(backend, config, records, [])
    }

    /// As [`with_records`](Self::with_records), and with the locations found
    /// bad before the restart ([`Event::LocationRetired`](crate::events::Event::LocationRetired),
    /// which the engine's manifest keeps too): never handed out again, as a
    /// durable store's journal keeps them out of use across a reopen. Without
    /// them a restart would place new data where the disk already failed.
    ///
    /// # Errors
    ///
    /// As [`with_records`](Self::with_records); a bad location on a device the
    /// backend lacks or past its capacity is [`Error::InvalidConfig`] as for a
    /// record.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, Location, MemBackend, Store, StoreConfig};
    /// use std::sync::Arc;
    ///
    /// let backend = Arc::new(MemBackend::new(1));
    /// let bad = Location::new(0, 0, 4096); // from the manifest's retired locations
    /// let store = Store::with_manifest(backend, StoreConfig::default(), [], [bad])?;
    /// let record = store.write(ExtentId(1), b"never where the disk failed")?;
    /// assert_ne!(record.location().offset, 0);
    /// assert_eq!(store.space()[0].bad_bytes, 4096);
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn with_manifest(
        backend: impl Backend,
        config: StoreConfig,
        records: impl IntoIterator<Item = Snapshot>,
        bad: impl IntoIterator<Item = Location>,
    ) -> Result<Self> {
        let devices = backend.device_count();
        if devices == 0 {
            return Err(Error::InvalidConfig {
                field: "backend",
                reason: "the backend has no devices".into(),
            });
        }
        let geometry = crate::journal::open::Geometry {
            table: config.table,
            devices,
            capacity: config.device_capacity_bytes,
            block_size: config.block_size_bytes,
            read_chunk: crate::journal::open::READ_CHUNK,
        };
        // Checked here, where the records are the caller's, not a directory's:
        // an id past the table is the caller's range error (the rebuild would
        // blame the configuration of a directory there is none of), and a
        // record never written (version 0, as `snapshot` reports an id no
        // write touched) is the state every id starts in: nothing to restore.
        let capacity = config.table.max_extents();
        let mut refused = None;
        let entries = (records.into_iter())
            .filter(|record| record.version() != 0)
            .map_while(|record| match record.extent().0 < capacity {
                true => Some(record),
                false => {
                    refused = Some(Error::ExtentOutOfRange {
                        extent: record.extent(),
                        capacity,
                    });
                    None
                }
            })
            .map(|record| crate::journal::Entry::put(&record, crate::Tag::EMPTY))
            .chain(bad.into_iter().map(crate::journal::Entry::Bad));
        let rebuilt = crate::journal::open::rebuild(entries, &geometry);
        if let Some(err) = refused {
            return Err(err);
        }
        // Damage a directory's checkpoint would hold (two records on one
        // location) is the caller's manifest's here.
        let (table, _untagged, allocator) = rebuilt.map_err(|err| match err {
            Error::CheckpointCorrupt { reason, .. } => Error::InvalidRecords {
                reason: format!("the records handed to the store: {reason}"),
            },
            other => other,
        })?;
        Self::in_memory(table, allocator, backend, config)
    }

    /// Opens the durable store in `dir`, creating it if the directory holds none:
    /// device files (`config.devices` of them) and a metadata journal with
    /// checkpoints. Recovery restores every acknowledged write, compaction, remap,
    /// quarantine and bad-location mark, and rebuilds free space as everything no
    /// record references (so bytes written but never committed are reclaimed).
    ///
    /// # Consistency
    ///
    /// A call that returned `Ok` on this store survives any crash (invariant 9); see
    /// the crate's durability model. Only one store may have `dir` open at a time.
    /// The store keeps `dir` as it resolves now (symbolic links and a relative
    /// path resolved), so a link pointed elsewhere, or another working
    /// directory, never sends its later files into another store's directory;
    /// a directory moved away under it fails its next rotation (FPRE036),
    /// losing nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if `dir` is already open; [`Error::JournalCorrupt`],
    /// [`Error::CheckpointCorrupt`], [`Error::MissingCheckpoint`],
    /// [`Error::NewerFormat`], [`Error::OlderFormat`], [`Error::DeviceFile`] for
    /// a directory recovery refuses; [`Error::NotAStore`] for a path that is no
    /// store and the open options do not let it become one (`create_if_missing`,
    /// `error_if_exists`, `create_in_non_empty_dir`), or a backup cut short;
    /// [`Error::InvalidConfig`] if `devices`, `device_capacity_bytes`,
    /// `block_size_bytes` or the table's `max_extents` does not fit the store;
    /// [`Error::DiskFull`] if the file system is full (a new store's files, a
    /// reopen's write-back of inline data: free space, then open again);
    /// [`Error::Io`]. An open refused for any of the reasons before
    /// `DiskFull` changes no file; one that failed midway leaves what a crash
    /// there would, which the next open recovers.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, Store, StoreConfig};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let config = StoreConfig::builder().devices(2).build()?;
    /// {
    ///     let store = Store::open(dir.path(), config.clone())?;
    ///     store.write(ExtentId(1), b"survives a restart")?;
    /// } // dropped: closed
    /// let store = Store::open(dir.path(), config)?;
    /// assert_eq!(&*store.read(ExtentId(1))?, b"survives a restart");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<std::path::Path>, config: StoreConfig) -> Result<Self> {
        Self::open_in(
            std::sync::Arc::new(crate::fs::StdFs),
            crate::fs::resolved(dir.as_ref()),
            config,
        )
    }

    /// [`open`](Self::open) on the file system `fs` (a fault-injecting wrapper in
    /// tests, for example).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_in(
        fs: std::sync::Arc<dyn crate::fs::Fs>,
        dir: impl AsRef<std::path::Path>,
        config: StoreConfig,
    ) -> Result<Self> {
        let opened = open::open(fs, dir.as_ref(), &config)?;
        let files = opened.backend;
        let mut store = Self::start(
            opened.table,
            opened.tags,
            opened.allocator,
            Box::new(std::sync::Arc::clone(&files)),
            Some((opened.journal, files)),
            config,
        )?;
        store.recovery = Some(opened.report);
        Ok(store)
    }

    /// What opening this durable store recovered; `None` for a store made with
    /// [`new`](Self::new).
    pub fn recovery(&self) -> Option<RecoveryReport> {
        self.recovery.clone()
    }

    /// [`start`](Self::start) of a store without a journal (no tags to restore).
    fn in_memory(
        table: ExtentTable,
        allocator: Allocator,
        backend: impl Backend,
        config: StoreConfig,
    ) -> Result<Self> {
        Self::start(
            table,
            Tags::default(),
            allocator,
            Box::new(backend),
            None,
            config,
        )
    }

    fn start(
        table: ExtentTable,
        tags: Tags,
        allocator: Allocator,
        backend: Box<dyn Backend>,
        durable: Option<(
            durable::Journal,
            std::sync::Arc<crate::backend::DeviceFiles>,
        )>,
        config: StoreConfig,
    ) -> Result<Self> {
        let backend: Box<dyn Backend> = match config.cache_hooks.good_copy.clone() {
            Some(source) => Box::new(WithGoodCopy { backend, source }),
            None => backend,
        };
        let devices = backend.device_count();
        let policy = config.policy;
        let inline_write_max = durable.as_ref().map_or(0, |_| config.inline_write_max);
        let core = Core {
            table,
            cache: {
                let mut cache = Cache::with_policy(
                    config.cache_bytes,
                    config.cache_shards,
                    config.cache_policy,
                );
                if let Some(w) = config.cache_hooks.weigher.clone() {
                    cache = cache.with_weigher(w);
                }
                if let Some(l) = config.cache_hooks.on_evict.clone() {
                    cache = cache.with_eviction_listener(l);
                }
                cache
            },
            allocator,
            reclaimer: Reclaimer::new(),
            health: Health::new(
                devices,
                policy.device_error_threshold,
                policy.device_error_window_secs * 1000,
            ),
            mutants: Default::default(),
            proposals: Default::default(),
            space_low: Default::default(),
            inline_write_max,
            write_back: Default::default(),
            tags,
            overlap_data_sync: durable.is_some() && config.overlap_data_sync,
            overlaps: Default::default(),
            rescued: Default::default(),
            episodes: Default::default(),
            keep_on_listener_panic: durable.is_none(),
            kept_for_listeners: Default::default(),
            events: Default::default(),
        };
        // A reopened store numbers its changes from the journal's next entry:
        // each change's record is durable in the journal before the change is
        // numbered, so a cursor from an earlier run is at most the new first
        // number (equal when every entry of that run was a change and it
        // crashed): the stream's identity, not its numbers, tells runs apart.
        let first = durable
            .as_ref()
            .map_or(0, |(journal, _)| journal.next_seq());
        (core.events.changes).configure(
            config.change_retention,
            config.change_hold_max,
            first,
            crate::events::fresh_stream_id(),
        );
        let shared = Arc::new(Shared::new(
            core,
            backend,
            policy,
            config.scrub_start,
            durable,
            config.latency_histograms,
            std::time::Duration::from_micros(config.readahead_min_read_us),
        ));
        if let Some(journal) = &shared.journal {
            // The open may have found the disk full (no reserve made).
            shared.core.set_space_low(journal.space_low());
        }
        // A failed start joins the workers it started (and the journal's
        // lock goes with the last handle of `shared`).
        let prefetcher =
            Prefetcher::start(&shared, config.prefetch_workers, config.prefetch_queue)?;
        let store = Store {
            shared,
            flusher: Mutex::new(None),
            checkpointer: Mutex::new(None),
            readahead: Mutex::new(Readahead::new(
                config.readahead_min_bytes,
                config.readahead_max_bytes,
                config.prefetch_queue as u64,
            )),
            buffers: Mutex::new(super::hints::BufferRun::default()),
            // No write longer than a device can ever take (whole blocks):
            // NoSpace (retryable) would come back for it forever; TooLarge
            // says so at once.
            max_extent_bytes: (config.max_extent_bytes).min(
                config.device_capacity_bytes / u64::from(config.block_size_bytes)
                    * u64::from(config.block_size_bytes),
            ),
            write_wait: std::time::Duration::from_millis(config.write_wait_ms),
            readahead_on: config.readahead,
            readahead_idle: crate::sync::AtomicBool::new(false),
            scrub_stop: Mutex::new(None),
            scrubber: Mutex::new(None),
            recovery: None,
            prefetcher,
        };
        // The threads that hold `shared` start into the store itself: if one
        // cannot be started, dropping the store closes it, which stops those
        // started before (a flusher left running would hold the directory's
        // lock for good).
        let shared = &store.shared;
        if config.scrub_bytes_per_sec > 0 {
            let (stop, stopped) = bounded::<()>(1);
            let s = Arc::clone(shared);
            let (rate, seed) = (config.scrub_bytes_per_sec, config.scrub_seed);
            let handle = thread::Builder::new()
                .name("extentmeta-scrub".into())
                .spawn(move || scrub::run(&s, rate, seed, &stopped))
                .map_err(|e| Error::io(0, "spawn", &e))?;
            *store.scrub_stop.lock() = Some(stop);
            *store.scrubber.lock() = Some(handle);
        }
        if shared.core.overlap_data_sync {
            let flusher = journal_thread(shared, "extentmeta-journal", |j, s| j.flush_loop(s))?;
            *store.flusher.lock() = flusher;
        }
        let checkpointer =
            journal_thread(shared, "extentmeta-checkpoint", |j, s| j.checkpoint_loop(s))?;
        *store.checkpointer.lock() = checkpointer;
        Ok(store)
    }

    /// Closes the store: operations that read, write, delete, compact, verify or
    /// repair extents, started from now on, return [`Error::Shutdown`]; queued
    /// prefetch hints are dropped (a load in flight finishes or is abandoned at
    /// its next step); the prefetch workers and the scrubber are stopped and
    /// joined. Everything acknowledged is already durable; a durable store then
    /// appends a close marker to its journal (so recovery can tell damage to its
    /// last records from a torn tail), waits for the device I/O that operations
    /// still running on other threads have in flight (their later I/O is
    /// refused), and releases its directory lock and every file: another store
    /// may open the directory while this value is still alive (behind an
    /// `Arc`, say), and no write of this one lands after it. What reads only memory (`snapshot`,
    /// `records`, `space`, `plan_compaction`, `stats`) still answers, from the
    /// state at close. A backup in progress ([`checkpoint_to`](Self::checkpoint_to))
    /// ends first: `close` waits for it. Idempotent; dropping the store closes
    /// it too.
    ///
    /// # Errors
    ///
    /// The first background error, if any: the journal's sticky I/O error (the
    /// store could no longer make changes durable), or [`Error::Internal`] if a
    /// background thread panicked; or the failure of close's own device syncs
    /// or close marker ([`Error::DeviceSyncFailed`], [`Error::Io`],
    /// [`Error::DiskFull`]). The store is closed either way, and a reopen
    /// recovers what was acknowledged.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
    ///
    /// let store = Store::new(MemBackend::new(1), StoreConfig::default())?;
    /// store.write(ExtentId(1), b"bytes")?;
    /// store.close()?;
    /// assert_eq!(store.read(ExtentId(1)).unwrap_err().code(), "FPRE017");
    /// # Ok::<(), extentmeta::Error>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        self.shared.stop();
        let mut first = None;
        // Before the wait for backups: the workers share nothing with them,
        // and once they are joined their queue is dropped, which wakes every
        // reader waiting on a claim queued there (a backup may take minutes).
        if self.prefetcher.shutdown() > 0 {
            first = Some(Error::Internal {
                what: "a prefetch worker panicked",
            });
        }
        // Backups in progress end before anything else closes (they copy the
        // device files through handles of their own); later ones see
        // `stopping` and are refused.
        drop(self.shared.backups.write());
        self.buffers.lock().clear();
        self.scrub_stop.lock().take();
        join(&self.scrubber, "the scrubber panicked", &mut first);
        if let Some(journal) = &self.shared.journal {
            journal.stop_flusher();
        }
        join(&self.flusher, "the journal flusher panicked", &mut first);
        if let Some(journal) = &self.shared.journal {
            journal.stop_checkpointer();
        }
        join(&self.checkpointer, "the checkpointer panicked", &mut first);
        if let Some(err) = self.shared.journal.as_ref().and_then(|j| j.failure()) {
            first.get_or_insert(err);
        }
        if let Some(journal) = &self.shared.journal
            && let Err(err) = journal.close(&*self.shared)
        {
            first.get_or_insert(err);
        }
        // A failure `close` itself met (a checkpoint it wrote for a rotation
        // failed the journal): the close marker was not written either.
        if let Some(err) = self.shared.journal.as_ref().and_then(|j| j.failure()) {
            first.get_or_insert(err);
        }
        // The device files before the directory's lock: their close waits for
        // the I/O of operations still running on other threads, so that none
        // lands after another store took the directory and reused its space.
        if let Some(files) = &self.shared.device_files {
            files.close();
        }
        if let Some(journal) = &self.shared.journal {
            journal.release();
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Store {
    /// Closes the store ([`close`](Store::close)) and drops its first background
    /// error: call `close` first to see it.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Joins the thread in `slot`, if any (once); a panic in it is `first`'s
/// error unless an earlier one is.
fn join(
    slot: &Mutex<Option<thread::JoinHandle<()>>>,
    what: &'static str,
    first: &mut Option<Error>,
) {
    let handle = slot.lock().take();
    if let Some(handle) = handle
        && crate::sync::joined(handle).is_err()
    {
        first.get_or_insert(Error::Internal { what });
    }
}

/// Starts a thread named `name` that runs `body` on a durable store's journal
/// (none for an in-memory store).
fn journal_thread(
    shared: &Arc<Shared>,
    name: &str,
    body: fn(&durable::Journal, &Shared),
) -> Result<Option<thread::JoinHandle<()>>> {
    if shared.journal.is_none() {
        return Ok(None);
    }
    let s = Arc::clone(shared);
    let handle = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(journal) = &s.journal {
                body(journal, &s);
            }
        })
        .map_err(|e| Error::io(0, "spawn", &e))?;
    Ok(Some(handle))
}

/// A backend whose good copies come from the configured source first
/// ([`good_copy_source`](super::StoreConfigBuilder::good_copy_source)); every
/// other call goes to the backend.
struct WithGoodCopy {
    backend: Box<dyn Backend>,
    source: super::config::GoodCopySource,
}

impl std::fmt::Debug for WithGoodCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithGoodCopy")
            .field("devices", &self.backend.device_count())
            .finish_non_exhaustive()
    }
}

impl Backend for WithGoodCopy {
    fn device_count(&self) -> u16 {
        self.backend.device_count()
    }
    fn read_at(&self, location: crate::record::Location, buf: &mut [u8]) -> Result<()> {
        self.backend.read_at(location, buf)
    }
    fn write_at(&self, location: crate::record::Location, bytes: &[u8]) -> Result<()> {
        self.backend.write_at(location, bytes)
    }
    fn sync(&self, device: u16) -> Result<()> {
        self.backend.sync(device)
    }
    fn trim(&self, device: u16, length: u64) -> Result<()> {
        self.backend.trim(device, length)
    }
    fn good_copy(&self, extent: ExtentId, generation: u64) -> Option<crate::Bytes> {
        (self.source)(extent, generation).or_else(|| self.backend.good_copy(extent, generation))
    }
}
