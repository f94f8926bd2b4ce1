//! A batch of writes that shares its syncs: every data write, then one sync per
//! device touched, then one journal record group holding every commit's record
//! (one journal sync on a durable store), then every commit, then the old
//! locations are retired.
//!
//! # Consistency
//!
//! Each write of the batch keeps the guarantees of a single write (readers see the
//! old bytes or the new ones, never a mix; nothing is visible before its record is
//! durable, nothing is retired before then either; see `write`).
//!
//! **Durable all or nothing.** Every record of the batch goes to the journal in
//! one append behind [`Entry::BatchBegin`], and recovery applies all of them or
//! none: a crash before the call returns keeps the whole batch or none of it. A
//! write the table refuses before anything is journaled fails the whole batch.
//! One exception: a write whose record a quarantine or remap of its extent
//! overtook is journaled again in a later round, and becomes durable with that
//! round. **Readers may see part of it**: the writes commit in the table one
//! after another once their records are durable, so a concurrent reader may find
//! some of the batch's extents new and others still old. When the call returns
//! `Ok`, every write is durable and visible.
//!
//! Bounds: `items` writes; a write whose record a quarantine or remap overtook is
//! proposed again in the next round, at most [`MAX_ATTEMPTS`] rounds, so at most
//! `items + devices + MAX_ATTEMPTS` I/O steps.

use super::delete::{DeleteItem, Reserve};
use super::write::{Commit, WriteOp};
use super::{Core, IoRequest, IoResult, MAX_ATTEMPTS, Machine, Step};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::events::Event;
use crate::journal::Entry;
use crate::record::{ExtentId, Location, Snapshot, Tag};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Writing item `i`'s bytes.
    Writing(usize),
    /// Syncing the `i`-th device touched.
    Syncing(usize),
    /// Waiting for round `n`'s proposed records to be durable.
    Journaling(u32),
    Finished,
}

/// One change of a batch, as a caller names it. Cloned to try the batch again
/// after it waited for a write of one of its extents (the bytes are shared).
#[derive(Debug, Clone)]
pub(crate) enum BatchItem {
    /// Write these bytes, with this tag.
    Write(ExtentId, Bytes, Tag),
    /// Delete the extent.
    Delete(ExtentId),
}

/// One change of a batch, as the machine runs it.
#[derive(Debug)]
enum Op {
    Write(WriteOp),
    Delete(DeleteItem),
}

impl Op {
    fn id(&self) -> ExtentId {
        match self {
            Op::Write(w) => w.id(),
            Op::Delete(d) => d.id,
        }
    }

    /// Ends a begun change that will not commit and has no journaled record:
    /// a write's fresh location is freed, a delete's record stays as it was.
    fn abort(&self, core: &Core, location: Location) {
        match self {
            Op::Write(w) => w.abort(core, location),
            Op::Delete(d) => d.release(core),
        }
    }

    /// Clears the pending mark of a change whose record may be journaled; a
    /// write's fresh location stays out of use.
    fn clear_pending(&self, core: &Core) {
        core.proposals.remove(self.id());
        match self {
            // Drops the tag it proposed too.
            Op::Write(w) => w.clear_pending(core),
            Op::Delete(_) => core.clear_pending(self.id()),
        }
    }
}

/// A batch of writes and deletes of distinct extents.
#[derive(Debug)]
pub(crate) struct BatchWriteOp {
    ops: Vec<Op>,
    /// Per item: its begin snapshot and fresh location (a delete's: the
    /// location it will free), once begun.
    begun: Vec<(Snapshot, Location)>,
    devices: Vec<u16>,
    /// Indices of the writes whose records the journal round in flight holds.
    proposed: Vec<usize>,
    /// Per item, once committed.
    committed: Vec<Option<Snapshot>>,
    /// A write that did not commit: reported once the others committed.
    failed: Option<Error>,
    phase: Phase,
}

impl BatchWriteOp {
    /// A batch of writes only (the loom models' batches).
    #[cfg(all(test, loom))]
    pub(crate) fn new(items: Vec<(ExtentId, Bytes, Tag)>) -> Self {
        Self::mixed(
            (items.into_iter())
                .map(|(id, bytes, tag)| BatchItem::Write(id, bytes, tag))
                .collect(),
        )
    }

    pub(crate) fn mixed(items: Vec<BatchItem>) -> Self {
        BatchWriteOp {
            ops: (items.into_iter())
                .map(|item| match item {
                    BatchItem::Write(id, bytes, tag) => Op::Write(WriteOp::new(id, bytes, tag)),
                    BatchItem::Delete(id) => Op::Delete(DeleteItem { id }),
                })
                .collect(),
            begun: Vec::new(),
            devices: Vec::new(),
            proposed: Vec::new(),
            committed: Vec::new(),
            failed: None,
            phase: Phase::Idle,
        }
    }

    /// Ends every begun write (none has a journaled record yet), then reports
    /// `err`.
    fn fail(&mut self, core: &Core, err: Error) -> Step<Vec<Snapshot>> {
        self.phase = Phase::Finished;
        self.abort_begun(core);
        Step::Done(Err(err))
    }

    /// Ends every begun change (none has a journaled record yet).
    fn abort_begun(&mut self, core: &Core) {
        for (op, (_, location)) in self.ops.iter().zip(&self.begun) {
            op.abort(core, *location);
        }
        self.begun.clear();
        self.devices.clear();
    }

    /// Writes the bytes of the first write at or after item `i`; then syncs
    /// the devices; then journals every record.
    fn next_write(&mut self, core: &Core, i: usize) -> Step<Vec<Snapshot>> {
        for (j, (op, (_, location))) in self.ops.iter().zip(&self.begun).enumerate().skip(i) {
            if let Op::Write(w) = op {
                self.phase = Phase::Writing(j);
                return Step::Io(IoRequest::Write(*location, w.bytes().clone()));
            }
        }
        self.next_sync(core, 0)
    }

    /// Syncs the `i`-th device touched, or journals every record once all are.
    fn next_sync(&mut self, core: &Core, i: usize) -> Step<Vec<Snapshot>> {
        match self.devices.get(i) {
            Some(&device) => {
                self.phase = Phase::Syncing(i);
                Step::Io(IoRequest::Sync(device))
            }
            None if self.ops.is_empty() => {
                self.phase = Phase::Finished;
                Step::Done(Ok(Vec::new()))
            }
            None => {
                self.committed = vec![None; self.ops.len()];
                self.propose(core, (0..self.ops.len()).collect(), 0)
            }
        }
    }

    /// Journals the records the writes in `items` will commit (round `round`).
    fn propose(&mut self, core: &Core, items: Vec<usize>, round: u32) -> Step<Vec<Snapshot>> {
        let mut entries = Vec::with_capacity(items.len() + 1);
        self.proposed.clear();
        let records: Vec<_> = (items.iter())
            .map(|&i| match &self.ops[i] {
                Op::Write(w) => w.propose(&self.begun[i].0, self.begun[i].1),
                Op::Delete(d) => d.propose(&self.begun[i].0),
            })
            .collect();
        // All or nothing: a write the table refuses before anything is journaled
        // fails the whole batch.
        if round == 0
            && let Some(Err(err)) = records.iter().find(|r| r.is_err())
        {
            return self.fail(core, err.clone());
        }
        let mut proposals = Vec::with_capacity(items.len());
        for (i, record) in items.into_iter().zip(records) {
            let (_, location) = self.begun[i];
            match record {
                Ok(record) => {
                    let (entry, tag) = match &self.ops[i] {
                        Op::Write(w) => (w.batch_entry(core, &record), w.tag()),
                        Op::Delete(_) => (Entry::propose(&record, Tag::EMPTY), Tag::EMPTY),
                    };
                    entries.push(entry);
                    if core.mutants.batch_proposals_apart {
                        core.proposals.insert_all(&[(record, tag)]);
                    } else {
                        proposals.push((record, tag));
                    }
                    self.proposed.push(i);
                }
                // Refused by the table before anything of it was journaled (round
                // 0), or after (a later round): certainly not, or unknown.
                Err(err) if round == 0 => {
                    self.ops[i].abort(core, location);
                    self.failed.get_or_insert(err);
                }
                Err(err) => self.unknown(core, i, err),
            }
        }
        // All of the batch's proposals at once: a checkpoint's image holds all
        // or none of them, as recovery applies the batch's records.
        core.proposals.insert_all(&proposals);
        if self.proposed.is_empty() {
            return self.finish();
        }
        if entries.len() > 1 {
            // One append: recovery applies all of the records or none.
            let count = entries.len() as u32;
            entries.insert(0, Entry::BatchBegin { count });
        }
        self.phase = Phase::Journaling(round);
        Step::Io(IoRequest::Journal(entries))
    }

    /// Change `i` has a journaled record but will not commit.
    fn unknown(&mut self, core: &Core, i: usize, cause: Error) {
        self.ops[i].clear_pending(core);
        let extent = self.begun[i].0.extent();
        self.failed
            .get_or_insert(Error::unknown("batch", extent, cause));
    }

    /// Round `round`'s records are durable: commit each; a write a quarantine or
    /// remap overtook is proposed again in the next round.
    fn commit_round(&mut self, core: &Core, round: u32) -> Step<Vec<Snapshot>> {
        let mut again = Vec::new();
        for i in std::mem::take(&mut self.proposed) {
            let (expected, location) = self.begun[i];
            let commit = match &self.ops[i] {
                Op::Write(w) => w.commit_proposed(core, expected, location),
                // Retires, drops the cached copy and reports the delete itself.
                Op::Delete(d) => d.commit_proposed(core, expected),
            };
            match commit {
                Commit::Done(record, old) => {
                    if let Op::Write(w) = &self.ops[i] {
                        let tag = w.tag();
                        core.report_then_retire(old, |seq| Event::Written { seq, record, tag });
                    } else if let Some(old) = old {
                        // A delete reported (and retired) its own location.
                        core.retire(old);
                    }
                    self.committed[i] = Some(record);
                }
                Commit::Moved(current) if round + 1 < MAX_ATTEMPTS => {
                    self.begun[i].0 = current;
                    again.push(i);
                }
                Commit::Moved(current) => {
                    let extent = current.extent();
                    self.unknown(core, i, Error::WriteInProgress { extent });
                }
                Commit::Failed(err) => self.unknown(core, i, err),
            }
        }
        if again.is_empty() {
            return self.finish();
        }
        self.propose(core, again, round + 1)
    }

    /// The journal failed with round `round`'s records: each is unknown, or (the
    /// journal refused the append) certainly not written.
    fn journal_failed(&mut self, core: &Core, round: u32, err: Error) -> Step<Vec<Snapshot>> {
        // A later round's writes had a record journaled (durable) in an earlier
        // one: unknown whatever this round's failure.
        let unknown = round > 0 || matches!(err, Error::OutcomeUnknown { .. });
        // Refused records that a checkpoint's image read may be durable there:
        // unknown too. The image read all of the batch's proposals or none.
        let proposed = std::mem::take(&mut self.proposed);
        let read =
            (core.proposals).withdraw_all(proposed.iter().map(|&i| self.begun[i].0.extent()));
        for i in proposed {
            if unknown || read {
                self.unknown(core, i, err.clone());
            } else {
                let (_, location) = self.begun[i];
                self.ops[i].abort(core, location);
                self.failed.get_or_insert(err.clone());
            }
        }
        self.finish()
    }

    fn finish(&mut self) -> Step<Vec<Snapshot>> {
        self.phase = Phase::Finished;
        self.begun.clear();
        match self.failed.take() {
            Some(err) => Step::Done(Err(err)),
            None => Step::Done(Ok(self.committed.iter().flatten().copied().collect())),
        }
    }
}

impl BatchWriteOp {
    /// Reserves a delete's record, retrying lost races (bounded: then the last
    /// conflict, retryable).
    fn reserve(&self, core: &Core, d: &DeleteItem) -> crate::error::Result<(Snapshot, Location)> {
        let mut last = Error::WriteInProgress { extent: d.id };
        for _ in 0..MAX_ATTEMPTS {
            match d.reserve(core) {
                Reserve::Reserved(reserved) => return Ok((reserved, reserved.location())),
                Reserve::Conflict(err) => last = err,
                Reserve::Refused(err) => return Err(err),
            }
        }
        Err(last)
    }
}

impl Machine for BatchWriteOp {
    type Output = Vec<Snapshot>;

    /// Begins every change: a write reserves its record and a fresh location,
    /// a delete reserves its record (ending a compaction of it, as a write's
    /// begin does).
    fn start(&mut self, core: &Core) -> Step<Vec<Snapshot>> {
        for i in 0..self.ops.len() {
            let begun = match &self.ops[i] {
                Op::Write(w) => w.begin(core),
                Op::Delete(d) => self.reserve(core, d),
            };
            match begun {
                Ok(begun) => {
                    let is_write = matches!(self.ops[i], Op::Write(_));
                    if is_write && !self.devices.contains(&begun.1.device) {
                        self.devices.push(begun.1.device);
                    }
                    self.begun.push(begun);
                }
                Err(err) => return self.fail(core, err),
            }
        }
        self.next_write(core, 0)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Vec<Snapshot>> {
        let outcome = match result {
            IoResult::Done(r) => r,
            IoResult::Read(_) | IoResult::Both { .. } => Err(Error::Internal {
                what: "batch: answered with a read result",
            }),
        };
        match (self.phase, outcome) {
            (Phase::Writing(i), Ok(())) => self.next_write(core, i + 1),
            (Phase::Syncing(i), Ok(())) => self.next_sync(core, i + 1),
            (Phase::Journaling(round), Ok(())) => self.commit_round(core, round),
            (Phase::Journaling(round), Err(err)) => self.journal_failed(core, round, err),
            // A location whose write failed is bad, as a single write's.
            (Phase::Writing(i), Err(err)) if super::location_failed(&err) => {
                if let Some(&(_, location)) = self.begun.get(i) {
                    core.mark_bad_later(location);
                }
                self.fail(core, err)
            }
            (Phase::Writing(_) | Phase::Syncing(_), Err(err)) => self.fail(core, err),
            (Phase::Idle | Phase::Finished, _) => Step::Done(Err(Error::Internal {
                what: "batch: event out of order",
            })),
        }
    }

    fn abandon(&mut self, core: &Core) {
        match self.phase {
            Phase::Writing(_) | Phase::Syncing(_) => {
                let _ = self.fail(core, Error::Shutdown);
            }
            // Their records may be in the journal: clear the marks, keep the
            // locations out of use.
            Phase::Journaling(_) => {
                for i in std::mem::take(&mut self.proposed) {
                    self.ops[i].clear_pending(core);
                }
                self.phase = Phase::Finished;
            }
            Phase::Idle | Phase::Finished => {}
        }
    }
}
