//! Delete: `Durable | Quarantined → Vacant` in one transition, retire the old
//! location, drop the cached copy.
//!
//! # Consistency
//!
//! The transition is the linearization point: a read whose snapshot precedes it
//! returns the old bytes (its location is retired through the reclaimer, so the
//! bytes stay in place until that reader unpins), a read whose snapshot follows it
//! returns [`Error::NotReadable`]. The generation is kept, so a later write still
//! bumps it past every cached or checksummed value; the cached entry of the deleted
//! generation is invalidated, and a fill of it in flight is rejected (the read's
//! re-validation refuses a `Vacant` record). A delete never ends a pending write: it
//! is refused with [`Error::WriteInProgress`]. A compaction in progress is waited
//! out (bounded backoff), since the transition table has no `Compacting → Vacant`.
//!
//! One I/O step: the delete's journal record; the old location is retired only
//! once it is durable (invariant 10), and only then does the delete return.

use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::error::Error;
use crate::events::Event;
use crate::journal::Entry;
use crate::record::{Change, ExtentId, Location, Snapshot, State};

/// First backoff while a compaction of the extent finishes, doubled per attempt:
/// at most `MAX_ATTEMPTS` waits, about 25 ms in all.
const COMPACTING_BACKOFF_US: u64 = 100;

/// A delete of one extent.
#[derive(Debug)]
pub(crate) struct DeleteOp {
    id: ExtentId,
    attempts: u32,
    /// Deleted in the table; waiting for the record to be durable before the old
    /// location is retired.
    journaling: Option<(Snapshot, Option<Location>)>,
}

impl DeleteOp {
    pub(crate) fn new(id: ExtentId) -> Self {
        DeleteOp {
            id,
            attempts: 0,
            journaling: None,
        }
    }

    fn attempt(&mut self, core: &Core) -> Step<Snapshot> {
        // Bounded: each pass is one attempt; MAX_ATTEMPTS in all, backoffs included.
        while self.attempts < MAX_ATTEMPTS {
            self.attempts += 1;
            let before = match core.table.snapshot(self.id) {
                Ok(s) => s,
                Err(err) => return Step::Done(Err(err)),
            };
            if before.write_pending() {
                return Step::Done(Err(Error::WriteInProgress { extent: self.id }));
            }
            match before.state() {
                State::Vacant => return Step::Done(Err(Error::NotReadable { extent: self.id })),
                State::Compacting => {
                    return Step::Backoff(COMPACTING_BACKOFF_US << (self.attempts - 1));
                }
                State::Durable | State::Quarantined => {}
            }
            match core
                .table
                .transition(self.id, before.version(), Change::Delete)
            {
                Ok(deleted) => {
                    // Entries of every generation up to the deleted one go.
                    core.cache
                        .invalidate(self.id, before.generation().saturating_add(1));
                    let old = core.retire_unless_early(Some(before.location()));
                    self.journaling = Some((deleted, old));
                    return Step::Io(IoRequest::Journal(vec![Entry::put(&deleted)]));
                }
                Err(Error::VersionConflict { .. }) => {}
                Err(err) => return Step::Done(Err(err)),
            }
        }
        Step::Done(Err(self.gave_up(core)))
    }

    /// The error after the attempts ran out: what the record shows now.
    fn gave_up(&self, core: &Core) -> Error {
        match core.table.snapshot(self.id) {
            Ok(now) if now.write_pending() => Error::WriteInProgress { extent: self.id },
            Ok(now) => Error::IllegalTransition {
                extent: self.id,
                from: now.state(),
                write_pending: false,
                change: crate::record::ChangeKind::Delete,
            },
            Err(err) => err,
        }
    }
}

impl Machine for DeleteOp {
    type Output = Snapshot;

    fn start(&mut self, core: &Core) -> Step<Snapshot> {
        self.attempt(core)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Snapshot> {
        match (self.journaling.take(), result) {
            (Some((deleted, old)), IoResult::Done(Ok(()))) => {
                if let Some(old) = old {
                    core.retire(old);
                }
                core.events.emit(|| Event::Deleted { record: deleted });
                Step::Done(Ok(deleted))
            }
            // Deleted in memory but not durable: not acknowledged; the old location
            // is not reclaimed (see `WriteOp`).
            (Some(_), IoResult::Done(Err(err))) => Step::Done(Err(err)),
            _ => Step::Done(Err(Error::Internal {
                what: "delete: event out of order",
            })),
        }
    }

    fn on_backoff(&mut self, core: &Core) -> Step<Snapshot> {
        self.attempt(core)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Result;
    use crate::cache::Cache;
    use crate::record::{Location, checksum};
    use crate::space::{Allocator, Health, Placement, Reclaimer};
    use crate::table::{ExtentTable, TableConfig};

    fn core() -> Core {
        Core {
            table: ExtentTable::new(TableConfig::default()),
            cache: Cache::new(1 << 20, 1),
            allocator: Allocator::new(1, 1 << 20, 4096),
            reclaimer: Reclaimer::new(),
            health: Health::new(1, 10, 1000),
            mutants: Default::default(),
            events: Default::default(),
        }
    }

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
                Step::Backoff(_) => op.on_backoff(core),
                Step::Io(IoRequest::Journal(_)) => op.on_io(core, IoResult::Done(Ok(()))),
                Step::Done(r) => return r,
                other => panic!("unexpected step {other:?}"),
            };
        }
        panic!("delete did not finish")
    }

    #[test]
    fn delete_keeps_the_generation_and_frees_the_location_after_the_grace_period() {
        let core = core();
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
        let core = core();
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
        let core = core();
        let id = ExtentId(6);
        let (s, _) = committed(&core, id);
        core.table
            .transition(id, s.version(), Change::BeginWrite)
            .unwrap();
        assert_eq!(run(&core, id).unwrap_err().code(), "FPRE015");
        assert_eq!(run(&core, ExtentId(7)).unwrap_err().code(), "FPRE012");
    }

    #[test]
    fn a_compaction_that_never_ends_makes_the_delete_give_up_typed() {
        let core = core();
        let id = ExtentId(8);
        let (s, _) = committed(&core, id);
        core.table
            .transition(id, s.version(), Change::BeginCompact)
            .unwrap();
        let err = run(&core, id).unwrap_err();
        assert!(
            matches!(
                err,
                Error::IllegalTransition {
                    from: State::Compacting,
                    ..
                }
            ),
            "{err}"
        );
    }
}
