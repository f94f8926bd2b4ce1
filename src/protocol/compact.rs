//! Compaction: move an extent's bytes to a fresh location without changing them.
//!
//! `Durable → Compacting` (reads keep using the old location, and the cache stays
//! valid: the content generation does not change), copy, read the copy back and
//! verify it, then commit the new location only if the record is still at the
//! version the begin returned; otherwise abort and free the target.
//!
//! # Consistency
//!
//! "`Compacting` at version v" names exactly one compaction: any other transition
//! (a write's begin, a quarantine) ends it. So the commit and the abort, both
//! compare-and-swap against v, can never end another compaction, and a write that
//! commits meanwhile always wins: the compaction's commit fails, it frees its target
//! and nothing is lost (invariant 6). The old location is retired through the
//! reclaimer, so readers still reading it finish first.

use super::{Core, IoRequest, IoResult, Machine, Step};
use crate::error::{Error, Result};
use crate::events::{Event, Relocation};
use crate::journal::Entry;
use crate::record::{Change, ExtentId, Location, Snapshot, State};
use crate::space::Pin;
use crate::space::Placement;

/// How a compaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactOutcome {
    /// The bytes moved; the record as committed.
    Committed(Snapshot),
    /// The record changed during the compaction (a write, quarantine or another
    /// transition won); the target was freed, nothing changed. From
    /// [`Store::pack`](crate::Store::pack) also: the extent had nowhere to go
    /// (one device, no hole below it), and trying again changes nothing until
    /// space does.
    Aborted,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle,
    Reading,
    /// The source read wrong where an inline write no device sync has covered
    /// lies: its bytes are being written again ([`IoRequest::RewriteHeld`]).
    Mending,
    Writing,
    Syncing,
    Verifying,
    /// The copy read back wrong: its location's bad mark is being journaled.
    MarkingBad,
    /// Committed in the table; waiting for the commit record to be durable before
    /// the old location is retired and the compaction reported.
    Journaling {
        committed: Snapshot,
        old: Option<Location>,
        /// The moved generation's tag, read before the commit (see `commit`).
        tag: crate::record::Tag,
    },
    Finished,
}

/// One compaction of one extent.
#[derive(Debug)]
pub(crate) struct CompactOp {
    id: ExtentId,
    /// The record as `BeginCompact` left it.
    begin: Option<Snapshot>,
    target: Option<Location>,
    pin: Option<Pin>,
    phase: Phase,
    /// A device the copy must not go to.
    exclude: Option<u16>,
    /// The error to report once a bad mark is durable.
    failed: Option<Error>,
    /// Place the copy in the lowest free space anywhere (shrinking files), rather
    /// than preferably off the source's device.
    packing: bool,
    /// The source's bytes were written again once ([`Phase::Mending`]).
    mended: bool,
}

impl CompactOp {
    pub(crate) fn new(id: ExtentId) -> Self {
        CompactOp {
            id,
            begin: None,
            target: None,
            pin: None,
            phase: Phase::Idle,
            exclude: None,
            failed: None,
            packing: false,
            mended: false,
        }
    }

    /// A compaction that places the copy in the lowest hole that fits on any
    /// healthy device, the source's included (holes before fresh space): moving a
    /// file's highest extents this way lets the file shrink.
    pub(crate) fn packing(id: ExtentId) -> Self {
        CompactOp {
            packing: true,
            ..CompactOp::new(id)
        }
    }

    /// A compaction that must not place the copy on `device` (draining it).
    pub(crate) fn draining(id: ExtentId, device: u16) -> Self {
        CompactOp {
            exclude: Some(device),
            ..CompactOp::new(id)
        }
    }

    fn unpin(&mut self, core: &Core) {
        if let Some(pin) = self.pin.take() {
            core.reclaimer.unpin(pin);
        }
    }

    /// The source read wrong (`err`). An inline write no device sync has
    /// covered may have lost its pages to a failed writeback before the store
    /// heard of it (see `VerifyOp`): its bytes are written again, once, and
    /// read again. Anything else is verification's business: the compaction
    /// ends, never copying bytes that do not verify.
    fn mend_or_abort(&mut self, core: &Core, source: Location, err: Error) -> Step<CompactOutcome> {
        if self.mended || !core.write_back.mends(source, &err) {
            return self.abort(core, Some(err));
        }
        self.mended = true;
        self.phase = Phase::Mending;
        Step::Io(IoRequest::RewriteHeld(source))
    }

    /// Ends the compaction without moving anything: `AbortCompact` if it is still
    /// ours, and the target freed (no record ever referenced it).
    fn abort(&mut self, core: &Core, error: Option<Error>) -> Step<CompactOutcome> {
        self.unpin(core);
        self.phase = Phase::Finished;
        if let Some(begin) = self.begin {
            // A conflict means someone else already ended this compaction.
            let _ = core
                .table
                .transition(self.id, begin.version(), Change::AbortCompact);
        }
        if let Some(target) = self.target.take() {
            core.allocator.free(target);
        }
        match error {
            Some(err) => Step::Done(Err(err)),
            None => Step::Done(Ok(CompactOutcome::Aborted)),
        }
    }

    /// Whether the extent was picked from an earlier reading of the records
    /// (a pack's plan, a drain's pass): a delete or quarantine since then is
    /// a lost race, not a request to compact what cannot be compacted.
    fn planned(&self) -> bool {
        self.exclude.is_some() || self.packing
    }

    fn begin(&mut self, core: &Core) -> Result<Snapshot> {
        let snapshot = core.table.snapshot(self.id)?;
        let begin = core
            .table
            .transition(self.id, snapshot.version(), Change::BeginCompact)?;
        Ok(begin)
    }

    fn commit(&mut self, core: &Core) -> Step<CompactOutcome> {
        let (Some(begin), Some(target)) = (self.begin, self.target) else {
            return self.abort(
                core,
                Some(Error::Internal {
                    what: "compact: event out of order",
                }),
            );
        };
        // Read while the record is still this compaction's: a write that
        // commits after the move may forget the moved generation's tag
        // before the move's event is built, and one that commits before it
        // makes the move conflict.
        let tag = core.tag_of(&begin);
        match core.table.transition(
            self.id,
            begin.version(),
            Change::CommitCompact { location: target },
        ) {
            Ok(committed) => {
                self.target = None;
                let old = core.retire_unless_early(Some(begin.location()));
                self.phase = Phase::Journaling {
                    committed,
                    old,
                    tag,
                };
                let journaled = match core.mutants.relocation_drops_tag {
                    true => crate::record::Tag::EMPTY,
                    false => tag,
                };
                Step::Io(IoRequest::Journal(vec![Entry::put(&committed, journaled)]))
            }
            Err(Error::VersionConflict { .. }) => {
                self.begin = None; // already ended by the winner
                self.abort(core, None)
            }
            Err(err) => self.abort(core, Some(err)),
        }
    }
}

impl Machine for CompactOp {
    type Output = CompactOutcome;

    fn start(&mut self, core: &Core) -> Step<CompactOutcome> {
        // Pin before the snapshot whose location we copy from.
        self.pin = Some(core.reclaimer.pin());
        let begin = match self.begin(core) {
            Ok(b) => b,
            Err(err) => {
                self.phase = Phase::Finished;
                self.unpin(core);
                return match err {
                    // Another transition got there first, or the record is busy (a
                    // compaction or a write in progress): a race, not a fault.
                    Error::VersionConflict { .. } => Step::Done(Ok(CompactOutcome::Aborted)),
                    Error::IllegalTransition {
                        from,
                        write_pending,
                        ..
                    } if write_pending
                        || from == State::Compacting
                        || (self.planned()
                            && matches!(from, State::Vacant | State::Quarantined)) =>
                    {
                        Step::Done(Ok(CompactOutcome::Aborted))
                    }
                    err => Step::Done(Err(err)),
                };
            }
        };
        self.begin = Some(begin);
        let placement = match (self.exclude, self.packing) {
            (Some(device), _) => Placement::Exclude(device),
            (None, true) => Placement::PackBelow(begin.location()),
            (None, false) => Placement::Prefer(begin.location().device),
        };
        match core.allocate(begin.location().length, placement) {
            Ok(target) => self.target = Some(target),
            // No hole below it on its own device: a move would not shrink the
            // file, so the extent stays where it is.
            Err(Error::NoSpace { .. }) if self.packing => return self.abort(core, None),
            Err(err) => return self.abort(core, Some(err)),
        }
        self.phase = Phase::Reading;
        Step::Io(IoRequest::Read(begin.location()))
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<CompactOutcome> {
        match (self.phase, &result) {
            (
                Phase::Journaling {
                    committed,
                    old,
                    tag,
                },
                IoResult::Done(Ok(())),
            ) => {
                self.phase = Phase::Finished;
                if let Some(begin) = self.begin {
                    let cause = match (self.exclude, self.packing) {
                        (Some(_), _) => Relocation::Drain,
                        (None, true) => Relocation::Pack,
                        (None, false) => Relocation::Compaction,
                    };
                    core.report_then_retire(old, |seq| Event::Relocated {
                        seq,
                        record: committed,
                        tag,
                        from: begin.location(),
                        cause,
                    });
                } else if let Some(old) = old {
                    core.retire(old);
                }
                return Step::Done(Ok(CompactOutcome::Committed(committed)));
            }
            // Committed in memory but not durable: not acknowledged, the old location
            // is not reclaimed (see `WriteOp`).
            (Phase::Journaling { .. }, IoResult::Done(Err(err))) => {
                self.phase = Phase::Finished;
                return Step::Done(Err(err.clone()));
            }
            // The journal could not take the bad mark: its error (a reopen is
            // needed) rather than the copy's, which a retry would meet again.
            (Phase::MarkingBad, IoResult::Done(Err(err))) if err.is_journal_refusal() => {
                self.failed = None;
                let err = err.clone();
                return self.abort(core, Some(err));
            }
            (Phase::MarkingBad, _) => {
                let err = self.failed.take();
                return self.abort(core, err);
            }
            _ => {}
        }
        let (Some(begin), Some(target)) = (self.begin, self.target) else {
            return self.abort(
                core,
                Some(Error::Internal {
                    what: "compact: event out of order",
                }),
            );
        };
        match (self.phase, result) {
            (Phase::Reading, IoResult::Read(Ok(bytes))) => {
                self.unpin(core);
                if let Err(err) = begin.check(&bytes) {
                    return self.mend_or_abort(core, begin.location(), err);
                }
                self.phase = Phase::Writing;
                Step::Io(IoRequest::Write(target, bytes))
            }
            (Phase::Reading, IoResult::Read(Err(err))) => {
                self.unpin(core);
                self.mend_or_abort(core, begin.location(), err)
            }
            // Read the source again, pinned, if the record is still this
            // compaction's; else another transition ended it (a race).
            (Phase::Mending, _) => {
                self.pin = Some(core.reclaimer.pin());
                let ours = (core.table.snapshot(self.id))
                    .is_ok_and(|now| now.version() == begin.version());
                if !ours {
                    return self.abort(core, None);
                }
                self.phase = Phase::Reading;
                Step::Io(IoRequest::Read(begin.location()))
            }
            (Phase::Writing, IoResult::Done(Ok(()))) => {
                self.phase = Phase::Syncing;
                Step::Io(IoRequest::Sync(target.device))
            }
            (Phase::Syncing, IoResult::Done(Ok(()))) => {
                self.phase = Phase::Verifying;
                Step::Io(IoRequest::Read(target))
            }
            (Phase::Verifying, IoResult::Read(Ok(bytes))) => match begin.check(&bytes) {
                Ok(()) => self.commit(core),
                Err(mut err) => {
                    // The copy reads back wrong: that location is bad, never reused,
                    // and the mark is journaled so a restart keeps it.
                    core.mark_bad(target);
                    if let Error::ChecksumMismatch { location, .. } = &mut err {
                        *location = target;
                    }
                    self.failed = Some(err);
                    self.phase = Phase::MarkingBad;
                    Step::Io(IoRequest::Journal(vec![Entry::Bad(target)]))
                }
            },
            // The copy's location failed a write or its read-back: never
            // handed out again (the allocator's first fit would pick it next),
            // its mark journaled so a restart keeps it, as for a copy that
            // reads back wrong. A failed sync is the device's (degraded), not
            // the location's.
            (
                Phase::Writing | Phase::Verifying,
                IoResult::Read(Err(err)) | IoResult::Done(Err(err)),
            ) if super::location_failed(&err) => {
                core.mark_bad(target);
                self.failed = Some(err);
                self.phase = Phase::MarkingBad;
                Step::Io(IoRequest::Journal(vec![Entry::Bad(target)]))
            }
            (_, IoResult::Read(Err(err)) | IoResult::Done(Err(err))) => self.abort(core, Some(err)),
            _ => self.abort(
                core,
                Some(Error::Internal {
                    what: "compact: event out of order",
                }),
            ),
        }
    }

    fn abandon(&mut self, core: &Core) {
        if !matches!(self.phase, Phase::Finished) {
            let _ = self.abort(core, None);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::test_support::{commit, value};
    use crate::record::Tag;

    /// A copy that reads back wrong marks its target bad; a journal that
    /// refuses the mark (it failed) is what the compaction answers, not the
    /// copy's checksum mismatch, which says "retry".
    #[test]
    fn a_bad_mark_the_journal_refuses_answers_with_the_journals_error() {
        let core = Core::for_tests();
        let id = ExtentId(7);
        commit(&core, id, 1, Tag::EMPTY);
        let mut op = CompactOp::new(id);
        let mut step = op.start(&core);
        let mut reads = 0;
        // Bounded: read, write, sync, read back, then the mark.
        for _ in 0..5 {
            step = match step {
                Step::Io(IoRequest::Read(l)) => {
                    reads += 1;
                    // The copy, read back, holds other bytes.
                    let bytes = match reads {
                        1 => value(id, 1),
                        _ => crate::bytes::Bytes::from(vec![0xEE_u8; l.length as usize]),
                    };
                    op.on_io(&core, IoResult::Read(Ok(bytes)))
                }
                Step::Io(IoRequest::Write(..) | IoRequest::Sync(_)) => {
                    op.on_io(&core, IoResult::Done(Ok(())))
                }
                Step::Io(IoRequest::Journal(entries)) => {
                    assert!(matches!(&entries[..], [Entry::Bad(_)]), "{entries:?}");
                    let refused = Error::JournalFailed {
                        cause: "EIO".into(),
                    };
                    op.on_io(&core, IoResult::Done(Err(refused)))
                }
                done @ Step::Done(_) => done,
                other => panic!("unexpected {other:?}"),
            };
        }
        match step {
            Step::Done(Err(err)) => assert_eq!(err.code(), "FPRE036", "{err}"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(core.table.snapshot(id).unwrap().state(), State::Durable);
    }

    /// A move's event carries the moved generation's tag even when a write
    /// of the extent commits (and forgets that tag) while the move is
    /// journaled: a follower that applies the event before the write's
    /// still holds the right key.
    #[test]
    fn a_move_reports_the_tag_of_its_generation_across_a_write() {
        let core = Core::for_tests();
        let id = ExtentId(6);
        let tag = |g: u64| Tag::new(format!("6@{g}").as_bytes()).expect("short");
        commit(&core, id, 1, tag(1));
        let mut op = CompactOp::new(id);
        let mut step = op.start(&core);
        // Bounded: read, write, sync, read back, then the journal.
        for _ in 0..4 {
            step = match step {
                Step::Io(IoRequest::Read(_)) => op.on_io(&core, IoResult::Read(Ok(value(id, 1)))),
                Step::Io(IoRequest::Write(..) | IoRequest::Sync(_)) => {
                    op.on_io(&core, IoResult::Done(Ok(())))
                }
                other => panic!("unexpected {other:?}"),
            };
        }
        match step {
            Step::Io(IoRequest::Journal(entries)) => {
                assert!(matches!(&entries[..], [Entry::Put(r)] if r.tag == tag(1)));
            }
            other => panic!("expected the move's journal entry, got {other:?}"),
        }
        commit(&core, id, 2, tag(2));
        assert!(matches!(
            op.on_io(&core, IoResult::Done(Ok(()))),
            Step::Done(Ok(CompactOutcome::Committed(_)))
        ));
        let events = core.events.changes.since(0).expect("retained");
        let reported = (events.iter()).find_map(|e| match e {
            Event::Relocated { record, tag, .. } => Some((record.generation(), *tag)),
            _ => None,
        });
        assert_eq!(reported, Some((1, tag(1))));
    }
}
