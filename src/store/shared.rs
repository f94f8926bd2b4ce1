//! What the store and its background threads share: the core, the backend, the
//! counters, and the operations both run through the driver.

use super::durable::Journal;
use super::latency::Latencies;
use super::stats::Counters;
use crate::backend::Backend;
use crate::bytes::Bytes;
use crate::error::Result;
use crate::policy::IntegrityPolicy;
use crate::protocol::{CompactOp, CompactOutcome, Core, ReadSession, Verdict, VerifySession};
use crate::record::ExtentId;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use std::time::{Duration, Instant};

/// State shared by the store and its worker threads.
pub(crate) struct Shared {
    pub(crate) core: Core,
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) counters: Counters,
    pub(crate) policy: IntegrityPolicy,
    /// The scrubber's resumable cursor (next id to look at).
    pub(crate) scrub_cursor: AtomicU64,
    /// The metadata journal of a durable store (`Store::open`); `None` in memory.
    pub(crate) journal: Option<Journal>,
    /// A durable store's device files (the same as `backend`): closed by
    /// `Store::close`, and asked whether a device's sync failed.
    pub(crate) device_files: Option<std::sync::Arc<crate::backend::DeviceFiles>>,
    /// Operations between their first data write and their journal append: a
    /// journal leader lets them join its group commit (see `journal_commit`).
    pub(super) approaching_journal: AtomicUsize,
    /// Latency histograms per operation kind.
    pub(crate) latency: Latencies,
    /// Recent small device reads, as a saturating count: up one (to
    /// [`SLOW_READS_MAX`](super::driver::SLOW_READS_MAX)) for a read slower than
    /// `readahead_min_read`, down one for a faster one; whether readahead can
    /// hide anything (see `Shared::readahead_pays`).
    pub(crate) slow_reads: AtomicU64,
    /// `StoreConfigBuilder::readahead_min_read_us`.
    pub(crate) readahead_min_read: Duration,
    /// Bumped (and waiters woken) whenever a write, batch or delete finishes: a
    /// writer waiting for another write of the same extent waits on it.
    write_done: Mutex<u64>,
    write_done_cv: Condvar,
    /// Set once when `Store::close` begins (dropping the store closes it): new
    /// operations are refused and prefetch loads stop at their next step.
    stopping: AtomicBool,
    /// Held shared by each `checkpoint_to` for its whole run, and taken
    /// exclusively by `close` once `stopping` is set: the backup's copy reads
    /// the device files through handles of its own, which closing the device
    /// files does not wait for, so without this another store could take the
    /// directory and reuse a location the copy has still to read.
    /// (parking_lot's even under loom: no loom model runs a backup.)
    pub(super) backups: parking_lot::RwLock<()>,
    pub(super) started: Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("core", &self.core)
            .field("devices", &self.backend.device_count())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The steps an operation took before it was done.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Steps {
    /// I/O, waits on another load and backoffs: none means a cache hit.
    pub(crate) any: u32,
    /// I/O of its own.
    pub(crate) io: u32,
}

impl Shared {
    pub(crate) fn new(
        core: Core,
        backend: Box<dyn Backend>,
        policy: IntegrityPolicy,
        scrub_start: u64,
        durable: Option<(Journal, std::sync::Arc<crate::backend::DeviceFiles>)>,
        histograms: bool,
        readahead_min_read: Duration,
    ) -> Self {
        let (journal, device_files) = durable.unzip();
        Shared {
            core,
            backend,
            counters: Counters::default(),
            policy,
            scrub_cursor: AtomicU64::new(scrub_start),
            approaching_journal: AtomicUsize::new(0),
            slow_reads: AtomicU64::new(0),
            readahead_min_read,
            latency: Latencies {
                enabled: histograms,
                ..Latencies::default()
            },
            write_done: Mutex::new(0),
            write_done_cv: Condvar::new(),
            journal,
            device_files,
            stopping: AtomicBool::new(false),
            backups: parking_lot::RwLock::new(()),
            started: Instant::now(),
        }
    }

    /// The first step of `Store::close`: new operations are refused, queued hints
    /// are dropped and a prefetch load in flight is abandoned at its next step
    /// ([`Error::Shutdown`](crate::Error::Shutdown)).
    pub(crate) fn stop(&self) {
        // Release: pairs with the Acquire in `stopping`; it publishes nothing else
        // (the join in `Prefetcher::shutdown`, which `Store::close` runs next,
        // orders the rest), the flag only has to become visible to the workers.
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether `Store::close` has begun.
    pub(crate) fn stopping(&self) -> bool {
        // Acquire: pairs with the Release in `stop`.
        self.stopping.load(Ordering::Acquire)
    }

    /// Before a write: while the metadata reserve is in use (a full disk), tries to
    /// make it again, so that writes go on once space was freed; if that fails
    /// the write is refused ([`Error::DiskFull`](crate::Error::DiskFull)).
    pub(crate) fn make_room(&self) {
        // The flags, not the journal's lock: a write must not contend with group
        // commit to learn that nothing is to be done. The journal's own flag
        // too, not only the copy `Core` keeps: a rotation's checkpoint releases
        // the reserve on its own thread, and `Core`'s copy learns of that only
        // at the next commit, so a write begun meanwhile would take the room
        // the reserve left for metadata.
        if let Some(journal) = &self.journal
            && (journal.space_low() || self.core.space_low.load(Ordering::Relaxed))
        {
            self.core.set_space_low(!journal.restore_reserve());
        }
    }

    /// A demand read, climbing the integrity ladder on a media error (see
    /// [`ReadSession`]); the ladder's counts come from the session.
    ///
    /// One read in [`READ_SAMPLE`] is timed into the hit or miss histogram (a
    /// clock read costs a good share of a cache hit; sampling keeps the hit path
    /// within a few per cent).
    pub(crate) fn read(&self, id: ExtentId) -> Result<Bytes> {
        self.read_served(id).map(|(bytes, _)| bytes)
    }

    /// [`read`](Self::read), and the steps it took: none if it found the bytes
    /// cached.
    pub(crate) fn read_served(&self, id: ExtentId) -> Result<(Bytes, Steps)> {
        self.counters.reads.bump();
        let sampled = self.latency.enabled && sample_this_read();
        let started = sampled.then(Instant::now);
        let mut steps = Steps::default();
        let result = self.session_counting(
            ReadSession::new(id, self.policy),
            ReadSession::tally,
            &mut steps,
        );
        if let Some(started) = started {
            let histogram = if steps.any == 0 {
                &self.latency.read_hit
            } else {
                &self.latency.read_miss
            };
            self.latency.record(histogram, elapsed_ns(started));
        }
        if result.is_ok() {
            self.counters.read_ok.bump();
        }
        result.map(|bytes| (bytes, steps))
    }

    /// Wakes writers waiting for a write of some extent to finish.
    pub(crate) fn write_finished(&self) {
        *self.write_done.lock() += 1;
        self.write_done_cv.notify_all();
        // An overlapped write leaves its marker (`Overlaps::synced`) for the
        // next append: on an idle store the flusher journals it.
        if self.core.overlaps.markers_pending()
            && let Some(journal) = &self.journal
        {
            journal.markers_left();
        }
    }

    /// The write-finished counter, to wait on with [`wait_write`](Self::wait_write).
    pub(crate) fn writes_finished(&self) -> u64 {
        *self.write_done.lock()
    }

    /// Waits until a write finished after `seen` was read, or `timeout` passed.
    pub(crate) fn wait_write(&self, seen: u64, timeout: Duration) {
        let mut done = self.write_done.lock();
        if *done == seen {
            done = self.write_done_cv.wait_for(done, timeout);
        }
        drop(done);
    }

    /// Runs one compaction.
    pub(crate) fn compact(&self, op: CompactOp) -> Result<CompactOutcome> {
        #[cfg(feature = "tracing")]
        let _span = tracing::debug_span!("extentmeta.compact").entered();
        let started = Instant::now();
        let outcome = self.drive_all(op);
        self.latency
            .record(&self.latency.compaction, elapsed_ns(started));
        let outcome = outcome?;
        match outcome {
            CompactOutcome::Committed(_) => self.counters.compactions_committed.bump(),
            CompactOutcome::Aborted => self.counters.compactions_aborted.bump(),
        }
        Ok(outcome)
    }

    /// Verifies `id` against the media and repairs a persistent fault (see
    /// [`VerifySession`]); the counts come from the session.
    pub(crate) fn verify(&self, id: ExtentId) -> Result<Verdict> {
        #[cfg(feature = "tracing")]
        let _span = tracing::debug_span!("extentmeta.verify", extent = id.0).entered();
        let started = Instant::now();
        let verdict = self.session(VerifySession::new(id, self.policy), VerifySession::tally);
        self.latency
            .record(&self.latency.verify, elapsed_ns(started));
        verdict
    }
}

/// Reads timed per sampled read: one in this many.
pub(crate) const READ_SAMPLE: u32 = 16;

/// Whether this thread's current read is one of the sampled ones.
fn sample_this_read() -> bool {
    thread_local!(static READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    READS.with(|n| {
        let next = n.get().wrapping_add(1);
        n.set(next);
        next % READ_SAMPLE == 0
    })
}

/// Nanoseconds since `started`, saturating.
pub(crate) fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What a rotation, the flusher and `close` need from the running store.
impl super::durable::Live for Shared {
    fn each_image_entry(
        &self,
        each: &mut dyn FnMut(&crate::journal::Entry) -> Result<()>,
    ) -> Result<()> {
        self.core.each_image_entry(each)
    }

    fn sync_devices(&self, checkpoint: bool) -> Result<()> {
        (self.core.devices_to_sync(checkpoint).into_iter()).try_for_each(|d| self.sync_device(d))
    }

    fn with_markers(&self, entries: Vec<crate::journal::Entry>) -> Vec<crate::journal::Entry> {
        self.core.overlaps.with_markers(entries)
    }

    fn overlaps_settling(&self) -> bool {
        self.core.overlaps.settling()
    }

    fn markers_durable(&self, entries: &[crate::journal::Entry]) {
        self.core.retire_behind_markers(entries);
    }

    fn markers_pending(&self) -> bool {
        self.core.overlaps.markers_pending()
    }
}
