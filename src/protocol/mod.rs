//! The protocol, written once and without I/O.
//!
//! Each operation is a small state machine over the shared [`Core`] (table, cache,
//! allocator, reclaimer). It takes snapshot and transition steps itself and returns
//! a [`Step`] asking its driver for the I/O it needs; the driver performs it and
//! feeds the result back. Two drivers run the same machines: the blocking
//! [`Store`](crate::Store) and the emulator. Nothing here blocks or sleeps.
//!
//! Every retry loop is bounded ([`MAX_ATTEMPTS`]); running out of attempts ends the
//! operation with a retryable error (a read: [`Error::Superseded`]; a write: the
//! last [`Error::VersionConflict`]), never spins forever.

mod batch;
mod checkpoint;
mod compact;
mod delete;
mod episodes;
mod ladder;
mod location;
mod overlaps;
mod proposals;
mod read;
mod repair;
#[cfg(all(test, not(loom)))]
mod test_support;
mod verify;
mod write;
mod write_back;

#[cfg(all(test, loom))]
mod loom_models;

pub(crate) use batch::{BatchItem, BatchWriteOp};
pub(crate) use compact::CompactOp;
pub use compact::CompactOutcome;
pub(crate) use delete::DeleteOp;
#[cfg(feature = "sim")]
pub(crate) use ladder::Fault;
pub(crate) use ladder::{ReadSession, Tally, VerifySession};
pub(crate) use location::location_failed;
pub(crate) use overlaps::Overlaps;
pub(crate) use proposals::Proposals;
pub(crate) use read::{Claim, ReadOp};
pub use repair::RepairOutcome;
pub(crate) use repair::{RepairOp, Rescued};
pub use verify::Verdict;
pub(crate) use verify::VerifyOp;
pub(crate) use write::WriteOp;
pub(crate) use write_back::{Proposal, ReadBack, WriteBack};

use crate::bytes::Bytes;
use crate::cache::{Cache, Flight, FlightOutcome};
use crate::error::{Error, Result};
use crate::events::Listener;
use crate::journal::Entry;
use crate::record::{ExtentId, Location, Snapshot, State, Tag, checksum};
use crate::space::{Allocator, Health, Placement, Reclaimer};
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::table::{ExtentTable, Tags};

/// How many times one operation restarts after a race (a version conflict, a
/// superseded fill, a checksum mismatch explained by a concurrent commit).
pub const MAX_ATTEMPTS: u32 = 8;

/// Everything the operations share.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) table: ExtentTable,
    pub(crate) cache: Cache,
    pub(crate) allocator: Allocator,
    pub(crate) reclaimer: Reclaimer,
    pub(crate) health: Health,
    /// Deliberate bugs the emulator's checkers must catch; all off in a store.
    pub(crate) mutants: Mutants,
    /// Where committed, durable changes are reported (`crate::events`).
    pub(crate) events: Listener,
    /// Records handed to the journal whose transitions are not made yet.
    pub(crate) proposals: Proposals,
    /// Set by the driver while the journal's metadata reserve is not held (a
    /// full disk): writes are refused so that what remains of it is for deletes,
    /// commits, checkpoints and `close`.
    pub(crate) space_low: AtomicBool,
    /// Writes of at most this many bytes journal their data with their record
    /// instead of syncing it ([`Entry::Inline`]); 0 for a store without a journal,
    /// which has nowhere else to make them durable.
    pub(crate) inline_write_max: u32,
    /// Inline writes whose data no device sync covered yet (see [`WriteBack`]).
    pub(crate) write_back: WriteBack,
    /// The engines' tags of records, by extent and generation (see `table::Tags`).
    pub(crate) tags: Tags,
    /// Whether a write past `inline_write_max` journals its record while its
    /// data's sync runs ([`Entry::Unsynced`]); false for a store without a
    /// journal, where nothing would overlap.
    pub(crate) overlap_data_sync: bool,
    /// Overlapped writes whose data's sync has not finished, and the markers of
    /// those that finished (see [`Overlaps`]).
    pub(crate) overlaps: Overlaps,
    /// Verified copies of quarantined extents that a repair could not install
    /// (see [`Rescued`]).
    pub(crate) rescued: Rescued,
    /// The verifications in progress, so that readers who met one fault
    /// together charge its device once (see [`episodes`]).
    pub(crate) episodes: std::sync::Arc<episodes::Episodes>,
    /// Whether a change a listener panicked on keeps the location it left
    /// (see [`report_then_retire`](Self::report_then_retire)): a store without
    /// a journal, whose engine's manifest may be the listener; a durable
    /// store's journal is its truth, and it retires them as always.
    pub(crate) keep_on_listener_panic: bool,
    /// Locations kept so: out of use until the store is made again.
    pub(crate) kept_for_listeners: std::sync::atomic::AtomicU64,
}

/// Deliberate ordering bugs, switched on only by the emulator to prove that its
/// crash checker catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mutants {
    /// Retire an unreferenced location before the record that unreferences it is
    /// durable (breaks invariant 10): a write commits, and retires, before it
    /// journals; a compaction or remap retires at its commit.
    pub(crate) retire_before_journal: bool,
    /// Commit a write in the table before its record is durable, so readers see
    /// what a crash or a failed journal can take back (breaks invariant 14).
    pub(crate) commit_before_journal: bool,
    /// A checkpoint image reads the table before the proposals, so a proposal
    /// committed and removed in between is in neither (breaks invariant 9; loom).
    pub(crate) image_table_first: bool,
    /// A compaction journals its relocated record without the generation's tag,
    /// so a recovery that replays it loses the engine's key (the crash checker
    /// must catch it).
    pub(crate) relocation_drops_tag: bool,
    /// A write the journal refused answers a certain failure even when a
    /// checkpoint's image read its proposal first (and may hold it): the
    /// checker must catch a record found after a recovery although its write
    /// said it certainly did not happen.
    pub(crate) certain_after_image: bool,
    /// A batch registers its proposals one at a time, so a checkpoint's image
    /// can hold part of a batch (loom).
    pub(crate) batch_proposals_apart: bool,
    /// A device sync covers every inline write held when it ends, not only
    /// those inserted before it began: a write whose device write completed
    /// while the sync ran is dropped from the write-back set though the sync
    /// may not have written it (the crash checker must catch the data a
    /// later failed writeback then drops for good).
    pub(crate) sync_covers_later_writes: bool,
    /// A delete retires its extent's location as it journals, before its
    /// record is durable (breaks invariant 10 for deletes alone): a crash
    /// that takes the delete back finds the location reused.
    pub(crate) delete_retires_early: bool,
}

impl Core {
    /// A core of these parts and nothing else: no journal, no inline writes,
    /// nothing overlapped (unit tests and loom models).
    #[cfg(test)]
    pub(crate) fn of_parts(
        table: ExtentTable,
        cache: Cache,
        allocator: Allocator,
        health: Health,
    ) -> Core {
        Core {
            table,
            cache,
            allocator,
            reclaimer: Reclaimer::new(),
            health,
            mutants: Default::default(),
            proposals: Default::default(),
            space_low: Default::default(),
            inline_write_max: 0,
            write_back: Default::default(),
            tags: Default::default(),
            overlap_data_sync: false,
            overlaps: Default::default(),
            events: Default::default(),
            rescued: Default::default(),
            episodes: Default::default(),
            keep_on_listener_panic: false,
            kept_for_listeners: Default::default(),
        }
    }

    /// A core for unit tests: one device of 1 MiB in 4 KiB blocks, a 1 MiB cache
    /// in one shard, the default table.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn for_tests() -> Core {
        Core::of_parts(
            ExtentTable::new(crate::table::TableConfig::default()),
            Cache::new(1 << 20, 1),
            Allocator::new(1, 1 << 20, 4096),
            Health::new(1, 10, 1000),
        )
    }

    /// Queues `location` for reuse once no reader can still be reading it.
    pub(crate) fn retire(&self, location: Location) {
        self.reclaimer.retire(location, |l| self.free(l));
    }

    /// Retires the locations that waited for the markers among `entries`
    /// ([`Overlaps::carried`]), once an append made them durable.
    pub(crate) fn retire_behind_markers(&self, entries: &[crate::journal::Entry]) {
        for location in self.overlaps.carried(entries) {
            self.retire(location);
        }
    }

    /// Reports a committed, durable change to the change stream and the
    /// listeners, then retires the location it left (`old`), unless a listener
    /// panicked on a store without a journal: a manifest kept by a listener
    /// that failed still names `old`, so its bytes stay until the store is
    /// made again (counted in `kept_for_listeners`; see `events`).
    pub(crate) fn report_then_retire(
        &self,
        old: Option<Location>,
        event: impl FnOnce(u64) -> crate::events::Event,
    ) {
        let delivered = self.events.emit(event);
        let Some(old) = old else { return };
        if delivered || !self.keep_on_listener_panic {
            self.retire(old);
        } else {
            // Relaxed: a statistic.
            self.kept_for_listeners
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Marks `location` bad (never handed out again) and tells the listeners
    /// the first time, for engines that keep the marks in their own manifest;
    /// whether this was the first time.
    pub(crate) fn mark_bad(&self, location: Location) -> bool {
        let new = self.allocator.mark_bad(location);
        if new {
            self.events
                .notify(|| crate::events::Event::LocationRetired { location });
        }
        new
    }

    /// Returns `location` to the allocator; an inline write's bytes are never
    /// written there again ([`WriteBack::forget`]).
    pub(crate) fn free(&self, location: Location) {
        self.write_back.forget(location);
        self.allocator.free(location);
    }

    /// `old` to retire once the commit that unreferenced it is durable, or `None`
    /// after retiring it at once (the `retire_before_journal` mutant).
    pub(crate) fn retire_unless_early(&self, old: Option<Location>) -> Option<Location> {
        match old {
            Some(l) if self.mutants.retire_before_journal => {
                self.retire(l);
                None
            }
            other => other,
        }
    }

    /// The tag of the record `s` (empty for a `Vacant` one). Consistent with
    /// `s` only while `s` is the committed record: see [`tagged`](Self::tagged).
    pub(crate) fn tag_of(&self, s: &Snapshot) -> Tag {
        match s.state() {
            State::Vacant => Tag::EMPTY,
            _ => self.tags.get(s.extent(), s.generation()),
        }
    }

    /// `id`'s record with its tag, both of one committed record: the lookup is
    /// kept only if the record kept its generation and state across it (see
    /// `table::Tags`). Bounded by [`MAX_ATTEMPTS`] lookups, each lost only to a
    /// write or delete of `id` that committed meanwhile.
    ///
    /// # Errors
    ///
    /// The table's ([`Error::Contended`], out of range), or
    /// [`Error::WriteInProgress`] if every attempt lost to a commit.
    pub(crate) fn tagged(&self, id: ExtentId) -> Result<(Snapshot, Tag)> {
        let mut before = self.table.snapshot(id)?;
        for _ in 0..MAX_ATTEMPTS {
            let tag = self.tag_of(&before);
            let after = self.table.snapshot(id)?;
            if (after.generation(), after.state()) == (before.generation(), before.state()) {
                return Ok((after, tag));
            }
            before = after;
        }
        Err(Error::WriteInProgress { extent: id })
    }

    /// [`tagged`](Self::tagged) for a scan that must not skip a record
    /// (`Store::records_tagged`, which an engine keeping its keys in tags
    /// rebuilds its index from): a publish in progress or commits racing the
    /// lookup are waited out (`table::waited_out`, which states the bound)
    /// instead of reported. `None` only for an id past the table's capacity.
    pub(crate) fn tagged_waiting(&self, id: ExtentId) -> Option<(Snapshot, Tag)> {
        crate::table::waited_out(|| self.tagged(id)).ok()
    }

    /// The devices a checkpoint (`checkpoint`) or `close` syncs first: those
    /// holding inline writes' data not synced yet ([`WriteBack`]) and those of
    /// overlapped writes whose data's sync has not finished ([`Overlaps`]), and
    /// for a checkpoint also those where such a sync failed (its image may hold
    /// the proposal of that write). `close` writes no image: a failed overlapped
    /// write's record is settled by the next recovery.
    pub(crate) fn devices_to_sync(&self, checkpoint: bool) -> Vec<u16> {
        let mut devices = self.write_back.devices();
        devices.extend(self.overlaps.devices(checkpoint));
        devices.sort_unstable();
        devices.dedup();
        devices
    }

    /// Frees whatever retired locations have become safe.
    pub(crate) fn collect(&self) {
        self.reclaimer.collect(|l| self.free(l));
    }

    /// A fresh location, collecting retired space once if the devices are full.
    pub(crate) fn allocate(&self, length: u32, placement: Placement) -> Result<Location> {
        self.allocator.allocate(length, placement).or_else(|_| {
            self.collect();
            self.allocator.allocate(length, placement)
        })
    }

    /// Charges one error to `location`'s device at the driver's `now_ms` and
    /// degrades the device once the policy's threshold is reached within its window.
    /// Returns the journal entry that records a degradation this error caused: the
    /// driver appends it (best effort: a degraded mark only steers placement, and
    /// the health policy finds the device again if the mark is lost).
    pub(crate) fn charge_device_error(&self, location: Location, now_ms: u64) -> Option<Entry> {
        let degraded = self.health.record_error(location.device, now_ms);
        // A device the policy degraded before the reopen (restored from the
        // image, which the fresh policy does not know) is not degraded anew:
        // no second event, no second entry.
        if !degraded || self.allocator.is_lasting_degraded(location.device) {
            return None;
        }
        self.allocator.set_degraded(location.device, true);
        let device = location.device;
        self.events
            .notify(|| crate::events::Event::DeviceDegraded { device });
        Some(Entry::Degraded(device))
    }

    /// Clears `id`'s pending mark, set by a write or delete that will not
    /// commit (bounded: [`MAX_ATTEMPTS`] tries, each lost only to a quarantine
    /// or remap committed meanwhile; a publish in progress is waited out, not
    /// counted, or a stalled one could leave the mark refusing every write of
    /// `id` until a reopen). Only the operation that set the mark clears it, so
    /// a conflict is a quarantine or remap, tried again on top.
    pub(crate) fn clear_pending(&self, id: ExtentId) {
        for _ in 0..MAX_ATTEMPTS {
            let Ok(now) = self.table.snapshot_waiting(id) else {
                return;
            };
            if !now.write_pending()
                || (self.table)
                    .transition(id, now.version(), crate::record::Change::AbortWrite)
                    .is_ok()
            {
                break;
            }
        }
    }

    /// Refuses a new write while the metadata reserve is in use.
    ///
    /// # Errors
    ///
    /// [`Error::DiskFull`] (op `"reserve"`).
    pub(crate) fn check_space(&self) -> Result<()> {
        // Relaxed: a hint set by the driver after the journal's state changed; a
        // write that slips through meets the full disk itself (a typed error).
        if self.space_low.load(Ordering::Relaxed) {
            return Err(Error::DiskFull {
                device: crate::journal::METADATA_DEVICE,
                op: "reserve",
            });
        }
        Ok(())
    }

    /// The driver says whether the metadata reserve is in use.
    pub(crate) fn set_space_low(&self, low: bool) {
        // Relaxed: see `check_space`.
        self.space_low.store(low, Ordering::Relaxed);
    }

    /// A sync of `device` failed and the device stays failed until reopen (see
    /// `backend::device_files`): new locations go to the other devices while they have
    /// room. In memory only: a reopen opens the device afresh.
    pub(crate) fn device_sync_failed(&self, device: u16) {
        self.allocator.set_degraded(device, false);
    }

    /// Taken as a device sync starts, by the store and the emulator alike:
    /// what [`after_device_sync`](Self::after_device_sync) may drop of the
    /// inline writes held for write-back once the sync succeeded. Only the
    /// writes inserted before now (their device writes completed before the
    /// sync began: all `fdatasync` promises to write).
    pub(crate) fn device_sync_mark(&self) -> u64 {
        match self.mutants.sync_covers_later_writes {
            true => u64::MAX,
            false => self.write_back.mark(),
        }
    }

    /// A sync of `device` that started after [`device_sync_mark`](Self::device_sync_mark) returned `mark`
    /// ended: `ok`, or `failed` for good (its sync book will fail every later
    /// one). A success covers the inline writes held before the mark; a failure
    /// degrades the device and writes every held inline write of it again with
    /// `rewrite` (the failed writeback may have dropped their pages), the bytes
    /// of those that returned read from the journal by `read_back`. Returns how
    /// many were written from the writes' own bytes and from the journal. Both
    /// drivers call this around every device sync they run.
    pub(crate) fn after_device_sync(
        &self,
        device: u16,
        mark: u64,
        ok: bool,
        failed: bool,
        rewrite: impl FnMut(Location, &Bytes),
        read_back: ReadBack<'_>,
    ) -> (u64, u64) {
        if ok {
            self.write_back.synced(device, mark);
        } else if failed {
            self.device_sync_failed(device);
            // A held write no journal could show stays held: the reopen writes
            // it back from the journal, and a read meanwhile mends or reports.
            let (own, journaled, _missed) = self.write_back.rewrite(device, rewrite, read_back);
            return (own, journaled);
        }
        (0, 0)
    }

    /// The cached bytes of `snapshot`'s extent if they are of its generation and
    /// still match its checksum (a copy good enough to serve or remap from).
    /// A copy a repair kept after its remap failed counts too ([`Rescued`]).
    pub(crate) fn verified_cached_copy(&self, snapshot: &Snapshot) -> Option<Bytes> {
        let cached = self
            .cache
            .peek(snapshot.extent())
            .filter(|(generation, bytes)| {
                *generation == snapshot.generation()
                    && checksum(snapshot.extent(), *generation, bytes) == snapshot.checksum()
            });
        match cached {
            Some((_, bytes)) => Some(bytes),
            None => self.rescued.copy_of(snapshot),
        }
    }
}

/// The I/O an operation asks its driver for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoRequest {
    /// Read the bytes at a location.
    Read(Location),
    /// Write bytes at a location.
    Write(Location, Bytes),
    /// The durability acknowledgment of a device's completed writes.
    Sync(u16),
    /// A known-good copy of (extent, generation) from a replica or reconstruction;
    /// answered with `IoResult::Read` (an error if there is none).
    GoodCopy(ExtentId, u64),
    /// Write the inline write held at this location again, from its own bytes
    /// or its journal record ([`WriteBack::rewrite_at`]): the verifier found
    /// it wrong where a failed device sync may have dropped its pages.
    /// Answered with `IoResult::Done(Ok(()))`, written or not.
    RewriteHeld(Location),
    /// Append these entries to the metadata journal and answer once they are
    /// durable (`IoResult::Done`). A store without a journal answers at once.
    Journal(Vec<Entry>),
    /// [`Sync`](Self::Sync) of the device and [`Journal`](Self::Journal) of the
    /// entries at once: the entries are appended before the sync starts, and
    /// the answer ([`IoResult::Both`]) comes once both finished.
    SyncAndJournal(u16, Vec<Entry>),
}

/// The result of an [`IoRequest`], fed back to the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoResult {
    /// Bytes read, or the backend's error.
    Read(Result<Bytes>),
    /// A write or sync finished.
    Done(Result<()>),
    /// An [`IoRequest::SyncAndJournal`] finished: each part's result.
    Both {
        /// The device sync's.
        sync: Result<()>,
        /// The journal's, as for [`IoRequest::Journal`].
        journal: Result<()>,
    },
}

/// What an operation wants next.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// Perform this I/O and call the operation's `on_io`.
    Io(IoRequest),
    /// Wait for another operation's load (single flight) and call `on_wait`.
    Wait(Arc<Flight>),
    /// Sleep (real or virtual time) for this many microseconds, then call
    /// `on_backoff`.
    Backoff(u64),
    /// Finished.
    Done(Result<T>),
}

/// An operation its driver can run: every machine answers the same four events.
pub(crate) trait Machine {
    /// What the operation returns.
    type Output;
    /// Starts the operation.
    fn start(&mut self, core: &Core) -> Step<Self::Output>;
    /// The I/O it asked for finished.
    fn on_io(&mut self, core: &Core, result: IoResult) -> Step<Self::Output>;
    /// The load it waited on finished.
    fn on_wait(&mut self, core: &Core, outcome: FlightOutcome) -> Step<Self::Output> {
        let _ = (core, outcome);
        Step::Done(Err(Error::Internal {
            what: "a machine that never waits was woken",
        }))
    }
    /// The backoff it asked for is over.
    fn on_backoff(&mut self, core: &Core) -> Step<Self::Output> {
        let _ = core;
        Step::Done(Err(Error::Internal {
            what: "a machine that never backs off was resumed",
        }))
    }
    /// The driver gives up on the operation mid-flight: release pins and tokens.
    fn abandon(&mut self, core: &Core) {
        let _ = core;
    }
    /// A device error the operation found since the last call (at most one per
    /// verification episode). The driver asks after every step and charges it at
    /// its own time ([`Core::charge_device_error`]) before the next one.
    fn take_device_error(&mut self) -> Option<Location> {
        None
    }
    /// Whether a [`Step::Wait`] on another operation's load is to be waited out.
    /// `false` (a prefetch): the driver ends the operation there, with nothing
    /// to return, and abandons it; the load it found fills the cache anyway.
    /// Both drivers ask, so the emulator's prefetches wait exactly when the
    /// store's do.
    fn joins_loads(&self) -> bool {
        true
    }
    /// A buffer allocated where the operation was asked for, for the bytes of
    /// its next device read (taken once; see `Bytes::with_capacity`). The
    /// store's driver reads into it; the emulator's has no use for it.
    fn read_buffer(&mut self) -> Option<Bytes> {
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Only errors that may be the location's own mark a copy's location
    /// bad: a full, read-only or size-limited file system, a missing file, an
    /// interruption or a closing store say nothing of it.
    #[test]
    fn only_a_media_error_says_a_location_failed() {
        use std::io::ErrorKind as K;
        let io = |kind| Error::Io {
            device: 0,
            op: "write",
            kind,
            message: String::new(),
        };
        let at = Location::new(0, 0, 512);
        assert!(super::location_failed(&io(K::Other)));
        assert!(super::location_failed(&Error::ShortRead {
            location: at,
            actual: 3
        }));
        for kind in [
            K::FileTooLarge,
            K::ReadOnlyFilesystem,
            K::StorageFull,
            K::Interrupted,
        ] {
            assert!(!super::location_failed(&io(kind)), "{kind:?}");
        }
        let full = Error::DiskFull {
            device: 0,
            op: "write",
        };
        assert!(!super::location_failed(&full) && !super::location_failed(&Error::Shutdown));
    }

    /// A device degraded before a reopen (restored from the image) reaches
    /// the fresh health policy's threshold again without a second
    /// `DeviceDegraded` event or journal entry; another device still gets
    /// its first.
    #[test]
    fn a_device_degraded_before_the_reopen_is_not_degraded_again() {
        let core = Core::of_parts(
            ExtentTable::new(crate::table::TableConfig::default()),
            Cache::new(1 << 20, 1),
            Allocator::new(2, 1 << 20, 4096),
            Health::new(2, 2, 1000),
        );
        core.allocator.set_degraded(0, true);
        let heard = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&heard);
        core.events.add(Arc::new(move |e: &crate::events::Event| {
            if matches!(e, crate::events::Event::DeviceDegraded { .. }) {
                // SeqCst: read after the calls below returned, on this thread;
                // it orders nothing else.
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
        for device in [0, 1] {
            let at = Location::new(device, 0, 4096);
            let entries: Vec<_> = (0..3)
                .filter_map(|t| core.charge_device_error(at, t))
                .collect();
            let expected = usize::from(device == 1);
            assert_eq!(entries.len(), expected, "device {device}: {entries:?}");
        }
        assert_eq!(heard.load(Ordering::SeqCst), 1, "device 1's only");
    }
}
