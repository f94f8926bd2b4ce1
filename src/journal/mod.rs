//! The metadata journal: record framing, checkpoint images and recovery, without
//! I/O.
//!
//! A durable store keeps, next to its device files, three kinds of metadata file
//! (the names are in [`files`]):
//!
//! * **journals** (`journal-NNNNNNNNNNNNNNNNNNNN`): append-only frames, each one
//!   [`Entry`] framed with its length, a CRC32C and a sequence number;
//! * **checkpoints** (`checkpoint-N`): a full image of the table's records, the bad
//!   list and the degraded devices, in the same frames, closed by an end frame that
//!   counts them;
//! * the **pointer** (`CURRENT`): names the checkpoint recovery starts from. It is
//!   replaced atomically: temp file, sync, rename, directory sync.
//!
//! Checkpoint `N` holds everything recorded in journals below `N`; recovery loads
//! the checkpoint `CURRENT` names and replays every journal numbered `N` or more, in
//! order. Every file starts with a header carrying the format version.
//!
//! # Design notes
//!
//! * **Records are images, replay is idempotent.** An [`Entry::Put`] carries the
//!   whole committed record, its version included, and replay keeps, per extent,
//!   the image with the highest version. So the journal order of two commits of one
//!   extent does not matter (a compaction's record and a write's record may be
//!   appended in either order by their threads), and replaying a journal on top of
//!   a checkpoint that already contains some of its records changes nothing.
//!   Versions and generations therefore only grow across restarts.
//! * **The allocator is derived, not logged.** Free space is the complement of the
//!   referenced locations and the bad list; only the bad list and the degraded
//!   devices are recorded. Bytes written but never committed are free after
//!   recovery by construction.
//! * **Torn tail or corruption, exactly.** A frame that fails its length or CRC
//!   check ends the valid prefix. Every frame carries the length of its journal
//!   that was durable when its write was issued (see `frame`), so recovery tells an
//!   unsynced region, whose sectors may have persisted in any subset, from bytes
//!   that changed after they were durable: a bad region followed by a frame whose
//!   mark lies past it is corruption ([`Error::JournalCorrupt`]), never truncated;
//!   any other is the torn tail of the last write, dropped, and kept as evidence in
//!   a side file ([`files::dropped`]) before the journal is cut. Only the newest
//!   journal may have a torn tail: rotation syncs a journal before the next one is
//!   used.
//! * **Journals are recycled.** A checkpoint keeps the journal it retires
//!   ([`files::RECYCLED`]) and the next rotation writes the new journal over it
//!   (RocksDB's `recycle_log_file_num`): its space is allocated and its size
//!   durable, so group commits write no zeros ahead of their appends and their
//!   syncs no file size (a whole run of 8 writers of 4 KiB values: 1.37× the
//!   baseline without, 1.60× with). Every write ends with a zero length, which
//!   ends the journal when recovery finds it after the last frame; the old
//!   journal's frames past it carry sequence numbers below the new journal's
//!   first (they continue across journals) and are never its records: a torn
//!   write over them is told by the same marks, and a first frame naming another
//!   journal, or a header naming an older one, is what a cut left of the new
//!   head. The price is at open: the retired journal's frames past the end are
//!   checked frame by frame (about 0.05 s for a 64 MiB journal).
//! * **Markers make missing files visible.** A journal that rotation replaced ends
//!   with [`Entry::Rotated`] (written only once its successor exists durably), and
//!   `close` appends [`Entry::Closed`]. Every journal is created with its header
//!   and a first frame ([`Entry::JournalStart`]) in one synced write, before the
//!   pointer names its checkpoint. So a missing, empty or header-only journal is
//!   never mistaken for an empty store: it is refused with
//!   [`Error::MissingCheckpoint`] and nothing is changed. A rotation that stopped
//!   before its marker leaves the old journal without one; the reopen appends it
//!   (synced) before anything goes to the successor, so every journal that a
//!   journal holding records follows ends with its marker (or, written by a
//!   build before format 4, with a frame numbered just before its successor's
//!   first: a cut always leaves a gap), and one cut back at a frame boundary
//!   (its marker and last records gone) is refused with
//!   [`Error::JournalCorrupt`]. (Two cuts cannot be told from what a crash
//!   leaves, because nothing records how long the journal was: the newest
//!   journal cut back at a frame boundary past its first frame, and the one
//!   before it cut so while the newest still holds only its start frame, between
//!   a rotation and the next append, which a stopped rotation leaves too.)
//! * **Inline writes: one sync.** A durable write of at most
//!   [`inline_write_max`](crate::store::StoreConfigBuilder::inline_write_max) bytes writes
//!   its data to its device location without syncing it and journals
//!   [`Entry::Inline`]: the record and the bytes in one frame, made durable by the
//!   group commit's one journal sync. The data's own sync is deferred to the next
//!   checkpoint, whose plan syncs the device files that hold such writes, and
//!   those with overlapped writes in flight ([`plan::FsOp::SyncDevices`]; every
//!   other record's data was synced before it was journaled), before the
//!   pointer moves and the journals holding the only durable copy are removed.
//!   Recovery writes the bytes of every inline entry whose record is still
//!   current back to its location and syncs the devices before anything is
//!   appended ([`Recovered::redo`]). This is BlueStore's deferred write and a
//!   redo log's page write-back, rather than ZFS's relocation from the log: the
//!   location is reserved before the write, so reads, compaction and verification
//!   go on reading the device (the page cache holds the bytes) and nothing moves
//!   later. A device sync that fails is never followed by a trusted one (the sync
//!   book, `backend::device_files`), so a checkpoint after lost dirty pages fails
//!   and the journals stay; meanwhile the store writes the lost pages again, from
//!   the write's own bytes while it runs and from its journal record once it has
//!   returned (`protocol::WriteBack`, [`inline_data`]).
//! * **Overlapped data syncs: about one sync past the inline bound.** A larger
//!   write journals [`Entry::Unsynced`] while its data's sync runs, instead of
//!   after it, and is acknowledged once both finished. A crash between the two
//!   can leave a durable record over data that never became durable; it was
//!   never acknowledged, so recovery reads the data of every such record still
//!   current, keeps it if its checksum verifies and otherwise restores the
//!   record it replaced ([`Recovered::settle_unsynced`]). Once the data is
//!   durable the write leaves [`Entry::Synced`] for the next append to carry
//!   (any operation's; on an idle store the flusher journals it within
//!   `MARKER_WAIT`, 2 ms; `close` carries the rest), and recovery trusts such a
//!   record without reading it, so a fault of its data is found by the verifier
//!   and quarantined like any other, never taken for a torn write: only before
//!   the marker is durable can a fault of the data pass for one. Until then
//!   the location of the record the write replaced is not freed
//!   (`Overlaps::carried`): a restore needs its bytes. A checkpoint
//!   syncs the devices of overlapped writes in flight (or whose sync failed:
//!   then no checkpoint succeeds until a reopen) after it has read its image
//!   and before it replaces the journals, so its image never needs the check:
//!   every write whose proposal the image holds wrote its data before.
//!   Recovery journals what it decided and writes the bytes it read back
//!   before syncing the devices: a failed sync may have left them in the page
//!   cache marked clean but never written, which a sync after the reopen would
//!   not persist.
//! * `write_pending` is never recorded: a write that did not commit is not part of
//!   any durable state.

mod frame;
mod image;
pub(crate) mod open;
pub(crate) mod plan;
mod pointer;
mod read_back;
pub(crate) mod writer;

#[cfg(any(test, feature = "sim"))]
pub(crate) use frame::HEADER_LEN;
pub(crate) use frame::encode_group;
pub(crate) use image::{
    Bounds, CheckpointEncoder, Image, RecordImage, Records, Recovered, recover_into,
};
#[cfg(all(test, not(loom)))]
pub(crate) use image::{encode_checkpoint, image_entries};
pub(crate) use pointer::{decode_pointer, encode_pointer, pointer_format};
pub(crate) use read_back::{Proposal, inline_data};

use crate::bytes::Bytes;
use crate::record::{Location, State, Tag};

/// The device number metadata I/O errors carry ([`Error::Io`](crate::Error::Io)'s
/// `device`).
pub const METADATA_DEVICE: u16 = u16::MAX;

/// The on-disk format version this build writes and the only one it reads.
/// Format 1 (frames without a durable mark) is refused with
/// [`Error::OlderFormat`](crate::Error::OlderFormat): its torn tails cannot be told
/// from corruption. Format 3 added [`Entry::Inline`]; format 2 files read the same
/// (they hold none), and a build that reads only format 2 refuses the new files
/// rather than taking an inline frame for a torn tail. Format 4 changed no
/// layout: a store whose pointer is format 4 was last opened by a build whose
/// reopen appends the marker a stopped rotation left out (see "Markers make
/// missing files visible"), so recovery requires those markers only then
/// ([`MARKED_ROTATIONS`]); an older build refuses it rather than reopen it
/// without them. Format 5 changed no layout either: its journals may be
/// written over a recycled one, with the old journal's frames past their end
/// (see "Journals are recycled" in the module docs), which a format-4 build
/// would read as a torn tail to cut off, or as corruption; it refuses format 5
/// instead (FPRE024).
/// A format-4 directory opens and gets the format-5 pointer before any
/// checkpoint can recycle a journal.
pub(crate) const FORMAT_VERSION: u32 = 5;

/// The first format whose pointer promises that every journal a journal
/// holding records follows ends with [`Entry::Rotated`], or with a frame
/// numbered just before its successor's first (as a build before format 4
/// left it).
pub(crate) const MARKED_ROTATIONS: u32 = 4;

/// One journal entry: a durable fact about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The committed record of an extent, as a transition left it.
    Put(RecordImage),
    /// The record a write or delete will commit once this entry is durable (it
    /// is journaled before its transition). If the transition then loses its
    /// compare-and-swap to a quarantine or remap, that commit's [`Entry::Put`]
    /// carries the same version: at equal versions a `Put` wins over a
    /// `Proposed`, in replay and in a checkpoint alike (see [`Image::apply`]).
    Proposed(RecordImage),
    /// An [`Entry::Proposed`] that carries the write's bytes: a small write is
    /// durable once this entry is, and its data needs no sync of its own (see
    /// "Inline writes" in the module docs). Framed as the record followed by
    /// `location.length` bytes whose checksum is the record's.
    Inline(RecordImage, Bytes),
    /// An [`Entry::Proposed`] journaled while its data's sync runs (see
    /// "Overlapped data syncs"): recovery keeps it only if its data verifies, or
    /// an [`Entry::Synced`] for it follows.
    Unsynced(RecordImage),
    /// The data of `extent`'s record at `version` (an [`Entry::Unsynced`]) is
    /// durable: carried by a later append, never waited for.
    Synced {
        /// The extent.
        extent: crate::record::ExtentId,
        /// The record's version.
        version: u64,
    },
    /// The next `count` record entries ([`Entry::Put`], [`Entry::Proposed`],
    /// [`Entry::Inline`]) are one batch: recovery applies all of them or none. They
    /// follow in the same group commit (one append), so only a torn tail can cut
    /// a batch short, and then none of it was acknowledged.
    BatchBegin {
        /// Record entries in the batch.
        count: u32,
    },
    /// A location that failed verification: never handed out again.
    Bad(Location),
    /// A device degraded by the health policy.
    Degraded(u16),
    /// The last frame of a checkpoint: how many frames precede it.
    End {
        /// Frames before this one.
        frames: u64,
    },
    /// The last frame of a journal that rotation replaced: journal `next` exists
    /// durably and holds what follows.
    Rotated {
        /// The successor's number.
        next: u64,
    },
    /// The store was closed cleanly after the frames before this one.
    Closed,
    /// The first frame of journal `number`, written with its header: a journal
    /// that recovery needs is never legitimately without a frame.
    JournalStart {
        /// The journal's number.
        number: u64,
    },
}

impl Entry {
    /// The committed record of a snapshot, with its generation's tag.
    pub(crate) fn put(snapshot: &crate::record::Snapshot, tag: Tag) -> Entry {
        Entry::Put(RecordImage::of(snapshot, tag))
    }

    /// The record a write or delete proposes to commit (see [`Entry::Proposed`]),
    /// with the tag of the generation it proposes.
    pub(crate) fn propose(snapshot: &crate::record::Snapshot, tag: Tag) -> Entry {
        Entry::Proposed(RecordImage::of(snapshot, tag))
    }

    /// The record a write proposes while its data's sync runs (see
    /// [`Entry::Unsynced`]).
    pub(crate) fn unsynced(snapshot: &crate::record::Snapshot, tag: Tag) -> Entry {
        Entry::Unsynced(RecordImage::of(snapshot, tag))
    }

    /// The record a small write proposes, with its tag and bytes (see
    /// [`Entry::Inline`]).
    pub(crate) fn inline(snapshot: &crate::record::Snapshot, tag: Tag, bytes: Bytes) -> Entry {
        Entry::Inline(RecordImage::of(snapshot, tag), bytes)
    }

    /// The extent the first record of `entries` names (0 if none): the one an
    /// [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown) of the group names
    /// (the machine that asked relabels it with its own).
    pub(crate) fn first_extent(entries: &[Entry]) -> crate::record::ExtentId {
        (entries.iter())
            .find_map(|e| e.record().map(|(r, _)| r.extent))
            .unwrap_or(crate::record::ExtentId(0))
    }

    /// The record this entry carries, and whether it is a proposal.
    pub(crate) fn record(&self) -> Option<(&RecordImage, bool)> {
        match self {
            Entry::Put(r) => Some((r, false)),
            Entry::Proposed(r) | Entry::Inline(r, _) | Entry::Unsynced(r) => Some((r, true)),
            _ => None,
        }
    }
}

impl RecordImage {
    /// The durable image of a snapshot and its generation's tag (dropped for a
    /// `Vacant` record: a delete ends the generation's tag).
    pub(crate) fn of(snapshot: &crate::record::Snapshot, tag: Tag) -> RecordImage {
        RecordImage {
            extent: snapshot.extent(),
            version: snapshot.version(),
            state: match snapshot.state() {
                // A compaction in progress is not durable state: the record it
                // started from is.
                State::Compacting => State::Durable,
                s => s,
            },
            generation: snapshot.generation(),
            location: snapshot.location(),
            checksum: snapshot.checksum(),
            tag: match snapshot.state() {
                State::Vacant => Tag::EMPTY,
                _ => tag,
            },
        }
    }
}

/// File names in a store directory.
/// Deliberate bugs of the plans and of recovery that the crash checker must catch
/// (emulator only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PlanMutants {
    /// Switch `CURRENT` to a new checkpoint before that checkpoint is synced.
    pub(crate) pointer_before_checkpoint_sync: bool,
    /// Reopen without making what recovery read durable (the bug [`reopen`]'s
    /// final syncs fix).
    pub(crate) reopen_without_sync: bool,
    /// Reopen without appending the marker a rotation that stopped left out
    /// ([`Recovered::unmarked`]): the next recovery refuses the store as cut.
    pub(crate) reopen_without_marker: bool,
    /// Recovery calls a bad region followed by any valid frame corruption (the
    /// rule before frames carried durable marks): a power cut that persisted a
    /// later sector of a write but not an earlier one is refused.
    pub(crate) torn_as_corrupt: bool,
    /// Recovery opens a directory whose checkpoint's journal is missing or empty
    /// as if it held no record (the bug the marker checks fix).
    pub(crate) missing_journal_as_empty: bool,
    /// A failed checkpoint's image is removed even when the pointer on disk
    /// names it (`plan::failed_image` without its pointer check): a failure
    /// after the pointer's switch loses the only checkpoint.
    pub(crate) remove_named_image: bool,
    /// A checkpoint drops the journals it replaces without syncing the devices
    /// first: inline writes' data is lost by a power cut after it.
    pub(crate) checkpoint_without_device_sync: bool,
    /// A checkpoint syncs the devices before it reads its image, not after: an
    /// overlapped write that begins between the two is in the image as a plain
    /// record while its data's sync runs, and if that sync fails the checkpoint
    /// holds a record over data never written.
    pub(crate) sync_devices_before_image: bool,
    /// Reopen without writing inline writes' data back to their locations
    /// ([`Recovered::redo`]).
    pub(crate) reopen_without_redo: bool,
    /// The reserve is made again while a plan behind its release still runs,
    /// whose removal then takes the new file: the writer counts a reserve held
    /// that the directory does not hold.
    pub(crate) restore_during_release: bool,
    /// Recovery applies a batch's records as it meets them, so a torn tail that
    /// cut the batch short keeps part of it (the rule before batch markers).
    pub(crate) batch_not_atomic: bool,
    /// Recovery keeps every record journaled while its data's sync ran without
    /// reading its data ([`Recovered::settle_unsynced`] skipped).
    pub(crate) trust_unsynced: bool,
    /// Recovery reads a recycled journal's stale frames past its end as its
    /// own ([`frame::Tear::StaleAsCurrent`]).
    pub(crate) stale_as_current: bool,
    /// Recovery reads a recycled file's old start frame as the new journal's
    /// ([`frame::Tear::StaleHeadAsCurrent`]).
    pub(crate) stale_head_as_current: bool,
}

pub(crate) mod files {
    /// The pointer to the current checkpoint.
    pub(crate) const CURRENT: &str = crate::backend::POINTER_FILE;
    /// The pointer's temp file, renamed over [`CURRENT`].
    pub(crate) const CURRENT_TMP: &str = "CURRENT.tmp";
    /// The directory lock.
    pub(crate) const LOCK: &str = crate::backend::LOCK_FILE;
    /// Space held for the metadata, released when the disk is full.
    pub(crate) const RESERVE: &str = "RESERVE";
    /// A retired journal kept for the next switch to write over (see
    /// `plan::checkpoint`).
    pub(crate) const RECYCLED: &str = "journal-recycled";

    /// The name of journal `n`.
    pub(crate) fn journal(n: u64) -> String {
        format!("journal-{n:020}")
    }

    /// The name of checkpoint `n`.
    pub(crate) fn checkpoint(n: u64) -> String {
        format!("checkpoint-{n:020}")
    }

    /// The side file that keeps the bytes recovery dropped from journal `n` at
    /// byte `offset` (a torn tail): evidence, removed with the journal.
    ///
    /// The name carries the dropped bytes' CRC32C: a journal cut back to
    /// `offset` may tear there again (the reopen appended from `offset` and the
    /// power was cut again), and those bytes must not overwrite, or mix with,
    /// the first tear's evidence (two different tears share a name only if
    /// their checksums collide, a chance of 2^-32). A reopen that runs again
    /// over the same tear writes the same file. Each tear's file stays until
    /// a checkpoint removes it with its journal.
    pub(crate) fn dropped(n: u64, offset: u64, bytes: &[u8]) -> String {
        format!(
            "journal-{n:020}.dropped-{offset}-{:08x}",
            crc32c::crc32c(bytes)
        )
    }

    /// The journal number of a [`dropped`] side file's name (or of one named
    /// without the checksum, as earlier builds named them).
    pub(crate) fn dropped_number(name: &str) -> Option<u64> {
        let (journal, rest) = name.split_once(".dropped-")?;
        let offset = match rest.split_once('-') {
            Some((offset, crc)) => {
                let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                (crc.len() == 8 && crc.bytes().all(lower_hex)).then_some(offset)?
            }
            None => rest,
        };
        // Digits only (`parse` would take a sign), and at most a u64.
        if !offset.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        offset.parse::<u64>().ok()?;
        journal_number(journal)
    }

    /// The number of a journal file name.
    pub(crate) fn journal_number(name: &str) -> Option<u64> {
        number(name, "journal-")
    }

    /// The number of a checkpoint file name.
    pub(crate) fn checkpoint_number(name: &str) -> Option<u64> {
        number(name, "checkpoint-")
    }

    fn number(name: &str, prefix: &str) -> Option<u64> {
        let digits = name.strip_prefix(prefix)?;
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    }
}

#[cfg(all(test, not(loom)))]
mod recycled_tests;
#[cfg(all(test, not(loom)))]
mod tests;

/// What recovery reads of a store's directory.
pub(crate) trait MetaFiles {
    /// `name`'s bytes, `None` if it is missing.
    fn read(&mut self, name: &str) -> crate::Result<Option<Vec<u8>>>;
    /// Fills `buf` from `offset` of `name`: the bytes read, fewer than
    /// `buf.len()` only at its end; `None` if it is missing.
    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> crate::Result<Option<usize>>;
    /// Whether an open keeps a copy of the records it installs in the table
    /// (a small directory in memory, whose recovery the emulator checks);
    /// a store's open keeps only the table.
    fn keep_records(&self) -> bool {
        false
    }
}

/// [`MetaFiles`] over a function that reads a whole file (in memory: the
/// emulator's directory, tests); a file read in parts is read once.
#[cfg(any(test, feature = "sim"))]
pub(crate) struct WholeFiles<F> {
    read: F,
    last: Option<(String, Option<Vec<u8>>)>,
}

#[cfg(any(test, feature = "sim"))]
impl<F: FnMut(&str) -> crate::Result<Option<Vec<u8>>>> WholeFiles<F> {
    /// Reads through `read`.
    pub(crate) fn new(read: F) -> Self {
        WholeFiles { read, last: None }
    }
}

#[cfg(any(test, feature = "sim"))]
impl<F: FnMut(&str) -> crate::Result<Option<Vec<u8>>>> MetaFiles for WholeFiles<F> {
    fn read(&mut self, name: &str) -> crate::Result<Option<Vec<u8>>> {
        (self.read)(name)
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> crate::Result<Option<usize>> {
        if self.last.as_ref().is_none_or(|(n, _)| n != name) {
            self.last = Some((name.to_string(), (self.read)(name)?));
        }
        let Some((_, Some(bytes))) = &self.last else {
            return Ok(None);
        };
        Ok(Some(frame::read_from(bytes, offset, buf)))
    }

    fn keep_records(&self) -> bool {
        true
    }
}

/// A directory without `CURRENT` is new, or holds what a creation that stopped
/// before its pointer left: checkpoint 1 and journal 1 with no record. Anything more
/// means the pointer of a real store was lost: refused, never created over.
fn refuse_records_without_pointer(
    names: &[String],
    files: &mut dyn MetaFiles,
) -> crate::Result<()> {
    let missing = || crate::Error::MissingCheckpoint {
        file: files::CURRENT.to_string(),
    };
    for name in names {
        let number = files::journal_number(name).or_else(|| files::checkpoint_number(name));
        // A recycled journal exists only once a second checkpoint retired one.
        if number.is_some_and(|n| n > 1)
            || files::dropped_number(name).is_some()
            || name == files::RECYCLED
        {
            return Err(missing());
        }
    }
    // A journal 1 with anything appended after its start frame was in use, so
    // its pointer existed. Damage in it is read as records too: refused.
    if let Some(journal) = files.read(&files::journal(1))? {
        let scanned = frame::scan(
            &journal,
            "",
            frame::FileKind::Journal,
            frame::Tear::Unsynced,
        );
        if scanned.is_err() || scanned.is_ok_and(|s| s.holds_records()) {
            return Err(missing());
        }
    }
    Ok(())
}

/// Recovers a directory: reads `CURRENT`, the checkpoint it names (`chunk`
/// bytes at a time) and every journal from that checkpoint on, into `records`
/// (see [`recover_into`]). `Ok(None)` if there is no `CURRENT`: not a store yet
/// (or one whose creation stopped before its pointer was written, which
/// therefore acknowledged nothing).
///
/// # Errors
///
/// As [`recover_into`], plus [`Error::MissingCheckpoint`](crate::Error::MissingCheckpoint)
/// and a corrupt or newer pointer; `files`' errors.
pub(crate) fn recover_dir(
    names: &[String],
    files: &mut (dyn MetaFiles + Send),
    records: Records,
    chunk: usize,
    mutants: PlanMutants,
) -> crate::Result<Option<Recovered>> {
    let Some(pointer) = files.read(files::CURRENT)? else {
        refuse_records_without_pointer(names, files)?;
        return Ok(None);
    };
    let number = decode_pointer(&pointer)?;
    let name = files::checkpoint(number);
    let missing = || crate::Error::MissingCheckpoint { file: name.clone() };
    // Empty is missing too: a checkpoint is never created without its header.
    if matches!(files.read_at(&name, 0, &mut [0u8; 1])?, None | Some(0)) {
        return Err(missing());
    }
    // Recovery needs the journal the checkpoint starts and every later one; a
    // missing one is reported by `recover_into`, which knows which must exist.
    let mut journals = Vec::new();
    for n in names.iter().filter_map(|n| files::journal_number(n)) {
        if n >= number
            && let Some(bytes) = files.read(&files::journal(n))?
        {
            journals.push((n, bytes));
        }
    }
    let refs: Vec<(u64, &[u8])> = journals.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let mut read =
        |offset: u64, buf: &mut [u8]| files.read_at(&name, offset, buf)?.ok_or_else(missing);
    let checkpoint = image::Checkpoint {
        read: &mut read,
        chunk,
    };
    let format = pointer_format(&pointer);
    let marked = format >= MARKED_ROTATIONS;
    let mut recovered = recover_into(number, checkpoint, &refs, records, marked, mutants)?;
    recovered.pointer_upgrade = format < FORMAT_VERSION;
    Ok(Some(recovered))
}
