//! Space operations on [`Store`]: device space statistics, compaction planning,
//! packing, and releasing freed device tails.

use super::Store;
use crate::error::{Error, Result};
use crate::protocol::{CompactOp, CompactOutcome};
use crate::record::{ExtentId, Snapshot};
use crate::space::{DeviceSpaceStats, PlanGoal};

impl Store {
    /// Compacts every readable extent on `device` to other devices (draining a
    /// degraded device); returns how many moved, once no record names `device`
    /// any more: its disk may then be replaced or retired (a durable store
    /// keeps its device count, checked at every open, so its drained device
    /// file stays). A device id the store does not have drains nothing
    /// (`Ok(0)`). The copies never go to
    /// `device`. An extent whose bytes on `device` fail their checksum is
    /// handed to the integrity ladder (verify, quarantine, remap elsewhere) and
    /// the drain goes on. New writes avoid only degraded devices: drain a
    /// healthy one while nothing writes or compacts onto it (a move already
    /// on its way there may commit after the check), or call it again.
    ///
    /// # Errors
    ///
    /// [`Error::DrainIncomplete`] if any record still names `device` after the
    /// pass (a copy that failed on its target, an extent a write or another
    /// compaction held, one written there meanwhile, a quarantined extent with
    /// no good copy, one whose move failed with an I/O error); it says how many
    /// moved. The pass stops early only on an error that would fail every
    /// later move, and returns it: [`Error::NoSpace`] or [`Error::DiskFull`]
    /// when the other devices are full, [`Error::Shutdown`] once `close`
    /// began, [`Error::JournalFailed`] (also when a move met the journal's
    /// failure), [`Error::Internal`].
    pub fn drain(&self, device: u16) -> Result<u64> {
        self.check_open()?;
        let table = &self.shared.core.table;
        let mut moved = 0;
        for id in table.allocated_ids(0) {
            // A `close` that began meanwhile ends the pass: no compaction
            // starts after it.
            self.check_open()?;
            // A publish in progress is waited out: a lost race, not an error.
            let snapshot = table.snapshot_waiting(id)?;
            if !snapshot.is_readable() || snapshot.location().device != device {
                continue;
            }
            // A media fault climbed the ladder (`compact_or_verify`), whose
            // remap also avoids `device`: it was just marked bad there, and
            // degraded devices are used only as a last resort.
            match self.compact_or_verify(CompactOp::draining(id, device), id) {
                Ok(CompactOutcome::Committed(_)) => moved += 1,
                Ok(CompactOutcome::Aborted) => {}
                // The others are this extent's: it stays on `device`, counted
                // in `DrainIncomplete` with the moves made.
                Err(
                    err @ (Error::NoSpace { .. }
                    | Error::DiskFull { .. }
                    | Error::Shutdown
                    | Error::JournalFailed { .. }
                    | Error::Internal { .. }),
                ) => return Err(err),
                Err(_) => {}
            }
        }
        // A move whose journal failed under it is `OutcomeUnknown`: the pass
        // says the journal's failure, as it would have at the next move.
        if let Some(err) = self.shared.journal.as_ref().and_then(|j| j.failure()) {
            return Err(Error::journal_failed(&err));
        }
        self.trim_if_due();
        // Each `Ok` above says only that one extent's step ended: before the
        // device is removed, no record may name it (a quarantined extent keeps
        // its location: the last good copy).
        let left = (table.allocated_ids(0))
            .filter_map(|id| table.snapshot_waiting(id).ok())
            .filter(|s| s.location().device == device)
            .filter(|s| s.is_readable() || s.state() == crate::record::State::Quarantined)
            .count() as u64;
        if left > 0 {
            return Err(Error::DrainIncomplete {
                device,
                moved,
                left,
            });
        }
        Ok(moved)
    }

    /// Space statistics of every device, in device order.
    ///
    /// # Consistency
    ///
    /// Each device's figures are one consistent reading (taken under its lock);
    /// devices are read one after another. Freed space counts as free only once its
    /// grace period passed (see [`reclaim_space`](Self::reclaim_space)).
    pub fn space(&self) -> Vec<DeviceSpaceStats> {
        let allocator = &self.shared.core.allocator;
        (0..allocator.device_count())
            .filter_map(|d| allocator.stats(d))
            .collect()
    }

    /// The extents to compact for `goal`, from the current records and
    /// [`space`](Self::space) statistics. Moves nothing: run a
    /// [`PlanGoal::FreeRatio`] plan with [`pack`](Self::pack), a
    /// [`PlanGoal::Drain`] plan with [`drain`](Self::drain) or
    /// [`compact`](Self::compact).
    ///
    /// # Consistency
    ///
    /// A plan is advice from one pass over the table: records that change meanwhile
    /// make a compaction abort or move less, never lose bytes.
    pub fn plan_compaction(&self, goal: &PlanGoal) -> Vec<ExtentId> {
        // Retired locations no reader holds are free space, not a tail that
        // pins the file (the planner stops below anything but a record).
        self.shared.core.collect();
        let records: Vec<Snapshot> = self.records().collect();
        let allocator = &self.shared.core.allocator;
        let devices = self.space();
        let holes: Vec<_> = (devices.iter())
            .map(|d| allocator.holes(d.device).unwrap_or_default())
            .collect();
        crate::space::plan(goal, &records, &devices, &holes, allocator.block_size())
    }

    /// Compacts each of `ids`, in order, into the lowest free hole that fits
    /// below it on its own device (unless that device is degraded: its
    /// extents move off it), else the lowest hole on another healthy
    /// device, else the end of another healthy device's file, so that files whose
    /// highest extents move can shrink; then releases freed device tails. This is
    /// the order [`plan_compaction`](Self::plan_compaction) replays, so one plan
    /// and one `pack` reach its target unless records change in between.
    ///
    /// # Consistency
    ///
    /// As [`compact`](Self::compact). An extent with nowhere to go (one device,
    /// no hole below it) stays where it is ([`CompactOutcome::Aborted`]), and
    /// so does one deleted or quarantined since the plan was made (a lost race).
    ///
    /// # Errors
    ///
    /// Per extent, as [`compact`](Self::compact), but for the lost races above.
    pub fn pack(&self, ids: &[ExtentId]) -> Vec<Result<CompactOutcome>> {
        if self.shared.stopping() {
            return ids.iter().map(|_| Err(Error::Shutdown)).collect();
        }
        // A `close` that began meanwhile refuses the rest: no compaction
        // starts after it.
        let outcomes = ids
            .iter()
            .map(|&id| {
                self.check_open()?;
                self.compact_or_verify(CompactOp::packing(id), id)
            })
            .collect();
        let _ = self.reclaim_space();
        outcomes
    }

    /// Frees every retired location whose grace period has passed and releases
    /// each device's free tail ([`Backend::trim`](crate::Backend::trim) to the device's
    /// [`file_bytes`](DeviceSpaceStats::file_bytes)); returns the bytes released by
    /// the store's accounting. The store also does this by itself, after a write,
    /// delete or compaction, once some device has at least 1 MiB of freed tail.
    ///
    /// # Consistency
    ///
    /// Only bytes past the bump pointer are released, under the device's allocator
    /// lock: nothing there is referenced, read or being written, and nothing can be
    /// handed out there while the backend trims.
    ///
    /// # Errors
    ///
    /// The first backend error ([`Error::Io`]); the other devices are still
    /// trimmed.
    pub fn reclaim_space(&self) -> Result<u64> {
        self.check_open()?;
        let core = &self.shared.core;
        core.collect();
        let backend = &self.shared.backend;
        (core.allocator).release_tails(true, |device, length| {
            trim_unless_panicked(&**backend, device, length)
        })
    }

    /// Runs `op` on `id`; a media fault (of the source, or of the copy read
    /// back) also climbs the integrity ladder on `id`, as a read's does, so
    /// that a persistent fault is quarantined and repaired rather than met
    /// by every retry. The compaction's own error is returned.
    pub(super) fn compact_or_verify(&self, op: CompactOp, id: ExtentId) -> Result<CompactOutcome> {
        let outcome = self.shared.compact(op);
        if let Err(err) = &outcome
            && err.is_media_fault()
        {
            let _ = self.shared.verify(id);
        }
        outcome
    }

    /// Releases freed device tails if the allocator says one reached the automatic
    /// threshold. Errors are left for the next attempt (the tail stays counted).
    pub(super) fn trim_if_due(&self) {
        let core = &self.shared.core;
        if !core.allocator.take_trim_due() {
            return;
        }
        let backend = &self.shared.backend;
        let _ = (core.allocator).release_tails(false, |device, length| {
            trim_unless_panicked(&**backend, device, length)
        });
    }
}

/// [`Backend::trim`](crate::Backend::trim), a panic in it (an engine's backend
/// or `Fs`) an I/O error: it runs after a write was acknowledged, which must
/// not then panic in the caller's thread.
fn trim_unless_panicked(backend: &dyn crate::Backend, device: u16, length: u64) -> Result<()> {
    crate::fs::unless_panicked(
        || backend.trim(device, length),
        || Error::Io {
            device,
            op: "trim",
            kind: std::io::ErrorKind::Other,
            message: "the backend panicked".into(),
        },
    )
}
