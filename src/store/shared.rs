//! What the store and its background threads share: the core, the backend, the
//! counters, and the blocking driver that runs protocol machines to completion.

use super::prefetch::Hint;
use super::stats::Counters;
use crate::backend::{Backend, read_bytes};
use crate::bytes::Bytes;
use crate::cache::Priority;
use crate::error::{Error, Result};
use crate::policy::IntegrityPolicy;
use crate::protocol::{
    CompactOp, CompactOutcome, Core, IoRequest, IoResult, Machine, ReadOp, RepairOp, RepairOutcome,
    Step, Verdict, VerifyOp,
};
use crate::record::{ExtentId, Location};
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// State shared by the store and its worker threads.
pub(crate) struct Shared {
    pub(crate) core: Core,
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) counters: Counters,
    pub(crate) policy: IntegrityPolicy,
    /// The scrubber's resumable cursor (next id to look at).
    pub(crate) scrub_cursor: AtomicU64,
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
    ) -> Self {
        Shared {
            core,
            backend,
            counters: Counters::default(),
            policy,
            scrub_cursor: AtomicU64::new(scrub_start),
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
        let core = &self.core;
        let mut step = op.start(core);
        loop {
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

    fn perform(&self, request: IoRequest) -> IoResult {
        let backend = &*self.backend;
        match request {
            IoRequest::Read(location) => IoResult::Read(read_bytes(backend, location)),
            IoRequest::Write(location, bytes) => IoResult::Done(backend.write_at(location, &bytes)),
            IoRequest::Sync(device) => IoResult::Done(backend.sync(device)),
            IoRequest::GoodCopy(id, generation) => IoResult::Read(
                backend
                    .good_copy(id, generation)
                    .ok_or(Error::Quarantined { extent: id }),
            ),
        }
    }

    /// A demand read, climbing the integrity ladder on a media error: verify (which
    /// retries, and quarantines and remaps a persistent fault), then read again.
    pub(crate) fn read(&self, id: ExtentId) -> Result<Bytes> {
        self.counters.reads.bump();
        let result = match self.drive_all(ReadOp::new(id, Priority::Demand)) {
            Err(err) if err.is_media_fault() => {
                // The verdict is recorded in the stats; the read's answer is what the
                // record holds after the ladder (remapped bytes, a verified cached
                // copy of a quarantined extent, or a typed error).
                let _ = self.verify(id);
                self.drive_all(ReadOp::new(id, Priority::Demand))
            }
            other => other,
        };
        if result.is_ok() {
            self.counters.read_ok.bump();
        }
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
        // Errors are not the prefetcher's to report: a demand read will see them.
        if self.warm(hint.id).is_ok() {
            self.counters.prefetch_done.bump();
        }
    }

    /// Runs one compaction.
    pub(crate) fn compact(&self, op: CompactOp) -> Result<CompactOutcome> {
        let outcome = self.drive_all(op)?;
        match outcome {
            CompactOutcome::Committed(_) => self.counters.compactions_committed.bump(),
            CompactOutcome::Aborted => self.counters.compactions_aborted.bump(),
        }
        Ok(outcome)
    }

    /// Verifies `id` against the media; on FPRE004 quarantines and remaps it.
    pub(crate) fn verify(&self, id: ExtentId) -> Result<Verdict> {
        let core = &self.core;
        let mut guard = AbandonOnDrop {
            op: VerifyOp::new(id, self.policy),
            core,
        };
        let result = self.run(&mut guard.op, true).and_then(|v| {
            v.ok_or(Error::Internal {
                what: "verify skipped a load",
            })
        });
        let op = &guard.op;
        self.counters.retries.add(u64::from(op.retries()));
        if op.raced() > 0 {
            self.counters.verify_raced.bump();
        }
        match &result {
            Ok(Verdict::Ok { transient }) => {
                self.counters.verify_ok.bump();
                if *transient > 0 {
                    self.counters.verify_transient.bump();
                    // Charged to the device actually read, not where the record
                    // may have moved since.
                    if let Some(s) = op.verified() {
                        self.device_error(s.location());
                    }
                }
            }
            Err(Error::RetryLimitExceeded { location, .. }) => {
                self.counters.fpre004.bump();
                self.device_error(*location);
                if let Some(faulted) = op.faulted() {
                    self.repair(faulted);
                }
            }
            // Quarantined earlier without a remap: try the remap again.
            Ok(Verdict::Quarantined) => {
                if let Ok(s) = core.table.snapshot(id)
                    && s.state() == crate::record::State::Quarantined
                {
                    self.repair(s);
                }
            }
            _ => {}
        }
        result
    }

    fn repair(&self, faulted: crate::record::Snapshot) {
        let mut guard = AbandonOnDrop {
            op: RepairOp::new(faulted),
            core: &self.core,
        };
        let result = self.run(&mut guard.op, true);
        // Counted from what the machine did, not from how the remap ended: a remap
        // that loses a race still quarantined the record once.
        let counters = &self.counters;
        counters
            .quarantines
            .add(u64::from(guard.op.quarantined_here()));
        match result {
            Ok(Some(RepairOutcome::Remapped(_))) => counters.remaps.bump(),
            Ok(Some(RepairOutcome::NoGoodCopy(_))) => counters.remap_failed.bump(),
            // A write or another repair committed first: nothing left to remap.
            Ok(Some(RepairOutcome::Raced)) => {}
            // The record was quarantined but the remap failed: it stays quarantined
            // (a later verify or scrub retries the remap).
            Ok(None) | Err(_) => counters.remap_failed.bump(),
        }
    }

    /// Records one device error (one per verification episode) and degrades the
    /// device once the policy's threshold is reached within its window.
    fn device_error(&self, location: Location) {
        self.counters.device_errors.bump();
        let now_ms = self.started.elapsed().as_millis() as u64;
        if self.core.health.record_error(location.device, now_ms) {
            self.core.allocator.set_degraded(location.device);
        }
    }
}
