//! The blocking driver: runs protocol machines to completion, performing their
//! I/O requests against the backend and the journal.
//!
//! A machine decides; the driver only performs what a [`Step`] asks (an I/O, a
//! wait on another load, a backoff) and feeds the result back. A backend panic is
//! contained at the I/O call (it becomes that request's I/O error), and a machine
//! whose driver unwinds is abandoned (what it holds is released).
//!
//! The driver also tells the journal's group commit which operations are on their
//! way to it: an operation counts from its first data write until its append (or
//! until its run ends without one), and a journal leader waits (bounded) while
//! any do.

use super::durable::METADATA_DEVICE;
use super::shared::Shared;
use crate::backend::read_bytes;
use crate::error::{Error, Result};
use crate::protocol::{Core, IoRequest, IoResult, Machine, Step, Tally};
use crate::record::Location;
use crate::sync::Ordering;
use std::time::Duration;

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
    /// step once `Store::close` has begun (the caller's guard abandons it).
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

    pub(super) fn drive_all<M: Machine>(&self, op: M) -> Result<M::Output> {
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
            IoRequest::Journal(_) => (METADATA_DEVICE, "journal", false),
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
            IoRequest::Sync(device) => IoResult::Done(self.sync_device(device)),
            IoRequest::GoodCopy(id, generation) => IoResult::Read(
                backend
                    .good_copy(id, generation)
                    .ok_or(Error::Quarantined { extent: id }),
            ),
            IoRequest::Journal(entries) => IoResult::Done(self.journal_commit(&entries)),
        }
    }

    /// Syncs `device` through the backend, keeping the inline writes held for
    /// write-back in step (`Core::after_device_sync`).
    fn sync_device(&self, device: u16) -> Result<()> {
        let mark = self.core.write_back.mark();
        let result = self.backend.sync(device);
        let failed = result.is_err()
            && (self.device_files.as_ref()).is_some_and(|files| files.sync_failed(device));
        self.core
            .after_device_sync(device, mark, result.is_ok(), failed, |location, bytes| {
                // Best effort: a write that fails leaves the extent to the verifier
                // until the reopen writes it back from the journal.
                let _ = self.backend.write_at(location, bytes);
            });
        result
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
            self,
        );
        // The commit may have released the metadata reserve (a full disk).
        self.core.set_space_low(journal.space_low());
        result
    }

    /// Runs a session to completion and adds its tally to the counters (also
    /// when it fails). Abandoned if the backend unwinds.
    pub(super) fn session<M: Machine>(&self, op: M, tally: fn(&M) -> Tally) -> Result<M::Output> {
        self.session_counting(op, tally, &mut 0)
    }

    pub(super) fn session_counting<M: Machine>(
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

    /// Records one device error (one per verification episode) and degrades the
    /// device once the policy's threshold is reached within its window.
    fn device_error(&self, location: Location) {
        self.counters.device_errors.bump();
        let now_ms = self.started.elapsed().as_millis() as u64;
        if let Some(entry) = self.core.charge_device_error(location, now_ms)
            && let Some(journal) = &self.journal
        {
            let _ = journal.commit(&[entry], self);
        }
    }
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

impl super::durable::Live for Shared {
    fn image(&self) -> crate::journal::Image {
        self.core.image()
    }

    fn sync_devices(&self) -> Result<()> {
        (self.core.write_back.devices().into_iter()).try_for_each(|d| self.sync_device(d))
    }
}

impl Drop for ArriveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.arrive_at_journal();
    }
}
