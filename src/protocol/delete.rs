//! Delete: reserve the record with the pending mark, journal the vacant record the
//! delete will make, and once that record is durable commit `Durable | Quarantined
//! → Vacant`, retire the old location and drop the cached copy.
//!
//! # Consistency
//!
//! The commit is the linearization point: a read whose snapshot precedes it
//! returns the old bytes (its location is retired through the reclaimer, so the
//! bytes stay in place until that reader unpins), a read whose snapshot follows it
//! returns [`Error::NotReadable`]. The generation is kept, so a later write still
//! bumps it past every cached or checksummed value; the cached entry of the deleted
//! generation is invalidated, and a fill of it in flight is rejected (the read's
//! re-validation refuses a `Vacant` record). A delete never ends a pending write: it
//! is refused with [`Error::WriteInProgress`], and a write that begins while the
//! delete holds the mark is refused the same way. A compaction in progress is
//! ended as a write ends it: the reservation (`Compacting → Durable`, pending)
//! makes the compaction's commit conflict, and it frees its target, which no
//! record ever referenced. Waiting it out instead would bound the delete by the
//! longest copy and verify, and fail a plain race with an error.
//!
//! # Durable before visible
//!
//! As a write (see `write`): the record is journaled before the commit, under the
//! pending mark ([`Change::BeginWrite`] reserves, [`Change::CommitDelete`]
//! commits), so no reader sees a delete that a crash or a failed journal could
//! take back, and a delete that returns an error was never visible. Only a
//! quarantine or remap can move the reserved record; the delete then journals its
//! record again on top of theirs. Once a record was handed to the journal, a
//! failure is [`Error::OutcomeUnknown`].

use super::write::Commit;
use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::journal::Entry;
use crate::record::{Change, ExtentId, Snapshot, State, Tag};

/// What one try at reserving an extent for a delete found.
#[derive(Debug)]
pub(super) enum Reserve {
    /// Reserved (pending) at this snapshot.
    Reserved(Snapshot),
    /// Another commit won the race (the table's conflict): try again.
    Conflict(Error),
    /// Refused: nothing changed.
    Refused(Error),
}

/// The steps of deleting one extent, shared by [`DeleteOp`] and the batch
/// (`BatchWriteOp`): reserve, propose, commit or release.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeleteItem {
    pub(super) id: ExtentId,
}

impl DeleteItem {
    /// One try at setting the pending mark on a record that can be deleted.
    pub(super) fn reserve(&self, core: &Core) -> Reserve {
        let before = match core.table.snapshot(self.id) {
            Ok(s) => s,
            Err(err) => return Reserve::Refused(err),
        };
        if before.write_pending() {
            return Reserve::Refused(Error::WriteInProgress { extent: self.id });
        }
        match before.state() {
            State::Vacant => return Reserve::Refused(Error::NotReadable { extent: self.id }),
            // A compaction ends here, as under a write's begin.
            State::Durable | State::Quarantined | State::Compacting => {}
        }
        match core
            .table
            .transition(self.id, before.version(), Change::BeginWrite)
        {
            Ok(reserved) => Reserve::Reserved(reserved),
            Err(err @ Error::VersionConflict { .. }) => Reserve::Conflict(err),
            Err(err) => Reserve::Refused(err),
        }
    }

    /// The vacant record committing the delete on top of `reserved` makes.
    ///
    /// # Errors
    ///
    /// The table's refusal (version exhausted).
    pub(super) fn propose(&self, reserved: &Snapshot) -> Result<Snapshot> {
        reserved.after(Change::CommitDelete)
    }

    /// Registers `record` as the proposal a checkpoint must hold; returns its
    /// journal entry.
    pub(super) fn proposal_entry(&self, core: &Core, record: &Snapshot) -> Entry {
        core.proposals.insert(record, Tag::EMPTY);
        Entry::propose(record, Tag::EMPTY)
    }

    /// Commits the delete whose record, proposed on top of `reserved`, is
    /// durable: drops the cached copy, retires the location, forgets the tag and
    /// reports [`Event::Deleted`].
    pub(super) fn commit_proposed(&self, core: &Core, reserved: Snapshot) -> Commit {
        match core
            .table
            .transition(self.id, reserved.version(), Change::CommitDelete)
        {
            Ok(deleted) => {
                // After the transition: see `Core::image`.
                core.proposals.remove(self.id);
                core.rescued.forget(self.id);
                // Entries of every generation up to the deleted one go.
                core.cache
                    .invalidate(self.id, reserved.generation().saturating_add(1));
                // After the transition, as a write drops the tag it replaced.
                let tag = core.tags.forget(self.id, reserved.generation());
                let old = (!core.mutants.delete_retires_early).then(|| reserved.location());
                core.report_then_retire(old, |seq| Event::Deleted {
                    seq,
                    record: deleted,
                    tag,
                });
                Commit::Done(deleted, None)
            }
            // A quarantine or remap committed since the proposal (only this delete
            // clears its mark): propose again on top of it.
            Err(Error::VersionConflict { current, .. }) if current.write_pending() => {
                Commit::Moved(current)
            }
            Err(err) => Commit::Failed(err),
        }
    }

    /// Forgets the proposal and clears the reservation's pending mark (bounded).
    /// The location stays referenced: the delete did not commit.
    pub(super) fn release(&self, core: &Core) {
        core.proposals.remove(self.id);
        core.clear_pending(self.id);
    }
}

/// A delete of one extent.
#[derive(Debug)]
pub(crate) struct DeleteOp {
    item: DeleteItem,
    /// Reserved (pending) at this snapshot, with this many records journaled;
    /// waiting for the last one to be durable.
    proposed: Option<(Snapshot, u32)>,
}

impl DeleteOp {
    pub(crate) fn new(id: ExtentId) -> Self {
        DeleteOp {
            item: DeleteItem { id },
            proposed: None,
        }
    }

    fn attempt(&mut self, core: &Core) -> Step<Snapshot> {
        // Bounded: MAX_ATTEMPTS lost races, then the last conflict (retryable).
        let mut last = Error::WriteInProgress {
            extent: self.item.id,
        };
        for _ in 0..MAX_ATTEMPTS {
            match self.item.reserve(core) {
                Reserve::Reserved(reserved) => return self.propose(core, reserved, 0),
                Reserve::Conflict(err) => last = err,
                Reserve::Refused(err) => return Step::Done(Err(err)),
            }
        }
        Step::Done(Err(last))
    }

    /// Journals the vacant record that committing the delete on top of `reserved`
    /// will make.
    fn propose(&mut self, core: &Core, reserved: Snapshot, proposals: u32) -> Step<Snapshot> {
        match self.item.propose(&reserved) {
            Ok(record) => {
                if core.mutants.delete_retires_early && proposals == 0 {
                    core.retire(reserved.location());
                }
                self.proposed = Some((reserved, proposals + 1));
                Step::Io(IoRequest::Journal(vec![
                    self.item.proposal_entry(core, &record),
                ]))
            }
            Err(err) if proposals == 0 => {
                self.item.release(core);
                Step::Done(Err(err))
            }
            Err(err) => self.unknown(core, err),
        }
    }

    /// A record of the delete reached the journal but the delete did not commit.
    fn unknown(&mut self, core: &Core, cause: Error) -> Step<Snapshot> {
        self.item.release(core);
        Step::Done(Err(Error::unknown("delete", self.item.id, cause)))
    }

    /// The proposed record is durable: commit.
    fn commit(&mut self, core: &Core, reserved: Snapshot, proposals: u32) -> Step<Snapshot> {
        match self.item.commit_proposed(core, reserved) {
            Commit::Done(deleted, _) => Step::Done(Ok(deleted)),
            Commit::Moved(current) if proposals < MAX_ATTEMPTS => {
                self.propose(core, current, proposals)
            }
            Commit::Moved(current) => self.unknown(
                core,
                Error::WriteInProgress {
                    extent: current.extent(),
                },
            ),
            Commit::Failed(err) => self.unknown(core, err),
        }
    }
}

impl Machine for DeleteOp {
    type Output = Snapshot;

    fn start(&mut self, core: &Core) -> Step<Snapshot> {
        self.attempt(core)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Snapshot> {
        match (self.proposed.take(), result) {
            (Some((reserved, proposals)), IoResult::Done(Ok(()))) => {
                self.commit(core, reserved, proposals)
            }
            (Some(_), IoResult::Done(Err(err @ Error::OutcomeUnknown { .. }))) => {
                self.unknown(core, err)
            }
            // The journal refused the append, but an earlier proposal is durable.
            (Some((_, proposals)), IoResult::Done(Err(err))) if proposals > 1 => {
                self.unknown(core, err)
            }
            // The journal refused the append, but a checkpoint's image read the
            // proposal first: it may be durable there.
            (Some(_), IoResult::Done(Err(err))) if core.proposals.withdraw(self.item.id) => {
                self.unknown(core, err)
            }
            // The journal refused the append: nothing was written.
            (Some(_), IoResult::Done(Err(err))) => {
                self.item.release(core);
                Step::Done(Err(err))
            }
            _ => Step::Done(Err(Error::Internal {
                what: "delete: event out of order",
            })),
        }
    }

    /// A driver that gives up while the record is reserved clears the mark; the
    /// location stays referenced (the delete did not commit).
    fn abandon(&mut self, core: &Core) {
        if self.proposed.take().is_some() {
            self.item.release(core);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Result;
    use crate::record::{Location, checksum};
    use crate::space::Placement;

    fn committed(core: &Core, id: ExtentId) -> (Snapshot, Location) {
        let location = core.allocator.allocate(100, Placement::Any).expect("space");
        let begin = core
            .table
            .transition(id, 0, Change::BeginWrite)
            .expect("a vacant record begins a write");
        let change = Change::CommitWrite {
            location,
            checksum: checksum(id, 1, b"x"),
        };
        (
            core.table
                .transition(id, begin.version(), change)
                .expect("the pending write commits"),
            location,
        )
    }

    fn run(core: &Core, id: ExtentId) -> Result<Snapshot> {
        let mut op = DeleteOp::new(id);
        let mut step = op.start(core);
        for _ in 0..=MAX_ATTEMPTS {
            step = match step {
                Step::Io(IoRequest::Journal(_)) => op.on_io(core, IoResult::Done(Ok(()))),
                Step::Done(r) => return r,
                other => panic!("unexpected step {other:?}"),
            };
        }
        panic!("delete did not finish")
    }

    #[test]
    fn delete_keeps_the_generation_and_frees_the_location_after_the_grace_period() {
        let core = Core::for_tests();
        let id = ExtentId(5);
        let (before, location) = committed(&core, id);
        let deleted = run(&core, id).unwrap();
        assert_eq!(deleted.state(), State::Vacant);
        assert_eq!(deleted.generation(), before.generation(), "generation kept");
        core.collect();
        let stats = core.allocator.stats(0).unwrap();
        assert_eq!(stats.live_bytes, 0, "{location} was freed");
        assert_eq!(
            stats.file_bytes, 0,
            "the freed tail moved the bump pointer down"
        );
    }

    /// Invariant: a deleted location is not reused while a reader that may still
    /// read it is pinned (the grace period).
    #[test]
    fn the_deleted_location_stays_allocated_while_a_reader_is_pinned() {
        let core = Core::for_tests();
        let id = ExtentId(9);
        let (_, location) = committed(&core, id);
        let reader = core.reclaimer.pin();
        run(&core, id).expect("deleted");
        core.collect();
        assert_eq!(core.allocator.stats(0).expect("device 0").live_bytes, 4096);
        assert_ne!(
            core.allocator.allocate(100, Placement::Any).expect("space"),
            location,
            "not handed out under the reader"
        );
        core.reclaimer.unpin(reader);
        core.collect();
        assert_eq!(
            core.allocator.stats(0).expect("device 0").live_bytes,
            4096,
            "only the new one"
        );
        assert_eq!(core.reclaimer.pending(), 0);
    }

    #[test]
    fn a_pending_write_refuses_the_delete_and_a_vacant_extent_is_not_found() {
        let core = Core::for_tests();
        let id = ExtentId(6);
        let (s, _) = committed(&core, id);
        core.table
            .transition(id, s.version(), Change::BeginWrite)
            .unwrap();
        assert_eq!(run(&core, id).unwrap_err().code(), "FPRE015");
        assert_eq!(run(&core, ExtentId(7)).unwrap_err().code(), "FPRE012");
    }

    /// A batch that deletes an extent being compacted ends the compaction as a
    /// write does: the compaction's commit conflicts, and the batch does not
    /// wait for the copy.
    #[test]
    fn a_batch_ends_a_compaction_of_an_extent_it_deletes() {
        use crate::protocol::{BatchItem, BatchWriteOp};
        let core = Core::for_tests();
        let (id, other) = (ExtentId(8), ExtentId(9));
        let (s, _) = committed(&core, id);
        let compacting = (core.table)
            .transition(id, s.version(), Change::BeginCompact)
            .unwrap();
        let mut op = BatchWriteOp::mixed(vec![
            BatchItem::Write(other, crate::Bytes::from(&b"x"[..]), Tag::EMPTY),
            BatchItem::Delete(id),
        ]);
        let mut step = op.start(&core);
        for _ in 0..4 {
            step = match step {
                Step::Io(IoRequest::Write(..) | IoRequest::Sync(_) | IoRequest::Journal(_)) => {
                    op.on_io(&core, IoResult::Done(Ok(())))
                }
                other => other,
            };
        }
        match step {
            Step::Done(Ok(records)) => {
                assert_eq!(records[0].generation(), 1);
                assert_eq!(records[1].state(), State::Vacant);
            }
            other => panic!("the batch did not finish: {other:?}"),
        }
        let target = Location::new(0, 1 << 20, 100);
        let late = (core.table).transition(
            id,
            compacting.version(),
            Change::CommitCompact { location: target },
        );
        assert!(
            matches!(late, Err(Error::VersionConflict { .. })),
            "the compaction was ended: {late:?}"
        );
    }

    /// A delete does not wait for a compaction of its extent: it ends it, and
    /// the compaction's commit then conflicts (so the compaction frees its
    /// target; `compact`'s own tests cover that side).
    #[test]
    fn a_delete_ends_a_compaction_in_progress() {
        let core = Core::for_tests();
        let id = ExtentId(8);
        let (s, location) = committed(&core, id);
        let compacting = core
            .table
            .transition(id, s.version(), Change::BeginCompact)
            .unwrap();
        let deleted = run(&core, id).expect("the delete commits at once");
        assert_eq!(deleted.state(), State::Vacant);
        assert_eq!(
            deleted.generation(),
            s.generation(),
            "the generation is kept"
        );
        let late = (core.table).transition(
            id,
            compacting.version(),
            Change::CommitCompact {
                location: Location::new(location.device, location.offset + 4096, 100),
            },
        );
        assert!(
            matches!(late, Err(Error::VersionConflict { .. })),
            "the compaction was ended: {late:?}"
        );
    }
}
