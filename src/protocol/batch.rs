//! A batch of writes that shares its syncs: every data write, then one sync per
//! device touched, then every commit, then one journal record group (one journal
//! sync on a durable store), then the old locations are retired.
//!
//! # Consistency
//!
//! Each write of the batch keeps the guarantees of a single write (readers see the
//! old bytes or the new ones, never a mix; nothing is retired before its commit is
//! durable). The batch is *not* atomic: a reader may see some of its writes
//! committed before others, and a crash before the call returns may keep any
//! subset of them. When the call returns `Ok`, every write is durable.
//!
//! Bounds: `items` writes, so at most `2 × items + devices + 1` I/O steps.

use super::write::WriteOp;
use super::{Core, IoRequest, IoResult, Machine, Step};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::events::Event;
use crate::journal::Entry;
use crate::record::{ExtentId, Location, Snapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Writing item `i`'s bytes.
    Writing(usize),
    /// Syncing the `i`-th device touched.
    Syncing(usize),
    /// Waiting for the commit records to be durable.
    Journaling,
    Finished,
}

/// A batch of writes of distinct extents.
#[derive(Debug)]
pub(crate) struct BatchWriteOp {
    ops: Vec<WriteOp>,
    /// Per item: its begin snapshot and fresh location, once begun.
    begun: Vec<(Snapshot, Location)>,
    devices: Vec<u16>,
    committed: Vec<Snapshot>,
    old: Vec<Location>,
    /// A commit that failed: reported once the others are durable.
    failed: Option<Error>,
    phase: Phase,
}

impl BatchWriteOp {
    pub(crate) fn new(items: Vec<(ExtentId, Bytes)>) -> Self {
        BatchWriteOp {
            ops: items
                .into_iter()
                .map(|(id, bytes)| WriteOp::new(id, bytes))
                .collect(),
            begun: Vec::new(),
            devices: Vec::new(),
            committed: Vec::new(),
            old: Vec::new(),
            failed: None,
            phase: Phase::Idle,
        }
    }

    /// Ends every begun write that has not committed, then reports `err`.
    fn fail(&mut self, core: &Core, err: Error) -> Step<Vec<Snapshot>> {
        self.abort_uncommitted(core);
        Step::Done(Err(err))
    }

    fn abort_uncommitted(&mut self, core: &Core) {
        self.phase = Phase::Finished;
        let done = self.committed.len();
        for (op, (_, location)) in self.ops.iter().zip(&self.begun).skip(done) {
            op.abort(core, *location);
        }
        self.begun.clear();
    }

    fn next_write(&mut self, i: usize) -> Step<Vec<Snapshot>> {
        if let (Some(op), Some((_, location))) = (self.ops.get(i), self.begun.get(i)) {
            self.phase = Phase::Writing(i);
            return Step::Io(IoRequest::Write(*location, op.bytes().clone()));
        }
        match self.devices.first() {
            Some(&device) => {
                self.phase = Phase::Syncing(0);
                Step::Io(IoRequest::Sync(device))
            }
            // An empty batch.
            None => {
                self.phase = Phase::Finished;
                Step::Done(Ok(Vec::new()))
            }
        }
    }

    /// Every write is synced: commit each, then journal what committed.
    fn commit_all(&mut self, core: &Core) -> Step<Vec<Snapshot>> {
        let mut entries = Vec::with_capacity(self.ops.len());
        for i in 0..self.ops.len() {
            let (begin, location) = self.begun[i];
            match self.ops[i].commit(core, begin, location) {
                Ok((committed, old)) => {
                    entries.push(Entry::put(&committed));
                    self.committed.push(committed);
                    self.old.extend(old);
                }
                Err(err) => {
                    // `commit` ended this write itself; end the rest. What committed
                    // is journaled all the same, then the error is reported.
                    for (op, (_, l)) in self.ops.iter().zip(&self.begun).skip(i + 1) {
                        op.abort(core, *l);
                    }
                    self.failed = Some(err);
                    break;
                }
            }
        }
        self.begun.clear();
        self.phase = Phase::Journaling;
        Step::Io(IoRequest::Journal(entries))
    }
}

impl Machine for BatchWriteOp {
    type Output = Vec<Snapshot>;

    fn start(&mut self, core: &Core) -> Step<Vec<Snapshot>> {
        for i in 0..self.ops.len() {
            match self.ops[i].begin(core) {
                Ok(begun) => {
                    if !self.devices.contains(&begun.1.device) {
                        self.devices.push(begun.1.device);
                    }
                    self.begun.push(begun);
                }
                Err(err) => return self.fail(core, err),
            }
        }
        self.next_write(0)
    }

    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Vec<Snapshot>> {
        let outcome = match result {
            IoResult::Done(r) => r,
            IoResult::Read(_) => Err(Error::Internal {
                what: "batch: answered with a read result",
            }),
        };
        match (self.phase, outcome) {
            (Phase::Writing(i), Ok(())) => self.next_write(i + 1),
            (Phase::Syncing(i), Ok(())) => match self.devices.get(i + 1) {
                Some(&device) => {
                    self.phase = Phase::Syncing(i + 1);
                    Step::Io(IoRequest::Sync(device))
                }
                None => self.commit_all(core),
            },
            (Phase::Journaling, Ok(())) => {
                self.phase = Phase::Finished;
                for &old in &self.old {
                    core.retire(old);
                }
                for &record in &self.committed {
                    core.events.emit(|| Event::Written { record });
                }
                match self.failed.take() {
                    Some(err) => Step::Done(Err(err)),
                    None => Step::Done(Ok(std::mem::take(&mut self.committed))),
                }
            }
            (Phase::Journaling, Err(err)) => {
                self.phase = Phase::Finished;
                Step::Done(Err(err))
            }
            (Phase::Writing(_) | Phase::Syncing(_), Err(err)) => self.fail(core, err),
            (Phase::Idle | Phase::Finished, _) => Step::Done(Err(Error::Internal {
                what: "batch: event out of order",
            })),
        }
    }

    fn abandon(&mut self, core: &Core) {
        if matches!(self.phase, Phase::Writing(_) | Phase::Syncing(_)) {
            self.abort_uncommitted(core);
        }
    }
}
