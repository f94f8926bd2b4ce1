//! What the store and its background threads share: the core, the backend, the
//! counters, and the blocking driver that runs protocol machines to completion.

use super::durable::Journal;
use super::latency::Latencies;
use super::prefetch::Hint;
use super::stats::Counters;
use crate::backend::{Backend, read_bytes};
use crate::bytes::Bytes;
use crate::cache::Priority;
use crate::error::{Error, Result};
use crate::policy::IntegrityPolicy;
use crate::protocol::{
    CompactOp, CompactOutcome, Core, IoRequest, IoResult, Machine, ReadOp, ReadSession, Step,
    Tally, Verdict, VerifySession,
};
use crate::record::{ExtentId, Location};
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
    pub(crate) device_files: Option<std::sync::Arc<crate::backend::FsBackend>>,
    /// Operations between their first data write and their journal append: a
    /// journal leader lets them join its group commit (see `journal_commit`).
    approaching_journal: AtomicUsize,
    /// Latency histograms per operation kind.
    pub(crate) latency: Latencies,
    /// Bumped (and waiters woken) whenever a write, batch or delete finishes: a
    /// writer waiting for another write of the same extent waits on it.
    write_done: Mutex<u64>,
    write_done_cv: Condvar,
    /// Set once when the store is dropped: prefetch loads stop at their next step.
    stopping: AtomicBool,
    started: Instant,
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

/// Releases what a machine holds if its driver unwinds mid-flight (a panicking
/// backend): otherwise reclamation would stall and waiters would hang.
struct AbandonOnDrop<'a, M: Machine> {
    op: M,
    core: &'a Core,
}

impl<M: Machine> Drop for AbandonOnDrop<'_, M> {
    fn drop(&mut self) {
        self.op.abandon(self.core);
    }
}

impl Shared {
    pub(crate) fn new(
        core: Core,
        backend: Box<dyn Backend>,
        policy: IntegrityPolicy,
        scrub_start: u64,
        durable: Option<(Journal, std::sync::Arc<crate::backend::FsBackend>)>,
        histograms: bool,
    ) -> Self {
        let (journal, device_files) = durable.unzip();
        Shared {
            core,
            backend,
            counters: Counters::default(),
            policy,
            scrub_cursor: AtomicU64::new(scrub_start),
            approaching_journal: AtomicUsize::new(0),
            latency: Latencies {
                enabled: histograms,
                ..Latencies::default()
            },
            write_done: Mutex::new(0),
            write_done_cv: Condvar::new(),
            journal,
            device_files,
            stopping: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// Tells the background work to stop: queued hints are dropped and a prefetch
    /// load in flight is abandoned at its next step ([`Error::Shutdown`]).
    pub(crate) fn stop(&self) {
        // Release: pairs with the Acquire in `stopping`; it publishes nothing else
        // (the join in `Prefetcher::drop` orders the rest), the flag only has to
        // become visible to the workers.
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether the store is being dropped.
    pub(crate) fn stopping(&self) -> bool {
        // Acquire: pairs with the Release in `stop`.
        self.stopping.load(Ordering::Acquire)
    }

    /// Runs `op` to completion, blocking on I/O, backoff and other loads. With
    /// `join_loads == false` a machine that would wait on another reader's load ends
    /// with `Ok(None)` instead (prefetch: that load fills the cache anyway).
    pub(crate) fn drive<M: Machine>(&self, op: M, join_loads: bool) -> Result<Option<M::Output>> {
        let mut guard = AbandonOnDrop {
            op,
            core: &self.core,
        };
        self.run(&mut guard.op, join_loads)
    }

    /// The driver loop. Bounded: every machine restarts at most `MAX_ATTEMPTS` (or
    /// its policy's limits) times, with one I/O, wait or backoff per step. A
    /// prefetch (`join_loads == false`) ends with [`Error::Shutdown`] at its next
    /// step once the store is being dropped (the caller's guard abandons it).
    fn run<M: Machine>(&self, op: &mut M, join_loads: bool) -> Result<Option<M::Output>> {
        self.run_counting(op, join_loads, &mut 0)
    }

    /// [`run`](Self::run), counting the I/O, wait and backoff steps in `steps` (a
    /// read that took none was a cache hit).
    fn run_counting<M: Machine>(
        &self,
        op: &mut M,
        join_loads: bool,
        steps: &mut u32,
    ) -> Result<Option<M::Output>> {
        let core = &self.core;
        // An operation that wrote but ends without journaling (an error, an abort,
        // an unwind) is not on its way to the journal any more.
        let _arrive = ArriveOnDrop(self);
        let mut step = op.start(core);
        loop {
            if !matches!(step, Step::Done(_)) {
                *steps += 1;
            }
            if let Some(location) = op.take_device_error() {
                self.device_error(location);
            }
            if !join_loads && !matches!(step, Step::Done(_)) && self.stopping() {
                return Err(Error::Shutdown);
            }
            step = match step {
                Step::Io(request) => op.on_io(core, self.perform(request)),
                Step::Wait(_) if !join_loads => return Ok(None),
                Step::Wait(flight) => op.on_wait(core, flight.wait()),
                Step::Backoff(us) => {
                    // Real time: the blocking driver's backoff (the emulator's is virtual).
                    std::thread::sleep(Duration::from_micros(us));
                    op.on_backoff(core)
                }
                Step::Done(result) => return result.map(Some),
            };
        }
    }

    fn drive_all<M: Machine>(&self, op: M) -> Result<M::Output> {
        self.drive(op, true)?.ok_or(Error::Internal {
            what: "a load was skipped while joining loads",
        })
    }

    /// Performs `request`, containing a backend panic: it becomes the I/O error of
    /// that request ([`Error::Io`], kind `Other`), so the machine takes its
    /// ordinary failure path (a write aborts, a read fails or retries) and no panic
    /// escapes to the caller or a worker.
    fn perform(&self, request: IoRequest) -> IoResult {
        let (device, op, reads) = match &request {
            IoRequest::Read(location) => (location.device, "read", true),
            IoRequest::GoodCopy(..) => (0, "good_copy", true),
            IoRequest::Write(location, _) => (location.device, "write", false),
            IoRequest::Sync(device) => (*device, "sync", false),
            IoRequest::Journal(_) => (super::METADATA_DEVICE, "journal", false),
        };
        let call = std::panic::AssertUnwindSafe(|| self.perform_unguarded(request));
        match std::panic::catch_unwind(call) {
            Ok(result) => result,
            Err(payload) => {
                self.counters.backend_panics.bump();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let err = Error::Io {
                    device,
                    op,
                    kind: std::io::ErrorKind::Other,
                    message: format!("the backend panicked: {message}"),
                };
                if reads {
                    IoResult::Read(Err(err))
                } else {
                    IoResult::Done(Err(err))
                }
            }
        }
    }

    fn perform_unguarded(&self, request: IoRequest) -> IoResult {
        let backend = &*self.backend;
        match request {
            IoRequest::Read(location) => IoResult::Read(read_bytes(backend, location)),
            IoRequest::Write(location, bytes) => {
                // A data write is the first step of every operation that journals a
                // commit (write, batch, compaction, remap).
                self.approach_journal();
                IoResult::Done(backend.write_at(location, &bytes))
            }
            // Not group-committed here: concurrent `fdatasync`s of one file are
            // merged by the file system's own journal, and a leader/follower group
            // in front of them measured slower (BENCHMARKS.md, durability).
            IoRequest::Sync(device) => {
                let result = backend.sync(device);
                if result.is_err()
                    && let Some(files) = &self.device_files
                    && files.sync_failed(device)
                {
                    self.core.device_sync_failed(device);
                }
                IoResult::Done(result)
            }
            IoRequest::GoodCopy(id, generation) => IoResult::Read(
                backend
                    .good_copy(id, generation)
                    .ok_or(Error::Quarantined { extent: id }),
            ),
            IoRequest::Journal(entries) => IoResult::Done(self.journal_commit(&entries)),
        }
    }

    /// This thread's operation wrote data and will journal a commit next.
    fn approach_journal(&self) {
        if self.journal.is_some() && !APPROACHING.with(|a| a.replace(true)) {
            // Relaxed: a hint (see `journal_commit`).
            self.approaching_journal.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// This thread's operation appended its records (or ended without doing so).
    fn arrive_at_journal(&self) {
        if APPROACHING.with(|a| a.replace(false)) {
            // Relaxed: a hint (see `journal_commit`).
            self.approaching_journal.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Makes `entries` durable (no-op in memory); a rotation due meanwhile
    /// checkpoints the live image.
    fn journal_commit(&self, entries: &[crate::journal::Entry]) -> Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        // A leader waits (bounded) while other operations are between their data
        // write and their append: they join its sync instead of needing the next.
        let result = journal.commit_with(
            entries,
            || self.arrive_at_journal(),
            // Relaxed: a hint for how long the leader waits, never for correctness.
            || self.approaching_journal.load(Ordering::Relaxed) > 0,
            &|| self.core.image(),
        );
        // The commit may have released the metadata reserve (a full disk).
        self.core.set_space_low(journal.space_low());
        result
    }

    /// Before a write: while the metadata reserve is in use (a full disk), tries to
    /// make it again, so that writes go on once space was freed; if that fails
    /// the write is refused ([`Error::DiskFull`]).
    pub(crate) fn make_room(&self) {
        // The flag, not the journal's lock: a write must not contend with group
        // commit to learn that nothing is to be done.
        if self.core.space_low.load(Ordering::Relaxed)
            && let Some(journal) = &self.journal
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
        self.counters.reads.bump();
        let sampled = self.latency.enabled && sample_this_read();
        let started = sampled.then(Instant::now);
        let mut steps = 0;
        let result = self.session_counting(
            ReadSession::new(id, self.policy),
            ReadSession::tally,
            &mut steps,
        );
        if let Some(started) = started {
            let histogram = if steps == 0 {
                &self.latency.read_hit
            } else {
                &self.latency.read_miss
            };
            self.latency.record(histogram, elapsed_ns(started));
        }
        if result.is_ok() {
            self.counters.read_ok.bump();
        }
        result
    }

    /// Wakes writers waiting for a write of some extent to finish.
    pub(crate) fn write_finished(&self) {
        *self.write_done.lock() += 1;
        self.write_done_cv.notify_all();
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

    /// Runs a session to completion and adds its tally to the counters (also
    /// when it fails). Abandoned if the backend unwinds.
    fn session<M: Machine>(&self, op: M, tally: fn(&M) -> Tally) -> Result<M::Output> {
        self.session_counting(op, tally, &mut 0)
    }

    fn session_counting<M: Machine>(
        &self,
        op: M,
        tally: fn(&M) -> Tally,
        steps: &mut u32,
    ) -> Result<M::Output> {
        let mut guard = AbandonOnDrop {
            op,
            core: &self.core,
        };
        let result = self.run_counting(&mut guard.op, true, steps).and_then(|o| {
            o.ok_or(Error::Internal {
                what: "a session skipped a load",
            })
        });
        let tally = tally(&guard.op);
        self.counters.add_tally(tally);
        #[cfg(feature = "tracing")]
        trace_tally(&tally);
        result
    }

    /// A read at prefetch priority that never waits on another reader's load.
    pub(crate) fn warm(&self, id: ExtentId) -> Result<bool> {
        Ok(self
            .drive(ReadOp::new(id, Priority::Prefetch), false)?
            .is_some())
    }

    /// A worker's handling of one hint.
    pub(crate) fn prefetch_hint(&self, hint: Hint) {
        if self.stopping() {
            return;
        }
        let current = self.core.table.snapshot(hint.id);
        if current.map_or(true, |s| s.generation() != hint.generation) {
            self.counters.prefetch_cancelled.bump();
            return;
        }
        // Errors are not the prefetcher's to report (a demand read will see them),
        // only to count.
        match self.warm(hint.id) {
            Ok(_) => self.counters.prefetch_done.bump(),
            Err(_) => self.counters.prefetch_abandoned.bump(),
        }
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

    /// Records one device error (one per verification episode) and degrades the
    /// device once the policy's threshold is reached within its window.
    fn device_error(&self, location: Location) {
        self.counters.device_errors.bump();
        let now_ms = self.started.elapsed().as_millis() as u64;
        if let Some(entry) = self.core.charge_device_error(location, now_ms)
            && let Some(journal) = &self.journal
        {
            let _ = journal.commit(&[entry], &|| self.core.image());
        }
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

/// The slow paths a session took, as `tracing` events.
#[cfg(feature = "tracing")]
fn trace_tally(t: &Tally) {
    if t.retries > 0 {
        tracing::debug!(
            retries = t.retries,
            transient = t.verify_transient,
            "re-read a stable version"
        );
    }
    if t.fpre004 > 0 {
        tracing::warn!(
            fpre004 = t.fpre004,
            "persistent fault: retry limit exceeded"
        );
    }
    if t.quarantines > 0 {
        tracing::warn!(quarantines = t.quarantines, "extent quarantined");
    }
    if t.remaps > 0 {
        tracing::info!(
            remaps = t.remaps,
            "quarantined extent remapped from a good copy"
        );
    }
    if t.remap_failed > 0 {
        tracing::warn!(
            remap_failed = t.remap_failed,
            "no good copy: extent stays quarantined"
        );
    }
}

thread_local! {
    /// Whether this thread's current operation counts in `approaching_journal`.
    static APPROACHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Takes this thread's operation off `approaching_journal` when its run ends.
struct ArriveOnDrop<'a>(&'a Shared);

impl Drop for ArriveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.arrive_at_journal();
    }
}
