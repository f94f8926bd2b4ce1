//! The metadata reserve: space held for the journal and checkpoints, released
//! on a full disk so that deletes, commits, checkpoints and `close` keep room
//! (see the writer's module docs, "A full disk").

use super::Writer;
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::journal::plan::FsOp;
use crate::journal::files;

impl Writer {
    /// With a metadata reserve of `bytes` (0: none), held if the reserve file
    /// found at open is `found` bytes long, at least `bytes`; else the driver runs
    /// [`restore_reserve`](Self::restore_reserve)'s plan once the store is open.
    pub(crate) fn with_reserve(mut self, bytes: u64, found: Option<u64>) -> Self {
        self.reserve_bytes = bytes;
        self.reserve_held = bytes > 0 && found.is_some_and(|len| len >= bytes);
        self
    }

    /// Whether the reserve is not held (released on a full disk, or never made):
    /// new writes are refused ([`Error::DiskFull`]) until it is restored.
    pub(crate) fn space_low(&self) -> bool {
        self.reserve_bytes > 0 && !self.reserve_held
    }

    /// The plan that (re)creates the reserve file, written whole and synced, if the
    /// reserve is not held and no other restore runs. Report its outcome to
    /// [`reserve_restored`](Self::reserve_restored).
    pub(crate) fn restore_reserve(&mut self) -> Option<Vec<FsOp>> {
        if !self.space_low() || self.restoring {
            return None;
        }
        self.restoring = true;
        let len = usize::try_from(self.reserve_bytes).unwrap_or(usize::MAX);
        Some(vec![
            FsOp::Remove {
                file: files::RESERVE.into(),
            },
            FsOp::Write {
                file: files::RESERVE.into(),
                offset: 0,
                bytes: Bytes::zeroed(len),
            },
            FsOp::Sync {
                file: files::RESERVE.into(),
            },
            FsOp::SyncDir,
        ])
    }

    /// The reserve's plan ended: held if it succeeded; else the plan that removes
    /// what was written of it (best effort), so the space goes back.
    pub(crate) fn reserve_restored(&mut self, result: Result<()>) -> Vec<FsOp> {
        self.restoring = false;
        if result.is_ok() {
            self.reserve_held = true;
            return Vec::new();
        }
        vec![FsOp::Remove {
            file: files::RESERVE.into(),
        }]
    }

    /// On a full disk with the reserve held: releases it and returns `ops` behind
    /// the removal, to run again. `None` for any other failure.
    pub(crate) fn release_reserve_for(&mut self, err: &Error, ops: &[FsOp]) -> Option<Vec<FsOp>> {
        // A full disk on any device: a reopen's plan also writes inline data
        // back to the device files (the redo), and a store that could not open
        // could not delete anything to make room.
        if !matches!(err, Error::DiskFull { .. }) || !self.reserve_held {
            return None;
        }
        self.reserve_held = false;
        self.stats.reserve_releases += 1;
        let mut retry = vec![FsOp::Remove {
            file: files::RESERVE.into(),
        }];
        // A recycled journal holds space too: it goes with the reserve, and
        // checkpoints recycle none until the reserve is made again (see
        // `Writer::checkpoint_planner`), so that what deletes and checkpoints
        // free is there to make it from. A switch in `ops` that would adopt
        // it writes its journal as a new file instead.
        if self.recycled.take().is_some() {
            retry.push(FsOp::Remove {
                file: files::RECYCLED.into(),
            });
        }
        retry.push(FsOp::SyncDir);
        retry.extend_from_slice(ops);
        Some(retry)
    }
}
