//! Backups of an open store ([`Store::checkpoint_to`]).

use super::Store;
use super::durable::{Dir, io_error};
use crate::bytes::Bytes;
use crate::error::{Error, Result};
use crate::journal::files;
use crate::journal::plan::FsOp;
use crate::record::ExtentId;
use std::path::Path;

/// What [`Store::checkpoint_to`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backup {
    /// Records in the backup's checkpoint (extents ever committed, deleted ones
    /// included).
    pub records: u64,
    /// Bytes of device files copied.
    pub device_bytes: u64,
    /// Bytes of device files that could not be read and that no durable
    /// record of the backup references (free space, locations retired as bad,
    /// a quarantined extent's unreadable sectors), written to the copy as
    /// zeros: a sector a real disk keeps failing fails no backup unless the
    /// backup needs its bytes.
    pub unreadable_bytes: u64,
}

/// Bytes per read and write of the device copy.
const COPY_CHUNK: usize = 1 << 20;

/// The smallest piece of a failed read that the copy reads again on its own:
/// the smallest sector a disk fails in.
const SECTOR: u64 = 512;

/// The file a backup in progress holds from its first step to its last: a
/// directory with it and no `CURRENT` is a backup cut short, which an open
/// refuses as holding files but no store (without it, a backup cut short
/// before any data was copied would look like a store whose creation stopped,
/// and open as a new empty store).
pub(super) const IN_PROGRESS: &str = "BACKUP-IN-PROGRESS";

impl Store {
    /// Writes a copy of this durable store as of one instant during the call
    /// into `dir`, while reads and writes go on: [`Store::open`] of `dir` then
    /// finds every write acknowledged before that instant, none begun after
    /// it, and of the writes in flight at it each whole or not at all. A batch
    /// is in it whole or not at all, but for a write of it that a quarantine
    /// or remap of its extent overtook (proposed again after it, as `write_batch`
    /// says), as after a crash.
    ///
    /// The instant: the journal holds back its next group commit while the
    /// backup reads the table's records (the one in flight still completes),
    /// so writes wait for that read, about a tenth of a second per million
    /// extents, and so do reads that journal something (a quarantine, a
    /// remap, a device marked degraded); other reads do not wait, and the copy
    /// of the device files runs after the read, while writes go on.
    ///
    /// How: it pins the store's retired locations (none is reused until the
    /// copy is done, as for a reader; writes that need space meanwhile may find
    /// less), takes the live image (the table's records and the writes in
    /// flight), copies every device file and syncs it, then writes the image as
    /// the backup's checkpoint with an empty journal, and the `CURRENT` pointer
    /// last. Device files are copied, never hard-linked: later writes reuse
    /// their free space in place, which would change a linked backup. The
    /// backup's metadata is written fresh from the image (nothing to replay).
    /// A backup cut short (a crash, an error) has no `CURRENT` and holds a
    /// `BACKUP-IN-PROGRESS` file: opening it fails with [`Error::NotAStore`]
    /// and changes nothing. After an error the call removes what it had
    /// copied (best effort) and leaves that file, and a later `checkpoint_to`
    /// into the same directory starts the backup again; but an error from
    /// the last step, the directory's sync after the marker's removal, leaves
    /// a whole backup that opens (and that a later `checkpoint_to` refuses
    /// with [`Error::NotAStore`], as any store's directory).
    ///
    /// The backup holds `dir`'s lock (the `LOCK` file a store takes) for the
    /// whole call: a second backup into `dir` meanwhile fails with
    /// [`Error::Locked`] instead of mixing its files with this one's, and a
    /// [`Store::open`] of it is refused ([`Error::NotAStore`] once the marker
    /// is written, [`Error::Locked`] before).
    ///
    /// A part of a device file that cannot be read fails the backup only
    /// where a durable record needs its bytes; elsewhere (free space, a
    /// location retired as bad, which a real disk may keep failing) the copy
    /// holds zeros, counted in [`Backup::unreadable_bytes`]. A quarantined
    /// extent's bytes are copied sector by sector where they read, zeros
    /// where they do not: a repair from the backup has what was left.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a store without a journal (an in-memory
    /// one); [`Error::NotAStore`] if `dir` is a file, or a directory that
    /// holds anything but a backup cut short; [`Error::Locked`] while another
    /// backup into `dir`, or a store open in it, holds its lock;
    /// [`Error::DiskFull`] when the file system of `dir` is full (free space
    /// there, then call again); [`Error::Io`] for a failed read, write or
    /// sync (device [`METADATA_DEVICE`](crate::store::METADATA_DEVICE) for
    /// the backup's files; a device's own number for a read of its file that
    /// the backup needs), or a panic in the file system under the backup;
    /// [`Error::DeviceSyncFailed`], until a reopen, after a failed sync of a
    /// device that a write past the inline bound had written to (its record
    /// may name data the sync dropped; checkpoints wait for the reopen too);
    /// [`Error::Shutdown`] once [`close`](Self::close) began.
    ///
    /// # Examples
    ///
    /// ```
    /// use extentmeta::{ExtentId, Store, StoreConfig};
    ///
    /// let tmp = tempfile::tempdir()?;
    /// let store = Store::open(tmp.path().join("live"), StoreConfig::default())?;
    /// store.write(ExtentId(7), b"kept in the backup")?;
    /// let backup = store.checkpoint_to(tmp.path().join("backup"))?;
    /// assert_eq!(backup.records, 1);
    /// store.write(ExtentId(7), b"after the backup")?;
    /// drop(store);
    /// let copy = Store::open(tmp.path().join("backup"), StoreConfig::default())?;
    /// assert_eq!(&*copy.read(ExtentId(7))?, b"kept in the backup");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint_to(&self, dir: impl AsRef<Path>) -> Result<Backup> {
        // Before the check: a `close` that set `stopping` first waits for
        // this backup, or this backup sees `stopping` (see `Shared::backups`).
        let _running = self.shared.backups.read();
        self.check_open()?;
        let Some(journal) = &self.shared.journal else {
            return Err(Error::InvalidConfig {
                field: "checkpoint_to",
                reason: "a backup needs a durable store (Store::open)".into(),
            });
        };
        let source = journal.dir();
        let target = Dir::new(source.fs.clone(), dir.as_ref());
        // A panic in an engine's `Fs` here is an I/O error too.
        let lock = crate::fs::unless_panicked(
            || claim_target(&target),
            || io_error("backup", &std::io::Error::other("the file system panicked")),
        )?;
        let result = crate::fs::unless_panicked(
            || self.copy_into(journal, &target),
            || io_error("backup", &std::io::Error::other("the file system panicked")),
        );
        if result.is_err() {
            // Best effort, the marker kept: the directory still opens as no
            // store, and the space the partial copy took goes back.
            let _ = crate::fs::unless_panicked(
                || clear_cut_short(&target),
                || io_error("backup", &std::io::Error::other("the file system panicked")),
            );
        }
        drop(lock);
        result
    }

    /// The backup's steps from its marker on, into the claimed `target`.
    fn copy_into(&self, journal: &super::durable::Journal, target: &Dir) -> Result<Backup> {
        let source = journal.dir();
        target.run(&[
            FsOp::Write {
                file: IN_PROGRESS.into(),
                offset: 0,
                bytes: Bytes::from(b"a backup cut short: not a store\n".as_slice()),
            },
            FsOp::Sync {
                file: IN_PROGRESS.into(),
            },
            FsOp::SyncDir,
        ])?;
        let core = &self.shared.core;
        // Pinned before the image: no location the image references is freed
        // (and rewritten by another write) until the copy is done.
        let pin = core.reclaimer.pin();
        // A panic in an engine's `Fs` under the copy is an I/O error here,
        // and the pin is dropped all the same: held for good, it would stop
        // every retired location from being freed until a reopen.
        let result = crate::fs::unless_panicked(
            || {
                // One instant: no record becomes durable during the read but
                // those of the write in flight, whose proposals the read finds
                // (see `journal::writer::cut`).
                let image = {
                    let _cut = journal.hold_cut();
                    core.image()
                };
                // The image holds the overlapped writes in flight as plain
                // records: their data must be durable before the copy reads it,
                // or a failed sync may have dropped its pages and the copy would
                // take the old bytes under a record naming the new ones (an
                // FPRE004 in the backup). As a checkpoint does, and a failed
                // sync fails the backup, as it fails checkpoints until a reopen.
                self.shared.sync_overlapped_devices()?;
                let devices = self.shared.backend.device_count();
                let (mut device_bytes, mut unreadable_bytes) = (0, 0);
                for device in 0..devices {
                    let needed = Needed::of(&image, device);
                    let (copied, zeros) = copy_device(source, target, device, &needed, |copy| {
                        mend_inline_writes(self, device, copy, &image)
                    })?;
                    device_bytes += copied;
                    unreadable_bytes += zeros;
                }
                target.run(&crate::journal::plan::backup(devices, &image))?;
                // Whole now (`CURRENT` is durable): a crash before this removal
                // leaves a stray file beside a store that opens.
                target.run(&[
                    FsOp::Remove {
                        file: IN_PROGRESS.into(),
                    },
                    FsOp::SyncDir,
                ])?;
                Ok(Backup {
                    records: image.records.len() as u64,
                    device_bytes,
                    unreadable_bytes,
                })
            },
            || io_error("backup", &std::io::Error::other("the file system panicked")),
        );
        core.reclaimer.unpin(pin);
        result
    }
}

/// Creates `target`'s directory and takes its lock, refusing a directory
/// that holds anything but a backup cut short, whose files it removes.
/// Returns the lock, held until the backup ends.
fn claim_target(target: &Dir) -> Result<Box<dyn std::any::Any + Send + Sync>> {
    let refuse = |reason: &str| Error::NotAStore {
        path: target.path.display().to_string(),
        reason: reason.into(),
    };
    let fs = &target.fs;
    crate::fs::create_dir_durably(&**fs, &target.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
            refuse("a file that is not a directory is in the way")
        }
        _ => io_error("create dir", &e),
    })?;
    let list = || fs.list(&target.path).map_err(|e| io_error("list", &e));
    let lock_existed = list()?.iter().any(|n| n == files::LOCK);
    let lock_path = target.path.join(files::LOCK);
    let lock =
        (fs.lock(&lock_path).map_err(|e| io_error("lock", &e))?).ok_or_else(|| Error::Locked {
            path: lock_path.display().to_string(),
        })?;
    // Listed under the lock: what another backup or store did before it is
    // on disk by now.
    let names = list()?;
    let others = || names.iter().filter(|n| *n != files::LOCK);
    let cut_short =
        names.iter().any(|n| n == IN_PROGRESS) && !names.iter().any(|n| n == files::CURRENT);
    if others().next().is_some() && !cut_short {
        if !lock_existed {
            // Changes nothing: the lock file was this call's.
            let _ = fs.remove(&lock_path);
        }
        return Err(refuse(
            "a backup goes into a new or empty directory, or one that holds a backup cut short",
        ));
    }
    if cut_short {
        clear_cut_short(target)?;
    }
    Ok(lock)
}

/// Removes every file of `target` but its lock and the marker of a backup
/// cut short, and syncs the directory: what a backup cut short had copied.
/// Nothing without the marker: a backup whose last step (the marker's
/// removal, or the directory sync after it) failed is whole, and without
/// the marker an emptied directory would open as a new store.
fn clear_cut_short(target: &Dir) -> Result<()> {
    let fs = &target.fs;
    target.forget_files();
    let names = fs.list(&target.path).map_err(|e| io_error("list", &e))?;
    if !names.iter().any(|n| n == IN_PROGRESS) {
        return Ok(());
    }
    for name in names {
        if name != files::LOCK && name != IN_PROGRESS {
            match fs.remove(&target.path.join(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error("remove", &e));
                }
                _ => {}
            }
        }
    }
    fs.sync_dir(&target.path)
        .map_err(|e| io_error("sync dir", &e))
}

/// Writes into `copy` (the backup's file of `device`) the bytes of every inline
/// write no sync of the device has covered yet, from the write's own bytes or
/// its journal record, as the store writes them back after a failed sync
/// (`WriteBack::rewrite`): the live file may show
/// old bytes there, pages a failed writeback dropped before the store heard of
/// it, and the backup has no journal to mend them from. Writes after the image
/// are written too, harmlessly: the image references none of their locations
/// (its own are pinned, so none of theirs is reused by a later write).
fn mend_inline_writes(
    store: &Store,
    device: u16,
    copy: &dyn crate::fs::FsFile,
    image: &crate::journal::Image,
) -> Result<()> {
    let mut failed = None;
    let (_, _, missed) = store.shared.core.write_back.rewrite(
        device,
        |location, bytes| {
            if let Err(e) = copy.write_all_at(bytes, location.offset) {
                failed.get_or_insert(e);
            }
        },
        &mut |wanted| store.shared.read_back(wanted),
    );
    // Held writes whose bytes no journal read showed: a write that never
    // committed (its outcome unknown after a failed journal) matters to no
    // record; one the image references would sit in the copy over older
    // bytes, which the backup has no journal to mend, so it fails instead.
    let referenced = !missed.is_empty()
        && (image.records.iter()).any(|r| r.references() && missed.contains(&r.location));
    if referenced {
        failed.get_or_insert(std::io::Error::other(format!(
            "an inline write of device {device} that the backup holds could not be read back from the journal"
        )));
    }
    failed.map_or(Ok(()), |e| Err(io_error("backup write", &e)))
}

/// The byte ranges of one device that the backup's records need: those of
/// its durable records, sorted and merged; and those it keeps where they can
/// be read, a quarantined extent's (its location failed every re-read, but
/// the sectors that still read are what a repair from the backup has).
struct Needed {
    /// Merged, for [`overlaps`](Self::overlaps).
    merged: Vec<(u64, u64)>,
    /// Quarantined extents' ranges, merged, for [`keeps`](Self::keeps).
    kept: Vec<(u64, u64)>,
    /// Each record's span and extent, sorted, to name the extent a failed
    /// read needed.
    spans: Vec<(u64, u64, ExtentId)>,
}

impl Needed {
    fn of(image: &crate::journal::Image, device: u16) -> Self {
        let spans_of = |state: crate::record::State| {
            let mut spans: Vec<(u64, u64, ExtentId)> = (image.records.iter())
                .filter(|r| r.state == state && r.location.device == device)
                .map(|r| {
                    let at = r.location.offset;
                    let end = at.saturating_add(u64::from(r.location.length));
                    (at, end, r.extent)
                })
                .collect();
            spans.sort_unstable();
            spans
        };
        let merge = |spans: &[(u64, u64, ExtentId)]| {
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
            for &(start, end, _) in spans {
                match merged.last_mut() {
                    Some(last) if start <= last.1 => last.1 = last.1.max(end),
                    _ => merged.push((start, end)),
                }
            }
            merged
        };
        let spans = spans_of(crate::record::State::Durable);
        let kept = merge(&spans_of(crate::record::State::Quarantined));
        Needed {
            merged: merge(&spans),
            kept,
            spans,
        }
    }

    /// The extent whose bytes overlap `[at, at + len)`, if any.
    fn owner(&self, at: u64, len: u64) -> Option<ExtentId> {
        (self.spans.iter())
            .find(|&&(start, end, _)| start < at.saturating_add(len) && end > at)
            .map(|&(_, _, extent)| extent)
    }

    /// Whether a needed range overlaps `[at, at + len)`.
    fn overlaps(&self, at: u64, len: u64) -> bool {
        overlap(&self.merged, at, len)
    }

    /// Whether a kept range (a quarantined extent's) overlaps `[at, at +
    /// len)`: its readable sectors are copied.
    fn keeps(&self, at: u64, len: u64) -> bool {
        overlap(&self.kept, at, len)
    }
}

/// Whether one of the sorted, disjoint `ranges` overlaps `[at, at + len)`.
fn overlap(ranges: &[(u64, u64)], at: u64, len: u64) -> bool {
    let first_ending_after = ranges.partition_point(|&(_, end)| end <= at);
    (ranges.get(first_ending_after)).is_some_and(|&(start, _)| start < at.saturating_add(len))
}

/// Copies `device`'s file from `source` to `target` in [`COPY_CHUNK`] pieces,
/// lets `mend` write into the copy, and syncs it: every byte the image can
/// reference was written before the image was taken, so it is in the file (or
/// the page cache) by now, but for pages a failed writeback dropped (`mend`'s
/// business). A piece whose read fails is copied by [`salvage`]. Returns the
/// bytes copied and, of them, those written as zeros.
fn copy_device(
    source: &Dir,
    target: &Dir,
    device: u16,
    needed: &Needed,
    mend: impl FnOnce(&dyn crate::fs::FsFile) -> Result<()>,
) -> Result<(u64, u64)> {
    let name = crate::backend::device_file_name(device);
    let from = source.fs.open(&source.path.join(&name), false);
    let to = target.file(&name, true)?;
    // Every device file exists once the store is open (the open creates
    // them), so any failure, a file removed from outside included, fails the
    // backup: an empty copy would lose that device's data silently.
    let from = from.map_err(|e| Error::io(device, "backup open", &e))?;
    let len = (from.len()).map_err(|e| Error::io(device, "backup read", &e))?;
    let copy = Copy {
        from: &*from,
        to: &*to,
        device,
        needed,
        kept_reads: std::cell::Cell::new(KEPT_READS),
    };
    let mut buf = vec![0u8; COPY_CHUNK];
    let (mut at, mut zeros) = (0u64, 0u64);
    // Bounded: every pass moves `at` on by at least one byte or ends.
    while at < len {
        let want = ((len - at) as usize).min(COPY_CHUNK);
        let got = match crate::fs::read_full_at(copy.from, &mut buf[..want], at) {
            Ok(got) => {
                copy.write(&buf[..got], at)?;
                got as u64
            }
            Err(e) => {
                let (got, zeroed) = copy.salvage(&mut buf[..want], at, &e)?;
                zeros += zeroed;
                got
            }
        };
        if got == 0 {
            break;
        }
        at += got;
    }
    mend(copy.to)?;
    to.sync_data().map_err(|e| io_error("backup sync", &e))?;
    Ok((at, zeros))
}

/// One device file's copy.
struct Copy<'a> {
    from: &'a dyn crate::fs::FsFile,
    to: &'a dyn crate::fs::FsFile,
    device: u16,
    needed: &'a Needed,
    /// Reads left for pieces only a quarantined extent keeps
    /// ([`KEPT_READS`]): past them such a piece that fails is written as
    /// zeros without reading it again.
    kept_reads: std::cell::Cell<u32>,
}

/// Failing reads one device's copy spends on pieces only quarantined extents
/// keep: an extent whose every sector fails would otherwise cost thousands
/// of reads (a 1 MiB one halved down to sectors), each of which a real disk
/// may take seconds to fail.
const KEPT_READS: u32 = 64;

impl Copy<'_> {
    fn write(&self, bytes: &[u8], at: u64) -> Result<()> {
        (self.to.write_all_at(bytes, at)).map_err(|e| io_error("backup write", &e))
    }

    /// Copies `buf.len()` bytes at `at` whose read failed with `err`, halving
    /// the piece while a needed or kept range overlaps it: a piece no record
    /// needs or keeps is written as zeros without another read (a real disk
    /// may take seconds to fail each), a needed piece of at most [`SECTOR`]
    /// bytes that still fails fails the backup, and a kept one (a
    /// quarantined extent's) is written as zeros, as is any kept piece once
    /// the copy spent its [`KEPT_READS`]. Returns the bytes copied
    /// (fewer where the file ends) and, of them, those written as zeros.
    fn salvage(&self, buf: &mut [u8], at: u64, err: &std::io::Error) -> Result<(u64, u64)> {
        let len = buf.len() as u64;
        let needed = self.needed.overlaps(at, len);
        // Bounded: a piece only kept spends one of the copy's kept reads.
        let kept = !needed && self.needed.keeps(at, len) && self.kept_reads.get() > 0;
        if kept {
            self.kept_reads.set(self.kept_reads.get() - 1);
        }
        // Neither needed nor kept, or a kept sector that still fails: zeros.
        if !needed && (!kept || len <= SECTOR) {
            buf.fill(0);
            self.write(buf, at)?;
            return Ok((len, len));
        }
        if len <= SECTOR {
            // Named, so that the operator can verify (and repair) that extent.
            let owner = self
                .needed
                .owner(at, len)
                .map(|e| format!(" ({e}'s bytes)"));
            return Err(Error::Io {
                device: self.device,
                op: "backup read",
                kind: err.kind(),
                message: format!("{err} at offset {at}{}", owner.unwrap_or_default()),
            });
        }
        // Bounded: the pieces halve down to a sector, 11 levels from a chunk.
        let (low, high) = buf.split_at_mut(buf.len() / 2);
        let mut copied = (0, 0);
        for (piece, offset) in [(low, at), (high, at + len / 2)] {
            let (got, zeros) = match crate::fs::read_full_at(self.from, piece, offset) {
                Ok(got) => {
                    self.write(&piece[..got], offset)?;
                    (got as u64, 0)
                }
                Err(e) => self.salvage(piece, offset, &e)?,
            };
            copied = (copied.0 + got, copied.1 + zeros);
            if got < piece.len() as u64 {
                break;
            }
        }
        Ok(copied)
    }
}
