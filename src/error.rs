//! The FPRE error catalog.
//!
//! Every error the crate returns is a variant of [`Error`], with a stable code shown
//! in its message and returned by [`Error::code`]. Codes are never renumbered or
//! reused; new variants get new codes.
//!
//! | code | variant | retryable | meaning | what to do |
//! |---|---|---|---|---|
//! | FPRE001 | [`Error::VersionConflict`] | yes | a compare-and-swap transition lost: the record changed since the caller's snapshot | take a fresh snapshot and retry; it carries the winner's record |
//! | FPRE002 | [`Error::IllegalTransition`] | no | the transition is not in the transition table for the record's state | a caller bug: check the state before asking for the change |
//! | FPRE003 | [`Error::ChecksumMismatch`] | yes | bytes read do not match the identity-bound checksum of the snapshot | retry; if it persists, verification turns it into FPRE004 and repairs |
//! | FPRE004 | [`Error::RetryLimitExceeded`] | no | peripheral register fault, retry limit exceeded: the checksum mismatch (or I/O error) persisted on every re-read of one stable version — a real media fault, never a race | the extent is quarantined with no good copy (a repaired one answers `Verdict::Repaired` instead) and reads FPRE013 until one is found: supply one (`StoreConfigBuilder::good_copy_source`, or `Backend::good_copy` for `Store::new`) and call `verify`, or rewrite the extent; check the device's health (`StoreStats::devices_degraded`) |
//! | FPRE005 | [`Error::ExtentOutOfRange`] | no | the extent id is beyond the table's configured capacity | raise `TableConfig::max_extents` |
//! | FPRE006 | [`Error::Contended`] | yes | a reader met publishes in progress for longer than its bounded wait | retry; persistent contention means a writer thread is starved |
//! | FPRE007 | [`Error::GenerationExhausted`] | no | the record's content generation reached its maximum | write the data under a new extent id |
//! | FPRE008 | [`Error::InvalidConfig`] | no | a builder was given a value outside its stated bounds, a directory was opened with a configuration it does not fit (`devices`, `device_capacity_bytes`, `block_size_bytes`, the table's `max_extents`), or a call needs another kind of store (`checkpoint_to` on an in-memory one) | fix the named field, or open with the configuration the store was created with |
//! | FPRE009 | [`Error::Io`] | yes | the backend (or, device 65535, the metadata journal) failed an I/O operation | retry data I/O; after a journal failure later changes get FPRE036 until a reopen |
//! | FPRE010 | [`Error::ShortRead`] | yes | the backend returned fewer bytes than the location holds | retry; if it persists the device file was truncated |
//! | FPRE011 | [`Error::Superseded`] | yes | a cache fill was rejected because the content generation changed while it loaded | retry: a newer write won |
//! | FPRE012 | [`Error::NotReadable`] | no | the extent has no readable bytes (never written, or deleted) | treat as not found |
//! | FPRE013 | [`Error::Quarantined`] | no | the extent is quarantined and no verified copy is available | supply a good copy (`StoreConfigBuilder::good_copy_source`, or `Backend::good_copy` for `Store::new`) and call `verify`, or rewrite it |
//! | FPRE014 | [`Error::NoSpace`] | yes | no free location of the requested size on any device | compact or delete, or add capacity |
//! | FPRE015 | [`Error::WriteInProgress`] | yes | another write of the extent is pending | retry after it finishes |
//! | FPRE016 | [`Error::TooLarge`] | no | the bytes exceed the largest extent a location can describe | split the value |
//! | FPRE017 | [`Error::Shutdown`] | no | the component was shut down | do not use a store after closing it |
//! | FPRE018 | [`Error::VersionExhausted`] | no | the record's version reached its maximum | write the data under a new extent id |
//! | FPRE019 | [`Error::Internal`] | no | a protocol machine was driven out of order: a bug in a driver, never an environment error | report it |
//! | FPRE021 | [`Error::JournalCorrupt`] | no | a journal record failed its checks and valid records follow it (or it is not in the newest journal), or a journal that a later journal holding records follows lost its end (its rotation marker and the records before it): corruption, never truncated silently | restore the directory from a backup; nothing was changed |
//! | FPRE022 | [`Error::CheckpointCorrupt`] | no | the checkpoint (or the `CURRENT` pointer) is truncated or fails its checksum | restore from a backup; nothing was changed |
//! | FPRE023 | [`Error::MissingCheckpoint`] | no | a metadata file the store needs is missing or empty: the checkpoint `CURRENT` names, its journal, a journal's successor, or the pointer of a directory that holds data | point `open` at the right directory, or restore the missing file; nothing was changed |
//! | FPRE024 | [`Error::NewerFormat`] | no | a metadata file was written by a newer format than this build reads | open it with a newer build |
//! | FPRE025 | [`Error::DeviceFile`] | no | a device file is missing or shorter than a location a record references | restore the device file; nothing was changed |
//! | FPRE026 | [`Error::Locked`] | no | the store directory is already open (in this or another process), or a backup into it is finishing (a backup still copying, or cut short, is FPRE031) | close the other store, or wait for the backup, first |
//! | FPRE027 | [`Error::OlderFormat`] | no | a metadata file was written in an older on-disk format this build no longer reads | open it with the build that wrote it, read every extent out (`Store::records`, `Store::read`) and write them into a new store; nothing was changed |
//! | FPRE029 | [`Error::DiskFull`] | yes | the file system holding the store is full: a write or a file's creation hit ENOSPC (or EDQUOT), or the metadata reserve is in use and new writes are refused so that deletes, commits, checkpoints and `close` keep room | delete extents and call `Store::reclaim_space` (or free space on the file system), then retry: writes succeed again without a reopen (unless the journal itself failed on the full disk: later changes then get FPRE036) (once a rotation's background checkpoint in progress, `StoreStats::checkpoint_pending`, has removed the journals it replaces); reads keep working |
//! | FPRE028 | [`Error::OutcomeUnknown`] | no | the operation's record was handed to the journal but the operation did not commit (the journal failed, the data's sync failed beside the record, a checkpoint read the record before the journal refused it, quarantines kept moving the record, or the backend panicked): the operation is not visible in this open store, but after a reopen it may be wholly there or wholly absent | reopen the store, then read the extent to learn the outcome |
//! | FPRE030 | [`Error::DuplicateExtent`] | no | a batch names the same extent twice | write each extent once per batch (the last value is the one meant) |
//! | FPRE031 | [`Error::NotAStore`] | no | `Store::open` was pointed at a regular file, at a directory that holds files but no store (unless `create_in_non_empty_dir`), at a missing directory with `create_if_missing(false)`, or at an existing store with `error_if_exists(true)` | check the path and the open options; nothing was changed |
//! | FPRE032 | [`Error::RangeOutOfBounds`] | no | `read_range` asked for bytes past the end of the extent's current bytes | read within `snapshot().length()` |
//! | FPRE033 | [`Error::TagTooLong`] | no | a tag holds more than `MAX_TAG_LEN` bytes | keep the engine's key short (a hash of a long key) |
//! | FPRE034 | [`Error::ChangesTruncated`] | no | `changes_since` asked for changes the store no longer retains: retention let them go, or a durable store was reopened (the stream is retained in memory; an in-memory store made again numbers from 0 instead, and a durable one reopened after a crash may number on from the old cursor: compare `change_stream_id`) | resync from `change_baseline()` (its number, then every record with its version, deleted ones included, which a follower keeps so that an older change cannot bring a deleted extent back), then read `changes_since` that number; hold the stream back with `hold_changes` to stop it recurring |
//! | FPRE035 | [`Error::ChangeSeqAhead`] | no | `changes_since` asked for a number this store has not reached: the cursor came from another store | resync as for FPRE034 |
//! | FPRE037 | [`Error::DrainIncomplete`] | no | `drain` left extents on the device: a copy failed on its target, a write or compaction held an extent, a write placed one there meanwhile (only degraded devices are avoided), or a quarantined extent has no good copy | not for a blind retry (an extent that stays quarantined with no good copy stays for good): look at what stays (`records()` on the device), supply a good copy or rewrite a quarantined one, then call `drain` again; do not take the device away while any record names it (a durable store keeps its device count: the drained file stays) |
//! | FPRE036 | [`Error::JournalFailed`] | no | the journal failed earlier (a write or sync of it failed, the disk filled with the metadata reserve already spent, or two checkpoints in a row failed, as every one does after a device's sync failed), and it refuses every change until a reopen; nothing of this change was written | reopen the store (after freeing space, for a full disk); reads keep working meanwhile |
//! | FPRE039 | [`Error::InvalidRecords`] | no | records handed to the store (`Store::with_records`, `Snapshot::from_bytes`, `Snapshot::committed`) are not ones a store could have made: a damaged encoding, an odd version, a field out of range, or two records on overlapping locations | the engine's manifest is damaged, or mixes records of two stores: restore it from the engine's own backup |
//! | FPRE038 | [`Error::DeviceSyncFailed`] | no | a sync of the device file failed earlier: its unsynced writes may be lost, and every later sync of it fails until a reopen (writes avoid the device meanwhile while another has room; with none, they fail) | reopen the store: recovery writes back or drops what the failed sync may have lost; reads keep working meanwhile |
//!
//! `is_retryable` tells the retry policy what it may retry. FPRE004 is never
//! retryable: it is the verdict *after* the retry limit.

use crate::record::{ChangeKind, ExtentId, Location, Snapshot, State};

mod make;
mod media;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the crate returns, each with a stable `FPRExxx` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A compare-and-swap transition lost: the record's version is no longer the one
    /// the caller computed its change from. Carries the record as it is now.
    #[error("FPRE001 version conflict on {extent}: expected version {expected_version}, current {}", current.version())]
    VersionConflict {
        /// The extent.
        extent: ExtentId,
        /// The version the caller expected.
        expected_version: u64,
        /// The record as it is now (the winner's commit).
        current: Snapshot,
    },

    /// The transition is not allowed from the record's current state.
    #[error(
        "FPRE002 illegal transition {change:?} on {extent} from {from:?} (write_pending={write_pending})"
    )]
    IllegalTransition {
        /// The extent.
        extent: ExtentId,
        /// The state the record was in.
        from: State,
        /// Whether a write was pending.
        write_pending: bool,
        /// The refused change.
        change: ChangeKind,
    },

    /// Bytes read do not match the identity-bound checksum of the snapshot.
    #[error(
        "FPRE003 checksum mismatch on {extent} generation {generation} at {location}: expected {expected:#010x}, actual {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The extent.
        extent: ExtentId,
        /// The content generation the bytes were checked against.
        generation: u64,
        /// Where the bytes were read.
        location: Location,
        /// The checksum recorded in the snapshot.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },

    /// Peripheral register fault, retry limit exceeded: every re-read of one stable
    /// version failed. Raised only for a persistent fault, never for a race.
    #[error(
        "FPRE004 peripheral register fault, retry limit exceeded: the bytes of {extent} at {location} failed their check on every read; the fault persisted after {} re-reads of the same version ({attempts} reads in all); last failure: {last}", attempts.saturating_sub(1)
    )]
    RetryLimitExceeded {
        /// The extent.
        extent: ExtentId,
        /// The location that kept failing.
        location: Location,
        /// How many reads were tried.
        attempts: u32,
        /// The last failure, as text (its own code included).
        last: String,
    },

    /// The extent id is beyond the table's capacity.
    #[error("FPRE005 extent {extent} out of range: the table holds ids below {capacity}")]
    ExtentOutOfRange {
        /// The extent.
        extent: ExtentId,
        /// The table's capacity (one past the largest id).
        capacity: u64,
    },

    /// A reader met publishes in progress for longer than its bounded wait.
    #[error(
        "FPRE006 contended: {extent} was being published for {attempts} consecutive read attempts"
    )]
    Contended {
        /// The extent.
        extent: ExtentId,
        /// How many attempts the reader made.
        attempts: u32,
    },

    /// The content generation reached its maximum; the extent takes no more writes.
    #[error("FPRE007 generation exhausted on {extent}")]
    GenerationExhausted {
        /// The extent.
        extent: ExtentId,
    },

    /// A configuration value is outside its bounds.
    #[error("FPRE008 invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend failed an I/O operation.
    #[error("FPRE009 I/O error on device {device} ({op}): {message}")]
    Io {
        /// The device.
        device: u16,
        /// `"read"`, `"write"`, `"sync"`, `"open"`, `"spawn"` (a worker thread),
        /// `"trim"`, or the operation on the store's own files that failed
        /// (`"journal"`, `"list"`, `"lock"`, `"rename"`, `"remove"`,
        /// `"truncate"`, `"create dir"`, `"backup …"`).
        op: &'static str,
        /// The `std::io::ErrorKind` of the failure.
        kind: std::io::ErrorKind,
        /// The failure as text.
        message: String,
    },

    /// The backend returned fewer bytes than the location holds.
    #[error("FPRE010 short read at {location}: got {actual} of {} bytes", location.length)]
    ShortRead {
        /// The location read.
        location: Location,
        /// How many bytes came back.
        actual: u64,
    },

    /// A cache fill was rejected: the generation changed while it loaded.
    #[error("FPRE011 superseded: {extent} generation {generation} is no longer current")]
    Superseded {
        /// The extent.
        extent: ExtentId,
        /// The generation the fill loaded.
        generation: u64,
    },

    /// The extent has no readable bytes.
    #[error("FPRE012 {extent} is not readable (vacant)")]
    NotReadable {
        /// The extent.
        extent: ExtentId,
    },

    /// The extent is quarantined and no verified copy is available.
    #[error("FPRE013 {extent} is quarantined and no verified copy is available")]
    Quarantined {
        /// The extent.
        extent: ExtentId,
    },

    /// No free location of the requested size.
    #[error("FPRE014 no space for {length} bytes")]
    NoSpace {
        /// The requested length.
        length: u64,
    },

    /// Another write of the extent is pending.
    #[error("FPRE015 a write of {extent} is already pending")]
    WriteInProgress {
        /// The extent.
        extent: ExtentId,
    },

    /// The bytes are longer than a location can describe.
    #[error("FPRE016 {length} bytes exceed the largest extent ({max} bytes)")]
    TooLarge {
        /// The length given.
        length: u64,
        /// The largest length allowed.
        max: u64,
    },

    /// The component was shut down.
    #[error("FPRE017 shut down")]
    Shutdown,

    /// A protocol machine was fed an event it did not ask for (a driver bug). The
    /// operation ended without changing anything it had not already committed.
    #[error("FPRE019 internal error: {what}")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },

    /// The record's version reached its maximum (2^56 - 1); it takes no more
    /// transitions.
    #[error("FPRE018 version exhausted on {extent}")]
    VersionExhausted {
        /// The extent.
        extent: ExtentId,
    },

    /// A journal record failed its length or checksum check and valid records follow
    /// it, or the damage is in a journal older than the newest, or a journal that
    /// a later journal holding records follows ends neither with the marker naming
    /// its successor nor with a frame numbered just before the successor's first
    /// (its end was cut): the journal is corrupt. Recovery refuses it
    /// rather than drop acknowledged records; nothing on disk was changed.
    #[error("FPRE021 journal corrupt: {file} at byte {offset}: {reason}")]
    JournalCorrupt {
        /// The journal file.
        file: String,
        /// Byte offset of the first bad frame.
        offset: u64,
        /// What failed.
        reason: &'static str,
    },

    /// The checkpoint that recovery starts from (or the `CURRENT` pointer naming it)
    /// is truncated or fails its checksum. Nothing on disk was changed.
    #[error("FPRE022 checkpoint corrupt: {file}: {reason}")]
    CheckpointCorrupt {
        /// The checkpoint (or pointer) file.
        file: String,
        /// What failed.
        reason: &'static str,
    },

    /// A metadata file the store needs is missing or empty: the checkpoint the
    /// `CURRENT` pointer names, the journal that checkpoint starts, the successor a
    /// journal says it rotated to, or the pointer of a directory that holds device
    /// data or journal records (not a store, or a store whose metadata was removed).
    /// Nothing on disk was changed.
    #[error("FPRE023 missing metadata: {file} is missing or empty, and the store needs it")]
    MissingCheckpoint {
        /// The missing file.
        file: String,
    },

    /// A metadata file was written in a newer on-disk format than this build reads.
    /// Nothing on disk was changed.
    #[error("FPRE024 {file} has format version {found}; this build reads up to {supported}")]
    NewerFormat {
        /// The file.
        file: String,
        /// Its format version.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },

    /// A device file is missing or shorter than a location a record references: the
    /// data the metadata points at is gone. Nothing on disk was changed.
    #[error("FPRE025 device {device} file holds {} bytes, records reference {needed}", actual.map_or_else(|| "no file: 0".to_string(), |a| a.to_string()))]
    DeviceFile {
        /// The device.
        device: u16,
        /// Bytes the referenced locations need.
        needed: u64,
        /// The file's length, `None` if it is missing.
        actual: Option<u64>,
    },

    /// The store directory is already open, in this process or another, or a
    /// backup ([`Store::checkpoint_to`](crate::Store::checkpoint_to)) is being
    /// written into it (its `LOCK` file is held). Nothing on disk was changed. The lock is `flock`'s, which
    /// belongs to the open file: a child process forked while a store was open
    /// holds it too until it execs (or exits), so an open right after the
    /// store closed can meet it then.
    #[error(
        "FPRE026 {path} is locked: a store is open there, or a backup is being written into it"
    )]
    Locked {
        /// The lock file.
        path: String,
    },

    /// A metadata file was written in an older on-disk format that this build no
    /// longer reads (format 1 could not tell a torn journal tail from corruption).
    /// Nothing on disk was changed.
    #[error(
        "FPRE027 {file} has format version {found}; this build reads only {supported}: open the directory with the build that wrote it, read every extent out and write it into a new store"
    )]
    OlderFormat {
        /// The file.
        file: String,
        /// Its format version.
        found: u32,
        /// The format this build reads.
        supported: u32,
    },

    /// The file system holding the store is full. A data write hit ENOSPC (the
    /// write did not happen), or the metadata reserve was released to keep room
    /// for deletes, commits, checkpoints and `close`, and new writes are refused
    /// (certainly not done) until space is freed: delete extents and call
    /// [`Store::reclaim_space`](crate::Store::reclaim_space), or free space on the
    /// file system. Writes then succeed again without a reopen; reads keep working.
    #[error(
        "FPRE029 disk full on device {device} ({op}): delete or reclaim space, or add capacity; reads keep working"
    )]
    DiskFull {
        /// The device ([`METADATA_DEVICE`](crate::store::METADATA_DEVICE) for the
        /// metadata).
        device: u16,
        /// The operation that met the full disk: `"write"`, `"reserve"` (writes
        /// refused while the reserve is in use), `"open"`, `"create dir"`,
        /// `"backup write"` or `"backup open"`.
        op: &'static str,
    },

    /// The operation's record was handed to the journal, but the operation did
    /// not commit, so whether the record survives a reopen is unknown
    /// (FoundationDB's `commit_unknown_result`): the journal failed (it then
    /// refuses every change until a reopen), the data's sync failed while the
    /// record was being journaled beside it, a checkpoint's image read the
    /// record before the journal refused it, quarantines and remaps kept
    /// moving the record past the retry limit, or the backend panicked while
    /// the record was being journaled. The operation is not visible in
    /// this open store; after a reopen it is either wholly there or wholly
    /// absent. Errors of every other kind mean the operation certainly did not
    /// happen, now or after a reopen.
    #[error(
        "FPRE028 outcome unknown: the {op} of {extent} may or may not survive a reopen: {cause}"
    )]
    OutcomeUnknown {
        /// `"write"`, `"delete"` or `"batch"`, or `"journal"` for a
        /// compaction or remap whose record's journaling failed.
        op: &'static str,
        /// The extent (a batch: its first).
        extent: ExtentId,
        /// The journal's error, as text.
        cause: String,
    },

    /// A batch names `extent` more than once; nothing of it was written. Not
    /// retryable: the same batch fails the same way.
    #[error("FPRE030 the batch names {extent} more than once")]
    DuplicateExtent {
        /// The extent named twice.
        extent: ExtentId,
    },

    /// [`Store::read_range`](crate::Store::read_range) asked for bytes past the
    /// end of the extent's current bytes (`length` long).
    #[error("FPRE032 bytes {offset}..{offset}+{len} are past the end of {extent} ({length} bytes)")]
    RangeOutOfBounds {
        /// The extent.
        extent: ExtentId,
        /// The first byte asked for.
        offset: u64,
        /// How many bytes were asked for.
        len: u64,
        /// The length of the bytes read.
        length: u64,
    },

    /// A [`Tag`](crate::Tag) was given more bytes than it holds.
    #[error("FPRE033 a tag of {len} bytes is longer than {max}")]
    TagTooLong {
        /// The length given.
        len: usize,
        /// The longest tag ([`MAX_TAG_LEN`](crate::MAX_TAG_LEN)).
        max: usize,
    },

    /// [`Store::changes_since`](crate::Store::changes_since) asked for changes
    /// that are no longer retained.
    #[error(
        "FPRE034 changes from {requested} are no longer retained (the oldest kept is {oldest})"
    )]
    ChangesTruncated {
        /// The number asked for.
        requested: u64,
        /// The oldest change still retained (the next one's number if none is).
        oldest: u64,
    },

    /// [`Store::changes_since`](crate::Store::changes_since) asked for a number
    /// the store has not reached.
    #[error("FPRE035 change {requested} is ahead of this store's stream (next is {next})")]
    ChangeSeqAhead {
        /// The number asked for.
        requested: u64,
        /// The number the next change will get.
        next: u64,
    },

    /// A change refused because the journal failed earlier (a write or sync
    /// of it, or a full disk with the metadata reserve already spent): it
    /// refuses every change until the store is reopened, and nothing of this
    /// one was written. Not retryable: only a reopen helps.
    #[error(
        "FPRE036 the journal failed earlier and refuses every change until the store is reopened; nothing of this change was written (the failure: {cause})"
    )]
    JournalFailed {
        /// The failure that failed the journal.
        cause: String,
    },

    /// A sync of a device file failed earlier: its unsynced writes may be lost,
    /// so every later sync of it fails until a reopen. Not retryable.
    #[error(
        "FPRE038 a sync of device {device} failed earlier, and every later sync of it fails until the store is reopened (its unsynced writes may be lost; the failure: {cause})"
    )]
    DeviceSyncFailed {
        /// The device.
        device: u16,
        /// The failure of the first sync.
        cause: String,
    },

    /// [`Store::drain`](crate::Store::drain) went through every extent but
    /// some still have their record on the device: a copy failed on its
    /// target, a write or compaction held the extent, a write placed a new
    /// extent there meanwhile, or a quarantined extent had no good copy.
    #[error(
        "FPRE037 drain of device {device} moved {moved} extents and left {left} there: look at what stays (`records()` on the device), supply a good copy or rewrite a quarantined one, then call drain again"
    )]
    DrainIncomplete {
        /// The device drained.
        device: u16,
        /// Extents moved off it.
        moved: u64,
        /// Extents whose record still names it.
        left: u64,
    },

    /// Records handed to the store by an engine (its manifest's) are not ones a
    /// store could have made: see the catalog's FPRE039.
    #[error("FPRE039 invalid records: {reason}")]
    InvalidRecords {
        /// What is wrong, naming the extent.
        reason: String,
    },

    /// `Store::open` refused `path` as it is: nothing was created or changed.
    #[error("FPRE031 {path} is not a store to open: {reason}")]
    NotAStore {
        /// The path given to `open`.
        path: String,
        /// What the path is, and which open option refuses it.
        reason: String,
    },
}

impl Error {
    /// The stable code of this error, e.g. `"FPRE004"`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::VersionConflict { .. } => "FPRE001",
            Error::IllegalTransition { .. } => "FPRE002",
            Error::ChecksumMismatch { .. } => "FPRE003",
            Error::RetryLimitExceeded { .. } => "FPRE004",
            Error::ExtentOutOfRange { .. } => "FPRE005",
            Error::Contended { .. } => "FPRE006",
            Error::GenerationExhausted { .. } => "FPRE007",
            Error::InvalidConfig { .. } => "FPRE008",
            Error::Io { .. } => "FPRE009",
            Error::ShortRead { .. } => "FPRE010",
            Error::Superseded { .. } => "FPRE011",
            Error::NotReadable { .. } => "FPRE012",
            Error::Quarantined { .. } => "FPRE013",
            Error::NoSpace { .. } => "FPRE014",
            Error::WriteInProgress { .. } => "FPRE015",
            Error::TooLarge { .. } => "FPRE016",
            Error::Shutdown => "FPRE017",
            Error::VersionExhausted { .. } => "FPRE018",
            Error::Internal { .. } => "FPRE019",
            Error::JournalCorrupt { .. } => "FPRE021",
            Error::CheckpointCorrupt { .. } => "FPRE022",
            Error::MissingCheckpoint { .. } => "FPRE023",
            Error::NewerFormat { .. } => "FPRE024",
            Error::DeviceFile { .. } => "FPRE025",
            Error::Locked { .. } => "FPRE026",
            Error::OlderFormat { .. } => "FPRE027",
            Error::OutcomeUnknown { .. } => "FPRE028",
            Error::DiskFull { .. } => "FPRE029",
            Error::DuplicateExtent { .. } => "FPRE030",
            Error::NotAStore { .. } => "FPRE031",
            Error::RangeOutOfBounds { .. } => "FPRE032",
            Error::TagTooLong { .. } => "FPRE033",
            Error::ChangesTruncated { .. } => "FPRE034",
            Error::ChangeSeqAhead { .. } => "FPRE035",
            Error::JournalFailed { .. } => "FPRE036",
            Error::DeviceSyncFailed { .. } => "FPRE038",
            Error::DrainIncomplete { .. } => "FPRE037",
            Error::InvalidRecords { .. } => "FPRE039",
        }
    }

    /// Whether a retry policy may retry the operation that returned this error.
    ///
    /// Races (conflict, contention, superseded fills, a pending write) and possibly
    /// transient media errors (I/O, short read, checksum mismatch) are retryable;
    /// verdicts and programmer or configuration errors are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::VersionConflict { .. }
                | Error::ChecksumMismatch { .. }
                | Error::Contended { .. }
                | Error::Io { .. }
                | Error::ShortRead { .. }
                | Error::Superseded { .. }
                | Error::NoSpace { .. }
                | Error::DiskFull { .. }
                | Error::WriteInProgress { .. }
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// FPRE004's message says what an operator needs: the code and its name, the
    /// extent and location, and that the fault persisted over the re-reads.
    #[test]
    fn fpre004_message_says_the_fault_persisted_after_the_re_reads() {
        let err = Error::RetryLimitExceeded {
            extent: ExtentId(9),
            location: Location::new(1, 8192, 4096),
            attempts: 4,
            last: "FPRE003 checksum mismatch".into(),
        };
        let text = err.to_string();
        assert!(text.starts_with("FPRE004 peripheral register fault, retry limit exceeded"));
        assert!(text.contains("persisted after 3 re-reads"), "{text}");
        assert!(text.contains("extent#9 at dev1@8192+4096"), "{text}");
        assert_eq!(err.code(), "FPRE004");
        assert!(!err.is_retryable());
    }

    /// Every code in the catalog is distinct.
    #[test]
    fn codes_are_distinct() {
        let errors = [
            Error::Shutdown,
            Error::Internal { what: "x" },
            Error::JournalCorrupt {
                file: "j".into(),
                offset: 0,
                reason: "r",
            },
            Error::CheckpointCorrupt {
                file: "c".into(),
                reason: "r",
            },
            Error::MissingCheckpoint { file: "c".into() },
            Error::NewerFormat {
                file: "f".into(),
                found: 2,
                supported: 1,
            },
            Error::DeviceFile {
                device: 0,
                needed: 1,
                actual: None,
            },
            Error::Locked { path: "p".into() },
            Error::OlderFormat {
                file: "f".into(),
                found: 1,
                supported: 2,
            },
            Error::OutcomeUnknown {
                op: "write",
                extent: ExtentId(3),
                cause: "c".into(),
            },
            Error::DiskFull {
                device: 1,
                op: "write",
            },
            Error::InvalidRecords { reason: "r".into() },
        ];
        let mut codes: Vec<&str> = errors.iter().map(Error::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        for e in &errors {
            assert!(e.to_string().starts_with(e.code()), "{e}");
        }
    }
}
