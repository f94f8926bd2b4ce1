//! The metadata reserve: space held for the journal and checkpoints, released
//! on a full disk so that deletes, commits, checkpoints and `close` keep room
//! (see the writer's module docs, "A full disk").

use super::Writer;
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::journal::files;
use crate::journal::plan::FsOp;

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
        let released = self.releases_running > 0 && !self.mutants.restore_during_release;
        // Not once closed: the directory may be another store's by then. Not
        // before a plan a restore turned away ran again: a restore after
        // restore would keep taking the room it needs.
        if !self.space_low() || self.restoring || released || self.closed || self.behind_restore {
            return None;
        }
        self.restoring = true;
        // A journal recycled while the reserve was released (a checkpoint
        // planned before the release) goes first: the reserve needs the room
        // more.
        let recycled = self.recycled.take().map(|_| FsOp::Remove {
            file: files::RECYCLED.into(),
        });
        let mut plan = Vec::from_iter(recycled.into_iter().chain([FsOp::Remove {
            file: files::RESERVE.into(),
        }]));
        plan.extend(zeros(files::RESERVE, self.reserve_bytes));
        plan.extend([
            FsOp::Sync {
                file: files::RESERVE.into(),
            },
            FsOp::SyncDir,
        ]);
        Some(plan)
    }

    /// The reserve's plan ended: held if it succeeded; else the plan that removes
    /// what was written of it (best effort), so the space goes back. A failed
    /// restore stays under way until [`reserve_cleaned`](Self::reserve_cleaned):
    /// a restore begun before its removal ran would lose its file to it, and
    /// be counted held with no file on disk.
    pub(crate) fn reserve_restored(&mut self, result: Result<()>) -> Vec<FsOp> {
        if result.is_ok() {
            self.restoring = false;
            self.reserve_held = true;
            return Vec::new();
        }
        vec![FsOp::Remove {
            file: files::RESERVE.into(),
        }]
    }

    /// Whether a restore (or its cleanup) is under way: `close` waits for it.
    pub(crate) fn restoring(&self) -> bool {
        self.restoring
    }

    /// The removal [`reserve_restored`](Self::reserve_restored) handed out
    /// ran (either way): a restore may start again.
    pub(crate) fn reserve_cleaned(&mut self) {
        self.restoring = false;
    }

    /// A plan [`release_reserve_for`](Self::release_reserve_for) handed out
    /// (any plan is passed: only one holding the reserve's removal counts)
    /// ended, either way: a restore may start again.
    pub(crate) fn release_ended(&mut self, ops: &[FsOp]) {
        if removes_reserve(ops) {
            // Bounded below: only plans that counted are counted back.
            self.releases_running = self.releases_running.saturating_sub(1);
        }
    }

    /// On a full disk: releases the reserve, if held, and the recycled
    /// journal, if there is one, and returns `ops` behind their removal, to run
    /// again. `None` for any other failure, or when there is nothing to release
    /// (the failure stands).
    ///
    /// A checkpoint's plan run again keeps nothing for recycling: the journal
    /// it retires goes, as without recycling, so that what deletes and
    /// checkpoints free is there to make the reserve from (and checkpoints
    /// recycle none until it is made again, see `Writer::checkpoint_planner`).
    /// A switch in `ops` that adopts the recycled journal still does: the
    /// switch took it (`recycled` is then `None`), and a file already
    /// allocated is what a full disk wants.
    pub(crate) fn release_reserve_for(&mut self, err: &Error, ops: &[FsOp]) -> Option<Vec<FsOp>> {
        // A full disk on any device: a reopen's plan also writes inline data
        // back to the device files (the redo), and a store that could not open
        // could not delete anything to make room.
        if !matches!(err, Error::DiskFull { .. }) {
            return None;
        }
        let mut retry = Vec::new();
        if self.reserve_held {
            self.reserve_held = false;
            self.stats.reserve_releases += 1;
            retry.push(FsOp::Remove {
                file: files::RESERVE.into(),
            });
        }
        // Also when the reserve was released before (an open after a power
        // cut finds none held), or journals are no longer recycled.
        if self.recycled.take().is_some() {
            retry.push(FsOp::Remove {
                file: files::RECYCLED.into(),
            });
        }
        if retry.is_empty() {
            // Nothing to release, but a restore is writing the reserve: it took
            // the room (the space deletes freed). The same plan runs again once
            // it ended: it then made the reserve, which the plan releases if the
            // disk is still full, or removed what it wrote. Rewriting the same
            // bytes at the same offsets is safe as for a release (no sync ran).
            if self.restoring {
                self.behind_restore = true;
                return Some(ops.to_vec());
            }
            return None;
        }
        retry.push(FsOp::SyncDir);
        // `ops` may be such a plan already, holding the removal: run again, it
        // counts again (a restore run before it would lose its file to it).
        retry.extend(ops.iter().map(|op| match op {
            FsOp::Adopt { from, to } if to == files::RECYCLED => {
                FsOp::Remove { file: from.clone() }
            }
            op => op.clone(),
        }));
        if removes_reserve(&retry) {
            self.releases_running += 1;
        }
        Some(retry)
    }
}

/// Whether `ops` remove the reserve file.
fn removes_reserve(ops: &[FsOp]) -> bool {
    (ops.iter()).any(|op| matches!(op, FsOp::Remove { file } if file == files::RESERVE))
}

#[cfg(all(test, not(loom)))]
mod tests {

    /// The reserve is written in chunks of at most 1 MiB that share one
    /// buffer, covering exactly its length; an empty one is still one write.
    #[test]
    fn the_reserve_is_written_in_chunks_of_one_shared_buffer() {
        let plan = super::zeros("R", (3 << 20) + 5);
        let writes: Vec<(u64, usize, *const u8)> = (plan.iter())
            .map(|op| match op {
                FsOp::Write { offset, bytes, .. } => (*offset, bytes.len(), bytes.as_ptr()),
                other => panic!("{other:?}"),
            })
            .collect();
        let spans: Vec<(u64, usize)> = writes.iter().map(|w| (w.0, w.1)).collect();
        assert_eq!(
            spans,
            [
                (0, 1 << 20),
                (1 << 20, 1 << 20),
                (2 << 20, 1 << 20),
                (3 << 20, 5)
            ]
        );
        assert!(writes[..3].iter().all(|w| w.2 == writes[0].2), "one buffer");
        let empty = super::zeros("R", 0);
        assert!(matches!(&empty[..], [FsOp::Write { offset: 0, bytes, .. }] if bytes.is_empty()));
    }
    use super::*;
    use crate::journal::{HEADER_LEN, Image};

    fn disk_full(device: u16) -> Error {
        Error::DiskFull {
            device,
            op: "write",
        }
    }

    /// Journal 2 is active; journal 1 and checkpoint 1 are on disk.
    fn writer(reserve_found: Option<u64>, recycle: bool, recycled: Option<u64>) -> Writer {
        Writer::new(1, 1 << 20, 2, HEADER_LEN as u64, 0)
            .with_reserve(4096, reserve_found)
            .with_recycled(recycle, recycled)
    }

    fn existing() -> Vec<String> {
        vec![files::journal(1), files::journal(2), files::checkpoint(1)]
    }

    fn recycles(ops: &[FsOp]) -> bool {
        (ops.iter()).any(|op| matches!(op, FsOp::Adopt { to, .. } if to == files::RECYCLED))
    }

    fn removes(ops: &[FsOp], name: &str) -> bool {
        (ops.iter()).any(|op| matches!(op, FsOp::Remove { file } if file == name))
    }

    /// A checkpoint planned to recycle the journal it retires, whose image
    /// write finds the disk full: run again behind the release, it removes
    /// that journal instead, so that the space is there to make the reserve
    /// from; the rest of the plan is the same.
    #[test]
    fn a_checkpoint_run_again_on_a_full_disk_recycles_nothing() {
        let mut w = writer(Some(4096), true, None);
        let plan = (w.checkpoint_planner().unwrap()).plan(2, &Image::default(), &existing());
        assert!(recycles(&plan), "{plan:?}");
        let retry = w.checkpoint_done(&plan, Err(disk_full(METADATA))).unwrap();
        assert!(removes(&retry, files::RESERVE) && w.space_low());
        assert!(
            !recycles(&retry) && removes(&retry, &files::journal(1)),
            "{retry:?}"
        );
        assert_eq!(
            retry.len(),
            plan.len() + 2,
            "the removal, a directory sync, the plan"
        );
        assert_eq!(w.checkpoint_done(&retry, Ok(())), None);
        assert_eq!(w.recycled, None, "nothing kept for the next switch");
        // Planned while the reserve is released, a checkpoint recycles nothing.
        let next = (w.checkpoint_planner().unwrap()).plan(3, &Image::default(), &existing());
        assert!(!recycles(&next), "{next:?}");
    }

    /// A checkpoint planned before a group commit released the reserve still
    /// recycles its journal; making the reserve again removes that journal
    /// first.
    #[test]
    fn a_journal_recycled_while_the_reserve_is_released_goes_before_it_is_made_again() {
        let mut w = writer(Some(4096), true, None);
        let planner = w.checkpoint_planner().unwrap();
        let t = w.append(&[crate::journal::tests::put(1, 1)]).unwrap();
        w.next_write().unwrap();
        w.complete(Err(disk_full(METADATA)));
        assert!(w.space_low());
        let plan = planner.plan(2, &Image::default(), &existing());
        assert!(recycles(&plan));
        assert_eq!(w.checkpoint_done(&plan, Ok(())), None);
        let again = w.next_write().unwrap();
        w.complete(Ok(()));
        assert!(!again.is_empty() && w.status(t, crate::record::ExtentId(1)) == Some(Ok(())));
        let restore = w.restore_reserve().unwrap();
        assert!(
            matches!(&restore[0], FsOp::Remove { file } if file == files::RECYCLED),
            "{restore:?}"
        );
        assert!(w.reserve_restored(Ok(())).is_empty() && !w.space_low());
        assert_eq!(w.recycled, None);
    }

    /// An open after a power cut finds the reserve released and a recycled
    /// journal: a full disk in its plan (a device write of its redo, too)
    /// removes that journal and runs the rest again; with nothing left to
    /// release, the failure stands.
    #[test]
    fn a_full_disk_without_the_reserve_releases_the_recycled_journal() {
        for recycle in [true, false] {
            let mut w = writer(None, recycle, Some(1 << 20));
            let ops = [FsOp::SyncDir];
            let retry = w.release_reserve_for(&disk_full(0), &ops).unwrap();
            assert!(
                matches!(&retry[..], [FsOp::Remove { file }, FsOp::SyncDir, FsOp::SyncDir]
                if file == files::RECYCLED)
            );
            assert!(w.release_reserve_for(&disk_full(0), &ops).is_none());
            let eio = Error::Io {
                device: METADATA,
                op: "write",
                kind: std::io::ErrorKind::Other,
                message: "EIO".into(),
            };
            assert!(
                writer(Some(4096), recycle, Some(1))
                    .release_reserve_for(&eio, &ops)
                    .is_none()
            );
        }
    }

    /// With recycling turned off, a recycled journal found at open is not
    /// written over by the next switch.
    #[test]
    fn a_switch_adopts_the_recycled_journal_only_when_recycling() {
        for recycle in [true, false] {
            let mut w =
                Writer::new(1, 64, 2, HEADER_LEN as u64, 0).with_recycled(recycle, Some(4096));
            w.append(&[crate::journal::tests::put(1, 1)]).unwrap();
            let first = w.next_write().unwrap();
            w.complete(Ok(()));
            w.append(&[crate::journal::tests::put(2, 1)]).unwrap();
            let switch = w.next_write().unwrap();
            let adopts = (first.iter().chain(&switch))
                .any(|op| matches!(op, FsOp::Adopt { from, .. } if from == files::RECYCLED));
            assert_eq!(adopts, recycle, "{first:?} {switch:?}");
        }
    }

    /// A plan run behind the reserve's release removes the reserve file: a
    /// restore that ran first would lose its file to that removal while the
    /// writer counts the reserve held. So none starts until the plan's outcome
    /// is reported: a group commit's, a checkpoint's or an open's.
    #[test]
    fn no_restore_starts_while_a_plan_behind_the_release_runs() {
        let mut w = writer(Some(4096), true, None);
        let t = w.append(&[crate::journal::tests::put(1, 1)]).unwrap();
        w.next_write().unwrap();
        w.complete(Err(disk_full(METADATA)));
        assert!(w.space_low());
        assert!(w.restore_reserve().is_none(), "the removal has not run");
        let retry = w.next_write().unwrap();
        assert!(removes(&retry, files::RESERVE));
        assert!(w.restore_reserve().is_none(), "nor has it ended");
        w.complete(Ok(()));
        assert_eq!(w.status(t, crate::record::ExtentId(1)), Some(Ok(())));
        assert!(w.restore_reserve().is_some(), "it ended");

        let mut w = writer(Some(4096), true, None);
        let plan = (w.checkpoint_planner().unwrap()).plan(2, &Image::default(), &existing());
        let retry = w.checkpoint_done(&plan, Err(disk_full(METADATA))).unwrap();
        assert!(w.restore_reserve().is_none());
        // Failed again: nothing left to release, the rotation ends.
        assert!(
            w.checkpoint_done(&retry, Err(disk_full(METADATA)))
                .is_none()
        );
        assert!(w.restore_reserve().is_some());

        let mut w = writer(Some(4096), true, None);
        let retry = w
            .release_reserve_for(&disk_full(0), &[FsOp::SyncDir])
            .unwrap();
        assert!(w.restore_reserve().is_none());
        w.release_ended(&retry);
        assert!(w.restore_reserve().is_some());

        // A group commit's plan run again fails again, and a checkpoint
        // planned before the release has recycled a journal meanwhile: the
        // next retry releases that, and still holds the reserve's removal.
        let mut w = writer(Some(4096), true, None);
        let planner = w.checkpoint_planner().unwrap();
        w.append(&[crate::journal::tests::put(1, 1)]).unwrap();
        w.next_write().unwrap();
        w.complete(Err(disk_full(METADATA)));
        let first = w.next_write().unwrap();
        let plan = planner.plan(2, &Image::default(), &existing());
        assert_eq!(w.checkpoint_done(&plan, Ok(())), None);
        assert!(w.recycled.is_some());
        w.complete(Err(disk_full(METADATA)));
        let second = w.next_write().unwrap();
        assert!(removes(&second, files::RECYCLED) && removes(&second, files::RESERVE));
        assert_eq!(&second[2..], &first[..], "{second:?}");
        assert!(w.restore_reserve().is_none(), "the removal runs again");
        w.complete(Ok(()));
        assert!(w.restore_reserve().is_some());
    }

    /// A restore writing the reserve takes the room deletes freed; a group
    /// commit (or a checkpoint) meeting the full disk then, with nothing to
    /// release, runs again once the restore ended instead of failing the
    /// journal: behind the reserve's release if the restore made it, as it
    /// was if the restore failed and removed what it wrote. No restore starts
    /// before it ran again.
    #[test]
    fn a_plan_a_restore_took_the_room_from_runs_again_after_it() {
        for restored in [true, false] {
            // The reserve was released earlier (the disk filled), nothing recycled.
            let mut w = writer(None, true, None);
            assert!(w.space_low());
            w.restore_reserve().expect("a restore starts");
            let t = w.append(&[crate::journal::tests::put(1, 1)]).unwrap();
            let group = w.next_write().unwrap();
            w.complete(Err(disk_full(METADATA)));
            assert!(w.failure().is_none(), "the journal did not fail");
            assert!(
                w.held_back() && w.next_write().is_none(),
                "behind the restore"
            );
            assert_eq!(w.status(t, crate::record::ExtentId(1)), None);
            match restored {
                true => assert!(w.reserve_restored(Ok(())).is_empty()),
                false => {
                    assert!(!w.reserve_restored(Err(disk_full(METADATA))).is_empty());
                    assert!(w.next_write().is_none(), "its cleanup still runs");
                    w.reserve_cleaned();
                }
            }
            assert!(
                w.restore_reserve().is_none(),
                "not before the plan ran again"
            );
            let again = w.next_write().expect("the plan again");
            assert_eq!(again, group);
            if restored {
                // Still full: now the reserve is there to release.
                w.complete(Err(disk_full(METADATA)));
                let retry = w.next_write().expect("behind the release");
                assert!(removes(&retry, files::RESERVE));
            }
            w.complete(Ok(()));
            assert_eq!(w.status(t, crate::record::ExtentId(1)), Some(Ok(())));
        }
        // With no restore running, a full disk with nothing to release
        // fails the journal as before.
        let mut w = writer(None, true, None);
        w.append(&[crate::journal::tests::put(1, 1)]).unwrap();
        w.next_write().unwrap();
        w.complete(Err(disk_full(METADATA)));
        assert!(w.failure().is_some());
        // A checkpoint's plan: handed back to run after the restore.
        let mut w = writer(None, true, None);
        let plan = (w.checkpoint_planner().unwrap()).plan(2, &Image::default(), &existing());
        w.restore_reserve().expect("a restore starts");
        let again = w
            .checkpoint_done(&plan, Err(disk_full(METADATA)))
            .expect("run again");
        assert_eq!(again, plan);
        assert!(w.restoring() && w.held_back());
    }

    const METADATA: u16 = crate::journal::METADATA_DEVICE;
}

/// The writes of `len` zero bytes to `file`, in chunks of at most 1 MiB that
/// share one buffer: a reserve of gigabytes (the docs advise about 70 bytes
/// per extent) costs 1 MiB of memory, not its size (an allocation that size
/// could abort the process). At least one write (it creates the file).
/// Bounded: `len / 1 MiB + 1` writes.
fn zeros(file: &str, len: u64) -> Vec<FsOp> {
    const CHUNK: u64 = 1 << 20;
    let chunk = Bytes::zeroed(len.min(CHUNK) as usize);
    (0..len.div_ceil(CHUNK).max(1))
        .map(|i| {
            let offset = i * CHUNK;
            let bytes = match len - offset {
                rest if rest < CHUNK => Bytes::zeroed(rest as usize),
                _ => chunk.clone(),
            };
            FsOp::Write {
                file: file.into(),
                offset,
                bytes,
            }
        })
        .collect()
}
