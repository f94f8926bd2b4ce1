//! The end of a rotation: the checkpoint that retires the journals before
//! the switch, planned without the writer's lock and reported back.

use super::{CheckpointPlanner, Writer};
use crate::error::{Error, Result};
use crate::journal::files;
use crate::journal::plan::FsOp;

impl Writer {
    /// What the rotation's checkpoint is planned with ([`CheckpointPlanner::plan`],
    /// from the live image taken after the switch), planned without the
    /// writer's lock: encoding the image of a large table takes about 0.1 s per
    /// million records, which group commits must not wait for.
    ///
    /// `None` once the journal failed: the rotation ends without a checkpoint.
    /// The live state may then hold what the journal never made durable, and
    /// only a reopen decides that; the old checkpoint and the journals since
    /// stay current.
    pub(crate) fn checkpoint_planner(&mut self) -> Option<CheckpointPlanner> {
        if self.failed.is_some() {
            self.rotating = false;
            return None;
        }
        Some(CheckpointPlanner {
            devices: self.devices,
            mutants: self.mutants,
            // Not while the reserve is released: the disk is full, and the
            // journal it retires is space to make the reserve again from.
            recycle: self.recycle && !self.space_low(),
        })
    }

    /// The checkpoint's plan `ops` ended: the rotation is over either way (a
    /// failure leaves the old checkpoint current, which is still correct), unless
    /// the disk was full and there was space to release (see
    /// [`release_reserve_for`](Self::release_reserve_for)): then the plan to run
    /// instead, behind the release.
    pub(crate) fn checkpoint_done(
        &mut self,
        ops: &[FsOp],
        result: Result<()>,
    ) -> Option<Vec<FsOp>> {
        self.release_ended(ops);
        // A checkpoint's plan turned away by a restore runs again on the
        // checkpointer's thread, after the restore (`Journal::checkpoint`).
        self.behind_restore = false;
        if let Err(err) = &result
            && let Some(retry) = self.release_reserve_for(err, ops)
        {
            return Some(retry);
        }
        self.rotating = false;
        // A full disk with nothing to release neither counts nor resets the
        // count: deletes and `reclaim_space` make room again without a reopen
        // (FPRE029), and a later checkpoint then succeeds.
        match &result {
            Ok(()) => self.failed_checkpoints = 0,
            Err(Error::DiskFull { .. }) => {}
            Err(err) => {
                self.failed_checkpoints += 1;
                if self.failed_checkpoints >= super::MAX_FAILED_CHECKPOINTS {
                    self.failed.get_or_insert(Error::JournalFailed {
                        cause: format!(
                            "{} checkpoints in a row failed, so none can retire the journals (which would grow without bound); the last: {err}",
                            self.failed_checkpoints
                        ),
                    });
                }
            }
        }
        if result.is_ok() {
            self.stats.checkpoints += 1;
            let recycled =
                |op: &FsOp| matches!(op, FsOp::Adopt { to, .. } if to == files::RECYCLED);
            let removed =
                |op: &FsOp| matches!(op, FsOp::Remove { file } if file == files::RECYCLED);
            if ops.iter().any(recycled) {
                self.recycled = Some(self.retired);
            } else if ops.iter().any(removed) {
                self.recycled = None;
            }
        }
        None
    }

    /// With the recycled journal found at open, `len` bytes long; journals are
    /// recycled if `recycle` (see `plan::checkpoint`), else the next
    /// checkpoint removes that file (and a full disk before it, see
    /// [`release_reserve_for`](Self::release_reserve_for)).
    pub(crate) fn with_recycled(mut self, recycle: bool, len: Option<u64>) -> Self {
        self.recycle = recycle;
        self.recycled = len;
        self
    }

    /// Whether a rotation's checkpoint is under way.
    pub(crate) fn rotating(&self) -> bool {
        self.rotating
    }
}
