//! Write: reserve a fresh location, mark pending, write, wait for the
//! acknowledgment, commit location + checksum + generation in one transition,
//! journal the commit, and once that record is durable retire the old location
//! and acknowledge (invariants 9 and 10).
//!
//! # Consistency
//!
//! Until the commit, the record keeps its committed location, generation and
//! checksum: readers never see the pending bytes (invariant 5). The commit is one
//! transition, so a reader sees either the old triple or the new one. The old
//! location is retired through the reclaimer, so a reader still reading it finishes
//! first. A write that fails before the commit aborts (clears the pending mark) and
//! frees its fresh location, which no record or reader ever referenced.

use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::journal::Entry;
use crate::record::{Change, ExtentId, Location, Snapshot, State, checksum};
use crate::space::Placement;

/// A write of one extent's bytes.
#[derive(Debug)]
pub(crate) struct WriteOp {
    id: ExtentId,
    bytes: Bytes,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    Writing {
        begin: Snapshot,
        location: Location,
    },
    Syncing {
        begin: Snapshot,
        location: Location,
    },
    /// Committed in the table; waiting for the commit record to be durable before
    /// the old location may be reused and the write acknowledged.
    Journaling {
        committed: Snapshot,
        old: Option<Location>,
    },
    Finished,
}

impl WriteOp {
    pub(crate) fn new(id: ExtentId, bytes: Bytes) -> Self {
        WriteOp {
            id,
            bytes,
            phase: Phase::Idle,
        }
    }

    /// The bytes this write stores.
    pub(super) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub(super) fn begin(&self, core: &Core) -> Result<(Snapshot, Location)> {
        let length = u32::try_from(self.bytes.len()).map_err(|_| Error::TooLarge {
            length: self.bytes.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let snapshot = core.table.snapshot(self.id)?;
            if snapshot.write_pending() {
                return Err(Error::WriteInProgress { extent: self.id });
            }
            let location = core.allocate(length, Placement::Any)?;
            match core
                .table
                .transition(self.id, snapshot.version(), Change::BeginWrite)
            {
                Ok(begin) => return Ok((begin, location)),
                Err(err) => {
                    // Never referenced by a record nor read: free at once.
                    core.allocator.free(location);
                    if !matches!(err, Error::VersionConflict { .. }) {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(Error::WriteInProgress { extent: self.id }))
    }

    /// Commits the acknowledged write; returns the committed record and the location
    /// it unreferenced (retired once the commit record is durable). Only this write
    /// can clear its pending mark, so the loop only has to follow unrelated commits
    /// (a quarantine).
    pub(super) fn commit(
        &self,
        core: &Core,
        begin: Snapshot,
        location: Location,
    ) -> Result<(Snapshot, Option<Location>)> {
        let generation = begin.generation() + 1;
        let change = Change::CommitWrite {
            location,
            checksum: checksum(self.id, generation, &self.bytes),
        };
        let mut expected = begin;
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            match core.table.transition(self.id, expected.version(), change) {
                Ok(committed) => {
                    core.cache.invalidate(self.id, committed.generation());
                    let old = (expected.state() != State::Vacant).then(|| expected.location());
                    return Ok((committed, core.retire_unless_early(old)));
                }
                // Only this write clears its own mark, so a conflict that still shows
                // it pending is an unrelated commit (a quarantine): follow it.
                Err(Error::VersionConflict {
                    extent,
                    expected_version,
                    current,
                }) if current.write_pending() => {
                    expected = current;
                    last = Some(Error::VersionConflict {
                        extent,
                        expected_version,
                        current,
                    });
                }
                Err(err) => {
                    self.abort(core, location);
                    return Err(err);
                }
            }
        }
        self.abort(core, location);
        Err(last.unwrap_or(Error::Internal {
            what: "write: commit loop ended without an error",
        }))
    }

    /// Clears the pending mark (bounded retries; a snapshot that meets a publish in
    /// progress is retried too) and frees the unused location.
    pub(super) fn abort(&self, core: &Core, location: Location) {
        for _ in 0..MAX_ATTEMPTS {
            let Ok(now) = core.table.snapshot(self.id) else {
                continue;
            };
            if !now.write_pending() {
                break;
            }
            if core
                .table
                .transition(self.id, now.version(), Change::AbortWrite)
                .is_ok()
            {
                break;
            }
        }
        core.allocator.free(location);
    }
}

impl Machine for WriteOp {
    type Output = Snapshot;

    /// Reserves a location, marks the write pending and asks for the data write.
    fn start(&mut self, core: &Core) -> Step<Snapshot> {
        match self.begin(core) {
            Ok((begin, location)) => {
                self.phase = Phase::Writing { begin, location };
                Step::Io(IoRequest::Write(location, self.bytes.clone()))
            }
            Err(err) => {
                self.phase = Phase::Finished;
                Step::Done(Err(err))
            }
        }
    }

    /// The data write or the acknowledgment finished.
    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Snapshot> {
        let outcome = match result {
            IoResult::Done(r) => r,
            IoResult::Read(_) => Err(Error::Internal {
                what: "write: answered with a read result",
            }),
        };
        match (self.phase, outcome) {
            (Phase::Writing { begin, location }, Ok(())) => {
                self.phase = Phase::Syncing { begin, location };
                Step::Io(IoRequest::Sync(location.device))
            }
            (Phase::Syncing { begin, location }, Ok(())) => {
                match self.commit(core, begin, location) {
                    Ok((committed, old)) => {
                        self.phase = Phase::Journaling { committed, old };
                        Step::Io(IoRequest::Journal(vec![Entry::put(&committed)]))
                    }
                    Err(err) => {
                        self.phase = Phase::Finished;
                        Step::Done(Err(err))
                    }
                }
            }
            (Phase::Journaling { committed, old }, Ok(())) => {
                self.phase = Phase::Finished;
                if let Some(old) = old {
                    core.retire(old);
                }
                core.events.emit(|| Event::Written { record: committed });
                Step::Done(Ok(committed))
            }
            // Committed in memory but not durable: not acknowledged. The old location
            // stays unreclaimed (the store's journal is failed; a reopen rebuilds the
            // free space from what is durable).
            (Phase::Journaling { .. }, Err(err)) => {
                self.phase = Phase::Finished;
                Step::Done(Err(err))
            }
            (Phase::Writing { location, .. } | Phase::Syncing { location, .. }, Err(err)) => {
                self.phase = Phase::Finished;
                self.abort(core, location);
                Step::Done(Err(err))
            }
            (Phase::Idle | Phase::Finished, _) => {
                debug_assert!(false, "on_io in phase {:?}", self.phase);
                Step::Done(Err(Error::Internal {
                    what: "write: event out of order",
                }))
            }
        }
    }

    /// A driver that gives up mid-write (a panicking backend) clears the pending
    /// mark and frees the fresh location: otherwise every later write of the extent
    /// would be refused.
    fn abandon(&mut self, core: &Core) {
        if let Phase::Writing { location, .. } | Phase::Syncing { location, .. } = self.phase {
            self.phase = Phase::Finished;
            self.abort(core, location);
        }
    }
}
