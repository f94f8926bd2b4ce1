//! The metadata journal in virtual time: [`EmulatedJournal`] drives the store's
//! own journal [`Writer`] (group commit, rotation, failure; `journal::writer`),
//! running each plan it hands out one [`FsOp`] per event on a [`SimDir`], so that
//! a power cut can fall between any two steps.
//!
//! A machine's `IoRequest::Journal` appends its entries to the writer; the journal
//! lane runs the writer's next plan (a group commit, or the switch to a new
//! journal) and, when it ends, tells the writer, which decides which requests are
//! acknowledged and what a failure means for each. After a switch the checkpoint
//! lane writes the checkpoint the writer plans, while group commits go on in the
//! new journal, as in the store.

use super::config::Latency;
use super::disk::{FailedSync, SimDir};
use crate::bytes::Bytes;
use crate::error::Error;
use crate::journal::plan::{CheckpointPlanner, FsOp, PlanMutants};
use crate::journal::writer::Writer;
use crate::journal::{Entry, Image, files};
use crate::record::ExtentId;
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

/// Knobs of the emulated journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmulatedJournalConfig {
    pub(crate) devices: u16,
    /// Rotate once the active journal is longer than this.
    pub(crate) max_bytes: u64,
    /// Mutant: acknowledge a group commit once written, before its sync.
    pub(crate) ack_before_sync: bool,
    pub(crate) plan_mutants: PlanMutants,
    pub(crate) latency: Latency,
    /// Chance per metadata write or sync of an injected I/O error, ppm.
    pub(crate) transient_ppm: u32,
    /// Chance per metadata write of a full disk (a prefix of it written), ppm.
    pub(crate) disk_full_ppm: u32,
    /// Bytes of the metadata reserve.
    pub(crate) reserve_bytes: u64,
    /// See `SimConfig::recycle_journals`.
    pub(crate) recycle: bool,
}

/// What the world must do after a metadata step.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Slots whose journal request is answered `Ok`.
    pub(crate) acks: Vec<usize>,
    /// Lane events to schedule, with their delay, ns.
    pub(crate) schedule: Vec<(Lane, u64)>,
    /// Slots whose journal request fails, with the writer's error
    /// ([`Error::OutcomeUnknown`] if its entries were written, else the failure).
    pub(crate) failed: Vec<(usize, Error)>,
    /// The journal was just poisoned: the store must be reopened.
    pub(crate) poisoned: bool,
    /// A plan step did not fit the directory (a violation).
    pub(crate) plan_error: Option<String>,
    /// The lane whose next step is [`FsOp::SyncDevices`]: the world syncs every
    /// device and answers with [`EmulatedJournal::devices_synced`].
    pub(crate) sync_devices: Option<Lane>,
}

/// A plan being run on one lane.
#[derive(Debug)]
struct Task {
    ops: VecDeque<FsOp>,
    /// The whole plan (a checkpoint's is handed back to the writer).
    plan: Vec<FsOp>,
    /// A checkpoint's number and planner: its [`FsOp::WriteImage`] step reads
    /// the live state then, as the store's does, not when it was planned.
    checkpoint: Option<(u64, CheckpointPlanner)>,
}

impl Task {
    fn new(plan: Vec<FsOp>) -> Task {
        Task {
            ops: plan.clone().into(),
            plan,
            checkpoint: None,
        }
    }
}

/// The durable metadata of the emulated store.
#[derive(Debug)]
pub(crate) struct EmulatedJournal {
    pub(crate) dir: SimDir,
    cfg: EmulatedJournalConfig,
    writer: Writer,
    /// Requests waiting for the writer's verdict: slot, target, extent.
    waiters: Vec<(usize, u64, ExtentId)>,
    journal: Option<Task>,
    checkpoint: Option<Task>,
    rng: ChaCha8Rng,
    /// Another stream of the same seed, for the full disks of
    /// [`device_write_error`](Self::device_write_error): its draws, added
    /// later, leave every other choice of a seed where it was.
    device_rng: ChaCha8Rng,
    /// A third stream, for the EIO of
    /// [`device_write_error`](Self::device_write_error), for the same reason.
    recovery_io_rng: ChaCha8Rng,
    /// Group commits completed (all runs of the store, across crashes).
    pub(crate) syncs: u64,
    /// Checkpoints completed.
    pub(crate) checkpoints: u64,
    /// Switches that wrote the new journal over a recycled one.
    pub(crate) recycled: u64,
    /// Metadata reserve releases (full disks), over every run of the store.
    released_before: u64,
}

impl EmulatedJournal {
    pub(crate) fn new(cfg: EmulatedJournalConfig, rng: ChaCha8Rng) -> Self {
        EmulatedJournal {
            dir: SimDir::default(),
            writer: Writer::new(cfg.devices, cfg.max_bytes, 1, 0, 0),
            cfg,
            waiters: Vec::new(),
            journal: None,
            checkpoint: None,
            device_rng: {
                let mut r = rng.clone();
                r.set_stream(1);
                r
            },
            recovery_io_rng: {
                let mut r = rng.clone();
                r.set_stream(2);
                r
            },
            rng,
            syncs: 0,
            checkpoints: 0,
            recycled: 0,
            released_before: 0,
        }
    }

    /// The journal's rotation bound.
    pub(crate) fn max_bytes(&self) -> u64 {
        self.cfg.max_bytes
    }

    /// Whether retired journals are kept to be written over.
    pub(crate) fn recycle(&self) -> bool {
        self.cfg.recycle
    }

    /// The metadata reserve's size.
    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.cfg.reserve_bytes
    }

    /// The plan mutants this store runs with.
    pub(crate) fn plan_mutants(&self) -> PlanMutants {
        self.cfg.plan_mutants
    }

    /// Whether a crash now would cut a rotation short.
    pub(crate) fn rotating(&self) -> bool {
        self.writer.rotating()
    }

    fn latency(&mut self, op: &FsOp) -> u64 {
        let l = self.cfg.latency;
        let jitter = if l.jitter_ns > 0 {
            self.rng.random_range(0..l.jitter_ns)
        } else {
            0
        };
        match op {
            FsOp::Write { .. } | FsOp::WriteImage { .. } => l.floor_ns + jitter,
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
        let mut fx = Effects::default();
        match self.writer.append(entries) {
            Ok(target) => {
                let extent = Entry::first_extent(entries);
                self.waiters.push((slot, target, extent));
                self.start_commit(&mut fx);
            }
            Err(err) => fx.failed.push((slot, err)),
        }
        fx
    }

    /// Appends `entries` that nobody waits for (a device degradation: best
    /// effort, as in the store).
    pub(crate) fn append_detached(&mut self, entries: &[Entry]) -> Effects {
        let mut fx = Effects::default();
        if self.writer.append(entries).is_ok() {
            self.start_commit(&mut fx);
        }
        fx
    }

    /// Starts the writer's next plan on the journal lane if the lane is idle.
    fn start_commit(&mut self, fx: &mut Effects) {
        if self.journal.is_some() {
            return;
        }
        if let Some(ops) = self.writer.next_write() {
            let delay = ops.first().map_or(0, |op| self.latency(op));
            self.journal = Some(Task::new(ops));
            fx.schedule.push((Lane::Journal, delay));
        }
    }

    /// Answers every waiter the writer has a verdict for.
    fn settle(&mut self, fx: &mut Effects) {
        let writer = &self.writer;
        self.waiters.retain(
            |&(slot, target, extent)| match writer.status(target, extent) {
                Some(Ok(())) => {
                    fx.acks.push(slot);
                    false
                }
                Some(Err(err)) => {
                    fx.failed.push((slot, err));
                    false
                }
                None => true,
            },
        );
    }

    /// The current step of `lane` completes: it is applied to the directory, and
    /// the lane moves on. `image` is the live state, taken for a checkpoint.
    pub(crate) fn complete(&mut self, lane: Lane, image: impl FnOnce() -> Image) -> Effects {
        self.step(lane, image, None)
    }

    /// The world ran the [`FsOp::SyncDevices`] step [`Effects::sync_devices`]
    /// asked for, through its sync books: `result` is its outcome.
    pub(crate) fn devices_synced(
        &mut self,
        lane: Lane,
        result: crate::Result<()>,
        image: impl FnOnce() -> Image,
    ) -> Effects {
        self.step(lane, image, Some(result))
    }

    fn step(
        &mut self,
        lane: Lane,
        image: impl FnOnce() -> Image,
        synced: Option<crate::Result<()>>,
    ) -> Effects {
        let mut fx = Effects::default();
        let slot = match lane {
            Lane::Journal => &mut self.journal,
            Lane::Checkpoint => &mut self.checkpoint,
        };
        let Some(mut task) = slot.take() else {
            return fx;
        };
        let Some(mut op) = task.ops.pop_front() else {
            return fx;
        };
        if let (FsOp::WriteImage { file }, Some((number, planner))) = (&op, &task.checkpoint) {
            let file = file.clone();
            op = planner.image_write(*number, &file, &image());
            // Then cut the file at the image's end, as the store's checkpointer
            // does: a retry behind the reserve's release writes the image
            // again, read again, over what a short write left, and a shorter
            // one must not end in the bytes of the first.
            if let FsOp::Write { bytes, .. } = &op {
                let len = bytes.len() as u64;
                task.ops.push_front(FsOp::Truncate { file, len });
            }
        }
        let failure = match (&op, synced) {
            // The devices are the world's: it syncs them and answers.
            (FsOp::SyncDevices, None) => {
                task.ops.push_front(op);
                *slot = Some(task);
                fx.sync_devices = Some(lane);
                return fx;
            }
            (FsOp::SyncDevices, Some(result)) => result.err(),
            _ => self.injected_error(&op),
        };
        if let Some(err) = failure {
            match lane {
                Lane::Journal => {
                    self.writer.complete(Err(err));
                    fx.poisoned = self.writer.failure().is_some();
                    self.settle(&mut fx);
                    // A plan to run again behind the reserve's release, if any.
                    self.start_commit(&mut fx);
                }
                Lane::Checkpoint => {
                    // As the store's directory does (`plan::failed_image`).
                    let pointer = (self.dir.read(files::CURRENT))
                        .and_then(|bytes| crate::journal::decode_pointer(&bytes).ok())
                        // The mutant: as if the pointer named another checkpoint.
                        .map(|n| match self.plan_mutants().remove_named_image {
                            true => n.wrapping_add(1),
                            false => n,
                        });
                    if let Some(file) = crate::journal::plan::failed_image(&task.plan, pointer) {
                        let _ = self.dir.apply(&FsOp::Remove { file: file.into() });
                    }
                    let failed_before = self.writer.failure().is_some();
                    if let Some(retry) = self.writer.checkpoint_done(&task.plan, Err(err)) {
                        let delay = retry.first().map_or(0, |op| self.latency(op));
                        self.checkpoint = Some(Task {
                            checkpoint: task.checkpoint,
                            ..Task::new(retry)
                        });
                        fx.schedule.push((Lane::Checkpoint, delay));
                    } else {
                        // The rotation ended: group commits it held back go on,
                        // unless this failure failed the journal (checkpoints
                        // failing in a row): then what waits for it is answered.
                        fx.poisoned = !failed_before && self.writer.failure().is_some();
                        self.settle(&mut fx);
                        self.start_commit(&mut fx);
                    }
                }
            }
            return fx;
        }
        if !matches!(op, FsOp::SyncDevices)
            && let Err(e) = self.dir.apply(&op)
        {
            fx.plan_error = Some(format!("a metadata plan failed at {op:?}: {e}"));
        }
        if self.cfg.ack_before_sync
            && lane == Lane::Journal
            && self.writer.group_commit_in_flight()
            && matches!(&op, FsOp::Write { file, .. }
                if *file == files::journal(self.writer.stats().number))
        {
            // The mutant acknowledges at the write of the frames, before their sync.
            self.writer.ack_written();
            self.settle(&mut fx);
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
        match lane {
            Lane::Checkpoint => {
                self.writer.checkpoint_done(&task.plan, Ok(()));
                self.checkpoints += 1;
                // Group commits the rotation held back (`Writer::held_back`).
                self.start_commit(&mut fx);
            }
            Lane::Journal => {
                self.syncs += 1;
                let switched = self.writer.complete(Ok(()));
                let adopts =
                    |op: &FsOp| matches!(op, FsOp::Adopt { from, .. } if from == files::RECYCLED);
                if switched.is_some() && task.plan.iter().any(adopts) {
                    self.recycled += 1;
                }
                if let Some((number, planner)) =
                    switched.and_then(|n| Some((n, self.writer.checkpoint_planner()?)))
                {
                    // The checkpoint is taken after the switch, at its
                    // `WriteImage` step: it holds every record of the
                    // journals it replaces.
                    let ops = planner.plan_streamed(number, &self.dir.list());
                    let delay = ops.first().map_or(0, |op| self.latency(op));
                    self.checkpoint = Some(Task {
                        checkpoint: Some((number, planner)),
                        ..Task::new(ops)
                    });
                    fx.schedule.push((Lane::Checkpoint, delay));
                }
                self.settle(&mut fx);
                self.start_commit(&mut fx);
            }
        }
        fx
    }

    /// The injected error that fails `op`, if any: an I/O error at a write, a
    /// sync, or a directory operation (a failed rename, remove or cut leaves the
    /// directory as it was; a failed directory sync leaves its operations
    /// undurable, to be undone or kept by a crash), or a full disk at a write,
    /// which writes a prefix of its bytes first (a short write).
    pub(crate) fn injected_error(&mut self, op: &FsOp) -> Option<Error> {
        if matches!(
            op,
            FsOp::WriteImage { .. } | FsOp::SyncDevices | FsOp::DeviceWrite { .. }
        ) {
            return None;
        }
        if self.rng.random_range(0..1_000_000) < self.cfg.transient_ppm {
            if let FsOp::Sync { file } = op {
                let how = match self.rng.random_range(0..3) {
                    0 => FailedSync::KeptDirty,
                    1 => FailedSync::KeptClean,
                    _ => FailedSync::Dropped,
                };
                self.dir.fail_sync(file, how);
            }
            return Some(injected(op));
        }
        if let FsOp::Write {
            file,
            offset,
            bytes,
        } = op
            && self.rng.random_range(0..1_000_000) < self.cfg.disk_full_ppm
        {
            let keep = self.rng.random_range(0..=bytes.len());
            let short = FsOp::Write {
                file: file.clone(),
                offset: *offset,
                bytes: Bytes::from(&bytes[..keep]),
            };
            // A plan step that does not fit the directory shows in `apply` again
            // when the step runs whole.
            let _ = self.dir.apply(&short);
            return Some(Error::DiskFull {
                device: crate::journal::METADATA_DEVICE,
                op: "write",
            });
        }
        None
    }

    /// The error a device write of a recovery plan (the redo of inline data),
    /// which [`injected_error`](Self::injected_error) leaves to the world,
    /// meets now, if any: a full disk (a draw at `disk_full_ppm`: the open
    /// then releases the reserve for it), else EIO (a draw at
    /// `transient_ppm`: the open fails and runs again on what the plan
    /// left), each from a stream of its own.
    pub(crate) fn device_write_error(&mut self, device: u16) -> Option<Error> {
        if self.device_rng.random_range(0..1_000_000) < self.cfg.disk_full_ppm {
            return Some(Error::DiskFull {
                device,
                op: "write",
            });
        }
        (self.recovery_io_rng.random_range(0..1_000_000) < self.cfg.transient_ppm).then(|| {
            Error::Io {
                device,
                op: "write",
                kind: std::io::ErrorKind::Other,
                message: "injected device error".into(),
            }
        })
    }

    /// Times the metadata reserve was released on a full disk, over every run.
    pub(crate) fn reserve_releases(&self) -> u64 {
        self.released_before + self.writer.stats().reserve_releases
    }

    /// A reserve the writer counts held that the directory does not hold whole
    /// (a violation: new writes would be accepted with no room kept for the
    /// metadata).
    pub(crate) fn reserve_missing(&self) -> Option<String> {
        let held = self.reserve_bytes() > 0 && !self.writer.space_low();
        let len = self.dir.len(crate::journal::files::RESERVE).unwrap_or(0) as u64;
        (held && len < self.reserve_bytes()).then(|| {
            format!(
                "the writer counts the metadata reserve held, but the file holds {len} of its {} bytes",
                self.reserve_bytes()
            )
        })
    }

    /// Whether the metadata reserve is not held (writes are refused).
    pub(crate) fn space_low(&self) -> bool {
        self.writer.space_low()
    }

    /// Tries to make the reserve again if it is not held (at once, between two
    /// events: a power cut does not fall inside it); returns whether it is held.
    pub(crate) fn restore_reserve(&mut self) -> bool {
        let Some(ops) = self.writer.restore_reserve() else {
            return !self.writer.space_low();
        };
        let mut result = Ok(());
        for op in &ops {
            if let Some(err) = self.injected_error(op) {
                result = Err(err);
                break;
            }
            if let Err(e) = self.dir.apply(op) {
                result = Err(Error::Internal {
                    what: "the reserve's plan did not fit the directory",
                });
                let _ = e;
                break;
            }
        }
        let cleanup = self.writer.reserve_restored(result);
        for op in &cleanup {
            let _ = self.dir.apply(op);
        }
        if !cleanup.is_empty() {
            self.writer.reserve_cleaned();
        }
        !self.writer.space_low()
    }

    /// After recovery: appends go on with the writer the open planned.
    pub(crate) fn reset(&mut self, writer: Writer) {
        self.released_before += self.writer.stats().reserve_releases;
        self.writer = writer;
        self.waiters.clear();
        self.journal = None;
        self.checkpoint = None;
    }
}

/// The error of an injected metadata fault.
fn injected(op: &FsOp) -> Error {
    Error::Io {
        device: crate::journal::METADATA_DEVICE,
        op: match op {
            FsOp::Write { .. } => "write",
            FsOp::Rename { .. } | FsOp::Adopt { .. } => "rename",
            FsOp::Remove { .. } => "remove",
            FsOp::Truncate { .. } => "truncate",
            _ => "sync",
        },
        kind: std::io::ErrorKind::Other,
        message: "injected journal error".into(),
    }
}
