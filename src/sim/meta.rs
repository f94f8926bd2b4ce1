//! The metadata journal in virtual time: [`Meta`] runs the same plans as the
//! blocking driver (`store::durable`), one [`FsOp`] per event on a [`SimDir`].
//!
//! A machine's `IoRequest::Journal` appends its frames to the group-commit buffer;
//! the journal lane writes and syncs the buffer ([`plan::group_commit`]) and
//! acknowledges every operation its sync covered. When the journal passes its
//! bound, the lane instead flushes it and starts the next one
//! ([`plan::new_journal`]); the checkpoint lane then writes a checkpoint of the live
//! table and switches the pointer ([`plan::checkpoint`]) while group commits go on
//! in the new journal, as in the store.

use super::config::Latency;
use super::disk::SimDir;
use crate::journal::plan::{self, FsOp, PlanMutants};
use crate::journal::{Entry, HEADER_LEN, Image, encode_group};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// The two metadata lanes: group commits and the checkpoint of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Group commits and the switch to a new journal.
    Journal,
    /// Writing a checkpoint and switching the pointer to it.
    Checkpoint,
}

/// Knobs of the metadata driver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetaConfig {
    pub(crate) devices: u16,
    /// Rotate once the active journal is longer than this.
    pub(crate) max_bytes: u64,
    /// Mutant: acknowledge a group commit once written, before its sync.
    pub(crate) ack_before_sync: bool,
    pub(crate) plan_mutants: PlanMutants,
    pub(crate) latency: Latency,
    /// Chance per metadata write or sync of an injected I/O error, ppm.
    pub(crate) transient_ppm: u32,
}

#[derive(Debug)]
struct Task {
    ops: VecDeque<FsOp>,
    /// Slots acknowledged when the task ends (or, with the mutant, at its write).
    waiters: Vec<usize>,
    /// Bytes appended to the active journal by this task.
    written: u64,
    /// The journal a switch starts.
    switch_to: Option<u64>,
    acked: bool,
}

impl Task {
    fn new(ops: Vec<FsOp>) -> Task {
        Task {
            ops: ops.into(),
            waiters: Vec::new(),
            written: 0,
            switch_to: None,
            acked: false,
        }
    }
}

/// What the world must do after a metadata step.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Slots whose journal request is answered `Ok`.
    pub(crate) acks: Vec<usize>,
    /// Lane events to schedule, with their delay, ns.
    pub(crate) schedule: Vec<(Lane, u64)>,
    /// Slots whose journal request fails after its entries were handed to the
    /// journal: their outcome is unknown (the journal is poisoned).
    pub(crate) failed: Vec<usize>,
    /// Slots whose entries the poisoned journal refused: certainly not written.
    pub(crate) refused: Vec<usize>,
    /// The journal was just poisoned: the store must be reopened.
    pub(crate) poisoned: bool,
    /// A plan step did not fit the directory (a violation).
    pub(crate) plan_error: Option<String>,
}

/// Bytes a write step appends.
fn written_bytes(op: &FsOp) -> u64 {
    match op {
        FsOp::Write { bytes, .. } => bytes.len() as u64,
        _ => 0,
    }
}

/// The durable metadata of the emulated store.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) dir: SimDir,
    cfg: MetaConfig,
    number: u64,
    len: u64,
    next_seq: u64,
    buf: Vec<(u64, Entry)>,
    buf_waiters: Vec<usize>,
    journal: Option<Task>,
    checkpoint: Option<Task>,
    rotating: bool,
    /// A journal write or sync failed: every later commit fails until a reopen (as
    /// the store's journal, which can no longer tell what is durable).
    poisoned: bool,
    rng: ChaCha8Rng,
    /// Group commits completed (all runs of the store, across crashes).
    pub(crate) syncs: u64,
    /// Checkpoints completed.
    pub(crate) checkpoints: u64,
}

impl Meta {
    pub(crate) fn new(cfg: MetaConfig, rng: ChaCha8Rng) -> Self {
        Meta {
            dir: SimDir::default(),
            cfg,
            number: 1,
            len: HEADER_LEN as u64,
            next_seq: 0,
            buf: Vec::new(),
            buf_waiters: Vec::new(),
            journal: None,
            checkpoint: None,
            rotating: false,
            poisoned: false,
            rng,
            syncs: 0,
            checkpoints: 0,
        }
    }

    /// The plan mutants this store runs with.
    pub(crate) fn plan_mutants(&self) -> PlanMutants {
        self.cfg.plan_mutants
    }

    /// Whether a crash now would cut a rotation short.
    pub(crate) fn rotating(&self) -> bool {
        self.rotating
    }

    fn latency(&mut self, op: &FsOp) -> u64 {
        let l = self.cfg.latency;
        let jitter = if l.jitter_ns > 0 {
            self.rng.random_range(0..l.jitter_ns)
        } else {
            0
        };
        match op {
            FsOp::Write { .. } => l.floor_ns + jitter,
            FsOp::Sync { .. } | FsOp::SyncDir => {
                let ack = match l.ack_delay_ns {
                    0 => 0,
                    max => self.rng.random_range(0..max),
                };
                l.floor_ns + jitter + ack
            }
            _ => l.floor_ns,
        }
    }

    /// A machine in slot `slot` asks for `entries` to be made durable.
    pub(crate) fn append(&mut self, slot: usize, entries: &[Entry]) -> Effects {
        if self.poisoned {
            return Effects {
                refused: vec![slot],
                ..Effects::default()
            };
        }
        for entry in entries {
            self.buf.push((self.next_seq, *entry));
            self.next_seq += 1;
        }
        self.buf_waiters.push(slot);
        let mut fx = Effects::default();
        self.start_commit(&mut fx);
        fx
    }

    /// Starts the next journal-lane task if the lane is idle: a switch to a new
    /// journal if a rotation is due, else a group commit of the buffer.
    fn start_commit(&mut self, fx: &mut Effects) {
        // A poisoned journal starts nothing, not even a rotation (as
        // `Journal::rotate`, which returns at once on a failed journal).
        if self.journal.is_some() || self.poisoned {
            return;
        }
        let mut entries = std::mem::take(&mut self.buf);
        let mut task = if self.len > self.cfg.max_bytes && !self.rotating {
            // As `Journal::switch_journal`: the successor exists durably before the
            // old journal's last write, which ends with the marker naming it.
            self.rotating = true;
            let next = self.number + 1;
            entries.push((self.next_seq, Entry::Rotated { next }));
            self.next_seq += 1;
            let mut ops = plan::new_journal(next, self.cfg.devices);
            let frames = encode_group(self.len, &entries);
            ops.extend(plan::group_commit(self.number, self.len, frames));
            let mut t = Task::new(ops);
            t.switch_to = Some(next);
            t
        } else if entries.is_empty() {
            return;
        } else {
            // The mark is `len`: every byte before it was synced, and this write is
            // issued only now.
            let frames = encode_group(self.len, &entries);
            let mut t = Task::new(plan::group_commit(self.number, self.len, frames));
            t.written = t.ops.iter().map(written_bytes).sum();
            t
        };
        task.waiters = std::mem::take(&mut self.buf_waiters);
        let delay = task.ops.front().cloned().map_or(0, |op| self.latency(&op));
        self.journal = Some(task);
        fx.schedule.push((Lane::Journal, delay));
    }

    /// The current step of `lane` completes: it is applied to the directory, and
    /// the lane moves on. `image` is the live state, taken for a checkpoint.
    pub(crate) fn complete(&mut self, lane: Lane, image: impl FnOnce() -> Image) -> Effects {
        let mut fx = Effects::default();
        let slot = match lane {
            Lane::Journal => &mut self.journal,
            Lane::Checkpoint => &mut self.checkpoint,
        };
        let Some(mut task) = slot.take() else {
            return fx;
        };
        if let Some(op) = task.ops.pop_front() {
            if self.injected_error(&op) {
                return self.fail(lane, task, fx);
            }
            if let Err(e) = self.dir.apply(&op) {
                fx.plan_error = Some(format!("a metadata plan failed at {op:?}: {e}"));
            }
            // The mutant acknowledges at the write of the frames (the task's first
            // write), before their sync.
            let frames_written = matches!(op, FsOp::Write { .. }) && task.written > 0;
            if self.cfg.ack_before_sync && frames_written && !task.acked {
                task.acked = true;
                fx.acks.append(&mut task.waiters);
            }
        }
        if let Some(next) = task.ops.front().cloned() {
            let delay = self.latency(&next);
            fx.schedule.push((lane, delay));
            match lane {
                Lane::Journal => self.journal = Some(task),
                Lane::Checkpoint => self.checkpoint = Some(task),
            }
            return fx;
        }
        // The task is over.
        fx.acks.append(&mut task.waiters);
        match lane {
            Lane::Checkpoint => {
                self.rotating = false;
                self.checkpoints += 1;
            }
            Lane::Journal => match task.switch_to {
                Some(next) => {
                    self.number = next;
                    self.len = HEADER_LEN as u64;
                    // The checkpoint is taken after the switch: it holds every record
                    // of the journals it replaces.
                    let image = image();
                    let names = self.dir.list();
                    let ops = plan::checkpoint(
                        next,
                        self.cfg.devices,
                        &image,
                        &names,
                        self.cfg.plan_mutants,
                    );
                    let t = Task::new(ops);
                    let delay = t.ops.front().cloned().map_or(0, |op| self.latency(&op));
                    self.checkpoint = Some(t);
                    fx.schedule.push((Lane::Checkpoint, delay));
                }
                None => {
                    self.len += task.written;
                    self.syncs += 1;
                }
            },
        }
        self.start_commit(&mut fx);
        fx
    }

    /// Whether an injected I/O error fails `op` (writes and syncs only).
    fn injected_error(&mut self, op: &FsOp) -> bool {
        matches!(op, FsOp::Write { .. } | FsOp::Sync { .. })
            && self.rng.random_range(0..1_000_000) < self.cfg.transient_ppm
    }

    /// A metadata step failed. On the journal lane every waiter, and every frame
    /// buffered since, fails and the journal is poisoned (the store must reopen);
    /// a failed checkpoint only ends the rotation: the old checkpoint, and every
    /// journal since, stay current (as `Journal::rotate`).
    fn fail(&mut self, lane: Lane, mut task: Task, mut fx: Effects) -> Effects {
        match lane {
            Lane::Checkpoint => self.rotating = false,
            Lane::Journal => {
                self.poisoned = true;
                fx.poisoned = true;
                fx.failed.append(&mut task.waiters);
                fx.failed.append(&mut self.buf_waiters);
                self.buf.clear();
            }
        }
        fx
    }

    /// After recovery: appends go on at `number`, offset `len`, sequence `next_seq`.
    pub(crate) fn reset(&mut self, number: u64, len: u64, next_seq: u64) {
        self.number = number;
        self.len = len;
        self.next_seq = next_seq;
        self.buf.clear();
        self.buf_waiters.clear();
        self.journal = None;
        self.checkpoint = None;
        self.rotating = false;
        self.poisoned = false;
    }
}
