//! Write: reserve a fresh location, mark pending, write, wait for the
//! acknowledgment (a small write on a durable store skips it: its journal record
//! carries the bytes), journal the record the commit will make, and once that record
//! is durable commit location + checksum + generation in one transition, retire
//! the old location and acknowledge (invariants 9, 10 and 14).
//!
//! # Consistency
//!
//! Until the commit, the record keeps its committed location, generation and
//! checksum: readers never see the pending bytes (invariant 5). The commit is one
//! transition, so a reader sees either the old triple or the new one. The old
//! location is retired through the reclaimer, so a reader still reading it finishes
//! first. A write that fails before the commit aborts (clears the pending mark) and
//! frees its fresh location, which no record or reader ever referenced.
//!
//! # Durable before visible
//!
//! The commit record is journaled *before* the transition: a reader never sees a
//! generation that a crash or a failed journal could take back, and a write that
//! returns an error was never visible. The pending mark keeps every other write,
//! delete and compaction off the record meanwhile, so the transition commits
//! exactly the record journaled; only a quarantine or remap can move it, and the
//! write then journals its record again on top (bounded by [`MAX_ATTEMPTS`]).
//! Once a record of the write was handed to the journal, a failure leaves its
//! outcome unknown ([`Error::OutcomeUnknown`]): not visible in this open store,
//! its fresh location never reused in this run, wholly there or wholly absent
//! after a reopen. A failure before that certainly did not write.

use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::journal::Entry;
use crate::record::{Change, ExtentId, Location, Snapshot, State, Tag, checksum};
use crate::space::Placement;

/// A write of one extent's bytes.
#[derive(Debug)]
pub(crate) struct WriteOp {
    id: ExtentId,
    bytes: Bytes,
    /// The engine's tag of the generation this write makes.
    tag: Tag,
    phase: Phase,
    /// Whether the bytes travel in the journal record instead of being synced
    /// (decided once the data is written; see [`inline`](Self::inline)).
    inline: bool,
    /// Whether the first record was journaled while the data's sync ran (see
    /// [`overlaps`](Self::overlaps)).
    overlapped: bool,
    /// The bytes' identity-bound checksum and its generation, computed once:
    /// the proposal and the commit both need it, and it reads every byte.
    checksum: std::cell::Cell<Option<(u64, u32)>>,
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
    /// The data's sync and the journal append of its record ([`Entry::Unsynced`],
    /// on top of `expected`) are both in flight.
    Overlapped {
        expected: Snapshot,
        location: Location,
    },
    /// The record the commit will make is on its way to the journal; the table
    /// still shows `expected` (pending). `proposals` counts the records journaled.
    Proposed {
        expected: Snapshot,
        location: Location,
        proposals: u32,
    },
    /// The `commit_before_journal` mutant: committed in the table already, waiting
    /// for the record to be durable.
    CommittedEarly {
        committed: Snapshot,
        old: Option<Location>,
    },
    Finished,
}

/// What committing a proposed write found.
#[derive(Debug)]
pub(super) enum Commit {
    /// Committed: the record, and the location it unreferenced (to retire).
    Done(Snapshot, Option<Location>),
    /// A quarantine or remap committed since the proposal: propose again on top of
    /// this record.
    Moved(Snapshot),
    /// The transition failed otherwise.
    Failed(Error),
}

impl WriteOp {
    pub(crate) fn new(id: ExtentId, bytes: Bytes, tag: Tag) -> Self {
        WriteOp {
            id,
            bytes,
            tag,
            phase: Phase::Idle,
            inline: false,
            overlapped: false,
            checksum: std::cell::Cell::new(None),
        }
    }

    /// The extent this write stores.
    pub(super) fn id(&self) -> ExtentId {
        self.id
    }

    /// The bytes this write stores.
    pub(super) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The tag of the generation this write makes.
    pub(super) fn tag(&self) -> Tag {
        self.tag
    }

    /// As [`proposal_entry`](Self::proposal_entry) for a write in a batch,
    /// whose proposals the batch registers together
    /// ([`Proposals::insert_all`](super::Proposals::insert_all)): sets the
    /// tag only.
    pub(super) fn batch_entry(&self, core: &Core, record: &Snapshot) -> Entry {
        core.tags.set(self.id, record.generation(), self.tag);
        Entry::propose(record, self.tag)
    }

    /// Registers `record`, which this write proposes, before its journal entry
    /// is handed over: its tag at the generation it makes (before the commit,
    /// see `table::Tags`) and the proposal a checkpoint must hold. Returns the
    /// entry, carrying the bytes if `inline`.
    pub(super) fn proposal_entry(&self, core: &Core, record: &Snapshot, inline: bool) -> Entry {
        core.tags.set(self.id, record.generation(), self.tag);
        // An inline write's bytes are held for write-back before its proposal
        // is published: a checkpoint whose image reads the proposal then also
        // finds the bytes to sync (or write) at their location.
        if inline {
            core.write_back
                .insert(record.location(), (self.id, record.version()), &self.bytes);
        }
        core.proposals.insert(record, self.tag);
        match inline {
            // Every proposal of an inline write carries the bytes: recovery
            // writes them back only for the record that won.
            true => Entry::inline(record, self.tag, self.bytes.clone()),
            // Only the first proposal of an overlapped write runs beside its
            // data's sync: a later one (after a quarantine or remap) follows it.
            false if matches!(self.phase, Phase::Overlapped { .. }) => {
                Entry::unsynced(record, self.tag)
            }
            false => Entry::propose(record, self.tag),
        }
    }

    pub(super) fn begin(&self, core: &Core) -> Result<(Snapshot, Location)> {
        core.check_space()?;
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

    /// Whether this write's bytes, written at `location`, travel in its journal
    /// record instead of being synced there. Not on a degraded device: one whose
    /// sync failed refuses writes until a reopen (their sync fails, FPRE009), as
    /// its unsynced bytes can reach it only through the reopen's write-back. Never
    /// under the mutants that commit before journaling: they journal a bare
    /// record.
    fn inline(&self, core: &Core, location: Location) -> bool {
        core.inline_write_max > 0
            && self.bytes.len() <= core.inline_write_max as usize
            && !core.allocator.is_degraded(location.device)
            && !core.mutants.commit_before_journal
            && !core.mutants.retire_before_journal
    }

    /// Whether this write's record, for bytes written at `location`, goes to the journal
    /// while their sync runs, so that the write costs about one sync rather than two (see
    /// "Overlapped data syncs" in `journal`). Not on a degraded device, whose sync fails
    /// (the write then fails cleanly rather than with an unknown outcome); never under
    /// the mutants that commit before journaling; never inline. The emulator asks it too.
    pub(crate) fn overlaps(&self, core: &Core, location: Location) -> bool {
        !self.inline(core, location)
            && core.overlap_data_sync
            && !core.allocator.is_degraded(location.device)
            && !core.mutants.commit_before_journal
            && !core.mutants.retire_before_journal
    }

    /// Journals the record committing the write on top of `begin` while the
    /// data's sync runs, or ends the write if the table refuses it.
    fn overlap(&mut self, core: &Core, begin: Snapshot, location: Location) -> Step<Snapshot> {
        match self.propose(&begin, location) {
            Ok(record) => {
                self.overlapped = true;
                self.phase = Phase::Overlapped {
                    expected: begin,
                    location,
                };
                core.overlaps.begin(location.device);
                let entry = self.proposal_entry(core, &record, false);
                Step::Io(IoRequest::SyncAndJournal(location.device, vec![entry]))
            }
            // Nothing was journaled: the write certainly did not happen.
            Err(err) => {
                self.phase = Phase::Finished;
                self.abort(core, location);
                Step::Done(Err(err))
            }
        }
    }

    /// The transition that commits this write's bytes at `location` on top of
    /// `expected`.
    fn change(&self, expected: &Snapshot, location: Location) -> Change {
        let generation = expected.generation() + 1;
        let checksum = match self.checksum.get() {
            Some((g, sum)) if g == generation => sum,
            _ => checksum(self.id, generation, &self.bytes),
        };
        self.checksum.set(Some((generation, checksum)));
        Change::CommitWrite { location, checksum }
    }

    /// The record committing the write on top of `expected` will make: what is
    /// journaled before the transition.
    ///
    /// # Errors
    ///
    /// The table's refusal (generation or version exhausted): the write certainly
    /// does not happen.
    pub(super) fn propose(&self, expected: &Snapshot, location: Location) -> Result<Snapshot> {
        expected.after(self.change(expected, location))
    }

    /// Commits the write whose record, proposed on top of `expected`, is durable.
    pub(super) fn commit_proposed(
        &self,
        core: &Core,
        expected: Snapshot,
        location: Location,
    ) -> Commit {
        let change = self.change(&expected, location);
        match core.table.transition(self.id, expected.version(), change) {
            Ok(committed) => {
                // After the transition: see `Core::image` and `table::Tags`.
                core.proposals.remove(self.id);
                core.tags.forget(self.id, expected.generation());
                core.rescued.forget(self.id);
                core.cache.invalidate(self.id, committed.generation());
                let old = (expected.state() != State::Vacant).then(|| expected.location());
                Commit::Done(committed, old)
            }
            // Only this write clears its own mark, so a conflict that still shows
            // it pending is an unrelated commit (a quarantine or remap).
            Err(Error::VersionConflict { current, .. }) if current.write_pending() => {
                Commit::Moved(current)
            }
            Err(err) => Commit::Failed(err),
        }
    }

    /// Commits the acknowledged write at once, before its record is journaled
    /// (the `commit_before_journal` mutant, and `retire_before_journal`, which
    /// also retires the old location at this commit): returns the committed record
    /// and the location it unreferenced.
    fn commit_early(
        &self,
        core: &Core,
        begin: Snapshot,
        location: Location,
    ) -> Result<(Snapshot, Option<Location>)> {
        let mut expected = begin;
        core.tags.set(self.id, begin.generation() + 1, self.tag);
        for _ in 0..MAX_ATTEMPTS {
            match self.commit_proposed(core, expected, location) {
                Commit::Done(committed, old) => return Ok((committed, old)),
                Commit::Moved(current) => expected = current,
                Commit::Failed(err) => {
                    self.abort(core, location);
                    return Err(err);
                }
            }
        }
        self.abort(core, location);
        Err(Error::WriteInProgress { extent: self.id })
    }

    /// Journals the record committing the write on top of `expected`, or ends the
    /// write if the table refuses it.
    fn journal_proposal(
        &mut self,
        core: &Core,
        expected: Snapshot,
        location: Location,
        proposals: u32,
    ) -> Step<Snapshot> {
        match self.propose(&expected, location) {
            Ok(record) => {
                self.phase = Phase::Proposed {
                    expected,
                    location,
                    proposals: proposals + 1,
                };
                let entry = self.proposal_entry(core, &record, self.inline);
                Step::Io(IoRequest::Journal(vec![entry]))
            }
            // Nothing was journaled: the write certainly did not happen.
            Err(err) if proposals == 0 => {
                self.phase = Phase::Finished;
                self.abort(core, location);
                Step::Done(Err(err))
            }
            Err(err) => self.unknown(core, err),
        }
    }

    /// A record of the write reached the journal but the write did not commit:
    /// clear the pending mark, keep the fresh location out of the allocator (the
    /// record may name it after a reopen), report the outcome as unknown.
    fn unknown(&mut self, core: &Core, cause: Error) -> Step<Snapshot> {
        self.phase = Phase::Finished;
        core.proposals.remove(self.id);
        self.clear_pending(core);
        Step::Done(Err(Error::unknown("write", self.id, cause)))
    }

    /// Clears the pending mark (bounded retries; a snapshot that meets a publish in
    /// progress is retried too) and frees the unused location.
    pub(super) fn abort(&self, core: &Core, location: Location) {
        self.clear_pending(core);
        core.free(location);
    }

    /// Drops the tag this write proposed (`Tags::forget_proposed`), then
    /// clears the pending mark, bounded as [`abort`](Self::abort).
    pub(super) fn clear_pending(&self, core: &Core) {
        if !self.tag.is_empty() {
            core.tags.forget_proposed(&core.table, self.id);
        }
        core.clear_pending(self.id);
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
        if let Phase::Overlapped { expected, location } = self.phase {
            return self.overlap_done(core, expected, location, result);
        }
        let outcome = match result {
            IoResult::Done(r) => r,
            IoResult::Read(_) | IoResult::Both { .. } => Err(Error::Internal {
                what: "write: answered with another request's result",
            }),
        };
        self.step(core, outcome)
    }

    /// A driver that gives up mid-write (a panicking backend) clears the pending
    /// mark and frees the fresh location: otherwise every later write of the extent
    /// would be refused.
    fn abandon(&mut self, core: &Core) {
        match self.phase {
            Phase::Writing { location, .. } | Phase::Syncing { location, .. } => {
                self.phase = Phase::Finished;
                self.abort(core, location);
            }
            // Its record may be in the journal: the location stays out of use (an
            // overlapped write's device counts as failed: its sync may not have run).
            Phase::Proposed { .. } | Phase::Overlapped { .. } => {
                if let Phase::Overlapped { location, .. } = self.phase {
                    core.overlaps.end(location.device, false);
                }
                self.phase = Phase::Finished;
                core.proposals.remove(self.id);
                self.clear_pending(core);
            }
            _ => {}
        }
    }
}

impl WriteOp {
    /// The data's sync and the journal append of an overlapped write both
    /// finished.
    fn overlap_done(
        &mut self,
        core: &Core,
        expected: Snapshot,
        location: Location,
        result: IoResult,
    ) -> Step<Snapshot> {
        let synced = matches!(result, IoResult::Both { sync: Ok(()), .. });
        self.phase = Phase::Proposed {
            expected,
            location,
            proposals: 1,
        };
        let step = match result {
            // The record may be durable and its data not: after a reopen the
            // write is there only if its data verifies.
            IoResult::Both {
                sync: Err(err),
                journal: Ok(()),
            } => self.unknown(core, err),
            // As for a plain proposal: the commit, or the journal's failure
            // (unknown if it wrote the record, certain if it refused it).
            IoResult::Both { journal, .. } => self.step(core, journal),
            // A driver that failed the pair as a whole (a panicking backend)
            // cannot say whether the record was appended.
            IoResult::Done(Err(err)) => self.unknown(core, err),
            IoResult::Done(Ok(())) | IoResult::Read(_) => self.unknown(
                core,
                Error::Internal {
                    what: "write: an overlapped sync answered with another request's result",
                },
            ),
        };
        // After the commit and its marker: `close` waits for none in between.
        core.overlaps.end(location.device, synced);
        step
    }

    /// The write's next step after the I/O it asked for finished with `outcome`.
    fn step(&mut self, core: &Core, outcome: Result<()>) -> Step<Snapshot> {
        match (self.phase, outcome) {
            // One sync: the journal record carries the bytes (see `journal`'s
            // "Inline writes").
            (Phase::Writing { begin, location }, Ok(())) if self.inline(core, location) => {
                self.inline = true;
                self.journal_proposal(core, begin, location, 0)
            }
            // About one sync: the record goes to the journal while the data's
            // sync runs.
            (Phase::Writing { begin, location }, Ok(())) if self.overlaps(core, location) => {
                self.overlap(core, begin, location)
            }
            (Phase::Writing { begin, location }, Ok(())) => {
                self.phase = Phase::Syncing { begin, location };
                Step::Io(IoRequest::Sync(location.device))
            }
            (Phase::Syncing { begin, location }, Ok(()))
                if core.mutants.commit_before_journal || core.mutants.retire_before_journal =>
            {
                match self.commit_early(core, begin, location) {
                    Ok((committed, old)) => {
                        let old = core.retire_unless_early(old);
                        self.phase = Phase::CommittedEarly { committed, old };
                        Step::Io(IoRequest::Journal(vec![Entry::put(&committed, self.tag)]))
                    }
                    Err(err) => {
                        self.phase = Phase::Finished;
                        Step::Done(Err(err))
                    }
                }
            }
            (Phase::Syncing { begin, location }, Ok(())) => {
                self.journal_proposal(core, begin, location, 0)
            }
            (
                Phase::Proposed {
                    expected,
                    location,
                    proposals,
                },
                Ok(()),
            ) => match self.commit_proposed(core, expected, location) {
                Commit::Done(committed, old) => {
                    self.phase = Phase::Finished;
                    // Its data is durable: recovery need not read it (and must
                    // not take a later fault of it for a torn write).
                    let (marker, version) =
                        (self.overlapped && proposals == 1, committed.version());
                    let old = core.overlaps.synced(marker, self.id, version, old);
                    let tag = self.tag;
                    core.report_then_retire(old, |seq| Event::Written {
                        seq,
                        record: committed,
                        tag,
                    });
                    Step::Done(Ok(committed))
                }
                Commit::Moved(current) if proposals < MAX_ATTEMPTS => {
                    self.journal_proposal(core, current, location, proposals)
                }
                Commit::Moved(current) => self.unknown(
                    core,
                    Error::WriteInProgress {
                        extent: current.extent(),
                    },
                ),
                Commit::Failed(err) => self.unknown(core, err),
            },
            // Handed to the journal, then the journal failed: the record may or may
            // not be durable.
            (Phase::Proposed { .. }, Err(err @ Error::OutcomeUnknown { .. })) => {
                self.unknown(core, err)
            }
            // Any other journal error: it refused the append, so this proposal was
            // not written; an earlier one was (it is durable), so then the outcome
            // is unknown all the same.
            (Phase::Proposed { proposals, .. }, Err(err)) if proposals > 1 => {
                self.unknown(core, err)
            }
            // Refused, but a checkpoint's image read the proposal first: it
            // may be durable there.
            (Phase::Proposed { .. }, Err(err))
                if core.proposals.withdraw(self.id) && !core.mutants.certain_after_image =>
            {
                self.unknown(core, err)
            }
            (Phase::Proposed { location, .. }, Err(err)) => {
                self.phase = Phase::Finished;
                self.abort(core, location);
                Step::Done(Err(err))
            }
            (Phase::CommittedEarly { committed, old }, Ok(())) => {
                self.phase = Phase::Finished;
                let tag = self.tag;
                core.report_then_retire(old, |seq| Event::Written {
                    seq,
                    record: committed,
                    tag,
                });
                Step::Done(Ok(committed))
            }
            // The mutant: committed in memory but not durable.
            (Phase::CommittedEarly { .. }, Err(err)) => {
                self.phase = Phase::Finished;
                Step::Done(Err(err))
            }
            (Phase::Writing { location, .. } | Phase::Syncing { location, .. }, Err(err)) => {
                // A location whose write failed is bad: freed, first fit would
                // hand it to the next write. A failed sync is the device's.
                if matches!(self.phase, Phase::Writing { .. }) && super::location_failed(&err) {
                    core.mark_bad_later(location);
                }
                self.phase = Phase::Finished;
                self.abort(core, location);
                Step::Done(Err(err))
            }
            (Phase::Idle | Phase::Finished | Phase::Overlapped { .. }, _) => {
                debug_assert!(false, "on_io in phase {:?}", self.phase);
                Step::Done(Err(Error::Internal {
                    what: "write: event out of order",
                }))
            }
        }
    }
}
