//! The durable store's metadata driver: runs the journal [`Writer`]'s plans on an
//! [`Fs`], with threads as group-commit leaders and followers.
//!
//! # Group commit
//!
//! A committer appends its entries to the writer under the lock, then either
//! leads (no write in flight: it lets stragglers append for at most
//! [`STRAGGLER_WAIT`] while the store says operations are on their way, takes the
//! writer's next plan, runs it outside the lock and reports the outcome) or waits
//! on the condition variable for the leader whose write covers its entries. So
//! concurrent writers share one `fdatasync`: 8 writers pay about 0.13 journal
//! syncs per write (BENCHMARKS.md). Every decision (what a write carries, when an
//! entry is durable, what a failure means, when to rotate) is the writer's
//! (`journal::writer`), the same code the emulator crash-tests.
//!
//! # Rotation
//!
//! When the writer's next plan is the switch to a new journal, the leader that ran
//! it hands the checkpoint to the checkpointer thread (`checkpointer`), which
//! writes the checkpoint of the live state (read after the switch, so it holds
//! every record of the journals it replaces, proposals included: see
//! `Core::each_image_entry`) outside the lock, a megabyte at a time as it reads
//! the table, while group commits go on in the new journal. No operation waits
//! for a checkpoint of the whole table (about 0.15 s per million extents), unless
//! the new journal reaches twice its bound first (`Writer::held_back`); the
//! checkpoint holds no image of the table, only its current chunk.

use crate::error::{Error, Result};
use crate::journal::Entry;
use crate::journal::writer::Writer;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
// std's Arc even under loom: file handles are shared, not synchronised through it.
use std::any::Any;
use std::time::{Duration, Instant};

pub use crate::journal::METADATA_DEVICE;

mod checkpointer;
mod dir;
mod flusher;

pub(crate) use dir::Dir;

/// What a rotation needs from the running store.
pub(crate) trait Live {
    /// Passes the live durable state to `each`, record by record, for a
    /// checkpoint (`Core::each_image_entry`).
    fn each_image_entry(&self, each: &mut dyn FnMut(&Entry) -> Result<()>) -> Result<()>;
    /// Syncs every device file holding inline writes not synced yet, through
    /// the store's sync path ([`FsOp::SyncDevices`]; `Core::after_device_sync`),
    /// before a checkpoint (`checkpoint`) or the close marker (see
    /// `Core::devices_to_sync`).
    fn sync_devices(&self, checkpoint: bool) -> Result<()>;
    /// `entries` behind the overlapped writes' markers waiting
    /// (`Overlaps::with_markers`).
    fn with_markers(&self, entries: Vec<Entry>) -> Vec<Entry>;
    /// An append made `entries` durable: the locations behind the markers
    /// among them retire (`Core::retire_behind_markers`).
    fn markers_durable(&self, entries: &[Entry]);
    /// Whether overlapped writes' markers wait for an append.
    fn markers_pending(&self) -> bool;
    /// Whether an overlapped write is between its hand-off to the journal and
    /// its marker (`Overlaps::settling`).
    fn overlaps_settling(&self) -> bool;
}

/// The longest a group-commit leader waits for operations on their way to the
/// journal (between their data write and their append): about two syncs, so that
/// writers that started together share one journal sync.
pub(crate) const STRAGGLER_WAIT: Duration = Duration::from_micros(600);

/// Yields while `more(now)` says others are about to append, until `until`:
/// one clock read per pass.
fn wait_for_stragglers(more: impl Fn(Instant) -> bool, until: Instant) {
    // Bounded by the deadline.
    loop {
        let now = Instant::now();
        if now >= until || !more(now) {
            return;
        }
        crate::sync::thread::yield_now();
    }
}

pub(crate) fn io_error(op: &'static str, err: &std::io::Error) -> Error {
    Error::io(METADATA_DEVICE, op, err)
}

/// The journal of an open durable store.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: Dir,
    writer: Mutex<Writer>,
    cond: Condvar,
    /// Held until [`release`](Self::release): the directory's exclusive lock.
    lock: Mutex<Box<dyn Any + Send + Sync>>,
    /// The writer's `space_low`, published whenever the writer may have changed
    /// it, so that a write reads it without the writer's lock.
    space_low: AtomicBool,
    /// Appends buffered for the next group commit (the writer's count, published
    /// under its lock for a gathering leader to read without it).
    buffered: AtomicUsize,
    /// Nanoseconds the last group commit's write and sync took.
    last_sync_ns: AtomicU64,
    /// Wakes the flusher ([`flush_loop`](Self::flush_loop)).
    flush_cond: Condvar,
    /// An overlapped write appended and wants a group commit now (under the
    /// writer's lock).
    flush_wanted: AtomicBool,
    /// The flusher is to return (under the writer's lock).
    flusher_stop: AtomicBool,
    /// The flusher waits with no deadline: no marker was pending when it
    /// looked, so one left after that must wake it
    /// ([`markers_left`](Self::markers_left)).
    flusher_idle: AtomicBool,
    /// A checkpoint a rotation made due (0: none), for the checkpointer
    /// (`checkpoint_loop`) or, if it has stopped, `close` to write.
    handed_over: AtomicU64,
    /// Wakes the checkpointer.
    checkpoint_cond: Condvar,
    /// The checkpointer is to return (under the writer's lock).
    checkpointer_stop: AtomicBool,
}

/// Journal counters for [`StoreStats`](crate::StoreStats).
pub(crate) type JournalStats = crate::journal::writer::WriterStats;

impl Journal {
    /// The sequence number the journal's next entry gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.writer.lock().next_seq()
    }

    pub(crate) fn new(dir: Dir, lock: Box<dyn Any + Send + Sync>, writer: Writer) -> Self {
        Journal {
            space_low: AtomicBool::new(writer.space_low()),
            buffered: AtomicUsize::new(0),
            last_sync_ns: AtomicU64::new(0),
            dir,
            writer: Mutex::new(writer),
            cond: Condvar::new(),
            flush_cond: Condvar::new(),
            flush_wanted: AtomicBool::new(false),
            flusher_stop: AtomicBool::new(false),
            flusher_idle: AtomicBool::new(false),
            handed_over: AtomicU64::new(0),
            checkpoint_cond: Condvar::new(),
            checkpointer_stop: AtomicBool::new(false),
            lock: Mutex::new(lock),
        }
    }

    /// The store's directory.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Appends `entries` and returns once they are durable (group commit); a
    /// rotation due meanwhile is handed to the checkpointer.
    ///
    /// # Errors
    ///
    /// As [`Writer::status`]: [`Error::OutcomeUnknown`] if the write that carried
    /// the entries failed, [`Error::JournalFailed`] if it had failed before
    /// they were written, [`Error::Shutdown`] once closed.
    pub(crate) fn commit(&self, entries: &[Entry]) -> Result<()> {
        self.commit_with(entries, || {}, || false)
    }

    /// [`commit`](Self::commit): `arrived` runs once the entries are appended (under
    /// the lock); a leader first lets stragglers append while `more()` says others
    /// are on their way (bounded, see [`STRAGGLER_WAIT`]).
    pub(crate) fn commit_with(
        &self,
        entries: &[Entry],
        arrived: impl FnOnce(),
        more: impl Fn() -> bool,
    ) -> Result<()> {
        // One lock for the append and the wait: a committer that left the lock
        // between them would queue for it again behind the others appending.
        let (g, appended) = self.append_locked(entries, arrived);
        self.wait_locked(g, appended?, Entry::first_extent(entries), more)
    }

    /// Appends `entries` to the group being gathered, without waiting: the
    /// sequence number to [`wait`](Self::wait) for. `arrived` runs once they
    /// are appended (under the lock).
    ///
    /// # Errors
    ///
    /// As [`Writer::append`]: the journal refused them (nothing was written).
    pub(crate) fn append(&self, entries: &[Entry], arrived: impl FnOnce()) -> Result<u64> {
        self.append_locked(entries, arrived).1
    }

    /// [`append`](Self::append), the writer's lock still held.
    fn append_locked(
        &self,
        entries: &[Entry],
        arrived: impl FnOnce(),
    ) -> (crate::sync::MutexGuard<'_, Writer>, Result<u64>) {
        let mut g = self.writer.lock();
        let appended = g.append(entries);
        // Relaxed: a hint for a gathering leader's bounded wait.
        self.buffered.store(g.group_sizes().0, Ordering::Relaxed);
        arrived();
        (g, appended)
    }

    /// Returns once the entries [`append`](Self::append) numbered `target` are
    /// durable, leading group commits while none is in flight; `extent` names
    /// them in an [`Error::OutcomeUnknown`].
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit).
    pub(crate) fn wait(
        &self,
        target: u64,
        extent: crate::record::ExtentId,
        more: impl Fn() -> bool,
    ) -> Result<()> {
        self.wait_locked(self.writer.lock(), target, extent, more)
    }

    /// [`wait`](Self::wait) from under the writer's lock.
    fn wait_locked<'a>(
        &'a self,
        mut g: crate::sync::MutexGuard<'a, Writer>,
        target: u64,
        extent: crate::record::ExtentId,
        more: impl Fn() -> bool,
    ) -> Result<()> {
        // Bounded: every pass returns, waits for the write in flight (which makes
        // the target durable, fails the journal, or is followed by one that does),
        // or leads one write.
        loop {
            if let Some(result) = g.status(target, extent) {
                return result;
            }
            // A rotation holding group commits back ends with a wake-up.
            if g.in_flight() || g.held_back() {
                g = self.cond.wait(g);
                continue;
            }
            // Lead: others that append meanwhile wait for this write. Wait for
            // the ones on their way (`more`: their data is being written and
            // synced), and for about as many appends as the last group carried
            // (the writers it woke, on their way back: inline writes have no
            // data sync to be seen in), the latter for at most one sync's time,
            // so a shrinking group costs less than one sync more.
            let (_, last_group) = g.group_sizes();
            g.gather();
            drop(g);
            // Relaxed: hints for a bounded wait, never for correctness.
            let sync =
                Duration::from_nanos(self.last_sync_ns.load(Ordering::Relaxed)).min(STRAGGLER_WAIT);
            let started = Instant::now();
            wait_for_stragglers(
                |now| {
                    more()
                        || (self.buffered.load(Ordering::Relaxed) < last_group
                            && now < started + sync)
                },
                started + STRAGGLER_WAIT,
            );
            g = self.write_group(self.writer.lock());
        }
    }

    /// Writes the checkpoint a rotation handed over, if any.
    fn take_over(&self, live: &dyn Live) {
        // Relaxed: a swap, so that one caller takes it; the writer's lock
        // (held when it was stored, and by every caller before this) orders it
        // with the rotation's state.
        let number = self.handed_over.swap(0, Ordering::Relaxed);
        if number > 0 {
            self.checkpoint(number, live);
        }
    }

    /// Takes the next write (none: the waiters learn why from the status), runs
    /// it without the lock, completes it and wakes the waiters, then hands the
    /// checkpoint a rotation asks for to the checkpointer.
    pub(super) fn write_group<'a>(
        &'a self,
        mut g: crate::sync::MutexGuard<'a, Writer>,
    ) -> crate::sync::MutexGuard<'a, Writer> {
        let Some(ops) = g.next_write() else {
            self.cond.notify_all();
            return g;
        };
        // Relaxed: hints for a leader's bounded wait, never for correctness.
        self.buffered.store(0, Ordering::Relaxed);
        drop(g);
        let started = Instant::now();
        let result = self.dir.run(&ops);
        // Relaxed: as above.
        self.last_sync_ns
            .store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // The writer takes the group's buffer back only from its last holder.
        drop(ops);
        g = self.writer.lock();
        let checkpoint = g.complete(result);
        self.publish(&g);
        self.cond.notify_all();
        // Overlapped writes appended while this write ran: the flusher leads
        // the next (only then: a wake-up per group commit costs a context
        // switch, a tenth of a 4 KiB inline write's throughput on 2 cores).
        // Relaxed: under the writer's lock, as the flusher reads it.
        if self.flush_wanted.load(Ordering::Relaxed) {
            self.flush_cond.notify_all();
        }
        if let Some(number) = checkpoint {
            // Relaxed: under the writer's lock (see `handed_over`).
            self.handed_over.store(number, Ordering::Relaxed);
            self.checkpoint_cond.notify_all();
        }
        g
    }

    /// Writes checkpoint `number` of the live image and switches the pointer to it.
    fn checkpoint(&self, number: u64, live: &dyn Live) {
        #[cfg(feature = "tracing")]
        let _span = tracing::info_span!("extentmeta.journal.rotate").entered();
        // A failed journal ends the rotation here (see `checkpoint_planner`).
        let Some(planner) = self.writer.lock().checkpoint_planner() else {
            self.cond.notify_all();
            return;
        };
        // A panicking file system fails the rotation (as `Dir`'s steps do),
        // which ends it: else it would hold group commits back for good.
        let names = crate::fs::unless_panicked(
            || self.dir.fs.list(&self.dir.path),
            || std::io::Error::other("the file system panicked"),
        )
        .map_err(|e| io_error("list", &e));
        let mut ops = match &names {
            // Planned without the writer's lock; the checkpoint's bytes are
            // read from the live state as the plan runs (`write_image`).
            Ok(names) => planner.plan_streamed(number, names),
            Err(_) => Vec::new(),
        };
        let mut result = names.map(|_| ());
        // Bounded: the writer hands out a plan again at most once (when it
        // releases the reserve).
        loop {
            if result.is_ok() {
                result = self
                    .dir
                    .run_checkpoint(&ops, &|| live.sync_devices(true), &|file| {
                        self.write_image(file, number, &planner, live)
                    });
            }
            #[cfg(feature = "tracing")]
            if let Err(err) = &result {
                tracing::error!(%err, "journal rotation failed");
            }
            let mut g = self.writer.lock();
            let retry = g.checkpoint_done(&ops, result.clone());
            self.publish(&g);
            // A plan a restore of the reserve turned away (it took the room)
            // runs again once the restore ended, which wakes this. Bounded:
            // a restore's plan ends, and none starts before this ran.
            while retry.is_some() && g.restoring() {
                g = self.cond.wait(g);
            }
            drop(g);
            match retry {
                Some(retry) => {
                    ops = retry;
                    result = Ok(());
                }
                None => break,
            }
        }
        // Wakes a `close` waiting for the rotation to end, and whatever the
        // rotation held back.
        self.wake_held(&self.writer.lock());
    }

    /// Wakes what a hold on group commits (a rotation's at twice the bound,
    /// a cut) kept waiting, once it ended: the committers, and the flusher,
    /// whose group a hold turned away, taking its wish along (`flush_wanted`
    /// swapped off, or the overlapped writes' markers taken into the buffer):
    /// without this, on an idle store they would wait for the next append.
    /// Under the writer's lock, as the flusher reads its flag.
    fn wake_held(&self, _held: &Writer) {
        // Relaxed: under the writer's lock (see `flush_wanted`).
        self.flush_wanted.store(true, Ordering::Relaxed);
        self.flush_cond.notify_all();
        self.cond.notify_all();
    }

    /// Holds back every journal write not yet handed out until the guard
    /// drops (`Writer::hold_cut`): a backup reads its image meanwhile.
    pub(crate) fn hold_cut(&self) -> CutHold<'_> {
        self.writer.lock().hold_cut();
        CutHold(self)
    }

    /// Appends [`Entry::Closed`] (a clean close) unless the journal failed, once
    /// the write and the rotation in flight ended; every later commit is refused
    /// with [`Error::Shutdown`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the marker's write or sync failed (nothing acknowledged is
    /// affected; a reopen recovers as after a crash).
    pub(crate) fn close(&self, live: &dyn Live) -> Result<()> {
        let mut g = self.writer.lock();
        // The checkpointer has stopped; a switch a committer still runs (or
        // left to retry) has its checkpoint written here. Bounded: one switch
        // per rotation, and each write or retry ends once.
        loop {
            let idle = !g.in_flight();
            // Relaxed: under the writer's lock (see `handed_over`).
            if idle && self.handed_over.load(Ordering::Relaxed) > 0 {
                drop(g);
                self.take_over(live);
                g = self.writer.lock();
            } else if let Some(ops) =
                (idle && g.retry_pending() && !g.restoring()).then(|| g.next_write())
            {
                let Some(ops) = ops else { break };
                let result = self.dir.run(&ops);
                if let Some(number) = g.complete(result) {
                    // Relaxed: under the writer's lock.
                    self.handed_over.store(number, Ordering::Relaxed);
                }
                self.publish(&g);
                self.cond.notify_all();
            } else if !idle || g.rotating() || g.cut_held() || g.restoring() {
                // A write, another `close`'s checkpoint, or a backup's cut ends
                // with a wake-up: the close marker's group would make records
                // durable while the backup reads its image. A reserve's restore
                // (a writer's thread runs it) ends before the directory is let
                // go, and none begins after `close` (`restore_reserve`).
                g = self.cond.wait(g);
            } else if live.overlaps_settling() {
                // An overlapped write whose record this journal took leaves its
                // marker after its answer: the close marker's group carries it
                // (the flusher is gone). No wake-up ends it: polled, with the
                // lock let go (its own group may need it). Bounded: each write
                // in flight ends once, and one that begins now (it passed the
                // store's open check before `close`) appends before this
                // check sees it, or is refused once the journal is closed.
                g = self.cond.wait_for(g, std::time::Duration::from_millis(1));
            } else {
                break;
            }
        }
        // The overlapped writes' markers go with the close marker's group: a
        // reopen then reads none of their data. The locations behind them
        // stay: a closed store hands out none.
        let markers = live.with_markers(Vec::new());
        if !markers.is_empty() {
            let _ = g.append(&markers);
        }
        let mut ops = g.close();
        let mut result = Ok(());
        // Bounded: the marker's plan runs again at most once (behind the
        // reserve's release). Under the lock: every other committer is refused
        // from now on anyway.
        while let Some(plan) = ops {
            result = self.dir.run_with(&plan, &|| live.sync_devices(false));
            g.complete(result.clone());
            self.publish(&g);
            ops = g.retry_pending().then(|| g.next_write()).flatten();
        }
        self.cond.notify_all();
        result
    }

    /// Drops every open metadata file and the directory lock: another store may
    /// open the directory from now on. Only after [`close`](Self::close).
    pub(crate) fn release(&self) {
        self.dir.open.lock().clear();
        *self.lock.lock() = Box::new(());
    }

    /// Whether the metadata reserve is not held: new writes are refused.
    pub(crate) fn space_low(&self) -> bool {
        // Acquire: pairs with the Release in `publish`; a stale answer only makes
        // a write try (and fail) or skip a restore once more.
        self.space_low.load(Ordering::Acquire)
    }

    /// Publishes the writer's `space_low` (under its lock).
    fn publish(&self, writer: &Writer) {
        // Release: pairs with the Acquire in `space_low`.
        self.space_low.store(writer.space_low(), Ordering::Release);
    }

    /// Tries to (re)create the metadata reserve if it is not held; returns
    /// whether it is held now. Best effort: a failure leaves the store refusing
    /// new writes ([`Error::DiskFull`]) and removes what was written of it.
    pub(crate) fn restore_reserve(&self) -> bool {
        let Some(ops) = self.writer.lock().restore_reserve() else {
            return !self.space_low();
        };
        let result = self.dir.run(&ops);
        let cleanup = {
            let mut g = self.writer.lock();
            let cleanup = g.reserve_restored(result);
            self.publish(&g);
            cleanup
        };
        if !cleanup.is_empty() {
            let _ = self.dir.run(&cleanup);
            self.writer.lock().reserve_cleaned();
        }
        // Wakes a `close` waiting for the restore to end, and a plan the
        // restore turned away (a committer's, the flusher's or the
        // checkpointer's: `Writer::release_reserve_for`).
        self.wake_held(&self.writer.lock());
        !self.space_low()
    }

    /// The journal's failure, if a write or sync of it failed.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.writer.lock().failure().cloned()
    }

    pub(crate) fn stats(&self) -> JournalStats {
        self.writer.lock().stats()
    }
}

/// [`Journal::hold_cut`]'s guard: its drop releases the cut and wakes the
/// committers it held.
pub(crate) struct CutHold<'a>(&'a Journal);

impl Drop for CutHold<'_> {
    fn drop(&mut self) {
        let mut g = self.0.writer.lock();
        g.release_cut();
        self.0.wake_held(&g);
    }
}
