//! The file operations of creation, reopen, group commit and rotation, as plans:
//! ordered [`FsOp`] lists that a driver executes one after another, stopping at the
//! first error. The blocking store runs them on an [`Fs`](crate::fs::Fs); the
//! emulator runs them on simulated files that lose what was not synced. The order
//! of every plan is the crash-safety argument, so it is written once, here.

use super::Entry;
pub(crate) use super::PlanMutants;
pub(crate) use super::frame::new_journal_len;
use super::frame::{encode_group, journal_head};
use super::image::{Image, Recovered, encode_checkpoint};
use super::{CheckpointEncoder, encode_pointer, files};
use crate::bytes::Bytes;
use crate::record::Location;

/// One file-system step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FsOp {
    /// Write `bytes` at `offset` of `file`, creating it if missing.
    Write {
        /// The file.
        file: String,
        /// Byte offset.
        offset: u64,
        /// The bytes: shared, so that the writer keeps its plan for a retry
        /// (`Writer::start`) without copying a group's frames.
        bytes: Bytes,
    },
    /// Write checkpoint `file` from the live state, a chunk at a time (a
    /// store's checkpointer: see `Core::each_image_entry`), and cut the file
    /// at its end.
    WriteImage {
        /// The file.
        file: String,
    },
    /// Make `file`'s written bytes durable.
    Sync {
        /// The file.
        file: String,
    },
    /// Make the directory's creates, renames and removes durable.
    SyncDir,
    /// Rename `from` over `to`, atomically.
    Rename {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Rename `from` over `to` if `from` exists; else nothing. A checkpoint
    /// keeps the journal it retires so, and a switch takes that recycled
    /// journal ([`files::RECYCLED`]) so: run again behind the reserve's
    /// release, the rename is done already; and if the file went missing, the
    /// switch's next step writes `to` as a new file.
    Adopt {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Remove `file`.
    Remove {
        /// The file.
        file: String,
    },
    /// Cut `file` to `len` bytes.
    Truncate {
        /// The file.
        file: String,
        /// Its new length.
        len: u64,
    },
    /// Write `bytes` at `location` of a device (not a metadata file): an inline
    /// write's data, written back by recovery.
    DeviceWrite {
        /// Where.
        location: Location,
        /// The bytes.
        bytes: Bytes,
    },
    /// Make inline writes' data durable at their locations: a running store
    /// syncs each device holding inline writes no sync covered yet, through its
    /// sync book (a device whose sync once failed fails this too, until a
    /// reopen); an open syncs every device.
    SyncDevices,
}

/// A new store: an empty checkpoint 1, journal 1 (header synced), then the
/// pointer; so whenever `CURRENT` names checkpoint `n`, journal `n` exists. Until the
/// pointer exists the directory is not a store, so a crash anywhere before the
/// final rename leaves a directory that the next open creates afresh.
///
/// `existing` lists the directory: metadata files left by a creation that stopped
/// before its pointer are removed first, so nothing stale is read as new.
pub(crate) fn create(devices: u16, existing: &[String]) -> Vec<FsOp> {
    let stale = existing.iter().filter(|name| {
        files::journal_number(name).is_some()
            || files::checkpoint_number(name).is_some()
            || files::dropped_number(name).is_some()
            || *name == files::CURRENT_TMP
            || *name == files::RECYCLED
    });
    let mut ops: Vec<FsOp> = stale
        .map(|name| FsOp::Remove { file: name.clone() })
        .collect();
    ops.push(write(
        files::checkpoint(1),
        encode_checkpoint(1, devices, &Image::default()),
    ));
    ops.push(sync(files::checkpoint(1)));
    ops.extend(new_journal(1, devices, 0));
    ops.extend(switch_pointer(1));
    ops
}

/// Creates journal `number`: its header and its start frame ([`Entry::JournalStart`],
/// sequence number `seq`) in one write, synced, then its directory entry synced.
/// Records may be appended to it, and acknowledged, only after this plan finished;
/// so a journal the pointer's checkpoint names always holds a frame, and one cut
/// back to its header was damaged, not torn.
pub(crate) fn new_journal(number: u64, devices: u16, seq: u64) -> Vec<FsOp> {
    let file = files::journal(number);
    vec![
        write(file.clone(), terminated(journal_head(number, devices, seq))),
        sync(file),
        FsOp::SyncDir,
    ]
}

/// After recovery: makes the newest journal appendable and makes durable
/// everything recovery read (every journal from the checkpoint's on).
///
/// A torn tail is not thrown away: its bytes go to a side file
/// ([`files::dropped`]), synced with its directory entry, before the journal is cut
/// back to its valid prefix. A journal without a frame (its header or start
/// frame torn: a rotation stopped while creating it, before anything was
/// appended) is written anew, and then the marker that rotation left out is
/// appended to the journal before it ([`Recovered::unmarked`]). The plan is
/// not one to run twice from its start (that would cut the successor back
/// after the marker naming it is durable): after a full disk, which fails only
/// a write, it resumes at the write that failed.
///
/// Recovery may read what was never made durable: after a process crash (the
/// operating system kept the unsynced bytes) or a failed sync, the newest journal's
/// frames, its very directory entry, or the `CURRENT` rename may still be volatile.
/// So the plan always ends with a sync of the journal appends go to and a directory
/// sync: a record recovered once is never taken back by a later power cut (which
/// would also reuse, as free, a location an acknowledged record references).
pub(crate) fn reopen(recovered: &Recovered, mutants: PlanMutants) -> Reopen {
    let tail = recovered.tail;
    let file = files::journal(tail.number);
    let mut ops = Vec::new();
    // First the data of inline writes whose only durable copy is the journal: a
    // checkpoint may drop those journals once the reopen is done.
    if !recovered.redo.is_empty() && !mutants.reopen_without_redo {
        ops.extend(
            (recovered.redo.iter()).map(|(location, bytes)| FsOp::DeviceWrite {
                location: *location,
                bytes: bytes.clone(),
            }),
        );
        ops.push(FsOp::SyncDevices);
    } else if (!recovered.unsynced_kept.is_empty() || !recovered.unsynced_dropped.is_empty())
        && !mutants.reopen_without_sync
    {
        // Recovery kept or restored records whose data it read, which a process
        // kill may have left in the page cache only: durable before anything
        // relies on it.
        ops.push(FsOp::SyncDevices);
    }
    if let Some((torn, valid_len)) = recovered.cut {
        let evidence = files::dropped(torn, valid_len, &recovered.dropped);
        ops.push(write(evidence.clone(), recovered.dropped.clone()));
        ops.push(sync(evidence));
        ops.push(FsOp::SyncDir);
        if valid_len > 0 {
            let torn_file = files::journal(torn);
            ops.push(FsOp::Truncate {
                file: torn_file.clone(),
                len: valid_len,
            });
            ops.push(sync(torn_file));
        }
    }
    // Bytes past the end of a journal written to again go first (see
    // `Recovered::cut_back`); the syncs below make the cut durable before
    // anything is appended.
    for (n, len) in &recovered.cut_back {
        ops.push(FsOp::Truncate {
            file: files::journal(*n),
            len: *len,
        });
    }
    let mut reopen = Reopen {
        ops: Vec::new(),
        number: tail.number,
        len: tail.valid_len,
        next_seq: recovered.next_seq,
    };
    if recovered.cut.is_none() && mutants.reopen_without_sync {
        reopen.ops = ops;
        return reopen;
    }
    // The last write of every journal recovery read is written again before the
    // syncs: after a failed sync the kernel may have kept those pages but marked
    // them clean (ext4 does), so recovery reads them from the page cache yet no
    // later fsync would write them; rewriting the same bytes at the same offsets
    // makes them dirty again and changes nothing a crash could see. Only the last
    // write can be in doubt: a journal writes again only after a sync succeeded.
    for (n, offset, bytes) in &recovered.last_writes {
        ops.push(FsOp::Write {
            file: files::journal(*n),
            offset: *offset,
            bytes: Bytes::from(terminated(bytes.clone())),
        });
    }
    // Every journal recovery read, not only the tail: a rotation writes the old
    // journal's last records after creating the new one, so after a process kill
    // the journal before the tail may hold records recovery read that were never
    // synced.
    for n in recovered.checkpoint..tail.number {
        ops.push(sync(files::journal(n)));
    }
    if tail.valid_len == 0 {
        // It holds no frame: a rotation stopped while creating it.
        ops.push(FsOp::Truncate { file, len: 0 });
        let seq = recovered.next_seq;
        ops.extend(new_journal(tail.number, recovered.devices, seq));
        reopen.len = new_journal_len(tail.number, recovered.devices, seq);
        reopen.next_seq = seq + 1;
    } else {
        ops.push(sync(file));
        ops.push(FsOp::SyncDir);
    }
    // The markers a rotation that stopped left out, now that each successor
    // exists durably and before anything is appended to it: a later recovery
    // then refuses a journal that lost its end (see "Markers make missing
    // files visible"). Recovery left their sequence numbers free.
    if !mutants.reopen_without_marker {
        for &(n, len, seq) in &recovered.unmarked {
            let marker = [(seq, Entry::Rotated { next: n + 1 })];
            ops.push(FsOp::Write {
                file: files::journal(n),
                offset: len,
                bytes: Bytes::from(terminated(encode_group(len, &marker))),
            });
            ops.push(sync(files::journal(n)));
        }
    }
    if !recovered.unsynced_dropped.is_empty() || !recovered.unsynced_kept.is_empty() {
        // What recovery decided of overlapped writes: the records it restored in
        // place of those whose data never became durable, and the markers of
        // those whose data it read (synced above). Appended after what recovery
        // read, durable before anything else is appended.
        let entries: Vec<(u64, Entry)> = (recovered.unsynced_dropped.iter())
            .chain(&recovered.unsynced_kept)
            .zip(reopen.next_seq..)
            .map(|(e, seq)| (seq, e.clone()))
            .collect();
        let frames = encode_group(reopen.len, &entries);
        let written = frames.len() as u64;
        let bytes = Bytes::from(terminated(frames));
        let tail_file = files::journal(reopen.number);
        ops.push(FsOp::Write {
            file: tail_file.clone(),
            offset: reopen.len,
            bytes,
        });
        ops.push(sync(tail_file));
        reopen.len += written;
        reopen.next_seq += entries.len() as u64;
    }
    if recovered.pointer_upgrade {
        // Last: everything recovery read is durable first. The same checkpoint,
        // named in this build's format (see `Recovered::pointer_upgrade`).
        ops.extend(switch_pointer(recovered.checkpoint));
    }
    reopen.ops = ops;
    reopen
}

/// What [`reopen`] plans: its steps, then where appends go on.
#[derive(Debug)]
pub(crate) struct Reopen {
    /// The steps.
    pub(crate) ops: Vec<FsOp>,
    /// The journal appends go to.
    pub(crate) number: u64,
    /// Its length once the steps ran.
    pub(crate) len: u64,
    /// The next sequence number.
    pub(crate) next_seq: u64,
}

/// One group commit: the frames appended since the last one (encoded by
/// [`encode_group`](super::encode_group) with the durable length as their mark),
/// then the sync that makes every one of them durable. `close` and the end of a
/// rotated journal are group commits too, of one marker frame.
///
/// `zeros` bytes of zeros follow the frames, in the same write: the journal's
/// space is allocated ahead of its appends, so that most group commits overwrite
/// allocated bytes and their `fdatasync` need not also write the file's new size
/// (measured on this machine's ext4: 137 against 310 µs per 4 KiB write and sync;
/// TigerBeetle preallocates its WAL for the same reason). A recycled journal
/// ([`checkpoint`]) is allocated already, and its group commits write no zeros
/// ahead until they pass its length. Recovery reads a zero length after the
/// last frame as the journal's end, so every write ends with at least
/// [`END_LEN`] zeros: the next write begins over them.
pub(crate) fn group_commit(
    journal: u64,
    offset: u64,
    mut frames: Vec<u8>,
    zeros: u64,
) -> Vec<FsOp> {
    let file = files::journal(journal);
    frames.resize(frames.len() + zeros.max(END_LEN) as usize, 0);
    vec![
        FsOp::Write {
            file: file.clone(),
            offset,
            bytes: Bytes::from(frames),
        },
        sync(file),
    ]
}

/// Plans checkpoints as the writer does ([`Writer::checkpoint_planner`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointPlanner {
    pub(super) devices: u16,
    pub(super) mutants: PlanMutants,
    /// Whether the journal a checkpoint retires is kept for the next switch.
    pub(super) recycle: bool,
}

impl CheckpointPlanner {
    /// The plan of checkpoint `number` of `image`; `existing` lists the
    /// directory.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn plan(&self, number: u64, image: &Image, existing: &[String]) -> Vec<FsOp> {
        checkpoint(
            number,
            (self.devices, self.recycle),
            Some(image),
            existing,
            self.mutants,
        )
    }

    /// The same plan, the checkpoint written from the live state as it runs
    /// ([`FsOp::WriteImage`], with [`encoder`](Self::encoder)).
    pub(crate) fn plan_streamed(&self, number: u64, existing: &[String]) -> Vec<FsOp> {
        checkpoint(
            number,
            (self.devices, self.recycle),
            None,
            existing,
            self.mutants,
        )
    }

    /// The write a streamed plan's [`FsOp::WriteImage`] of checkpoint
    /// `number` makes of `image`, the live state read at that step (the
    /// emulator's; the store encodes as it reads, with
    /// [`encoder`](Self::encoder)).
    #[cfg(feature = "sim")]
    pub(crate) fn image_write(&self, number: u64, file: &str, image: &Image) -> FsOp {
        write(
            file.to_string(),
            encode_checkpoint(number, self.devices, image),
        )
    }

    /// An encoder of checkpoint `number`, its buffer sized for `capacity` bytes.
    pub(crate) fn encoder(&self, number: u64, capacity: usize) -> CheckpointEncoder {
        CheckpointEncoder::new(number, self.devices, capacity)
    }
}

/// Writes checkpoint `number` (holding everything in journals below `number`),
/// switches the pointer to it, then removes the files it made obsolete (`existing`
/// lists the directory's names).
/// With `image`, its bytes are in the plan; without, the plan's
/// [`FsOp::WriteImage`] writes the live state's. `recycle`: whether the
/// journal it retires is kept for the next switch (see below).
pub(crate) fn checkpoint(
    number: u64,
    (devices, recycle): (u16, bool),
    image: Option<&Image>,
    existing: &[String],
    mutants: PlanMutants,
) -> Vec<FsOp> {
    let file = files::checkpoint(number);
    let mut ops = Vec::new();
    if mutants.sync_devices_before_image && !mutants.checkpoint_without_device_sync {
        ops.push(FsOp::SyncDevices);
    }
    ops.push(match image {
        Some(image) => write(file.clone(), encode_checkpoint(number, devices, image)),
        None => FsOp::WriteImage { file: file.clone() },
    });
    // The devices are synced after the image is read, before the pointer
    // names it. The journals this checkpoint replaces may hold the only durable
    // copy of inline writes' data; and the image holds every proposal in
    // flight as a plain record, among them overlapped writes' (whose data's
    // sync is running), which recovery trusts without reading their data. An
    // overlapped write whose proposal the image read had written its data and
    // joined `Overlaps` before, so the sync that follows covers its data (or
    // fails, if the write's own sync failed: the sync book). Syncing first
    // would leave out a write that began between the sync and the image: if
    // its own sync then failed, the checkpoint would hold a record over data
    // never written.
    if !mutants.checkpoint_without_device_sync && !mutants.sync_devices_before_image {
        ops.push(FsOp::SyncDevices);
    }
    if mutants.pointer_before_checkpoint_sync {
        ops.extend(switch_pointer(number));
        ops.push(sync(file));
    } else {
        ops.push(sync(file));
        // The checkpoint's directory entry is durable before the pointer names it.
        ops.push(FsOp::SyncDir);
        ops.extend(switch_pointer(number));
    }
    // The journal this checkpoint retires is kept for the next switch to
    // write over (RocksDB's `recycle_log_file_num`): its blocks are allocated
    // and its size durable, so the group commits of the journal it becomes
    // write no zeros ahead and their syncs no file size (see `group_commit`).
    // Its old frames stay behind the new ones; recovery tells them by their
    // sequence numbers (`frame::scan_after`). Renamed over the file kept
    // before; like the removes, not made durable here: undone by a crash, it
    // is an obsolete journal again, removed by the next checkpoint.
    // Without recycling, a recycled journal kept before goes with the rest.
    let retired = files::journal(number - 1);
    let recycle = recycle && existing.contains(&retired);
    let obsolete = existing.iter().filter(|name| {
        (files::journal_number(name)
            .or_else(|| files::checkpoint_number(name))
            .or_else(|| files::dropped_number(name))
            .is_some_and(|n| n < number)
            && !(recycle && **name == retired))
            || (!recycle && *name == files::RECYCLED)
    });
    ops.extend(obsolete.map(|name| FsOp::Remove { file: name.clone() }));
    if recycle {
        ops.push(FsOp::Adopt {
            from: retired,
            to: files::RECYCLED.into(),
        });
    }
    ops
}

/// The checkpoint image a plan `ops` that failed wrote, to remove: unless the
/// pointer on disk names it (`pointer`: what `CURRENT` names now, `None` if it
/// could not be read whole, which keeps the file). Read, not inferred from
/// the plan: an earlier attempt of a retried plan may have switched it.
/// Kept, one image would stay behind each failed rotation (a device whose
/// sync failed fails every checkpoint until a reopen) and fill the disk. The
/// removal is not synced: a crash may bring the file back, and the next
/// checkpoint removes it (it is numbered below). A retry runs the whole plan
/// again, image included. The store's directory and the emulator's both ask.
pub(crate) fn failed_image(ops: &[FsOp], pointer: Option<u64>) -> Option<&str> {
    let image = ops.iter().find_map(|op| match op {
        FsOp::WriteImage { file } => Some(file.as_str()),
        FsOp::Write { file, .. } if files::checkpoint_number(file).is_some() => Some(file),
        _ => None,
    })?;
    let named = pointer?;
    (files::checkpoint_number(image) != Some(named)).then_some(image)
}

/// The metadata of a backup of a live store whose durable state is `image`, in
/// an empty directory whose device files were copied (and synced) first: its
/// checkpoint 1 holds the image, journal 1 is empty, and the pointer comes last,
/// so a backup cut short anywhere has no `CURRENT` and is refused as no store.
pub(crate) fn backup(devices: u16, image: &Image) -> Vec<FsOp> {
    let mut ops = vec![
        write(files::checkpoint(1), encode_checkpoint(1, devices, image)),
        sync(files::checkpoint(1)),
    ];
    ops.extend(new_journal(1, devices, 0));
    ops.extend(switch_pointer(1));
    ops
}

/// Temp file, sync, rename, directory sync.
fn switch_pointer(number: u64) -> Vec<FsOp> {
    vec![
        write(files::CURRENT_TMP.into(), encode_pointer(number).to_vec()),
        sync(files::CURRENT_TMP.into()),
        FsOp::Rename {
            from: files::CURRENT_TMP.into(),
            to: files::CURRENT.into(),
        },
        FsOp::SyncDir,
    ]
}

/// The zeros that end every journal write: a zero frame length, read as the
/// journal's end (see [`group_commit`]).
pub(crate) const END_LEN: u64 = 4;

/// `bytes` of one journal write, ended by [`END_LEN`] zeros.
fn terminated(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.resize(bytes.len() + END_LEN as usize, 0);
    bytes
}

fn write(file: String, bytes: Vec<u8>) -> FsOp {
    FsOp::Write {
        file,
        offset: 0,
        bytes: Bytes::from(bytes),
    }
}

fn sync(file: String) -> FsOp {
    FsOp::Sync { file }
}
